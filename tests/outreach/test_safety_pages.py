"""Safety checks (安否確認) on the staff pages: creating with bad input, the second
confirmation of a real event, progress as each viewer may see it, closing and
cancelling, the follow-up visits (once; concerns only for a real event), and nothing
for anyone else."""
from datetime import timedelta

import pytest
from django.utils import timezone

from outreach import safety
from outreach.answers import do_record_answer
from outreach.models import Answer, Ask, Concern, SafetyCheck
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.browser.conftest import browser, journey  # noqa: F401 - shared fixtures
from tests.conftest import HOST_A, HOST_B, TenantClient, make_user
from tests.watch.conftest import attach
from watch.models import Assignment, Resident, Visit


def signed_in(username, language="en", host=HOST_A) -> TenantClient:
    client = TenantClient(host, language=language)
    client.sign_in(username)
    return client


def local(dt) -> str:
    return timezone.localtime(dt).strftime("%Y-%m-%dT%H:%M")


def body(**overrides) -> dict:
    values = {"title": "12月の訓練", "kind": "drill", "question": "安否確認です。ご無事ですか？", "scope": "all",
              "channels": ["line", "sms", "voice"], "silence_minutes": "10, 30, 60",
              "deadline": local(timezone.now() + timedelta(hours=2))}
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def count(model, **filters) -> int:
    with tenant_scope("tenant_a"):
        return model.objects.filter(**filters).count()


def make_check(actor, **overrides) -> SafetyCheck:
    values = {"title": "訓練", "question": "ご無事ですか？", "kind": SafetyCheck.Kind.DRILL, "scope": {},
              "by_household": False, "channels": ["line", "sms"], "silence_minutes": [10, 30, 60],
              "deadline": timezone.now() + timedelta(hours=1)}
    values.update(overrides)
    with tenant_scope("tenant_a"):
        return safety.do_create_check(actor, **values)


def start(actor, check, **kwargs) -> SafetyCheck:
    with tenant_scope("tenant_a"):
        safety.do_start_check(actor, check, **kwargs)
        check.refresh_from_db()
    return check


@pytest.fixture
def kodo_staff(areas_a):
    staff = make_user("tenant_a", "staff-kodo", User.Role.MUNICIPAL_STAFF)
    attach(staff, areas_a["kodo"])
    return staff


# Creating ------------------------------------------------------------------------------------

def test_a_new_check_offers_the_default_question_areas_and_channels(admin_a, areas_a):
    page = signed_in("admin-a", language="ja").get("/outreach/safety/new/").content.decode()
    assert "安否確認です。ご無事ですか？" in page
    assert "大住 › 大住ヶ丘連合自治会 › 3班" in page and 'value="10, 30, 60"' in page
    assert 'name="channels" value="line" checked' in page and 'name="channels" value="voice" checked' in page


def test_bad_input_is_refused_field_by_field_and_nothing_is_saved(admin_a, hanako):
    client = signed_in("admin-a")
    response = client.post("/outreach/safety/new/", body(
        title="  ", question="", kind="exercise", channels=None, silence_minutes="0, ten",
        deadline=local(timezone.now() - timedelta(minutes=5)), scope="areas", min_age="200", household="castle"))
    page = response.content.decode()
    assert response.status_code == 400
    for message in ("Enter a title", "Enter the question residents are asked.", "Choose a drill or a real event.",
                    "Choose at least one channel to ask on.", "Enter up to 6 waits in minutes",
                    "The deadline must be in the future.", "Choose at least one area, or ask the whole municipality.",
                    "Enter an age between 1 and 120", "Choose one of the household types offered."):
        assert message in page, message
    assert count(SafetyCheck) == 0

    ja = signed_in("admin-a", language="ja").post("/outreach/safety/new/", body(deadline="明日", channels=["fax"]))
    assert ja.status_code == 400
    assert "締め切りの日時を入力してください。" in ja.content.decode()
    assert "リストから連絡手段を選んでください。" in ja.content.decode()
    assert count(SafetyCheck) == 0


def test_an_area_the_author_does_not_look_after_is_refused(kodo_staff, areas_a, shigeru, hanako):
    response = signed_in("staff-kodo").post("/outreach/safety/new/", body(scope="areas",
                                                                          areas=[areas_a["osumi"].pk]))
    assert response.status_code == 400
    assert "only areas you look after can be asked" in response.content.decode()
    # A scope with nobody in it says so too.
    empty = signed_in("staff-kodo").post("/outreach/safety/new/", body(needs_evacuation_support="1"))
    assert empty.status_code == 400 and "No resident you look after is in this scope" in empty.content.decode()
    assert count(SafetyCheck) == 0


