"""Reaching a resident: linking their LINE account (LINE's account-link flow) and the
order of their channels.

The account link, as LINE documents it
(https://developers.line.biz/en/docs/messaging-api/linking-accounts/):
1. staff print a sheet for the resident with the official account's QR code and a
   one-time code (`do_issue_link_code`; only the code's hash is kept);
2. the resident (or family) adds the account; the `follow` event is answered with a
   link to our page carrying LINE's link token (outreach.line);
3. on that page they type the code; a right one makes a nonce (`do_start_link`) and the
   page sends them to LINE's dialog with the link token and the nonce;
4. LINE sends the `accountLink` event with the nonce: `do_complete_link` ties the LINE
   account to the resident.
"""
import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from watch.history import record_change
from watch.models import LineLinkCode, LineLinkNonce, Resident, ResidentChange
from watch.reach import REACH_CHANNELS

CODE_DIGITS = 8
CODE_DAYS = 30
NONCE_MINUTES = 30  # LINE's link token lives 10 minutes; the dialog cannot come later
WRONG_TRIES = 5  # wrong codes per link token ...
WRONG_WINDOW = 10 * 60  # ... in this many seconds
LINK_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,128}$")


def _code_hash(code: str) -> str:
    # Keyed per tenant: a leaked table does not give 8-digit codes away to a quick search,
    # and one tenant's code means nothing on another's host.
    key = f"{settings.SECRET_KEY}:line-link:{connection.schema_name}".encode()
    return hmac.new(key, code.encode(), hashlib.sha256).hexdigest()


def normalise_code(text: str) -> str:
    """The code as typed: full-width digits, spaces and hyphens allowed (「1234 5678」)."""
    return re.sub(r"[\s\-‐－ー]", "", unicodedata.normalize("NFKC", text or ""))


def format_code(code: str) -> str:
    return f"{code[:4]} {code[4:]}"


@transaction.atomic
def do_issue_link_code(*, actor, resident: Resident) -> tuple[LineLinkCode, str]:
    """A new one-time code for `resident` (valid CODE_DAYS days); the resident's earlier
    unused codes stop working. Returns (row, code): the code is shown once, on the sheet."""
    now = timezone.now()
    LineLinkCode.objects.filter(resident=resident, used_at__isnull=True, expires_at__gt=now).update(expires_at=now)
    for _attempt in range(5):
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        try:
            with transaction.atomic():
                row = LineLinkCode.objects.create(resident=resident, code_hash=_code_hash(code), created_by=actor,
                                                  expires_at=now + timedelta(days=CODE_DAYS))
        except IntegrityError:  # another resident's code, by chance
            continue
        return row, code
    raise RuntimeError("could not find a free LINE link code")


def _tries_key(link_token: str) -> str:
    return "line-link-tries:" + hashlib.sha256(link_token.encode()).hexdigest()[:32]


def check_link_token(link_token: str) -> None:
    if not LINK_TOKEN.match(link_token or ""):
        raise ValidationError(_("This page works only from the link LINE sent you. Open it from LINE again."),
                              code="no_token")


def too_many_tries(link_token: str) -> bool:
    return (cache.get(_tries_key(link_token)) or 0) >= WRONG_TRIES


@dataclass
class LinkStart:
    nonce: LineLinkNonce
    dialog_url: str


def do_start_link(*, link_token: str, code: str) -> LinkStart:
    """The code typed on the account-link page: a right one (known, unused, not expired)
    gives a nonce and the address of LINE's account-link dialog. A wrong one raises
    ValidationError and changes nothing but the count of wrong tries for this link token
    (WRONG_TRIES in WRONG_WINDOW seconds, then refused)."""
    check_link_token(link_token)
    if too_many_tries(link_token):
        raise ValidationError(_("Too many wrong codes. Please wait 10 minutes and try again."), code="throttled")
    typed = normalise_code(code)
    now = timezone.now()
    row = None
    if re.fullmatch(rf"[0-9]{{{CODE_DIGITS}}}", typed):
        row = LineLinkCode.objects.filter(code_hash=_code_hash(typed)).select_related("resident").first()
    if row is None or row.used_at is not None or row.expires_at <= now:
        key = _tries_key(link_token)
        cache.add(key, 0, WRONG_WINDOW)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, WRONG_WINDOW)
        if row is not None and row.used_at is None:
            raise ValidationError(_("This code has expired. Please ask for a new sheet."), code="expired")
        if row is not None:
            raise ValidationError(_("This code has been used already. Please ask for a new sheet."), code="used")
        raise ValidationError(_("This code is not right. Please check the number on the sheet."), code="wrong")
    nonce = LineLinkNonce.objects.create(nonce=secrets.token_urlsafe(32), resident=row.resident, code=row,
                                         line_user_id="")
    query = urlencode({"linkToken": link_token, "nonce": nonce.nonce})
    return LinkStart(nonce=nonce, dialog_url=f"{settings.LINE_ACCESS_BASE.rstrip('/')}/dialog/bot/accountLink?{query}")


