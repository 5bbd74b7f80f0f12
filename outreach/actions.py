"""Every state change of concerns and their escalation."""
import logging
import secrets
import uuid
from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from notifications.events import send_event_on_commit
from outreach.models import (
    DEFAULT_POLICY_NAME,
    URGENT_POLICY_NAME,
    AckLink,
    Concern,
    ConcernEvent,
    DutyShift,
    EscalationPolicy,
    Severity,
    Target,
)
from outreach.replies import Outcome, is_acknowledgement
from tenants.accounts.models import User, hash_token
from tenants.context import absolute_url
from tenants.tasks import enqueue_on_commit
from tenants.wakeups import RETRY_AFTER, do_lower_wakeup, do_set_wakeup
from watch.access import can_see_resident, resident_audience
from watch.models import Resident, Rhythm, Visit
from watch.notes import note_problems

logger = logging.getLogger(__name__)

ESCALATION = "escalation"  # wakeup purpose
NOTE_MAX = ConcernEvent._meta.get_field("note").max_length
ACK_LINK_TTL = timedelta(hours=24)
# A step names its targets, whose people are notified together, then waits.
# Used when a tenant has no policy that matches: volunteer → case worker → area staff.
DEFAULT_STEPS = [
    {"targets": [Target.ASSIGNED_VOLUNTEERS], "users": [], "wait_minutes": 15},
    {"targets": [Target.CASE_WORKERS], "users": [], "wait_minutes": 30},
    {"targets": [Target.AREA_STAFF], "users": [], "wait_minutes": 60},
]
DEFAULT_REPEATS = 1
# Urgent concerns ("please call me", "needs help") unless the tenant has a policy made
# for urgent ones: the case workers and the area's staff at once, then whoever is on duty
# and the volunteers nearby; twice.
URGENT_STEPS = [
    {"targets": [Target.CASE_WORKERS, Target.AREA_STAFF], "users": [], "wait_minutes": 10},
    {"targets": [Target.ON_DUTY, Target.ASSIGNED_VOLUNTEERS], "users": [], "wait_minutes": 10},
]
URGENT_REPEATS = 2
SEVERITY_BY_CAUSE = {
    Concern.Cause.DEVICE_CALL_REQUEST: Severity.URGENT,
    Concern.Cause.ASKED_FOR_HELP: Severity.URGENT,
    Concern.Cause.OVERDUE: Severity.HIGH,
    Concern.Cause.WORRIED_CONTACT: Severity.HIGH,
    Concern.Cause.DRILL_NO_RESPONSE: Severity.HIGH,
    # As severe as an overdue rhythm: both are a sign of life that did not come.
    Concern.Cause.MISSED_VISIT: Severity.HIGH,
}


def policy_for(resident: Resident, severity: str) -> tuple[str, list[dict], int]:
    """(name, steps, repeat limit) of the policy in force for this resident and severity.

    An urgent concern follows only a policy made for urgent concerns, else the urgent
    default: a policy for every severity must not slow it down."""
    ancestors = resident.area.ancestor_ids
    urgent = severity == Severity.URGENT
    candidates = (EscalationPolicy.objects.filter(is_active=True)
                  .filter(Q(area__isnull=True) | Q(area_id__in=ancestors))
                  .filter(Q(severity=severity) if urgent else Q(severity="") | Q(severity=severity))
                  .select_related("area").prefetch_related("steps"))

    def specificity(policy):
        depth = len(policy.area.ancestor_ids) if policy.area_id else 0
        return (depth, policy.severity == severity, policy.pk)

    best = max(candidates, key=specificity, default=None)
    if best is None or not best.steps.all():
        if urgent:
            return URGENT_POLICY_NAME, URGENT_STEPS, URGENT_REPEATS
        return DEFAULT_POLICY_NAME, DEFAULT_STEPS, DEFAULT_REPEATS
    return best.name, steps_of(best), best.repeat_limit


