"""The two hot paths at the edge, answered in front of Django with a psycopg pool:

- GET/POST/HEAD /ping/<token>: a device heartbeat. Devices ping every few minutes and all
  at once at the top of the hour; the full Django request cycle costs ten round trips a
  ping. Here pings are batched: those that arrive while a statement is in flight go
  together in the next one, one autocommitted statement per tenant (durable before any
  of its replies) that throttles (one a second per device), moves each device's own
  rhythm and says, for every token, what became of it.
- POST /api/v1/contacts/ by a volunteer's API token: the check-in volunteers make on
  their rounds. One transaction of three statements: authorise and insert, move the
  rhythms, update the resident's summary; then the live event.

Each handles only the plain, successful case. Everything else (other signals, motion
sensors, an overdue device; other roles, outcomes that ask for attention, retries,
anything invalid or not visible) is handed to Django unchanged, which holds the full
rules and gives the full error messages. tests/watch/test_edge.py checks both paths
leave the same rows.
"""
import asyncio
import functools
import json
import logging
import re
import time
import uuid
from datetime import datetime

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.utils import timezone
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from rest_framework.authtoken.models import Token

from notifications import events
from notifications.events import to_area, to_user
from tenants.accounts.models import User, hash_token
from tenants.context import tenant_scope
from tenants.models import Domain, Tenant, Wakeup
from watch.access import ALL_AREAS
from watch.actions import MAX_FUTURE, NOTE_MAX, OVERDUE
from watch.models import (
    SIGN_OF_LIFE,
    Area,
    Assignment,
    Channel,
    ContactLog,
    Device,
    DisasterSharing,
    Outcome,
    Resident,
    Rhythm,
)

logger = logging.getLogger(__name__)

PING_PATH = re.compile(r"^/ping/(?P<token>[A-Za-z0-9_-]{16,64})(?:/heartbeat)?$")
HOST_TTL = 10.0
CONTACTS_PATH = "/api/v1/contacts/"
CONTACT_FIELDS = {"resident", "channel", "outcome", "note", "idempotency_key", "occurred_at"}
TOKEN_SHAPE = re.compile(r"^[0-9a-f]{40}$")
MAX_BODY = 8192
# Outcomes that ask for attention (they raise concerns) go through Django's action.
EDGE_OUTCOMES = {o.value for o in Outcome} - {Outcome.WORRIED, Outcome.ASKED_FOR_CALL}
EDGE_SIGN_OF_LIFE = {o.value for o in SIGN_OF_LIFE}

# 1. The token is a volunteer's, the resident is theirs and shareable (watch.access rules
#    for volunteers), then the insert; a retried key inserts nothing (Django answers it).
_CONTACT_INSERT = """
WITH u AS (
    SELECT usr.id, usr.display_name, usr.username FROM {token} t JOIN {user} usr ON usr.id = t.user_id
    WHERE t.key = %(token)s AND usr.is_active AND usr.role = 'volunteer'),
res AS (
    SELECT r.id, a.path FROM {resident} r JOIN {area} a ON a.id = r.area_id
    WHERE r.id = %(resident)s AND r.status <> 'ended'
      AND EXISTS (SELECT 1 FROM {assignment} s WHERE s.resident_id = r.id AND s.user_id = (SELECT id FROM u))
      AND ((r.consent = 'given' AND r.consent_share_with_volunteers)
           OR (r.needs_evacuation_support AND EXISTS (SELECT 1 FROM {disaster} d WHERE d.ended_at IS NULL)))),
ins AS (
    INSERT INTO {contact} (resident_id, occurred_at, logged_by_id, channel, outcome, note, idempotency_key,
                           created_at)
    SELECT res.id, %(at)s, (SELECT id FROM u), %(channel)s, %(outcome)s, %(note)s, %(key)s, now() FROM res
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, created_at)
SELECT (SELECT id FROM u), (SELECT coalesce(nullif(display_name, ''), username) FROM u), (SELECT path FROM res),
       (SELECT id FROM ins), (SELECT created_at FROM ins)
"""
# 2. Move the rhythms the contact satisfies (as watch.actions._reset_rhythms does).
_CONTACT_RHYTHMS = """
UPDATE {rhythm} AS r
SET last_contact_at = GREATEST(COALESCE(r.last_contact_at, %(at)s), %(at)s),
    alert_at = GREATEST(COALESCE(r.last_contact_at, %(at)s), %(at)s) + r."interval" + r.grace,
    state = 'ok', overdue_since = NULL
FROM (SELECT id, state, alert_at FROM {rhythm}
      WHERE resident_id = %(resident)s AND device_id IS NULL AND channel IN ('', %(channel)s) AND state <> 'paused'
        AND (last_contact_at IS NULL OR last_contact_at < %(at)s OR state <> 'ok')
      FOR UPDATE) AS old
WHERE r.id = old.id
RETURNING r.alert_at, (old.state <> 'ok' OR old.alert_at IS NULL)
"""
# 3. The resident's summary for the overview, and who is on the team (for the event).
_CONTACT_SUMMARY = """
UPDATE {resident} SET
    last_outcome = CASE WHEN last_contact_at IS NULL OR last_contact_at <= %(at)s THEN %(outcome)s
                        ELSE last_outcome END,
    last_contact_at = GREATEST(COALESCE(last_contact_at, %(at)s), %(at)s),
    next_due_at = (SELECT min(alert_at) FROM {rhythm} WHERE resident_id = %(resident)s AND device_id IS NULL
                   AND state <> 'paused'),
    is_overdue = EXISTS (SELECT 1 FROM {rhythm} WHERE resident_id = %(resident)s AND state = 'overdue')
WHERE id = %(resident)s
RETURNING last_contact_at, last_outcome, next_due_at, is_overdue,
          ARRAY(SELECT user_id FROM {assignment} WHERE resident_id = %(resident)s)
"""

