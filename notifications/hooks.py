"""Hooks that apps to the right register (they may import this app; it never imports them).

`reply_received(sender, user, channel, text, event_id)`: a person answered a
notification on an external channel (today: a LINE text message from a linked LINE
account). Receivers run synchronously in the request that received the reply and run
inside the tenant's schema; LINE may deliver the same event again (same `event_id`), so
receivers must be idempotent. Outreach uses it to acknowledge concerns.
"""
from django.dispatch import Signal

reply_received = Signal()
