"""Hooks that apps to the right register (they may import this app; it never imports them).

`reply_received(sender, user, channel, text, event_id, notification)`: a person answered
on an external channel: a LINE text message or an SMS (`text`), or a tap on the answer
button under one of their own notifications on LINE (`notification`, then `text` is "").
Receivers run synchronously in the request that received the reply, inside the
tenant's schema and inside the transaction that records the provider's `event_id`, so
a redelivered event never reaches them twice. A receiver returns the text to answer the
person with, or None.

`answerable_kinds`: the notification kinds whose LINE message carries the answer button
(the app that receives the answers adds its kinds at start-up).
"""
from django.dispatch import Signal

reply_received = Signal()
answerable_kinds: set[str] = set()