# Devices, then their rhythms, are locked in id order (as the overdue sweep locks
# rhythms), so batches and sweeps cannot deadlock; the throttle is checked again on the
# locked row.
_HEARTBEATS = """
WITH input AS (SELECT DISTINCT unnest(%(hashes)s::text[]) AS hash),
locked AS (
    SELECT dev.id FROM {device} dev JOIN input ON dev.token_hash = input.hash
    WHERE dev.revoked_at IS NULL AND dev.kind <> 'motion'
      AND (dev.last_signal_at IS NULL OR dev.last_signal_at <= now() - interval '1 second')
    ORDER BY dev.id FOR UPDATE OF dev),
d AS (
    UPDATE {device} dev SET last_signal_at = now(), battery_low = false
    FROM locked WHERE dev.id = locked.id
      AND (dev.last_signal_at IS NULL OR dev.last_signal_at <= now() - interval '1 second')
    RETURNING dev.id, dev.token_hash),
r_locked AS (
    SELECT rh.id FROM {rhythm} rh JOIN d ON rh.device_id = d.id WHERE rh.state = 'ok'
    ORDER BY rh.id FOR UPDATE OF rh),
r AS (
    UPDATE {rhythm} rh SET last_contact_at = now(), alert_at = now() + rh."interval" + rh.grace
    FROM r_locked WHERE rh.id = r_locked.id AND rh.state = 'ok')
SELECT input.hash, d.id, dev.kind,
       d.id IS NOT NULL AND EXISTS (SELECT 1 FROM {rhythm} WHERE device_id = d.id AND state = 'overdue')
FROM input LEFT JOIN d ON d.token_hash = input.hash
LEFT JOIN {device} dev ON dev.token_hash = input.hash AND dev.revoked_at IS NULL
"""
_HOST = (
    'SELECT t.schema_name FROM public.{domain} d JOIN public.{tenant} t ON t.id = d.tenant_id '
    "WHERE d.domain = %(host)s AND t.is_active AND t.schema_name <> 'public'"
)


# Few statements, run all the time: planned once (the heartbeat batch costs more to plan
# than to run); and bounded, so a tenant's long lock answers 5xx instead of holding a ping.
EDGE_SERVER_OPTIONS = "-c plan_cache_mode=force_generic_plan -c lock_timeout=2s -c statement_timeout=5s"


def _conninfo() -> str:
    db = settings.DATABASES["default"]
    parts = {"dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"], "host": db["HOST"],
             "port": db["PORT"], **db.get("OPTIONS", {})}
    parts["options"] = f"{parts.get('options', '')} {EDGE_SERVER_OPTIONS}".strip()
    return " ".join(f"{k}='{v}'" for k, v in parts.items() if v)


