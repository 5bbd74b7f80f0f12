"""Hooks for apps to the right of `watch` (outreach raises concerns from these).

All are sent inside the transaction of the change; receivers that enqueue work or
publish should do it on commit."""
from django.dispatch import Signal

# A rhythm went overdue. kwargs: resident_id, rhythm_id.
resident_overdue = Signal()
# Someone needs attention now: a "worried" contact, a "please call me" press.
# kwargs: resident_id, cause ("worried_contact" | "device_call_request" | "asked_for_help"), contact_id.
attention_requested = Signal()
# A planned visit was not done by the end of its window: a missed sign of life.
# kwargs: resident_id, visit_id.
visit_missed = Signal()
# A resident pressed a button of their device ("ok" or "call"), logged as `contact_id`:
# it answers their open questions (outreach). kwargs: resident_id, press, contact_id.
device_pressed = Signal()
