"""Escalation policies and the duty rota in the browser: who may edit and read them, bad
input refused next to the field, the reach check agreeing with real escalation, and the
rota's days and gaps in the tenant's time zone."""
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from outreach import actions, policies
from outreach.models import Concern, ConcernEvent, DutyShift, EscalationPolicy, EscalationStep, Target
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tenants.models import Tenant
from tests.conftest import HOST_A, HOST_B, TenantClient, make_user
from tests.watch.conftest import attach, make_resident
from watch.models import Area, Resident

TOKYO = ZoneInfo("Asia/Tokyo")
WEEK = "2026-W50"  # Monday 7 December 2026 to Sunday 13 December


def signed_in(username, language="ja", host=HOST_A) -> TenantClient:
    client = TenantClient(host, language=language)
    client.sign_in(username)
    return client


def tokyo(day, hour, minute=0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=TOKYO)


def policy_body(**overrides) -> dict:
    body = {"name": "大住の手順", "severity": "", "area": "", "repeat_limit": "1", "is_active": "1", "rows": "2",
            "step_1_targets": ["case_workers"], "step_1_wait": "20",
            "step_2_targets": ["area_staff"], "step_2_wait": "30"}
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def count(model) -> int:
    with tenant_scope("tenant_a"):
        return model.objects.count()


# Who may see and change them ----------------------------------------------------------------

def test_the_policy_list_explains_the_built_in_policies_in_words(admin_a, areas_a):
    page = signed_in("admin-a").get("/outreach/policies/").content.decode()
    assert "標準のエスカレーション" in page and "緊急時の標準エスカレーション" in page
    assert "担当の見守りボランティアに通知し、15分待つ" in page and "担当の相談員に通知し、30分待つ" in page
    assert "担当の相談員・地域の担当職員に同時に通知し、10分待つ" in page
    assert "大住 › 大住ヶ丘連合自治会 › 3班" in page  # areas with their full path


def test_municipal_staff_of_an_area_read_the_policies_and_rota_but_change_nothing(areas_a, admin_a):
    staff = make_user("tenant_a", "staff-kodo", User.Role.MUNICIPAL_STAFF)
    attach(staff, areas_a["kodo"])
    client = signed_in("staff-kodo")
    assert client.get("/outreach/policies/").status_code == 200
    rota = client.get(f"/outreach/rota/?week={WEEK}")
    assert rota.status_code == 200 and "add-shift" not in rota.content.decode()
    assert client.get("/outreach/policies/new/").status_code == 403
    assert client.post("/outreach/policies/new/", policy_body()).status_code == 403
    assert client.post("/outreach/rota/", {"user": admin_a.pk, "day": "2026-12-08", "starts": "09:00",
                                           "ends": "17:00"}).status_code == 403
    assert count(EscalationPolicy) == 0 and count(DutyShift) == 0


@pytest.mark.parametrize("path", ["/outreach/policies/", "/outreach/rota/", "/outreach/policies/new/"])
def test_volunteers_and_case_workers_may_not_see_the_policies_or_the_rota(volunteer_a, path):
    make_user("tenant_a", "cw", User.Role.CASE_WORKER)
    assert signed_in("volunteer-a").get(path).status_code == 403
    assert signed_in("cw").get(path).status_code == 403


def test_the_outsider_of_tenant_b_gets_nothing_of_a_s_policies_or_shifts(admin_a, outsider_b, areas_a):
    with tenant_scope("tenant_a"):
        policy = EscalationPolicy.objects.create(name="A市の手順")
        EscalationStep.objects.create(policy=policy, order=1, target=Target.AREA_STAFF)
        shift = DutyShift.objects.create(user=admin_a, starts_at=tokyo(8, 9), ends_at=tokyo(8, 17))
    at_home = signed_in("outsider-b", host=HOST_B)
    for path in (f"/outreach/policies/{policy.pk}/", f"/outreach/rota/{shift.pk}/remove/"):
        assert at_home.get(path).status_code == 404
        assert at_home.post(path, {"confirm": "1"}).status_code == 404
    page = at_home.get(f"/outreach/rota/?week={WEEK}").content.decode()
    assert "admin-a" not in page
    assert "A市の手順" not in at_home.get("/outreach/policies/").content.decode()
    cookie_on_a = TenantClient(HOST_A)
    cookie_on_a.cookies = at_home.cookies
    assert cookie_on_a.get("/outreach/policies/").status_code == 302
    with tenant_scope("tenant_a"):
        assert EscalationPolicy.objects.get(pk=policy.pk).steps.count() == 1 and DutyShift.objects.count() == 1


