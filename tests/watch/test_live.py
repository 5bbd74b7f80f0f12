"""The overview updates live: contact and overdue events reach the right connections."""
from channels.db import database_sync_to_async

from tests.conftest import HOST_A, TenantClient, websocket
from tests.watch.conftest import attach
from watch import actions


def session_of(client) -> str:
    return client.cookies["mimamori_session"].value


def test_contact_event_reaches_area_staff_and_assigned_volunteer_but_not_staff_of_other_areas(
    run_async, client_a, staff_a, volunteer_a, hanako, areas_a, django_capture_on_commit_callbacks
):
    from tenants.accounts.models import User
    from tests.conftest import make_user

    attach(staff_a, areas_a["osumi"])
    other = make_user("tenant_a", "staff-kodo", User.Role.MUNICIPAL_STAFF)
    attach(other, areas_a["kodo"])
    clients = {}
    for username in ("staff-a", "volunteer-a", "staff-kodo"):
        clients[username] = TenantClient(HOST_A)
        clients[username].sign_in(username)

    def log():
        from django.utils import timezone

        from tenants.context import tenant_scope

        with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
            actions.do_log_contact(actor=volunteer_a, resident=hanako, occurred_at=timezone.now(),
                                   channel="visit", outcome="fine")

    async def scenario():
        async with websocket(HOST_A, session_of(clients["staff-a"])) as (_, _, staff), \
                websocket(HOST_A, session_of(clients["volunteer-a"])) as (_, _, volunteer), \
                websocket(HOST_A, session_of(clients["staff-kodo"])) as (_, _, kodo):
            for ws in (staff, volunteer, kodo):
                assert (await ws.receive_json_from())["type"] == "hello"
            await database_sync_to_async(log)()
            for ws in (staff, volunteer):
                event = await ws.receive_json_from(timeout=5)
                assert (event["type"], event["resident"], event["last_outcome"]) == (
                    "contact.logged", hanako.pk, "fine")
            assert await kodo.receive_nothing(timeout=0.3)

    run_async(scenario)
