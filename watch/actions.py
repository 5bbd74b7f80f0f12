"""Every state change of watch-over: areas, residents, consent, assignments, contacts,
rhythms, devices, overdue marks. Views, API endpoints, tasks and commands call these."""
import logging
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from notifications.events import send_event_on_commit
from tenants.accounts.models import User, hash_token
from tenants.wakeups import do_lower_wakeup, do_set_wakeup
from watch.access import oversees_whole_tenant, resident_audience
from watch.areas import (  # noqa: F401 - the tree and memberships live there; many callers import them from here
    check_can_manage_areas,
    do_attach_to_area,
    do_create_area,
    do_detach_from_area,
)
from watch.history import diff, record_change
from watch.models import (
    ATTENTION_OUTCOMES,
    SIGN_OF_LIFE,
    Area,
    Assignment,
    Channel,
    ConsentRecord,
    ContactLog,
    Device,
    DisasterSharing,
    EmergencyContact,
    Outcome,
    Resident,
    ResidentChange,
    Rhythm,
    Visit,
)
from watch.notes import note_problems
from watch.signals import attention_requested, device_pressed, resident_overdue

logger = logging.getLogger(__name__)

OVERDUE = "overdue"  # wakeup purpose
MAX_FUTURE = timedelta(minutes=5)
# No contact, signal or answer is older than this: an earlier date is a wrong clock or input.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
NOTE_MAX = ContactLog._meta.get_field("note").max_length


# Live events about a resident: ids and states, never names or notes, to everyone who
# may see the resident (watch.access.resident_audience). The edge builds its events here too.
def resident_event(resident, kind: str, **extra) -> dict:
    return {
        "type": kind,
        "resident": resident.pk,
        "last_contact_at": resident.last_contact_at.isoformat() if resident.last_contact_at else None,
        "last_outcome": resident.last_outcome,
        "next_due_at": resident.next_due_at.isoformat() if resident.next_due_at else None,
        "overdue": resident.is_overdue,
        **extra,
    }


def publish_resident_event_on_commit(resident: Resident, kind: str, **extra) -> None:
    send_event_on_commit(connection.schema_name, resident_event(resident, kind, **extra), resident_audience(resident))


# Residents.
def do_create_resident(*, area: Area, name: str, rhythms: list[dict] | None = None, actor: User | None = None,
                       change_kind: str = ResidentChange.Kind.CREATED, **fields) -> Resident:
    """Create a resident with its rhythms (default: any contact every 7 days, 12 h grace),
    recorded in its history as `change_kind` by `actor` (None: the platform)."""
    if not name.strip():
        raise ValidationError({"name": [_("Enter the name.")]})
    with transaction.atomic():
        resident = Resident(area=area, name=name.strip(), **fields)
        resident.full_clean()
        resident.save()
        record_change(resident=resident, actor=actor, kind=change_kind)
        for spec in rhythms if rhythms is not None else [{}]:
            do_set_rhythm(resident=resident, **spec)
    return resident


def do_record_consent(*, actor: User | None, resident: Resident, status: str, share_with_volunteers: bool = False,
                      share_with_association: bool = False, purpose: str = "", decided_on=None,
                      note: str = "") -> ConsentRecord:
    """Record consent (or its refusal or withdrawal); sharing needs status "given"."""
    if status not in Resident.Consent.values:
        raise ValidationError({"status": [_("Choose one of the consent states offered.")]})
    given = status == Resident.Consent.GIVEN
    before = {name: getattr(resident, name) for name in CONSENT_FIELDS}
    with transaction.atomic():
        record = ConsentRecord.objects.create(
            resident=resident, status=status, purpose=purpose or ConsentRecord._meta.get_field("purpose").default,
            share_with_volunteers=given and share_with_volunteers,
            share_with_association=given and share_with_association,
            decided_on=decided_on, recorded_by=actor, note=note,
        )
        Resident.objects.filter(pk=resident.pk).update(
            consent=status, consent_share_with_volunteers=record.share_with_volunteers,
            consent_share_with_association=record.share_with_association,
        )
        record_change(resident=resident, actor=actor, kind=ResidentChange.Kind.CONSENT, changes=diff(before, {
            "consent": status, "consent_share_with_volunteers": record.share_with_volunteers,
            "consent_share_with_association": record.share_with_association}))
    resident.refresh_from_db()
    return record


