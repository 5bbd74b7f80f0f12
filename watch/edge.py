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
import abc
import asyncio
import functools
import json
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from http.cookies import CookieError, SimpleCookie
from types import SimpleNamespace

import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH, CSRF_TOKEN_LENGTH, _unmask_cipher_token
from django.utils import timezone, translation
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from notifications import events
from tenants.accounts.models import ApiToken, User, hash_token
from tenants.context import HostCache, tenant_scope
from tenants.models import Domain, Tenant, Wakeup
from watch.access import ASSOCIATION, LENSES, VOLUNTEERS, audience_for, passes_filters
from watch.actions import DEVICE_MIN_GAP, NOTE_MAX, OVERDUE, occurred_in_window, resident_event
from watch.models import (
    ATTENTION_OUTCOMES,
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
from watch.visits import completion_params, completion_sql

logger = logging.getLogger(__name__)

PING_PATH = re.compile(r"^/ping/(?P<token>[A-Za-z0-9_-]{16,64})(?:/heartbeat)?$")
CONTACTS_PATH = "/api/v1/contacts/"
CONTACT_FIELDS = {"resident", "channel", "outcome", "note", "idempotency_key", "occurred_at"}
TOKEN_SHAPE = re.compile(r"^[0-9a-f]{40}$")
SESSION_SHAPE = re.compile(r"^[a-z0-9]{32}$")
CSRF_SECRET = re.compile(rf"^[{CSRF_ALLOWED_CHARS}]{{{CSRF_SECRET_LENGTH}}}$")
CSRF_SENT = re.compile(rf"^([{CSRF_ALLOWED_CHARS}]{{{CSRF_SECRET_LENGTH}}}){{1,2}}$")  # the secret, or masked
# Those whose lens reaches residents only through their team (volunteers): the edge
# judges their check-ins; everyone else's go to Django.
EDGE_LENSES = [lens for lens in LENSES.values() if lens.assigned and not (lens.areas or lens.whole_tenant)]
MAX_BODY = 8192
# Outcomes that ask for attention (they raise concerns) go through Django's action.
EDGE_OUTCOMES = {o.value for o in Outcome} - ATTENTION_OUTCOMES
EDGE_SIGN_OF_LIFE = {o.value for o in SIGN_OF_LIFE}

# Every rule value in these statements is a parameter or a fragment from the Python
# definitions (watch.models, watch.actions, watch.access); tests/watch/test_edge.py runs
# both paths on the same input and compares every row touched and the event.

# 1. What the visibility rule needs to judge the check-in, and who is asking: the
#    resident's facts, its active team, the disaster exception, and the session's data or
#    the token's user. Judged in Python by watch.access, as for every other path.
_CONTACT_FACTS = """
SELECT r.status, r.consent, r.consent_share_with_volunteers, r.consent_share_with_association,
       r.needs_evacuation_support, a.path,
       EXISTS (SELECT 1 FROM {disaster} d WHERE d.ended_at IS NULL),
       (SELECT json_agg(json_build_array(u.id, u.role, u.password, coalesce(nullif(u.display_name, ''), u.username),
                                         u.must_change_password))
        FROM {assignment} s JOIN {user} u ON u.id = s.user_id WHERE s.resident_id = r.id AND u.is_active),
       (SELECT session_data FROM {session} WHERE session_key = %(session)s AND expire_date > now()),
       (SELECT user_id FROM {token} WHERE key_hash = %(token)s AND expires_at > now())
FROM {resident} r JOIN {area} a ON a.id = r.area_id
WHERE r.id = %(resident)s
"""
# 2. The insert; a retried key inserts nothing (Django answers the retry).
_CONTACT_INSERT = """
INSERT INTO {contact} (resident_id, occurred_at, logged_by_id, channel, outcome, note, idempotency_key, created_at)
VALUES (%(resident)s, %(at)s, %(user)s, %(channel)s, %(outcome)s, %(note)s, %(key)s, now())
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, created_at
"""
# 3. Move the rhythms the contact satisfies (as watch.actions._reset_rhythms does).
_CONTACT_RHYTHMS = """
UPDATE {rhythm} AS r
SET last_contact_at = GREATEST(COALESCE(r.last_contact_at, %(at)s), %(at)s),
    alert_at = {alert_at},
    state = %(ok)s, overdue_since = NULL
FROM (SELECT id, state, alert_at FROM {rhythm}
      WHERE resident_id = %(resident)s AND device_id IS NULL AND channel IN (%(any_channel)s, %(channel)s)
        AND state <> %(paused)s AND (last_contact_at IS NULL OR last_contact_at < %(at)s OR state <> %(ok)s)
      FOR UPDATE) AS old
WHERE r.id = old.id
RETURNING r.alert_at, (old.state = %(overdue)s OR old.alert_at IS NULL)
"""
# 4. The resident's summary for the overview and the event.
_CONTACT_SUMMARY = """
UPDATE {resident} SET
    last_outcome = CASE WHEN last_contact_at IS NULL OR last_contact_at <= %(at)s THEN %(outcome)s
                        ELSE last_outcome END,
    last_contact_at = GREATEST(COALESCE(last_contact_at, %(at)s), %(at)s),
    next_due_at = (SELECT min(alert_at) FROM {rhythm} WHERE resident_id = %(resident)s AND device_id IS NULL
                   AND state <> %(paused)s),
    is_overdue = EXISTS (SELECT 1 FROM {rhythm} WHERE resident_id = %(resident)s AND state = %(overdue)s)
WHERE id = %(resident)s
RETURNING last_contact_at, last_outcome, next_due_at, is_overdue
"""

# Devices, then their rhythms, are locked in id order (as the overdue sweep locks
# rhythms), so batches and sweeps cannot deadlock; the throttle is checked again on the
# locked row.
_HEARTBEATS = """
WITH input AS (SELECT DISTINCT unnest(%(hashes)s::text[]) AS hash),
locked AS (
    SELECT dev.id FROM {device} dev JOIN input ON dev.token_hash = input.hash
    WHERE dev.revoked_at IS NULL AND dev.kind <> %(motion)s
      AND (dev.last_signal_at IS NULL OR dev.last_signal_at <= now() - %(min_gap)s)
    ORDER BY dev.id FOR UPDATE OF dev),
d AS (
    UPDATE {device} dev SET last_signal_at = now(), battery_low = false
    FROM locked WHERE dev.id = locked.id
      AND (dev.last_signal_at IS NULL OR dev.last_signal_at <= now() - %(min_gap)s)
    RETURNING dev.id, dev.token_hash),
r_locked AS (
    SELECT rh.id FROM {rhythm} rh JOIN d ON rh.device_id = d.id WHERE rh.state = %(ok)s
    ORDER BY rh.id FOR UPDATE OF rh),
r AS (
    UPDATE {rhythm} rh SET last_contact_at = now(), alert_at = {heartbeat_alert_at}
    FROM r_locked WHERE rh.id = r_locked.id AND rh.state = %(ok)s)
SELECT input.hash, d.id, dev.kind,
       d.id IS NOT NULL AND EXISTS (SELECT 1 FROM {rhythm} WHERE device_id = d.id AND state = %(overdue)s)
FROM input LEFT JOIN d ON d.token_hash = input.hash
LEFT JOIN {device} dev ON dev.token_hash = input.hash AND dev.revoked_at IS NULL
"""
# The rule values the statements take as parameters.
RULES = {"ok": Rhythm.State.OK.value, "overdue": Rhythm.State.OVERDUE.value, "paused": Rhythm.State.PAUSED.value,
         "any_channel": Rhythm.ANY_CHANNEL, "motion": Device.Kind.MOTION.value, "min_gap": DEVICE_MIN_GAP}
_HOST = (
    'SELECT t.schema_name FROM public.{domain} d JOIN public.{tenant} t ON t.id = d.tenant_id '
    "WHERE d.domain = %(host)s AND t.is_active AND t.schema_name <> 'public'"
)


# Few statements, run all the time: planned once (the heartbeat batch costs more to plan
# than to run); and bounded, so a tenant's long lock answers 5xx instead of holding a ping.
EDGE_SERVER_OPTIONS = "-c plan_cache_mode=force_generic_plan -c lock_timeout=2s -c statement_timeout=5s"
# With the database unreachable, a request waits at most this long (to connect, or for a
# pooled connection) before it is answered 503 with Retry-After.
EDGE_WAIT_SECONDS = 2
UNAVAILABLE = (psycopg.OperationalError, PoolTimeout)


def _conninfo() -> str:
    db = settings.DATABASES["default"]
    parts = {"dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"], "host": db["HOST"],
             "port": db["PORT"], **db.get("OPTIONS", {})}
    parts["options"] = f"{parts.get('options', '')} {EDGE_SERVER_OPTIONS}".strip()
    parts.setdefault("connect_timeout", EDGE_WAIT_SECONDS)
    return " ".join(f"{k}='{v}'" for k, v in parts.items() if v)


