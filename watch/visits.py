"""Visit coordination: a case worker or staff member plans who visits whom, in which
window of days and why; logging the contact completes the visit; a visit still planned
when its window ends is missed, once, and counts as a missed sign of life (outreach
raises a concern through watch.signals.visit_missed).

The completion rule is one SQL statement, COMPLETION_SQL, run by the contact action
(watch.actions._apply_contact) and by the edge's check-in path (watch.edge) alike; a
parity test runs both (tests/watch/test_visits.py). A contact completes every visit of
its resident that
  - is planned, or was missed less than LATE_WINDOW before the contact (done late: the
    volunteer's page keeps showing it as late so that someone still goes), and
  - whose window has started on the contact's day (in the tenant's time zone), and
  - is the contact's author's (any channel: a phone call by the visitor counts), or is a
    visit made by someone else in the visitor's place (channel "visit").
Any outcome completes it: 「不在」 is a visit made; whether it was a sign of life is the
rhythms' business. A device's signal completes nothing (no author, channel "device").
"""
import functools
import logging
from datetime import date, datetime, time, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _
from psycopg import sql

from notifications.delivery import tenant_time_zone
from tenants.accounts.models import User
from tenants.models import Tenant
from tenants.wakeups import do_lower_wakeup
from watch.access import can_see_resident, residents_for_user
from watch.actions import OVERDUE  # the missed pass runs with the overdue pass, on its wakeup
from watch.models import Channel, Resident, Visit
from watch.notes import note_problems
from watch.signals import visit_missed

logger = logging.getLogger(__name__)

PLANNER_ROLES = (User.Role.ADMIN, User.Role.MUNICIPAL_STAFF, User.Role.CASE_WORKER)
VISITOR_ROLES = (User.Role.VOLUNTEER, User.Role.CASE_WORKER)
LATE_WINDOW = timedelta(days=7)
MAX_WINDOW = timedelta(days=30)  # ends_on - starts_on: a window of at most 31 days
MAX_AHEAD = timedelta(days=366)
NOTE_MAX = Visit._meta.get_field("note").max_length

# The rule's values, as parameters of both paths' statement.
VISIT_RULES = {"visit_planned": Visit.State.PLANNED.value, "visit_missed": Visit.State.MISSED.value,
               "visit_done": Visit.State.DONE.value, "visit_channel": Channel.VISIT.value, "late": LATE_WINDOW}

# Rows locked in id order, after the contact's rhythms and wakeup (as the missed pass
# locks the wakeup, then visits in id order): the two cannot deadlock.
COMPLETION_SQL = """
UPDATE {visit} AS v SET state = %(visit_done)s, contact_id = %(contact)s, closed_at = %(at)s, updated_at = now()
FROM (SELECT id FROM {visit}
      WHERE resident_id = %(resident)s
        AND (state = %(visit_planned)s OR (state = %(visit_missed)s AND due_at > %(at)s - %(late)s))
        AND starts_on <= (SELECT (%(at)s AT TIME ZONE t.time_zone)::date FROM {tenant} t
                          WHERE t.schema_name = %(schema)s)
        AND (visitor_id = %(user)s OR %(channel)s = %(visit_channel)s)
      ORDER BY id FOR UPDATE) AS open
WHERE v.id = open.id AND v.state IN (%(visit_planned)s, %(visit_missed)s)
RETURNING v.id
"""

MISSED_SQL = """
UPDATE {visit} AS v SET state = %(visit_missed)s, closed_at = %(now)s, updated_at = %(now)s
FROM (SELECT id FROM {visit} WHERE state = %(visit_planned)s AND due_at <= %(now)s ORDER BY id FOR UPDATE) AS due
WHERE v.id = due.id AND v.state = %(visit_planned)s
RETURNING v.id, v.resident_id
"""


@functools.cache
def _statement(template: str, schema: str) -> str:
    return sql.SQL(template).format(visit=sql.Identifier(schema, Visit._meta.db_table),
                                    tenant=sql.Identifier("public", Tenant._meta.db_table)).as_string()


def completion_sql(schema: str) -> str:
    """COMPLETION_SQL for the tables of `schema` (the edge runs it on its own connection)."""
    return _statement(COMPLETION_SQL, schema)


def completion_params(*, schema: str, resident: int, contact: int, at: datetime, user: int | None,
                      channel: str) -> dict:
    return {**VISIT_RULES, "schema": schema, "resident": resident, "contact": contact, "at": at, "user": user,
            "channel": channel}


def do_complete_visits(contact) -> list[int]:
    """Inside the contact's transaction: complete the visits the contact fulfils (the
    rule above); returns their ids."""
    params = completion_params(schema=connection.schema_name, resident=contact.resident_id, contact=contact.pk,
                               at=contact.occurred_at, user=contact.logged_by_id, channel=contact.channel)
    with connection.cursor() as cursor:
        cursor.execute(completion_sql(connection.schema_name), params)
        return [row[0] for row in cursor.fetchall()]