# Saving a policy ----------------------------------------------------------------------------

def test_an_administrator_saves_a_policy_whose_steps_escalation_then_follows(admin_a, areas_a, staff_a, hanako):
    body = policy_body(area=str(areas_a["assoc"].pk), step_2_users=[str(staff_a.pk)], repeat_limit="2")
    response = signed_in("admin-a").post("/outreach/policies/new/", body)
    assert response.status_code == 302
    with tenant_scope("tenant_a"):
        policy = EscalationPolicy.objects.get()
        assert (policy.name, policy.area, policy.repeat_limit, policy.is_active) == (
            "大住の手順", areas_a["assoc"], 2, True)
        assert actions.policy_for(hanako, "high") == ("大住の手順", [
            {"targets": ["case_workers"], "users": [], "wait_minutes": 20},
            {"targets": ["area_staff", "user"], "users": [staff_a.pk], "wait_minutes": 30}], 2)
    page = signed_in("admin-a").get("/outreach/policies/").content.decode()
    assert "地域の担当職員・staff-aに同時に通知し、30分待つ" in page


def test_the_list_shows_which_policy_applies_to_each_area_by_the_rule_of_escalation(admin_a, areas_a):
    with tenant_scope("tenant_a"):
        wide = EscalationPolicy.objects.create(name="市全体")
        EscalationStep.objects.create(policy=wide, order=1, target=Target.AREA_STAFF)
        near = EscalationPolicy.objects.create(name="大住ヶ丘の高", severity="high", area=areas_a["assoc"])
        EscalationStep.objects.create(policy=near, order=1, target=Target.AREA_STAFF)
    page = signed_in("admin-a").get("/outreach/policies/").content.decode()
    table = page[page.index('data-testid="applies"'):]
    rows = {row.split("</th>")[0].split(">")[-1]: row for row in table.split("<tr>")[2:]}
    assert rows["大住 › 大住ヶ丘連合自治会 › 3班"].count("大住ヶ丘の高") == 1
    block = rows["大住 › 大住ヶ丘連合自治会 › 3班"]
    assert "市全体" in block and "緊急時の標準" in block
    assert "大住ヶ丘の高" not in rows["興戸"] and rows["興戸"].count("市全体") == 3


def test_a_step_can_be_added_without_javascript_and_nothing_is_saved_meanwhile(admin_a, areas_a):
    response = signed_in("admin-a").post("/outreach/policies/new/", policy_body(add_step="1"))
    assert response.status_code == 200
    assert response.content.decode().count('data-testid="step-row"') == 3
    assert count(EscalationPolicy) == 0


@pytest.mark.parametrize(("overrides", "field_message"), [
    ({"name": "  "}, "名前を付けてください"),
    ({"step_1_targets": None, "step_2_targets": None}, "手順が少なくとも一つ必要です"),
    ({"step_1_wait": "-5"}, "0〜1440分の間で待ってください"),
    ({"repeat_limit": "0"}, "1〜10回の間で繰り返してください"),
    ({"severity": "extreme"}, "表示されている重要度から選んでください"),
])
def test_bad_policy_input_is_refused_next_to_the_field_and_nothing_is_saved(admin_a, areas_a, overrides,
                                                                           field_message):
    response = signed_in("admin-a").post("/outreach/policies/new/", policy_body(**overrides))
    assert response.status_code == 400
    page = response.content.decode()
    assert field_message in page and 'class="errorlist"' in page
    assert count(EscalationPolicy) == 0 and count(EscalationStep) == 0