class Edge:
    """ASGI middleware: answers plain heartbeats and check-ins itself, passes everything else on."""

    def __init__(self, inner, pool_size: int | None = None):
        self.inner = inner
        self.pool_size = pool_size or int(getattr(settings, "PING_POOL_SIZE", 8))
        self.pool: AsyncConnectionPool | None = None
        self.pool_loop = None
        self.hosts = HostCache()
        self.heartbeats: _HeartbeatBatches | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("GET", "POST", "HEAD"):
            return await self.inner(scope, receive, send)
        if scope["path"] == CONTACTS_PATH and scope["method"] == "POST":
            handle = self.contact
        elif PING_PATH.match(scope["path"]):
            handle = self.heartbeat
        else:
            return await self.inner(scope, receive, send)
        try:
            return await handle(scope, receive, send)
        except UNAVAILABLE:
            # Nothing was committed (or the commit's outcome is unknown: a retry with the
            # same idempotency key is answered with the original entry).
            logger.warning("edge: database unavailable for %s", scope["path"], exc_info=True)
            return await _unavailable(scope, send)

    async def heartbeat(self, scope, receive, send):
        match = PING_PATH.match(scope["path"])
        schema = await self._schema_for(scope)
        if schema is None:
            return await _reply(send, 404, b"not found\n")
        device_id, kind, overdue_rhythm = await self._batches().heartbeat(schema, hash_token(match["token"]))
        if device_id is not None:
            if overdue_rhythm:
                try:
                    await _recover(schema, device_id)
                except Exception:  # the heartbeat is committed; the next one recovers the rhythm
                    logger.exception("edge: device %s of %s not put back on time", device_id, schema)
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
                                            timeout=EDGE_WAIT_SECONDS,
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
        cached = self.hosts.get(host)
        if cached is not HostCache.MISSING:
            return cached
        async with (await self._pool()).connection() as conn:
            query = sql.SQL(_HOST).format(domain=sql.Identifier(Domain._meta.db_table),
                                          tenant=sql.Identifier(Tenant._meta.db_table))
            row = await (await conn.execute(query, {"host": host})).fetchone()
        schema = row[0] if row else None
        self.hosts.put(host, schema)
        return schema

    async def contact(self, scope, receive, send):
        """A volunteer's check-in from the phone page (session) or the API (token), or —
        for anything but the plain case — Django."""
        body, more = b"", True
        while more and len(body) <= MAX_BODY:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        replay = _replayed(body, more, receive)
        credentials = _credentials(scope)
        values = _plain_contact(body) if credentials and not more else None
        schema = await self._schema_for(scope) if values else None
        if schema is None:
            return await self.inner(scope, replay, send)
        values.update(credentials, **RULES)
        try:
            async with (await self._pool()).connection() as conn, conn.transaction():
                facts = await (await conn.execute(self._sql(_CONTACT_FACTS, schema), values)).fetchone()
                if facts is None:
                    raise _PassToDjango  # no such resident: Django's 404
                resident, area_ids, team, disaster, user = _judge(schema, values, facts)
                values["user"] = user.id
                inserted = await (await conn.execute(self._sql(_CONTACT_INSERT, schema), values)).fetchone()
                if inserted is None:
                    raise _PassToDjango  # a retry: Django hands back the original entry
                contact_id, created_at = inserted
                # Sent together (one round trip; the server runs them in this order): the
                # rhythms it moves, the resident's summary, and the visits it completes
                # (the action's own statement, watch.visits).
                async with conn.pipeline():
                    moved = (await conn.execute(self._sql(_CONTACT_RHYTHMS, schema), values)
                             if values["outcome"] in EDGE_SIGN_OF_LIFE else None)
                    summary = await conn.execute(self._sql(_CONTACT_SUMMARY, schema), values)
                    await conn.execute(completion_sql(schema), completion_params(
                        schema=schema, resident=values["resident"], contact=contact_id, at=values["at"],
                        user=user.id, channel=values["channel"]))
                moved = await moved.fetchall() if moved is not None else []
                summary = await summary.fetchone()
                lowered = min((alert for alert, was_off in moved if was_off and alert), default=None)
                if lowered is not None:
                    await conn.execute(_LOWER_WAKEUP, {"schema": schema, "purpose": OVERDUE, "due": lowered})
        except _PassToDjango:
            return await self.inner(scope, replay, send)
        resident.last_contact_at, resident.last_outcome, resident.next_due_at, resident.is_overdue = summary
        event = resident_event(resident, "contact.logged", contact=contact_id, channel=values["channel"])
        await events.publish_now(schema, audience_for(resident, area_ids, team, disaster), event)
        answer = {"id": contact_id, "resident": values["resident"], "occurred_at": _iso(values["at"]),
                  "channel": values["channel"], "outcome": values["outcome"], "note": values["note"],
                  "logged_by": user.id, "logged_by_name": user.name, "device": None,
                  "idempotency_key": str(values["key"]) if values["key"] else None, "created_at": _iso(created_at)}
        return await _reply(send, 201, json.dumps(answer, ensure_ascii=False).encode(), "application/json")

    @staticmethod
    @functools.cache
    def _sql(template: str, schema: str) -> str:
        def table(model):
            return sql.Identifier(schema, model._meta.db_table)

        def alert_at(last: str, rhythm: str):
            return sql.SQL(Rhythm.ALERT_TIME_SQL.format(last=last, rhythm=rhythm))

        return sql.SQL(template).format(
            device=table(Device), rhythm=table(Rhythm), resident=table(Resident), area=table(Area),
            assignment=table(Assignment), disaster=table(DisasterSharing), contact=table(ContactLog),
            token=table(ApiToken), user=table(User), session=table(Session),
            alert_at=alert_at("GREATEST(COALESCE(r.last_contact_at, %(at)s), %(at)s)", "r"),
            heartbeat_alert_at=alert_at("now()", "rh"),
        ).as_string()