def steps_of(policy: EscalationPolicy) -> list[dict]:
    """A policy's rows as the steps a concern copies: the rows of one order are one step."""
    steps: dict[int, dict] = {}
    for row in policy.steps.all():
        step = steps.setdefault(row.order, {"targets": [], "users": [], "wait_minutes": row.wait_minutes})
        if row.target not in step["targets"]:
            step["targets"].append(row.target)
        if row.target == Target.USER and row.user_id:
            step["users"].append(row.user_id)
        step["wait_minutes"] = max(step["wait_minutes"], row.wait_minutes)
    return list(steps.values())


def concern_event(concern: Concern, kind: str, *, actor: User | None = None, note: str = "",
                  **data) -> ConcernEvent:
    """Record a timeline entry and publish it, with its id, to those watching the resident."""
    event = ConcernEvent.objects.create(concern=concern, kind=kind, actor=actor, note=note, data=data)
    send_event_on_commit(connection.schema_name, live_payload(event), resident_audience(concern.resident))
    return event


def live_payload(event: ConcernEvent) -> dict:
    concern = event.concern
    return {"type": f"concern.{event.kind}", "id": event.pk, "concern": concern.pk, "resident": concern.resident_id,
            "state": concern.state, "severity": concern.severity, "cause": concern.cause}


def do_raise_concern(*, resident: Resident, cause: str, severity: str | None = None, note: str = "",
                     actor: User | None = None, **data) -> tuple[Concern, bool]:
    """Open a concern, or add to the live one of the same resident and cause.

    Returns (concern, opened). A new concern copies the policy in force and starts its
    first escalation step as soon as the transaction commits. A signal more severe than
    the open concern it adds to (「電話してほしい」 after a worried visit) raises the
    concern to that severity and starts that severity's policy from its first step."""
    if cause not in Concern.Cause.values:
        raise ValidationError({"cause": [_("Unknown cause.")]})
    severity = severity or SEVERITY_BY_CAUSE.get(cause, Severity.NORMAL)
    if severity not in Severity.values:
        raise ValidationError({"severity": [_("Choose one of the severities offered.")]})
    if problems := note_problems(note, NOTE_MAX):
        raise ValidationError({"note": problems})
    note = note.strip()
    with transaction.atomic():
        for _attempt in range(2):
            existing = (Concern.objects.select_for_update().select_related("resident__area")
                        .filter(resident=resident, cause=cause, state__in=Concern.LIVE_STATES).first())
            if existing is not None:
                if _more_severe(severity, existing.severity):
                    _escalate_afresh(existing, severity)
                concern_event(existing, ConcernEvent.Kind.SIGNAL, actor=actor, note=note, **data)
                return existing, False
            try:
                with transaction.atomic():
                    name, steps, repeats = policy_for(resident, severity)
                    concern = Concern.objects.create(
                        resident=resident, cause=cause, severity=severity, note=note, opened_by=actor,
                        policy_name=name, steps=steps, repeat_limit=repeats, next_step_at=timezone.now(),
                    )
                    concern_event(concern, ConcernEvent.Kind.OPENED, actor=actor, note=note, **data)
            except IntegrityError:
                continue  # another signal opened it a moment ago: add to that one
            from outreach.tasks import advance_escalation

            enqueue_on_commit(advance_escalation, concern.pk, str(concern.timer))
            do_lower_wakeup(connection.schema_name, ESCALATION, concern.next_step_at)
            logger.info("concern %s opened for resident %s (%s)", concern.pk, resident.pk, cause)
            return concern, True
    raise RuntimeError("could not open or find the concern")


def _more_severe(severity: str, than: str) -> bool:
    return Severity.values.index(severity) > Severity.values.index(than)


def _escalate_afresh(concern: Concern, severity: str) -> None:
    """Inside the caller's transaction, on the locked live concern: the new severity's
    policy, from its first step, now; the run it had scheduled becomes stale (a new timer).
    An acknowledged concern is open again: whoever took it is told with everyone else, as
    the urgent steps say (「電話してほしい」 must reach the case workers even then)."""
    from outreach.tasks import advance_escalation

    concern.policy_name, concern.steps, concern.repeat_limit = policy_for(concern.resident, severity)
    concern.severity, concern.step_index, concern.round = severity, 0, 0
    concern.state, concern.reached_nobody = Concern.State.OPEN, False
    concern.next_step_at, concern.timer = timezone.now(), uuid.uuid4()
    concern.save(update_fields=["policy_name", "steps", "repeat_limit", "severity", "step_index", "round",
                                "state", "reached_nobody", "next_step_at", "timer"])
    enqueue_on_commit(advance_escalation, concern.pk, str(concern.timer))
    do_lower_wakeup(connection.schema_name, ESCALATION, concern.next_step_at)
    logger.info("concern %s raised to %s", concern.pk, severity)