def test_a_second_active_policy_for_the_same_area_and_severity_is_refused(admin_a, areas_a):
    client = signed_in("admin-a")
    assert client.post("/outreach/policies/new/", policy_body()).status_code == 302
    response = client.post("/outreach/policies/new/", policy_body(name="別の名前"))
    assert response.status_code == 400 and "同じ地区と重要度の有効な手順がすでにあります" in response.content.decode()
    assert count(EscalationPolicy) == 1


def test_an_area_or_person_of_another_tenant_in_the_policy_form_is_404(admin_a, areas_a, outsider_b, resident_b):
    with tenant_scope("tenant_b"):
        area_b = Area.objects.get()
    with tenant_scope("tenant_a"):
        not_in_a = max([area_b.pk, *Area.objects.values_list("pk", flat=True)]) + 1000
    client = signed_in("admin-a")
    assert client.post("/outreach/policies/new/", policy_body(area=str(not_in_a))).status_code == 404
    missing_user = max(outsider_b.pk, admin_a.pk) + 1000
    assert client.post("/outreach/policies/new/",
                       policy_body(step_1_users=[str(missing_user)])).status_code == 404
    assert client.get("/outreach/policies/999999/").status_code == 404
    assert count(EscalationPolicy) == 0


def test_deactivating_a_policy_asks_for_confirmation(admin_a, areas_a):
    client = signed_in("admin-a")
    client.post("/outreach/policies/new/", policy_body())
    with tenant_scope("tenant_a"):
        policy = EscalationPolicy.objects.get()
    unconfirmed = client.post(f"/outreach/policies/{policy.pk}/", policy_body(is_active=None))
    assert unconfirmed.status_code == 400 and "確認のチェックを入れてください" in unconfirmed.content.decode()
    with tenant_scope("tenant_a"):
        assert EscalationPolicy.objects.get().is_active
    confirmed = client.post(f"/outreach/policies/{policy.pk}/", policy_body(is_active=None, confirm_deactivate="1"))
    assert confirmed.status_code == 302
    with tenant_scope("tenant_a"):
        assert not EscalationPolicy.objects.get().is_active
        assert actions.policy_for(Resident(area=areas_a["block"]), "high")[0] == actions.DEFAULT_POLICY_NAME


# The reach check ----------------------------------------------------------------------------

def test_the_reach_warning_names_the_area_and_agrees_with_real_escalation(admin_a, areas_a,
                                                                         django_capture_on_commit_callbacks):
    case_worker = make_user("tenant_a", "cw-kodo", User.Role.CASE_WORKER)
    attach(case_worker, areas_a["kodo"])  # none for 大住 and below
    client = signed_in("admin-a")
    response = client.post("/outreach/policies/new/", policy_body(rows="1"), follow=True)
    page = response.content.decode()
    warning = ("手順1「担当の相談員」: 大住、大住 › 大住ヶ丘連合自治会、大住 › 大住ヶ丘連合自治会 › 3班 "
               "には届く人がいません")
    assert warning in page
    with tenant_scope("tenant_a"):
        [unreached] = policies.warnings_for(EscalationPolicy.objects.get())
    assert unreached.step == 1 and unreached.areas == [areas_a["osumi"], areas_a["assoc"], areas_a["block"]]
    assert warning in client.get("/outreach/policies/").content.decode()  # and on the list
    with tenant_scope("tenant_a"):
        in_block = make_resident(areas_a["block"], "北 一郎")
        in_kodo = make_resident(areas_a["kodo"], "南 二郎")
    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        unreached, _ = actions.do_raise_concern(resident=in_block, cause="manual")
        reached, _ = actions.do_raise_concern(resident=in_kodo, cause="manual")
    with tenant_scope("tenant_a"):
        skipped = ConcernEvent.objects.get(concern=unreached, kind=ConcernEvent.Kind.SKIPPED)
        assert skipped.data["step"] == 1
        assert not ConcernEvent.objects.filter(concern=unreached, kind=ConcernEvent.Kind.NOTIFIED).exists()
        notified = ConcernEvent.objects.get(concern=reached, kind=ConcernEvent.Kind.NOTIFIED)
        assert notified.data["recipients"] == [case_worker.pk]