CONSENT_FIELDS = ("consent", "consent_share_with_volunteers", "consent_share_with_association")
STATUS_FIELDS = ("status", "paused_reason", "paused_until", "end_reason")


def check_can_manage_residents(actor: User) -> None:
    if actor.role not in {User.Role.ADMIN, User.Role.MUNICIPAL_STAFF, User.Role.CASE_WORKER}:
        raise PermissionDenied(_("Only staff and case workers can change residents and their teams."))


def do_set_resident_status(*, actor: User | None, resident: Resident, status: str, reason: str = "",
                           until=None) -> Resident:
    """Pause (in hospital, travelling: with a reason and an optional end date), end (moved,
    in care, deceased) or resume watch-over. Paused and ended residents never go overdue;
    resuming starts their clocks afresh. actor None: the platform itself (a pause ending)."""
    if actor is not None:
        check_can_manage_residents(actor)
    if status not in Resident.Status.values:
        raise ValidationError({"status": [_("Choose one of the states offered.")]})
    if status == Resident.Status.ENDED and reason not in Resident.EndReason.values:
        raise ValidationError({"reason": [_("Say why watch-over ends.")]})
    if status == Resident.Status.PAUSED and not reason.strip():
        raise ValidationError({"reason": [_("Say why watch-over is paused.")]})
    if status == Resident.Status.PAUSED and until is not None and until < timezone.localdate():
        raise ValidationError({"until": [_("The end of the pause is in the past.")]})
    now = timezone.now()
    before = {name: getattr(resident, name) for name in STATUS_FIELDS}
    with transaction.atomic():
        resident.status = status
        resident.paused_reason = reason.strip() if status == Resident.Status.PAUSED else ""
        resident.paused_until = until if status == Resident.Status.PAUSED else None
        resident.end_reason = reason if status == Resident.Status.ENDED else ""
        resident.ended_at = now if status == Resident.Status.ENDED else None
        resident.save(update_fields=["status", "paused_reason", "paused_until", "end_reason", "ended_at"])
        rhythms = Rhythm.objects.filter(resident=resident)
        if status == Resident.Status.ACTIVE:
            for rhythm in rhythms.filter(state=Rhythm.State.PAUSED):
                rhythm.state = Rhythm.State.OK
                rhythm.alert_at = Rhythm.alert_time(now, rhythm.interval, rhythm.grace)
                rhythm.save(update_fields=["state", "alert_at"])
                do_lower_wakeup(connection.schema_name, OVERDUE, rhythm.alert_at)
        else:
            rhythms.update(state=Rhythm.State.PAUSED, overdue_since=None)
        if status == Resident.Status.ENDED:
            # Nobody is to call on someone whose watch-over ended (moved, deceased...).
            resident.visits.filter(state=Visit.State.PLANNED).update(state=Visit.State.CANCELLED, closed_at=now)
        _refresh_resident_due(resident)
        changes = diff(before, {name: getattr(resident, name) for name in STATUS_FIELDS})
        if changes:
            record_change(resident=resident, actor=actor, kind=ResidentChange.Kind.STATUS, changes=changes)
        publish_resident_event_on_commit(resident, "resident.status", status=status)
    logger.info("user %s set resident %s to %s", actor.pk if actor else "-", resident.pk, status)
    return resident


def do_resume_ended_pauses(today) -> int:
    """Resume every resident whose pause was due to end before `today`."""
    due = Resident.objects.filter(status=Resident.Status.PAUSED, paused_until__lt=today).select_related("area")
    count = 0
    for resident in due:
        do_set_resident_status(actor=None, resident=resident, status=Resident.Status.ACTIVE)
        count += 1
    return count


