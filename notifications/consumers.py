from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from notifications.events import groups_for_user
from tenants.context import tenant_scope


@database_sync_to_async
def _groups(tenant, user) -> list[str]:
    with tenant_scope(tenant.schema_name):
        return groups_for_user(tenant.schema_name, user)


class LiveEventsConsumer(AsyncJsonWebsocketConsumer):
    """One connection per open page: receives the live events of the signed-in user's
    tenant meant for everyone, for the user's role, or for the user."""

    async def connect(self):
        user = self.scope.get("user")
        tenant = self.scope.get("tenant")
        if tenant is None or user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.groups_joined = await _groups(tenant, user)
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
