import json
import logging
import os
import subprocess
import sys
from http import HTTPStatus

from django.conf import settings

from config.i18n import compile_messages
from config.logging import JsonFormatter, TenantFilter
from tenants.context import tenant_scope
from tests.conftest import HOST_A, TenantClient


def test_healthz_answers_on_every_host_even_unknown(db):
    for host in [HOST_A, "platform.mimamori.test", "unknown.example"]:
        response = TenantClient(host).get("/healthz")
        assert response.status_code == HTTPStatus.OK
        assert response.json() == {"status": "ok"}


def test_readyz_reports_database_and_redis(tenant_a):
    response = TenantClient(HOST_A).get("/readyz")
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_readyz_is_503_when_redis_is_unreachable(tenant_a, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = TenantClient(HOST_A).get("/readyz")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json() == {"status": "unavailable", "database": "ok", "redis": "unreachable"}


def _format(record_msg: str) -> dict:
    record = logging.LogRecord("mimamori.test", logging.INFO, __file__, 1, record_msg, (), None)
    TenantFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_log_lines_are_json_with_the_tenant_schema(db):
    assert _format("outside")["schema"] == "-"
    with tenant_scope("tenant_b"):
        line = _format("見守り")
    assert line["schema"] == "tenant_b"
    assert line["message"] == "見守り"
    assert line["level"] == "INFO"


def test_request_log_lines_carry_the_schema(tenant_a, caplog):
    caplog.set_level(logging.INFO, logger="tenants.accounts.actions")
    TenantClient(HOST_A).post("/accounts/login/", {"username": "x", "password": "y"})
    records = [r for r in caplog.records if r.name == "tenants.accounts.actions"]
    assert records
    assert all(getattr(r, "schema", None) == "tenant_a" for r in records)


def test_check_deploy_passes_with_production_environment(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("x" * 30 + "-production-secret-from-a-file-" + "y" * 20)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")},
        "DJANGO_SECRET_KEY_FILE": str(secret),
        "DJANGO_ALLOWED_HOSTS": ".mimamori.example",
        "DJANGO_SECURE_SSL_REDIRECT": "1",
        "DJANGO_SECURE_HSTS_SECONDS": "31536000",
        "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
        "DJANGO_SECURE_HSTS_PRELOAD": "1",
        "DJANGO_BEHIND_TLS_PROXY": "1",
        "MIMAMORI_NO_VENV": "1",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_settings_refuse_to_start_without_a_secret_key_outside_debug():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")} | {"MIMAMORI_NO_VENV": "1"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=settings.BASE_DIR, env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "Set DJANGO_SECRET_KEY" in result.stderr


def test_translations_compile_from_the_po_files():
    compile_messages()
    mo = settings.BASE_DIR / "locale" / "ja" / "LC_MESSAGES" / "django.mo"
    assert mo.exists() and mo.stat().st_size > 1000


def test_celery_reaches_the_same_redis_database_as_everything_else_over_a_unix_socket(tmp_path):
    """kombu reads a socket's database from `virtual_host`, not `?db=`: the broker of the
    embedded Redis's database 3 is database 3, so processes on other databases never share
    a queue (they did: every test process's tasks went to database 0)."""
    import subprocess
    import time as clock

    import redis
    from kombu import Connection

    from config import env
    from config.services import _redis_binary

    socket_path = tmp_path / "redis.sock"
    server = subprocess.Popen([_redis_binary(), "--port", "0", "--unixsocket", str(socket_path), "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _try in range(50):
            if socket_path.exists():
                break
            clock.sleep(0.05)
        url = env.redis_url_with_db(f"unix://{socket_path}", 3)
        assert env.celery_broker_url(url) == f"redis+socket://{socket_path}?virtual_host=3"
        assert env.celery_broker_url("redis://127.0.0.1:6379/4") == "redis://127.0.0.1:6379/4"
        with Connection(env.celery_broker_url(url)) as broker:
            broker.SimpleQueue("mimamori-probe").put({"n": 1})
        assert redis.Redis.from_url(url).llen("mimamori-probe") == 1
        assert redis.Redis.from_url(f"unix://{socket_path}?db=0").llen("mimamori-probe") == 0
    finally:
        server.kill()
        server.wait()
