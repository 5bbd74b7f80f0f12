"""Shared fixtures: two tenants created once per session, the three personas, clients
bound to a tenant's host, a live-event capture, and a websocket helper."""
import contextlib
from http import HTTPStatus

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection, transaction
from django.test import Client

from tenants.accounts.models import User
from tenants.context import forget_cached_hosts, tenant_scope
from tenants.models import Domain, Tenant

HOST_A = "tenant-a.mimamori.test"
HOST_B = "tenant-b.mimamori.test"
PUBLIC_HOST = "platform.mimamori.test"
PASSWORD = "correct horse battery staple"


def pytest_configure(config):
    # Translations are compiled by the setup, never committed as binaries only.
    from django.utils.translation import trans_real

    from config.i18n import compile_messages

    if compile_messages():
        # Django (and Python's gettext) may have cached the catalogues before they were compiled.
        import gettext

        gettext._translations.clear()
        trans_real._translations = {}
        trans_real._default = None


def _ensure_tenant(schema_name: str, domain: str, name: str) -> None:
    from tenants.actions import do_provision_tenant

    if not Tenant.objects.filter(schema_name=schema_name).exists():
        do_provision_tenant(
            schema_name=schema_name, domain=domain, name=name, kind=Tenant.Kind.MUNICIPALITY,
            prefecture="京都府", local_government_code="262111",
        )


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database with the public host and tenants A and B (get-or-create, so
    --reuse-db works)."""
    from django.test.utils import setup_databases, teardown_databases

    own_setup = None
    with django_db_blocker.unblock():
        if connection.settings_dict["NAME"] != settings.DATABASES["default"]["TEST"]["NAME"]:
            # pytest-django creates the test database only when a selected test uses `db`;
            # tests using only `committed_db` must never run against the real database.
            own_setup = setup_databases(verbosity=0, interactive=False, aliases={"default"})
        connection.set_schema_to_public()
        public, _ = Tenant.objects.get_or_create(schema_name="public", defaults={"name": "mimamori"})
        Domain.objects.get_or_create(domain=PUBLIC_HOST, defaults={"tenant": public})
        _ensure_tenant("tenant_a", HOST_A, "テスト市A")
        _ensure_tenant("tenant_b", HOST_B, "テスト市B")
        connection.set_schema_to_public()
    yield
    if own_setup is not None:
        with django_db_blocker.unblock():
            teardown_databases(own_setup, verbosity=0)


@pytest.fixture(autouse=True)
def _fresh_tenant_state(settings):
    """Each test starts on the public schema with no cached hosts and an empty cache,
    in English outside requests (tests of the Japanese texts ask for them)."""
    from django.core.cache import cache
    from django.utils import translation

    translation.activate("en")
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    forget_cached_hosts()
    cache.clear()
    yield
    forget_cached_hosts()
    connection.set_schema_to_public()


@pytest.fixture(scope="session", autouse=True)
def _celery_eager():
    """Unit tests run tasks in-process. Celery reads the CELERY_* Django settings live."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CELERY_TASK_EAGER_PROPAGATES = True


@pytest.fixture
def tenant_a(db):
    return Tenant.objects.get(schema_name="tenant_a")


@pytest.fixture
def tenant_b(db):
    return Tenant.objects.get(schema_name="tenant_b")


def make_user(schema_name: str, username: str, role: str, **extra) -> User:
    with tenant_scope(schema_name):
        return User.objects.create_user(
            username=username, password=PASSWORD, role=role, display_name=username, **extra
        )


@pytest.fixture
def admin_a(tenant_a):
    return make_user("tenant_a", "admin-a", User.Role.ADMIN, email="admin-a@example.jp")


@pytest.fixture
def staff_a(tenant_a):
    return make_user("tenant_a", "staff-a", User.Role.MUNICIPAL_STAFF, email="staff-a@example.jp")


@pytest.fixture
def volunteer_a(tenant_a):
    return make_user("tenant_a", "volunteer-a", User.Role.VOLUNTEER, email="volunteer-a@example.jp")


@pytest.fixture
def outsider_b(tenant_b):
    """An administrator of tenant B: powerful at home, nobody in A."""
    return make_user("tenant_b", "outsider-b", User.Role.ADMIN, email="outsider-b@example.jp")


@pytest.fixture
def operator(db):
    connection.set_schema_to_public()
    return User.objects.create_user(username="operator", password=PASSWORD, role=User.Role.OPERATOR)


class TenantClient(Client):
    """A test client bound to one host; `sign_in` logs a user in through the real form."""

    def __init__(self, host: str, language: str = "en", **kwargs):
        super().__init__(HTTP_HOST=host, HTTP_ACCEPT_LANGUAGE=language, **kwargs)
        self.host = host

    def sign_in(self, username: str, password: str = PASSWORD):
        response = self.post("/accounts/login/", {"username": username, "password": password})
        assert response.status_code == HTTPStatus.FOUND, response.content.decode()[:500]
        return response


@pytest.fixture
def client_a(tenant_a):
    return TenantClient(HOST_A)


@pytest.fixture
def client_b(tenant_b):
    return TenantClient(HOST_B)


