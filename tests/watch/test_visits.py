"""Visit coordination: planning, reassigning, cancelling, completion by a check-in (the
action and the edge alike), missed visits as missed signs of life, the phone page, the
weekly plans, the visit sheet (HTML and PDF) and entering its outcomes."""
import base64
import re
import uuid
import zlib
from datetime import datetime, time, timedelta
from http import HTTPStatus
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from tenants.accounts.models import User
from tenants.context import tenant_scope
from tenants.models import Wakeup
from tests.conftest import HOST_A, TenantClient, make_user
from tests.watch.conftest import attach, make_resident
from watch import actions, visits
from watch.models import Assignment, ContactLog, Resident, Visit

TOKYO = ZoneInfo("Asia/Tokyo")


def today():
    return timezone.now().astimezone(TOKYO).date()


def plan(resident, visitor, *, starts=0, ends=None, planner=None, **kw) -> Visit:
    """A visit planned through the action, its window `starts`..`ends` days from today."""
    planner = planner or User.objects.get(username="staff-a")
    return visits.do_plan_visit(actor=planner, resident=resident, visitor=visitor,
                                starts_on=today() + timedelta(days=starts),
                                ends_on=today() + timedelta(days=ends if ends is not None else starts), **kw)


def wakeup_due():
    return Wakeup.objects.get(tenant__schema_name="tenant_a", purpose="overdue").due_at


@pytest.fixture
def planned(staff_a, volunteer_a, hanako):
    with tenant_scope("tenant_a"):
        return plan(hanako, volunteer_a, note="玄関の鍵は隣の佐藤さん")


# Planning.
def test_staff_plan_a_visit_whose_window_ends_at_midnight_and_the_wakeup_comes_then(
        client_a, staff_a, volunteer_a, hanako):
    client_a.sign_in("staff-a")
    day = today() + timedelta(days=2)
    response = client_a.post("/watch/visits/", {"resident": hanako.pk, "visitor": volunteer_a.pk,
                                                "starts_on": day.isoformat(), "ends_on": "",
                                                "purpose": "follow_up", "note": " 先週の様子を確認 "})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        visit = Visit.objects.get()
        assert (visit.resident_id, visit.visitor_id, visit.planned_by_id, visit.state) == (
            hanako.pk, volunteer_a.pk, staff_a.pk, "planned")
        assert (visit.starts_on, visit.ends_on, visit.purpose, visit.note) == (
            day, day, "follow_up", "先週の様子を確認")
        assert visit.due_at == datetime.combine(day + timedelta(days=1), time(0), tzinfo=TOKYO)
        assert wakeup_due() <= visit.due_at
    page = client_a.get(response["Location"]).content.decode()
    assert "The visit of 山田 花子 is planned." in page and "Follow-up of a concern" in page
    assert "大住 › 大住ヶ丘連合自治会 › 3班" in page


def test_the_plan_page_finds_a_resident_by_a_two_character_surname_and_offers_only_those_who_may_visit(
        client_a, staff_a, volunteer_a, hanako, shigeru):
    other = make_user("tenant_a", "volunteer-other", User.Role.VOLUNTEER)
    client_a.sign_in("staff-a")
    found = client_a.get("/watch/visits/", {"q": "山田"}).content.decode()
    assert f"?resident={hanako.pk}" in found and f"?resident={shigeru.pk}" not in found
    form = client_a.get("/watch/visits/", {"resident": hanako.pk}).content.decode()
    assert f'value="{volunteer_a.pk}"' in form and f'value="{other.pk}"' not in form