def recipients_for(concern: Concern, step: dict) -> list[User]:
    """The active people the step's targets name, each once, who may see the resident
    (watch.access decides: a volunteer without the resident's consent, an officer or a
    case worker elsewhere is left out)."""
    resident = concern.resident
    people: dict[int, User] = {}
    for target in step["targets"]:
        for person in _named_by(resident, target, step):
            people.setdefault(person.pk, person)
    return [person for person in people.values() if can_see_resident(person, resident)]


def _named_by(resident: Resident, target: str, step: dict) -> list[User]:
    """The people a step's target names for `resident`: its own team first, then the
    area-level rule that the policy page's reach check asks too (outreach.policies.Reach)."""
    from outreach.policies import Reach  # policies builds on this module

    active = User.objects.filter(is_active=True).order_by("pk")
    if target == Target.ASSIGNED_VOLUNTEERS:
        return list(active.filter(role=User.Role.VOLUNTEER, assignments__resident=resident))
    if target == Target.CASE_WORKERS:
        assigned = list(active.filter(role=User.Role.CASE_WORKER, assignments__resident=resident))
        if assigned:
            return assigned
    return Reach().named(resident.area, target, step)


def do_advance_escalation(concern_id: int, timer: str) -> bool:
    """Run the concern's current step once: notify its people, then schedule the next.

    A step whose people are nobody is recorded as skipped and the next runs at once, in
    this same run, up to the end of the round. A round in which no step, ever, reached
    anyone goes to the tenant's administrators and marks the concern for the board.

    Acts only if the concern is open, its step is due and `timer` is the concern's
    current timer (a stale, duplicated or swept run does nothing). Everything, the
    notifications included, commits together or not at all; notifications are unique
    per person and step, so a step re-run after a crash notifies nobody twice."""
    with transaction.atomic():
        concern = (Concern.objects.select_for_update().select_related("resident__area")
                   .filter(pk=concern_id, state=Concern.State.OPEN, timer=timer,
                           next_step_at__lte=timezone.now()).first())
        if concern is None:
            return False
        people, round_over, wait = [], not concern.steps, timedelta(0)
        while not round_over:
            step = concern.steps[concern.step_index]
            where = {"step": concern.step_index + 1, "round": concern.round + 1, "targets": step["targets"]}
            people = recipients_for(concern, step)
            for person in people:
                # The severity is part of the key: raised to urgent, the steps notify afresh.
                _notify(concern, person, f"concern:{concern.pk}:{concern.severity}:round:{concern.round}"
                                         f":step:{concern.step_index}")
            if people:
                concern_event(concern, ConcernEvent.Kind.NOTIFIED, recipients=[p.pk for p in people], **where)
                concern.reached_nobody = False
            else:
                concern_event(concern, ConcernEvent.Kind.SKIPPED, **where)
            wait = timedelta(minutes=step["wait_minutes"])
            concern.step_index += 1
            round_over = concern.step_index >= len(concern.steps)
            if round_over:
                concern.step_index, concern.round = 0, concern.round + 1
            if people:
                break
        if not people and not concern.reached_nobody and not concern.events.filter(
                kind=ConcernEvent.Kind.NOTIFIED).exists():
            _notify_administrators(concern)
        if concern.round >= concern.repeat_limit:
            concern.next_step_at = None
            concern_event(concern, ConcernEvent.Kind.EXHAUSTED)
        else:
            concern.next_step_at = timezone.now() + wait
            do_lower_wakeup(connection.schema_name, ESCALATION, concern.next_step_at)
        concern.timer = uuid.uuid4()
        concern.save(update_fields=["step_index", "round", "next_step_at", "timer", "reached_nobody"])
    return True


