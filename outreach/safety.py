"""Safety checks (安否確認), drill or real: who may run and see them, whom a check asks,
and its progress. The one definition each: the pages, the live updates, the report and
the exports all ask these.

A check asks the active residents its starter may see (watch.access), narrowed by its
scope: areas (each with its subtree), "needs help to evacuate", a household type, an
age from. Progress counts only the asks of residents the viewer may see.
"""
import logging
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from outreach.models import Answer, Ask, SafetyCheck
from tenants.accounts.models import STAFF_ROLES
from watch.access import areas_for_user, oversees_whole_tenant, residents_for_user
from watch.models import Area, Assignment, Resident, Visit
from watch.reach import REACH_CHANNELS

logger = logging.getLogger(__name__)


def can_run_checks(user) -> bool:
    """Municipal staff and administrators start, close and cancel safety checks."""
    return bool(user and user.is_authenticated and user.is_active and user.role in STAFF_ROLES)


def checks_for_user(user) -> QuerySet[SafetyCheck]:
    """The checks a person may see: staff see every check of the tenant (each shows them
    only the residents they may see); nobody else sees the list."""
    if not can_run_checks(user):
        return SafetyCheck.objects.none()
    return SafetyCheck.objects.all()


def get_check_for_user(user, check_id) -> SafetyCheck:
    """The check, or 404 alike for missing and not theirs."""
    try:
        return checks_for_user(user).get(pk=int(check_id))
    except (SafetyCheck.DoesNotExist, TypeError, ValueError, OverflowError):
        raise Http404 from None


def residents_in_scope(user, scope: dict, today: date | None = None) -> QuerySet[Resident]:
    """The active residents `user` may see that the scope names (see SafetyCheck.scope)."""
    residents = residents_for_user(user).filter(status=Resident.Status.ACTIVE)
    area_ids = [int(a) for a in scope.get("areas") or []]
    if area_ids:
        paths = list(Area.objects.filter(pk__in=area_ids).values_list("path", flat=True))
        subtree = Q(pk__in=[])
        for path in paths:
            subtree |= Q(area__path__startswith=path)
        residents = residents.filter(subtree)
    if scope.get("needs_evacuation_support"):
        residents = residents.filter(needs_evacuation_support=True)
    if scope.get("household"):
        residents = residents.filter(household=scope["household"])
    if scope.get("min_age"):
        today = today or timezone.localdate()
        years = int(scope["min_age"])
        try:
            born_by = today.replace(year=today.year - years)
        except ValueError:  # 29 February
            born_by = today.replace(year=today.year - years, day=28)
        residents = residents.filter(date_of_birth__lte=born_by)
    return residents


def asks_seen_by(user, check: SafetyCheck) -> QuerySet[Ask]:
    """The check's asks about residents `user` may see."""
    return Ask.objects.filter(safety_check=check, resident__in=residents_for_user(user).values("pk"))


def progress(check: SafetyCheck, user) -> dict:
    """What the progress page shows and every live update sends: totals and per area
    (of the residents the viewer may see), as plain numbers."""
    rows = (asks_seen_by(user, check).values("area_id")
            .annotate(total=Count("pk"),
                      answered=Count("pk", filter=Q(state=Ask.State.ANSWERED)),
                      safe=Count("pk", filter=Q(state=Ask.State.ANSWERED, answer=Answer.FINE)),
                      need_help=Count("pk", filter=Q(state=Ask.State.ANSWERED, answer=Answer.NEED_HELP)),
                      late=Count("pk", filter=Q(state=Ask.State.ANSWERED, late=True))))
    names = dict(Area.objects.filter(pk__in=[r["area_id"] for r in rows]).values_list("pk", "full_name"))
    areas = sorted(({**row, "area": names.get(row["area_id"], ""), "silent": row["total"] - row["answered"]}
                    for row in rows), key=lambda r: r["area"])
    totals = {key: sum(r[key] for r in areas) for key in ("total", "answered", "safe", "need_help", "late", "silent")}
    totals["answered_share"] = round(totals["answered"] / totals["total"], 4) if totals["total"] else 0.0
    return {"check": check.pk, "state": check.state, "totals": totals, "areas": areas,
            "at": timezone.now().isoformat()}


