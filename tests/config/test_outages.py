"""Outages of Redis and PostgreSQL, made with a TCP fault proxy (tests/faultproxy.py)
between the app and the machine's shared servers, which are never stopped.

First in-process (Django's test client, the settings pointed through a proxy): the
sign-in throttle without Redis, the 503 answers and their languages. Then the platform
as it runs: the ASGI server and a Celery worker as subprocesses whose DATABASE_URL or
REDIS_URL goes through a proxy, a fake LINE that counts what it accepted. Each of those
prints one line of the fault table:
    FAULT TABLE | fault | what clients got | lost | duplicated | recovery
"""
import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from http import HTTPStatus
from urllib.parse import quote

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection
from django.test import override_settings

from notifications.models import DeliveryAttempt, Notification
from outreach.models import Concern, Target
from tenants.accounts import actions as account_actions
from tenants.accounts.actions import do_issue_api_token
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, PASSWORD, TenantClient, make_user
from tests.faultproxy import FaultProxy, wait_for
from tests.notifications.helpers import set_channels
from tests.outreach import test_faults
from tests.outreach.test_faults import (
    BASE_DIR,
    LINE_PATH,
    PYTHON,
    WORKER_READY_S,
    Worker,
    line_id,
    policy,
    sweep,
    sweep_deliveries,
    wait_until,
    worker_env,
)
from tests.watch.conftest import make_resident
from watch.actions import do_create_area, do_register_device
from watch.models import Area, Assignment, ContactLog

UNAVAILABLE_EN = "The service is unavailable for a moment. Try again shortly."
UNAVAILABLE_JA = "一時的に利用できません。しばらくしてからもう一度お試しください。"
FAST_S = 2.0  # every answer during an outage comes within this
# A connection attempt to a server that does not answer gives up after connect_timeout,
# which psycopg never lets be less than 2 s: a hung database answers in 2 s and a little.
HUNG_S = 2.6
# The fake LINE of the escalation fault tests, counting what it accepted (fixtures).
fake, provider = test_faults.fake, test_faults.provider


def redis_parts() -> tuple[str, int | None, int]:
    """(host or Unix socket path, port, db) of REDIS_URL (redis:// or the embedded server's unix://)."""
    from urllib.parse import parse_qs, urlparse

    parsed = urlparse(django_settings.REDIS_URL)
    if parsed.scheme == "unix":
        return parsed.path, None, int(parse_qs(parsed.query).get("db", ["0"])[0])
    return parsed.hostname or "127.0.0.1", parsed.port or 6379, int((parsed.path or "/0").lstrip("/") or 0)


@pytest.fixture
def redis_proxy():
    host, port, _db = redis_parts()
    proxy = FaultProxy(host, port).start()
    yield proxy
    proxy.close()


@pytest.fixture
def pg_proxy():
    db = connection.settings_dict
    proxy = FaultProxy(db["HOST"] or "127.0.0.1", db["PORT"] or 5432).start()
    yield proxy
    proxy.close()


def timed(call):
    start = time.monotonic()
    response = call()
    return response, time.monotonic() - start


# In-process: the sign-in throttle while Redis is down.
def _cache_through(proxy) -> dict:
    _host, _port, db = redis_parts()
    caches = {alias: dict(options) for alias, options in django_settings.CACHES.items()}
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{proxy.port}/{db}"
    return caches


@pytest.fixture
def local_counters(monkeypatch):
    monkeypatch.setattr(account_actions, "_shared_cache_down_until", 0.0)
    account_actions._local_counters.clear()
    yield
    account_actions._local_counters.clear()


def test_sign_in_works_while_redis_is_down_and_failures_are_still_limited(staff_a, redis_proxy, local_counters):
    """Fail closed would lock everyone out for the outage, fail open would allow unlimited
    guesses: the counts are kept in the process until Redis is back."""
    with override_settings(CACHES=_cache_through(redis_proxy)):
        redis_proxy.cut()
        client = TenantClient(HOST_A)
        response, seconds = timed(lambda: client.post("/accounts/login/", {"username": "staff-a",
                                                                           "password": PASSWORD}))
        assert response.status_code == HTTPStatus.FOUND and seconds < FAST_S
        guesser = TenantClient(HOST_A)
        for _attempt in range(django_settings.LOGIN_FAILURE_LIMIT):
            assert guesser.post("/accounts/login/", {"username": "staff-a", "password": "wrong"}).status_code == 200
        refused = guesser.post("/accounts/login/", {"username": "staff-a", "password": PASSWORD})
        assert refused.status_code == HTTPStatus.TOO_MANY_REQUESTS
        assert "Too many failed sign-in attempts" in refused.content.decode()
        assert "_auth_user_id" not in guesser.session
    print(f"FAULT TABLE | redis down, sign-in | right password 302 in {seconds:.2f} s; after "
          f"{django_settings.LOGIN_FAILURE_LIMIT} wrong ones, even the right one 429 | lost 0 | duplicated 0 | "
          "recovery 0 s")