def _notify_administrators(concern: Concern) -> None:
    """No step reached anyone: the tenant's active administrators are told, once."""
    admins = [admin for admin in User.objects.filter(role=User.Role.ADMIN, is_active=True).order_by("pk")
              if can_see_resident(admin, concern.resident)]
    for admin in admins:
        _notify(concern, admin, f"concern:{concern.pk}:{concern.severity}:unreached")
    concern.reached_nobody = True
    concern_event(concern, ConcernEvent.Kind.UNREACHED, recipients=[a.pk for a in admins])
    logger.warning("concern %s reached nobody; %d administrator(s) notified", concern.pk, len(admins))


def _notify(concern: Concern, person: User, dedupe_key: str) -> None:
    """The message names the resident and the cause, never a note: the person may see the
    resident (recipients_for) but not necessarily its sensitive notes."""
    from notifications.actions import do_notify

    token = secrets.token_urlsafe(24)
    AckLink.objects.create(concern=concern, user=person, token_hash=hash_token(token),
                           expires_at=timezone.now() + ACK_LINK_TTL)
    resident = concern.resident
    with translation.override("ja"):
        title = _("Watch-over: %(name)s — %(cause)s") % {"name": resident.name, "cause": concern.get_cause_display()}
        body = _("%(title)s\nAcknowledge here (only you, once): %(link)s") % {
            "title": title, "link": absolute_url(connection.schema_name, f"/outreach/ack/{token}/")}
    do_notify(recipient=person, kind="concern", title=title, body=body, url=f"/outreach/concerns/{concern.pk}/",
              urgent=concern.severity == Severity.URGENT, dedupe_key=dedupe_key, subject_resident=concern.resident_id)


def can_act_on_concern(user: User, concern: Concern) -> bool:
    """Those who may see the resident may act on the concern (watch.access decides)."""
    return user.is_active and can_see_resident(user, concern.resident)


def check_can_act_on_concern(user: User, concern: Concern) -> None:
    if not can_act_on_concern(user, concern):
        raise PermissionDenied(_("You are not among the people watching over this resident."))


def do_acknowledge_concern(*, concern: Concern, actor: User, note: str = "", via: str = "app") -> bool:
    """"I'm on it": stops the escalation at once. False if it was no longer open."""
    check_can_act_on_concern(actor, concern)
    with transaction.atomic():
        changed = Concern.objects.filter(pk=concern.pk, state=Concern.State.OPEN).update(
            state=Concern.State.ACKNOWLEDGED, acknowledged_at=timezone.now(), acknowledged_by=actor,
            next_step_at=None, timer=uuid.uuid4())
        if changed:
            concern.refresh_from_db()
            # Never refused for its note: an acknowledgement stops an alert.
            concern_event(concern, ConcernEvent.Kind.ACKNOWLEDGED, actor=actor, note=note.strip()[:NOTE_MAX], via=via)
    return bool(changed)


def do_close_concern(*, concern: Concern, actor: User, state: str, note: str = "") -> bool:
    """Resolve (someone acted) or dismiss (nothing was wrong) an open or acknowledged concern."""
    check_can_act_on_concern(actor, concern)
    if state not in (Concern.State.RESOLVED, Concern.State.DISMISSED):
        raise ValidationError({"state": [_("Choose resolved or dismissed.")]})
    if not note.strip():
        raise ValidationError({"note": [_("Say what was done or found.")]})
    with transaction.atomic():
        changed = Concern.objects.filter(pk=concern.pk, state__in=Concern.LIVE_STATES).update(
            state=state, closed_at=timezone.now(), closed_by=actor, next_step_at=None, timer=uuid.uuid4())
        if changed:
            concern.refresh_from_db()
            concern_event(concern, state, actor=actor, note=note[:NOTE_MAX])
    return bool(changed)


class AckRefused(Exception):
    pass