# Who may change a check -------------------------------------------------------------------

def check_can_run_checks(user) -> None:
    if not can_run_checks(user):
        raise PermissionDenied(_("Only municipal staff and administrators run safety checks."))


def can_manage_check(user, check: SafetyCheck) -> bool:
    """Start, close or cancel a check: its author or starter, whoever oversees the whole
    tenant, and staff who look after every area of its scope. Staff of one district see
    every check (and in it only their residents) but do not stop another district's."""
    if not can_run_checks(user):
        return False
    if oversees_whole_tenant(user) or user.pk in (check.created_by_id, check.started_by_id):
        return True
    area_ids = {int(a) for a in (check.scope or {}).get("areas") or []}
    return bool(area_ids) and area_ids <= set(areas_for_user(user).values_list("pk", flat=True))


def check_can_manage_check(user, check: SafetyCheck) -> None:
    check_can_run_checks(user)
    if not can_manage_check(user, check):
        raise PermissionDenied(_("Only its author, whoever oversees the whole municipality, or staff of all its "
                                 "areas may start, close or cancel this safety check."))


# Creating, starting, closing, cancelling --------------------------------------------------

DEFAULT_SILENCE_MINUTES = [10, 30, 60]
MAX_SILENCE_STEPS = 6
MAX_SILENCE = 24 * 60
MAX_AHEAD = timedelta(days=30)
MAX_AGE = 120
TITLE_MAX = SafetyCheck._meta.get_field("title").max_length
QUESTION_MAX = SafetyCheck._meta.get_field("question").max_length


def default_question() -> str:
    """The question a new check offers, in the tenant's language (residents read it)."""
    with translation.override(settings.LANGUAGE_CODE):
        return _("This is a safety check. Are you safe?")


def clean_scope(actor, scope: dict, errors: dict) -> dict:
    """The scope as stored (see SafetyCheck.scope); problems go into `errors` by field."""
    scope = scope or {}
    cleaned: dict = {"areas": [], "needs_evacuation_support": bool(scope.get("needs_evacuation_support")),
                     "household": "", "min_age": None}
    try:
        area_ids = sorted({int(a) for a in scope.get("areas") or []})
    except (TypeError, ValueError):
        area_ids = None
    if area_ids is None or set(area_ids) - set(areas_for_user(actor).filter(pk__in=area_ids or [])
                                              .values_list("pk", flat=True)):
        errors["areas"] = [_("Choose areas from the list: only areas you look after can be asked.")]
    else:
        cleaned["areas"] = area_ids
    if scope.get("scope") == "areas" and not area_ids and "areas" not in errors:
        errors["areas"] = [_("Choose at least one area, or ask the whole municipality.")]
    household = scope.get("household") or ""
    if household and household not in Resident.Household.values:
        errors["household"] = [_("Choose one of the household types offered.")]
    else:
        cleaned["household"] = household
    min_age = scope.get("min_age")
    if min_age not in (None, ""):
        try:
            min_age = int(min_age)
            if not 0 < min_age <= MAX_AGE:
                raise ValueError
            cleaned["min_age"] = min_age
        except (TypeError, ValueError):
            errors["min_age"] = [_("Enter an age between 1 and %(max)d, or leave it empty.") % {"max": MAX_AGE}]
    return cleaned


def clean_silence(values, errors: dict) -> list[int]:
    try:
        minutes = [int(v) for v in values or []]
    except (TypeError, ValueError):
        minutes = None
    if not minutes or len(minutes) > MAX_SILENCE_STEPS or any(not 1 <= m <= MAX_SILENCE for m in minutes):
        errors["silence_minutes"] = [
            _("Enter up to %(steps)d waits in minutes, each from 1 to %(max)d, separated by commas "
              "(for example 10, 30, 60).") % {"steps": MAX_SILENCE_STEPS, "max": MAX_SILENCE}]
        return []
    return minutes