class Edge:
    """ASGI middleware: answers plain heartbeats and check-ins itself, passes everything else on."""

    def __init__(self, inner, pool_size: int | None = None):
        self.inner = inner
        self.pool_size = pool_size or int(getattr(settings, "PING_POOL_SIZE", 8))
        self.pool: AsyncConnectionPool | None = None
        self.pool_loop = None
        self.hosts: dict[str, tuple[float, str | None]] = {}
        self.heartbeats: _HeartbeatBatches | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("GET", "POST", "HEAD"):
            return await self.inner(scope, receive, send)
        if scope["path"] == CONTACTS_PATH and scope["method"] == "POST":
            return await self.contact(scope, receive, send)
        match = PING_PATH.match(scope["path"])
        if not match:
            return await self.inner(scope, receive, send)
        schema = await self._schema_for(scope)
        if schema is None:
            return await _reply(send, 404, b"not found\n")
        device_id, kind, overdue_rhythm = await self._batches().heartbeat(schema, hash_token(match["token"]))
        if device_id is not None:
            if overdue_rhythm:
                await _recover(schema, device_id)
            return await _reply(send, 200, b"OK\n")
        if kind is None:
            return await _reply(send, 404, b"not found\n")
        if kind == Device.Kind.MOTION:
            return await self.inner(scope, receive, send)  # a motion is a sign of life: full rules
        return await _reply(send, 429, b"too many signals; at most one a second\n")

    def _batches(self) -> "_HeartbeatBatches":
        loop = asyncio.get_running_loop()
        if self.heartbeats is None or self.heartbeats.loop is not loop:
            self.heartbeats = _HeartbeatBatches(self, loop)
        return self.heartbeats

    async def _pool(self) -> AsyncConnectionPool:
        """The pool of the running event loop (one per server process; tests start several loops)."""
        loop = asyncio.get_running_loop()
        if self.pool is None or self.pool_loop is not loop:
            self.pool = AsyncConnectionPool(_conninfo(), min_size=1, max_size=self.pool_size, open=False,
                                            kwargs={"autocommit": True, "prepare_threshold": 0})
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

    async def contact(self, scope, receive, send):
        """A volunteer's check-in, or — for anything but the plain case — Django."""
        body, more = b"", True
        while more and len(body) <= MAX_BODY:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        replay = _replayed(body, more, receive)
        token = _token(scope)
        values = _plain_contact(body) if token and not more else None
        schema = await self._schema_for(scope) if values else None
        if schema is None:
            return await self.inner(scope, replay, send)
        values["token"] = token
        try:
            async with (await self._pool()).connection() as conn, conn.transaction():
                row = await (await conn.execute(self._sql(_CONTACT_INSERT, schema), values)).fetchone()
                user_id, user_name, area_path, contact_id, created_at = row
                if contact_id is None:
                    raise _PassToDjango  # not a volunteer, not theirs, a retry: Django knows what to say
                lowered = None
                if values["outcome"] in EDGE_SIGN_OF_LIFE:
                    moved = await (await conn.execute(self._sql(_CONTACT_RHYTHMS, schema), values)).fetchall()
                    lowered = min((alert for alert, was_off in moved if was_off and alert), default=None)
                summary = await (await conn.execute(self._sql(_CONTACT_SUMMARY, schema), values)).fetchone()
                if lowered is not None:
                    await conn.execute(_LOWER_WAKEUP, {"schema": schema, "purpose": OVERDUE, "due": lowered})
        except _PassToDjango:
            return await self.inner(scope, replay, send)
        last_contact_at, last_outcome, next_due_at, overdue, team = summary
        event = {"type": "contact.logged", "resident": values["resident"],
                 "last_contact_at": last_contact_at.isoformat(), "last_outcome": last_outcome,
                 "next_due_at": next_due_at.isoformat() if next_due_at else None, "overdue": overdue,
                 "contact": contact_id, "channel": values["channel"]}
        audience = [ALL_AREAS, *[to_area(int(a)) for a in area_path.strip("/").split("/") if a],
                    *[to_user(uid) for uid in team]]
        await events.publish_now(schema, audience, event)
        answer = {"id": contact_id, "resident": values["resident"], "occurred_at": _iso(values["at"]),
                  "channel": values["channel"], "outcome": values["outcome"], "note": values["note"],
                  "logged_by": user_id, "logged_by_name": user_name, "device": None,
                  "idempotency_key": str(values["key"]) if values["key"] else None, "created_at": _iso(created_at)}
        return await _reply(send, 201, json.dumps(answer, ensure_ascii=False).encode(), "application/json")

    @staticmethod
    @functools.cache
    def _sql(template: str, schema: str) -> str:
        def table(model):
            return sql.Identifier(schema, model._meta.db_table)

        return sql.SQL(template).format(
            device=table(Device), rhythm=table(Rhythm), resident=table(Resident), area=table(Area),
            assignment=table(Assignment), disaster=table(DisasterSharing), contact=table(ContactLog),
            token=table(Token), user=table(User),
        ).as_string()