@dataclass
class _TeamMember:
    id: int
    role: str
    password: str
    name: str
    must_change_password: bool


def _judge(schema: str, values: dict, facts: tuple):
    """Who is asking, and whether the visibility rule lets them log this check-in here;
    raises _PassToDjango for anything but a volunteer who may (Django has the full answer)."""
    status, consent, share_volunteers, share_association, evacuation, path, disaster, team, session, token_user = facts
    members = {m[0]: _TeamMember(*m) for m in team or []}
    if values["session"]:
        user_id, auth_hash = _session_user(schema, session)
        user = members.get(user_id)
        if user is None or not constant_time_compare(auth_hash, _session_auth_hash(user.password)):
            raise _PassToDjango
    else:
        user = members.get(token_user)
    lens = LENSES.get(user.role) if user else None
    if lens not in EDGE_LENSES or user.must_change_password:
        raise _PassToDjango
    resident = SimpleNamespace(pk=values["resident"], status=status, consent=consent,
                               needs_evacuation_support=evacuation,
                               **{VOLUNTEERS: share_volunteers, ASSOCIATION: share_association})
    if not passes_filters(lens, resident, disaster):  # reach: the resident is on their team
        raise _PassToDjango
    area_ids = [int(part) for part in path.strip("/").split("/") if part]
    return resident, area_ids, [(m.id, m.role) for m in members.values()], disaster, user


