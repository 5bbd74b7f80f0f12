"""Concerns raised by watch-over (which cannot import this app)."""
from django.dispatch import receiver

from outreach import replies
from outreach.actions import do_raise_concern, do_take_reply
from outreach.models import Concern
from watch.models import ContactLog, Resident
from watch.signals import attention_requested, resident_overdue


@receiver(attention_requested)
def raise_for_attention(sender, resident_id, cause, contact_id, **kwargs):
    resident = Resident.objects.select_related("area").get(pk=resident_id)
    contact = ContactLog.objects.filter(pk=contact_id).first()
    do_raise_concern(resident=resident, cause=cause, note=contact.note if contact else "",
                     actor=contact.logged_by if contact else None, contact=contact_id)


@receiver(resident_overdue)
def raise_for_overdue(sender, resident_id, rhythm_id, **kwargs):
    resident = Resident.objects.select_related("area").get(pk=resident_id)
    do_raise_concern(resident=resident, cause=Concern.Cause.OVERDUE, rhythm=rhythm_id)


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
