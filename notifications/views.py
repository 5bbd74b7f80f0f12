"""Pages of the notification centre and preferences, the staff page of failed
deliveries, the unread-count endpoint, the push subscription endpoint and the LINE
webhook. Each parses input, calls one action, responds."""
import json
import logging
import re
from http import HTTPStatus

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from notifications import actions, credentials, delivery, hooks
from notifications.models import Channel, ReceivedWebhookEvent
from tenants.accounts.models import STAFF_ROLES

logger = logging.getLogger(__name__)

PAGE_SIZE = 50


@login_required
@require_GET
def centre(request):
    """The user's notifications, newest first, unread marked."""
    page = Paginator(actions.notifications_for_user(request.user), PAGE_SIZE).get_page(request.GET.get("page"))
    for notification in page:
        notification.lines = _body_lines(notification.body, request.get_host())
    return render(request, "notifications/centre.html", {
        "page": page, "unread": actions.get_unread_count_for_user(request.user),
    })


# "Acknowledge here (only you, once): https://host/outreach/ack/…/" in a message's body.
ACTION_LINE = re.compile(r"^(?P<label>.+?)\s*[:：]\s*(?P<url>https?://\S+)$")


def _body_lines(body: str, host: str) -> list[tuple[str, str]]:
    """The body's lines as (text, action path). A line "label: link to this host" (the
    one-time link sent by email and LINE) is shown as a button that posts to the link's
    path, not as a long address that makes a phone page scroll sideways."""
    from urllib.parse import urlsplit

    lines = []
    for line in body.splitlines():
        match = ACTION_LINE.match(line.strip())
        url = urlsplit(match["url"]) if match else None
        if url and url.netloc == host:
            lines.append((match["label"], url.path))
        else:
            lines.append((line, ""))
    return lines


@login_required
@require_POST
def mark_read(request, pk: int):
    """Mark one notification read, then open its link (or go back to the centre)."""
    notification = actions.get_notification_for_user(request.user, pk)
    actions.do_mark_read(user=request.user, notification=notification)
    target = notification.url
    if request.POST.get("stay") or not target or not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("notifications:centre")
    return redirect(target)


@login_required
@require_POST
def mark_all_read(request):
    actions.do_mark_all_read(user=request.user)
    return redirect("notifications:centre")


@login_required
@require_GET
def unread_count(request):
    return JsonResponse({"unread": actions.get_unread_count_for_user(request.user)})


CHANNEL_SLOTS = range(1, len(Channel.choices) + 1)


def _channels_from_form(post) -> list[str]:
    """Channels in order: the `channels` list (as posted by scripts and tests), or the
    form's `order_<channel>` numbers (blank: not used)."""
    if "channels" in post:
        return [c for c in post.getlist("channels") if c]
    ranked = []
    for channel in Channel.values:
        value = post.get(f"order_{channel}", "")
        if value.isascii() and value.isdigit():
            ranked.append((int(value), Channel.values.index(channel), channel))
    return [channel for *_rank, channel in sorted(ranked)]


@login_required
def preferences(request):
    preference = actions.get_preference_for_user(request.user)
    errors: dict = {}
    status = HTTPStatus.OK
    if request.method == "POST":
        try:
            actions.do_set_preferences(
                user=request.user, channels=_channels_from_form(request.POST),
                line_user_id=request.POST.get("line_user_id", ""), phone=request.POST.get("phone", ""),
                quiet_start=request.POST.get("quiet_start", ""), quiet_end=request.POST.get("quiet_end", ""),
            )
        except ValidationError as exc:
            errors = exc.message_dict
            status = HTTPStatus.BAD_REQUEST
            form = request.POST
        else:
            messages.success(request, _("Saved."))
            return redirect("notifications:preferences")
    else:
        form = {
            "line_user_id": preference.line_user_id, "phone": preference.phone,
            "quiet_start": preference.quiet_start.strftime("%H:%M") if preference.quiet_start else "",
            "quiet_end": preference.quiet_end.strftime("%H:%M") if preference.quiet_end else "",
        }
    chosen = _channels_from_form(request.POST) if request.method == "POST" else preference.channels
    rows = [{"value": value, "label": label,
             "order": chosen.index(value) + 1 if value in chosen else None} for value, label in Channel.choices]
    return render(request, "notifications/preferences.html", {
        "rows": rows, "slots": CHANNEL_SLOTS, "form": form, "errors": errors,
        "has_push": bool(preference.webpush_subscription), "email": request.user.email,
        "vapid_public_key": settings.VAPID_PUBLIC_KEY, "push_labels": _push_labels(),
    }, status=status)


