"""Daily check-ins (毎日の声かけ): residents who agreed are asked every day at their time
「おはようございます。お元気ですか？」 over their first channel (watch.reach.channels_for);
the dispatcher (outreach.asking) tries the next channel after `wait_minutes` of silence.

`do_create_due_checkins(now)` runs every minute: it makes today's Ask (one per resident
and day, by the constraint `checkin_once_a_day`) for every active check-in whose time
has come, and hands them to the dispatcher. `do_log_unanswered_checkins(now)` logs a
check-in nobody answered (every channel went silent, or the day ended) as a contact
with outcome NO_ANSWER, once: it counts against the rhythm (it does not reset it).
"""
import logging
import uuid
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from notifications.delivery import tenant_time_zone
from outreach.models import Ask, DailyCheckin
from watch.actions import do_log_contact
from watch.history import record_change
from watch.models import Channel, ContactLog, Outcome, Resident, ResidentChange

logger = logging.getLogger(__name__)

# A check-in whose minute was missed (the scheduler was down) is still asked this long
# after its time, not later: 「おはようございます」 at three in the afternoon helps nobody.
CATCH_UP = timedelta(minutes=60)
WAIT_MIN, WAIT_MAX = 5, 12 * 60


# Settings ------------------------------------------------------------------------------

def check_daily_checkin(*, active: bool, at: time | None, wait_minutes: int | None, agreed_on: date | None) -> None:
    errors = {}
    if active and at is None:
        errors["at"] = _("Enter the time of the question (for example 08:00).")
    if wait_minutes is None or not WAIT_MIN <= wait_minutes <= WAIT_MAX:
        errors["wait_minutes"] = _("Enter a number of minutes from %(min)s to %(max)s.") % {
            "min": WAIT_MIN, "max": WAIT_MAX}
    if active and agreed_on is None:
        errors["agreed_on"] = _("Enter the date the resident agreed to daily check-ins.")
    elif agreed_on is not None and agreed_on > timezone.localdate():
        errors["agreed_on"] = _("The date the resident agreed cannot be in the future.")
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def do_set_daily_checkin(*, actor, resident: Resident, active: bool, at: time | None, wait_minutes: int | None,
                         agreed_on: date | None) -> DailyCheckin | None:
    """Start, change or stop the resident's daily check-in (stopping keeps the row, inactive)."""
    check_daily_checkin(active=active, at=at, wait_minutes=wait_minutes, agreed_on=agreed_on)
    row = DailyCheckin.objects.select_for_update().filter(resident=resident).first()
    if row is None and not active:
        return None
    before = {"active": row.active, "at": row.at.strftime("%H:%M"), "wait_minutes": row.wait_minutes,
              "agreed_on": row.agreed_on.isoformat() if row.agreed_on else None} if row else {}
    if row is None:
        row = DailyCheckin(resident=resident, created_by=actor, at=at)
    row.active = active
    row.at = at or row.at
    row.wait_minutes = wait_minutes
    row.agreed_on = agreed_on
    row.save()
    after = {"active": row.active, "at": row.at.strftime("%H:%M"), "wait_minutes": row.wait_minutes,
             "agreed_on": row.agreed_on.isoformat() if row.agreed_on else None}
    changes = {f"daily_checkin_{k}": [before.get(k), v] for k, v in after.items() if before.get(k) != v}
    if changes:
        record_change(resident=resident, actor=actor, kind=ResidentChange.Kind.UPDATED, changes=changes)
    return row


# The scheduler -------------------------------------------------------------------------

def local_now(now: datetime) -> datetime:
    return now.astimezone(tenant_time_zone())


def due_checkins(now: datetime):
    """Active check-ins of active residents whose time came (within CATCH_UP) and who have
    no ask today."""
    local = local_now(now)
    today = local.date()
    earliest = local - CATCH_UP
    start = earliest.time() if earliest.date() == today else time(0)
    asked = Ask.objects.filter(kind=Ask.Kind.CHECKIN, day=today, resident_id=OuterRef("resident_id"))
    return (DailyCheckin.objects.filter(active=True, at__lte=local.time(), at__gte=start,
                                        resident__status=Resident.Status.ACTIVE)
            .exclude(Exists(asked)))


def do_create_due_checkins(now: datetime | None = None) -> int:
    """Make today's check-in asks that are due and hand them to the dispatcher
    (outreach.asking.do_create_checkin_asks: plans by watch.reach.channels_for, after
    commit to the dispatcher). Safe to run twice, or in two workers at once: a resident
    is asked once a day (the constraint). Returns how many asks it made."""
    from outreach.asking import do_create_checkin_asks

    now = now or timezone.now()
    residents = Resident.objects.filter(pk__in=due_checkins(now).values("resident_id"))
    return do_create_checkin_asks(local_now(now).date(), residents, at=now)


# Nobody answered ------------------------------------------------------------------------

def _no_answer_key(ask_id: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"mimamori:{connection.schema_name}:checkin-no-answer:{ask_id}")


def do_log_unanswered_checkins(now: datetime | None = None) -> int:
    """Close the earlier days' check-ins still open, then log, once each (the contact's
    idempotency key), the recent check-ins that reached the resident and stayed
    unanswered: every channel asked in vain (SILENT), or the day ended (CLOSED). Returns
    how many contacts it logged."""
    now = now or timezone.now()
    today = local_now(now).date()
    Ask.objects.filter(kind=Ask.Kind.CHECKIN, day__lt=today, state__in=Ask.OPEN_STATES, answer="").update(
        state=Ask.State.CLOSED, next_attempt_at=None, delivering_until=None)
    # Only asks that reached the resident: a question that never arrived is no silence.
    candidates = list(Ask.objects.filter(kind=Ask.Kind.CHECKIN, answer="", day__gte=today - timedelta(days=2),
                                         state__in=[Ask.State.SILENT, Ask.State.CLOSED], reached=True)
                      .values_list("pk", flat=True))
    if not candidates:
        return 0
    keys = {_no_answer_key(pk): pk for pk in candidates}
    logged = set(ContactLog.objects.filter(idempotency_key__in=list(keys)).values_list("idempotency_key", flat=True))
    count = 0
    with translation.override(settings.LANGUAGE_CODE):
        note = _("Daily check-in: no answer on any channel")
    for key, pk in keys.items():
        if key in logged:
            continue
        ask = Ask.objects.select_related("resident__area").filter(pk=pk, answer="").first()
        if ask is None:
            continue
        occurred = min(now, ask.last_sent_at or ask.created_at or now)
        try:
            with transaction.atomic():
                do_log_contact(actor=None, resident=ask.resident, occurred_at=occurred, channel=_channel(ask),
                               outcome=Outcome.NO_ANSWER, note=note, idempotency_key=key)
        except Exception:  # one resident's failure must not stop the others
            logger.exception("could not log the unanswered check-in %s", pk)
            continue
        count += 1
    return count


def _channel(ask: Ask) -> str:
    """The last channel the question went out on (a contact's channel)."""
    if ask.plan:
        channel = ask.plan[min(ask.channel_index, len(ask.plan) - 1)]
        if channel in Channel.values:
            return channel
    return Channel.OTHER
