"""Actions that edit a resident's record: its fields, its area, its rhythms, emergency
contacts and devices' addresses, each recorded in the resident's history
(watch.history) inside its transaction; and the history told in words.

Creating a resident, pausing, ending, consent, teams and registering or revoking a
device are in watch.actions (they record their history there too)."""
import re
import secrets
from datetime import date, timedelta

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import connection, transaction
from django.http import Http404
from django.utils import timezone
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext

from tenants.accounts.models import User, hash_token
from tenants.wakeups import do_lower_wakeup
from watch import actions
from watch.access import SENSITIVE_FIELDS, areas_for_user, can_see_sensitive, residents_for_user
from watch.history import diff, record_change
from watch.importing import normalize_phone
from watch.models import Area, Channel, ConsentRecord, Device, EmergencyContact, Resident, ResidentChange, Rhythm
from watch.search import normalise

# Every field of the record a person edits (the area, status and consent have their own actions).
RECORD_FIELDS = ("name", "furigana", "external_id", "gender", "date_of_birth", "postal_code", "address", "phone",
                 "mobile_phone", "email", "household", "needs_evacuation_support", "risk", "visit_notes", "care_level",
                 "health_notes")
NOTE_FIELDS = ("visit_notes", "health_notes")
PHONE_FIELDS = ("phone", "mobile_phone")
# The import's phone rule: digits and hyphens after normalize_phone.
_PHONE = re.compile(r"\+?\d+(?:-\d+)*")


def editable_fields(actor: User) -> tuple[str, ...]:
    """The record's fields `actor` may see and so edit: sensitive ones only for those who see them."""
    sensitive = can_see_sensitive(actor)
    return tuple(name for name in RECORD_FIELDS if sensitive or name not in SENSITIVE_FIELDS)


def get_area_for_user(user: User, area_id) -> Area:
    """An area `user` looks after; 404 alike for missing and not theirs."""
    try:
        return areas_for_user(user).get(pk=int(area_id))
    except (Area.DoesNotExist, ValueError, TypeError, OverflowError) as exc:
        raise Http404 from exc


def clean_record_fields(fields: dict) -> dict:
    """Fields of the record as a person typed them, tidied (names' spaces, phone numbers
    by the import's rule); ValidationError by field for a blank name, notes of spaces
    only, a phone that is not one, a birth date in the future."""
    errors: dict[str, list[str]] = {}
    cleaned = dict(fields)
    if "name" in cleaned:
        cleaned["name"] = re.sub(r"\s+", " ", cleaned["name"] or "").strip()
        if not cleaned["name"]:
            errors["name"] = [_("Enter the name.")]
    for name in ("furigana", "external_id", "postal_code", "address", "care_level"):
        if name in cleaned:
            cleaned[name] = (cleaned[name] or "").strip()
    for name in NOTE_FIELDS:
        if name in cleaned:
            value = cleaned[name] or ""
            if value and not value.strip():
                errors[name] = [_("Only spaces: write the note or leave it empty.")]
            cleaned[name] = value.strip()
    for name in PHONE_FIELDS:
        if name in cleaned:
            cleaned[name] = normalize_phone(cleaned[name] or "")
            if cleaned[name] and not _PHONE.fullmatch(cleaned[name]):
                errors[name] = [_("Use digits and hyphens, like 0774-62-1234.")]
    born = cleaned.get("date_of_birth")
    if born and born > timezone.localdate():
        errors["date_of_birth"] = [_("The date of birth is in the future.")]
    if errors:
        raise ValidationError(errors)
    return cleaned


def find_look_alikes(actor: User, *, name: str, furigana: str = "", date_of_birth: date | None = None,
                     exclude: int | None = None) -> tuple[list[Resident], int]:
    """Residents who look like the person described: the same date of birth and the
    same name or furigana once normalised (watch.search.normalise). Returns those
    `actor` may see, and how many others there are (named to nobody)."""
    if date_of_birth is None:
        return [], 0
    wanted = {normalise(name)} | ({normalise(furigana)} if furigana.strip() else set())
    wanted.discard("")
    same_birthday = Resident.objects.filter(date_of_birth=date_of_birth).exclude(pk=exclude)
    alike = [r.pk for r in same_birthday.only("pk", "name", "furigana")
             if normalise(r.name) in wanted or (r.furigana and normalise(r.furigana) in wanted)]
    visible = list(residents_for_user(actor).filter(pk__in=alike).select_related("area"))
    return visible, len(alike) - len(visible)


