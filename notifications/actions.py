"""Every change to notifications and preferences. Views, tasks and the LINE webhook
call these; other apps call `do_notify`."""
import logging
import re
from datetime import time
from email.utils import parseaddr

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from notifications.events import send_event_on_commit, to_user
from notifications.hooks import reply_received, resident_message_received
from notifications.models import (
    EXTERNAL_CHANNELS,
    Channel,
    ChannelPreference,
    Notification,
    ProviderSettings,
    ReceivedWebhookEvent,
)
from tenants.tasks import enqueue_on_commit

logger = logging.getLogger(__name__)

E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
LINE_USER_ID = re.compile(r"^U[0-9a-f]{32}$")
UNSET = object()


# Reading ------------------------------------------------------------------------------

# Apps to the right register functions (user, notifications) -> the notifications whose
# subject (a resident) the user may see; this app knows no residents.
subject_filters: list = []


def visible_subjects(user, notifications: QuerySet[Notification]) -> QuerySet[Notification]:
    """Of `notifications`, those about no resident or about one `user` may see now."""
    for keep_visible in subject_filters:
        notifications = keep_visible(user, notifications)
    return notifications


def subject_visible_to(user, notification: Notification) -> bool:
    return visible_subjects(user, Notification.objects.filter(pk=notification.pk)).exists()


def notifications_for_user(user) -> QuerySet[Notification]:
    """The user's own notifications, newest first, of those about residents they may still
    see (someone taken off a resident's team no longer reads about her). Nobody sees
    anyone else's."""
    return visible_subjects(user, Notification.objects.filter(recipient=user)).order_by("-created_at", "-pk")


def get_notification_for_user(user, notification_id) -> Notification:
    """The user's notification, or 404 alike for missing and not theirs."""
    try:
        return notifications_for_user(user).get(pk=int(notification_id))
    except (Notification.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404 from exc


def get_unread_count_for_user(user) -> int:
    return notifications_for_user(user).filter(read_at=None).count()


def get_preference_for_user(user) -> ChannelPreference:
    """The user's channel preference; an unsaved default if they never chose."""
    return ChannelPreference.objects.filter(user=user).first() or ChannelPreference(user=user)


def failed_notifications_for_user(user) -> QuerySet[Notification]:
    """Notifications that failed for good, newest failure first, of those whose subject
    the user may see (staff only: the view checks the role)."""
    return visible_subjects(user, Notification.objects.filter(state=Notification.State.FAILED)
                            .select_related("recipient").prefetch_related("attempts").order_by("-failed_at", "-pk"))


# Notifying ----------------------------------------------------------------------------

def do_notify(*, recipient, kind: str, title: str, body: str, url: str = "", urgent: bool = False,
              dedupe_key: str, subject_resident: int | None = None) -> tuple[Notification, bool]:
    """Notify `recipient` once per `dedupe_key`: the in-app notification exists at once
    (and is announced live after commit); external delivery is enqueued after commit.

    Calling it again with the same (recipient, dedupe_key), also concurrently, returns
    the existing notification and `created=False`, and sends nothing.
    """
    if not dedupe_key or len(dedupe_key) > 200:
        raise ValueError("dedupe_key must be 1 to 200 characters")
    if len(kind) > 64:
        raise ValueError("kind must be at most 64 characters")
    existing = Notification.objects.filter(recipient=recipient, dedupe_key=dedupe_key).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                recipient=recipient, kind=kind, title=title[:200], body=body, url=url[:500], urgent=urgent,
                dedupe_key=dedupe_key, subject_resident=subject_resident, next_attempt_at=timezone.now(),
            )
    except IntegrityError:
        # A concurrent call created it first (the unique constraint waited for it).
        return Notification.objects.get(recipient=recipient, dedupe_key=dedupe_key), False
    send_event_on_commit(connection.schema_name, {
        "type": "notification.created", "text": notification.title,
        "notification": {"id": notification.pk, "kind": kind, "title": notification.title, "url": notification.url,
                         "urgent": urgent},
        "unread": get_unread_count_for_user(recipient),
    }, [to_user(recipient.pk)])
    from notifications.tasks import deliver  # tasks import delivery, which imports nothing of this module

    enqueue_on_commit(deliver, notification.pk, urgent)  # urgent: its own queue (tasks.route_delivery)
    return notification, True


