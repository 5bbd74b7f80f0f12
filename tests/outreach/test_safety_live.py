"""The live progress of a safety check (/ws/safety/<id>/): the figures a viewer may see,
on connect and as answers arrive, at most one message a second however fast they come;
nobody else subscribes."""
import time
from datetime import timedelta

from channels.db import database_sync_to_async
from django.utils import timezone

from outreach import answers
from outreach.models import Ask, SafetyCheck
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, HOST_B, TenantClient, make_user, websocket
from tests.watch.conftest import attach, make_resident
from watch.models import Channel


def session_of(username: str, host: str = HOST_A) -> str:
    client = TenantClient(host)
    client.sign_in(username)
    return client.cookies["mimamori_session"].value


def make_check(residents) -> tuple[SafetyCheck, list[Ask]]:
    with tenant_scope("tenant_a"):
        check = SafetyCheck.objects.create(title="訓練", question="ご無事ですか？", state=SafetyCheck.State.OPEN,
                                           deadline=timezone.now() + timedelta(hours=1), channels=["sms"])
        asks = [Ask.objects.create(kind=Ask.Kind.SAFETY, safety_check=check, resident=r, area_id=r.area_id,
                                   state=Ask.State.WAITING) for r in residents]
    return check, asks


def path_of(check) -> str:
    return f"/ws/safety/{check.pk}/"


def answer_all(asks, capture, answer="fine"):
    """Each answer in its own transaction, committed (its on-commit publishing runs)."""
    with tenant_scope("tenant_a"):
        for ask in asks:
            with capture(execute=True):
                answers.do_record_answer(ask, answer, Channel.LINK)


def test_a_viewer_gets_the_progress_on_connect_and_when_an_answer_arrives(
        run_async, staff_a, hanako, shigeru, django_capture_on_commit_callbacks):
    check, asks = make_check([hanako, shigeru])
    session = session_of("staff-a")

    async def scenario():
        async with websocket(HOST_A, session, path=path_of(check)) as (connected, _code, ws):
            assert connected
            first = await ws.receive_json_from(timeout=5)
            assert (first["type"], first["check"], first["totals"]["total"], first["totals"]["answered"]) == (
                "safety.progress", check.pk, 2, 0)
            await database_sync_to_async(answer_all)(asks[:1], django_capture_on_commit_callbacks, "need_help")
            update = await ws.receive_json_from(timeout=5)
            assert update["type"] == "safety.progress"
            totals = update["totals"]
            assert (totals["answered"], totals["need_help"], totals["silent"]) == (1, 1, 1)

    run_async(scenario)


def test_fifty_quick_answers_make_at_most_two_messages_within_a_second_and_end_with_every_answer(
        run_async, staff_a, areas_a, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(answers, "PUBLISH_GAP_S", 0)  # every answer publishes: the consumer alone coalesces
    with tenant_scope("tenant_a"):
        residents = [make_resident(areas_a["block"], f"住民{i}") for i in range(50)]
    check, asks = make_check(residents)
    session = session_of("staff-a")

    async def scenario():
        async with websocket(HOST_A, session, path=path_of(check)) as (connected, _code, ws):
            assert connected
            await ws.receive_json_from(timeout=5)
            await database_sync_to_async(answer_all)(asks, django_capture_on_commit_callbacks)
            first = await ws.receive_json_from(timeout=5)
            started = time.monotonic()
            within_a_second = [first]
            last = first
            while True:
                try:
                    last = await ws.receive_json_from(timeout=2.5)
                except TimeoutError:
                    break
                if time.monotonic() - started < 1.0:
                    within_a_second.append(last)
                if last["totals"]["answered"] == 50:
                    break
            assert len(within_a_second) <= 2
            assert last["totals"]["answered"] == 50

    run_async(scenario)


def test_a_viewer_sees_the_figures_of_the_residents_they_may_see_only(
        run_async, areas_a, hanako, shigeru, django_capture_on_commit_callbacks):
    kodo = make_user("tenant_a", "staff-kodo", User.Role.MUNICIPAL_STAFF)
    attach(kodo, areas_a["kodo"])
    check, _asks = make_check([hanako, shigeru])
    session = session_of("staff-kodo")

    async def scenario():
        async with websocket(HOST_A, session, path=path_of(check)) as (connected, _code, ws):
            assert connected
            first = await ws.receive_json_from(timeout=5)
            assert first["totals"]["total"] == 1 and [a["area"] for a in first["areas"]] == ["興戸"]

    run_async(scenario)


def test_an_outsider_a_volunteer_or_a_signed_out_visitor_cannot_subscribe(
        run_async, staff_a, volunteer_a, outsider_b, hanako):
    check, _asks = make_check([hanako])
    sessions = {"volunteer": (HOST_A, session_of("volunteer-a")),
                "outsider on A": (HOST_A, session_of("outsider-b", HOST_B)),
                "outsider on B": (HOST_B, session_of("outsider-b", HOST_B)),
                "signed out": (HOST_A, None)}

    async def scenario():
        for who, (host, session) in sessions.items():
            async with websocket(host, session, path=path_of(check)) as (connected, _code, ws):
                if connected:  # accepted then closed at once is refused too; no figures either way
                    message = await ws.receive_output(timeout=2)
                    assert message["type"] == "websocket.close", who
                assert await ws.receive_nothing(timeout=0.1), who

    run_async(scenario)