def do_update_resident(*, actor: User, resident: Resident, fields: dict) -> Resident:
    """Save the fields `actor` may edit (others, sensitive ones included, are left as
    they are, never cleared); records what changed."""
    actions.check_can_manage_residents(actor)
    allowed = editable_fields(actor)
    cleaned = clean_record_fields({name: value for name, value in fields.items() if name in allowed})
    before = {name: getattr(resident, name) for name in cleaned}
    with transaction.atomic():
        for name, value in cleaned.items():
            setattr(resident, name, value)
        resident.full_clean(exclude=["area"])
        changes = diff(before, cleaned)
        if changes:
            resident.save(update_fields=[*changes, "updated_at"])
            record_change(resident=resident, actor=actor, kind=ResidentChange.Kind.UPDATED, changes=changes)
    return resident


def do_move_resident(*, actor: User, resident: Resident, area: Area) -> Resident:
    """Move `resident` into `area`, which must be one `actor` looks after."""
    actions.check_can_manage_residents(actor)
    if not areas_for_user(actor).filter(pk=area.pk).exists():
        raise Http404
    if area.pk == resident.area_id:
        raise ValidationError({"area": [_("The resident is already in this area.")]})
    with transaction.atomic():
        changes = diff({"area": resident.area_id}, {"area": area.pk})
        resident.area = area
        resident.save(update_fields=["area", "updated_at"])
        record_change(resident=resident, actor=actor, kind=ResidentChange.Kind.MOVED, changes=changes)
        actions.publish_resident_event_on_commit(resident, "resident.moved", area=area.pk)
    return resident


# Rhythms of contact.
RHYTHM_MAX = timedelta(days=366)


def rhythm_spec(rhythm: Rhythm | None) -> dict | None:
    """A rhythm as the history keeps it."""
    if rhythm is None:
        return None
    return {"channel": rhythm.channel, "interval": int(rhythm.interval.total_seconds()),
            "grace": int(rhythm.grace.total_seconds()), "device": str(rhythm.device) if rhythm.device_id else None}


def check_rhythm_input(*, channel: str, interval: timedelta, grace: timedelta) -> None:
    errors: dict[str, list[str]] = {}
    if channel not in (Rhythm.ANY_CHANNEL, *Channel.values):
        errors["channel"] = [_("Choose one of the ways of contact offered.")]
    if not timedelta(hours=1) <= interval <= RHYTHM_MAX:
        errors["interval"] = [_("Between 1 hour and 366 days.")]
    if not timedelta(0) <= grace <= RHYTHM_MAX:
        errors["grace"] = [_("Between 0 hours and 366 days.")]
    if errors:
        raise ValidationError(errors)


def get_rhythm_for_resident(resident: Resident, rhythm_id) -> Rhythm:
    """A rhythm of the person (devices' own rhythms go with their device); 404 otherwise."""
    try:
        return resident.rhythms.get(pk=int(rhythm_id), device=None)
    except (Rhythm.DoesNotExist, ValueError, TypeError, OverflowError) as exc:
        raise Http404 from exc


def do_add_rhythm(*, actor: User, resident: Resident, channel: str, interval: timedelta,
                  grace: timedelta) -> Rhythm:
    actions.check_can_manage_residents(actor)
    check_rhythm_input(channel=channel, interval=interval, grace=grace)
    with transaction.atomic():
        rhythm = actions.do_set_rhythm(resident=resident, channel=channel, interval=interval, grace=grace)
        record_change(resident=resident, actor=actor, kind=ResidentChange.Kind.RHYTHM,
                      changes={"rhythm": [None, rhythm_spec(rhythm)]})
    return rhythm


def do_change_rhythm(*, actor: User, rhythm: Rhythm, channel: str, interval: timedelta, grace: timedelta) -> Rhythm:
    """Change a rhythm; its clock runs from the last contact it counted (or from now)."""
    actions.check_can_manage_residents(actor)
    check_rhythm_input(channel=channel, interval=interval, grace=grace)
    resident = rhythm.resident
    before = rhythm_spec(rhythm)
    now = timezone.now()
    with transaction.atomic():
        rhythm.channel, rhythm.interval, rhythm.grace = channel, interval, grace
        rhythm.alert_at = Rhythm.alert_time(rhythm.last_contact_at or now, interval, grace)
        if rhythm.state == Rhythm.State.OVERDUE and rhythm.alert_at > now:
            rhythm.state, rhythm.overdue_since = Rhythm.State.OK, None
        rhythm.save(update_fields=["channel", "interval", "grace", "alert_at", "state", "overdue_since"])
        if rhythm.state == Rhythm.State.OK:
            do_lower_wakeup(connection.schema_name, actions.OVERDUE, rhythm.alert_at)
        actions._refresh_resident_due(resident)
        if before != rhythm_spec(rhythm):
            record_change(resident=resident, actor=actor, kind=ResidentChange.Kind.RHYTHM,
                          changes={"rhythm": [before, rhythm_spec(rhythm)]})
    return rhythm