class LinkResult:
    LINKED = "linked"
    TAKEN = "taken"  # the LINE account is another resident's
    UNKNOWN = "unknown"  # no such nonce, used, too old, or LINE said it failed


def do_complete_link(*, line_user_id: str, nonce: str, ok: bool) -> tuple[str, Resident | None]:
    """LINE's `accountLink` event: with result ok and a known, unused, recent nonce whose
    code is still valid, ties `line_user_id` to the nonce's resident (replacing an
    earlier LINE account of theirs) and uses up the code and the nonce. Returns
    (LinkResult, resident)."""
    now = timezone.now()
    if not ok or not nonce:
        return LinkResult.UNKNOWN, None
    with transaction.atomic():
        row = (LineLinkNonce.objects.select_for_update().select_related("code")
               .filter(nonce=nonce, used_at__isnull=True, created_at__gt=now - timedelta(minutes=NONCE_MINUTES))
               .first())
        if row is None or row.code.used_at is not None or row.code.expires_at <= now:
            return LinkResult.UNKNOWN, None
        resident = Resident.objects.select_for_update().get(pk=row.resident_id)
        if Resident.objects.filter(line_user_id=line_user_id).exclude(pk=resident.pk).exists():
            return LinkResult.TAKEN, resident
        before = resident.line_linked_at
        resident.line_user_id, resident.line_linked_at = line_user_id, now
        try:
            with transaction.atomic():
                resident.save(update_fields=["line_user_id", "line_linked_at", "updated_at"])
        except IntegrityError:  # linked to another resident at the same moment
            return LinkResult.TAKEN, resident
        LineLinkNonce.objects.filter(pk=row.pk).update(used_at=now, line_user_id=line_user_id)
        LineLinkCode.objects.filter(pk=row.code_id).update(used_at=now)
        record_change(resident=resident, actor=row.code.created_by, kind=ResidentChange.Kind.UPDATED,
                      changes={"line_linked_at": [before.isoformat() if before else None, now.isoformat()]})
    return LinkResult.LINKED, resident


@transaction.atomic
def do_unlink_line(*, actor, resident: Resident) -> bool:
    """Forget the resident's LINE account (and any unused code). False if none was linked."""
    resident = Resident.objects.select_for_update().get(pk=resident.pk)
    if not resident.line_user_id:
        return False
    before = resident.line_linked_at
    resident.line_user_id, resident.line_linked_at = "", None
    resident.save(update_fields=["line_user_id", "line_linked_at", "updated_at"])
    now = timezone.now()
    LineLinkCode.objects.filter(resident=resident, used_at__isnull=True, expires_at__gt=now).update(expires_at=now)
    record_change(resident=resident, actor=actor, kind=ResidentChange.Kind.UPDATED,
                  changes={"line_linked_at": [before.isoformat() if before else None, None]})
    return True


# The order of channels -------------------------------------------------------------------

def check_reach_channels(channels: list[str]) -> list[str]:
    """The channels as chosen, in order; ValidationError for an unknown, repeated or empty choice."""
    if not channels:
        raise ValidationError({"channels": _("Choose at least one channel.")})
    unknown = [c for c in channels if c not in REACH_CHANNELS]
    if unknown:
        raise ValidationError({"channels": _("This channel cannot be used to ask a resident.")})
    if len(set(channels)) != len(channels):
        raise ValidationError({"channels": _("Each channel can be chosen once.")})
    return list(channels)


@transaction.atomic
def do_set_reach_channels(*, actor, resident: Resident, channels: list[str]) -> Resident:
    """Set the resident's channels, in order (watch.reach.channels_for reads them)."""
    channels = check_reach_channels(channels)
    resident = Resident.objects.select_for_update().get(pk=resident.pk)
    before = list(resident.reach_channels or [])
    if before == channels:
        return resident
    resident.reach_channels = channels
    resident.save(update_fields=["reach_channels", "updated_at"])
    record_change(resident=resident, actor=actor, kind=ResidentChange.Kind.UPDATED,
                  changes={"reach_channels": [before, channels]})
    return resident