def test_a_step_that_reaches_nobody_anywhere_is_saved_and_says_so(admin_a, areas_a,
                                                                 django_capture_on_commit_callbacks):
    response = signed_in("admin-a").post("/outreach/policies/new/", policy_body(
        rows="1", step_1_targets=["on_duty"]), follow=True)
    assert "手順1「当番の人」: どの地区にも届く人がいません" in response.content.decode()
    assert count(EscalationPolicy) == 1
    with tenant_scope("tenant_a"):
        resident = make_resident(areas_a["block"], "北 一郎")
    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        concern, _ = actions.do_raise_concern(resident=resident, cause="manual")
    with tenant_scope("tenant_a"):
        assert Concern.objects.get(pk=concern.pk).reached_nobody


def test_who_a_step_reaches_is_whom_escalation_notifies_for_every_target_and_area(areas_a, admin_a, staff_a,
                                                                                  volunteer_a):
    """The area-level rule against recipients_for, for residents of each area with no team:
    the same people where the resident did not consent, and never more where they did
    (an officer who sees only those who consented is not counted on)."""
    cw = make_user("tenant_a", "cw-assoc", User.Role.CASE_WORKER)
    attach(cw, areas_a["assoc"])
    block_staff = make_user("tenant_a", "staff-block", User.Role.MUNICIPAL_STAFF)
    attach(block_staff, areas_a["block"])
    kodo_staff = make_user("tenant_a", "staff-kodo", User.Role.MUNICIPAL_STAFF)
    attach(kodo_staff, areas_a["kodo"])
    officer = make_user("tenant_a", "officer", User.Role.ASSOCIATION_OFFICER)
    attach(officer, areas_a["osumi"])
    gone = make_user("tenant_a", "gone", User.Role.MUNICIPAL_STAFF, is_active=False)
    now = timezone.now()
    with tenant_scope("tenant_a"):
        for person in (cw, kodo_staff, officer, volunteer_a, gone):
            DutyShift.objects.create(user=person, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=1))
        DutyShift.objects.create(user=block_staff, starts_at=now + timedelta(hours=1), ends_at=now + timedelta(hours=2))
        named = [cw.pk, kodo_staff.pk, officer.pk, volunteer_a.pk, gone.pk]
        steps = [{"targets": [target], "users": named, "wait_minutes": 5} for target in Target.values]
        steps.append({"targets": list(Target.values), "users": [block_staff.pk], "wait_minutes": 5})
        reach = policies.Reach(now, now)
        checked = 0
        for name, area in areas_a.items():
            refused = make_resident(area, f"同意なし {name}", consent="refused", share=False)
            given = make_resident(area, f"同意あり {name}")
            for step in steps:
                reached = [p.pk for p in policies.who_a_step_reaches(area, step, reach)]
                assert reached == [p.pk for p in actions.recipients_for(Concern(resident=refused), step)], (name, step)
                assert set(reached) <= {p.pk for p in actions.recipients_for(Concern(resident=given), step)}
                checked += bool(reached)
        assert checked > 10  # most steps reach someone somewhere: the comparison is not of empty lists
        assert [p.pk for p in policies.who_a_step_reaches(areas_a["block"], steps[3])] == [cw.pk]


def test_the_policy_list_asks_as_many_queries_for_many_areas_as_for_few(admin_a, areas_a, staff_a):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from watch.actions import do_create_area

    client = signed_in("admin-a")
    client.post("/outreach/policies/new/", policy_body(step_2_users=[str(staff_a.pk)], step_2_targets=["on_duty"]))
    with CaptureQueriesContext(connection) as few:
        assert client.get("/outreach/policies/").status_code == 200
    with tenant_scope("tenant_a"):
        for number in range(20):
            do_create_area(name=f"{number + 10}班", kind=Area.Kind.BLOCK, parent=areas_a["assoc"])
    with CaptureQueriesContext(connection) as many:
        page = client.get("/outreach/policies/").content.decode()
    assert "大住 › 大住ヶ丘連合自治会 › 29班" in page
    assert len(many) == len(few)


