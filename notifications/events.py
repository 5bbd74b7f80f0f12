"""Live events: published to websocket clients after the transaction commits.

Actions call `send_event_on_commit`; nothing else publishes. Group names carry the
schema name, so an event of one tenant can reach only that tenant's connections. The
channel layer may drop messages under load: the database is the record, live events
are a view of it.
"""
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction

EVERYONE = "all"


def to_user(user_id: int) -> str:
    return f"user.{user_id}"


def to_role(role: str) -> str:
    return f"role.{role}"


def to_area(area_id: int) -> str:
    """Everyone who oversees the area (or an area above it)."""
    return f"area.{area_id}"


def group_name(schema_name: str, audience: str) -> str:
    return f"{schema_name}.{audience}"


# Apps to the right register functions giving a user's further audiences (their areas).
audience_providers: list = []


def groups_for_user(schema_name: str, user) -> list[str]:
    """The groups a signed-in user's connection joins. Runs database queries: call it
    inside the tenant's scope."""
    audiences = [EVERYONE, to_role(user.role), to_user(user.pk)]
    for provider in audience_providers:
        audiences.extend(provider(user))
    return [group_name(schema_name, a) for a in audiences]


def send_event_on_commit(event: dict, audience: Iterable[str], schema_name: str | None = None) -> None:
    """Publish `event` to `audience` (EVERYONE, to_role(...), to_user(...)) of the current
    tenant, once the surrounding transaction commits; dropped if it rolls back."""
    schema_name = schema_name or connection.schema_name
    groups = [group_name(schema_name, a) for a in audience]
    transaction.on_commit(lambda: publish(groups, event))


def publish(groups: list[str], event: dict) -> None:
    async_to_sync(send_to_groups)(groups, event)


async def send_to_groups(groups: list[str], event: dict) -> None:
    """Publish now, from async code that has already committed (the edge paths)."""
    layer = get_channel_layer()
    for group in groups:
        await layer.group_send(group, {"type": "live.event", "event": event})