@pytest.mark.parametrize("change, field, message", [
    ({"starts_on": "+3", "ends_on": "+1"}, "ends_on", "The window ends before it starts."),
    ({"starts_on": "-3", "ends_on": "-1"}, "ends_on", "The window has already ended"),
    ({"note": "   "}, "note", "The note is only spaces"),
    ({"purpose": "party"}, "purpose", "Choose one of the purposes offered."),
    ({"starts_on": "12/24"}, "starts_on", "Enter the date as YYYY-MM-DD."),
    ({"visitor": ""}, "visitor", "Choose an active volunteer or case worker."),
    ({"ends_on": "+40"}, "ends_on", "A window is at most 31 days long."),
    ({"starts_on": "+400"}, "ends_on", "Plan visits at most a year ahead."),
])
def test_a_bad_plan_is_400_with_the_message_next_to_its_field_and_nothing_saved(
        client_a, staff_a, volunteer_a, hanako, change, field, message):
    data = {"resident": hanako.pk, "visitor": volunteer_a.pk, "starts_on": "+0", "ends_on": "", "purpose": "regular",
            "note": "", **change}
    for key in ("starts_on", "ends_on"):
        if data[key][:1] in "+-" and data[key][1:].isdigit():
            data[key] = (today() + timedelta(days=int(data[key]))).isoformat()
    client_a.sign_in("staff-a")
    response = client_a.post("/watch/visits/", data)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    page = response.content.decode()
    assert re.search(rf'id="error-{field}"><li>[^<]*{re.escape(message)}', page.replace("&#x27;", "'")), page
    with tenant_scope("tenant_a"):
        assert not Visit.objects.exists()