def _announce_unread(user) -> None:
    event = {"type": "notification.read", "unread": get_unread_count_for_user(user)}
    send_event_on_commit(connection.schema_name, event, [to_user(user.pk)])


def do_mark_read(*, user, notification: Notification) -> bool:
    """Mark the user's own notification read; True if it was unread."""
    if notification.recipient_id != user.pk:
        raise Http404
    changed = Notification.objects.filter(pk=notification.pk, read_at=None).update(read_at=timezone.now()) == 1
    if changed:
        _announce_unread(user)
    return changed


def do_mark_all_read(*, user) -> int:
    changed = Notification.objects.filter(recipient=user, read_at=None).update(read_at=timezone.now())
    if changed:
        _announce_unread(user)
    return changed


# Preferences --------------------------------------------------------------------------

def check_phone(value: str) -> str:
    """A phone number in E.164; Japanese domestic numbers (090-1234-5678) become +81."""
    phone = re.sub(r"[\s\-()（）‐－]", "", value or "")
    phone = phone.translate(str.maketrans("０１２３４５６７８９＋", "0123456789+"))
    if not phone:
        return ""
    if phone.startswith("0") and not phone.startswith("00"):
        phone = "+81" + phone[1:]
    if not E164.match(phone):
        raise ValidationError(_("Enter the phone number in international form, e.g. +819012345678."), code="phone")
    return phone


def check_time(value) -> time | None:
    if value in (None, ""):
        return None
    if isinstance(value, time):
        return value
    match = re.fullmatch(r"([01]?[0-9]|2[0-3]):([0-5][0-9])(:[0-5][0-9])?", str(value).strip())
    if not match:
        raise ValidationError(_("Enter a time like 22:00."), code="time")
    return time(int(match.group(1)), int(match.group(2)))


