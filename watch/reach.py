"""How a resident is reached: the one definition of a resident's channels, in order,
and of their household.

Most residents have no account. They are reached by what their record has: a LINE
account linked through LINE's account-link flow, a mobile phone for SMS, a phone for an
automated call. `reach_channels` on the record orders them; when it is empty the order
is LINE, SMS, voice. Every path that asks a resident something (daily check-ins, safety
checks, notices) takes its channels from `channels_for`.
"""
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from notifications.actions import check_phone
from watch.models import Channel, Resident

# What a resident can be sent a question on (a subset of the contact channels: an
# answer on one of them is logged as a contact on that channel).
REACH_CHANNELS = {
    Channel.LINE.value: _("LINE"),
    Channel.SMS.value: _("SMS"),
    Channel.VOICE.value: _("Automated call"),
}
DEFAULT_ORDER = [Channel.LINE.value, Channel.SMS.value, Channel.VOICE.value]
HOUSEHOLD_FIELDS = ("address", "postal_code")


def address_of(resident: Resident, channel: str) -> str:
    """Where the resident is reached on `channel`, or "" if the record has nothing for it."""
    if channel == Channel.LINE:
        return resident.line_user_id
    if channel == Channel.SMS:
        return _e164(resident.mobile_phone)
    if channel == Channel.VOICE:
        return _e164(resident.phone) or _e164(resident.mobile_phone)
    return ""


def channels_for(resident: Resident, allowed: list[str] | None = None) -> list[str]:
    """The resident's channels in their order, only those the record has an address for
    (and, if given, only those in `allowed`)."""
    order = [c for c in (resident.reach_channels or DEFAULT_ORDER) if c in REACH_CHANNELS]
    return [c for c in dict.fromkeys(order) if (allowed is None or c in allowed) and address_of(resident, c)]


def _e164(number: str) -> str:
    """The record's number in E.164 (notifications.actions.check_phone), or "" if it is not one."""
    try:
        return check_phone(number)
    except ValidationError:
        return ""


def household_key(resident: Resident) -> str:
    """Residents with the same postal code and address (as compared by search) live in
    one household; a resident without an address is a household of their own."""
    from watch.search import normalise

    address = normalise(resident.address)
    if not address:
        return ""
    return f"{normalise(resident.postal_code)}|{address}"[:300]
