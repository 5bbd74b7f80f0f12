"""The answer link's POST answered in front of Django, for answers arriving by the
thousand a second (a safety check's SMS reaching a whole town at once).

POST /r/a/<token>/ with the page's form (answer=…, the CSRF token as Django would accept
it from this origin): the token's signature is checked without the database, and the
answers that arrive while a statement is in flight go together in the next one, one
autocommitted UPDATE per tenant, durable before any of its replies. It records exactly
what outreach.answers.do_record_answer records (first answer wins, late after the
deadline, the answers each kind of question offers, taken from answers.OUTCOMES) and
answers 303 to the link's page, as Django's view does. After the statement: one apply
task per tenant and batch (the answers become contacts, "needs help" first) and one
"changed" per check for the live progress (coalesced, answers.progress_changed_is_due).

Only the plain case: anything else (a household check, an answer already given or not
offered, a bad token, a form or CSRF token Django might judge otherwise, a body too
long) is handed to Django unchanged, which holds the full rules and the full pages.
tests/outreach/test_answer_edge.py checks both paths leave the same rows.

Each connection runs the database's defaults of watch.edge (statement and lock
timeouts), through watch.edge's pool: one pool per server process for every edge path.
"""
import asyncio
import functools
import logging
import re
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.conf import settings
from django.middleware.csrf import CSRF_TOKEN_LENGTH, _unmask_cipher_token
from django.utils.crypto import constant_time_compare
from psycopg import sql

from notifications import events
from outreach import answers
from outreach.models import Ask, SafetyCheck
from watch.edge import (
    CSRF_SECRET,
    CSRF_SENT,
    MAX_BODY,
    UNAVAILABLE,
    StatementBatches,
    _replayed,
    _reply,
    _unavailable,
)
from watch.models import Channel

logger = logging.getLogger(__name__)

ANSWER_PATH = re.compile(r"^/r/a/(?P<token>[0-9]{1,18}\.[A-Za-z0-9_-]{20,100})/$")
FORM = b"application/x-www-form-urlencoded"
FIELDS = {"answer", "csrfmiddlewaretoken"}

# Values from the one definition of each rule (outreach.answers, outreach.models).
RULES = {
    "answered": Ask.State.ANSWERED.value, "via": Channel.LINK.value,
    "safety": Ask.Kind.SAFETY.value, "checkin": Ask.Kind.CHECKIN.value,
    "safety_answers": [str(a) for a in answers.OUTCOMES[Ask.Kind.SAFETY]],
    "checkin_answers": [str(a) for a in answers.OUTCOMES[Ask.Kind.CHECKIN]],
}
ALL_ANSWERS = set(RULES["safety_answers"]) | set(RULES["checkin_answers"])

# do_record_answer as one statement for many asks: rows locked in id order (no deadlock
# with another batch), the first answer sent for an ask in the batch is the one tried,
# a household's check is left to Django (it answers every ask of the household).
_ANSWERS = """
WITH sent AS (
    SELECT DISTINCT ON (id) id, answer
    FROM unnest(%(ids)s::bigint[], %(answers)s::text[], %(order)s::int[]) AS s(id, answer, n)
    ORDER BY id, n
), target AS (
    SELECT a.id FROM {ask} AS a WHERE a.id IN (SELECT id FROM sent) AND a.answer = '' ORDER BY a.id FOR UPDATE
)
UPDATE {ask} AS a
SET state = %(answered)s, answer = sent.answer, answered_at = now(), answered_via = %(via)s,
    answered_by_id = NULL, next_attempt_at = NULL, delivering_until = NULL,
    late = COALESCE((SELECT now() > c.deadline FROM {check} AS c WHERE c.id = a.safety_check_id), false)
FROM sent
WHERE a.id = sent.id AND a.id IN (SELECT id FROM target) AND a.answer = ''
  AND CASE a.kind
        WHEN %(safety)s THEN sent.answer = ANY(%(safety_answers)s) AND NOT (
            a.household_key <> ''
            AND EXISTS (SELECT 1 FROM {check} AS c WHERE c.id = a.safety_check_id AND c.by_household))
        WHEN %(checkin)s THEN sent.answer = ANY(%(checkin_answers)s)
        ELSE false
      END
RETURNING a.id, a.answer, a.safety_check_id
"""


@functools.cache
def _sql(schema: str) -> str:
    return sql.SQL(_ANSWERS).format(ask=sql.Identifier(schema, Ask._meta.db_table),
                                    check=sql.Identifier(schema, SafetyCheck._meta.db_table)).as_string()