def test_a_check_is_created_with_its_scope_and_waits_then_asks_for_the_start(admin_a, areas_a, hanako, shigeru):
    response = signed_in("admin-a").post("/outreach/safety/new/", body(
        scope="areas", areas=[areas_a["osumi"].pk], silence_minutes="5、15", by_household="1"))
    assert response.status_code == 302
    with tenant_scope("tenant_a"):
        check = SafetyCheck.objects.get()
    assert response["Location"] == f"/outreach/safety/{check.pk}/start/"
    assert check.state == SafetyCheck.State.DRAFT and check.created_by == admin_a
    assert check.scope["areas"] == [areas_a["osumi"].pk] and check.silence_minutes == [5, 15]
    assert check.by_household and check.channels == ["line", "sms", "voice"]
    page = signed_in("admin-a").get(response["Location"]).content.decode()
    assert "1 resident will be asked now." in page  # 花子 in 大住; 茂 of 興戸 is not in scope
    assert count(Ask) == 0


# Starting ------------------------------------------------------------------------------------

def test_a_real_check_starts_only_after_the_second_confirmation_and_records_who(admin_a, hanako, shigeru):
    check = make_check(admin_a, kind=SafetyCheck.Kind.REAL, title="地震")
    client = signed_in("admin-a")
    page = client.get(f"/outreach/safety/{check.pk}/start/").content.decode()
    assert "I confirm that this is a real event and that 2 residents are asked now." in page

    refused = client.post(f"/outreach/safety/{check.pk}/start/", {})
    assert refused.status_code == 400 and "Confirm that this is a real event" in refused.content.decode()
    with tenant_scope("tenant_a"):
        check.refresh_from_db()
    assert check.state == SafetyCheck.State.DRAFT and check.started_at is None and count(Ask) == 0

    started = client.post(f"/outreach/safety/{check.pk}/start/", {"confirm": "1"})
    assert started.status_code == 302 and started["Location"] == f"/outreach/safety/{check.pk}/"
    with tenant_scope("tenant_a"):
        check.refresh_from_db()
    assert check.state == SafetyCheck.State.OPEN and check.started_at is not None
    assert check.started_by == admin_a and check.confirmed_by == admin_a
    assert count(Ask, safety_check=check) == 2
    # Starting twice asks nobody twice.
    again = client.post(f"/outreach/safety/{check.pk}/start/", {"confirm": "1"})
    assert again.status_code == 400 and count(Ask, safety_check=check) == 2
    detail = client.get(f"/outreach/safety/{check.pk}/").content.decode()
    assert "confirmed by admin-a" in detail


def test_a_drill_starts_without_the_confirmation(admin_a, hanako):
    check = make_check(admin_a)
    response = signed_in("admin-a").post(f"/outreach/safety/{check.pk}/start/", {})
    assert response.status_code == 302
    with tenant_scope("tenant_a"):
        check.refresh_from_db()
    assert check.state == SafetyCheck.State.OPEN and check.confirmed_by is None
    assert count(Ask, safety_check=check) == 1


# Progress ------------------------------------------------------------------------------------

def test_progress_counts_only_the_residents_the_viewer_may_see(admin_a, kodo_staff, hanako, shigeru):
    check = start(admin_a, make_check(admin_a))
    with tenant_scope("tenant_a"):
        do_record_answer(Ask.objects.get(resident=hanako), Answer.NEED_HELP, "line")
        do_record_answer(Ask.objects.get(resident=shigeru), Answer.FINE, "sms")
        admin_view = safety.progress(check, admin_a)
        kodo_view = safety.progress(check, kodo_staff)
    assert (admin_view["totals"]["total"], admin_view["totals"]["safe"], admin_view["totals"]["need_help"]) == (2, 1, 1)
    assert kodo_view["totals"]["total"] == 1 and kodo_view["totals"]["safe"] == 1
    assert [row["area"] for row in kodo_view["areas"]] == ["興戸"]

    page = signed_in("staff-kodo").get(f"/outreach/safety/{check.pk}/").content.decode()
    assert 'data-figure="total">1<' in page and 'data-figure="need_help">0<' in page
    assert "大住" not in page.split('data-testid="areas"')[1]  # no row of the other district
    assert "<progress" in page and "<polyline" in page and "/static/outreach/safety.js" in page
    live = signed_in("staff-kodo").get(f"/outreach/safety/{check.pk}/progress/").json()
    assert live["type"] == "safety.progress" and live["totals"]["answered"] == 1 and live["totals"]["total"] == 1
    # Staff of another district see the check but may not close it.
    refused = signed_in("staff-kodo").post(f"/outreach/safety/{check.pk}/close/", {"confirm": "1"})
    assert refused.status_code == 403


