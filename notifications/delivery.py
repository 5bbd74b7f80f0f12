"""External delivery: the providers, and the run that tries them in the person's order.

Every provider goes through its real client library (Django's mail, line-bot-sdk,
twilio, pywebpush), with a timeout on every call; tests point them at a local fake
server through the *_API_BASE settings (and the push endpoint of a subscription).

`do_deliver` is one delivery run for one notification. It holds the notification by a
lease (compare-and-set on `delivering_until`), so two runs of the same task never send
twice, and it always leaves the row in a state the sweep can pick up again.
"""
import abc
import json
import logging
import re
import smtplib
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from notifications import credentials
from notifications.actions import do_forget_webpush_subscription, subject_visible_to
from notifications.events import send_event_on_commit, to_user
from notifications.hooks import answerable_kinds
from notifications.mail import OutcomeUnknown
from notifications.models import Channel, ChannelPreference, DeliveryAttempt, Notification
from tenants.accounts.models import STAFF_ROLES, User
from tenants.context import primary_domain

logger = logging.getLogger(__name__)

ANSWER_LIMIT = 1000


@dataclass
class ProviderResult:
    """What a provider answered. `transient`: worth trying the same channel again later
    (timeout, connection error, 5xx, 429); otherwise a failure is final for the channel.
    `unknown`: no answer after the request went out, so the provider may have accepted it."""

    ok: bool
    status: int | None = None
    answer: str = ""
    error: str = ""
    transient: bool = False
    unknown: bool = False


def failure_for_status(status: int | None, answer: str = "", error: str = "") -> ProviderResult:
    transient = status is None or status == 429 or status >= 500
    return ProviderResult(ok=False, status=status, answer=answer, error=error or f"HTTP {status}",
                          transient=transient)


def failure_for_exception(exc: BaseException) -> ProviderResult:
    """A call that ended without an answer: unknown, unless it failed while connecting."""
    unknown = not _failed_connecting(exc)
    return ProviderResult(ok=False, error=f"{'unknown: ' if unknown else ''}{type(exc).__name__}: {exc}",
                          transient=True, unknown=unknown)


def _failed_connecting(exc: BaseException) -> bool:
    """The error (or one it wraps: requests and urllib3 nest them) came before the request
    was sent: refused, unresolvable, or no connection within the timeout."""
    from urllib3.exceptions import ConnectTimeoutError  # NewConnectionError is one

    stack, seen = [exc], set()
    while stack:
        error = stack.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, (ConnectTimeoutError, ConnectionRefusedError, socket.gaierror)):
            return True
        stack += [getattr(error, "reason", None), error.__cause__, error.__context__,
                  *(a for a in error.args if isinstance(a, BaseException))]
    return False


def timeout_seconds(notification: Notification | None = None) -> float:
    """Seconds a provider call may take (connect + answer); short for an urgent notification."""
    if notification is not None and notification.urgent:
        return min(float(settings.NOTIFICATION_URGENT_TIMEOUT), float(settings.NOTIFICATION_PROVIDER_TIMEOUT))
    return float(settings.NOTIFICATION_PROVIDER_TIMEOUT)