class AnswerEdge:
    """ASGI middleware in front of watch.edge.Edge (whose pool and host cache it uses)."""

    def __init__(self, inner):
        self.inner = inner
        self.batches: _AnswerBatches | None = None
        self.tasks: set[asyncio.Task] = set()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not (match := ANSWER_PATH.match(scope["path"])):
            return await self.inner(scope, receive, send)
        try:
            return await self.answer(scope, receive, send, match["token"])
        except UNAVAILABLE:
            # Nothing was committed, or the outcome is unknown: the link again records at most one answer.
            logger.warning("answer edge: database unavailable", exc_info=True)
            return await _unavailable(scope, send)

    async def answer(self, scope, receive, send, token: str):
        body, more = b"", True
        while more and len(body) <= MAX_BODY:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        replay = _replayed(body, more, receive)
        answer = None if more else _plain_answer(scope, body)
        schema = await self.inner._schema_for(scope) if answer else None
        ask_id = answers.ask_id_for_token(token, schema) if schema else None
        if ask_id is None or not 0 < ask_id < 2**63:
            return await self.inner(scope, replay, send)
        recorded = await self._batches().answer(schema, ask_id, answer)
        if recorded is None:
            return await self.inner(scope, replay, send)  # answered already, or not the plain case
        return await _reply(send, 303, b"", headers=((b"location", scope["path"].encode()),))

    def _batches(self) -> "_AnswerBatches":
        loop = asyncio.get_running_loop()
        if self.batches is None or self.batches.loop is not loop:
            self.batches = _AnswerBatches(self, loop)
        return self.batches

    def after(self, schema: str, check_ids: set[int]) -> None:
        """After a batch's commit: its apply task and live "changed" events (not awaited:
        the reply is the commit; the sweep applies what a lost task left)."""
        task = asyncio.get_running_loop().create_task(self._after(schema, check_ids))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _after(self, schema: str, check_ids: set[int]) -> None:
        for check_id in check_ids:
            if answers.progress_changed_is_due(schema, check_id):
                await events.publish_now(schema, [answers.progress_audience(check_id)],
                                         answers.progress_changed_event(check_id))
        try:
            await _enqueue_apply(schema)
        except Exception:
            logger.exception("answer edge: apply task of %s not enqueued; the sweep applies the answers", schema)


@sync_to_async(thread_sensitive=False)
def _enqueue_apply(schema: str) -> None:
    from django.db import connection

    from outreach.tasks import apply_answers
    from tenants.tasks import enqueue

    try:
        enqueue(apply_answers, schema)
    finally:
        connection.close()  # an eager task (tests) used this worker thread's connection


def _plain_answer(scope, body: bytes) -> str | None:
    """The answer of a plain answer form, with a CSRF token Django would accept from this
    origin; None for anything else (Django judges it)."""
    headers = {}
    for key, value in scope.get("headers", []):
        if key in (b"cookie", b"x-csrftoken", b"origin", b"host", b"content-type"):
            headers[key] = value
    if headers.get(b"content-type", b"").split(b";")[0].strip().lower() != FORM:
        return None
    try:
        form = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        cookies = SimpleCookie()
        cookies.load(headers.get(b"cookie", b"").decode("latin1"))
    except (ValueError, UnicodeError, CookieError):
        return None
    if not set(form) <= FIELDS or any(len(values) != 1 for values in form.values()):
        return None
    answer = form.get("answer", [""])[0]
    if answer not in ALL_ANSWERS:
        return None
    scheme = scope.get("scheme", "http")
    origin = headers.get(b"origin")
    if origin is not None and origin.decode("latin1") != f"{scheme}://{headers.get(b'host', b'').decode('latin1')}":
        return None
    if origin is None and scheme == "https":
        return None  # Django checks the Referer then
    secret = cookies.get(settings.CSRF_COOKIE_NAME)
    sent = form.get("csrfmiddlewaretoken", [""])[0] or headers.get(b"x-csrftoken", b"").decode("latin1")
    if not (secret and CSRF_SECRET.match(secret.value) and CSRF_SENT.match(sent)):
        return None
    unmasked = _unmask_cipher_token(sent) if len(sent) == CSRF_TOKEN_LENGTH else sent
    if not constant_time_compare(unmasked, secret.value):
        return None
    return answer


class _AnswerBatches(StatementBatches):
    """Answer-link POSTs, batched as the edge batches heartbeats."""

    IN_FLIGHT = 2

    def answer(self, schema: str, ask_id: int, answer: str) -> asyncio.Future:
        """Resolves to the ask's check id (0 for a check-in) if this answer was recorded,
        None if not (Django answers then)."""
        return self.add(schema, ask_id, answer)

    async def _run(self, batch) -> None:
        by_schema: dict[str, list] = {}
        for schema, ask_id, answer, future in batch:
            by_schema.setdefault(schema, []).append((ask_id, answer, future))
        try:
            await asyncio.gather(*(self._run_tenant(schema, items) for schema, items in by_schema.items()))
        finally:
            for *_rest, future in batch:
                if not future.done():
                    future.set_exception(RuntimeError("answer batch cancelled"))

    async def _run_tenant(self, schema: str, items) -> None:
        params = {"ids": [i for i, _a, _f in items], "answers": [a for _i, a, _f in items],
                  "order": list(range(len(items))), **RULES}
        try:
            async with (await self.edge.inner._pool()).connection() as conn:
                rows = await (await conn.execute(_sql(schema), params)).fetchall()
        except Exception as exc:
            for _i, _a, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        recorded = {ask_id: (answer, check_id) for ask_id, answer, check_id in rows}
        for ask_id, answer, future in items:
            done = recorded.get(ask_id)
            if future.done():
                continue
            if done is not None and done[0] == answer:
                del recorded[ask_id]  # one request per ask is the one that recorded it
                future.set_result(done[1] or 0)
            else:
                future.set_result(None)
        if rows:
            self.edge.after(schema, {check_id for _i, _a, check_id in rows if check_id})