def test_only_those_who_run_checks_see_the_pages_and_another_tenant_gets_404(admin_a, volunteer_a, outsider_b,
                                                                             hanako):
    check = start(admin_a, make_check(admin_a))
    pages = ["", "progress/", "start/", "follow-up/", "report/", "report.csv", "report.xlsx"]
    outsider = signed_in("outsider-b", host=HOST_B)
    for page in pages:
        assert outsider.get(f"/outreach/safety/{check.pk}/{page}").status_code == 404, page
    for page in ("close/", "cancel/"):
        assert outsider.post(f"/outreach/safety/{check.pk}/{page}", {"confirm": "1"}).status_code == 404, page
    assert outsider.post(f"/outreach/safety/{check.pk}/start/", {"confirm": "1"}).status_code == 404
    volunteer = signed_in("volunteer-a")
    assert volunteer.get("/outreach/safety/").status_code == 403
    assert volunteer.get("/outreach/safety/new/").status_code == 403
    for page in pages:
        assert volunteer.get(f"/outreach/safety/{check.pk}/{page}").status_code == 403, page
    assert TenantClient(HOST_A).get(f"/outreach/safety/{check.pk}/").status_code == 302  # to sign in
    with tenant_scope("tenant_a"):
        check.refresh_from_db()
    assert check.state == SafetyCheck.State.OPEN


# Closing and cancelling ------------------------------------------------------------------------

def test_closing_asks_for_confirmation_then_stops_asking_and_keeps_a_late_answer(admin_a, hanako, shigeru):
    check = start(admin_a, make_check(admin_a))
    client = signed_in("admin-a")
    refused = client.post(f"/outreach/safety/{check.pk}/close/", {})
    assert refused.status_code == 400 and "Tick the box to confirm" in refused.content.decode()
    assert client.post(f"/outreach/safety/{check.pk}/close/", {"confirm": "1"}).status_code == 302
    with tenant_scope("tenant_a"):
        check.refresh_from_db()
        assert check.state == SafetyCheck.State.CLOSED and check.closed_by == admin_a
        assert not Ask.objects.filter(safety_check=check, state__in=Ask.OPEN_STATES).exists()
        assert do_record_answer(Ask.objects.get(resident=hanako), Answer.FINE, "link")
    again = client.post(f"/outreach/safety/{check.pk}/cancel/", {"confirm": "1"})
    assert again.status_code == 400 and "no longer open" in again.content.decode()
    assert "Closed" in client.get("/outreach/safety/").content.decode()


def test_a_cancelled_check_sends_nothing_more_and_is_never_followed_up(admin_a, hanako):
    with tenant_scope("tenant_a"):
        Resident.objects.filter(pk=hanako.pk).update(mobile_phone="090-1234-5678")
    check = start(admin_a, make_check(admin_a))
    with tenant_scope("tenant_a"):
        assert Ask.objects.get(safety_check=check).state == Ask.State.QUEUED
    assert signed_in("admin-a").post(f"/outreach/safety/{check.pk}/cancel/", {"confirm": "1"}).status_code == 302
    with tenant_scope("tenant_a"):
        check.refresh_from_db()
        assert check.state == SafetyCheck.State.CANCELLED
        assert Ask.objects.get(safety_check=check).state == Ask.State.CLOSED
        assert safety.do_follow_up_due_checks(timezone.now() + timedelta(days=1)) == []
    assert count(Visit) == 0


# Follow-up -----------------------------------------------------------------------------------

@pytest.fixture
def kodo_case_worker(areas_a):
    worker = make_user("tenant_a", "cw-kodo", User.Role.CASE_WORKER)
    attach(worker, areas_a["kodo"])
    return worker


