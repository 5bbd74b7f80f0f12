"""The device heartbeat at the edge: GET/POST/HEAD /ping/<token> answered in front of
Django, with a psycopg connection pool and one SQL statement per ping.

Devices ping every few minutes and all at once at the top of the hour; going through the
full Django request cycle costs ten round trips a ping. Here a heartbeat is one
autocommitted statement (durable before the reply) that both throttles (one a second per
device) and moves the device's own rhythm. Everything that is not a plain heartbeat of an
on-time device (other signals, motion sensors, a device whose rhythm was overdue) is
handed to the Django view or action, which hold the full rules.
"""
import asyncio
import logging
import re
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from tenants.accounts.models import hash_token
from tenants.context import tenant_scope
from tenants.models import Domain, Tenant
from watch.models import Device, Rhythm

logger = logging.getLogger(__name__)

PING_PATH = re.compile(r"^/ping/(?P<token>[A-Za-z0-9_-]{16,64})(?:/heartbeat)?$")
HOST_TTL = 10.0

_HEARTBEAT = """
WITH d AS (
    UPDATE {device} SET last_signal_at = now(), battery_low = false
    WHERE token_hash = %(hash)s AND revoked_at IS NULL AND kind <> 'motion'
      AND (last_signal_at IS NULL OR last_signal_at <= now() - interval '1 second')
    RETURNING id),
r AS (
    UPDATE {rhythm} SET last_contact_at = now(), alert_at = now() + "interval" + grace
    WHERE device_id = (SELECT id FROM d) AND state = 'ok'
    RETURNING id)
SELECT (SELECT id FROM d),
       EXISTS (SELECT 1 FROM {rhythm} WHERE device_id = (SELECT id FROM d) AND state = 'overdue'),
       (SELECT count(*) FROM r)
"""
_CLASSIFY = "SELECT kind FROM {device} WHERE token_hash = %(hash)s AND revoked_at IS NULL"
_HOST = (
    'SELECT t.schema_name FROM public.{domain} d JOIN public.{tenant} t ON t.id = d.tenant_id '
    "WHERE d.domain = %(host)s AND t.is_active AND t.schema_name <> 'public'"
)


def _conninfo() -> str:
    db = settings.DATABASES["default"]
    parts = {"dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"], "host": db["HOST"],
             "port": db["PORT"], **db.get("OPTIONS", {})}
    return " ".join(f"{k}='{v}'" for k, v in parts.items() if v)


class FastPing:
    """ASGI middleware: answers plain heartbeats itself, passes everything else on."""

    def __init__(self, inner, pool_size: int | None = None):
        self.inner = inner
        self.pool_size = pool_size or int(getattr(settings, "PING_POOL_SIZE", 8))
        self.pool: AsyncConnectionPool | None = None
        self.pool_loop = None
        self.hosts: dict[str, tuple[float, str | None]] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("GET", "POST", "HEAD"):
            return await self.inner(scope, receive, send)
        match = PING_PATH.match(scope["path"])
        if not match:
            return await self.inner(scope, receive, send)
        schema = await self._schema_for(scope)
        if schema is None:
            return await _reply(send, 404, b"not found\n")
        token_hash = hash_token(match["token"])
        async with (await self._pool()).connection() as conn:
            row = await (await conn.execute(self._sql(_HEARTBEAT, schema), {"hash": token_hash})).fetchone()
            device_id, overdue_rhythm, _moved = row
            if device_id is None:
                kind = await (await conn.execute(self._sql(_CLASSIFY, schema), {"hash": token_hash})).fetchone()
        if device_id is not None:
            if overdue_rhythm:
                await _recover(schema, device_id)
            return await _reply(send, 200, b"OK\n")
        if kind is None:
            return await _reply(send, 404, b"not found\n")
        if kind[0] == Device.Kind.MOTION:
            return await self.inner(scope, receive, send)  # a motion is a sign of life: full rules
        return await _reply(send, 429, b"too many signals; at most one a second\n")

    async def _pool(self) -> AsyncConnectionPool:
        """The pool of the running event loop (one per server process; tests start several loops)."""
        loop = asyncio.get_running_loop()
        if self.pool is None or self.pool_loop is not loop:
            self.pool = AsyncConnectionPool(_conninfo(), min_size=1, max_size=self.pool_size, open=False,
                                            kwargs={"autocommit": True})
            self.pool_loop = loop
            await self.pool.open()
        return self.pool

    async def _schema_for(self, scope) -> str | None:
        host = ""
        for key, value in scope.get("headers", []):
            if key == b"host":
                host = value.decode("latin1").rsplit(":", 1)[0] if not value.startswith(b"[") else ""
                break
        now = time.monotonic()
        cached = self.hosts.get(host)
        if cached and cached[0] > now:
            return cached[1]
        async with (await self._pool()).connection() as conn:
            query = sql.SQL(_HOST).format(domain=sql.Identifier(Domain._meta.db_table),
                                          tenant=sql.Identifier(Tenant._meta.db_table))
            row = await (await conn.execute(query, {"host": host})).fetchone()
        schema = row[0] if row else None
        self.hosts[host] = (now + HOST_TTL, schema)
        return schema

    @staticmethod
    def _sql(template: str, schema: str) -> sql.Composed:
        return sql.SQL(template).format(
            device=sql.Identifier(schema, Device._meta.db_table),
            rhythm=sql.Identifier(schema, Rhythm._meta.db_table),
        )


@sync_to_async
def _recover(schema: str, device_id: int) -> None:
    from django.utils import timezone

    from watch.actions import do_device_rhythm_recovered

    with tenant_scope(schema):
        device = Device.objects.select_related("resident__area").get(pk=device_id)
        do_device_rhythm_recovered(device=device, at=device.last_signal_at or timezone.now())
    connection.close()


async def _reply(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