def do_create_check(actor, title: str, question: str, kind: str, scope: dict, by_household: bool,
                    channels: list[str], silence_minutes: list, deadline: datetime | None) -> SafetyCheck:
    """A new check, not started (DRAFT). Every field is checked first; a ValidationError
    carries one message per field and nothing is saved."""
    check_can_run_checks(actor)
    errors: dict[str, list[str]] = {}
    title, question = (title or "").strip(), (question or "").strip()
    if not title:
        errors["title"] = [_("Enter a title, for example “December drill”.")]
    elif len(title) > TITLE_MAX:
        errors["title"] = [_("A title is at most %(max)d characters.") % {"max": TITLE_MAX}]
    if not question:
        errors["question"] = [_("Enter the question residents are asked.")]
    elif len(question) > QUESTION_MAX:
        errors["question"] = [_("A question is at most %(max)d characters.") % {"max": QUESTION_MAX}]
    if kind not in SafetyCheck.Kind.values:
        errors["kind"] = [_("Choose a drill or a real event.")]
    cleaned_scope = clean_scope(actor, scope, errors)
    channels = list(dict.fromkeys(channels or []))
    if not channels:
        errors["channels"] = [_("Choose at least one channel to ask on.")]
    elif set(channels) - set(REACH_CHANNELS):
        errors["channels"] = [_("Choose channels from the list.")]
    minutes = clean_silence(silence_minutes, errors)
    now = timezone.now()
    if deadline is None:
        errors["deadline"] = [_("Enter the deadline: a day and a time.")]
    elif deadline <= now:
        errors["deadline"] = [_("The deadline must be in the future.")]
    elif deadline > now + MAX_AHEAD:
        errors["deadline"] = [_("The deadline is at most %(days)d days ahead.") % {"days": MAX_AHEAD.days}]
    if not errors and not residents_in_scope(actor, cleaned_scope).exists():
        errors["scope"] = [_("No resident you look after is in this scope: widen it.")]
    if errors:
        raise ValidationError(errors)
    check = SafetyCheck.objects.create(
        title=title, question=question, kind=kind, scope=cleaned_scope, by_household=bool(by_household),
        channels=channels, silence_minutes=minutes, deadline=deadline, created_by=actor)
    logger.info("user %s created safety check %s (%s)", actor.pk, check.pk, kind)
    return check


def do_start_check(actor, check: SafetyCheck, confirmed: bool = False) -> int:
    """Start a check (not started, or held after an earthquake report): one ask per
    resident in scope goes out. A real check needs `confirmed` (the second step that
    says how many will be asked); who started and confirmed it is kept. Returns the
    number of residents asked."""
    from outreach.asking import do_create_asks

    check_can_manage_check(actor, check)
    if check.state not in (SafetyCheck.State.DRAFT, SafetyCheck.State.HELD):
        raise ValidationError(_("This safety check has already started or ended."))
    if check.deadline <= timezone.now():
        raise ValidationError({"deadline": [_("The deadline has passed: create a new safety check.")]})
    if check.kind == SafetyCheck.Kind.REAL and not confirmed:
        raise ValidationError({"confirm": [_("Confirm that this is a real event and every resident in scope is "
                                             "asked now.")]})
    now = timezone.now()
    with transaction.atomic():
        changed = SafetyCheck.objects.filter(pk=check.pk, state=check.state).update(
            state=SafetyCheck.State.OPEN, started_by=actor, started_at=now,
            confirmed_by=actor if check.kind == SafetyCheck.Kind.REAL else None)
        if not changed:
            raise ValidationError(_("This safety check has already started or ended."))
        check.refresh_from_db()
        asked = do_create_asks(check, residents_in_scope(actor, check.scope))
    logger.info("user %s started safety check %s (%s)", actor.pk, check.pk, check.kind)
    return asked if isinstance(asked, int) else len(asked or [])


