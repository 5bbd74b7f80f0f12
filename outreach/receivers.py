"""Concerns raised by watch-over (which cannot import this app)."""
import logging

from django.db import transaction
from django.dispatch import receiver

from outreach import replies
from outreach.actions import do_raise_concern, do_take_reply
from outreach.models import Concern, Severity
from watch.models import URGENT_OUTCOMES, ContactLog, Resident
from watch.signals import attention_requested, resident_overdue, visit_missed

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