def do_assign(*, actor: User, resident: Resident, user: User) -> Assignment:
    check_can_manage_residents(actor)
    if user.role not in {User.Role.VOLUNTEER, User.Role.CASE_WORKER}:
        raise ValidationError({"user": [_("Only volunteers and case workers can be on a resident's team.")]})
    with transaction.atomic():
        assignment, created = Assignment.objects.get_or_create(resident=resident, user=user)
        if created:
            record_change(resident=resident, actor=actor, kind=ResidentChange.Kind.TEAM,
                          changes={"member": [None, user.pk]})
    return assignment


def do_unassign(*, actor: User, resident: Resident, user: User) -> bool:
    check_can_manage_residents(actor)
    with transaction.atomic():
        removed = Assignment.objects.filter(resident=resident, user=user).delete()[0] > 0
        if removed:
            record_change(resident=resident, actor=actor, kind=ResidentChange.Kind.TEAM,
                          changes={"member": [user.pk, None]})
    return removed


def check_can_switch_disaster_sharing(actor: User) -> None:
    """Disaster sharing applies to the whole tenant: only those who oversee all of it switch it."""
    if not oversees_whole_tenant(actor):
        raise PermissionDenied(_("Only the administrator and staff who oversee the whole municipality can switch "
                                 "disaster sharing."))


def do_start_disaster_sharing(*, actor: User, reason: str, confirmed: bool) -> DisasterSharing:
    """Switch on the disaster exception, once confirmed; logged with who and why."""
    check_can_switch_disaster_sharing(actor)
    errors = {}
    if not reason.strip():
        errors["reason"] = [_("Say why sharing without consent is needed.")]
    if not confirmed:
        errors["confirm"] = [_("Confirm that people who need help to evacuate may be shown without their consent.")]
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            sharing = DisasterSharing.objects.create(started_by=actor, reason=reason.strip())
    except IntegrityError as exc:
        raise ValidationError(_("Disaster sharing is already on.")) from exc
    logger.warning("disaster sharing switched on by user %s: %s", actor.pk, reason)
    return sharing


def do_end_disaster_sharing(*, actor: User, confirmed: bool) -> bool:
    """Switch the disaster exception off, once confirmed: volunteers and officers stop
    seeing those who did not consent, in the middle of a disaster perhaps."""
    check_can_switch_disaster_sharing(actor)
    if not confirmed:
        raise ValidationError({"confirm": [_("Confirm that volunteers and officers will again see only the "
                                             "residents who consented.")]})
    changed = DisasterSharing.objects.filter(ended_at=None).update(ended_by=actor, ended_at=timezone.now())
    logger.warning("disaster sharing switched off by user %s", actor.pk)
    return bool(changed)


# Rhythms.
def do_set_rhythm(*, resident: Resident, channel: str = "", interval: timedelta = timedelta(days=7),
                  grace: timedelta = timedelta(hours=12), device: Device | None = None) -> Rhythm:
    """Expect contact every `interval` (+ `grace`); the clock starts now if never contacted.
    A paused or ended resident's new rhythm is off the clock like the others."""
    if interval < timedelta(minutes=1) or grace < timedelta(0):
        raise ValidationError({"interval": [_("The interval must be at least a minute.")]})
    start = resident.last_contact_at or timezone.now()
    state = Rhythm.State.OK if resident.status == Resident.Status.ACTIVE else Rhythm.State.PAUSED
    rhythm = Rhythm.objects.create(resident=resident, channel=channel, interval=interval, grace=grace, device=device,
                                   last_contact_at=resident.last_contact_at, state=state,
                                   alert_at=Rhythm.alert_time(start, interval, grace))
    if state == Rhythm.State.OK:
        do_lower_wakeup(connection.schema_name, OVERDUE, rhythm.alert_at)
    _refresh_resident_due(resident)
    return rhythm


def _summarise_rhythms(resident: Resident, rhythms) -> None:
    """The resident's next due time is about the person: devices' own rhythms do not count
    (a heartbeat must not touch the resident); any overdue rhythm makes them overdue."""
    resident.next_due_at = min((r.alert_at for r in rhythms
                                if r.alert_at and r.device_id is None and r.state != Rhythm.State.PAUSED), default=None)
    resident.is_overdue = any(r.state == Rhythm.State.OVERDUE for r in rhythms)


