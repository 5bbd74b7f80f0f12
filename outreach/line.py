"""What a resident's LINE account sends us (notifications.hooks.line_event_received):
adding the official account (`follow`: the start of the account link), LINE's
`accountLink` event, a tap on an answer button (a postback) and a text (a rich-menu tap
sends 「元気です」). Each is answered with LINE's reply API, which costs the tenant
nothing, never with a push.

Every event is handled once: its `webhookEventId` is recorded in the transaction that
acts on it (notifications.models.ReceivedWebhookEvent), so a redelivery changes nothing.
"""
import logging
import uuid

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from notifications.models import Channel as NotificationChannel
from notifications.models import ReceivedWebhookEvent
from outreach import answers, board
from outreach.models import Answer, Ask
from outreach.reach import LinkResult, do_complete_link, do_unlink_line
from tenants.context import absolute_url
from watch.actions import do_log_contact
from watch.models import Channel, Resident

logger = logging.getLogger(__name__)


def handle_line_event(sender, event, line_user_id: str, **kwargs) -> str | None:
    """The receiver of notifications.hooks.line_event_received."""
    from linebot.v3.webhooks import (
        AccountLinkEvent,
        FollowEvent,
        MessageEvent,
        PostbackEvent,
        TextMessageContent,
        UnfollowEvent,
    )

    if isinstance(event, FollowEvent):
        handler = _follow
    elif isinstance(event, UnfollowEvent):
        handler = _unfollow
    elif isinstance(event, AccountLinkEvent):
        handler = _account_link
    elif isinstance(event, PostbackEvent):
        handler = _postback
    elif isinstance(event, MessageEvent) and isinstance(event.message, TextMessageContent):
        handler = _text
    else:
        return None
    with transaction.atomic():
        try:
            with transaction.atomic():
                ReceivedWebhookEvent.objects.create(provider=NotificationChannel.LINE.value,
                                                    event_id=event.webhook_event_id)
        except IntegrityError:
            logger.info("LINE event %s received again: ignored", event.webhook_event_id)
            return None
        # The one lookup of a resident by address (residents who ended watch-over are nobody's).
        resident = next(iter(answers.residents_at_address(Channel.LINE, line_user_id)), None)
        language = answers.resident_language(resident) if resident is not None else settings.LANGUAGE_CODE
        with translation.override(language):
            return handler(event, line_user_id, resident)


# Linking -------------------------------------------------------------------------------

def link_page_url(line_user_id: str) -> str | None:
    """Our account-link page with a new LINE link token for this LINE account, or None if
    LINE did not give one."""
    import urllib3
    from linebot.v3.messaging import ApiClient, ApiException, MessagingApi

    from notifications.delivery import line_configuration, timeout_seconds

    try:
        with ApiClient(line_configuration()) as client:
            token = MessagingApi(client).issue_link_token(line_user_id, _request_timeout=timeout_seconds()).link_token
    except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        logger.warning("LINE link token not issued: %s", getattr(exc, "status", None) or type(exc).__name__)
        return None
    return absolute_url(connection.schema_name, reverse("residents:line_link")) + "?linkToken=" + token


def _follow(event, line_user_id: str, resident: Resident | None) -> str:
    if resident is not None:
        return _("Welcome back. This LINE account is connected to the watch-over service.")
    url = link_page_url(line_user_id)
    text = _("Thank you for adding us.")
    if url is None:
        return text + "\n" + _("To connect this LINE account to the watch-over service, please send us a message "
                               "again in a little while.")
    return text + "\n" + _("To connect this LINE account to the watch-over service, open this link and enter the "
                           "8-digit number on your sheet: %(url)s") % {"url": url}


def _unfollow(event, line_user_id: str, resident: Resident | None) -> None:
    """The resident blocked or removed the official account: LINE still accepts messages
    to them and shows them nothing, so the account is unlinked (the resident's history
    says so, by the platform) and questions go out on their other channels. Adding the
    account again starts the link with a new code. No reply: LINE gives none to send."""
    if resident is not None and do_unlink_line(actor=None, resident=resident):
        logger.info("resident %s unfollowed the LINE official account: LINE unlinked", resident.pk)


def _account_link(event, line_user_id: str, resident: Resident | None) -> str:
    link = event.link
    result, linked = do_complete_link(line_user_id=line_user_id, nonce=getattr(link, "nonce", "") or "",
                                      ok=getattr(link, "result", "") == "ok")
    if result == LinkResult.LINKED:
        with translation.override(answers.resident_language(linked)):
            return _("This LINE account is now connected to the watch-over service.")
    if result == LinkResult.TAKEN:
        logger.info("LINE account already linked to another resident: link to resident %s refused", linked.pk)
        return _("This LINE account is already connected to another person in the watch-over service, so it was "
                 "not connected again. Please contact the office.")
    return _("The connection did not work. Please open the link again and enter the number on your sheet.")


# Answers -------------------------------------------------------------------------------

def _not_linked(line_user_id: str) -> str:
    """The polite answer to a LINE account linked to no resident; it changes nothing."""
    text = _("Thank you for your message. This LINE account is not connected to the watch-over service yet.")
    url = link_page_url(line_user_id)
    if url:
        text += "\n" + _("If you have a sheet with an 8-digit number, open this link to connect it: %(url)s") % {
            "url": url}
    return text


def _postback(event, line_user_id: str, resident: Resident | None) -> str | None:
    """An answer button under a question, or a "Read" / choice button under a notice (the
    notice's receipt holds the LINE account it went to: outreach.board)."""
    parsed = answers.parse_postback(event.postback.data)
    if parsed is None:
        if board.parse_postback(event.postback.data) is None:
            return None
        return board.do_receive_line_postback(line_user_id, event.postback.data) or (
            None if resident is not None else _not_linked(line_user_id))
    if resident is None:
        return _not_linked(line_user_id)
    _kind, answer = parsed
    return _answer(resident, "", answer, event)


def _text(event, line_user_id: str, resident: Resident | None) -> str | None:
    if resident is None:
        return _not_linked(line_user_id)
    return _answer(resident, event.message.text, None, event)


def _answer(resident: Resident, text: str, answer: str | None, event) -> str:
    """The resident's message or tap answers their open questions (outreach.answers, the
    one way). With no question waiting, an answer the resident starts (a rich-menu tap)
    is still a sign of life, and 「電話してほしい」 still asks for a call: it is logged as a
    contact on LINE, once per event."""
    result = answers.do_answer_by_message(resident, text, Channel.LINE, answer=answer)
    answer = answer or answers.parse_text_answer(text)
    if result.recorded or result.waiting or answer is None:
        return answers.message_reply(resident, result)
    with translation.override(settings.LANGUAGE_CODE):
        note = _("LINE: “%(answer)s”") % {"answer": answers.answer_label(Ask.Kind.CHECKIN, answer)}
    key = uuid.uuid5(uuid.NAMESPACE_URL, f"mimamori:{connection.schema_name}:line:{event.webhook_event_id}")
    do_log_contact(actor=None, resident=resident, occurred_at=timezone.now(), channel=Channel.LINE,
                   outcome=answers.OUTCOMES[Ask.Kind.CHECKIN][answer], note=note, idempotency_key=key)
    with translation.override(answers.resident_language(resident)):
        if answer == Answer.NEED_HELP:
            return _("Thank you. Someone will contact you soon.")
        if answer == Answer.UNWELL:
            return _("Thank you for telling us. Please take care; someone may contact you.")
        return _("Thank you for your answer. We are glad you are well.")