def _session_user(schema: str, session_data: str | None) -> tuple[int | None, str]:
    """The user id and auth hash of a session of this tenant, as django.contrib.auth reads them."""
    if not session_data:
        return None, ""
    session = SessionStore().decode(session_data)
    if session.get("schema") != schema or session.get(BACKEND_SESSION_KEY) not in settings.AUTHENTICATION_BACKENDS:
        return None, ""
    try:
        return int(session.get(SESSION_KEY)), str(session.get(HASH_SESSION_KEY, ""))
    except (TypeError, ValueError):
        return None, ""


def _session_auth_hash(password: str) -> str:
    return User(password=password).get_session_auth_hash()


class StatementBatches(abc.ABC):
    """Requests of one event loop, in batches: while fewer than IN_FLIGHT statements run, a
    request goes at once; otherwise it waits and goes with every other one that arrived
    meanwhile (at most MAX_BATCH). Under load a batch grows instead of the queue for
    connections. Subclasses run a batch in `_run(batch)`, each item ending in its future."""

    IN_FLIGHT = 4
    MAX_BATCH = 500

    def __init__(self, edge, loop):
        self.edge, self.loop = edge, loop
        self.waiting: list[tuple] = []
        self.running: set[asyncio.Task] = set()

    def add(self, *item) -> asyncio.Future:
        """Queue `item`; the future resolves to what `_run` sets for it."""
        future = self.loop.create_future()
        self.waiting.append((*item, future))
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

    @abc.abstractmethod
    async def _run(self, batch: list[tuple]) -> None:
        """Run one batch; set every item's future (the last element of the item)."""


class _HeartbeatBatches(StatementBatches):
    """Heartbeats (half the pool in flight; the rest is for check-ins)."""

    def heartbeat(self, schema: str, token_hash: str) -> asyncio.Future:
        """(device id if the heartbeat counted, the device's kind or None, its rhythm was overdue)."""
        return self.add(schema, token_hash)

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
                statement = Edge._sql(_HEARTBEATS, schema)
                rows = await (await conn.execute(statement, {"hashes": hashes, **RULES})).fetchall()
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