def do_acknowledge_by_link(token: str) -> tuple[Concern, bool]:
    """An acknowledgement link: works once, for its own person, until it expires.
    A forged, used or expired link is refused (and logged) and changes nothing.

    Returns (concern, acknowledged): False when someone else acknowledged or closed the
    concern first; the concern is then read again, so it says who and when."""
    with transaction.atomic():
        link = (AckLink.objects.select_for_update().select_related("concern__resident__area", "user")
                .filter(token_hash=hash_token(token)).first())
        if link is None or link.used_at is not None or link.expires_at <= timezone.now():
            logger.warning("refused acknowledgement link (%s)", "unknown" if link is None else
                           "used" if link.used_at else "expired")
            raise AckRefused
        link.used_at = timezone.now()
        link.save(update_fields=["used_at"])
        try:
            acknowledged = do_acknowledge_concern(concern=link.concern, actor=link.user, via="link")
        except PermissionDenied as exc:
            logger.warning("acknowledgement link of user %s refused: no longer in scope", link.user_id)
            raise AckRefused from exc
    if not acknowledged:
        link.concern.refresh_from_db()
    return link.concern, acknowledged


def do_take_reply(*, person: User, text: str, via: str, concern_id: int | None = None) -> str:
    """A person's reply on LINE or SMS; returns its `replies.Outcome`.

    With `concern_id` (the answer button under that concern's notification) it
    acknowledges that concern. A typed text is about the one open concern awaiting this
    person's acknowledgement (an unused, unexpired link); it acknowledges that concern
    only if the whole text is an acknowledging answer, and any other text is kept on it as
    the person's message. With several awaiting, an answer acknowledges none (which one
    is not guessed) and a message is kept on each. Someone who may no longer act on a
    concern changes nothing of it."""
    concerns = Concern.objects.select_related("resident__area")
    if concern_id is not None:
        concern = concerns.filter(pk=concern_id).first()
    else:
        awaiting = list(concerns.filter(
            state=Concern.State.OPEN, pk__in=AckLink.objects.filter(
                user=person, used_at=None, expires_at__gt=timezone.now()).values("concern_id")))
        if len(awaiting) > 1:
            if is_acknowledgement(text):
                logger.info("reply of user %s on %s not matched: several concerns await it", person.pk, via)
                return Outcome.SEVERAL
            kept = [c for c in awaiting if can_act_on_concern(person, c)]
            for each in kept:  # "倒れていた" must reach every team that asked this person
                concern_event(each, ConcernEvent.Kind.MESSAGE, actor=person, note=text[:NOTE_MAX], via=via)
            return Outcome.KEPT if kept else Outcome.NOTHING
        concern = awaiting[0] if awaiting else None
    if concern is None:
        return Outcome.NOTHING
    try:
        check_can_act_on_concern(person, concern)
    except PermissionDenied:
        logger.info("reply of user %s on %s: no longer among those watching concern %s", person.pk, via, concern.pk)
        return Outcome.NOTHING
    if concern_id is None and not is_acknowledgement(text):
        concern_event(concern, ConcernEvent.Kind.MESSAGE, actor=person, note=text[:NOTE_MAX], via=via)
        return Outcome.KEPT
    with transaction.atomic():
        if not do_acknowledge_concern(concern=concern, actor=person, via=via):
            return Outcome.ALREADY_HANDLED
        AckLink.objects.filter(concern=concern, user=person, used_at=None).update(used_at=timezone.now())
    return Outcome.ACKNOWLEDGED


def do_run_due_escalations(now=None) -> int:
    """The sweep: run every open concern whose step is due (its task may have been lost:
    a dead worker, a flushed Redis), then set the tenant's next escalation wakeup.

    Each concern on its own: one that fails is logged, its step moved `RETRY_AFTER`
    later (retried then, not in a tight loop), and the others proceed."""
    now = now or timezone.now()
    due = list(Concern.objects.filter(state=Concern.State.OPEN, next_step_at__lte=now).values_list("pk", "timer"))
    ran = 0
    for pk, timer in due:
        try:
            ran += do_advance_escalation(pk, str(timer))
        except Exception:
            logger.exception("escalation of concern %s failed; retried in %d s", pk, RETRY_AFTER.seconds)
            Concern.objects.filter(pk=pk, state=Concern.State.OPEN, timer=timer).update(
                next_step_at=timezone.now() + RETRY_AFTER)
    with transaction.atomic():
        do_lower_wakeup(connection.schema_name, ESCALATION, None)  # lock, as in watch.do_mark_overdue
        following = (Concern.objects.filter(state=Concern.State.OPEN, next_step_at__isnull=False)
                     .order_by("next_step_at").values_list("next_step_at", flat=True).first())
        do_set_wakeup(connection.schema_name, ESCALATION, following)
    return ran