def _push_labels() -> dict:
    """Texts the push script needs, in the page's language."""
    return {
        "on": _("On."), "off": _("Off."),
        "unsupported": _("This browser cannot receive push notifications."),
        "denied": _("Notifications are blocked for this site in the browser's settings."),
        "failed": _("Could not change push notifications: %(reason)s"),
    }


@login_required
@require_POST
def webpush_subscription(request):
    """JSON {"subscription": {...}} from the page's script (null: forget this phone)."""
    try:
        data = json.loads(request.body or b"{}")
        actions.do_set_webpush_subscription(user=request.user, subscription=data.get("subscription"))
    except (ValueError, AttributeError):
        return JsonResponse({"errors": [_("This push subscription is not valid.")]}, status=HTTPStatus.BAD_REQUEST)
    except ValidationError as exc:
        return JsonResponse({"errors": exc.messages}, status=HTTPStatus.BAD_REQUEST)
    return JsonResponse({"ok": True})


@require_GET
def service_worker(request):
    """The push service worker; served here (not under /static/) so its scope is
    /notifications/."""
    response = render(request, "notifications/sw.js", content_type="application/javascript")
    response["Cache-Control"] = "no-cache"
    return response


@login_required
@require_GET
def failed(request):
    """Staff: notifications that every channel failed to deliver, with their attempts."""
    if request.user.role not in STAFF_ROLES:
        raise PermissionDenied
    failed = actions.failed_notifications_for_user(request.user)
    page = Paginator(failed, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "notifications/failed.html", {"page": page})


@csrf_exempt
@require_POST
def line_webhook(request):
    """LINE Messaging API webhook. Refuses (400) anything without a valid signature of
    the channel secret, before reading it. A text message from a linked person, or a tap
    on the answer button under one of their own notifications, is passed on as a reply;
    any other event from a LINE account (a resident's message or tap, adding the official
    account, an account link) goes to `hooks.line_event_received`. Either answer goes
    back with LINE's reply API (free), never a push."""
    from linebot.v3 import WebhookParser
    from linebot.v3.exceptions import InvalidSignatureError
    from linebot.v3.webhooks import MessageEvent, PostbackEvent

    signature = request.headers.get("X-Line-Signature", "")
    secret = credentials.current().line_channel_secret  # this tenant's LINE account, or the platform's
    if not secret or not signature:
        logger.warning("LINE webhook refused: %s", "no channel secret" if signature else "no signature")
        return HttpResponseBadRequest(_("This request is not signed by LINE."))
    try:
        events = WebhookParser(secret).parse(request.body.decode("utf-8"), signature)
    except InvalidSignatureError:
        logger.warning("LINE webhook refused: bad signature")
        return HttpResponseBadRequest(_("This request is not signed by LINE."))
    except (ValueError, KeyError, TypeError):
        logger.warning("LINE webhook refused: unreadable body")
        return HttpResponseBadRequest(_("This request cannot be read."))
    for event in events:
        event_id = getattr(event, "webhook_event_id", None) or ""
        if not 0 < len(event_id) <= ReceivedWebhookEvent._meta.get_field("event_id").max_length:
            logger.warning("LINE event with an unusable webhookEventId ignored")
            continue
        line_user_id = getattr(event.source, "user_id", None)
        if not line_user_id:
            continue
        user = actions.get_user_for_line_id(line_user_id)
        if user is not None and isinstance(event, MessageEvent | PostbackEvent):
            answer = _line_reply_of_user(user, event)
        else:
            # Users first: a LINE account of no user may be a resident's (outreach.line).
            answers = hooks.line_event_received.send(sender=line_webhook, event=event, line_user_id=line_user_id)
            answer = next((answer for _receiver, answer in answers if answer), None)
        if answer and getattr(event, "reply_token", None):
            delivery.PROVIDERS[Channel.LINE.value].reply(event.reply_token, answer)
    return HttpResponse("OK")


def _line_reply_of_user(user, event) -> str | None:
    """A person's text or tap on their own notification's answer button, passed on as a reply."""
    from linebot.v3.webhooks import MessageEvent, PostbackEvent, TextMessageContent

    text, notification_id = "", None
    if isinstance(event, MessageEvent) and isinstance(event.message, TextMessageContent):
        text = event.message.text
    elif isinstance(event, PostbackEvent):
        notification_id = delivery.notification_id_of_postback(event.postback.data)
        if notification_id is None:
            return None
    else:
        return None
    try:
        notification = (actions.get_notification_for_user(user, notification_id)
                        if notification_id is not None else None)
    except Http404:
        logger.warning("LINE answer button of user %s names notification %s, not theirs: ignored",
                       user.pk, notification_id)
        return None
    return actions.do_receive_reply(user=user, channel=Channel.LINE.value, event_id=event.webhook_event_id,
                                    text=text, notification=notification)