# The missed-visit pass (run by watch.actions.do_mark_overdue, on the overdue wakeup).
def do_mark_missed_visits(now: datetime) -> list[int]:
    """Mark every visit still planned when its window ended as missed, each exactly once
    even when passes run concurrently (the UPDATE re-checks the state under the row lock),
    and send visit_missed for those of residents whose watch-over is on (a paused or
    ended resident's missed visit is recorded but raises nothing). Returns the visit ids."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_statement(MISSED_SQL, connection.schema_name), {**VISIT_RULES, "now": now})
        missed = cursor.fetchall()
        active = set(Resident.objects.filter(pk__in={resident_id for _id, resident_id in missed},
                                             status=Resident.Status.ACTIVE).values_list("pk", flat=True))
        for visit_id, resident_id in sorted(missed):
            if resident_id in active:
                visit_missed.send(sender=Visit, resident_id=resident_id, visit_id=visit_id)
    if missed:
        logger.info("marked %d visit(s) missed", len(missed))
    return sorted(visit_id for visit_id, _resident in missed)


def next_visit_due() -> datetime | None:
    """When the next planned visit's window ends (the missed pass's next clock)."""
    return (Visit.objects.filter(state=Visit.State.PLANNED).order_by("due_at")
            .values_list("due_at", flat=True).first())


# Planning.
def window_end(ends_on: date) -> datetime:
    """The end of a window that ends on `ends_on`: the midnight after it, in the tenant's time zone."""
    return datetime.combine(ends_on + timedelta(days=1), time(0), tzinfo=tenant_time_zone())


def tenant_today() -> date:
    return timezone.now().astimezone(tenant_time_zone()).date()


def check_can_plan_visits(actor: User) -> None:
    if actor.role not in PLANNER_ROLES:
        raise PermissionDenied(_("Only staff and case workers can plan visits."))


def visitor_candidates(resident: Resident) -> list[User]:
    """Active volunteers and case workers who may see `resident` (and so may visit them):
    their team, and case workers of the areas above them; each checked by the visibility rule."""
    users = (User.objects.filter(is_active=True, role__in=VISITOR_ROLES)
             .filter(Q(assignments__resident=resident)
                     | Q(role=User.Role.CASE_WORKER, area_memberships__area_id__in=resident.area.ancestor_ids))
             .distinct().order_by("display_name", "username"))
    return [user for user in users if can_see_resident(user, resident)]


def check_visit_input(*, resident: Resident, visitor: User | None, starts_on: date | None, ends_on: date | None,
                      purpose: str, note: str) -> tuple[date, date, str]:
    """Validate a plan; returns (starts_on, ends_on, note) cleaned. ends_on None: a one-day visit."""
    errors: dict[str, list[str]] = {}
    if visitor is None or not visitor.is_active or visitor.role not in VISITOR_ROLES:
        errors["visitor"] = [_("Choose an active volunteer or case worker.")]
    elif not can_see_resident(visitor, resident):
        errors["visitor"] = [_("%(name)s may not see this resident: put them on the resident's team first, or "
                               "choose someone else.") % {"name": visitor}]
    if resident.status == Resident.Status.ENDED:
        errors["resident"] = [_("Watch-over of this resident has ended.")]
    ends_on = ends_on or starts_on
    if starts_on is None:
        errors["starts_on"] = [_("Enter the day of the visit.")]
    elif ends_on < starts_on:
        errors["ends_on"] = [_("The window ends before it starts.")]
    elif ends_on < tenant_today():
        errors["ends_on"] = [_("The window has already ended: choose today or a later day.")]
    elif ends_on - starts_on > MAX_WINDOW:
        errors["ends_on"] = [_("A window is at most %(days)d days long.") % {"days": MAX_WINDOW.days + 1}]
    elif ends_on > tenant_today() + MAX_AHEAD:
        errors["ends_on"] = [_("Plan visits at most a year ahead.")]
    if purpose not in Visit.Purpose.values:
        errors["purpose"] = [_("Choose one of the purposes offered.")]
    if problems := note_problems(note, NOTE_MAX):
        errors["note"] = problems
    if errors:
        raise ValidationError(errors)
    return starts_on, ends_on, note.strip()


def do_plan_visit(*, actor: User, resident: Resident, visitor: User | None, starts_on: date | None,
                  ends_on: date | None = None, purpose: str = Visit.Purpose.REGULAR, note: str = "") -> Visit:
    """Plan a visit of `resident` (one the actor may see: the caller fetched it so) by
    `visitor`, who must be able to see the resident too. The missed pass wakes at its end."""
    check_can_plan_visits(actor)
    starts_on, ends_on, note = check_visit_input(resident=resident, visitor=visitor, starts_on=starts_on,
                                                 ends_on=ends_on, purpose=purpose, note=note)
    with transaction.atomic():
        visit = Visit.objects.create(resident=resident, visitor=visitor, starts_on=starts_on, ends_on=ends_on,
                                     due_at=window_end(ends_on), purpose=purpose, note=note, planned_by=actor)
        do_lower_wakeup(connection.schema_name, OVERDUE, visit.due_at)
    logger.info("user %s planned visit %s of resident %s by user %s", actor.pk, visit.pk, resident.pk, visitor.pk)
    return visit