def do_remove_rhythm(*, actor: User, rhythm: Rhythm) -> None:
    actions.check_can_manage_residents(actor)
    resident = rhythm.resident
    with transaction.atomic():
        record_change(resident=resident, actor=actor, kind=ResidentChange.Kind.RHYTHM,
                      changes={"rhythm": [rhythm_spec(rhythm), None]})
        rhythm.delete()
        actions._refresh_resident_due(resident)


# Emergency contacts.
def contact_spec(contact: EmergencyContact | None) -> dict | None:
    if contact is None:
        return None
    return {"name": contact.name, "relation": contact.relation, "phone": contact.phone}


def clean_contact_fields(*, name: str, relation: str, phone: str) -> dict:
    errors: dict[str, list[str]] = {}
    cleaned = {"name": re.sub(r"\s+", " ", name or "").strip(), "relation": (relation or "").strip(),
               "phone": normalize_phone(phone or "")}
    if not cleaned["name"]:
        errors["name"] = [_("Enter the name.")]
    if cleaned["phone"] and not _PHONE.fullmatch(cleaned["phone"]):
        errors["phone"] = [_("Use digits and hyphens, like 0774-62-1234.")]
    if errors:
        raise ValidationError(errors)
    return cleaned


def get_emergency_contact_for_resident(resident: Resident, contact_id) -> EmergencyContact:
    try:
        return resident.emergency_contacts.get(pk=int(contact_id))
    except (EmergencyContact.DoesNotExist, ValueError, TypeError, OverflowError) as exc:
        raise Http404 from exc


def do_change_emergency_contact(*, actor: User, contact: EmergencyContact, name: str, relation: str = "",
                                phone: str = "") -> EmergencyContact:
    actions.check_can_manage_residents(actor)
    cleaned = clean_contact_fields(name=name, relation=relation, phone=phone)
    before = contact_spec(contact)
    with transaction.atomic():
        for field, value in cleaned.items():
            setattr(contact, field, value)
        contact.full_clean(exclude=["resident"])
        contact.save()
        if before != contact_spec(contact):
            record_change(resident=contact.resident, actor=actor, kind=ResidentChange.Kind.EMERGENCY_CONTACT,
                          changes={"emergency_contact": [before, contact_spec(contact)]})
    return contact


def do_remove_emergency_contact(*, actor: User, contact: EmergencyContact) -> None:
    actions.check_can_manage_residents(actor)
    with transaction.atomic():
        record_change(resident=contact.resident, actor=actor, kind=ResidentChange.Kind.EMERGENCY_CONTACT,
                      changes={"emergency_contact": [contact_spec(contact), None]})
        contact.delete()


# Devices.
def get_device_for_resident(resident: Resident, device_id, *, active: bool = True) -> Device:
    try:
        devices = resident.devices.filter(revoked_at=None) if active else resident.devices.all()
        return devices.get(pk=int(device_id))
    except (Device.DoesNotExist, ValueError, TypeError, OverflowError) as exc:
        raise Http404 from exc


def device_spec(device: Device) -> dict:
    return {"kind": device.kind, "name": device.name}


def do_reissue_device_token(*, actor: User, device: Device, confirmed: bool) -> str:
    """A new ping address for an active device (to print its label again): the old
    address stops working at once. Returns the new token, shown this once."""
    actions.check_can_manage_residents(actor)
    if not confirmed:
        raise ValidationError({"confirm": [_("Confirm that the old address will stop working.")]})
    token = secrets.token_urlsafe(24)
    with transaction.atomic():
        if not Device.objects.filter(pk=device.pk, revoked_at=None).update(token_hash=hash_token(token)):
            raise Http404
        record_change(resident=device.resident, actor=actor, kind=ResidentChange.Kind.DEVICE,
                      changes={"device_address": [None, device_spec(device)]})
    return token


# The history in words. --------------------------------------------------------------
CHANGED = gettext_lazy("(changed)")
# Parts of the record that only those who see sensitive data see the values of.
HIDDEN_VALUES = (*SENSITIVE_FIELDS, "device", "device_address")
# Parts that are lists (rhythms, contacts, devices, the team): an entry added or removed.
ADDED_OR_REMOVED = ("rhythm", "device", "device_address", "emergency_contact", "member")
_LABELS = {
    "consent_share_with_volunteers": ConsentRecord._meta.get_field("share_with_volunteers").verbose_name,
    "consent_share_with_association": ConsentRecord._meta.get_field("share_with_association").verbose_name,
    "rhythm": gettext_lazy("Expected contact"),
    "device": gettext_lazy("Device"),
    "device_address": gettext_lazy("Ping address"),
    "emergency_contact": gettext_lazy("Emergency contact"),
    "member": gettext_lazy("Team"),
}


