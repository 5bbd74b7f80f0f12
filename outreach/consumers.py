"""Live progress of a safety check, for the staff who may see it: /ws/safety/<id>/.

On connect and whenever answers arrive the viewer gets
`{"type": "safety.progress", **outreach.safety.progress(check, user)}`: the figures of
the residents that viewer may see, computed when sent. However fast answers come, at
most one message a second per viewer: answers publish a cheap "changed" (coalesced at
the source, outreach.answers.publish_progress_changed) and the consumer sends the
snapshot at most every `interval`, then once more a second later, which covers the
answers whose "changed" was coalesced away. A snapshot every `refresh_every` seconds
heals a lost event or a forgotten group membership (the database is the record).
"""
import asyncio
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from notifications.consumers import to_session
from notifications.events import group_name
from outreach.answers import PROGRESS_EVENT, progress_audience
from tenants.context import tenant_scope

logger = logging.getLogger(__name__)

PROGRESS = "safety.progress"


@database_sync_to_async
def _snapshot(schema_name: str, user_id: int, check_id) -> dict | None:
    """The figures `user_id` may see now, or None if they may no longer see the check."""
    from outreach.safety import get_check_for_user, progress
    from tenants.accounts.models import User

    with tenant_scope(schema_name):
        user = User.objects.filter(pk=user_id, is_active=True).first()
        if user is None:
            return None
        try:
            check = get_check_for_user(user, check_id)
        except Http404:
            return None
        return {"type": PROGRESS, **progress(check, user)}


class SafetyProgressConsumer(AsyncJsonWebsocketConsumer):
    interval = 1.0  # at most one message per this many seconds
    refresh_every = 15.0

    async def connect(self):
        user = self.scope.get("user")
        tenant = self.scope.get("tenant")
        if tenant is None or user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.schema = tenant.schema_name
        self.user_id = user.pk
        self.check_id = self.scope["url_route"]["kwargs"]["check_id"]
        first = await _snapshot(self.schema, self.user_id, self.check_id)
        if first is None:
            await self.close(code=4404)
            return
        self.groups_joined = [group_name(self.schema, progress_audience(self.check_id))]
        if session_key := self.scope.get("session_key"):
            self.groups_joined.append(group_name(self.schema, to_session(session_key)))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        self.dirty = False
        self.trailing = False
        self.wake = asyncio.Event()
        self.last_sent = 0.0
        self.query_s = 0.0
        await self._send(first)
        self.sender = asyncio.create_task(self._send_loop())

    async def _send(self, snapshot: dict) -> None:
        self.last_sent = asyncio.get_running_loop().time()
        await self.send_json(snapshot)

    async def _send_loop(self):
        loop = asyncio.get_running_loop()
        while True:
            try:
                if not (self.dirty or self.trailing):
                    self.wake.clear()
                    try:
                        await asyncio.wait_for(self.wake.wait(), self.refresh_every)
                    except TimeoutError:
                        pass
                # The snapshot is computed as late as it can be and still go out when the
                # second is up: started that long before, the last one's duration.
                wait = self.last_sent + self.interval - self.query_s - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                # After a change: this snapshot, and one more a second later.
                self.trailing, self.dirty = self.dirty, False
                started = loop.time()
                snapshot = await _snapshot(self.schema, self.user_id, self.check_id)
                self.query_s = min(loop.time() - started, self.interval / 2)
                if snapshot is None:
                    await self.close(code=4403)
                    return
                wait = self.last_sent + self.interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # never two messages within `interval`
                await self._send(snapshot)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("safety progress of check %s not sent; trying again", self.check_id)
                self.last_sent = loop.time()

    async def disconnect(self, code):
        if sender := getattr(self, "sender", None):
            sender.cancel()
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def live_event(self, message):
        event = message.get("event") or {}
        if event.get("type") == PROGRESS_EVENT:
            self.dirty = True
            self.wake.set()
        elif event.get("type") == "session.ended":
            await self.close(code=4403)