def notification_key(notification: Notification) -> str:
    """A stable identity of the notification towards the providers (LINE's retry key, the
    email's Message-ID): the same for every attempt, unique across tenants."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mimamori:{connection.schema_name}:{notification.pk}"))


def absolute_url(path: str) -> str:
    """The link of a notification as an address outside the app (the tenant's host)."""
    if not path or path.startswith(("http://", "https://")):
        return path
    from tenants.models import Domain

    domain = (Domain.objects.filter(tenant__schema_name=connection.schema_name)
              .order_by("-is_primary", "pk").values_list("domain", flat=True).first())
    if not domain:
        return ""
    port = f":{settings.SITE_PORT}" if settings.SITE_PORT else ""
    return f"{settings.SITE_SCHEME}://{domain}{port}{path}"


def message_text(notification: Notification, limit: int) -> str:
    parts = [notification.title]
    if notification.body:
        parts.append(notification.body)
    link = absolute_url(notification.url)
    if link:
        parts.append(link)
    text = "\n\n".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Provider(abc.ABC):
    channel: str
    # After an attempt whose outcome is unknown, a provider is tried again only if a
    # repeat cannot show the message twice (`repeat_safe`) or it can tell whether it
    # has the message (`can_look_up`, see find_sent); otherwise the next channel is.
    repeat_safe = False
    can_look_up = False

    @abc.abstractmethod
    def configured(self) -> bool:
        """The platform has credentials for this channel."""

    @abc.abstractmethod
    def address(self, user, preference: ChannelPreference):
        """Where this person is reached on this channel, or a false value."""

    def available(self, user, preference: ChannelPreference) -> bool:
        return self.configured() and bool(self.address(user, preference))

    @abc.abstractmethod
    def send(self, notification: Notification, preference: ChannelPreference) -> ProviderResult:
        """Hand the notification to the provider; never raises for the provider's failures."""

    def find_sent(self, notification: Notification, preference: ChannelPreference,
                  since: datetime) -> ProviderResult | None:
        """After an attempt that ended without the provider's answer (a timeout, a dead
        worker): the provider's record of that message if it did accept it, so it is not
        sent twice; None when it did not, or when this provider cannot tell."""
        return None

    def service(self, preference: ChannelPreference) -> str:
        """The server this provider talks to (the breaker's key): a hung one is that server."""
        return self.channel


class Breaker:
    """A provider's server that did not answer LIMIT times running in this process is not
    called for NOTIFICATION_PROVIDER_PAUSE seconds: notifications due on it then wait until then (urgent ones
    go to the person's next channel at once), without an attempt, so one hung provider
    does not hold the worker's processes from everybody else's notifications, nor use up
    anyone's retries. Any answer, even an error, closes it again."""

    LIMIT = 3

    def __init__(self):
        self.silent: dict[str, int] = {}
        self.open_until: dict[str, datetime] = {}

    def paused_for(self, service: str) -> timedelta | None:
        """How long `service` is not called for, or None if it may be."""
        until = self.open_until.get(service)
        left = until - timezone.now() if until is not None else None
        return left if left is not None and left > timedelta(0) else None

    def record(self, service: str, result: ProviderResult, seconds: float, timeout: float) -> None:
        """A silence: no answer, after at least half the timeout (a refused connection is
        an answer: it costs nobody a wait)."""
        if result.ok or result.status is not None or seconds < timeout / 2:
            self.silent.pop(service, None)
            self.open_until.pop(service, None)
            return
        self.silent[service] = self.silent.get(service, 0) + 1
        if self.silent[service] >= self.LIMIT:
            pause = settings.NOTIFICATION_PROVIDER_PAUSE
            self.open_until[service] = timezone.now() + timedelta(seconds=pause)
            logger.warning("%s did not answer %d times: not called for %s s", service, self.silent[service], pause)


BREAKER = Breaker()


def message_id(local: str, domain: str | None = None) -> str:
    """A fixed Message-ID for an email of this tenant (`local` names what it is about), on
    the tenant's primary domain: a copy sent twice shows once in a mail program."""
    return f"<{local}@{domain or primary_domain(connection.schema_name) or 'mimamori.invalid'}>"


class EmailProvider(Provider):
    """Email through Django's mail (notifications.mail.EmailBackend for SMTP). SMTP has no
    idempotency: an email whose answer was lost after DATA is never sent again (the run
    moves to the person's next channel); its Message-ID, fixed per notification, lets the
    person's mail program show one copy of anything that still arrives twice."""

    channel = Channel.EMAIL

    def service(self, preference):
        return f"email:{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"

    def configured(self) -> bool:
        return bool(settings.EMAIL_BACKEND)

    def address(self, user, preference):
        return user.email

    @staticmethod
    def message_id(notification: Notification) -> str:
        return message_id(notification_key(notification))

    def send(self, notification, preference):
        with translation.override(settings.LANGUAGE_CODE):
            prefix = _("[Urgent]") + " " if notification.urgent else ""
        timeout = timeout_seconds(notification)
        options = {"timeout": timeout}
        if notification.urgent:
            options["data_timeout"] = timeout  # only our SMTP backend reads it; the others take **kwargs
        message = EmailMessage(
            subject=prefix + notification.title,
            body=message_text(notification, 10_000),
            from_email=credentials.current().email_from,
            to=[notification.recipient.email],
            headers={"Message-ID": self.message_id(notification)},
            connection=get_connection(**options),
        )
        try:
            sent = message.send()
        except OutcomeUnknown as exc:
            return ProviderResult(ok=False, error=f"unknown: sent, no answer ({exc})", transient=True, unknown=True)
        except smtplib.SMTPRecipientsRefused as exc:
            return ProviderResult(ok=False, status=None, answer=str(exc.recipients)[:ANSWER_LIMIT],
                                  error="recipient refused")
        except smtplib.SMTPResponseException as exc:
            answer = f"{exc.smtp_code} {exc.smtp_error!r}"
            # SMTP 4xx are temporary by definition, 5xx permanent.
            return ProviderResult(ok=False, status=exc.smtp_code, answer=answer[:ANSWER_LIMIT],
                                  error=type(exc).__name__, transient=exc.smtp_code < 500)
        except (OSError, smtplib.SMTPException) as exc:  # before the message went out (see notifications.mail)
            return failure_for_status(None, error=f"{type(exc).__name__}: {exc}")
        return ProviderResult(ok=bool(sent), answer=f"accepted by {settings.EMAIL_BACKEND.rsplit('.', 2)[-2]}")


class LineProvider(Provider):
    """LINE Messaging API push (line-bot-sdk v3). The retry key is fixed per
    notification, so a push that LINE accepted but whose answer we lost is not shown
    twice: LINE answers 409 to the repeat, which counts as delivered."""

    channel = Channel.LINE

    def service(self, preference):
        return f"line:{settings.LINE_API_BASE}"
    repeat_safe = True

    def configured(self) -> bool:
        return credentials.current().line_ready

    def address(self, user, preference):
        return preference.line_user_id

    def send(self, notification, preference):
        from linebot.v3.messaging import PushMessageRequest, TextMessage

        request = PushMessageRequest(to=preference.line_user_id, messages=[TextMessage(
            text=message_text(notification, 5000), quick_reply=self.answer_button(notification))])
        return line_request(lambda api, **options: api.push_message_with_http_info(request, **options),
                            retry_key=notification_key(notification), timeout=timeout_seconds(notification))

    @staticmethod
    def answer_button(notification: Notification):
        """The quick-reply button under a notification that takes an answer (hooks.answerable_kinds):
        tapping it sends a postback naming the notification (ANSWER_POSTBACK)."""
        from linebot.v3.messaging import PostbackAction, QuickReply, QuickReplyItem

        if notification.kind not in answerable_kinds:
            return None
        with translation.override(settings.LANGUAGE_CODE):
            label = _("Acknowledge")
        return QuickReply(items=[QuickReplyItem(action=PostbackAction(
            label=label, display_text=label, data=ANSWER_POSTBACK.format(id=notification.pk)))])

    def reply(self, reply_token: str, text: str) -> bool:
        """Answer a webhook event (LINE's reply API: free, once per event, within a minute).
        Never raises for LINE's failures; an answer that fails is logged and not retried."""
        import urllib3
        from linebot.v3.messaging import ApiClient, ApiException, MessagingApi, ReplyMessageRequest, TextMessage

        request = ReplyMessageRequest(reply_token=reply_token, messages=[TextMessage(text=text[:5000])])
        try:
            with ApiClient(line_configuration()) as client:
                MessagingApi(client).reply_message(request, _request_timeout=timeout_seconds())
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            logger.warning("LINE reply failed: %s", getattr(exc, "status", None) or type(exc).__name__)
            return False
        return True


ANSWER_POSTBACK = "ack:{id}"
ANSWER_POSTBACK_PATTERN = re.compile(r"^ack:(?P<id>[0-9]{1,18})$")


def notification_id_of_postback(data: str) -> int | None:
    """The notification whose answer button sent this postback data, if it is one."""
    match = ANSWER_POSTBACK_PATTERN.match(data or "")
    return int(match["id"]) if match else None


class SmsProvider(Provider):
    """SMS through Twilio's Messages API (twilio's own client). Twilio's API takes no
    idempotency key: after an attempt that got no answer, `find_sent` looks for the
    message among the number's recent ones before anything is sent again."""

    channel = Channel.SMS

    def service(self, preference):
        return f"sms:{settings.TWILIO_API_BASE}"
    can_look_up = True
    LOOKBACK = 50  # the number's most recent messages searched for an unanswered one
    NOT_SENT = {"failed", "undelivered", "canceled"}  # found, but it did not reach the person

    def configured(self) -> bool:
        return credentials.current().sms_ready

    def address(self, user, preference):
        return preference.phone

    def send(self, notification, preference):
        return twilio_request(lambda client, from_number: client.messages.create(
            to=preference.phone, from_=from_number, body=message_text(notification, 1500)),
            timeout=timeout_seconds(notification))

    def find_sent(self, notification, preference, since):
        try:
            client, from_number = twilio_client(timeout_seconds(notification))
            text = message_text(notification, 1500)
            recent = client.messages.list(to=preference.phone, from_=from_number, limit=self.LOOKBACK)
            earliest = since - timedelta(minutes=1)  # the provider's clock against ours
            for message in recent:
                if (message.body == text and message.status not in self.NOT_SENT
                        and (message.date_created is None or message.date_created >= earliest)):
                    return ProviderResult(ok=True, status=200, answer=(
                        f"already accepted: sid={message.sid} status={message.status} (found, not sent again)"))
        except Exception as exc:  # Twilio's, the network's, or an answer we cannot read
            # Unknown: sending again risks a second SMS, not sending risks none at all.
            logger.warning("notification %s: Twilio lookup failed (%s); sending again", notification.pk, exc)
        return None


# Provider calls for residents (outreach asks them questions and sends them notices):
# the same clients, timeouts and failure rules as the notifications above.

def line_configuration():
    from linebot.v3.messaging import Configuration

    configuration = Configuration(access_token=credentials.current().line_channel_access_token,
                                  host=settings.LINE_API_BASE)
    configuration.retries = 0  # our own retries are counted and logged; urllib3's would not be
    return configuration


def line_request(call, *, retry_key: str, timeout: float) -> ProviderResult:
    """`call(MessagingApi, x_line_retry_key=, _request_timeout=)` (a push or a multicast
    `..._with_http_info`), as a ProviderResult. The retry key is the request's identity:
    LINE answers 409 to a repeat it accepted before, which counts as sent."""
    import urllib3
    from linebot.v3.messaging import ApiClient, ApiException, MessagingApi

    try:
        with ApiClient(line_configuration()) as client:
            response = call(MessagingApi(client), x_line_retry_key=retry_key, _request_timeout=timeout)
    except ApiException as exc:
        body = (exc.body or b"").decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body or "")
        if exc.status == 409:
            return ProviderResult(ok=True, status=409, answer=("already accepted: " + body)[:ANSWER_LIMIT])
        return failure_for_status(exc.status, answer=body[:ANSWER_LIMIT], error=f"LINE {exc.status} {exc.reason}")
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return failure_for_exception(exc)
    raw = response.raw_data.decode("utf-8", "replace") if isinstance(response.raw_data, bytes) else ""
    return ProviderResult(ok=True, status=response.status_code, answer=raw[:ANSWER_LIMIT])