def test_follow_up_plans_one_visit_per_silent_resident_once_and_no_concern_for_a_drill(
        admin_a, volunteer_a, kodo_case_worker, hanako, shigeru, areas_a):
    from tests.watch.conftest import make_resident

    with tenant_scope("tenant_a"):
        answered = make_resident(areas_a["block"], "答えた 人")
        Assignment.objects.create(resident=answered, user=volunteer_a)
    check = start(admin_a, make_check(admin_a))
    with tenant_scope("tenant_a"):
        do_record_answer(Ask.objects.get(resident=answered), Answer.FINE, "line")
        assert safety.do_follow_up_due_checks(timezone.now()) == []  # the deadline has not passed
        after = check.deadline + timedelta(minutes=1)
        assert safety.do_follow_up_due_checks(after) == [check.pk]
        assert safety.do_follow_up_due_checks(after) == []
        assert safety.do_follow_up_check(check) == {"visits": 0, "concerns": 0, "nobody": 0}
        visits = {v.resident_id: v for v in Visit.objects.all()}
        check.refresh_from_db()
    assert set(visits) == {hanako.pk, shigeru.pk} and check.followed_up_at is not None
    assert visits[hanako.pk].visitor_id == volunteer_a.pk and visits[shigeru.pk].visitor_id == kodo_case_worker.pk
    assert {v.purpose for v in visits.values()} == {Visit.Purpose.FOLLOW_UP}
    assert all(v.planned_by_id == admin_a.pk for v in visits.values())
    assert count(Concern) == 0

    page = signed_in("admin-a").get(f"/outreach/safety/{check.pk}/follow-up/").content.decode()
    assert "Visits of volunteer-a (1)" in page and "Visits of cw-kodo (1)" in page
    assert "山田 花子" in page and "髙橋 茂" in page and "答えた 人" not in page
    one = signed_in("admin-a").get(f"/outreach/safety/{check.pk}/follow-up/?visitor={volunteer_a.pk}")
    assert "山田 花子" in one.content.decode() and "髙橋 茂" not in one.content.decode()


def test_follow_up_of_a_real_event_raises_a_concern_for_each_silent_resident(admin_a, hanako, shigeru):
    check = start(admin_a, make_check(admin_a, kind=SafetyCheck.Kind.REAL), confirmed=True)
    with tenant_scope("tenant_a"):
        do_record_answer(Ask.objects.get(resident=shigeru), Answer.FINE, "sms")
        safety.do_close_check(admin_a, check)
        assert safety.do_follow_up_due_checks() == [check.pk]
        assert safety.do_follow_up_due_checks() == []
        concerns = list(Concern.objects.values_list("resident_id", "cause"))
        visit = Visit.objects.get()
    assert concerns == [(hanako.pk, Concern.Cause.DRILL_NO_RESPONSE)]
    assert visit.resident_id == hanako.pk and visit.starts_on == visit.ends_on  # a real event: today


def test_a_silent_resident_nobody_may_visit_is_listed_for_staff(admin_a, shigeru):
    check = start(admin_a, make_check(admin_a))
    with tenant_scope("tenant_a"):
        result = safety.do_follow_up_check(check)
    assert result == {"visits": 0, "concerns": 0, "nobody": 1} and count(Visit) == 0
    page = signed_in("admin-a").get(f"/outreach/safety/{check.pk}/follow-up/").content.decode()
    assert "Nobody could be given this visit (1): staff arrange it" in page and "髙橋 茂" in page


def test_the_periodic_task_follows_up_each_tenants_due_checks(admin_a, volunteer_a, hanako):
    from outreach.tasks import follow_up_safety_checks

    check = start(admin_a, make_check(admin_a))
    with tenant_scope("tenant_a"):
        safety.do_close_check(admin_a, check)
    assert follow_up_safety_checks.delay("tenant_a").get() == 1
    assert follow_up_safety_checks.delay("tenant_a").get() == 0
    assert count(Visit, resident=hanako, visitor=volunteer_a, purpose=Visit.Purpose.FOLLOW_UP) == 1


# In the browser ------------------------------------------------------------------------------