def test_a_step_of_the_residents_own_volunteers_alone_is_not_warned_about(admin_a, areas_a):
    response = signed_in("admin-a").post("/outreach/policies/new/", policy_body(
        rows="1", step_1_targets=["assigned_volunteers"]), follow=True)
    assert "届く人がいません" not in response.content.decode().split('data-testid="policies"')[0]


# The rota -----------------------------------------------------------------------------------

def rota_page(client, week=WEEK) -> str:
    return client.get(f"/outreach/rota/?week={week}").content.decode()


def test_the_rota_lists_each_shift_per_day_in_the_tenant_time_zone(admin_a, staff_a):
    with tenant_scope("tenant_a"):
        DutyShift.objects.create(user=staff_a, starts_at=tokyo(8, 18), ends_at=tokyo(9, 9))
    page = rota_page(signed_in("admin-a"))
    tuesday = page[page.index('data-date="2026-12-08"'):page.index('data-date="2026-12-09"')]
    wednesday = page[page.index('data-date="2026-12-09"'):page.index('data-date="2026-12-10"')]
    assert "12/8（火）" in tuesday and "18:00–翌9:00 staff-a" in tuesday
    assert "12/8（火）18:00–9:00 staff-a" in wednesday
    Tenant.objects.filter(schema_name="tenant_a").update(time_zone="UTC")
    page = rota_page(signed_in("admin-a"))
    assert "9:00–翌0:00 staff-a" in page  # 18:00 in Tokyo is 9:00 UTC; 9:00 the next day is 0:00 UTC
    assert "UTC" in page


def test_gaps_are_shown_across_midnight_and_across_the_week_boundary(admin_a, staff_a):
    with tenant_scope("tenant_a"):
        DutyShift.objects.create(user=admin_a, starts_at=tokyo(6, 18), ends_at=tokyo(7, 9))  # from last Sunday
        DutyShift.objects.create(user=staff_a, starts_at=tokyo(7, 9), ends_at=tokyo(12, 18))
        DutyShift.objects.create(user=admin_a, starts_at=tokyo(13, 9), ends_at=tokyo(14, 9))  # into next week
        DutyShift.objects.create(user=staff_a, starts_at=tokyo(13, 8), ends_at=tokyo(13, 12))  # overlapping
    page = rota_page(signed_in("admin-a"))
    gaps = page[page.index('data-testid="gaps"'):].split("</ul>")[0]
    assert gaps.count("<li>") == 1
    assert "12/12（土）18:00–翌8:00 は当番がいません" in gaps


def test_an_empty_week_is_one_gap_from_monday_to_monday(admin_a):
    page = rota_page(signed_in("admin-a"))
    assert "12/7（月）0:00–12/14（月）0:00 は当番がいません" in page


def test_a_night_shift_is_added_ending_the_next_morning(admin_a, staff_a):
    response = signed_in("admin-a").post("/outreach/rota/", {
        "user": staff_a.pk, "day": "2026-12-12", "starts": "18:00", "ends": "09:00", "next_day": "1"})
    assert response.status_code == 302 and response["Location"].endswith(f"?week={WEEK}")
    with tenant_scope("tenant_a"):
        shift = DutyShift.objects.get()
    assert (shift.user, shift.starts_at, shift.ends_at) == (staff_a, tokyo(12, 18), tokyo(13, 9))