def _refresh_resident_due(resident: Resident) -> None:
    _summarise_rhythms(resident, Rhythm.objects.filter(resident=resident).only("alert_at", "state", "device_id"))
    Resident.objects.filter(pk=resident.pk).update(next_due_at=resident.next_due_at, is_overdue=resident.is_overdue)


# Contacts.
def occurred_in_window(at: datetime) -> bool:
    """When a contact or signal may have happened: from 1900 until five minutes from now
    (phones' clocks run a little fast). Asked by every path, the edge's included."""
    return EARLIEST <= at <= timezone.now() + MAX_FUTURE


def check_contact_input(*, occurred_at: datetime, channel: str, outcome: str, note: str) -> None:
    errors: dict[str, list[str]] = {}
    if not occurred_in_window(occurred_at):
        errors["occurred_at"] = [_("The time is in the future. Check the phone's clock.") if occurred_at > EARLIEST
                                 else _("The date is before 1900. Check the date.")]
    if channel not in Channel.values:
        errors["channel"] = [_("Unknown channel.")]
    if outcome not in Outcome.values:
        errors["outcome"] = [_("Unknown outcome.")]
    if problems := note_problems(note, NOTE_MAX):
        errors["note"] = problems
    if errors:
        raise ValidationError(errors)


class IdempotencyConflict(Exception):
    """The idempotency key was already used for a different contact."""


def do_log_contact(*, actor: User | None, resident: Resident, occurred_at: datetime, channel: str, outcome: str,
                   note: str = "", idempotency_key: uuid.UUID | None = None,
                   device: Device | None = None) -> tuple[ContactLog, bool]:
    """Log a contact once; move the resident's rhythms if it is a sign of life.

    Returns (entry, created). A retry with the same idempotency key returns the original
    entry and changes nothing; the key reused for another resident raises IdempotencyConflict.
    """
    check_contact_input(occurred_at=occurred_at, channel=channel, outcome=outcome, note=note)
    if idempotency_key is not None:
        existing = ContactLog.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return _same_submission(existing, resident), False
    try:
        with transaction.atomic():
            contact = ContactLog.objects.create(
                resident=resident, occurred_at=occurred_at, logged_by=actor, device=device,
                channel=channel, outcome=outcome, note=note.strip(), idempotency_key=idempotency_key,
            )
            _apply_contact(resident, contact)
    except IntegrityError:
        # The same submission raced us and won; hand back its entry.
        existing = ContactLog.objects.filter(idempotency_key=idempotency_key).first()
        if idempotency_key is None or existing is None:
            raise
        return _same_submission(existing, resident), False
    return contact, True


def _same_submission(existing: ContactLog, resident: Resident) -> ContactLog:
    if existing.resident_id != resident.pk:
        raise IdempotencyConflict
    return existing


def _apply_contact(resident: Resident, contact: ContactLog) -> None:
    """Inside the contact's transaction: rhythms, the resident's summary, hooks, event."""
    occurred = contact.occurred_at
    fields = {}
    if contact.outcome in SIGN_OF_LIFE:
        _reset_rhythms(resident, occurred, channel=contact.channel)
        fields = {"next_due_at": resident.next_due_at, "is_overdue": resident.is_overdue}
    if resident.last_contact_at is None or occurred >= resident.last_contact_at:
        resident.last_contact_at, resident.last_outcome = occurred, contact.outcome
        fields.update(last_contact_at=occurred, last_outcome=contact.outcome)
    if fields:
        Resident.objects.filter(pk=resident.pk).update(**fields)
    # After the rhythms and their wakeup, as the edge does (see watch.visits for the lock order).
    from watch.visits import do_complete_visits

    do_complete_visits(contact)
    if contact.outcome in ATTENTION_OUTCOMES:
        cause = ("asked_for_help" if contact.outcome == Outcome.NEEDS_HELP
                 else "device_call_request" if contact.device_id else "worried_contact")
        attention_requested.send(sender=ContactLog, resident_id=resident.pk, cause=cause, contact_id=contact.pk)
    publish_resident_event_on_commit(resident, "contact.logged", contact=contact.pk, channel=contact.channel)