def line_multicast(to: list[str], messages: list, *, retry_key: str, timeout: float | None = None) -> ProviderResult:
    """The same messages to up to 500 LINE users in one request (LINE's multicast)."""
    from linebot.v3.messaging import MulticastRequest

    request = MulticastRequest(to=to, messages=messages)
    return line_request(lambda api, **options: api.multicast_with_http_info(request, **options),
                        retry_key=retry_key, timeout=timeout or timeout_seconds())


def line_push(to: str, messages: list, *, retry_key: str, timeout: float | None = None) -> ProviderResult:
    from linebot.v3.messaging import PushMessageRequest

    request = PushMessageRequest(to=to, messages=messages)
    return line_request(lambda api, **options: api.push_message_with_http_info(request, **options),
                        retry_key=retry_key, timeout=timeout or timeout_seconds())


def twilio_client(timeout: float | None = None):
    """(Twilio client of this tenant's account, its number)."""
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    creds = credentials.current()
    client = Client(creds.twilio_account_sid, creds.twilio_auth_token,
                    http_client=TwilioHttpClient(timeout=timeout or timeout_seconds(), pool_connections=False))
    client.api.base_url = settings.TWILIO_API_BASE
    return client, creds.twilio_from_number


def twilio_request(call, *, timeout: float | None = None) -> ProviderResult:
    """`call(client, from_number)` (a message or a call create) as a ProviderResult."""
    import requests
    from twilio.base.exceptions import TwilioRestException

    client, from_number = twilio_client(timeout)
    try:
        created = call(client, from_number)
    except TwilioRestException as exc:
        return failure_for_status(exc.status, answer=f"{exc.code or ''} {exc.msg}".strip()[:ANSWER_LIMIT],
                                  error=f"Twilio {exc.status}")
    except (requests.RequestException, OSError) as exc:
        return failure_for_exception(exc)
    return ProviderResult(ok=True, status=201, answer=f"sid={created.sid} status={created.status}")