def test_api_token_sign_in_answers_while_redis_hangs(staff_a, redis_proxy, local_counters):
    with override_settings(CACHES=_cache_through(redis_proxy)):
        redis_proxy.hang()
        response, seconds = timed(lambda: TenantClient(HOST_A).post(
            "/api/v1/auth/token/", {"username": "staff-a", "password": PASSWORD}, content_type="application/json"))
    assert response.status_code == HTTPStatus.OK and response.json()["token"]
    assert seconds < FAST_S  # one wait of the cache's 1 s socket timeout, then this process's counters


# In-process: 503 with Retry-After while PostgreSQL is down.
@pytest.fixture
def db_through(committed_db, pg_proxy):
    """Django's connection (every thread's: the settings dict is shared) goes through the proxy."""
    db = connection.settings_dict
    original = db["HOST"], db["PORT"]
    connection.close()
    db["HOST"], db["PORT"] = "127.0.0.1", str(pg_proxy.port)
    yield pg_proxy
    pg_proxy.restore()
    connection.close()
    db["HOST"], db["PORT"] = original


@pytest.fixture
def device_token(committed_db):
    staff = make_user("tenant_a", "staff-a", User.Role.MUNICIPAL_STAFF)
    with tenant_scope("tenant_a"):
        area = do_create_area(name="大住", kind=Area.Kind.DISTRICT)
        resident = make_resident(area, "山田 花子")
        _device, token = do_register_device(actor=staff, resident=resident, kind="button")
        api_token = do_issue_api_token(staff)
    connection.set_schema_to_public()
    return {"device": token, "api": api_token}


def _outage_answers(language: str, tokens: dict) -> list:
    client = TenantClient(HOST_A, language=language, raise_request_exception=False)
    return [
        ("page", timed(lambda: client.get("/accounts/login/"))),
        ("api", timed(lambda: client.get("/api/v1/residents/", HTTP_AUTHORIZATION=f"Token {tokens['api']}"))),
        ("device", timed(lambda: client.post(f"/ping/{tokens['device']}/ok", HTTP_IDEMPOTENCY_KEY="k1"))),
    ]


@pytest.mark.parametrize(("language", "message"), [("ja", UNAVAILABLE_JA), ("en", UNAVAILABLE_EN)])
def test_with_the_database_down_every_kind_of_path_answers_503_with_retry_after_in_its_language(
        device_token, db_through, language, message):
    db_through.cut()
    for name, (response, seconds) in _outage_answers(language, device_token):
        assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE, name
        assert response["Retry-After"] == "5", name
        assert seconds < FAST_S, (name, seconds)
        body = response.content.decode()
        if name == "api":
            assert response["Content-Type"] == "application/json" and response.json() == {"detail": message}
        elif name == "device":
            assert body == f"{message}\n"
        else:
            assert response["Content-Type"].startswith("text/html") and message in body and f'lang="{language}"' in body


def test_with_the_database_hanging_answers_are_503_within_the_connect_timeout(device_token, db_through):
    db_through.hang()
    for name, (response, seconds) in _outage_answers("en", device_token):
        assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE, name
        assert seconds < HUNG_S, (name, seconds)
    db_through.restore()
    response = TenantClient(HOST_A).get("/api/v1/residents/", HTTP_AUTHORIZATION=f"Token {device_token['api']}")
    assert response.status_code == HTTPStatus.OK  # the next request connects afresh


@pytest.mark.parametrize("fault", ["cut", "hang"])
def test_readyz_names_the_database_within_2_s(committed_db, db_through, fault):
    getattr(db_through, fault)()
    response, seconds = timed(lambda: TenantClient(HOST_A).get("/readyz"))
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json() == {"status": "unavailable", "database": "unreachable", "redis": "ok"}
    assert seconds < FAST_S + 0.3