def _answer_in_a_thread(resident_pk):
    """An answer recorded elsewhere (in a thread of its own: Playwright keeps a loop on this one)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def run():
        try:
            with tenant_scope("tenant_a"):
                do_record_answer(Ask.objects.get(resident_id=resident_pk), Answer.FINE, "line")
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(run).result()


@pytest.mark.browser
def test_the_progress_page_moves_as_answers_arrive_and_the_pages_pass_axe(
        browser, live_server_url, journey):  # noqa: F811 - the fixtures imported above
    from playwright.sync_api import expect

    from tests.browser.test_watch import sign_in
    from tests.watch.conftest import make_resident
    from watch import actions
    from watch.models import Area

    admin = make_user("tenant_a", "safety-admin", User.Role.ADMIN)
    with tenant_scope("tenant_a"):
        area = actions.do_create_area(name="大住", kind=Area.Kind.DISTRICT)
        residents = [make_resident(area, name) for name in ("山田 花子", "髙橋 茂", "佐藤 一")]
    url = live_server_url(HOST_A)
    page = browser.new_context(locale="ja-JP").new_page()
    sign_in(page, url, "safety-admin")
    page.goto(url + "/outreach/safety/new/")
    journey.step(page, "new")
    page.locator("input[name=title]").fill("12月の訓練")
    page.get_by_test_id("safety-form").get_by_role("button").click()
    expect(page.get_by_test_id("count")).to_have_text("3人に今すぐ問いかけます。")
    journey.step(page, "start")
    page.get_by_test_id("start-form").get_by_role("button").click()
    figures = page.get_by_test_id("figures")
    expect(figures.locator('[data-figure="total"]')).to_have_text("3")
    journey.step(page, "progress")
    _answer_in_a_thread(residents[0].pk)
    expect(figures.locator('[data-figure="answered"]')).to_have_text("1", timeout=10_000)
    expect(page.get_by_test_id("bar-text")).to_contain_text("33%")
    _answer_in_a_thread(residents[1].pk)
    expect(figures.locator('[data-figure="safe"]')).to_have_text("2", timeout=10_000)
    assert page.locator("[data-bar]").evaluate("bar => bar.value") == 2
    journey.step(page, "progress-moved")
    with tenant_scope("tenant_a"):
        check = SafetyCheck.objects.get()
    assert check.started_by_id == admin.pk
    page.goto(url + f"/outreach/safety/{check.pk}/report/")
    journey.step(page, "report")
    page.goto(url + f"/outreach/safety/{check.pk}/follow-up/")
    journey.step(page, "follow-up")
    page.context.close()


def test_a_follow_up_cut_short_resumes_without_planning_anyone_twice(admin_a, volunteer_a, kodo_case_worker,
                                                                     hanako, shigeru):
    from watch.visits import do_plan_visit, tenant_today

    check = start(admin_a, make_check(admin_a, kind=SafetyCheck.Kind.REAL), confirmed=True)
    with tenant_scope("tenant_a"):
        # What a run that died after its first resident left behind: 花子's visit and concern.
        do_plan_visit(actor=admin_a, resident=hanako, visitor=volunteer_a, starts_on=tenant_today(),
                      purpose=Visit.Purpose.FOLLOW_UP, note=safety.follow_up_note(check))
        from outreach.actions import do_raise_concern

        do_raise_concern(resident=hanako, cause=Concern.Cause.DRILL_NO_RESPONSE, note=safety.follow_up_note(check))
        assert safety.do_follow_up_check(check) == {"visits": 1, "concerns": 1, "nobody": 0}
        assert sorted(Visit.objects.values_list("resident_id", flat=True)) == sorted([hanako.pk, shigeru.pk])
        assert Concern.objects.filter(cause=Concern.Cause.DRILL_NO_RESPONSE).count() == 2


def test_a_check_held_after_an_earthquake_report_says_when_it_goes_out_and_can_be_started_now(admin_a, hanako):
    with tenant_scope("tenant_a"):
        check = SafetyCheck.objects.create(
            title="地震", question="ご無事ですか？", kind=SafetyCheck.Kind.REAL, state=SafetyCheck.State.HELD,
            trigger=SafetyCheck.Trigger.QUAKE, channels=["line"], silence_minutes=[10],
            send_at=timezone.now() + timedelta(minutes=3), deadline=timezone.now() + timedelta(hours=3))
    client = signed_in("admin-a", language="ja")
    page = client.get(f"/outreach/safety/{check.pk}/start/").content.decode()
    assert "自動で送信されます" in page and "1人に今すぐ問いかけます。" in page
    assert client.post(f"/outreach/safety/{check.pk}/start/", {"confirm": "1"}).status_code == 302
    with tenant_scope("tenant_a"):
        check.refresh_from_db()
    assert check.state == SafetyCheck.State.OPEN and check.started_by_id == admin_a.pk
    assert count(Ask, safety_check=check) == 1


def test_the_list_shows_drills_and_real_events_and_only_managers_get_the_start_link(admin_a, kodo_staff, hanako,
                                                                                   shigeru):
    drill = start(admin_a, make_check(admin_a, title="秋の訓練"))
    real = make_check(admin_a, title="台風", kind=SafetyCheck.Kind.REAL)
    page = signed_in("admin-a", language="ja").get("/outreach/safety/").content.decode()
    assert "秋の訓練" in page and "台風" in page and "訓練" in page and "実際の災害" in page
    assert "未開始" in page and "問いかけ中" in page
    row = page.split(f'data-testid="check-{drill.pk}"')[1].split("</tr>")[0]
    assert "0 / 2" in row  # nobody answered yet, of two asked
    assert 'data-testid="start-link"' in signed_in("admin-a").get(f"/outreach/safety/{real.pk}/").content.decode()
    kodo = signed_in("staff-kodo").get(f"/outreach/safety/{real.pk}/").content.decode()
    assert 'data-testid="start-link"' not in kodo and 'data-testid="cancel"' not in kodo