def _reset_rhythms(resident: Resident, occurred: datetime, *, channel: str, device: Device | None = None) -> None:
    """Move every rhythm the contact satisfies; keep resident.next_due_at / is_overdue in step."""
    rhythms = list(Rhythm.objects.filter(resident=resident))
    lowered = None
    for rhythm in rhythms:
        satisfied = (rhythm.device_id == device.pk) if device else (
            rhythm.device_id is None and rhythm.channel in (Rhythm.ANY_CHANNEL, channel))
        if not satisfied or rhythm.state == Rhythm.State.PAUSED:
            continue
        if rhythm.last_contact_at and rhythm.last_contact_at >= occurred and rhythm.state == Rhythm.State.OK:
            continue
        was_off_the_clock = rhythm.state == Rhythm.State.OVERDUE or rhythm.alert_at is None
        rhythm.last_contact_at = max(filter(None, [rhythm.last_contact_at, occurred]))
        rhythm.alert_at = Rhythm.alert_time(rhythm.last_contact_at, rhythm.interval, rhythm.grace)
        rhythm.state, rhythm.overdue_since = Rhythm.State.OK, None
        rhythm.save(update_fields=["last_contact_at", "alert_at", "state", "overdue_since"])
        if was_off_the_clock:
            lowered = min(filter(None, [lowered, rhythm.alert_at]))
    if lowered is not None:
        do_lower_wakeup(connection.schema_name, OVERDUE, lowered)
    _summarise_rhythms(resident, rhythms)


# Devices.
def do_register_device(*, actor: User, resident: Resident, kind: str, name: str = "",
                       interval: timedelta = timedelta(hours=24)) -> tuple[Device, str]:
    """Register a device and the rhythm of its own signals; returns (device, token).
    The token is shown this once; only its hash is kept. A name is unique among the
    resident's active devices."""
    check_can_manage_residents(actor)
    if kind not in Device.Kind.values:
        raise ValidationError({"kind": [_("Unknown device kind.")]})
    name = " ".join(name.split())
    token = secrets.token_urlsafe(24)
    with transaction.atomic():
        try:
            with transaction.atomic():
                device = Device.objects.create(resident=resident, kind=kind, name=name, token_hash=hash_token(token))
        except IntegrityError as exc:
            if "device_unique_name_per_resident" not in str(exc):
                raise
            raise ValidationError({"name": [_("This resident already has an active device of this name.")]}) from exc
        do_set_rhythm(resident=resident, device=device, interval=interval, grace=timedelta(hours=1))
        record_change(resident=resident, actor=actor, kind=ResidentChange.Kind.DEVICE,
                      changes={"device": [None, {"kind": kind, "name": name}]})
    return device, token


def do_revoke_device(*, actor: User, device: Device) -> bool:
    """Stop the device's address working and its own rhythm (a revoked device never goes overdue)."""
    check_can_manage_residents(actor)
    with transaction.atomic():
        revoked = bool(Device.objects.filter(pk=device.pk, revoked_at=None).update(revoked_at=timezone.now()))
        if revoked:
            Rhythm.objects.filter(device=device).delete()
            _refresh_resident_due(device.resident)
            record_change(resident=device.resident, actor=actor, kind=ResidentChange.Kind.DEVICE,
                          changes={"device": [{"kind": device.kind, "name": device.name}, None]})
    return revoked


class DeviceSignal:
    HEARTBEAT = "heartbeat"
    OK = "ok"
    CALL_ME = "call"
    LOW_BATTERY = "battery"
    ALL = (HEARTBEAT, OK, CALL_ME, LOW_BATTERY)


class DeviceThrottled(Exception):
    """The device sent another signal less than a second ago."""


DEVICE_MIN_GAP = timedelta(seconds=1)