def webpush_endpoint_allowed(endpoint: str) -> bool:
    """Only real push services (the setting's pattern): an endpoint is user input, and
    the server must not be made to post to arbitrary addresses."""
    return bool(re.match(settings.WEBPUSH_ENDPOINT_PATTERN, endpoint or ""))


class WebPushProvider(Provider):
    """Web push (VAPID) to a volunteer's phone through pywebpush. A repeat is safe: the
    service worker shows it under a tag per notification, replacing an earlier copy."""

    channel = Channel.WEBPUSH

    def service(self, preference):
        return f"webpush:{urlsplit((preference.webpush_subscription or {}).get('endpoint', '')).netloc}"
    repeat_safe = True

    def configured(self) -> bool:
        return bool(settings.VAPID_PRIVATE_KEY and settings.VAPID_SUBJECT)

    def address(self, user, preference):
        subscription = preference.webpush_subscription or {}
        return subscription.get("endpoint")

    def send(self, notification, preference):
        import requests
        from pywebpush import WebPushException, webpush

        subscription = preference.webpush_subscription
        if not webpush_endpoint_allowed(subscription.get("endpoint", "")):
            return ProviderResult(ok=False, error="push endpoint not allowed")
        payload = json.dumps({"id": notification.pk, "title": notification.title, "body": notification.body,
                              "url": notification.url, "urgent": notification.urgent}, ensure_ascii=False)
        try:
            response = webpush(
                subscription_info=subscription, data=payload,
                vapid_private_key=settings.VAPID_PRIVATE_KEY,
                vapid_claims={"sub": settings.VAPID_SUBJECT},  # a fresh dict: pywebpush adds aud/exp to it
                timeout=timeout_seconds(notification),
                ttl=24 * 60 * 60,  # 0 would drop it when the phone is offline
                headers={"Urgency": "high" if notification.urgent else "normal"},
            )
        except WebPushException as exc:
            status = exc.response.status_code if exc.response is not None else None
            answer = exc.response.text if exc.response is not None else ""
            if status in (404, 410):
                # The browser unsubscribed.
                do_forget_webpush_subscription(preference=preference, endpoint=subscription.get("endpoint", ""))
            if status is None:
                return ProviderResult(ok=False, error=str(exc.message)[:ANSWER_LIMIT])
            return failure_for_status(status, answer=answer[:ANSWER_LIMIT], error=f"push {status}")
        except (requests.RequestException, OSError) as exc:
            return failure_for_exception(exc)
        return ProviderResult(ok=True, status=response.status_code, answer=response.text[:ANSWER_LIMIT])