def test_readyz_answers_within_2_s_while_redis_hangs(tenant_a, redis_proxy, settings):
    _host, _port, db = redis_parts()
    settings.REDIS_URL = f"redis://127.0.0.1:{redis_proxy.port}/{db}"
    redis_proxy.hang()
    response, seconds = timed(lambda: TenantClient(HOST_A).get("/readyz"))
    assert (response.status_code, response.json()["redis"], response.json()["database"]) == (503, "unreachable", "ok")
    assert seconds < FAST_S + 0.3


def test_any_other_error_stays_a_500(rf):
    from config.outage import server_error

    request = rf.get("/watch/")
    try:
        raise ValueError("a bug")
    except ValueError:
        response = server_error(request)
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR and not response.has_header("Retry-After")


# The platform as it runs: server and worker subprocesses.
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_url_via(port: int | None = None) -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="") + (":" + quote(db["PASSWORD"], safe="") if db["PASSWORD"] else "")
    if not port and (db["HOST"] or "").startswith("/"):  # the embedded server's socket directory
        return f"postgresql://{auth}@:{db['PORT'] or 5432}/{db['NAME']}?host={quote(db['HOST'], safe='')}"
    host, db_port = ("127.0.0.1", port) if port else (db["HOST"] or "127.0.0.1", db["PORT"] or 5432)
    return f"postgresql://{auth}@{host}:{db_port}/{db['NAME']}"


def redis_url_via(proxy: FaultProxy) -> str:
    return f"redis://127.0.0.1:{proxy.port}/{redis_parts()[2]}"


@pytest.fixture
def platform(committed_db, provider, settings, tmp_path):
    """start_web(**env) / start_worker(**env): the ASGI server and a Celery worker as
    subprocesses on the test database, with the fake providers and any environment given."""
    from config.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = False
    import redis as redis_client

    redis_client.Redis.from_url(django_settings.REDIS_URL).delete("celery", "urgent", "unacked", "unacked_index")
    started: list[Worker] = []

    def env_with(overrides: dict) -> dict:
        env = worker_env(provider)
        env.update(DJANGO_SECURE_COOKIES="0", **overrides)
        if "REDIS_URL" in overrides:
            env["CELERY_BROKER_URL"] = overrides["REDIS_URL"]
        return env

    def spawn(name: str, argv: list[str], overrides: dict) -> Worker:
        log = tmp_path / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, cwd=BASE_DIR, env=env_with(overrides), stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        process = Worker(proc, name, log)
        started.append(process)
        return process

    def start_web(**overrides) -> str:
        port = free_port()
        web = spawn(f"web-{port}", [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                                    "--port", str(port), "--lifespan", "off", "--log-level", "warning"], overrides)
        url = f"http://127.0.0.1:{port}"

        def up():
            assert web.proc.poll() is None, web.log_tail()
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{url}/healthz", timeout=1).status_code == 200
            return False

        assert wait_for(up, WORKER_READY_S)[0], web.log_tail()
        return url

    def start_worker(**overrides) -> Worker:
        name = f"outages-{uuid.uuid4().hex[:8]}@localhost"
        worker = spawn(name.split("@")[0], [PYTHON, "-m", "celery", "-A", "config.celery:app", "worker", "-l",
                                            "WARNING", "--concurrency", "1", "-P", "prefork", "-n", name,
                                            "-Q", "celery,urgent", "--without-mingle", "--without-gossip"], overrides)
        worker.name = name
        deadline = time.monotonic() + WORKER_READY_S
        while not app.control.ping(destination=[name], timeout=0.3):
            assert worker.proc.poll() is None, worker.log_tail()
            assert time.monotonic() < deadline, f"the worker did not start:\n{worker.log_tail()}"
        return worker

    yield type("Platform", (), {"web": staticmethod(start_web), "worker": staticmethod(start_worker),
                                "processes": started})
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.proc.wait(timeout=10)


@pytest.fixture
def watched(committed_db):
    """A resident of tenant A with a call button, her volunteer (on LINE, with an API
    token) and a policy that notifies the assigned volunteers at once."""
    volunteer = make_user("tenant_a", "volunteer-1", User.Role.VOLUNTEER)
    with tenant_scope("tenant_a"):  # a hash the servers' hashers know (the tests' own is MD5)
        User.objects.filter(pk=volunteer.pk).update(
            password=PBKDF2PasswordHasher().encode(PASSWORD, "outages", iterations=1000))
    case_worker = make_user("tenant_a", "case-worker", User.Role.CASE_WORKER)
    set_channels(volunteer, ["line"], line_user_id=line_id(1))
    with tenant_scope("tenant_a"):
        area = do_create_area(name="大住", kind=Area.Kind.DISTRICT)
        resident = make_resident(area, "山田 花子")
        Assignment.objects.create(resident=resident, user=volunteer)
        device, device_token = do_register_device(actor=case_worker, resident=resident, kind="button")
        api_token = do_issue_api_token(volunteer)
    policy((Target.ASSIGNED_VOLUNTEERS, 0))
    connection.set_schema_to_public()
    return {"resident": resident, "device": device, "device_token": device_token, "api_token": api_token,
            "volunteer": volunteer}