DEVICE_KEY_MAX = 64
DEVICE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")
_DEVICE_KEYS = uuid.UUID("6f1c9a52-3b8e-4d0f-9a57-2a1d6c3e8b40")


def check_device_key(key: str | None) -> str | None:
    """A device's idempotency key as sent (header, query or MQTT field): 1 to 64 letters,
    digits or . _ : -, or None for none."""
    if key is None:
        return None
    if not 0 < len(key) <= DEVICE_KEY_MAX or not DEVICE_KEY_CHARS.issuperset(key):
        raise ValidationError({"key": [_("The idempotency key must be 1 to %(max)d letters, digits or . _ : -")
                                       % {"max": DEVICE_KEY_MAX}]})
    return key


def _press_key(device: Device, key: str | None) -> uuid.UUID | None:
    """The contact's idempotency key: the device's own key, within that device only."""
    return uuid.uuid5(_DEVICE_KEYS, f"{device.pk}:{key}") if key else None


def _press_already_logged(device: Device, contact_key: uuid.UUID | None, outcome: str) -> ContactLog | None:
    existing = ContactLog.objects.filter(idempotency_key=contact_key).first() if contact_key else None
    if existing is not None and existing.outcome != outcome:
        raise IdempotencyConflict
    return existing


def do_record_device_signal(*, device: Device, signal: str, at: datetime | None = None,
                            key: str | None = None) -> ContactLog | None:
    """A device's signal: every signal shows the device alive; "ok" and "call" are
    contacts with the resident ("call" asks for attention at once); a motion sensor's
    heartbeat is itself a sign of life. At most one signal per second per device
    (DeviceThrottled otherwise); a revoked device's signals are ignored.

    A press sent again with the same `key` (a retry after a failure or a lost answer)
    returns the contact logged the first time and changes nothing; the key used before
    for the other press raises IdempotencyConflict. Heartbeats and battery reports repeat
    harmlessly and keep no key."""
    if signal not in DeviceSignal.ALL:
        raise ValidationError({"signal": [_("Unknown device signal.")]})
    check_device_key(key)
    at = at or timezone.now()
    resident = device.resident
    press = signal in (DeviceSignal.OK, DeviceSignal.CALL_ME)
    outcome = Outcome.FINE if signal == DeviceSignal.OK else Outcome.ASKED_FOR_CALL
    contact_key = _press_key(device, key) if press else None
    if (existing := _press_already_logged(device, contact_key, outcome)) is not None:
        return existing
    try:
        return _record_device_signal(device, resident, signal, at, outcome, contact_key)
    except (DeviceThrottled, IntegrityError):
        # The same press raced us (its first try still in flight) and won: its entry.
        if (existing := _press_already_logged(device, contact_key, outcome)) is not None:
            return existing
        raise


def _record_device_signal(device, resident, signal, at, outcome, contact_key) -> ContactLog | None:
    with transaction.atomic():
        accepted = (
            Device.objects.filter(pk=device.pk, revoked_at=None)
            .filter(Q(last_signal_at=None) | Q(last_signal_at__lte=at - DEVICE_MIN_GAP))
            .update(last_signal_at=at, battery_low=signal == DeviceSignal.LOW_BATTERY)
        )
        if not accepted:
            raise DeviceThrottled
        _reset_rhythms(resident, at, channel=Channel.DEVICE, device=device)
        if signal in (DeviceSignal.OK, DeviceSignal.CALL_ME):
            contact = ContactLog.objects.create(resident=resident, occurred_at=at, device=device,
                                                channel=Channel.DEVICE, outcome=outcome,
                                                idempotency_key=contact_key)
            _apply_contact(resident, contact)
            device_pressed.send(sender=Device, resident_id=resident.pk, press=signal, contact_id=contact.pk)
            return contact
        if signal == DeviceSignal.HEARTBEAT and device.kind == Device.Kind.MOTION:
            _reset_rhythms(resident, at, channel=Channel.DEVICE)
        Resident.objects.filter(pk=resident.pk).update(next_due_at=resident.next_due_at,
                                                       is_overdue=resident.is_overdue)
        if signal == DeviceSignal.LOW_BATTERY:
            publish_resident_event_on_commit(resident, "device.battery_low", device=device.pk)
    return None