async def _reply(send, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
                 headers: tuple = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def _unavailable(scope, send) -> None:
    """503 with Retry-After, in the language the client asks for (Japanese by default)."""
    accept = next((v.decode("latin1") for k, v in scope.get("headers", []) if k == b"accept-language"), "")
    language = "en" if accept.lower().lstrip().startswith("en") else settings.LANGUAGE_CODE
    with translation.override(language):
        message = _("The service is unavailable for a moment. Try again shortly.")
    retry = [(b"retry-after", str(settings.OUTAGE_RETRY_AFTER_SECONDS).encode())]
    if scope["path"] == CONTACTS_PATH:
        body = json.dumps({"detail": message}, ensure_ascii=False).encode()
        return await _reply(send, 503, body, "application/json", retry)
    return await _reply(send, 503, f"{message}\n".encode(), headers=retry)


class _PassToDjango(Exception):
    """Raised inside the contact transaction: roll back and let Django answer."""


_LOWER_WAKEUP = sql.SQL(
    "INSERT INTO public.{wakeup} (tenant_id, purpose, due_at) "
    "SELECT id, %(purpose)s, %(due)s FROM public.{tenant} WHERE schema_name = %(schema)s "
    "ON CONFLICT (tenant_id, purpose) DO UPDATE "
    "SET due_at = LEAST(COALESCE({wakeup}.due_at, EXCLUDED.due_at), EXCLUDED.due_at)"
).format(wakeup=sql.Identifier(Wakeup._meta.db_table), tenant=sql.Identifier(Tenant._meta.db_table))


def _credentials(scope) -> dict | None:
    """An API token, or a session cookie with its CSRF token (as Django's CSRF check
    would accept it, from this origin); None for anything else (Django decides)."""
    headers = {}
    for key, value in scope.get("headers", []):
        if key in (b"authorization", b"cookie", b"x-csrftoken", b"origin", b"host"):
            headers[key] = value.decode("latin1")
    if "authorization" in (k.decode() for k in headers):
        scheme, _, token = headers[b"authorization"].partition(" ")
        token = token.strip()
        if scheme != "Token" or not TOKEN_SHAPE.match(token):
            return None
        return {"token": hash_token(token), "session": None}
    cookies = SimpleCookie()
    try:
        cookies.load(headers.get(b"cookie", ""))
    except CookieError:
        return None
    session = cookies.get(settings.SESSION_COOKIE_NAME)
    secret = cookies.get(settings.CSRF_COOKIE_NAME)
    sent = headers.get(b"x-csrftoken", "")
    origin = f"{scope.get('scheme', 'http')}://{headers.get(b'host', '')}"
    if not (session and secret and SESSION_SHAPE.match(session.value) and headers.get(b"origin") == origin):
        return None
    if not (CSRF_SECRET.match(secret.value) and CSRF_SENT.match(sent)):
        return None
    unmasked = _unmask_cipher_token(sent) if len(sent) == CSRF_TOKEN_LENGTH else sent
    if not constant_time_compare(unmasked, secret.value):
        return None
    return {"token": None, "session": session.value}


def _plain_contact(body: bytes) -> dict | None:
    """The fields of a plain, valid check-in, exactly as Django's serializer would take
    them; None for anything else (Django judges it and gives the full answer)."""
    try:
        data = json.loads(body)
        if not (isinstance(data, dict) and set(data) <= CONTACT_FIELDS):
            return None
        resident, channel, outcome = data["resident"], data["channel"], data["outcome"]
        note, key, at = data.get("note", ""), data.get("idempotency_key"), data.get("occurred_at")
        if not all(isinstance(value, str) for value in (channel, outcome, note)):
            return None
        if any(name in data and not isinstance(data[name], str) for name in ("idempotency_key", "occurred_at")):
            return None  # null, a number, …: the serializer's answer
        key = uuid.UUID(key) if key is not None else None
        at = datetime.fromisoformat(at) if at is not None else timezone.now()
        note.encode("utf-8")  # a lone surrogate cannot be stored
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, UnicodeError):
        return None
    plain = (type(resident) is int and 0 < resident < 2**63 and channel in Channel.values
             and outcome in EDGE_OUTCOMES and len(note) <= NOTE_MAX and "\x00" not in note
             and note == note.strip()  # the serializer trims; the edge does not rewrite input
             and at.tzinfo is not None and occurred_in_window(at))
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
