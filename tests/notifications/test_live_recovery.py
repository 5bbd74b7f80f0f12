"""Live connections notice a lost channel layer: after the channel layer's Redis forgets
every group (FLUSHDB, a restart), an open socket rejoins its groups and tells the page
to catch up from the database, within 10 s.

Events travel through the real Redis channel layer (REDIS_URL's database)."""
import time

import redis.asyncio as redis
from channels.db import database_sync_to_async
from django.conf import settings

from notifications.events import EVERYONE, to_user
from tests.conftest import HOST_A, HOST_B, websocket
from tests.tenants.test_websocket import no_message, publish_in, session_of


async def flush_channel_layer():
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def receive_until(ws, wanted: str, timeout: float) -> dict:
    """The first message of type `wanted`, skipping others, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        event = await ws.receive_json_from(timeout=max(deadline - time.monotonic(), 0.01))
        if event.get("type") == wanted:
            return event


def test_open_socket_resyncs_within_10_s_of_a_redis_flush_and_then_receives_new_events(
    run_async, client_a, staff_a, django_capture_on_commit_callbacks
):
    client_a.sign_in("staff-a")

    async def scenario():
        async with websocket(HOST_A, session_of(client_a)) as (connected, _, ws):
            assert connected
            assert (await ws.receive_json_from())["type"] == "hello"
            await flush_channel_layer()
            flushed = time.monotonic()
            assert await receive_until(ws, "resync", timeout=10) == {"type": "resync"}
            recovery = time.monotonic() - flushed
            await database_sync_to_async(publish_in)(
                "tenant_a", {"type": "personal", "text": "再接続後のお知らせ"}, [to_user(staff_a.pk)],
                django_capture_on_commit_callbacks,
            )
            assert await ws.receive_json_from(timeout=5) == {"type": "personal", "text": "再接続後のお知らせ"}
            print(f"FAULT TABLE | redis flush under open websockets | lost 0 (page resyncs from the database) "
                  f"| duplicated 0 | socket kept open | recovery {recovery:.1f} s")
        return recovery

    assert run_async(scenario) < 10


def test_socket_with_its_groups_intact_is_never_told_to_resync(run_async, client_a, staff_a):
    client_a.sign_in("staff-a")

    async def scenario():
        async with websocket(HOST_A, session_of(client_a)) as (_, _, ws):
            await ws.receive_json_from()
            # Three probe rounds pass: each came back, so nothing reaches the page.
            assert await ws.receive_nothing(timeout=7)

    run_async(scenario)


def test_after_a_flush_a_rejoined_socket_of_b_gets_no_event_of_a(
    run_async, client_a, client_b, staff_a, outsider_b, django_capture_on_commit_callbacks
):
    client_a.sign_in("staff-a")
    client_b.sign_in("outsider-b")

    async def scenario():
        async with websocket(HOST_A, session_of(client_a)) as (_, _, ws_a), \
                websocket(HOST_B, session_of(client_b)) as (_, _, ws_b):
            await ws_a.receive_json_from()
            await ws_b.receive_json_from()
            await flush_channel_layer()
            await receive_until(ws_a, "resync", timeout=10)
            await receive_until(ws_b, "resync", timeout=10)
            await database_sync_to_async(publish_in)(
                "tenant_a", {"type": "notice", "text": "A だけ"}, [EVERYONE], django_capture_on_commit_callbacks
            )
            assert await ws_a.receive_json_from(timeout=5) == {"type": "notice", "text": "A だけ"}
            assert await no_message(ws_b)

    run_async(scenario)