MISSED_VISIT_REPAIR_WINDOW = timedelta(days=7)


def do_repair_overdue_concerns() -> list[int]:
    """The sweep behind the overdue and missed-visit hooks (whose failure cannot undo the
    overdue or missed mark): a resident with an overdue rhythm and no overdue concern live
    or opened since the rhythm went overdue gets one now; likewise a recently missed visit.
    A concern closed since then stays closed. Returns the ids of the residents repaired;
    one that fails is logged and left for the next run."""
    covered = Concern.objects.filter(resident=OuterRef("resident_id"), cause=Concern.Cause.OVERDUE).filter(
        Q(state__in=Concern.LIVE_STATES) | Q(opened_at__gte=OuterRef("overdue_since")))
    missing = {Concern.Cause.OVERDUE: dict(
        Rhythm.objects.filter(state=Rhythm.State.OVERDUE).exclude(Exists(covered))
        .order_by("resident_id", "pk").values_list("resident_id", "pk"))}
    # The same for the missed-visit hook: a visit missed in the last week, of a resident
    # still watched over, with no missed-visit concern live or opened since.
    covered = Concern.objects.filter(resident=OuterRef("resident_id"), cause=Concern.Cause.MISSED_VISIT).filter(
        Q(state__in=Concern.LIVE_STATES) | Q(opened_at__gte=OuterRef("closed_at")))
    missing[Concern.Cause.MISSED_VISIT] = dict(
        Visit.objects.filter(state=Visit.State.MISSED, closed_at__gte=timezone.now() - MISSED_VISIT_REPAIR_WINDOW,
                             resident__status=Resident.Status.ACTIVE).exclude(Exists(covered))
        .order_by("resident_id", "pk").values_list("resident_id", "pk"))
    repaired = []
    for cause, ids in missing.items():
        source = "rhythm" if cause == Concern.Cause.OVERDUE else "visit"
        for resident in Resident.objects.filter(pk__in=ids).select_related("area").order_by("pk"):
            try:
                do_raise_concern(resident=resident, cause=cause, repaired=True, **{source: ids[resident.pk]})
            except Exception:
                logger.exception("could not raise the %s concern of resident %s", cause, resident.pk)
                continue
            logger.warning("%s concern of resident %s was missing: raised by the repair sweep", cause, resident.pk)
            repaired.append(resident.pk)
    return repaired


def do_add_duty_shift(*, actor: User, user: User, starts_at, ends_at) -> DutyShift:
    """Put `user` on duty from `starts_at` to `ends_at`. Only those who oversee the whole
    tenant change the rota; the person must be one who may be on duty
    (outreach.policies.people_for_duty) and not already on duty then."""
    from outreach.policies import check_can_edit_policies, people_for_duty

    check_can_edit_policies(actor)
    if not people_for_duty().filter(pk=user.pk).exists():
        raise ValidationError({"user": [_("Choose one of the people offered.")]})
    if ends_at <= starts_at:
        raise ValidationError({"ends_at": [_("A shift must end after it starts.")]})
    if ends_at - starts_at > timedelta(days=7):
        raise ValidationError({"ends_at": [_("A shift lasts at most a week.")]})
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()  # two additions for one person: one at a time
        if DutyShift.objects.filter(user=user, starts_at__lt=ends_at, ends_at__gt=starts_at).exists():
            raise ValidationError({"starts_at": [_("%(person)s is already on duty at that time.") % {"person": user}]})
        return DutyShift.objects.create(user=user, starts_at=starts_at, ends_at=ends_at)