@pytest.mark.parametrize(("body", "message"), [
    ({"starts": "18:00", "ends": "09:00"}, "当番の終了は開始より後にしてください"),
    ({"starts": "10:00", "ends": "12:00"}, "はその時間すでに当番です"),
    ({"day": "来週"}, "日付で入力してください"),
    ({"starts": "夕方"}, "時刻で入力してください"),
    ({"user": ""}, "当番の人を選んでください"),
    ({"day": "9999-12-31"}, "2000年から2100年までの日付を入力してください"),
    ({"day": "0001-01-01", "starts": "x"}, "2000年から2100年までの日付を入力してください"),
])
def test_bad_shift_input_is_refused_next_to_the_field_and_nothing_is_saved(admin_a, staff_a, body, message):
    with tenant_scope("tenant_a"):
        DutyShift.objects.create(user=staff_a, starts_at=tokyo(8, 9), ends_at=tokyo(8, 17))
    full = {"user": staff_a.pk, "day": "2026-12-08", "starts": "09:00", "ends": "17:00", **body}
    response = signed_in("admin-a").post("/outreach/rota/", full)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert count(DutyShift) == 1


def test_a_person_who_cannot_act_on_concerns_or_of_another_tenant_cannot_be_put_on_duty(admin_a, volunteer_a,
                                                                                       outsider_b):
    client = signed_in("admin-a")
    body = {"day": "2026-12-08", "starts": "09:00", "ends": "17:00"}
    refused = client.post("/outreach/rota/", {**body, "user": volunteer_a.pk})
    assert refused.status_code == 400 and "示された人から選んでください" in refused.content.decode()
    missing = max(admin_a.pk, volunteer_a.pk, outsider_b.pk) + 1000
    assert client.post("/outreach/rota/", {**body, "user": missing}).status_code == 404
    assert count(DutyShift) == 0


def test_removing_a_shift_asks_for_confirmation(admin_a, staff_a):
    with tenant_scope("tenant_a"):
        shift = DutyShift.objects.create(user=staff_a, starts_at=tokyo(8, 9), ends_at=tokyo(8, 17))
    client = signed_in("admin-a")
    confirm_page = client.get(f"/outreach/rota/{shift.pk}/remove/").content.decode()
    assert "staff-a" in confirm_page and "12/8（火）9:00–17:00" in confirm_page
    unconfirmed = client.post(f"/outreach/rota/{shift.pk}/remove/")
    assert unconfirmed.status_code == 400 and "確認のチェックを入れてください" in unconfirmed.content.decode()
    assert count(DutyShift) == 1
    assert client.post(f"/outreach/rota/{shift.pk}/remove/", {"confirm": "1"}).status_code == 302
    assert count(DutyShift) == 0


def test_copying_the_previous_week_moves_each_shift_seven_days_and_skips_overlaps(admin_a, staff_a):
    with tenant_scope("tenant_a"):
        DutyShift.objects.create(user=staff_a, starts_at=tokyo(5, 18), ends_at=tokyo(6, 9))  # Saturday night
        DutyShift.objects.create(user=admin_a, starts_at=tokyo(1, 9), ends_at=tokyo(1, 17))
        DutyShift.objects.create(user=admin_a, starts_at=tokyo(8, 12), ends_at=tokyo(8, 13))  # already there
    response = signed_in("admin-a").post("/outreach/rota/copy/", {"week": WEEK}, follow=True)
    assert "1件の当番を前の週から写しました" in response.content.decode()
    with tenant_scope("tenant_a"):
        copied = DutyShift.objects.filter(starts_at__gte=tokyo(7, 0)).exclude(user=admin_a).get()
        assert DutyShift.objects.count() == 4
    assert (copied.starts_at, copied.ends_at) == (tokyo(12, 18), tokyo(13, 9))


def test_the_rota_and_policies_work_in_english_too(admin_a, staff_a):
    with tenant_scope("tenant_a"):
        DutyShift.objects.create(user=staff_a, starts_at=tokyo(8, 18), ends_at=tokyo(9, 9))
    client = signed_in("admin-a", language="en")
    page = rota_page(client)
    assert "18:00–next day 9:00 staff-a" in page and "12/7 (Mon) 0:00–next day 18:00: nobody is on duty" in page
    assert "then wait 15 min" in client.get("/outreach/policies/").content.decode()