def duration_words(seconds: int) -> str:
    """7 days, 12 hours, 30 minutes: in whole days, else hours, else minutes."""
    if seconds and seconds % 86400 == 0:
        return ngettext("%(n)d day", "%(n)d days", seconds // 86400) % {"n": seconds // 86400}
    if seconds % 3600 == 0:
        return ngettext("%(n)d hour", "%(n)d hours", seconds // 3600) % {"n": seconds // 3600}
    return ngettext("%(n)d minute", "%(n)d minutes", seconds // 60) % {"n": seconds // 60}


def rhythm_words(channel: str, interval: int, grace: int, device: str | None = None) -> str:
    """「いずれかの連絡：7日ごと（猶予12時間）」, "any contact every 3 days (grace 12 hours)"."""
    if device:
        what = device
    elif channel:
        what = str(Channel(channel).label) if channel in Channel.values else channel
    else:
        what = _("any contact")
    values = {"what": what, "every": duration_words(interval), "grace": duration_words(grace)}
    if grace:
        return _("%(what)s every %(every)s (grace %(grace)s)") % values
    return _("%(what)s every %(every)s") % values


def status_words(status: str) -> str:
    """A resident's watch-over status as a person says it (「見守り中」, not 「有効」)."""
    return {
        Resident.Status.ACTIVE: pgettext("watch-over status", "Active"),
        Resident.Status.PAUSED: pgettext("watch-over status", "Paused"),
        Resident.Status.ENDED: pgettext("watch-over status", "Ended"),
    }.get(status, "")


def _value_words(name: str, value, areas: dict, users: dict) -> str:
    if value is None or value == "":
        return "—"
    if name == "area":
        return str(areas.get(value, "—"))
    if name == "member":
        return str(users.get(value, "—"))
    if name == "rhythm":
        return rhythm_words(value["channel"], value["interval"], value["grace"], value.get("device"))
    if name in ("device", "device_address"):
        kind = str(Device.Kind(value["kind"]).label) if value["kind"] in Device.Kind.values else ""
        return f"{value['name']}（{kind}）" if value["name"] else kind
    if name == "emergency_contact":
        return " ".join(part for part in (value["name"], value["relation"] and f"({value['relation']})",
                                          value["phone"]) if part)
    if name == "status":
        return status_words(value)
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    try:
        field = Resident._meta.get_field(name)
    except FieldDoesNotExist:  # a field since removed: its value as stored
        return str(value)
    if field.choices:
        return str(dict(field.flatchoices).get(value, value))
    if field.get_internal_type() == "DateField":
        return date.fromisoformat(value).strftime("%Y-%m-%d")
    return str(value)


def _added_or_removed(name: str, before, after, areas: dict, users: dict) -> str:
    words = {"what": _value_words(name, after if before is None else before, areas, users)}
    if name == "device_address":
        return _("New address issued: %(what)s") % words
    return (_("Added: %(what)s") if before is None else _("Removed: %(what)s")) % words


def field_label(name: str) -> str:
    if name in _LABELS:
        return str(_LABELS[name])
    try:
        return str(Resident._meta.get_field(name).verbose_name)
    except FieldDoesNotExist:  # a field since removed
        return name


def describe_history(changes, viewer: User) -> list[dict]:
    """Each change as {"change", "title", "lines": [(label, before, after)]}, in the
    page's language; sensitive values shown only to those who may see them."""
    changes = list(changes)
    area_ids = {v for c in changes for v in c.changes.get("area", []) if v}
    user_ids = {v for c in changes for v in c.changes.get("member", []) if v}
    areas = {a.pk: a for a in Area.objects.filter(pk__in=area_ids)}
    users = {u.pk: u for u in User.objects.filter(pk__in=user_ids)}
    sensitive = can_see_sensitive(viewer)
    described = []
    for change in changes:
        lines = []
        for name, (before, after) in change.changes.items():
            if name in HIDDEN_VALUES and not sensitive:
                lines.append((capfirst(field_label(name)), "", str(CHANGED)))
            elif name in ADDED_OR_REMOVED and (before is None or after is None):
                lines.append((capfirst(field_label(name)), "", _added_or_removed(name, before, after, areas, users)))
            else:
                lines.append((capfirst(field_label(name)), _value_words(name, before, areas, users),
                              _value_words(name, after, areas, users)))
        described.append({"change": change, "title": change.get_kind_display(), "lines": lines})
    return described


def check_status_confirmed(status: str, confirmed: bool) -> None:
    """Ending watch-over is confirmed by the person."""
    if status == Resident.Status.ENDED and not confirmed:
        raise ValidationError({"confirm": [_("Confirm that watch-over ends.")]})