def do_device_rhythm_recovered(*, device: Device, at: datetime) -> None:
    """A device whose own rhythm was overdue signalled again (its last_signal_at is
    already recorded by the fast ping path): put the rhythm back on time, clear the
    resident's overdue mark if nothing else is overdue, and tell those watching."""
    resident = device.resident
    with transaction.atomic():
        _reset_rhythms(resident, at, channel=Channel.DEVICE, device=device)
        Resident.objects.filter(pk=resident.pk).update(next_due_at=resident.next_due_at,
                                                       is_overdue=resident.is_overdue)
        publish_resident_event_on_commit(resident, "device.recovered", device=device.pk)


# Overdue detection.
def do_mark_overdue(now: datetime | None = None) -> list[int]:
    """Mark every rhythm of this tenant whose alert time has passed as overdue, each
    exactly once even when passes run concurrently (the UPDATE re-checks the state under
    the row lock). Publishes one event per resident and calls the overdue hook. Then the
    missed-visit pass (watch.visits), a missed sign of life too. Resets the tenant's
    wakeup to its next alert time or visit window end. Returns the resident ids marked."""
    from watch.visits import do_mark_missed_visits, next_visit_due

    now = now or timezone.now()
    table = Rhythm._meta.db_table
    with transaction.atomic():
        # Holding the wakeup row serialises passes with contacts that lower it, so the
        # next alert time written below is never later than one they just set.
        do_lower_wakeup(connection.schema_name, OVERDUE, None)
        with connection.cursor() as cursor:
            # Rows locked in id order, as the edge's heartbeat batches lock them: no deadlock.
            cursor.execute(
                f'UPDATE "{table}" AS r SET state = %s, overdue_since = %s '
                f'FROM (SELECT id FROM "{table}" WHERE state = %s AND alert_at <= %s ORDER BY id FOR UPDATE) AS due '
                f"WHERE r.id = due.id AND r.state = %s RETURNING r.id, r.resident_id",
                [Rhythm.State.OVERDUE, now, Rhythm.State.OK, now, Rhythm.State.OK],
            )
            marked = cursor.fetchall()
        resident_ids = sorted({resident_id for _id, resident_id in marked})
        if resident_ids:
            Resident.objects.filter(pk__in=resident_ids).update(is_overdue=True)
            for resident in Resident.objects.filter(pk__in=resident_ids).select_related("area"):
                publish_resident_event_on_commit(resident, "resident.overdue")
            for rhythm_id, resident_id in marked:
                resident_overdue.send(sender=Rhythm, resident_id=resident_id, rhythm_id=rhythm_id)
        do_mark_missed_visits(now)
        next_alert = (Rhythm.objects.filter(state=Rhythm.State.OK, alert_at__isnull=False)
                      .order_by("alert_at").values_list("alert_at", flat=True).first())
        do_set_wakeup(connection.schema_name, OVERDUE, min(filter(None, [next_alert, next_visit_due()]), default=None))
    if marked:
        logger.info("marked %d rhythm(s) of %d resident(s) overdue", len(marked), len(resident_ids))
    return resident_ids


# Emergency contacts.
def do_add_emergency_contact(*, actor: User | None, resident: Resident, name: str, relation: str = "",
                             phone: str = "") -> EmergencyContact:
    """Add one emergency contact to `resident` (checked against the model's limits)."""
    if actor is not None:
        check_can_manage_residents(actor)
    contact = EmergencyContact(resident=resident, name=name, relation=relation, phone=phone)
    contact.full_clean(exclude=["resident"])
    with transaction.atomic():
        contact.save()
        record_change(resident=resident, actor=actor, kind=ResidentChange.Kind.EMERGENCY_CONTACT,
                      changes={"emergency_contact": [None, {"name": contact.name, "relation": contact.relation,
                                                            "phone": contact.phone}]})
    return contact