PROVIDERS: dict[str, Provider] = {
    p.channel.value: p for p in (EmailProvider(), LineProvider(), SmsProvider(), WebPushProvider())
}


def preference_for(user) -> ChannelPreference:
    """The person's preference row, or an unsaved default (reading creates nothing)."""
    return ChannelPreference.objects.filter(user=user).first() or ChannelPreference(user=user)


def available_channels(user, preference: ChannelPreference) -> list[str]:
    if not user.is_active:
        return []
    return [c for c in preference.channels if c in PROVIDERS and PROVIDERS[c].available(user, preference)]


def tenant_time_zone() -> ZoneInfo:
    from tenants.models import Tenant

    name = Tenant.objects.filter(schema_name=connection.schema_name).values_list("time_zone", flat=True).first()
    return ZoneInfo(name or settings.TIME_ZONE)


def quiet_hours_end(preference: ChannelPreference, now: datetime, tz: ZoneInfo) -> datetime | None:
    """When the person's quiet hours around `now` end, or None if `now` is not quiet.
    Quiet hours may wrap midnight (22:00-07:00); the end is exclusive."""
    start, end = preference.quiet_start, preference.quiet_end
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    quiet = (start <= t < end) if start < end else (t >= start or t < end)
    if not quiet:
        return None
    day = local.date() if t < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=tz)


@dataclass
class RunOutcome:
    """What one delivery run did; `retry_in`: seconds until the notification is due again."""

    status: str
    retry_in: float | None = None