TWILIO_MESSAGE_SID = re.compile(r"^[SM]M[0-9a-f]{32}$")


@csrf_exempt
@require_POST
def sms_webhook(request):
    """Twilio's webhook for an SMS to the tenant's number. Refuses (403) anything without
    a valid X-Twilio-Signature of this tenant's Twilio account, before reading it; an SMS
    from the number of a person is passed on as a reply, one from any other number as a
    resident's message (an answer to a question); either is answered in the TwiML."""
    from twilio.request_validator import RequestValidator
    from twilio.twiml.messaging_response import MessagingResponse

    creds = credentials.current()
    signature = request.headers.get("X-Twilio-Signature", "")
    post = request.POST
    if not (creds.twilio_auth_token and signature
            and RequestValidator(creds.twilio_auth_token).validate(request.build_absolute_uri(), post, signature)
            and post.get("AccountSid", creds.twilio_account_sid) == creds.twilio_account_sid):
        logger.warning("SMS webhook refused: %s", "bad signature" if signature else "no signature")
        return HttpResponseForbidden(_("This request is not signed by this organisation's Twilio account."))
    sid, sender = post.get("MessageSid", ""), post.get("From", "")
    if not TWILIO_MESSAGE_SID.match(sid) or not sender or "Body" not in post or "AccountSid" not in post:
        logger.warning("SMS webhook refused: unreadable body")
        return HttpResponseBadRequest(_("This request cannot be read."))
    twiml = MessagingResponse()
    user = actions.get_user_for_phone(sender)
    if user is None:
        # Not a person of the organisation: perhaps a resident answering a question.
        answer = actions.do_receive_resident_message(channel=Channel.SMS.value, address=sender, event_id=sid,
                                                     text=post["Body"])
        if answer is None:
            logger.info("SMS from an unknown number ignored (%s…)", sender[:6])
    else:
        answer = actions.do_receive_reply(user=user, channel=Channel.SMS.value, event_id=sid, text=post["Body"])
    if answer:
        twiml.message(answer)
    return HttpResponse(str(twiml), content_type="text/xml; charset=utf-8")


@login_required
def providers(request):
    """The tenant administrator: this organisation's own LINE, SMS and email accounts.
    Secrets are never shown again; a blank secret field keeps the stored one."""
    if not request.user.is_tenant_admin:
        raise PermissionDenied
    errors: dict = {}
    status = HTTPStatus.OK
    if request.method == "POST":
        post = request.POST
        changes = {"email_from": post.get("email_from", "")}
        if post.get("line_use_platform"):
            changes.update(line_channel_access_token="", line_channel_secret="")
        else:
            changes.update({name: post[name] for name in ("line_channel_access_token", "line_channel_secret")
                            if post.get(name, "").strip()})
        if post.get("twilio_use_platform"):
            changes.update(twilio_account_sid="", twilio_auth_token="", twilio_from_number="")
        else:
            changes.update(twilio_account_sid=post.get("twilio_account_sid", ""),
                           twilio_from_number=post.get("twilio_from_number", ""))
            if post.get("twilio_auth_token", "").strip():
                changes["twilio_auth_token"] = post["twilio_auth_token"]
        try:
            actions.do_configure_providers(actor=request.user, **changes)
        except ValidationError as exc:
            errors = exc.message_dict
            status = HTTPStatus.BAD_REQUEST
        else:
            messages.success(request, _("Saved."))
            return redirect("notifications:providers")
    creds = credentials.current()
    form = request.POST if errors else {
        "email_from": creds.email_from if "email_from" in creds.own else "",
        "twilio_account_sid": creds.twilio_account_sid if "twilio_account_sid" in creds.own else "",
        "twilio_from_number": creds.twilio_from_number if "twilio_from_number" in creds.own else "",
    }
    return render(request, "notifications/providers.html", {
        "form": form, "errors": errors, "own": creds.own, "creds": creds,
        "platform_email_from": settings.DEFAULT_FROM_EMAIL,
        "webhook_url": request.build_absolute_uri(reverse("notifications:line_webhook")),
    }, status=status)