def _stop(actor, check: SafetyCheck, state: str, allowed: tuple) -> SafetyCheck:
    check_can_manage_check(actor, check)
    now = timezone.now()
    with transaction.atomic():
        if not SafetyCheck.objects.filter(pk=check.pk, state__in=allowed).update(
                state=state, closed_by=actor, closed_at=now):
            raise ValidationError(_("This safety check is no longer open: nothing was changed."))
        # Nothing more is sent; an answer that still comes is kept (outreach.answers).
        Ask.objects.filter(safety_check=check, state__in=Ask.OPEN_STATES).update(
            state=Ask.State.CLOSED, next_attempt_at=None, delivering_until=None)
    logger.info("user %s %s safety check %s", actor.pk, state, check.pk)
    check.refresh_from_db()
    return check


def do_close_check(actor, check: SafetyCheck) -> SafetyCheck:
    """Stop asking: the follow-up (visits, concerns for a real event) runs next."""
    return _stop(actor, check, SafetyCheck.State.CLOSED, (SafetyCheck.State.OPEN,))


def do_cancel_check(actor, check: SafetyCheck) -> SafetyCheck:
    """Call a check off (a false alarm, a mistake): nothing more is sent and no follow-up runs."""
    return _stop(actor, check, SafetyCheck.State.CANCELLED,
                 (SafetyCheck.State.DRAFT, SafetyCheck.State.HELD, SafetyCheck.State.OPEN))


# Follow-up ----------------------------------------------------------------------------------
# When the deadline passes (or the check is closed), each resident without an answer
# gets a follow-up visit by their volunteer (or case worker), and for a real event a
# concern. Runs once per check: followed_up_at is set in the same transaction.

DRILL_VISIT_DAYS = 7  # a drill's silent residents are visited within a week; a real event's today


def silent_asks(check: SafetyCheck) -> QuerySet[Ask]:
    """Asks of the check with no answer (queued, waiting, silent, no channel, covered by a
    household that did not answer, closed), by block then address."""
    return (Ask.objects.filter(safety_check=check).exclude(state=Ask.State.ANSWERED)
            .select_related("resident__area", "area")
            .order_by("area__full_name", "resident__address", "resident_id"))


def follow_up_visitor(resident: Resident):
    """Who visits a silent resident: an assigned volunteer, else an assigned case worker,
    else a case worker of the resident's areas; None if nobody may (watch.visits)."""
    from tenants.accounts.models import User
    from watch.visits import visitor_candidates

    candidates = visitor_candidates(resident)
    if not candidates:
        return None
    assigned = set(Assignment.objects.filter(resident=resident).values_list("user_id", flat=True))
    for wanted in ((User.Role.VOLUNTEER, True), (User.Role.CASE_WORKER, True), (User.Role.CASE_WORKER, False)):
        for user in candidates:
            if user.role == wanted[0] and (user.pk in assigned) == wanted[1]:
                return user
    return None


def follow_up_due(now: datetime | None = None) -> QuerySet[SafetyCheck]:
    """Started checks not followed up whose deadline has passed, or that were closed."""
    return SafetyCheck.objects.filter(followed_up_at=None, started_at__isnull=False).filter(
        Q(state=SafetyCheck.State.OPEN, deadline__lte=now or timezone.now()) | Q(state=SafetyCheck.State.CLOSED))


def _planner(check: SafetyCheck):
    from tenants.accounts.models import User

    for user in (check.started_by, check.created_by):
        if user is not None and user.is_active and user.role in STAFF_ROLES:
            return user
    return User.objects.filter(is_active=True, role=User.Role.ADMIN).order_by("pk").first()


def follow_up_note(check: SafetyCheck) -> str:
    """The note of a check's follow-up visits and concerns, in the tenant's language (the
    follow-up list finds the check's visits by it)."""
    with translation.override(settings.LANGUAGE_CODE):
        note = _("No answer to the safety check “%(title)s”.") % {"title": check.title}
    return note[:Visit._meta.get_field("note").max_length].strip()


