"""Concerns raised by watch-over (which cannot import this app)."""
from django.dispatch import receiver

from outreach.actions import do_acknowledge_latest_for, do_raise_concern
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


def acknowledge_by_reply(sender, user, channel, text, **kwargs):
    if any(word in text.lower() for word in ("了解", "りょうかい", "ok", "対応します", "ack")):
        do_acknowledge_latest_for(user, via=channel)
