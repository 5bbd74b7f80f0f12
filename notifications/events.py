"""Live events: published to websocket clients after the transaction commits.

Actions call `send_event_on_commit(schema_name, event, audience)`; the edge's async
paths, which have committed already, call `publish_now`. Both end in `publish_now`, the
one publishing point (tests capture events there). Group names carry the schema name,
so an event of one tenant can reach only that tenant's connections. The channel layer
may drop messages under load, and Redis may be down: the database is the record, live
events are a view of it, and a failure to publish is logged, never raised.
"""
import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

EVERYONE = "all"


def to_user(user_id: int) -> str:
    return f"user.{user_id}"


def to_role(role: str) -> str:
    return f"role.{role}"


def to_area(area_id: int) -> str:
    """Everyone who oversees the area (or an area above it) and sees all its residents."""
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


def send_event_on_commit(schema_name: str, event: dict, audience: Iterable[str]) -> None:
    """Publish `event` to `audience` (EVERYONE, to_role(...), to_user(...), to_area(...))
    of the tenant `schema_name` once the surrounding transaction commits; dropped if it
    rolls back."""
    audience = list(audience)
    transaction.on_commit(lambda: publish(schema_name, audience, event))


def publish(schema_name: str, audience: Iterable[str], event: dict) -> None:
    """Publish now, from sync code that has committed (on_commit callbacks)."""
    async_to_sync(publish_now)(schema_name, list(audience), event)


async def publish_now(schema_name: str, audience: list[str], event: dict) -> None:
    """The one publishing point: every live event of every path goes through here."""
    layer = get_channel_layer()
    try:
        for group in dict.fromkeys(group_name(schema_name, a) for a in audience):
            await layer.group_send(group, {"type": "live.event", "event": event})
    except Exception:
        # After commit, the answer is the commit: pages catch up from the database.
        logger.exception("live event %s of %s not published", event.get("type"), schema_name)
