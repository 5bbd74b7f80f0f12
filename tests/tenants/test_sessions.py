"""Sign-out and tenant deactivation close live connections at once; host lookups are
cached briefly and with a bound."""
import hashlib
import time

from channels.db import database_sync_to_async

from tenants import context
from tenants.actions import do_deactivate_tenant
from tenants.models import Tenant
from tests.conftest import HOST_A, HOST_B, TenantClient, websocket


def session_of(client) -> str:
    return client.cookies["mimamori_session"].value


def test_sign_out_publishes_session_ended_to_that_sessions_group_named_by_a_hash(
    client_a, staff_a, captured_events, django_capture_on_commit_callbacks
):
    client_a.sign_in("staff-a")
    key = session_of(client_a)
    with django_capture_on_commit_callbacks(execute=True):
        client_a.post("/accounts/logout/")
    group = f"tenant_a.session.{hashlib.sha256(key.encode()).hexdigest()[:32]}"
    assert captured_events == [(group, {"type": "session.ended"})]
    assert key not in group


def test_sign_out_closes_that_sessions_connection_and_not_the_users_other_device(
    run_async, client_a, staff_a, django_capture_on_commit_callbacks
):
    client_a.sign_in("staff-a")
    phone = TenantClient(HOST_A)
    phone.sign_in("staff-a")

    def sign_out():
        with django_capture_on_commit_callbacks(execute=True):
            client_a.post("/accounts/logout/")

    async def scenario():
        async with websocket(HOST_A, session_of(client_a)) as (ok, _, ws), \
                websocket(HOST_A, session_of(phone)) as (ok_phone, _, ws_phone):
            assert ok and ok_phone
            await ws.receive_json_from()
            await ws_phone.receive_json_from()
            await database_sync_to_async(sign_out)()
            assert await ws.receive_json_from(timeout=5) == {"type": "session.ended"}
            assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
            assert await ws_phone.receive_nothing(timeout=0.3)

    run_async(scenario)


def test_tenant_deactivation_closes_every_live_connection_of_the_tenant_only(
    run_async, client_a, client_b, staff_a, outsider_b, tenant_a, django_capture_on_commit_callbacks
):
    client_a.sign_in("staff-a")
    client_b.sign_in("outsider-b")

    def deactivate():
        with django_capture_on_commit_callbacks(execute=True):
            do_deactivate_tenant(tenant_a)

    async def scenario():
        async with websocket(HOST_A, session_of(client_a)) as (ok_a, _, ws_a), \
                websocket(HOST_B, session_of(client_b)) as (ok_b, _, ws_b):
            assert ok_a and ok_b
            await ws_a.receive_json_from()
            await ws_b.receive_json_from()
            await database_sync_to_async(deactivate)()
            assert await ws_a.receive_json_from(timeout=5) == {"type": "session.ended"}
            assert await ws_a.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
            assert await ws_b.receive_nothing(timeout=0.3)

    run_async(scenario)


def test_host_lookups_are_cached_with_a_bound_whatever_hosts_arrive(tenant_a):
    for i in range(1_500):
        assert context.get_tenant_for_host(f"probe-{i}.example.invalid") is None
    assert len(context._host_cache) <= context.HostCache.SIZE
    assert context.get_tenant_for_host(HOST_A) == tenant_a


def test_a_tenant_deactivated_by_another_process_stops_being_served_within_a_second(tenant_a):
    assert context.get_tenant_for_host(HOST_A) == tenant_a
    # Another process deactivates it: this process's cache is not told.
    Tenant.objects.filter(pk=tenant_a.pk).update(is_active=False)
    time.sleep(1.05)
    assert context.get_tenant_for_host(HOST_A) is None


def test_a_new_password_closes_the_live_connections_of_the_users_other_devices(
    run_async, client_a, staff_a, django_capture_on_commit_callbacks
):
    """The phone's session ends with the old password; its open page must not go on
    receiving notifications (their titles name residents)."""
    from tests.conftest import PASSWORD

    phone = TenantClient(HOST_A)
    phone.sign_in("staff-a")
    client_a.sign_in("staff-a")

    def change_password():
        with django_capture_on_commit_callbacks(execute=True):
            response = client_a.post("/accounts/password/", {
                "old_password": PASSWORD, "new_password1": "a new and long passphrase 42",
                "new_password2": "a new and long passphrase 42"})
        assert response.status_code == 302

    async def scenario():
        async with websocket(HOST_A, session_of(phone)) as (ok, _, ws):
            assert ok
            await ws.receive_json_from()
            await database_sync_to_async(change_password)()
            assert await ws.receive_json_from(timeout=5) == {"type": "session.ended"}
            assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}

    run_async(scenario)
