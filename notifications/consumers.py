import asyncio
import hashlib
import logging
import secrets

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from notifications.events import group_name, groups_for_user
from tenants.context import tenant_scope

logger = logging.getLogger(__name__)


def to_session(session_key: str) -> str:
    """The audience of one session's connections, named by a hash: group names are
    visible in Redis, session keys must not be."""
    return f"session.{hashlib.sha256(session_key.encode()).hexdigest()[:32]}"


@database_sync_to_async
def _groups(tenant, user, session_key: str | None) -> list[str]:
    with tenant_scope(tenant.schema_name):
        groups = groups_for_user(tenant.schema_name, user)
    if session_key:
        groups.append(group_name(tenant.schema_name, to_session(session_key)))
    return groups


class LiveEventsConsumer(AsyncJsonWebsocketConsumer):
    """One connection per open page: receives the live events of the signed-in user's
    tenant meant for everyone, for the user's role, for the user, or for the session.

    channels-redis keeps group membership in Redis, which forgets it on a flush or a
    restart (and after its group expiry), leaving the socket open and silent. So every
    `probe_every` seconds the connection sends a probe through a group of its own; a probe
    not back within `probe_timeout` means the membership is gone (or the channel dropped
    messages over capacity): it rejoins its groups and sends {"type": "resync"}, on which
    the page catches up from the database."""

    probe_every = 3.0
    probe_timeout = 3.0

    async def connect(self):
        user = self.scope.get("user")
        tenant = self.scope.get("tenant")
        if tenant is None or user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        # The probe's group is this connection's alone, so a probe reaches no other socket.
        channel_hash = hashlib.sha256(self.channel_name.encode()).hexdigest()[:32]
        self.probe_group = group_name(tenant.schema_name, f"probe.{channel_hash}")
        self.groups_joined = [*await _groups(tenant, user, self.scope.get("session_key")), self.probe_group]
        await self._join()
        await self.accept()
        await self.send_json({"type": "hello", "tenant": tenant.schema_name})
        self.probe_returned = asyncio.Event()
        self.probe_token = ""
        self.prober = asyncio.create_task(self._keep_membership())

    async def _join(self):
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)

    async def _keep_membership(self):
        while True:
            await asyncio.sleep(self.probe_every)
            self.probe_token = secrets.token_hex(8)
            self.probe_returned.clear()
            try:
                await self.channel_layer.group_send(self.probe_group, {"type": "live.probe", "token": self.probe_token})
                await asyncio.wait_for(self.probe_returned.wait(), self.probe_timeout)
                continue
            except TimeoutError:
                pass
            except Exception:
                logger.warning("channel layer unreachable; probing again", exc_info=True)
                continue
            try:
                await self._join()
            except Exception:
                logger.warning("channel layer unreachable; rejoining later", exc_info=True)
                continue
            await self.send_json({"type": "resync"})

    async def disconnect(self, code):
        if prober := getattr(self, "prober", None):
            prober.cancel()
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def live_probe(self, message):
        if message.get("token") == self.probe_token:
            self.probe_returned.set()

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def live_event(self, message):
        event = message["event"]
        await self.send_json(event)
        if event.get("type") == "session.ended":
            await self.close(code=4403)
