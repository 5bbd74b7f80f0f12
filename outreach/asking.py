"""Sending questions to residents: making the asks of a safety check or a day's check-ins,
and the dispatcher that sends them over each resident's channels.

For other parts of the app:
- `do_create_asks(check, residents)`: one Ask per resident of a safety check (call it
  when the check starts, inside its transaction); `do_create_checkin_asks(day, residents)`:
  one check-in Ask per resident for `day` (the daily check-ins call it at the chosen
  time). Both take a queryset of residents, compute each one's plan with
  `watch.reach.channels_for`, insert in bulk (COPY; a repeat inserts nothing twice) and
  hand the asks to the dispatcher after commit. They return how many asks were made.
- `do_dispatch(now=None)`: send what is due (a Celery task runs it: `outreach.tasks.
  dispatch_asks`; several may run at once). `do_start_due_held_checks(now)` (outreach.
  quakes) runs in the same pass.

The Ask row is the record and the queue. A run claims due asks with SKIP LOCKED and a
lease (`delivering_until`) and gives every provider request a `batch_key` before it is
made: LINE gets it as `X-Line-Retry-Key` (a repeat of a request LINE accepted answers
409, which counts as sent), so an ask whose run died is sent again under the same key,
with the same recipients or fewer, never shown twice. SMS and voice have no such key: an
SMS whose run may have reached Twilio is first looked up among the number's messages;
a call that may have been placed is not placed again (its silence moves it on).

After a question went out on plan[i], the ask waits the check's silence minutes for
channel i (a check-in: DailyCheckin.wait_minutes); unanswered, it moves to plan[i+1];
after the last one it is SILENT. A transient failure retries the same channel later
(NOTIFICATION_RETRY_DELAYS); a final one moves to the next channel at once.
"""
import hashlib
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from types import SimpleNamespace

from django.conf import settings
from django.db import OperationalError, connection, connections, transaction
from django.db.models import Min, Q
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from notifications import delivery
from notifications.delivery import BREAKER, ProviderResult
from outreach.answers import (
    answer_label,
    answer_token,
    answer_url,
    answers_for,
    postback_data,
    question_text,
    resident_language,
    sms_choices,
)
from outreach.models import Ask, AskAttempt, DailyCheckin, SafetyCheck
from tenants.context import absolute_url, tenant_scope
from tenants.tasks import enqueue_on_commit
from tenants.wakeups import do_lower_wakeup, do_set_wakeup
from watch.models import Channel, Resident
from watch.reach import channels_for

logger = logging.getLogger(__name__)

ASKING = "asking"  # the wakeup purpose: asks due (to send, or silent long enough), held checks due
LEASE = timedelta(seconds=60)  # a claim of 1,000 asks is sent in a few seconds
CLAIM = 1000  # asks claimed by one run at a time
LINE_BATCH = 500  # LINE's multicast takes up to 500 recipients
SMS_THREADS = 4  # SMS and calls in flight at once in one run
RUN_SECONDS = 45.0  # a run stops claiming after this and hands the rest to a new task
PARALLEL_RUNS = 3  # runs enqueued when many asks are made at once (SKIP LOCKED shares the work)
DEFAULT_SILENCE = [10, 30, 60]  # minutes, when a check names none
# LINE's limits (requests a second, per channel); we stay under 80% of them in every
# tenth of a second, counted in Redis across every worker process.
LINE_LIMITS = {"multicast": 200, "push": 2000}
LIMIT_SHARE = 0.8

# Making asks -------------------------------------------------------------------------

RESIDENT_FIELDS = ("pk", "area_id", "household_key", "line_user_id", "mobile_phone", "phone", "reach_channels")


def do_create_asks(check: SafetyCheck, residents) -> int:
    """One Ask per resident of the safety check, with its plan over the check's channels.
    `by_household`: the first resident of each household (by pk) with a channel is asked,
    the others are COVERED by their answer. Residents without a channel are NO_CHANNEL."""
    return _create(Ask.Kind.SAFETY, residents, allowed=check.channels or None, by_household=check.by_household,
                   safety_check_id=check.pk)