class _HeartbeatBatches:
    """Heartbeats of one event loop, in batches: while fewer than IN_FLIGHT statements
    run (half the pool; the rest is for check-ins), a heartbeat goes at once; otherwise
    it waits and goes with every other one that arrived meanwhile. Under load a batch
    grows instead of the queue for connections."""

    IN_FLIGHT = 4
    MAX_BATCH = 500

    def __init__(self, edge: Edge, loop):
        self.edge, self.loop = edge, loop
        self.waiting: list[tuple[str, str, asyncio.Future]] = []
        self.running: set[asyncio.Task] = set()

    def heartbeat(self, schema: str, token_hash: str) -> asyncio.Future:
        """(device id if the heartbeat counted, the device's kind or None, its rhythm was overdue)."""
        future = self.loop.create_future()
        self.waiting.append((schema, token_hash, future))
        if len(self.running) < self.IN_FLIGHT:
            self._start()
        return future

    def _start(self) -> None:
        batch, self.waiting = self.waiting[:self.MAX_BATCH], self.waiting[self.MAX_BATCH:]
        task = self.loop.create_task(self._run(batch))
        self.running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.running.discard(task)
        if self.waiting and len(self.running) < self.IN_FLIGHT:
            self._start()

    async def _run(self, batch: list[tuple[str, str, asyncio.Future]]) -> None:
        """Each tenant's pings in a statement of their own, on a connection of their own:
        one tenant's locks or errors never hold up or fail another's."""
        by_schema: dict[str, list[tuple[str, asyncio.Future]]] = {}
        for schema, token_hash, future in batch:
            by_schema.setdefault(schema, []).append((token_hash, future))
        try:
            await asyncio.gather(*(self._run_tenant(schema, pings) for schema, pings in by_schema.items()))
        finally:  # cancelled: nobody is left waiting
            for _schema, _hash, future in batch:
                if not future.done():
                    future.set_exception(RuntimeError("heartbeat batch cancelled"))

    async def _run_tenant(self, schema: str, pings: list[tuple[str, asyncio.Future]]) -> None:
        try:
            async with (await self.edge._pool()).connection() as conn:
                hashes = [token_hash for token_hash, _future in pings]
                rows = await (await conn.execute(Edge._sql(_HEARTBEATS, schema), {"hashes": hashes})).fetchall()
        except Exception as exc:
            for _hash, future in pings:
                if not future.done():
                    future.set_exception(exc)
            return
        outcome = {token_hash: (device_id, kind, overdue) for token_hash, device_id, kind, overdue in rows}
        counted: set[str] = set()
        for token_hash, future in pings:
            device_id, kind, overdue = outcome[token_hash]
            if token_hash in counted:  # the same device twice in one batch: the second is too fast
                device_id, overdue = None, False
            elif device_id is not None:
                counted.add(token_hash)
            if not future.done():
                future.set_result((device_id, kind, overdue))


@sync_to_async
def _recover(schema: str, device_id: int) -> None:
    from django.utils import timezone

    from watch.actions import do_device_rhythm_recovered

    with tenant_scope(schema):
        device = Device.objects.select_related("resident__area").get(pk=device_id)
        do_device_rhythm_recovered(device=device, at=device.last_signal_at or timezone.now())
    connection.close()


async def _reply(send, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _PassToDjango(Exception):
    """Raised inside the contact transaction: roll back and let Django answer."""


_LOWER_WAKEUP = sql.SQL(
    "INSERT INTO public.{wakeup} (tenant_id, purpose, due_at) "
    "SELECT id, %(purpose)s, %(due)s FROM public.{tenant} WHERE schema_name = %(schema)s "
    "ON CONFLICT (tenant_id, purpose) DO UPDATE "
    "SET due_at = LEAST(COALESCE({wakeup}.due_at, EXCLUDED.due_at), EXCLUDED.due_at)"
).format(wakeup=sql.Identifier(Wakeup._meta.db_table), tenant=sql.Identifier(Tenant._meta.db_table))


def _token(scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            scheme, _, token = value.decode("latin1").partition(" ")
            return token.strip() if scheme == "Token" and TOKEN_SHAPE.match(token.strip()) else None
    return None


def _plain_contact(body: bytes) -> dict | None:
    """The fields of a plain, valid check-in; None for anything Django should judge."""
    try:
        data = json.loads(body)
        resident = data["resident"]
        channel, outcome, note = data["channel"], data["outcome"], data.get("note", "")
        key = uuid.UUID(data["idempotency_key"]) if data.get("idempotency_key") is not None else None
        at = datetime.fromisoformat(data["occurred_at"]) if data.get("occurred_at") else timezone.now()
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    plain = (type(resident) is int and channel in Channel.values and outcome in EDGE_OUTCOMES
             and isinstance(note, str) and len(note) <= NOTE_MAX and at.tzinfo is not None
             and at <= timezone.now() + MAX_FUTURE and set(data) <= CONTACT_FIELDS)
    if not plain:
        return None
    return {"resident": resident, "channel": channel, "outcome": outcome, "note": note, "key": key, "at": at}


def _replayed(body: bytes, more: bool, receive):
    """A receive() that gives Django the body this middleware already read."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


def _iso(value) -> str:
    return timezone.localtime(value).isoformat()
