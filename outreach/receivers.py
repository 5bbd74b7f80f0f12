"""Concerns raised by watch-over (which cannot import this app)."""
import logging

from django.db import transaction
from django.dispatch import receiver
from django.utils import translation
from django.utils.translation import gettext as _

from notifications.hooks import resident_message_received
from outreach import replies
from outreach.actions import do_raise_concern, do_take_reply
from outreach.models import Concern, Severity
from watch.models import URGENT_OUTCOMES, Channel, ContactLog, Resident
from watch.signals import attention_requested, device_pressed, resident_overdue, visit_missed

logger = logging.getLogger(__name__)

# These run inside watch's transaction (the contact, the overdue pass). Each runs in a
# savepoint and logs its failure instead of raising: outreach failing must not undo what
# watch recorded. do_repair_overdue_concerns raises what an overdue hook left out.


@receiver(attention_requested)
def raise_for_attention(sender, resident_id, cause, contact_id, **kwargs):
    try:
        with transaction.atomic():
            resident = Resident.objects.select_related("area").get(pk=resident_id)
            contact = ContactLog.objects.filter(pk=contact_id).first()
            # "Asked to be called" and "needs help" are urgent, whoever logged them.
            urgent = contact is not None and contact.outcome in URGENT_OUTCOMES
            do_raise_concern(resident=resident, cause=cause, severity=Severity.URGENT if urgent else None,
                             note=contact.note if contact else "", actor=contact.logged_by if contact else None,
                             contact=contact_id)
    except Exception:
        logger.exception("could not raise the %s concern of resident %s (contact %s)", cause, resident_id, contact_id)


@receiver(resident_overdue)
def raise_for_overdue(sender, resident_id, rhythm_id, **kwargs):
    try:
        with transaction.atomic():
            resident = Resident.objects.select_related("area").get(pk=resident_id)
            do_raise_concern(resident=resident, cause=Concern.Cause.OVERDUE, rhythm=rhythm_id)
    except Exception:
        logger.exception("could not raise the overdue concern of resident %s; the repair sweep will", resident_id)


@receiver(visit_missed)
def raise_for_missed_visit(sender, resident_id, visit_id, **kwargs):
    """A planned visit not done in its window is a missed sign of life, as an overdue rhythm is."""
    try:
        with transaction.atomic():
            resident = Resident.objects.select_related("area").get(pk=resident_id)
            do_raise_concern(resident=resident, cause=Concern.Cause.MISSED_VISIT, visit=visit_id)
    except Exception:
        logger.exception("could not raise the missed-visit concern of resident %s (visit %s)", resident_id, visit_id)


def acknowledge_by_reply(sender, user, channel, text, notification=None, **kwargs):
    """A reply on LINE or SMS (notifications.hooks.reply_received): returns what to tell
    the person back, or None when `notification`, the one whose answer button was tapped,
    is not a concern's."""
    if notification is not None:
        concern_id = replies.concern_id_of(notification)
        if concern_id is None:
            return None
        outcome = do_take_reply(person=user, text="", via=channel, concern_id=concern_id)
    else:
        outcome = do_take_reply(person=user, text=text, via=channel)
    return replies.answer_text(outcome)


@receiver(resident_message_received, dispatch_uid="outreach-answer-by-message")
def answer_by_message(sender, channel, address, text, event_id, **kwargs):
    """A resident's SMS (notifications.hooks.resident_message_received): 「1」 or 「元気」
    answers their open questions FINE, 「2」 or 「助けて」 NEED_HELP (outreach.answers).
    Returns the reply, or None when the address is no resident's (nothing changes).
    Inside the transaction that records the provider's event: a failure here raises, so
    the event is not recorded and the provider's retry is handled again."""
    from outreach import answers

    residents = answers.residents_at_address(channel, address)
    if not residents:
        return None
    if len(residents) > 1:
        # A phone shared by several residents: whose answer it is is not guessed.
        with translation.override(answers.resident_language(residents[0])):
            return _("Thank you. Several people are reached at this number: please answer with the link in the "
                     "message, or wait for our call.")
    resident = residents[0]
    result = answers.do_answer_by_message(resident, text, via=channel)
    return answers.message_reply(resident, result)


@receiver(device_pressed, dispatch_uid="outreach-answer-by-device")
def answer_by_device(sender, resident_id, press, contact_id, **kwargs):
    """A press of the resident's device answers their open questions: "ok" FINE, "call"
    NEED_HELP, carried by the press's own contact (no second contact is logged)."""
    from outreach import answers
    from outreach.models import Answer

    try:
        with transaction.atomic():
            resident = Resident.objects.get(pk=resident_id)
            contact = ContactLog.objects.get(pk=contact_id)
            answer = Answer.FINE if press == "ok" else Answer.NEED_HELP
            answers.do_answer_by_message(resident, "", via=Channel.DEVICE, contact=contact, answer=answer)
    except Exception:
        logger.exception("could not record the device press of resident %s as an answer", resident_id)


from notifications.hooks import line_event_received  # noqa: E402 - appended with its receiver


@receiver(line_event_received, dispatch_uid="outreach-resident-line-event")
def answer_resident_line_event(sender, event, line_user_id, **kwargs):
    """A LINE event that is not a user's reply: a resident's answer, message or account link."""
    from outreach.line import handle_line_event

    return handle_line_event(sender, event, line_user_id)
