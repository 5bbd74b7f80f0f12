"""Staff manage a resident's team, consent, status, and the disaster exception."""
from datetime import timedelta
from http import HTTPStatus

from django.utils import timezone

from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, TenantClient, make_user
from tests.watch.conftest import attach
from watch import actions
from watch.access import residents_for_user
from watch.actions import do_mark_overdue, do_resume_ended_pauses
from watch.models import Assignment, ConsentRecord, DisasterSharing, Resident, Rhythm


def test_staff_add_and_remove_a_volunteer_on_the_team(client_a, staff_a, volunteer_a, shigeru):
    client_a.sign_in("staff-a")
    response = client_a.post(f"/watch/residents/{shigeru.pk}/team/", {"user": volunteer_a.pk})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        assert Assignment.objects.filter(resident=shigeru, user=volunteer_a).exists()
        assert shigeru in residents_for_user(volunteer_a)
    client_a.post(f"/watch/residents/{shigeru.pk}/team/", {"user": volunteer_a.pk, "remove": "1"})
    with tenant_scope("tenant_a"):
        assert not Assignment.objects.filter(resident=shigeru).exists()


def test_team_change_with_a_bad_member_is_400_and_saves_nothing(client_a, staff_a, shigeru):
    client_a.sign_in("staff-a")
    response = client_a.post(f"/watch/residents/{shigeru.pk}/team/", {"user": staff_a.pk})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Only volunteers and case workers can be on a resident&#x27;s team." in response.content.decode()
    response = client_a.post(f"/watch/residents/{shigeru.pk}/team/", {"user": "999999"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    with tenant_scope("tenant_a"):
        assert not Assignment.objects.filter(resident=shigeru).exists()


def test_volunteer_cannot_change_teams_consent_or_status(client_a, volunteer_a, hanako):
    client_a.sign_in("volunteer-a")
    for path, data in [("team", {"user": volunteer_a.pk}), ("consent", {"status": "refused"}),
                       ("status", {"status": "ended", "reason": "moved"})]:
        assert client_a.post(f"/watch/residents/{hanako.pk}/{path}/", data).status_code == HTTPStatus.FORBIDDEN
    with tenant_scope("tenant_a"):
        assert Resident.objects.get(pk=hanako.pk).status == "active"


def test_outsider_of_b_cannot_touch_a_resident_of_a(client_b, outsider_b, hanako):
    client_b.sign_in("outsider-b")
    for path, data in [("team", {"user": 1}), ("consent", {"status": "refused"}), ("status", {"status": "paused"})]:
        response = client_b.post(f"/watch/residents/{hanako.pk}/{path}/", data)
        assert response.status_code == HTTPStatus.NOT_FOUND
    with tenant_scope("tenant_a"):
        assert Resident.objects.get(pk=hanako.pk).consent == "given"


def test_withdrawn_consent_takes_the_resident_off_the_volunteers_list(client_a, staff_a, volunteer_a, hanako):
    client_a.sign_in("staff-a")
    client_a.post(f"/watch/residents/{hanako.pk}/consent/", {"status": "withdrawn", "note": "電話で撤回"})
    with tenant_scope("tenant_a"):
        record = ConsentRecord.objects.filter(resident=hanako).first()
        assert (record.status, record.recorded_by_id, record.note) == ("withdrawn", staff_a.pk, "電話で撤回")
        assert hanako not in residents_for_user(volunteer_a)
    response = client_a.post(f"/watch/residents/{hanako.pk}/consent/", {"status": "maybe"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Choose one of the consent states offered." in response.content.decode()


def test_a_paused_resident_never_goes_overdue_and_resumes_with_a_fresh_clock(client_a, staff_a, hanako):
    client_a.sign_in("staff-a")
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    response = client_a.post(f"/watch/residents/{hanako.pk}/status/",
                             {"status": "paused", "reason": "入院中", "until": tomorrow})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        Rhythm.objects.filter(resident=hanako).update(alert_at=timezone.now() - timedelta(days=1))
        assert do_mark_overdue() == []
        assert do_resume_ended_pauses(timezone.localdate()) == 0
        assert do_resume_ended_pauses(timezone.localdate() + timedelta(days=2)) == 1
        resident = Resident.objects.get(pk=hanako.pk)
        rhythm = Rhythm.objects.get(resident=hanako)
    assert resident.status == "active" and rhythm.state == "ok" and rhythm.alert_at > timezone.now()


def test_status_with_bad_input_is_400_with_a_message(client_a, staff_a, hanako):
    client_a.sign_in("staff-a")
    cases = [({"status": "ended", "reason": "bored", "confirm": "on"}, "Say why watch-over ends."),
             ({"status": "ended", "reason": "moved"}, "Confirm that watch-over ends."),
             ({"status": "paused", "reason": ""}, "Say why watch-over is paused."),
             ({"status": "paused", "reason": "入院", "until": "next week"}, "Enter the date as YYYY-MM-DD."),
             ({"status": "gone"}, "Choose one of the states offered.")]
    for data, message in cases:
        response = client_a.post(f"/watch/residents/{hanako.pk}/status/", data)
        assert response.status_code == HTTPStatus.BAD_REQUEST
        assert message in response.content.decode()
    with tenant_scope("tenant_a"):
        assert Resident.objects.get(pk=hanako.pk).status == "active"


def test_disaster_sharing_is_switched_with_a_reason_and_logged(client_a, staff_a):
    client_a.sign_in("staff-a")
    response = client_a.post("/watch/disaster-sharing/", {"reason": "", "confirm": "yes"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Say why sharing without consent is needed." in response.content.decode()
    client_a.post("/watch/disaster-sharing/", {"reason": "大雨特別警報", "confirm": "yes"})
    assert "大雨特別警報" in client_a.get("/watch/").content.decode()
    response = client_a.post("/watch/disaster-sharing/", {"end": "1"})
    assert response.status_code == HTTPStatus.BAD_REQUEST  # switching off is confirmed too
    assert "Confirm that volunteers and officers will again see only the residents who consented." in (
        response.content.decode())
    with tenant_scope("tenant_a"):
        assert DisasterSharing.objects.get().ended_at is None
    client_a.post("/watch/disaster-sharing/", {"end": "1", "confirm": "yes"})
    with tenant_scope("tenant_a"):
        [sharing] = DisasterSharing.objects.all()
    assert (sharing.reason, sharing.started_by_id, sharing.ended_by_id) == ("大雨特別警報", staff_a.pk, staff_a.pk)


def test_volunteer_cannot_switch_disaster_sharing(client_a, volunteer_a):
    client_a.sign_in("volunteer-a")
    assert client_a.post("/watch/disaster-sharing/", {"reason": "x"}).status_code == HTTPStatus.FORBIDDEN


def test_disaster_sharing_needs_a_confirmation_and_says_so_in_japanese_and_english(client_a, staff_a):
    client_a.sign_in("staff-a")
    response = client_a.post("/watch/disaster-sharing/", {"reason": "大雨特別警報"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "may be shown without their consent" in response.content.decode()
    ja = TenantClient(HOST_A, language="ja")
    ja.sign_in("staff-a")
    response = ja.post("/watch/disaster-sharing/", {"reason": "大雨特別警報"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "本人の同意なしに表示することを確認してください" in response.content.decode()
    with tenant_scope("tenant_a"):
        assert not DisasterSharing.objects.exists()


def test_only_those_who_oversee_the_whole_tenant_can_switch_disaster_sharing(client_a, staff_a, areas_a):
    """Staff or a case worker attached to one district cannot switch what applies to all."""
    district_staff = make_user("tenant_a", "district-staff", User.Role.MUNICIPAL_STAFF)
    case_worker = make_user("tenant_a", "case-worker", User.Role.CASE_WORKER)
    attach(district_staff, areas_a["osumi"])
    attach(case_worker, areas_a["osumi"])
    for username in ("district-staff", "case-worker"):
        client = TenantClient(HOST_A)
        client.sign_in(username)
        assert "disaster-sharing" not in client.get("/watch/").content.decode()
        response = client.post("/watch/disaster-sharing/", {"reason": "大雨特別警報", "confirm": "yes"})
        assert response.status_code == HTTPStatus.FORBIDDEN
    with tenant_scope("tenant_a"):
        assert not DisasterSharing.objects.exists()
    client_a.sign_in("staff-a")  # attached to no area: the whole municipality
    assert client_a.post("/watch/disaster-sharing/", {"reason": "大雨特別警報", "confirm": "yes"}).status_code == 302


def test_while_disaster_sharing_is_on_every_page_shows_the_banner(client_a, staff_a, volunteer_a, hanako):
    with tenant_scope("tenant_a"):
        actions.do_start_disaster_sharing(actor=staff_a, reason="震度6弱 避難指示", confirmed=True)
    volunteer = TenantClient(HOST_A, language="ja")
    volunteer.sign_in("volunteer-a")
    for path in ("/watch/my/", "/outreach/", "/notifications/", f"/watch/residents/{hanako.pk}/"):
        page = volunteer.get(path).content.decode()
        assert 'data-testid="disaster"' in page and "震度6弱 避難指示" in page, path
    client_a.sign_in("staff-a")
    assert "Disaster sharing is on since" in client_a.get("/notifications/preferences/").content.decode()


def test_another_tenants_pages_show_no_banner_of_this_tenants_disaster_sharing(client_b, staff_a, outsider_b):
    with tenant_scope("tenant_a"):
        actions.do_start_disaster_sharing(actor=staff_a, reason="震度6弱 避難指示", confirmed=True)
    client_b.sign_in("outsider-b")
    assert 'data-testid="disaster"' not in client_b.get("/watch/").content.decode()