def _follow_up_lock(check: SafetyCheck):
    """A session advisory lock per tenant and check: one follow-up run at a time (each
    resident is its own transaction, so a transaction lock would not hold)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s), %s)",
                       [f"mimamori.safety_follow_up.{connection.schema_name}", check.pk])
        return cursor.fetchone()[0]


def _follow_up_unlock(check: SafetyCheck) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(hashtext(%s), %s)",
                       [f"mimamori.safety_follow_up.{connection.schema_name}", check.pk])


def do_follow_up_check(check: SafetyCheck) -> dict:
    """Plan the follow-up visits of a check's silent residents and, for a real event,
    raise their concerns; once: each resident in a transaction of its own (no long lock
    on the wakeups that contacts also take), a resident already given the check's visit
    or concern is passed over (a run cut short resumes), and `followed_up_at` is set when
    all are done. Returns counts of what this run did."""
    from outreach.actions import do_raise_concern
    from outreach.models import Concern
    from watch.visits import do_plan_visit, tenant_today

    result = {"visits": 0, "concerns": 0, "nobody": 0}
    if SafetyCheck.objects.filter(pk=check.pk).exclude(followed_up_at=None).exists() or check.started_at is None:
        return result
    if not _follow_up_lock(check):
        return result  # another run is on it
    try:
        planner = _planner(check)
        today = tenant_today()
        real = check.kind == SafetyCheck.Kind.REAL
        ends_on = today if real else today + timedelta(days=DRILL_VISIT_DAYS - 1)
        note = follow_up_note(check)
        since = check.started_at
        # What an earlier run cut short already did (the lock keeps other runs out meanwhile).
        visited = set(Visit.objects.filter(purpose=Visit.Purpose.FOLLOW_UP, note=note, created_at__gte=since)
                      .values_list("resident_id", flat=True))
        raised = set(Concern.objects.filter(cause=Concern.Cause.DRILL_NO_RESPONSE, note=note, opened_at__gte=since)
                     .values_list("resident_id", flat=True)) if real else set()
        for ask in silent_asks(check).iterator(chunk_size=500):
            resident = ask.resident
            if resident.status == Resident.Status.ENDED:
                continue
            with transaction.atomic():
                if resident.pk not in visited:
                    visitor = follow_up_visitor(resident)
                    try:
                        if visitor is None or planner is None:
                            raise ValidationError("nobody")
                        do_plan_visit(actor=planner, resident=resident, visitor=visitor, starts_on=today,
                                      ends_on=ends_on, purpose=Visit.Purpose.FOLLOW_UP, note=note)
                        result["visits"] += 1
                    except ValidationError:  # refused before anything is written: the list shows them to staff
                        result["nobody"] += 1
                if real and resident.pk not in raised:
                    do_raise_concern(resident=resident, cause=Concern.Cause.DRILL_NO_RESPONSE, note=note,
                                     safety_check=check.pk)
                    result["concerns"] += 1
        SafetyCheck.objects.filter(pk=check.pk, followed_up_at=None).update(followed_up_at=timezone.now())
    finally:
        _follow_up_unlock(check)
    logger.info("safety check %s followed up: %s", check.pk, result)
    return result


def do_follow_up_due_checks(now: datetime | None = None) -> list[int]:
    """The periodic pass: follow up every check whose deadline has passed or that was
    closed, each on its own (one failing is logged and retried on the next pass)."""
    done = []
    for check in follow_up_due(now).select_related("started_by", "created_by"):
        try:
            do_follow_up_check(check)
        except Exception:
            logger.exception("follow-up of safety check %s failed; retried on the next pass", check.pk)
            continue
        done.append(check.pk)
    return done


def follow_up_rows(check: SafetyCheck, user) -> list[dict]:
    """The follow-up list as `user` may see it: each silent resident with their planned
    follow-up visit (or None: nobody could be given the visit), grouped by the caller."""
    asks = list(silent_asks(check).filter(resident__in=residents_for_user(user).values("pk")))
    visits = {}
    if check.started_at:
        for visit in (Visit.objects.filter(resident__in=[a.resident_id for a in asks],
                                           purpose=Visit.Purpose.FOLLOW_UP, note=follow_up_note(check),
                                           created_at__gte=check.started_at)
                      .select_related("visitor").order_by("pk")):
            visits.setdefault(visit.resident_id, visit)
    return [{"ask": ask, "resident": ask.resident, "visit": visits.get(ask.resident_id)} for ask in asks]
