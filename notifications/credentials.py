"""Which provider accounts a delivery uses: the tenant's own (ProviderSettings), field by
field, or else the platform's (settings / environment).

A municipality usually has its own LINE official account (its residents and volunteers
befriend that account, and LINE user ids belong to it) and may have its own SMS number
and email sender; a platform operator may lend one account to tenants that have none.
"""
import base64
import hashlib
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

from notifications.models import ProviderSettings

SEALED_FIELDS = ("line_channel_access_token", "line_channel_secret", "twilio_auth_token")
# An account's fields go together: never the tenant's token with the platform's account,
# nor the tenant's sender number on the platform's account (it could be another tenant's).
ACCOUNTS = (("line_channel_access_token", "line_channel_secret"),
            ("twilio_account_sid", "twilio_auth_token", "twilio_from_number"))


def _fernet() -> Fernet:
    key = hashlib.sha256(b"mimamori provider credentials\0" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode() if value else ""


def unseal(value: str) -> str:
    """The secret, or "" when it was sealed under another SECRET_KEY (enter it again)."""
    if not value:
        return ""
    try:
        return _fernet().decrypt(value.encode()).decode()
    except InvalidToken:
        return ""


@dataclass(frozen=True)
class Credentials:
    line_channel_access_token: str
    line_channel_secret: str
    twilio_account_sid: str
    twilio_auth_token: str
    twilio_from_number: str
    email_from: str
    own: frozenset  # the fields the tenant set itself

    @property
    def line_ready(self) -> bool:
        return bool(self.line_channel_access_token)

    @property
    def sms_ready(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from_number)


def current() -> Credentials:
    """The credentials for the active tenant schema."""
    row = ProviderSettings.objects.filter(pk=1).first()
    platform = {
        "line_channel_access_token": settings.LINE_CHANNEL_ACCESS_TOKEN,
        "line_channel_secret": settings.LINE_CHANNEL_SECRET,
        "twilio_account_sid": settings.TWILIO_ACCOUNT_SID,
        "twilio_auth_token": settings.TWILIO_AUTH_TOKEN,
        "twilio_from_number": settings.TWILIO_FROM_NUMBER,
        "email_from": settings.DEFAULT_FROM_EMAIL,
    }
    own = {}
    if row is not None:
        for name in platform:
            stored = getattr(row, name)
            if stored:  # a secret that no longer unseals (SECRET_KEY changed) is the tenant's, unusable
                own[name] = unseal(stored) if name in SEALED_FIELDS else stored
    for group in ACCOUNTS:
        if any(name in own for name in group):
            platform.update(dict.fromkeys(group, ""))
    return Credentials(**{**platform, **own}, own=frozenset(own))
