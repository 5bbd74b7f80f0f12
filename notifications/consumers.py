import hashlib

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from notifications.events import group_name, groups_for_user
from tenants.context import tenant_scope


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
    tenant meant for everyone, for the user's role, for the user, or for the session."""

    async def connect(self):
        user = self.scope.get("user")
        tenant = self.scope.get("tenant")
        if tenant is None or user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.groups_joined = await _groups(tenant, user, self.scope.get("session_key"))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "tenant": tenant.schema_name})

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def live_event(self, message):
        event = message["event"]
        await self.send_json(event)
        if event.get("type") == "session.ended":
            await self.close(code=4403)
