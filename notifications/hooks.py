"""Hooks that apps to the right register (they may import this app; it never imports them).

`reply_received(sender, user, channel, text, event_id, notification)`: a person answered
on an external channel: a LINE text message or an SMS (`text`), or a tap on the answer
button under one of their own notifications on LINE (`notification`, then `text` is "").
Receivers run synchronously in the request that received the reply, inside the
tenant's schema and inside the transaction that records the provider's `event_id`, so
a redelivered event never reaches them twice. A receiver returns the text to answer the
person with, or None.

`resident_message_received(sender, channel, address, text, event_id)`: someone who is not
a user wrote on an external channel from `address` (an SMS from a number in E.164, a
LINE user id): a watched resident answering a question, most likely. Same guarantees as
`reply_received` (the tenant's schema, the transaction that records `event_id`). A
receiver returns the text to answer with, or None; no receiver answering means nobody
was waiting for that message.

`line_event_received(sender, event, line_user_id)`: a LINE webhook event (line-bot-sdk's
object, signature checked) that is not a user's reply: one from a LINE account linked to
no user (a resident's message or answer-button tap), or a `follow` or `accountLink`
event (linking a resident's LINE account). Runs in the tenant's schema, in the request;
the receiver records the `webhookEventId` itself, so a redelivered event changes
nothing. A receiver returns the text to reply with (LINE's reply API), or None.

`answerable_kinds`: the notification kinds whose LINE message carries the answer button
(the app that receives the answers adds its kinds at start-up).
"""
from django.dispatch import Signal

reply_received = Signal()
resident_message_received = Signal()
line_event_received = Signal()
answerable_kinds: set[str] = set()