def do_create_checkin_asks(day: date, residents, *, at: datetime | None = None) -> int:
    """One check-in Ask per resident for `day` (none twice: a repeat for the same day
    makes nothing), due at `at` (default now), on each resident's own channels."""
    return _create(Ask.Kind.CHECKIN, residents, allowed=None, by_household=False, day=day, due_at=at)


def plans(rows, allowed: list[str] | None, by_household: bool) -> list[tuple]:
    """[(resident id, area id, household key, plan, state)] for rows of RESIDENT_FIELDS,
    ordered by resident id."""
    out = []
    leads: dict[str, int] = {}
    for pk, area_id, key, line_user_id, mobile, phone, order in sorted(rows, key=lambda r: r[0]):
        person = SimpleNamespace(line_user_id=line_user_id, mobile_phone=mobile, phone=phone, reach_channels=order)
        plan = channels_for(person, allowed)
        state = Ask.State.QUEUED if plan else Ask.State.NO_CHANNEL
        if by_household and key and plan:
            if key in leads:
                state = Ask.State.COVERED
            else:
                leads[key] = pk
        out.append((pk, area_id, key or "", plan, state))
    return out


def _create(kind: str, residents, *, allowed, by_household: bool, safety_check_id: int | None = None,
            day: date | None = None, due_at: datetime | None = None) -> int:
    now = timezone.now()
    due_at = due_at or now
    rows = plans(residents.order_by().values_list(*RESIDENT_FIELDS), allowed, by_household)
    if not rows:
        return 0
    table = connection.ops.quote_name(Ask._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE asks_new (resident_id bigint, area_id bigint, household_key varchar(300),"
                       " plan jsonb, state varchar(12)) ON COMMIT DROP")
        with cursor.cursor.copy("COPY asks_new FROM STDIN") as copy:
            for pk, area_id, key, plan, state in rows:
                copy.write_row((pk, area_id, key, json.dumps(plan), state))
        cursor.execute(
            f"""INSERT INTO {table} (kind, safety_check_id, day, resident_id, area_id, household_key, plan,
                    channel_index, state, next_attempt_at, reached, answer, answered_via, late, created_at)
                SELECT %s, %s, %s, resident_id, area_id, household_key, plan, 0, state,
                       CASE WHEN state = %s THEN %s::timestamptz END, false, '', '', false, %s
                FROM asks_new ORDER BY resident_id
                ON CONFLICT DO NOTHING""",  # noqa: S608 - table names from the models
            [kind, safety_check_id, day, Ask.State.QUEUED, due_at, now])
        created = cursor.rowcount
        cursor.execute("DROP TABLE asks_new")
        if created:
            do_lower_wakeup(connection.schema_name, ASKING, due_at)
            if due_at <= now:
                _enqueue_runs(PARALLEL_RUNS)
    logger.info("%s asks made (%s)", created, f"check {safety_check_id}" if safety_check_id else f"check-in {day}")
    return created


def _enqueue_runs(count: int = 1) -> None:
    from outreach.tasks import dispatch_asks

    if dispatch_asks.app.conf.task_always_eager:
        count = 1  # in-process (tests): one run sends everything
    for _i in range(count):
        enqueue_on_commit(dispatch_asks)


# What is sent -------------------------------------------------------------------------

def _ask(item: "Claimed", check: SafetyCheck | None) -> Ask:
    """An unsaved stand-in of the claimed ask, for the functions that take one."""
    return Ask(pk=item.pk, kind=item.kind, safety_check=check if item.kind == Ask.Kind.SAFETY else None)


def line_messages(ask: Ask) -> list:
    """The LINE message of a question (in the active language): its text and one
    quick-reply button per answer, each a postback that says the kind and the answer
    (the same for everyone, so one multicast carries it)."""
    from linebot.v3.messaging import PostbackAction, QuickReply, QuickReplyItem, TextMessage

    items = []
    for answer in answers_for(ask):
        label = answer_label(ask.kind, answer)
        items.append(QuickReplyItem(action=PostbackAction(label=label[:20], display_text=label,
                                                          data=postback_data(ask.kind, answer))))
    return [TextMessage(text=question_text(ask)[:5000], quick_reply=QuickReply(items=items))]


def sms_text(ask: Ask) -> str:
    """The SMS of a question: the question, the digits a reply may be, and the answer link."""
    return (f"{question_text(ask)}\n{sms_choices(ask.kind)}\n"
            f"{_('Or answer here:')} {answer_url(ask)}")[:1500]


def voice_url(ask) -> str:
    """The address the call fetches its TwiML from (outreach.views_voice)."""
    return absolute_url(connection.schema_name, reverse("residents:voice", args=[answer_token(ask)]))


def silence_after(kind: str, check: SafetyCheck | None, index: int, wait_minutes: int | None) -> timedelta:
    """How long an ask waits for an answer after going out on plan[index]."""
    if kind == Ask.Kind.CHECKIN:
        return timedelta(minutes=wait_minutes if wait_minutes is not None else 60)
    minutes = (check.silence_minutes if check is not None and check.silence_minutes else DEFAULT_SILENCE)
    return timedelta(minutes=float(minutes[min(index, len(minutes) - 1)]))


# The rate limit shared by every worker process ------------------------------------------

_redis = None


def _redis_client():
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    return _redis


def line_slot(endpoint: str, token: str) -> None:
    """Wait until one more `endpoint` request fits LINE's limit for this channel (token):
    at most LIMIT_SHARE of it in each tenth of a second, counted in Redis by every
    process. Without Redis, this process alone keeps to a tenth of the limit."""
    per_tick = max(1, int(LINE_LIMITS[endpoint] * LIMIT_SHARE / 10))
    channel = hashlib.sha256(token.encode()).hexdigest()[:16]
    while True:
        tick = int(time.time() * 10)
        key = f"mimamori:line-rate:{channel}:{endpoint}:{tick}"
        try:
            pipe = _redis_client().pipeline()
            pipe.incr(key)
            pipe.expire(key, 3)
            count = pipe.execute()[0]
        except Exception:  # Redis down: keep well under the limit on our own
            logger.warning("LINE rate limiter without Redis: pacing this process alone")
            time.sleep(10 / LINE_LIMITS[endpoint])
            return
        if count <= per_tick:
            return
        time.sleep(max(0.0, (tick + 1) / 10 - time.time()) + 0.001)


# The dispatcher ----------------------------------------------------------------------

@dataclass
class Claimed:
    pk: int
    kind: str
    check_id: int | None
    resident_id: int
    plan: list
    index: int
    batch_key: uuid.UUID | None
    language: str
    address: str
    new_key: bool = False

    @property
    def channel(self) -> str:
        return self.plan[self.index]


@dataclass
class Outcome:
    sent: list = field(default_factory=list)  # (claimed, result)
    unsure: list = field(default_factory=list)  # (claimed, result): may have been placed: wait, not reached
    retry: list = field(default_factory=list)  # (claimed, result, keep_key)
    failed: list = field(default_factory=list)  # (claimed, result)
    paused: list = field(default_factory=list)  # (claimed, seconds)


def do_dispatch(now: datetime | None = None) -> int:
    """Send the asks that are due (and move silent ones on) until none is due or the
    run's time is up; returns how many asks were handed to a provider. With `now`
    (tests), every time in the run is `now`. Assumes the tenant's schema is active."""
    clock = (lambda: now) if now is not None else timezone.now
    started = time.monotonic()
    handed = 0
    more = True
    while time.monotonic() - started < RUN_SECONDS:
        _move_silent(clock())
        claimed = _claim(clock())
        if not claimed:
            more = False
            break
        handed += _send(claimed, clock)
    if more:
        _enqueue_runs(1)  # the time is up with work left: a fresh task goes on
    _set_next_wakeup()
    return handed


def _move_silent(now: datetime) -> None:
    """Asks that waited their silence out: to the next channel, or SILENT after the last."""
    table = connection.ops.quote_name(Ask._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {table} SET
                  state = CASE WHEN channel_index + 1 < jsonb_array_length(plan) THEN %s ELSE %s END,
                  channel_index = LEAST(channel_index + 1, GREATEST(jsonb_array_length(plan) - 1, 0)),
                  next_attempt_at = CASE WHEN channel_index + 1 < jsonb_array_length(plan) THEN %s END,
                  batch_key = NULL, delivering_until = NULL
                WHERE state = %s AND next_attempt_at <= %s AND answer = ''""",  # noqa: S608 - table names from the models
            [Ask.State.QUEUED, Ask.State.SILENT, now, Ask.State.WAITING, now])
        cursor.execute(f"UPDATE {table} SET next_attempt_at = %s WHERE state = %s AND next_attempt_at IS NULL",  # noqa: S608 - table names from the models
                       [now, Ask.State.QUEUED])


def _claim(now: datetime) -> list[Claimed]:
    """Due asks of open checks and check-ins, held by a lease; every provider request
    gets its batch key before it is made (an unfinished request's key is kept, and all
    the still-queued asks of that request are claimed with it)."""
    table = connection.ops.quote_name(Ask._meta.db_table)
    residents = connection.ops.quote_name(Resident._meta.db_table)
    checks = connection.ops.quote_name(SafetyCheck._meta.db_table)
    select = f"""SELECT a.id, a.kind, a.safety_check_id, a.resident_id, a.plan, a.channel_index, a.batch_key,
                        r.language, r.line_user_id, r.mobile_phone, r.phone, r.reach_channels
                 FROM {table} a JOIN {residents} r ON r.id = a.resident_id
                 WHERE a.state = %s AND a.next_attempt_at <= %s
                   AND (a.delivering_until IS NULL OR a.delivering_until < %s)
                   AND (a.safety_check_id IS NULL
                        OR a.safety_check_id IN (SELECT id FROM {checks} WHERE state = %s))"""  # noqa: S608 - table names from the models
    for _try in range(3):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(select + " ORDER BY a.next_attempt_at LIMIT %s FOR UPDATE OF a SKIP LOCKED",
                               [Ask.State.QUEUED, now, now, SafetyCheck.State.OPEN, CLAIM])
                rows = cursor.fetchall()
                keys = {row[6] for row in rows if row[6] is not None}
                if keys:  # the rest of an unfinished request goes with it, or nobody gets it twice
                    seen = {row[0] for row in rows}
                    cursor.execute(select + " AND a.batch_key = ANY(%s) FOR UPDATE OF a",
                                   [Ask.State.QUEUED, now, now, SafetyCheck.State.OPEN, list(keys)])
                    rows += [row for row in cursor.fetchall() if row[0] not in seen]
                claimed = _group(rows)
                if claimed:
                    cursor.execute(
                        f"""UPDATE {table} a SET delivering_until = %s, batch_key = v.key
                            FROM unnest(%s::bigint[], %s::uuid[]) AS v(id, key) WHERE a.id = v.id""",  # noqa: S608 - table names from the models
                        [now + LEASE, [c.pk for c in claimed], [c.batch_key for c in claimed]])
                return claimed
        except OperationalError:  # a deadlock between two runs completing unfinished requests
            logger.warning("claiming asks failed; trying again", exc_info=True)
    return []


def _group(rows) -> list[Claimed]:
    """Claimed asks with their batch keys: one per LINE request of up to 500 identical
    messages (same question, same language), one per SMS or call."""
    from watch.reach import address_of

    claimed = []
    line_groups: dict[tuple, list[Claimed]] = {}
    for pk, kind, check_id, resident_id, plan, index, key, language, line_user_id, mobile, phone, order in rows:
        plan = plan if isinstance(plan, list) else json.loads(plan)
        if index >= len(plan):
            continue
        person = SimpleNamespace(line_user_id=line_user_id, mobile_phone=mobile, phone=phone, reach_channels=order)
        item = Claimed(pk, kind, check_id, resident_id, plan, index, key,
                       resident_language(SimpleNamespace(language=language)), address_of(person, plan[index]))
        claimed.append(item)
        if item.channel == Channel.LINE and key is None:
            line_groups.setdefault((kind, check_id, item.language), []).append(item)
        elif key is None:
            item.batch_key, item.new_key = uuid.uuid4(), True
    for members in line_groups.values():
        for start in range(0, len(members), LINE_BATCH):
            key = uuid.uuid4()
            for item in members[start:start + LINE_BATCH]:
                item.batch_key, item.new_key = key, True
    return claimed


def _send(claimed: list[Claimed], clock) -> int:
    """Hand each request to its provider, then record what happened in one transaction."""
    checks = {c.pk: c for c in SafetyCheck.objects.filter(pk__in={c.check_id for c in claimed if c.check_id})}
    outcome = Outcome()
    batches: dict[uuid.UUID, list[Claimed]] = {}
    for item in claimed:
        batches.setdefault(item.batch_key, []).append(item)
    ready = _configured()
    calls = []
    for key, members in batches.items():
        first = members[0]
        check = checks.get(first.check_id)
        channel = first.channel
        if not first.address:  # the record lost the address since the plan was made
            outcome.failed += [(m, ProviderResult(ok=False, error="no address")) for m in members]
        elif not ready.get(channel):
            outcome.failed += [(m, ProviderResult(ok=False, error=f"{channel} is not set up")) for m in members]
        elif channel == Channel.LINE:
            with translation.override(first.language):
                _send_line(key, members, _ask(first, check), outcome)
        else:
            calls.append((first, _ask(first, check)))
    _send_each(calls, outcome)
    _record(outcome, checks, clock())
    return len(outcome.sent) + len(outcome.unsure)


def _configured() -> dict[str, bool]:
    from notifications import credentials

    creds = credentials.current()
    return {Channel.LINE: creds.line_ready, Channel.SMS: creds.sms_ready, Channel.VOICE: creds.sms_ready}


def _send_one(item: Claimed, ask: Ask, outcome: Outcome) -> None:
    with translation.override(item.language):
        if item.channel == Channel.SMS:
            _send_sms(item, ask, outcome)
        else:
            _send_voice(item, outcome)


def _send_each(calls: list, outcome: Outcome) -> None:
    """SMS and calls, one request each: a few threads at a time (each on its own database
    connection in this tenant's schema, closed before returning), as Twilio answers each
    request in tens of milliseconds."""
    if len(calls) <= SMS_THREADS:
        for item, ask in calls:
            _send_one(item, ask, outcome)
        return
    schema = connection.schema_name

    def send(call):
        try:
            with tenant_scope(schema):
                _send_one(*call, outcome)
        except Exception as exc:  # the database, mostly: whether it went out is unknown; the key says so
            logger.warning("ask %s: %s not sent in this run (%s)", call[0].pk, call[0].channel, exc)
            outcome.retry.append((call[0], ProviderResult(ok=False, error=f"unknown: {exc}"[:500], transient=True,
                                                          unknown=True), True))

    barrier = threading.Barrier(SMS_THREADS)

    def close(_n):
        try:
            barrier.wait(timeout=10)  # one on each thread of the pool
        except threading.BrokenBarrierError:
            pass
        connections.close_all()

    with ThreadPoolExecutor(SMS_THREADS, thread_name_prefix="asking") as pool:
        try:
            list(pool.map(send, calls))
        finally:
            list(pool.map(close, range(SMS_THREADS)))


def _call(service: str, members: list[Claimed], outcome: Outcome, request) -> ProviderResult | None:
    """One provider request through the breaker; None if the provider is paused."""
    paused = BREAKER.paused_for(service)
    if paused is not None:
        outcome.paused += [(m, paused.total_seconds()) for m in members]
        return None
    timeout = delivery.timeout_seconds()
    called = time.monotonic()
    try:
        result = request(timeout)
    except Exception as exc:  # a bug or an unforeseen library error: final for this channel
        logger.exception("ask request on %s raised", service)
        result = ProviderResult(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
    BREAKER.record(service, result, time.monotonic() - called, timeout)
    return result


def _send_line(key: uuid.UUID, members: list[Claimed], ask: Ask, outcome: Outcome) -> None:
    from notifications import credentials

    messages = line_messages(ask)
    line_slot("multicast", credentials.current().line_channel_access_token)
    result = _call(f"line:{settings.LINE_API_BASE}", members, outcome, lambda timeout: delivery.line_multicast(
        [m.address for m in members], messages, retry_key=str(key), timeout=timeout))
    if result is None:
        return
    if result.ok:
        outcome.sent += [(m, result) for m in members]
    elif result.transient:  # a repeat under the same key is safe on LINE, whatever happened
        outcome.retry += [(m, result, True) for m in members]
    else:
        outcome.failed += [(m, result) for m in members]


def _send_sms(item: Claimed, ask: Ask, outcome: Outcome) -> None:
    text = sms_text(ask)
    if not item.new_key:  # a run that may have reached Twilio died: has Twilio got it?
        found = _sms_already_sent(item.address, text)
        if found is not None:
            outcome.sent.append((item, found))
            return
    result = _call(f"sms:{settings.TWILIO_API_BASE}", [item], outcome, lambda timeout: delivery.twilio_request(
        lambda client, from_number: client.messages.create(to=item.address, from_=from_number, body=text),
        timeout=timeout))
    _file(item, result, outcome)


def _sms_already_sent(to: str, text: str) -> ProviderResult | None:
    try:
        client, from_number = delivery.twilio_client()
        for message in client.messages.list(to=to, from_=from_number, limit=delivery.SmsProvider.LOOKBACK):
            if message.body == text and message.status not in delivery.SmsProvider.NOT_SENT:
                return ProviderResult(ok=True, status=200, answer=f"already accepted: sid={message.sid}")
    except Exception as exc:  # unknown: sending again risks a second SMS, not sending risks none at all
        logger.warning("Twilio lookup failed (%s); sending again", exc)
    return None


def _send_voice(item: Claimed, outcome: Outcome) -> None:
    if not item.new_key:  # the call may have been placed: never twice; its silence moves it on
        outcome.unsure.append((item, ProviderResult(ok=False, error="unknown: the run stopped during the call",
                                                    unknown=True)))
        return
    url = voice_url(Ask(pk=item.pk))
    result = _call(f"voice:{settings.TWILIO_API_BASE}", [item], outcome, lambda timeout: delivery.twilio_request(
        lambda client, from_number: client.calls.create(to=item.address, from_=from_number, url=url),
        timeout=timeout))
    if result is not None and not result.ok and result.unknown:
        outcome.unsure.append((item, result))
        return
    _file(item, result, outcome)


def _file(item: Claimed, result: ProviderResult | None, outcome: Outcome) -> None:
    if result is None:
        return
    if result.ok:
        outcome.sent.append((item, result))
    elif result.transient:
        # An SMS whose answer was lost keeps its key: the next run looks it up first.
        outcome.retry.append((item, result, result.unknown))
    else:
        outcome.failed.append((item, result))


def _record(outcome: Outcome, checks: dict, now: datetime) -> None:
    """Every attempt logged and every claimed ask moved on, each only while this run
    still holds it (state queued, its lease and batch key unchanged)."""
    attempts = [AskAttempt(ask_id=item.pk, channel=item.channel, batch_key=item.batch_key, at=now, ok=result.ok,
                           provider_status=result.status, error=(result.error or "")[:500])
                for group in (outcome.sent, outcome.unsure, outcome.failed) for item, result in group]
    attempts += [AskAttempt(ask_id=item.pk, channel=item.channel, batch_key=item.batch_key, at=now, ok=False,
                            provider_status=result.status, error=(result.error or "")[:500])
                 for item, result, _keep in outcome.retry]
    waits = _wait_minutes([item for item, _r in outcome.sent + outcome.unsure if item.kind == Ask.Kind.CHECKIN])
    table = connection.ops.quote_name(Ask._meta.db_table)
    held = "a.id = v.id AND a.state = %s AND a.batch_key IS NOT DISTINCT FROM v.key"
    with transaction.atomic(), connection.cursor() as cursor:
        AskAttempt.objects.bulk_create(attempts, batch_size=2000)
        for group, reached in ((outcome.sent, True), (outcome.unsure, False)):
            if not group:
                continue
            items = [item for item, _r in group]
            until = [now + silence_after(i.kind, checks.get(i.check_id), i.index, waits.get(i.resident_id))
                     for i in items]
            cursor.execute(
                f"""UPDATE {table} a SET state = %s, reached = a.reached OR %s, next_attempt_at = v.until,
                      first_sent_at = COALESCE(a.first_sent_at, %s), last_sent_at = %s,
                      delivering_until = NULL, batch_key = NULL
                    FROM unnest(%s::bigint[], %s::uuid[], %s::timestamptz[]) AS v(id, key, until) WHERE {held}""",  # noqa: S608 - table names from the models
                [Ask.State.WAITING, reached, now, now, [i.pk for i in items], [i.batch_key for i in items], until,
                 Ask.State.QUEUED])
        delays: dict = {}  # one count per provider request
        retry = [(item, keep, delays.setdefault(item.batch_key, _retry_in(item, result)))
                 for item, result, keep in outcome.retry]
        giving_up = [item for item, _keep, delay in retry if delay is None]
        retry = [(item, keep, delay) for item, keep, delay in retry if delay is not None]
        retry += [(item, True, seconds) for item, seconds in outcome.paused]
        if retry:
            cursor.execute(
                f"""UPDATE {table} a SET next_attempt_at = v.at, delivering_until = NULL,
                      batch_key = CASE WHEN v.keep THEN a.batch_key END
                    FROM unnest(%s::bigint[], %s::uuid[], %s::timestamptz[], %s::boolean[]) AS v(id, key, at, keep)
                    WHERE {held}""",  # noqa: S608 - table names from the models
                [[i.pk for i, _k, _d in retry], [i.batch_key for i, _k, _d in retry],
                 [now + timedelta(seconds=d) for _i, _k, d in retry], [k for _i, k, _d in retry], Ask.State.QUEUED])
        failed = [item for item, _r in outcome.failed] + giving_up
        if failed:
            cursor.execute(
                f"""UPDATE {table} a SET
                      state = CASE WHEN a.channel_index + 1 < jsonb_array_length(a.plan) THEN %s ELSE %s END,
                      channel_index = LEAST(a.channel_index + 1, jsonb_array_length(a.plan) - 1),
                      next_attempt_at = CASE WHEN a.channel_index + 1 < jsonb_array_length(a.plan) THEN %s END,
                      delivering_until = NULL, batch_key = NULL
                    FROM unnest(%s::bigint[], %s::uuid[]) AS v(id, key) WHERE {held}""",  # noqa: S608 - table names from the models
                [Ask.State.QUEUED, Ask.State.SILENT, now, [i.pk for i in failed], [i.batch_key for i in failed],
                 Ask.State.QUEUED])
    for item, result in outcome.failed:
        logger.info("ask %s: %s failed for good (%s)", item.pk, item.channel, result.status or result.error)


def _retry_in(item: Claimed, result: ProviderResult) -> float | None:
    """Seconds until the same channel is tried again, or None when its retries are used up."""
    delays = list(settings.NOTIFICATION_RETRY_DELAYS)
    done = AskAttempt.objects.filter(ask_id=item.pk, channel=item.channel, ok=False).count()  # this one not yet in
    if done >= len(delays):
        return None
    delay = float(delays[done])
    if result.status == 429:
        delay = max(delay, 1.0)  # LINE's window is a second
    return delay


def _wait_minutes(items: list[Claimed]) -> dict[int, int]:
    if not items:
        return {}
    return dict(DailyCheckin.objects.filter(resident_id__in=[i.resident_id for i in items])
                .values_list("resident_id", "wait_minutes"))


def next_due() -> datetime | None:
    """When the next ask (to send, or silent long enough) or held check is due; an ask a
    run is sending now counts from the end of that run's lease."""
    now = timezone.now()
    free = Q(delivering_until__isnull=True) | Q(delivering_until__lt=now)
    due = (Ask.objects.filter(free, state__in=[Ask.State.QUEUED, Ask.State.WAITING], next_attempt_at__isnull=False)
           .order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first())
    # Asks another run holds are due again when its lease ends (if it dies holding them).
    leased = (Ask.objects.filter(state=Ask.State.QUEUED, delivering_until__gte=now)
              .aggregate(until=Min("delivering_until"))["until"])
    held = (SafetyCheck.objects.filter(state=SafetyCheck.State.HELD, send_at__isnull=False)
            .order_by("send_at").values_list("send_at", flat=True).first())
    times = [t for t in (due, leased, held) if t is not None]
    return min(times) if times else None


def _set_next_wakeup() -> None:
    do_set_wakeup(connection.schema_name, ASKING, next_due())


def do_run_asking(now: datetime | None = None) -> int:
    """One pass of the asking work of this tenant: held checks whose time came are
    started, then due asks are sent."""
    from outreach.quakes import do_start_due_held_checks

    do_start_due_held_checks(now or timezone.now())
    return do_dispatch(now)