def on(url: str, path: str, method: str = "get", timeout: float = 10, **kwargs):
    """A request to the server for tenant A's host; (response or the exception, seconds)."""
    headers = {"Host": HOST_A, "Accept-Language": "en", **kwargs.pop("headers", {})}
    start = time.monotonic()
    try:
        response = getattr(requests, method)(f"{url}{path}", headers=headers, timeout=timeout,
                                              allow_redirects=False, **kwargs)
    except requests.RequestException as error:
        response = error
    return response, time.monotonic() - start


def status(response) -> str:
    return str(response.status_code) if isinstance(response, requests.Response) else type(response).__name__


def sign_in(url: str, username: str) -> tuple[requests.Session, requests.Response]:
    """Through the sign-in form, as a browser: the session and the form's answer."""
    session = requests.Session()
    headers = {"Host": HOST_A, "Accept-Language": "en"}
    session.get(f"{url}/accounts/login/", headers=headers, timeout=10)
    csrf = session.cookies.get(django_settings.CSRF_COOKIE_NAME)
    response = session.post(f"{url}/accounts/login/", headers=headers, timeout=10, allow_redirects=False,
                            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": csrf})
    return session, response


def test_redis_down_contacts_and_presses_answer_2xx_once_and_the_sweeps_deliver_what_was_missed(
        platform, watched, provider, redis_proxy):
    redis_url = redis_url_via(redis_proxy)
    url = platform.web(REDIS_URL=redis_url)
    worker = platform.worker(REDIS_URL=redis_url)
    api = {"Authorization": f"Token {watched['api_token']}"}
    press = f"/ping/{watched['device_token']}"

    redis_proxy.cut()
    down_at = time.monotonic()
    answers = {
        "contact": on(url, "/api/v1/contacts/", "post", headers=api, json={
            "resident": watched["resident"].pk, "channel": "visit", "outcome": "worried",
            "idempotency_key": str(uuid.uuid4())}),
        "ok press": on(url, f"{press}/ok", "post", headers={"Idempotency-Key": "ok-1"}),
    }
    time.sleep(1.1)  # one signal a second per device
    answers["call press"] = on(url, f"{press}/call", "post", headers={"Idempotency-Key": "call-1"})
    # The device did not trust the answer and sends the same press again: logged once.
    answers["call press again"] = on(url, f"{press}/call", "post", headers={"Idempotency-Key": "call-1"})
    time.sleep(1.1)
    answers["call press later"] = on(url, f"{press}/call", "post", headers={"Idempotency-Key": "call-1"})
    answers["sign-in"] = timed(lambda: sign_in(url, "volunteer-1")[1])
    time.sleep(max(0.0, 8 - (time.monotonic() - down_at)))  # Redis stays away a while
    outage_s = time.monotonic() - down_at
    for name, (response, seconds) in answers.items():
        assert status(response) in {"200", "201", "302"}, (name, status(response), getattr(response, "text", ""))
        assert seconds < FAST_S * 2, (name, seconds)

    with tenant_scope("tenant_a"):
        contacts = list(ContactLog.objects.order_by("pk").values_list("outcome", flat=True))
        concerns = sorted(Concern.objects.values_list("cause", flat=True))
        assert not Notification.objects.exists()  # no step could be enqueued
    assert contacts == ["worried", "fine", "asked_for_call"]
    assert concerns == sorted([Concern.Cause.WORRIED_CONTACT, "device_call_request"])

    redis_proxy.restore()
    back_at = time.monotonic()

    def delivered():
        with tenant_scope("tenant_a"):
            states = list(Notification.objects.values_list("state", flat=True))
        return len(states) == 2 and all(s == Notification.State.DELIVERED for s in states)

    last_sweep = [0.0]

    def sweeps():  # what beat sends (escalations every 5 s, deliveries every minute), every 3 s here
        if time.monotonic() - last_sweep[0] >= 3:
            sweep()
            sweep_deliveries()
            last_sweep[0] = time.monotonic()

    # The worker reconnects on its own back-off (2, 4, 6, ... s after it lost the broker).
    wait_until(delivered, "both concerns' notifications", timeout=90, every=sweeps, workers_=[worker])
    recovery_s = time.monotonic() - back_at
    with tenant_scope("tenant_a"):
        notifications = list(Notification.objects.all())
        successes = DeliveryAttempt.objects.filter(ok=True).count()
        assert ContactLog.objects.count() == 3
    line_accepted = [key for path, key, code in provider.answered if path == LINE_PATH and 200 <= code < 300]
    assert {n.recipient_id for n in notifications} == {watched["volunteer"].pk}
    assert successes == 2 and len(line_accepted) == 2 and len(set(line_accepted)) == 2
    codes = ", ".join(f"{name} {status(r)} ({s:.2f} s)" for name, (r, s) in answers.items())
    print(f"FAULT TABLE | redis down {outage_s:.0f} s | {codes} | lost 0 | duplicated 0 | "
          f"recovery {recovery_s:.1f} s (2 notifications delivered by the sweeps)")


def test_postgres_down_or_hung_answers_503_fast_and_the_next_request_after_it_returns_succeeds(
        platform, watched, pg_proxy):
    # Persistent connections: recovery must come from the health checks, not a fresh process.
    url = platform.web(DATABASE_URL=database_url_via(pg_proxy.port), DATABASE_CONN_MAX_AGE="60")
    api = {"Authorization": f"Token {watched['api_token']}"}
    press = f"/ping/{watched['device_token']}"
    page, signed_in = sign_in(url, "volunteer-1")
    assert signed_in.status_code == HTTPStatus.FOUND

    def get_page():
        start = time.monotonic()
        try:
            response = page.get(f"{url}/watch/my/", headers={"Host": HOST_A, "Accept-Language": "ja"}, timeout=10)
        except requests.RequestException as error:
            response = error
        return response, time.monotonic() - start

    assert status(get_page()[0]) == "200"
    assert status(on(url, "/api/v1/residents/", headers=api)[0]) == "200"

    rows = []
    for fault in ("cut", "hang"):
        getattr(pg_proxy, fault)()
        time.sleep(1.2)  # past the one-second host caches
        answers = {
            "page": get_page(),
            "api": on(url, "/api/v1/residents/", headers=api),
            "call press": on(url, f"{press}/call", "post", headers={"Idempotency-Key": "outage-1"}),
            "readyz": on(url, "/readyz"),
            # The edge's own fast paths (watch/edge.py), shown for the table.
            "edge heartbeat": on(url, press),
            "edge contact": on(url, "/api/v1/contacts/", "post", headers=api, json={
                "resident": watched["resident"].pk, "channel": "visit", "outcome": "fine",
                "idempotency_key": str(uuid.uuid4())}),
        }
        limit = FAST_S if fault == "cut" else HUNG_S
        for name in ("page", "api", "call press", "readyz"):
            response, seconds = answers[name]
            assert status(response) == "503", (fault, name, status(response))
            assert seconds < limit + (0.3 if name == "readyz" else 0), (fault, name, seconds)
            if name != "readyz":
                assert response.headers["Retry-After"] == "5"
        assert answers["page"][0].headers["Content-Type"].startswith("text/html")
        assert UNAVAILABLE_JA in answers["page"][0].text
        assert answers["api"][0].json() == {"detail": UNAVAILABLE_EN}
        assert answers["readyz"][0].json() == {"status": "unavailable", "database": "unreachable", "redis": "ok"}
        rows.append(f"{fault}: " + ", ".join(f"{n} {status(r)} ({s:.2f} s)" for n, (r, s) in answers.items()))

    pg_proxy.restore()
    recovered, recovery_s = wait_for(lambda: status(on(url, "/api/v1/residents/", headers=api)[0]) == "200",
                                     timeout=15, every=0.05)
    assert recovered and recovery_s < 5, recovery_s
    assert status(get_page()[0]) == "200"
    # The press that got 503 (nothing committed) is sent again with its key: logged once.
    for _attempt in range(2):
        assert status(on(url, f"{press}/call", "post", headers={"Idempotency-Key": "outage-1"})[0]) == "200"
    with tenant_scope("tenant_a"):
        assert list(ContactLog.objects.filter(device=watched["device"]).values_list("outcome", flat=True)) == [
            "asked_for_call"]
    print(f"FAULT TABLE | postgres down, then hung | {' | '.join(rows)} | lost 0 | duplicated 0 | "
          f"recovery {recovery_s:.2f} s (no restart; persistent connections)")