class _Lease:
    """This run's hold on a notification: every write is a compare-and-set on the lease
    value, so a run that lost its lease (it expired and another run took over) writes
    nothing more."""

    def __init__(self, pk: int):
        self.pk = pk
        self.token: datetime | None = None

    def _until(self) -> datetime:
        return timezone.now() + timedelta(seconds=settings.NOTIFICATION_LEASE_SECONDS)

    def claim(self) -> bool:
        now = timezone.now()
        token = self._until()
        claimed = Notification.objects.filter(
            Q(delivering_until__isnull=True) | Q(delivering_until__lt=now),
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
            pk=self.pk, state=Notification.State.PENDING,
        ).update(delivering_until=token)
        self.token = token if claimed == 1 else None
        return self.token is not None

    def held(self):
        return Notification.objects.filter(pk=self.pk, state=Notification.State.PENDING, delivering_until=self.token)

    def renew(self) -> bool:
        token = self._until()
        if self.held().update(delivering_until=token) != 1:
            return False
        self.token = token
        return True

    def update(self, **fields) -> bool:
        """Write and release (unless `delivering_until` is given)."""
        fields.setdefault("delivering_until", None)
        return self.held().update(**fields) == 1


def do_deliver(notification_id: int) -> RunOutcome:
    """One delivery run: send the notification on the first of the person's channels
    that works, logging every attempt; reschedule on a transient failure; mark it
    failed (and tell staff) when every channel has failed.

    An attempt whose outcome is unknown (no answer after the request went out, or cut
    short by a dying worker) is repeated only on a channel where a repeat is safe or the
    provider can say whether it has the message; otherwise (email) the run moves to the
    next channel, and a notification that may have been accepted is never called failed
    (UNCONFIRMED). An urgent notification moves to the next channel at once after a
    transient failure, instead of waiting to retry the same one.

    Assumes the tenant's schema is active. Does nothing unless the notification is
    pending, due and not held by another run. Never holds a transaction across a
    provider call.
    """
    lease = _Lease(notification_id)
    if not lease.claim():
        return RunOutcome("not-due")
    notification = Notification.objects.select_related("recipient").get(pk=notification_id)
    user = notification.recipient
    preference = preference_for(user)

    if not subject_visible_to(user, notification):
        # Taken off the resident's team (consent withdrawn, moved) since it was written.
        lease.update(state=Notification.State.WITHDRAWN)
        return RunOutcome("withdrawn")

    if notification.read_at is not None:
        # Seen in the app while waiting (quiet hours, backoff): nothing left to tell.
        lease.update(state=Notification.State.DELIVERED, delivered_via="app", delivered_at=notification.read_at)
        return RunOutcome("read-in-app")

    if not notification.urgent:
        now = timezone.now()
        quiet_end = quiet_hours_end(preference, now, tenant_time_zone())
        if quiet_end is not None:
            lease.update(next_attempt_at=quiet_end)
            return RunOutcome("quiet-hours", retry_in=(quiet_end - now).total_seconds())

    plan = notification.plan
    if not plan:
        plan = available_channels(user, preference)
        if not plan:
            lease.update(state=Notification.State.IN_APP_ONLY)
            return RunOutcome("in-app-only")
        if not lease.update(plan=plan, delivering_until=lease.token):
            return RunOutcome("lease-lost")

    # Attempts left unfinished belong to runs that died (this run holds the lease).
    DeliveryAttempt.objects.filter(notification_id=notification_id, finished_at__isnull=True).update(
        unknown=True, error="unknown: the worker stopped during the call")
    delays = list(settings.NOTIFICATION_RETRY_DELAYS)
    index = notification.channel_index
    while index < len(plan):
        channel = plan[index]
        provider = PROVIDERS.get(channel)
        if provider is None or not provider.available(user, preference):
            index += 1  # the address or the credentials went away since the plan was made
            continue
        unsure_since = _unanswered_since(notification_id, channel)
        if unsure_since is not None and not (provider.repeat_safe or provider.can_look_up):
            index += 1  # it may have arrived: never sent twice on this channel
            continue
        service = provider.service(preference)
        paused_for = BREAKER.paused_for(service)
        if paused_for is not None:  # not called, nothing logged: no attempt was made
            if notification.urgent and _another_channel(plan, index, user, preference):
                index += 1
                continue
            lease.update(channel_index=index, next_attempt_at=timezone.now() + paused_for)
            return RunOutcome("provider-paused", retry_in=paused_for.total_seconds())
        if not lease.renew():
            return RunOutcome("lease-lost")
        number = DeliveryAttempt.objects.filter(notification_id=notification_id, channel=channel).count() + 1
        attempt = DeliveryAttempt.objects.create(notification_id=notification_id, channel=channel, attempt=number,
                                                 started_at=timezone.now())
        try:
            result = None
            if unsure_since is not None:
                result = provider.find_sent(notification, preference, unsure_since)
            if result is None:
                called = time.monotonic()
                result = provider.send(notification, preference)
                BREAKER.record(service, result, time.monotonic() - called, timeout_seconds(notification))
        except Exception as exc:  # a bug or an unforeseen library error: final for this channel
            logger.exception("notification %s: %s provider raised", notification_id, channel)
            result = ProviderResult(ok=False, error=f"{type(exc).__name__}: {exc}")
        unknown = result.unknown and not result.ok
        DeliveryAttempt.objects.filter(pk=attempt.pk).update(
            finished_at=timezone.now(), ok=result.ok, provider_status=result.status,
            provider_answer=(result.answer or "")[:ANSWER_LIMIT], error=result.error, unknown=unknown,
        )
        logger.info("notification %s: %s attempt %s %s (%s)", notification_id, channel, number,
                    "ok" if result.ok else "unknown" if unknown else "failed", result.status or result.error)
        if result.ok:
            lease.update(state=Notification.State.DELIVERED, delivered_via=channel, delivered_at=timezone.now(),
                         channel_index=index)
            return RunOutcome("delivered")
        if unknown and not (provider.repeat_safe or provider.can_look_up):
            index += 1
            continue
        hurry = notification.urgent and _another_channel(plan, index, user, preference)
        if result.transient and number <= len(delays) and not hurry:
            delay = max(0, delays[number - 1])
            lease.update(channel_index=index, next_attempt_at=timezone.now() + timedelta(seconds=delay))
            return RunOutcome("retry", retry_in=delay)
        index += 1

    return _give_up(lease, notification, index)