def do_reassign_visit(*, actor: User, visit: Visit, visitor: User | None, starts_on: date | None = None,
                      ends_on: date | None = None) -> Visit:
    """Give a planned visit to someone else (the volunteer is away), optionally in another
    window; refused once the visit is done, missed or cancelled."""
    check_can_plan_visits(actor)
    starts_on, ends_on, _note = check_visit_input(
        resident=visit.resident, visitor=visitor, starts_on=starts_on or visit.starts_on,
        ends_on=ends_on or (visit.ends_on if not starts_on else None), purpose=visit.purpose, note="")
    due_at = window_end(ends_on)
    with transaction.atomic():
        changed = Visit.objects.filter(pk=visit.pk, state=Visit.State.PLANNED).update(
            visitor=visitor, starts_on=starts_on, ends_on=ends_on, due_at=due_at, updated_at=timezone.now())
        if not changed:
            raise ValidationError(_("This visit is no longer planned: it cannot be changed."))
        do_lower_wakeup(connection.schema_name, OVERDUE, due_at)
    logger.info("user %s reassigned visit %s to user %s", actor.pk, visit.pk, visitor.pk)
    visit.refresh_from_db()
    return visit


def do_cancel_visit(*, actor: User, visit: Visit, confirmed: bool) -> Visit:
    """Cancel a planned visit, once confirmed (it will not count as missed)."""
    check_can_plan_visits(actor)
    if not confirmed:
        raise ValidationError({"confirm": [_("Confirm that the visit is cancelled.")]})
    now = timezone.now()
    if not Visit.objects.filter(pk=visit.pk, state=Visit.State.PLANNED).update(
            state=Visit.State.CANCELLED, closed_at=now, updated_at=now):
        raise ValidationError(_("This visit is no longer planned: it cannot be changed."))
    logger.info("user %s cancelled visit %s", actor.pk, visit.pk)
    visit.refresh_from_db()
    return visit


# Queries.
def visits_for_user(user) -> QuerySet[Visit]:
    """Visits of residents `user` may see; those who do not plan see only their own."""
    visits = Visit.objects.filter(resident__in=residents_for_user(user))
    if getattr(user, "role", None) not in PLANNER_ROLES:
        visits = visits.filter(visitor=user)
    return visits


def get_visit_for_user(user, visit_id) -> Visit:
    """The same 404 for a missing visit and one that is not the user's to see."""
    try:
        return visits_for_user(user).select_related("resident__area", "visitor").get(pk=int(visit_id))
    except (Visit.DoesNotExist, ValueError, TypeError, OverflowError) as exc:
        raise Http404 from exc


# The years a week or a day of a plan or the rota may fall in: beyond them it is a typo
# (and date arithmetic overflows next to year 1 and 9999).
PLAN_YEARS = range(2000, 2101)


def parse_week(value: str | None, today: date | None = None) -> date:
    """The Monday of an ISO week written "2026-W49"; this week's (of `today`, by default
    the tenant's) for anything else, a year outside PLAN_YEARS included."""
    try:
        year, week = (value or "").upper().split("-W")
        if int(year) in PLAN_YEARS:
            return date.fromisocalendar(int(year), int(week), 1)
    except ValueError:
        pass
    today = today or tenant_today()
    return today - timedelta(days=today.weekday())


def week_label(monday: date) -> str:
    year, week, _day = monday.isocalendar()
    return f"{year}-W{week:02d}"


def visits_in_week(visits: QuerySet[Visit], monday: date) -> QuerySet[Visit]:
    """Of `visits`, those whose window overlaps the week from `monday`, by block then address."""
    return (visits.filter(starts_on__lte=monday + timedelta(days=6), ends_on__gte=monday)
            .select_related("resident__area", "visitor")
            .order_by("resident__area__full_name", "resident__address", "starts_on", "pk"))


def visits_to_do(user, today: date) -> QuerySet[Visit]:
    """The visitor's visits for today and late ones (window ended not done, within
    LATE_WINDOW), by block then address: the top of the volunteer's phone page."""
    started = Q(state=Visit.State.PLANNED, starts_on__lte=today)
    late = Q(state=Visit.State.MISSED, due_at__gt=timezone.now() - LATE_WINDOW)
    return (Visit.objects.filter(visitor=user, resident__in=residents_for_user(user)).filter(started | late)
            .select_related("resident__area")
            .order_by("resident__area__full_name", "resident__address", "resident_id", "starts_on", "pk"))


def sheet_visits(user, visitor: User, monday: date) -> QuerySet[Visit]:
    """The visits on a visitor's sheet for a week: still to do (planned, or late), of
    residents both the person printing and the visitor may see (a sheet shows only what
    its visitor may see)."""
    open_ = Q(state=Visit.State.PLANNED) | Q(state=Visit.State.MISSED, due_at__gt=timezone.now() - LATE_WINDOW)
    return visits_in_week(visits_for_user(user).filter(open_, visitor=visitor,
                                                       resident__in=residents_for_user(visitor)), monday)
