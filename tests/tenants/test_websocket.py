"""Websockets: tenant from the Host header, user from the session, events per tenant.

Events travel through the real Redis channel layer."""
import asyncio

from channels.db import database_sync_to_async

from notifications.events import EVERYONE, send_event_on_commit, to_user
from tenants.accounts import actions
from tenants.context import tenant_scope
from tests.conftest import HOST_A, HOST_B, websocket


def session_of(client) -> str:
    return client.cookies["mimamori_session"].value


def publish_in(schema_name, event, audience, capture):
    with capture(execute=True), tenant_scope(schema_name):
        send_event_on_commit(schema_name, event, audience)


async def no_message(communicator) -> bool:
    return await communicator.receive_nothing(timeout=0.3)


def test_event_published_in_a_reaches_a_client_and_not_b_client(
    run_async, client_a, client_b, staff_a, outsider_b, django_capture_on_commit_callbacks
):
    client_a.sign_in("staff-a")
    client_b.sign_in("outsider-b")

    async def scenario():
        async with websocket(HOST_A, session_of(client_a)) as (ok_a, _, ws_a), \
                websocket(HOST_B, session_of(client_b)) as (ok_b, _, ws_b):
            assert ok_a and ok_b
            assert await ws_a.receive_json_from() == {"type": "hello", "tenant": "tenant_a"}
            assert await ws_b.receive_json_from() == {"type": "hello", "tenant": "tenant_b"}
            await database_sync_to_async(publish_in)(
                "tenant_a", {"type": "notice", "text": "見守り訓練のお知らせ"}, [EVERYONE],
                django_capture_on_commit_callbacks,
            )
            assert await ws_a.receive_json_from(timeout=5) == {"type": "notice", "text": "見守り訓練のお知らせ"}
            assert await no_message(ws_b)

    run_async(scenario)


def test_event_for_one_user_reaches_only_that_user(
    run_async, client_a, staff_a, volunteer_a, django_capture_on_commit_callbacks
):
    from tests.conftest import TenantClient

    client_a.sign_in("staff-a")
    volunteer = TenantClient(HOST_A)
    volunteer.sign_in("volunteer-a")

    async def scenario():
        async with websocket(HOST_A, session_of(client_a)) as (_, _, ws_staff), \
                websocket(HOST_A, session_of(volunteer)) as (_, _, ws_volunteer):
            await ws_staff.receive_json_from()
            await ws_volunteer.receive_json_from()
            await database_sync_to_async(publish_in)(
                "tenant_a", {"type": "personal"}, [to_user(volunteer_a.pk)], django_capture_on_commit_callbacks
            )
            assert await ws_volunteer.receive_json_from(timeout=5) == {"type": "personal"}
            assert await no_message(ws_staff)

    run_async(scenario)


def test_event_rolled_back_with_its_transaction_is_never_sent(
    run_async, client_a, staff_a, django_capture_on_commit_callbacks
):
    client_a.sign_in("staff-a")

    def publish_then_fail():
        with django_capture_on_commit_callbacks(execute=False) as callbacks, tenant_scope("tenant_a"):
            send_event_on_commit("tenant_a", {"type": "never"}, [EVERYONE])
        # The transaction did not commit: the callbacks are dropped, never run.
        return len(callbacks)

    async def scenario():
        async with websocket(HOST_A, session_of(client_a)) as (_, _, ws):
            await ws.receive_json_from()
            assert await database_sync_to_async(publish_then_fail)() == 1
            assert await no_message(ws)

    run_async(scenario)


def test_websocket_on_b_host_with_a_session_is_refused(run_async, client_a, staff_a, tenant_b):
    client_a.sign_in("staff-a")

    async def scenario():
        async with websocket(HOST_B, session_of(client_a)) as (connected, code, _):
            assert not connected
            assert code == 4401

    run_async(scenario)


def test_websocket_refused_for_signed_out_unknown_host_public_host_and_foreign_origin(
    run_async, client_a, staff_a
):
    client_a.sign_in("staff-a")

    async def scenario():
        for host, cookie, origin in [
            (HOST_A, None, None),
            ("nowhere.mimamori.test", session_of(client_a), None),
            ("platform.mimamori.test", session_of(client_a), None),
            (HOST_A, session_of(client_a), "https://evil.example"),
        ]:
            async with websocket(host, cookie, origin) as (connected, _code, _):
                assert not connected, (host, cookie, origin)
        async with websocket(HOST_A, session_of(client_a), f"http://{HOST_A}") as (connected, _, _):
            assert connected

    run_async(scenario)


def test_deactivated_user_connection_is_closed(
    run_async, client_a, admin_a, volunteer_a, django_capture_on_commit_callbacks
):
    from tests.conftest import TenantClient

    volunteer = TenantClient(HOST_A)
    volunteer.sign_in("volunteer-a")

    def deactivate():
        with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
            actions.do_set_user_active(actor=admin_a, user=volunteer_a, active=False)

    async def scenario():
        async with websocket(HOST_A, session_of(volunteer)) as (connected, _, ws):
            assert connected
            await ws.receive_json_from()
            await database_sync_to_async(deactivate)()
            assert await ws.receive_json_from(timeout=5) == {"type": "session.ended"}
            closed = await ws.receive_output(timeout=5)
            assert closed == {"type": "websocket.close", "code": 4403}
        await asyncio.sleep(0)

    run_async(scenario)