def _unanswered_since(notification_id: int, channel: str) -> datetime | None:
    """When the first attempt on this channel started, if any attempt on it has an unknown
    outcome (no answer after the request went out, or cut short by a dying worker)."""
    attempts = list(DeliveryAttempt.objects.filter(notification_id=notification_id, channel=channel)
                    .order_by("pk").values_list("started_at", "unknown"))
    if any(unknown for _started, unknown in attempts):
        return attempts[0][0]
    return None


def _another_channel(plan: list[str], index: int, user, preference: ChannelPreference) -> bool:
    """A channel after plan[index] that this run could try."""
    return any(c in PROVIDERS and PROVIDERS[c].available(user, preference) for c in plan[index + 1:])


def _give_up(lease: _Lease, notification: Notification, index: int) -> RunOutcome:
    """No channel left. Failed, unless a provider may have accepted it (an unknown outcome):
    then it is UNCONFIRMED, and nobody is told it failed."""
    if DeliveryAttempt.objects.filter(notification_id=notification.pk, unknown=True).exists():
        if not lease.update(state=Notification.State.UNCONFIRMED, channel_index=index):
            return RunOutcome("lease-lost")
        logger.warning("notification %s: sent, not confirmed by any provider", notification.pk)
        return RunOutcome("unconfirmed")
    with transaction.atomic():
        if not lease.update(state=Notification.State.FAILED, failed_at=timezone.now(), channel_index=index):
            return RunOutcome("lease-lost")
        recipient = notification.recipient
        with translation.override(settings.LANGUAGE_CODE):
            text = _("A notification to %(name)s could not be delivered on any channel.") % {"name": recipient}
        # Ids and the recipient's name only (the title may name a resident), to the staff
        # who may see what it was about (those who see it on the failed-deliveries page).
        staff = [user for user in User.objects.filter(role__in=STAFF_ROLES, is_active=True)
                 if subject_visible_to(user, notification)]
        send_event_on_commit(connection.schema_name, {
            "type": "notification.failed", "text": text,
            "notification": {"id": notification.pk, "kind": notification.kind, "recipient_id": recipient.pk,
                             "recipient": str(recipient), "urgent": notification.urgent},
        }, [to_user(user.pk) for user in staff])
    logger.warning("notification %s failed on every channel", notification.pk)
    return RunOutcome("failed")