def check_webpush_subscription(subscription) -> dict:
    from notifications.delivery import webpush_endpoint_allowed

    if not isinstance(subscription, dict):
        raise ValidationError(_("This push subscription is not valid."), code="webpush")
    endpoint = subscription.get("endpoint")
    keys = subscription.get("keys")
    if not isinstance(endpoint, str) or not isinstance(keys, dict) or not all(
        isinstance(keys.get(k), str) and keys.get(k) for k in ("p256dh", "auth")
    ):
        raise ValidationError(_("This push subscription is not valid."), code="webpush")
    if not webpush_endpoint_allowed(endpoint):
        raise ValidationError(_("This push service is not supported."), code="webpush")
    return {"endpoint": endpoint, "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}}


def do_set_preferences(*, user, channels: list[str], line_user_id: str = "", phone: str = "",
                       quiet_start=None, quiet_end=None) -> ChannelPreference:
    """Save the user's channels (in order), addresses and quiet hours.

    Raises ValidationError with a message per field (channels, phone, line_user_id,
    quiet_start) and saves nothing if any is wrong.
    """
    errors: dict[str, list[str]] = {}
    preference = get_preference_for_user(user)

    ordered: list[str] = []
    for channel in channels or []:
        if channel not in EXTERNAL_CHANNELS:
            errors.setdefault("channels", []).append(_("Unknown channel: %(channel)s.") % {"channel": channel})
        elif channel not in ordered:
            ordered.append(channel)

    try:
        phone = check_phone(phone)
    except ValidationError as exc:
        errors.setdefault("phone", []).extend(exc.messages)
        phone = None
    line_user_id = (line_user_id or "").strip()
    if line_user_id:
        if not LINE_USER_ID.match(line_user_id):
            errors.setdefault("line_user_id", []).append(
                _("A LINE user ID is U followed by 32 characters 0-9 and a-f."))
        elif ChannelPreference.objects.filter(line_user_id=line_user_id).exclude(user=user).exists():
            errors.setdefault("line_user_id", []).append(_("This LINE user ID is linked to another person."))

    try:
        start, end = check_time(quiet_start), check_time(quiet_end)
    except ValidationError as exc:
        errors.setdefault("quiet_start", []).extend(exc.messages)
        start = end = None
    else:
        if (start is None) != (end is None):
            errors.setdefault("quiet_start", []).append(
                _("Give both the start and the end of quiet hours, or neither."))
        elif start is not None and start == end:
            errors.setdefault("quiet_start", []).append(_("Quiet hours must start and end at different times."))

    if Channel.EMAIL in ordered and not user.email:
        errors.setdefault("channels", []).append(_("Your account has no email address."))
    if Channel.SMS in ordered and phone == "":
        errors.setdefault("phone", []).append(_("Enter a phone number to receive SMS."))
    if Channel.LINE in ordered and not line_user_id:
        errors.setdefault("line_user_id", []).append(_("Enter your LINE user ID to receive LINE messages."))
    if Channel.WEBPUSH in ordered and not preference.webpush_subscription:
        errors.setdefault("channels", []).append(_("Turn on push notifications on this phone first."))
    if errors:
        raise ValidationError(errors)

    preference.channels = ordered
    preference.phone = phone
    preference.line_user_id = line_user_id
    preference.quiet_start, preference.quiet_end = start, end
    preference.save()
    logger.info("user %s set notification channels %s", user.pk, ordered)
    return preference


def do_set_webpush_subscription(*, user, subscription: dict | None) -> ChannelPreference:
    """Store (or with None, forget) the push subscription of the user's phone. Forgetting
    it also takes web push out of the user's channels."""
    preference = get_preference_for_user(user)
    if subscription is None:
        preference.webpush_subscription = None
        preference.channels = [c for c in preference.channels if c != Channel.WEBPUSH]
    else:
        preference.webpush_subscription = check_webpush_subscription(subscription)
        if Channel.WEBPUSH not in preference.channels:
            preference.channels = [Channel.WEBPUSH.value, *preference.channels]
    preference.save()
    return preference


# Replies ------------------------------------------------------------------------------

def get_user_for_line_id(line_user_id: str):
    preference = (ChannelPreference.objects.select_related("user")
                  .filter(line_user_id=line_user_id, user__is_active=True).first())
    return preference.user if preference else None


def get_user_for_phone(phone: str):
    """The one active person whose SMS number this is; None if nobody's, or several people's."""
    users = [p.user for p in ChannelPreference.objects.select_related("user")
             .filter(phone=phone, user__is_active=True)[:2]] if phone else []
    return users[0] if len(users) == 1 else None


def do_receive_reply(*, user, channel: str, event_id: str, text: str = "",
                     notification: Notification | None = None) -> str | None:
    """A person answered on an external channel: a text, or the answer button under
    `notification` (theirs). Whoever listens (outreach) acts on it in the same transaction
    that records the provider's `event_id`, so an event delivered again changes nothing.
    Returns what to answer the person with, or None (also for a redelivered event)."""
    if notification is not None and notification.recipient_id != user.pk:
        raise Http404
    with transaction.atomic():
        try:
            with transaction.atomic():
                ReceivedWebhookEvent.objects.create(provider=channel, event_id=event_id)
        except IntegrityError:
            logger.info("%s event %s received again: ignored", channel, event_id)
            return None
        logger.info("reply from user %s on %s", user.pk, channel)
        answers = reply_received.send(sender=do_receive_reply, user=user, channel=channel, text=text,
                                      event_id=event_id, notification=notification)
    return next((answer for _receiver, answer in answers if answer), None)


def do_receive_resident_message(*, channel: str, address: str, event_id: str, text: str) -> str | None:
    """A message on an external channel from an address that is no user's (a resident's
    phone or LINE account): passed to whoever listens (outreach) in the transaction that
    records the provider's `event_id`, so an event delivered again changes nothing.
    Returns what to answer with, or None (also for a redelivered event); a receiver that
    acts on the message answers something, and when none does nothing is kept."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                ReceivedWebhookEvent.objects.create(provider=channel, event_id=event_id)
        except IntegrityError:
            logger.info("%s event %s received again: ignored", channel, event_id)
            return None
        answers = resident_message_received.send(sender=do_receive_resident_message, channel=channel,
                                                 address=address, text=text, event_id=event_id)
        answer = next((answer for _receiver, answer in answers if answer), None)
        if answer is None:
            # Nobody was waiting for it (an unknown number): no trace is kept.
            transaction.set_rollback(True)
    return answer



TWILIO_SID = re.compile(r"^AC[0-9a-f]{32}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")  # a LINE channel secret, a Twilio auth token
LINE_ACCESS_TOKEN = re.compile(r"^[A-Za-z0-9+/=._-]{20,500}$")
PROVIDER_FIELDS = ("line_channel_access_token", "line_channel_secret", "twilio_account_sid", "twilio_auth_token",
                   "twilio_from_number", "email_from")


@transaction.atomic
def do_configure_providers(*, actor, **changes) -> ProviderSettings:
    """Set this tenant's own provider accounts. Each keyword is one of PROVIDER_FIELDS: a
    value sets it, "" clears it (the platform's account is used again); a field not
    given is kept. Secrets are stored sealed.

    Raises ValidationError with a message per field, and saves nothing, for a malformed
    value, or for an account half given (a LINE token without its channel secret, a
    Twilio account SID without its auth token or without a sender number).
    """
    from notifications import credentials

    unknown = set(changes) - set(PROVIDER_FIELDS)
    if unknown:
        raise TypeError(f"unknown provider fields: {sorted(unknown)}")
    row = ProviderSettings.objects.select_for_update().filter(pk=1).first() or ProviderSettings(pk=1)
    values = {name: (credentials.unseal(getattr(row, name)) if name in credentials.SEALED_FIELDS
                     else getattr(row, name)) for name in PROVIDER_FIELDS}
    errors: dict[str, list[str]] = {}
    for name, value in changes.items():
        value = (value or "").strip()
        if name == "twilio_from_number" and value:
            try:
                value = check_phone(value)
            except ValidationError as exc:
                errors.setdefault(name, []).extend(exc.messages)
        values[name] = value
    checks = {
        "line_channel_access_token": (LINE_ACCESS_TOKEN, _("This is not a LINE channel access token.")),
        "line_channel_secret": (HEX32, _("A LINE channel secret is 32 characters 0-9 and a-f.")),
        "twilio_account_sid": (TWILIO_SID, _("A Twilio account SID is AC followed by 32 characters 0-9 and a-f.")),
        "twilio_auth_token": (HEX32, _("A Twilio auth token is 32 characters 0-9 and a-f.")),
    }
    for name, (pattern, message) in checks.items():
        if name in changes and values[name] and not pattern.match(values[name]):
            errors.setdefault(name, []).append(message)
    if values["email_from"]:
        sender = values["email_from"]
        _display, address = parseaddr(sender)
        # One address on one line, that fits: parseaddr alone lets "a@b.jp, c@d.jp" through.
        fits = len(sender) <= ProviderSettings._meta.get_field("email_from").max_length
        try:
            validate_email(address)
            valid = fits and not re.search(r"[\x00-\x1f,;]", sender)
        except ValidationError:
            valid = False
        if not valid:
            errors.setdefault("email_from", []).append(
                _("Enter a sender like 京田辺市 見守り <mimamori@example.lg.jp>."))
    if bool(values["line_channel_access_token"]) != bool(values["line_channel_secret"]):
        errors.setdefault("line_channel_secret", []).append(
            _("Give both the LINE channel access token and the channel secret, or neither."))
    if bool(values["twilio_account_sid"]) != bool(values["twilio_auth_token"]):
        errors.setdefault("twilio_auth_token", []).append(
            _("Give both the Twilio account SID and its auth token, or neither."))
    elif bool(values["twilio_account_sid"]) != bool(values["twilio_from_number"]):
        errors.setdefault("twilio_from_number", []).append(
            _("Give the number your Twilio account sends from.") if values["twilio_account_sid"] else
            _("A sender number needs your own Twilio account: give its account SID and auth token too."))
    if errors:
        raise ValidationError(errors)
    for name in PROVIDER_FIELDS:
        value = values[name]
        setattr(row, name, credentials.seal(value) if name in credentials.SEALED_FIELDS else value)
    row.updated_by = actor
    row.save()
    logger.info("provider settings changed by %s: %s", f"user {actor.pk}" if actor else "an operator command",
                ", ".join(sorted(changes)) or "nothing")
    return row


def do_forget_webpush_subscription(*, preference: ChannelPreference, endpoint: str) -> bool:
    """The push service says the browser unsubscribed (404/410): forget the subscription and
    take web push out of the person's channels, as do_set_webpush_subscription(None) does, but
    only while the stored endpoint is still `endpoint` (compare-and-set: a phone that subscribed
    again meanwhile keeps its new subscription). True when it was forgotten."""
    with transaction.atomic():
        current = (ChannelPreference.objects.select_for_update()
                   .filter(pk=preference.pk, webpush_subscription__endpoint=endpoint).first())
        if current is None:
            return False
        current.webpush_subscription = None
        current.channels = [c for c in current.channels if c != Channel.WEBPUSH]
        current.save(update_fields=["webpush_subscription", "channels"])
    logger.info("user %s: push subscription gone, forgotten", current.user_id)
    return True