def test_a_visitor_who_may_not_see_the_resident_is_refused_with_a_message(client_a, staff_a, hanako):
    stranger = make_user("tenant_a", "volunteer-stranger", User.Role.VOLUNTEER)
    client_a.sign_in("staff-a")
    response = client_a.post("/watch/visits/", {"resident": hanako.pk, "visitor": stranger.pk,
                                                "starts_on": today().isoformat(), "purpose": "regular"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "volunteer-stranger may not see this resident" in response.content.decode()
    with tenant_scope("tenant_a"):
        assert not Visit.objects.exists()


def test_a_resident_of_another_area_or_tenant_and_an_unknown_visitor_are_404(
        client_a, client_b, areas_a, volunteer_a, hanako, outsider_b):
    kodo_staff = make_user("tenant_a", "staff-kodo", User.Role.MUNICIPAL_STAFF)
    attach(kodo_staff, areas_a["kodo"])
    body = {"resident": hanako.pk, "visitor": volunteer_a.pk, "starts_on": today().isoformat(), "purpose": "regular"}
    client_a.sign_in("staff-kodo")
    assert client_a.post("/watch/visits/", body).status_code == HTTPStatus.NOT_FOUND
    assert client_a.get("/watch/visits/", {"resident": hanako.pk}).status_code == HTTPStatus.NOT_FOUND
    client_b.sign_in("outsider-b")
    assert client_b.post("/watch/visits/", body).status_code == HTTPStatus.NOT_FOUND
    make_user("tenant_a", "staff-whole", User.Role.MUNICIPAL_STAFF)
    whole = TenantClient(HOST_A)
    whole.sign_in("staff-whole")
    for visitor in (987654, 2**70, "１２"):
        assert whole.post("/watch/visits/", {**body, "visitor": visitor}).status_code == HTTPStatus.NOT_FOUND
    with tenant_scope("tenant_a"):
        assert not Visit.objects.exists()


def test_volunteers_and_officers_cannot_plan_reassign_or_cancel(client_a, planned, volunteer_a, hanako):
    client_a.sign_in("volunteer-a")
    assert client_a.get("/watch/visits/").status_code == HTTPStatus.FORBIDDEN
    assert client_a.post("/watch/visits/", {"resident": hanako.pk}).status_code == HTTPStatus.FORBIDDEN
    assert client_a.post(f"/watch/visits/{planned.pk}/cancel/", {"confirm": "yes"}).status_code == 403
    with tenant_scope("tenant_a"):
        assert Visit.objects.get().state == "planned"


def test_visit_ids_of_tenant_a_are_404_for_tenant_b_and_nothing_on_a_host(client_a, client_b, outsider_b, planned):
    client_b.sign_in("outsider-b")
    for url in (f"/watch/visits/{planned.pk}/reassign/", f"/watch/visits/{planned.pk}/cancel/"):
        assert client_b.get(url).status_code == HTTPStatus.NOT_FOUND
        assert client_b.post(url, {"confirm": "yes", "visitor": 1}).status_code == HTTPStatus.NOT_FOUND
    assert client_b.post("/watch/visits/outcomes/", {"visit": planned.pk, f"outcome-{planned.pk}": "fine"}
                         ).status_code == HTTPStatus.NOT_FOUND
    week = client_b.get("/watch/visits/week/").content.decode()
    assert "山田" not in week
    # B's session on A's host is nobody's.
    client_a.cookies = client_b.cookies
    assert client_a.get("/watch/visits/week/")["Location"].startswith("/accounts/login/")
    with tenant_scope("tenant_a"):
        assert Visit.objects.get().state == "planned"


# Reassign and cancel.
def test_a_visit_is_reassigned_to_a_case_worker_of_the_area_when_the_volunteer_is_away(
        client_a, staff_a, areas_a, planned):
    worker = make_user("tenant_a", "case-worker", User.Role.CASE_WORKER)
    attach(worker, areas_a["osumi"])
    client_a.sign_in("staff-a")
    page = client_a.get(f"/watch/visits/{planned.pk}/reassign/").content.decode()
    assert f'value="{worker.pk}"' in page
    later = today() + timedelta(days=3)
    response = client_a.post(f"/watch/visits/{planned.pk}/reassign/", {"visitor": worker.pk,
                                                                      "starts_on": later.isoformat(), "ends_on": ""})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        visit = Visit.objects.get()
    assert (visit.visitor_id, visit.starts_on, visit.ends_on, visit.state) == (worker.pk, later, later, "planned")
    assert visit.due_at == datetime.combine(later + timedelta(days=1), time(0), tzinfo=TOKYO)


def test_reassigning_to_someone_who_may_not_see_the_resident_is_400_and_changes_nothing(
        client_a, staff_a, volunteer_a, planned):
    stranger = make_user("tenant_a", "volunteer-stranger", User.Role.VOLUNTEER)
    client_a.sign_in("staff-a")
    response = client_a.post(f"/watch/visits/{planned.pk}/reassign/", {"visitor": stranger.pk})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "may not see this resident" in response.content.decode()
    with tenant_scope("tenant_a"):
        assert Visit.objects.get().visitor_id == volunteer_a.pk


def test_cancelling_asks_for_confirmation_and_a_cancelled_visit_is_never_missed(client_a, staff_a, planned):
    client_a.sign_in("staff-a")
    assert "I confirm" in client_a.get(f"/watch/visits/{planned.pk}/cancel/").content.decode()
    response = client_a.post(f"/watch/visits/{planned.pk}/cancel/", {})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert 'id="error-confirm"' in response.content.decode()
    with tenant_scope("tenant_a"):
        assert Visit.objects.get().state == "planned"
    assert client_a.post(f"/watch/visits/{planned.pk}/cancel/", {"confirm": "yes"}).status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        assert actions.do_mark_overdue(now=planned.due_at + timedelta(hours=1)) == []
        visit = Visit.objects.get()
        assert visit.state == "cancelled" and visit.closed_at is not None
    assert client_a.post(f"/watch/visits/{planned.pk}/cancel/", {"confirm": "yes"}).status_code == 400


# Completion.
def test_the_volunteers_check_in_through_the_action_completes_the_visit(volunteer_a, hanako, planned):
    with tenant_scope("tenant_a"):
        contact, _created = actions.do_log_contact(actor=volunteer_a, resident=hanako, occurred_at=timezone.now(),
                                                   channel="visit", outcome="not_home")
        visit = Visit.objects.get()
    assert (visit.state, visit.contact_id, visit.closed_at) == ("done", contact.pk, contact.occurred_at)


def test_what_completes_a_visit_and_what_does_not(admin_a, staff_a, volunteer_a, hanako):
    with tenant_scope("tenant_a"):
        later = plan(hanako, volunteer_a, starts=2)
        now = timezone.now()
        # A window that has not started; a phone call by someone else; a device signal.
        actions.do_log_contact(actor=volunteer_a, resident=hanako, occurred_at=now, channel="visit", outcome="fine")
        current = plan(hanako, volunteer_a)
        actions.do_log_contact(actor=staff_a, resident=hanako, occurred_at=now, channel="phone", outcome="fine")
        device, _token = actions.do_register_device(actor=admin_a, resident=hanako, kind="button")
        actions.do_record_device_signal(device=device, signal="ok")
        assert set(Visit.objects.values_list("state", flat=True)) == {"planned"}
        # Someone else went in the volunteer's place: done.
        contact, _ = actions.do_log_contact(actor=staff_a, resident=hanako, occurred_at=now, channel="visit",
                                            outcome="fine")
        assert Visit.objects.get(pk=current.pk).contact_id == contact.pk
        assert Visit.objects.get(pk=later.pk).state == "planned"


def test_a_visit_missed_in_the_last_week_is_done_late_by_the_next_check_in(volunteer_a, hanako, planned):
    with tenant_scope("tenant_a"):
        actions.do_mark_overdue(now=planned.due_at + timedelta(minutes=1))
        assert Visit.objects.get().state == "missed"
        actions.do_log_contact(actor=volunteer_a, resident=hanako, occurred_at=timezone.now(), channel="visit",
                               outcome="fine")
        assert Visit.objects.get().state == "done"


def visit_rows():
    with tenant_scope("tenant_a"):
        return list(Visit.objects.order_by("pk").values("resident_id", "visitor_id", "state", "closed_at",
                                                         "contact__idempotency_key"))


def completion_setup():
    """The edge's volunteer (kazuko) with a resident, today's visit, a later one and a missed one."""
    from tests.watch.test_edge import round_setup

    volunteer, mine, _other, _tokens = round_setup()
    with tenant_scope("tenant_a"):
        staff = User.objects.get(username="staff-edge")
        plan(mine, volunteer, planner=staff)
        plan(mine, volunteer, starts=3, planner=staff)
        missed = plan(mine, volunteer, planner=staff)
        Visit.objects.filter(pk=missed.pk).update(state="missed", starts_on=today() - timedelta(days=2),
                                                  ends_on=today() - timedelta(days=1),
                                                  due_at=timezone.now() - timedelta(hours=3))
    return volunteer, mine


def test_a_check_in_at_the_edge_completes_the_same_visits_as_the_action(live_server_url, django_calls):
    """The phone page's check-in (session, answered at the edge) and the action, on the
    same input: the same visit rows."""
    from tests.conftest import wipe_tenant_tables
    from tests.watch.test_edge import post_from_page, session_of

    key = uuid.uuid4()
    at = timezone.now() - timedelta(minutes=5)
    volunteer, mine = completion_setup()
    with tenant_scope("tenant_a"):
        actions.do_log_contact(actor=volunteer, resident=Resident.objects.select_related("area").get(pk=mine.pk),
                               occurred_at=at, channel="visit", outcome="fine", idempotency_key=key)
    by_action = visit_rows()

    wipe_tenant_tables()
    volunteer, mine = completion_setup()
    status, body = post_from_page(live_server_url(HOST_A) + "/api/v1/contacts/",
                                  {"resident": mine.pk, "channel": "visit", "outcome": "fine",
                                   "occurred_at": at.isoformat(), "idempotency_key": str(key)}, session_of("kazuko"))
    assert status == HTTPStatus.CREATED, body
    assert django_calls == []  # answered at the edge
    by_edge = visit_rows()
    assert by_edge == by_action
    assert [row["state"] for row in by_edge] == ["done", "planned", "done"]


# Missed visits.
def test_a_missed_visit_raises_a_missed_visit_concern_exactly_once(volunteer_a, hanako, planned):
    from outreach.models import Concern

    with tenant_scope("tenant_a"):
        assert wakeup_due() <= planned.due_at
        assert actions.do_mark_overdue(now=planned.due_at - timedelta(seconds=1)) == []
        assert Visit.objects.get().state == "planned"
        after = planned.due_at + timedelta(minutes=1)
        assert visits.do_mark_missed_visits(after) == [planned.pk]
        assert visits.do_mark_missed_visits(after) == []  # a second pass finds nothing to mark
        actions.do_mark_overdue(now=after)
        visit = Visit.objects.get()
        concerns = list(Concern.objects.filter(resident=hanako))
        opened = concerns[0].events.first()
    assert visit.state == "missed" and visit.closed_at == after
    assert [(c.cause, c.severity, c.state) for c in concerns] == [("missed_visit", "high", "open")]
    assert opened.data.get("visit") == planned.pk


def test_a_failing_missed_visit_hook_leaves_the_visit_missed_and_the_repair_raises_its_concern_once(
        volunteer_a, hanako, planned, monkeypatch):
    from outreach import actions as outreach_actions
    from outreach import receivers
    from outreach.models import Concern

    def broken(**kwargs):
        raise RuntimeError("outreach is broken")

    monkeypatch.setattr(receivers, "do_raise_concern", broken)
    with tenant_scope("tenant_a"):
        assert visits.do_mark_missed_visits(planned.due_at + timedelta(minutes=1)) == [planned.pk]
        assert not Concern.objects.exists()
        monkeypatch.undo()
        assert outreach_actions.do_repair_overdue_concerns() == [hanako.pk]
        assert outreach_actions.do_repair_overdue_concerns() == []  # repaired once
        concern = Concern.objects.get(resident=hanako)
        opened = concern.events.first()
    assert (concern.cause, concern.severity, concern.state) == ("missed_visit", "high", "open")
    assert opened.data.get("visit") == planned.pk


def test_two_concurrent_passes_mark_each_visit_missed_once_and_raise_one_concern_each(committed_db):
    """Two overdue passes on two connections at the same moment, with 20 visits due."""
    import threading

    from django.db import connection, connections

    from outreach.models import Concern

    staff = make_user("tenant_a", "staff-a", User.Role.MUNICIPAL_STAFF)
    volunteer = make_user("tenant_a", "volunteer-a", User.Role.VOLUNTEER)
    with tenant_scope("tenant_a"):
        area = actions.do_create_area(name="大住", kind="district")
        for i in range(20):
            resident = make_resident(area, f"住民{i}")
            Assignment.objects.create(resident=resident, user=volunteer)
            plan(resident, volunteer, planner=staff)
        after = Visit.objects.first().due_at + timedelta(minutes=1)
    results, barrier = [], threading.Barrier(2)

    def one_pass():
        try:
            barrier.wait()
            with tenant_scope("tenant_a"):
                results.append(visits.do_mark_missed_visits(after))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one_pass) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with tenant_scope("tenant_a"):
        ids = sorted(Visit.objects.values_list("pk", flat=True))
        assert sorted(results[0] + results[1]) == ids  # each exactly once across both passes
        assert Concern.objects.filter(cause="missed_visit").count() == 20
    connection.set_schema_to_public()


def test_a_missed_visit_of_a_paused_resident_is_recorded_but_raises_nothing(staff_a, volunteer_a, hanako, planned):
    from outreach.models import Concern

    with tenant_scope("tenant_a"):
        actions.do_set_resident_status(actor=staff_a, resident=hanako, status="paused", reason="入院中")
        actions.do_mark_overdue(now=planned.due_at + timedelta(minutes=1))
        assert Visit.objects.get().state == "missed"
        assert not Concern.objects.filter(resident=hanako).exists()


def test_the_overdue_pass_sets_the_wakeup_to_the_next_visits_window_end(volunteer_a, hanako, staff_a):
    with tenant_scope("tenant_a"):
        first, second = plan(hanako, volunteer_a), plan(hanako, volunteer_a, starts=1)
        actions.do_mark_overdue(now=first.due_at + timedelta(minutes=1))
        # The rhythm's alert (a week away) is later than the second visit's window end.
        assert wakeup_due() == second.due_at


# The volunteer's phone page.
def test_the_phone_page_lists_todays_and_late_visits_first_by_block_then_address(
        client_a, staff_a, volunteer_a, areas_a, hanako):
    with tenant_scope("tenant_a"):
        block2 = actions.do_create_area(name="1班", kind="block", parent=areas_a["assoc"])
        people = {}
        for name, area, address in (("B 3班の二", areas_a["block"], "大住ヶ丘2-1"), ("C 1班", block2, "大住ヶ丘9-9"),
                                    ("D 予定なし", areas_a["block"], "大住ヶ丘0-1"),
                                    ("E 来週", areas_a["block"], "大住ヶ丘0-2")):
            people[name] = make_resident(area, name, address=address, phone="0774-11-2222",
                                         mobile_phone="090-1234-5678")
            Assignment.objects.create(resident=people[name], user=volunteer_a)
        Resident.objects.filter(pk=hanako.pk).update(address="大住ヶ丘1-2-3")
        plan(hanako, volunteer_a, starts=0, ends=2)
        plan(people["B 3班の二"], volunteer_a)
        late = plan(people["C 1班"], volunteer_a)
        Visit.objects.filter(pk=late.pk).update(state="missed", due_at=timezone.now() - timedelta(days=1))
        plan(people["E 来週"], volunteer_a, starts=7)
    client_a.sign_in("volunteer-a")
    page = client_a.get("/watch/my/").content.decode()
    visits_part, rest = page.split('data-testid="my-residents"')
    order = [name for name in re.findall(r"<strong>([^<]+)</strong></a>", visits_part)]
    # 大住ヶ丘連合自治会 › 1班 before › 3班; within 3班 by address.
    assert order == ["C 1班", "山田 花子", "B 3班の二"]
    assert "D 予定なし" in rest and "E 来週" in rest and "山田 花子" not in rest
    assert "https://www.google.com/maps/search/?api=1&amp;query=%E5%A4%A7%E4%BD%8F" in visits_part
    assert 'href="tel:0774-11-2222"' in visits_part and 'href="tel:090-1234-5678"' in visits_part
    assert "Late" in visits_part
    assert 'role="status"' in page and 'class="sticky-notices"' in page


def test_the_phone_page_has_no_tap_to_call_for_residents_without_a_visit_and_no_health_notes(
        client_a, volunteer_a, hanako, staff_a):
    client_a.sign_in("volunteer-a")
    page = client_a.get("/watch/my/").content.decode()
    assert "心不全" not in page and "要介護" not in page
    with tenant_scope("tenant_a"):
        plan(hanako, volunteer_a)
    page = client_a.get("/watch/my/").content.decode()
    assert 'data-testid="my-visits"' in page and "心不全" not in page


def test_in_japanese_the_phone_page_says_kiroku_shimashita_next_to_the_card_and_the_check_in_is_a_button(
        volunteer_a, hanako, staff_a):
    import json

    with tenant_scope("tenant_a"):
        Resident.objects.filter(pk=hanako.pk).update(address="京田辺市大住ヶ丘1-2-3")
        plan(hanako, volunteer_a)
    client = TenantClient(HOST_A, language="ja")
    client.sign_in("volunteer-a")
    page = client.get("/watch/my/").content.decode()
    labels = json.loads(page.split('id="watch-labels" type="application/json">')[1].split("</script>")[0])
    assert labels["recorded"] == "記録しました" and "この端末に保存しました" in labels["kept"]
    card = page.split(f'data-resident-row="{hanako.pk}"')[1].split("</li>\n")[0]
    assert "今日の訪問・遅れている訪問" in page and "定期の見守り訪問" in card and "地図" in card
    # Keyboard alone: the check-in is a real button, its outcome announced in the card's own status line.
    assert f'<button type="button" class="big" data-action="fine" data-testid="fine-{hanako.pk}" ' \
           f'aria-describedby="checkin-status-{hanako.pk}">' in card
    assert f'id="checkin-status-{hanako.pk}" role="status"' in card


# Weekly plans.
def test_the_week_is_shown_per_visitor_and_per_area_with_the_areas_full_path(
        client_a, staff_a, volunteer_a, hanako, planned):
    client_a.sign_in("staff-a")
    week = visits.week_label(today() - timedelta(days=today().weekday()))
    by_visitor = client_a.get("/watch/visits/week/", {"week": week}).content.decode()
    assert "<h2>volunteer-a</h2>" in by_visitor and "山田 花子" in by_visitor
    by_area = client_a.get("/watch/visits/week/", {"week": week, "by": "area"}).content.decode()
    assert "<h2>大住 › 大住ヶ丘連合自治会 › 3班</h2>" in by_area
    next_week = client_a.get("/watch/visits/week/", {"week": visits.week_label(
        today() - timedelta(days=today().weekday()) + timedelta(days=7))}).content.decode()
    assert "山田 花子" not in next_week
    # A volunteer sees their own week only.
    other = make_user("tenant_a", "volunteer-other", User.Role.VOLUNTEER)
    with tenant_scope("tenant_a"):
        Assignment.objects.create(resident=hanako, user=other)
    theirs = TenantClient(HOST_A)
    theirs.sign_in("volunteer-other")
    assert "山田 花子" not in theirs.get("/watch/visits/week/", {"week": week}).content.decode()


# The visit sheet.
def pdf_text(pdf: bytes) -> bytes:
    """The decompressed content streams of a PDF, with its string escapes undone."""
    text = b""
    for stream in re.findall(rb"stream\r?\n(.*?)\s*endstream", pdf, re.S):
        if stream.rstrip().endswith(b"~>"):  # reportlab's /ASCII85Decode /FlateDecode
            stream = zlib.decompress(base64.a85decode(re.sub(rb"\s", b"", stream)[:-2]))
        text += stream
    return re.sub(rb"\\([0-7]{3}|.)", lambda m: bytes([int(m[1], 8)]) if len(m[1]) == 3 else m[1], text, flags=re.S)


def test_the_visit_sheet_pdf_is_an_a4_pdf_with_the_residents_names(client_a, staff_a, volunteer_a, hanako, planned):
    client_a.sign_in("staff-a")
    response = client_a.get("/watch/visits/sheet.pdf", {"visitor": volunteer_a.pk})
    assert response.status_code == HTTPStatus.OK and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert b"/MediaBox [ 0 0 841.8898 595.2756 ]" in response.content  # A4 landscape
    text = pdf_text(response.content)
    for value in ("山田 花子", "3班", "玄関の鍵は隣の佐藤さん"):
        assert value.encode("utf-16-be") in text, value
    assert "心不全".encode("utf-16-be") not in text


def test_the_html_sheet_lists_the_visits_with_boxes_and_the_pdf_without_a_visitor_asks_for_one(
        client_a, staff_a, volunteer_a, planned):
    client_a.sign_in("staff-a")
    chooser = client_a.get("/watch/visits/sheet/").content.decode()
    assert f'<option value="{volunteer_a.pk}">volunteer-a</option>' in chooser
    assert client_a.get("/watch/visits/sheet.pdf")["Location"].startswith("/watch/visits/sheet/")
    sheet = client_a.get("/watch/visits/sheet/", {"visitor": volunteer_a.pk}).content.decode()
    assert "山田 花子" in sheet and "□ Fine" in sheet and "玄関の鍵は隣の佐藤さん" in sheet
    own = TenantClient(HOST_A)
    own.sign_in("volunteer-a")
    assert "山田 花子" in own.get("/watch/visits/sheet/").content.decode()


# Entering the outcomes.
def test_the_outcomes_of_a_sheet_are_logged_in_one_go_and_complete_the_visits(
        client_a, staff_a, volunteer_a, hanako, planned):
    with tenant_scope("tenant_a"):
        shigeru = make_resident(Resident.objects.get(pk=hanako.pk).area, "髙橋 茂")
        Assignment.objects.create(resident=shigeru, user=volunteer_a)
        second = plan(shigeru, volunteer_a)
        untouched = plan(shigeru, volunteer_a, starts=1)
    client_a.sign_in("staff-a")
    page = client_a.get("/watch/visits/outcomes/", {"visitor": volunteer_a.pk})
    assert page.status_code == HTTPStatus.OK and "髙橋 茂" in page.content.decode()
    when = f"{today().isoformat()}T00:01"
    response = client_a.post("/watch/visits/outcomes/", {
        "visitor": volunteer_a.pk, "visit": [planned.pk, second.pk, untouched.pk],
        f"outcome-{planned.pk}": "fine", f"at-{planned.pk}": when, f"note-{planned.pk}": "庭の手入れをしていた",
        f"outcome-{second.pk}": "not_home", f"at-{second.pk}": when, f"note-{second.pk}": "",
        f"outcome-{untouched.pk}": "", f"at-{untouched.pk}": "", f"note-{untouched.pk}": ""})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        states = dict(Visit.objects.values_list("pk", "state"))
        contacts = list(ContactLog.objects.order_by("resident_id").values_list("resident_id", "outcome", "note",
                                                                              "channel", "logged_by_id"))
    assert states == {planned.pk: "done", second.pk: "done", untouched.pk: "planned"}
    assert contacts == [(hanako.pk, "fine", "庭の手入れをしていた", "visit", staff_a.pk),
                        (shigeru.pk, "not_home", "", "visit", staff_a.pk)]


def test_an_invalid_outcome_row_refuses_the_whole_sheet_with_the_message_next_to_the_row(
        client_a, staff_a, volunteer_a, hanako, planned):
    with tenant_scope("tenant_a"):
        other = plan(hanako, volunteer_a, starts=1)
    client_a.sign_in("staff-a")
    when = f"{today().isoformat()}T00:01"
    response = client_a.post("/watch/visits/outcomes/", {
        "visitor": volunteer_a.pk, "visit": [planned.pk, other.pk],
        f"outcome-{planned.pk}": "fine", f"at-{planned.pk}": when, f"note-{planned.pk}": "",
        f"outcome-{other.pk}": "fine", f"at-{other.pk}": when, f"note-{other.pk}": "   "})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    page = response.content.decode()
    row = page[page.index(f'data-visit-row="{other.pk}"'):]
    assert "The visit was planned for" in row.split("</ul>")[0]
    assert "The note is only spaces" in row.split("</ul>")[0]
    with tenant_scope("tenant_a"):
        assert not ContactLog.objects.exists()
        assert set(Visit.objects.values_list("state", flat=True)) == {"planned"}


def test_ending_watch_over_cancels_the_residents_planned_visits(staff_a, volunteer_a, hanako, planned):
    with tenant_scope("tenant_a"):
        actions.do_set_resident_status(actor=staff_a, resident=hanako, status=Resident.Status.ENDED,
                                       reason=Resident.EndReason.MOVED)
        visit = Visit.objects.get()
        assert visits.do_mark_missed_visits(planned.due_at + timedelta(days=1)) == []
    assert visit.state == "cancelled" and visit.closed_at is not None


def test_the_resident_page_links_a_planner_to_a_visit_plan_for_that_resident(client_a, staff_a, hanako):
    client_a.sign_in("staff-a")
    page = client_a.get(f"/watch/residents/{hanako.pk}/").content.decode()
    assert f'href="/watch/visits/?resident={hanako.pk}"' in page
    plan_page = client_a.get(f"/watch/visits/?resident={hanako.pk}")
    assert plan_page.status_code == HTTPStatus.OK and hanako.name in plan_page.content.decode()


@pytest.mark.parametrize("week", ["0001-W01", "9999-W52", "1999-W10", "2026-W99", "W49"])
def test_a_week_out_of_range_or_unreadable_shows_this_week_instead_of_failing(client_a, staff_a, volunteer_a, week):
    client_a.sign_in("staff-a")
    for path in ("/watch/visits/", "/watch/visits/week/", "/watch/visits/sheet/", "/watch/visits/outcomes/",
                 "/outreach/rota/"):
        assert client_a.get(path, {"week": week}).status_code == HTTPStatus.OK, path
    this_week = visits.week_label(visits.parse_week(None))
    assert f"week={this_week}" in client_a.get("/watch/visits/week/", {"week": week}).content.decode()


def test_a_visit_sent_twice_in_the_outcomes_form_is_logged_once(client_a, staff_a, volunteer_a, hanako, planned):
    client_a.sign_in("staff-a")
    at = timezone.localtime().strftime("%Y-%m-%dT%H:%M")
    response = client_a.post("/watch/visits/outcomes/", {"visit": [planned.pk, planned.pk],
                                                         f"outcome-{planned.pk}": "fine", f"at-{planned.pk}": at})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        assert ContactLog.objects.filter(resident=hanako).count() == 1
        assert Visit.objects.get().state == "done"