@pytest.fixture
def public_client(db):
    return TenantClient(PUBLIC_HOST)


@pytest.fixture
def captured_events(monkeypatch):
    """Every live event published during the test, as (group, event), captured at the
    one publishing point (`notifications.events.publish_now`: actions after commit and
    the edge alike)."""
    from notifications import events

    captured: list[tuple[str, dict]] = []

    async def record(schema_name, audience, event):
        captured.extend((events.group_name(schema_name, a), event) for a in dict.fromkeys(audience))

    monkeypatch.setattr(events, "publish_now", record)
    return captured


@pytest.fixture
def expect_events(captured_events):
    """`with expect_events(2) as events:` the events published inside the block, as
    (group, event) pairs, failing unless exactly that many distinct events were published."""

    @contextlib.contextmanager
    def expect(count: int):
        start = len(captured_events)
        block: list[tuple[str, dict]] = []
        yield block
        block.extend(captured_events[start:])
        distinct = []
        for _group, event in block:
            if not any(event is seen for seen in distinct):
                distinct.append(event)
        assert len(distinct) == count, f"expected {count} event(s), got {[e.get('type') for e in distinct]}"

    return expect


@pytest.fixture
def run_async(monkeypatch):
    """Run a coroutine from a sync test so that the consumers' database calls run on
    this thread, inside the test's transaction.

    Channels closes "old" connections around every database call, which would end the
    test transaction; inside a test that is a no-op.
    """
    import channels.db

    monkeypatch.setattr(channels.db, "close_old_connections", lambda: None)

    def run(coro_fn, *args):
        return async_to_sync(coro_fn)(*args)

    return run


@contextlib.asynccontextmanager
async def websocket(host: str, session_cookie: str | None = None, origin: str | None = None,
                    path: str = "/ws/events/"):
    """Open a websocket to the real ASGI application; yields (connected, close_code, communicator)."""
    from channels.testing.websocket import WebsocketCommunicator

    from config.asgi import application

    headers = [(b"host", host.encode())]
    if session_cookie:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_cookie}".encode()))
    if origin:
        headers.append((b"origin", origin.encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    try:
        yield connected, code, communicator
    finally:
        await communicator.disconnect()


TEST_SCHEMAS = ("tenant_a", "tenant_b")
KEEP_TABLES = {"django_migrations", "django_content_type", "auth_permission"}


def wipe_tenant_tables(schemas=TEST_SCHEMAS) -> None:
    """Empty every table of the test tenants' schemas (not public: it holds the tenants)
    and start their identities at 1 again. DELETE in one transaction (Django's foreign
    keys are checked at commit) and setval: measured here, TRUNCATE of the ~75 tables
    took about 1.5 s a call, this about 0.1 s."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(%s)", [list(schemas)])
        for schema, table in cursor.fetchall():
            if table not in KEEP_TABLES:
                cursor.execute(f'DELETE FROM "{schema}"."{table}"')  # noqa: S608 - names from pg_tables
        cursor.execute("SELECT setval(c.oid, 1, false) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE c.relkind = 'S' AND n.nspname = ANY(%s)", [list(schemas)])


@pytest.fixture
def committed_db(django_db_setup, django_db_blocker):
    """Data that other threads and processes can see (live servers, real workers).

    pytest-django's transactional_db would flush the public schema, tenants included;
    this empties the test tenants' own tables instead, before and after the test.
    """
    with django_db_blocker.unblock():
        assert connection.settings_dict["NAME"] == settings.DATABASES["default"]["TEST"]["NAME"]
        connection.set_schema_to_public()
        wipe_tenant_tables()
        yield
        connection.set_schema_to_public()
        wipe_tenant_tables()
        connection.close()


@pytest.fixture
def live_server_url(committed_db, settings):
    """The real ASGI application (HTTP and websockets) served by uvicorn in a thread.

    Returns a function giving the URL of a host on it; browsers map every host name to
    127.0.0.1 (see tests/browser/conftest.py).
    """
    import asyncio
    import socket
    import threading
    import time

    import uvicorn

    from config.asgi import application

    # Plain http on loopback: cookies cannot be Secure here.
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, lifespan="off",
                                           log_level="warning", ws="websockets-sansio"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "live server did not start"
        time.sleep(0.05)
    yield lambda host: f"http://{host}:{port}"
    # The edge ping path keeps a connection pool on the server's loop: close it there, or
    # its connections outlive the test database.
    from config.asgi import edge as fast_ping
    if fast_ping.pool is not None and not fast_ping.pool_loop.is_closed():
        asyncio.run_coroutine_threadsafe(fast_ping.pool.close(), fast_ping.pool_loop).result(10)
        fast_ping.pool = None
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def django_calls(live_server_url):
    """The paths the edge (watch.edge) handed on to Django during the test: [] means the
    edge answered everything itself."""
    from config.asgi import edge

    inner, calls = edge.inner, []

    async def counting(scope, receive, send):
        calls.append(scope["path"])
        return await inner(scope, receive, send)

    edge.inner = counting
    yield calls
    edge.inner = inner
