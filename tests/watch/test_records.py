"""Staff add and edit residents in the browser: the record, its area, pause and end,
rhythms, emergency contacts, devices and their labels, look-alike warnings, history."""
import re
from datetime import date, timedelta
from http import HTTPStatus

import pytest
from django.utils import timezone, translation

from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, TenantClient, make_user
from tests.watch.conftest import attach
from watch import actions, records
from watch.models import Device, EmergencyContact, Resident, ResidentChange, Rhythm


@pytest.fixture
def ja(tenant_a):
    return TenantClient(HOST_A, language="ja")


@pytest.fixture
def staff_ja(ja, staff_a):
    ja.sign_in("staff-a")
    return ja


def field_errors(response, field: str) -> str:
    """The text of the messages rendered next to `field` (Django's field group)."""
    match = re.search(rf'<ul class="errorlist" id="id_{field}_error">(.*?)</ul>', response.content.decode(), re.S)
    return match.group(1) if match else ""


def page_text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


# Adding ---------------------------------------------------------------------------------
def test_staff_add_a_resident_with_every_field_and_it_is_in_the_history(staff_ja, staff_a, areas_a):
    response = staff_ja.post("/watch/residents/new/", {
        "area": areas_a["block"].pk, "name": " 佐藤　一郎 ", "furigana": "サトウ イチロウ", "external_id": "K-001",
        "gender": "male", "date_of_birth": "1940-04-01", "postal_code": "610-0351", "address": "大住ヶ丘2-3",
        "phone": "０７７４-６２-１２３４", "mobile_phone": "", "household": "elderly_only",
        "needs_evacuation_support": "on", "risk": "high", "visit_notes": "犬がいます", "care_level": "要支援2",
        "health_notes": "糖尿病"})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        resident = Resident.objects.get(external_id="K-001")
        assert (resident.name, resident.phone, resident.area_id, resident.date_of_birth) == (
            "佐藤 一郎", "0774-62-1234", areas_a["block"].pk, date(1940, 4, 1))
        assert (resident.needs_evacuation_support, resident.care_level, resident.health_notes) == (
            True, "要支援2", "糖尿病")
        change = resident.changes.get()
        assert (change.kind, change.actor_id) == (ResidentChange.Kind.CREATED, staff_a.pk)
        assert resident.rhythms.count() == 1
    page = staff_ja.get(response["Location"])
    assert "登録" in page_text(page)
    assert "大住 › 大住ヶ丘連合自治会 › 3班" in page_text(page)


def test_the_add_form_offers_only_the_areas_the_person_looks_after_with_full_names(staff_ja, staff_a, areas_a):
    attach(staff_a, areas_a["assoc"])
    html = staff_ja.get("/watch/residents/new/").content.decode()
    assert "大住 › 大住ヶ丘連合自治会 › 3班" in html
    assert "興戸" not in html
    with translation.override("ja"):
        assert f"<title>{translation.gettext('Add a resident')} ·" in html


def test_a_whitespace_only_name_is_refused_next_to_the_field_and_nothing_is_saved(staff_ja, areas_a):
    response = staff_ja.post("/watch/residents/new/", {
        "area": areas_a["block"].pk, "name": "　 ", "gender": "unknown", "household": "living_alone", "risk": "medium",
        "visit_notes": "   "})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "この項目は必須です。" in field_errors(response, "name")
    with tenant_scope("tenant_a"):
        assert not Resident.objects.exists()


def test_notes_of_spaces_only_are_refused(staff_ja, areas_a):
    response = staff_ja.post("/watch/residents/new/", {
        "area": areas_a["block"].pk, "name": "佐藤 一郎", "gender": "unknown", "household": "living_alone",
        "risk": "medium", "visit_notes": " \n "})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "空白だけです" in field_errors(response, "visit_notes")
    with tenant_scope("tenant_a"):
        assert not Resident.objects.exists()


def test_an_area_outside_the_persons_areas_or_of_another_tenant_is_404(staff_ja, staff_a, areas_a, resident_b):
    attach(staff_a, areas_a["kodo"])
    with tenant_scope("tenant_b"):
        area_b = resident_b.area_id
    for area in (areas_a["block"].pk, area_b, 999999):
        response = staff_ja.post("/watch/residents/new/", {
            "area": area, "name": "佐藤 一郎", "gender": "unknown", "household": "living_alone", "risk": "medium"})
        assert response.status_code == HTTPStatus.NOT_FOUND
    with tenant_scope("tenant_a"):
        assert not Resident.objects.exists()


def test_volunteers_and_officers_cannot_add_or_edit(client_a, volunteer_a, hanako, areas_a):
    officer = make_user("tenant_a", "officer-a", User.Role.ASSOCIATION_OFFICER)
    attach(officer, areas_a["osumi"])
    for username in ("volunteer-a", "officer-a"):
        client = TenantClient(HOST_A)
        client.sign_in(username)
        assert client.get("/watch/residents/new/").status_code == HTTPStatus.FORBIDDEN
        for path in ("edit", "move", "pause", "end", "rhythms/new", "emergency-contacts/new", "devices/new"):
            assert client.get(f"/watch/residents/{hanako.pk}/{path}/").status_code == HTTPStatus.FORBIDDEN, path
        response = client.post(f"/watch/residents/{hanako.pk}/edit/", {"name": "書き換え"})
        assert response.status_code == HTTPStatus.FORBIDDEN
    with tenant_scope("tenant_a"):
        assert Resident.objects.get(pk=hanako.pk).name == "山田 花子"


# Look-alikes -------------------------------------------------------------------------------
def test_adding_someone_who_looks_registered_warns_with_a_link_and_saves_only_when_ticked(staff_ja, hanako,
                                                                                         areas_a):
    with tenant_scope("tenant_a"):
        Resident.objects.filter(pk=hanako.pk).update(date_of_birth=date(1938, 5, 5))
    data = {"area": areas_a["kodo"].pk, "name": "山田花子", "furigana": "やまだ はなこ", "date_of_birth": "1938-05-05",
            "gender": "female", "household": "living_alone", "risk": "medium"}
    warned = staff_ja.post("/watch/residents/new/", data)
    assert warned.status_code == HTTPStatus.BAD_REQUEST
    assert f'href="/watch/residents/{hanako.pk}/"' in warned.content.decode()
    assert "すでに登録されています" in page_text(warned)
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 1
    saved = staff_ja.post("/watch/residents/new/", {**data, "register_anyway": "on"})
    assert saved.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 2


def test_a_look_alike_the_person_may_not_see_is_counted_not_named(client_a, areas_a, hanako):
    staff = make_user("tenant_a", "staff-kodo", User.Role.MUNICIPAL_STAFF)
    attach(staff, areas_a["kodo"])
    with tenant_scope("tenant_a"):
        Resident.objects.filter(pk=hanako.pk).update(date_of_birth=date(1938, 5, 5))
        # A name typed in half-width kana is compared with the furigana too.
        assert records.find_look_alikes(staff, name="ﾔﾏﾀﾞﾊﾅｺ", date_of_birth=date(1938, 5, 5)) == ([], 1)
        visible, others = records.find_look_alikes(staff, name="山田　花子", date_of_birth=date(1938, 5, 5))
        assert (visible, others) == ([], 1)
        assert records.find_look_alikes(staff, name="山田 花子", date_of_birth=date(1938, 5, 6)) == ([], 0)
    client_a.sign_in("staff-kodo")
    warned = client_a.post("/watch/residents/new/", {
        "area": areas_a["kodo"].pk, "name": "山田 花子", "date_of_birth": "1938-05-05", "gender": "female",
        "household": "living_alone", "risk": "medium"})
    assert warned.status_code == HTTPStatus.BAD_REQUEST
    assert "1 record in an area you do not look after" in page_text(warned)
    assert f"/watch/residents/{hanako.pk}/" not in warned.content.decode()


# Editing -------------------------------------------------------------------------------
def test_an_edit_is_recorded_with_who_when_and_the_values_before_and_after(staff_ja, staff_a, hanako):
    response = staff_ja.post(f"/watch/residents/{hanako.pk}/edit/", {
        "name": "山田 花子", "furigana": "ヤマダ ハナコ", "gender": "female", "household": "elderly_only",
        "risk": "high", "visit_notes": "耳が遠い", "care_level": "要介護2", "health_notes": "心不全の既往"})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        change = ResidentChange.objects.get(resident=hanako, kind=ResidentChange.Kind.UPDATED)
    assert change.actor_id == staff_a.pk
    assert change.changes == {"gender": ["unknown", "female"], "household": ["living_alone", "elderly_only"],
                              "risk": ["medium", "high"], "care_level": ["要介護1", "要介護2"]}
    history = page_text(staff_ja.get(f"/watch/residents/{hanako.pk}/history/"))
    assert "staff-a" in history and f"{timezone.localtime(change.at):%Y-%m-%d %H:%M}" in history
    assert "世帯区分: 独居 → 高齢者のみ世帯" in history
    assert "要介護度: 要介護1 → 要介護2" in history


def test_sensitive_changes_are_hidden_from_volunteers_and_officers(staff_a, volunteer_a, hanako, areas_a):
    officer = make_user("tenant_a", "officer-a", User.Role.ASSOCIATION_OFFICER)
    attach(officer, areas_a["osumi"])
    with tenant_scope("tenant_a"):
        records.do_update_resident(actor=staff_a, resident=hanako,
                                   fields={"health_notes": "認知症の疑い", "visit_notes": "午前中に訪問"})
    for username in ("volunteer-a", "officer-a"):
        client = TenantClient(HOST_A, language="ja")
        client.sign_in(username)
        for path in ("", "history/"):
            text = page_text(client.get(f"/watch/residents/{hanako.pk}/{path}"))
            assert "認知症の疑い" not in text and "心不全の既往" not in text
            assert "健康・支援記録: （変更あり）" in text
            assert "訪問時のメモ: 耳が遠い → 午前中に訪問" in text
            assert "staff-a" in text


def test_a_save_by_someone_who_cannot_see_sensitive_fields_never_clears_them(staff_ja, staff_a, hanako,
                                                                            monkeypatch):
    monkeypatch.setattr(records, "can_see_sensitive", lambda user: False)
    form = staff_ja.get(f"/watch/residents/{hanako.pk}/edit/").content.decode()
    assert 'name="care_level"' not in form and 'name="health_notes"' not in form
    response = staff_ja.post(f"/watch/residents/{hanako.pk}/edit/", {
        "name": "山田 花子", "gender": "female", "household": "living_alone", "risk": "medium",
        "care_level": "", "health_notes": ""})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        hanako.refresh_from_db()
    assert (hanako.care_level, hanako.health_notes) == ("要介護1", "心不全の既往")


def test_moving_into_an_area_the_person_oversees_is_recorded_and_elsewhere_is_404(client_a, areas_a, hanako):
    staff = make_user("tenant_a", "staff-osumi", User.Role.MUNICIPAL_STAFF)
    attach(staff, areas_a["osumi"])
    client_a.sign_in("staff-osumi")
    assert client_a.post(f"/watch/residents/{hanako.pk}/move/",
                         {"area": areas_a["kodo"].pk}).status_code == HTTPStatus.NOT_FOUND
    same = client_a.post(f"/watch/residents/{hanako.pk}/move/", {"area": areas_a["block"].pk})
    assert same.status_code == HTTPStatus.BAD_REQUEST
    assert "already in this area" in same.content.decode()
    assert client_a.post(f"/watch/residents/{hanako.pk}/move/",
                         {"area": areas_a["assoc"].pk}).status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        assert Resident.objects.get(pk=hanako.pk).area_id == areas_a["assoc"].pk
    history = page_text(client_a.get(f"/watch/residents/{hanako.pk}/history/"))
    assert "Area: 大住 › 大住ヶ丘連合自治会 › 3班 → 大住 › 大住ヶ丘連合自治会" in history


# Pause and end -------------------------------------------------------------------------
def test_a_pause_ending_in_the_past_is_refused_next_to_the_field(staff_ja, hanako):
    yesterday = (timezone.localdate() - timedelta(days=1)).isoformat()
    response = staff_ja.post(f"/watch/residents/{hanako.pk}/pause/", {"reason": "入院", "until": yesterday})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "過去" in field_errors(response, "until")
    blank = staff_ja.post(f"/watch/residents/{hanako.pk}/pause/", {"reason": "  "})
    assert blank.status_code == HTTPStatus.BAD_REQUEST
    assert field_errors(blank, "reason")
    with tenant_scope("tenant_a"):
        assert Resident.objects.get(pk=hanako.pk).status == Resident.Status.ACTIVE


def test_the_page_shows_a_pause_with_its_reason_and_end_date_in_words(staff_ja, hanako):
    until = timezone.localdate() + timedelta(days=10)
    response = staff_ja.post(f"/watch/residents/{hanako.pk}/pause/", {"reason": "入院中", "until": until.isoformat()})
    assert response.status_code == HTTPStatus.FOUND
    page = staff_ja.get(f"/watch/residents/{hanako.pk}/")
    text = page_text(page)
    assert "一時停止中" in text and "入院中" in text and until.isoformat() in text
    assert "見守りの一時停止・再開・終了" in text  # the history's title of the change
    main = page.content.decode().split('<main id="main">')[1].split("</main>")[0]
    assert not re.search(r">[^<]*\bpaused\b", main)  # no status code shown as text


def test_ending_watch_over_asks_for_a_reason_and_a_confirmation(staff_ja, hanako):
    page = staff_ja.get(f"/watch/residents/{hanako.pk}/end/")
    assert "転出" in page.content.decode() and 'value="moved"' in page.content.decode()
    unconfirmed = staff_ja.post(f"/watch/residents/{hanako.pk}/end/", {"reason": "moved"})
    assert unconfirmed.status_code == HTTPStatus.BAD_REQUEST
    assert field_errors(unconfirmed, "confirm")
    raw = staff_ja.post(f"/watch/residents/{hanako.pk}/status/", {"status": "ended", "reason": "moved"})
    assert raw.status_code == HTTPStatus.BAD_REQUEST
    with tenant_scope("tenant_a"):
        assert Resident.objects.get(pk=hanako.pk).status == Resident.Status.ACTIVE
    ended = staff_ja.post(f"/watch/residents/{hanako.pk}/end/", {"reason": "moved", "confirm": "on"})
    assert ended.status_code == HTTPStatus.FOUND
    text = page_text(staff_ja.get(f"/watch/residents/{hanako.pk}/"))
    assert "終了" in text and "転出" in text


# Rhythms -------------------------------------------------------------------------------
def test_rhythms_are_entered_as_number_and_unit_and_shown_in_words(staff_ja, staff_a, hanako):
    response = staff_ja.post(f"/watch/residents/{hanako.pk}/rhythms/new/", {
        "channel": "visit", "interval": 3, "interval_unit": "days", "grace": 6, "grace_unit": "hours"})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        rhythm = Rhythm.objects.get(resident=hanako, channel="visit")
        assert (rhythm.interval, rhythm.grace) == (timedelta(days=3), timedelta(hours=6))
    text = page_text(staff_ja.get(f"/watch/residents/{hanako.pk}/"))
    assert "いずれかの連絡：7日ごと（猶予12時間）" in text
    assert "訪問：3日ごと（猶予6時間）" in text
    assert "day" not in text and "0:00" not in text
    english = TenantClient(HOST_A)
    english.sign_in("staff-a")
    assert "any contact every 7 days (grace 12 hours)" in page_text(english.get(f"/watch/residents/{hanako.pk}/"))
    changed = staff_ja.post(f"/watch/residents/{hanako.pk}/rhythms/{rhythm.pk}/", {
        "channel": "", "interval": 2, "interval_unit": "days", "grace": 0, "grace_unit": "hours"})
    assert changed.status_code == HTTPStatus.FOUND
    history = page_text(staff_ja.get(f"/watch/residents/{hanako.pk}/history/"))
    assert "訪問：3日ごと（猶予6時間） → いずれかの連絡：2日ごと" in history


def test_bad_rhythm_input_is_refused_and_removal_needs_a_confirmation(staff_ja, hanako):
    response = staff_ja.post(f"/watch/residents/{hanako.pk}/rhythms/new/", {
        "channel": "carrier-pigeon", "interval": 0, "interval_unit": "days", "grace": 1, "grace_unit": "weeks"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    for field in ("channel", "interval", "grace_unit"):
        assert field_errors(response, field), field
    with tenant_scope("tenant_a"):
        rhythm = Rhythm.objects.get(resident=hanako)
    unconfirmed = staff_ja.post(f"/watch/residents/{hanako.pk}/rhythms/{rhythm.pk}/remove/", {})
    assert unconfirmed.status_code == HTTPStatus.BAD_REQUEST
    with tenant_scope("tenant_a"):
        assert Rhythm.objects.filter(resident=hanako).count() == 1
    removed = staff_ja.post(f"/watch/residents/{hanako.pk}/rhythms/{rhythm.pk}/remove/", {"confirm": "on"})
    assert removed.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        assert not Rhythm.objects.filter(resident=hanako).exists()
        assert ResidentChange.objects.filter(resident=hanako, kind=ResidentChange.Kind.RHYTHM).count() == 1


def test_a_rhythm_added_while_paused_stays_off_the_clock(staff_a, hanako):
    with tenant_scope("tenant_a"):
        actions.do_set_resident_status(actor=staff_a, resident=hanako, status="paused", reason="入院")
        rhythm = records.do_add_rhythm(actor=staff_a, resident=hanako, channel="", interval=timedelta(hours=1),
                                       grace=timedelta(0))
        Rhythm.objects.filter(pk=rhythm.pk).update(alert_at=timezone.now() - timedelta(hours=1))
        assert actions.do_mark_overdue() == []


# Emergency contacts ---------------------------------------------------------------------
def test_emergency_contacts_are_added_edited_and_removed_with_history(staff_ja, hanako):
    added = staff_ja.post(f"/watch/residents/{hanako.pk}/emergency-contacts/new/",
                          {"name": "山田 一郎", "relation": "長男", "phone": "090 1111 2222"})
    assert added.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        contact = EmergencyContact.objects.get(resident=hanako)
    assert contact.phone == "090-1111-2222"
    blank = staff_ja.post(f"/watch/residents/{hanako.pk}/emergency-contacts/{contact.pk}/", {"name": "  "})
    assert blank.status_code == HTTPStatus.BAD_REQUEST
    assert field_errors(blank, "name")
    edited = staff_ja.post(f"/watch/residents/{hanako.pk}/emergency-contacts/{contact.pk}/",
                           {"name": "山田 一郎", "relation": "長男", "phone": "0774-11-2222"})
    assert edited.status_code == HTTPStatus.FOUND
    assert staff_ja.post(f"/watch/residents/{hanako.pk}/emergency-contacts/{contact.pk}/remove/",
                         {}).status_code == HTTPStatus.BAD_REQUEST
    assert staff_ja.post(f"/watch/residents/{hanako.pk}/emergency-contacts/{contact.pk}/remove/",
                         {"confirm": "on"}).status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        assert not EmergencyContact.objects.filter(resident=hanako).exists()
    history = page_text(staff_ja.get(f"/watch/residents/{hanako.pk}/history/"))
    assert "緊急連絡先: 追加：山田 一郎 (長男) 090-1111-2222" in history
    assert "山田 一郎 (長男) 090-1111-2222 → 山田 一郎 (長男) 0774-11-2222" in history
    assert "緊急連絡先: 削除：山田 一郎 (長男) 0774-11-2222" in history


def test_another_residents_contact_rhythm_or_device_id_is_404(staff_ja, staff_a, hanako, shigeru):
    with tenant_scope("tenant_a"):
        contact = actions.do_add_emergency_contact(actor=staff_a, resident=shigeru, name="髙橋 花")
        rhythm = Rhythm.objects.get(resident=shigeru)
        device, _token = actions.do_register_device(actor=staff_a, resident=shigeru, kind="button")
    for path in (f"emergency-contacts/{contact.pk}/", f"rhythms/{rhythm.pk}/", f"devices/{device.pk}/revoke/",
                 f"devices/{device.pk}/reissue/"):
        assert staff_ja.get(f"/watch/residents/{hanako.pk}/{path}").status_code == HTTPStatus.NOT_FOUND, path


# Devices -------------------------------------------------------------------------------
def test_registering_a_device_shows_its_printable_label_with_the_ping_address_as_a_qr_code(staff_ja, hanako):
    response = staff_ja.post(f"/watch/residents/{hanako.pk}/devices/new/",
                             {"kind": "button", "name": "玄関", "paper": "a6"})
    assert response.status_code == HTTPStatus.OK
    html = response.content.decode()
    url = re.search(r'data-testid="label-url"><code>(https?://[^<]+)</code>', html).group(1)
    assert url.startswith(f"http://{HOST_A}/ping/")
    assert "<svg" in html and 'class="qr"' in html and "paper-a6" in html
    assert "山田 花子" in html and "玄関" in html
    assert response["Cache-Control"] == "no-store"
    assert staff_ja.get(url.removeprefix(f"http://{HOST_A}")).content == b"OK\n"
    with tenant_scope("tenant_a"):
        device = Device.objects.get(resident=hanako)
        assert url.rsplit("/", 1)[1] not in device.token_hash
        assert ResidentChange.objects.filter(resident=hanako, kind=ResidentChange.Kind.DEVICE).exists()


def test_a_duplicate_device_name_is_refused_next_to_the_field(staff_ja, staff_a, hanako):
    with tenant_scope("tenant_a"):
        actions.do_register_device(actor=staff_a, resident=hanako, kind="button", name="玄関")
    response = staff_ja.post(f"/watch/residents/{hanako.pk}/devices/new/",
                             {"kind": "speaker", "name": " 玄関 ", "paper": "a4"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "同じ名前" in field_errors(response, "name")
    with tenant_scope("tenant_a"):
        assert Device.objects.filter(resident=hanako).count() == 1
        assert Rhythm.objects.filter(resident=hanako, device__isnull=False).count() == 1


def test_reissuing_the_address_needs_a_confirmation_and_stops_the_old_one(staff_ja, staff_a, hanako):
    with tenant_scope("tenant_a"):
        device, old_token = actions.do_register_device(actor=staff_a, resident=hanako, kind="button", name="玄関")
    assert staff_ja.post(f"/watch/residents/{hanako.pk}/devices/{device.pk}/reissue/",
                         {"paper": "a6"}).status_code == HTTPStatus.BAD_REQUEST
    assert staff_ja.get(f"/ping/{old_token}").status_code == HTTPStatus.OK
    response = staff_ja.post(f"/watch/residents/{hanako.pk}/devices/{device.pk}/reissue/",
                             {"paper": "a4", "confirm": "on"})
    assert response.status_code == HTTPStatus.OK and "paper-a4" in response.content.decode()
    new_url = re.search(r'data-testid="label-url"><code>http://[^/]+(/ping/[^<]+)</code>',
                        response.content.decode()).group(1)
    with tenant_scope("tenant_a"):
        Device.objects.filter(pk=device.pk).update(last_signal_at=None)
    assert staff_ja.get(f"/ping/{old_token}").status_code == HTTPStatus.NOT_FOUND
    assert staff_ja.get(new_url).status_code == HTTPStatus.OK


def test_revoking_a_device_needs_a_confirmation_and_takes_its_rhythm_off(staff_ja, staff_a, hanako):
    with tenant_scope("tenant_a"):
        device, token = actions.do_register_device(actor=staff_a, resident=hanako, kind="button", name="玄関")
    page = staff_ja.get(f"/watch/residents/{hanako.pk}/devices/{device.pk}/revoke/")
    assert page.status_code == HTTPStatus.OK and 'name="confirm"' in page.content.decode()
    assert staff_ja.post(f"/watch/residents/{hanako.pk}/devices/{device.pk}/revoke/",
                         {}).status_code == HTTPStatus.BAD_REQUEST
    assert staff_ja.post(f"/watch/residents/{hanako.pk}/devices/{device.pk}/revoke/",
                         {"confirm": "on"}).status_code == HTTPStatus.FOUND
    assert staff_ja.get(f"/ping/{token}").status_code == HTTPStatus.NOT_FOUND
    with tenant_scope("tenant_a"):
        assert not Rhythm.objects.filter(device=device).exists()
    assert staff_ja.get(f"/watch/residents/{hanako.pk}/devices/{device.pk}/revoke/").status_code == 404


# The resident's page -------------------------------------------------------------------
def test_after_a_reload_the_last_contacts_outcome_is_shown(staff_ja, hanako):
    staff_ja.post(f"/watch/residents/{hanako.pk}/contacts/", {"channel": "visit", "outcome": "no_answer"})
    page = staff_ja.get(f"/watch/residents/{hanako.pk}/").content.decode()
    last = re.search(r'data-testid="last-contact">(.*?)</dd>', page, re.S).group(1)
    assert "応答なし" in last


def test_the_resident_page_has_its_own_title_and_status_words(staff_ja, hanako):
    html = staff_ja.get(f"/watch/residents/{hanako.pk}/").content.decode()
    assert "<title>山田 花子" in html
    assert re.search(r'data-testid="status">\s*見守り中', html)


def test_a_refused_contact_shows_its_message_next_to_the_field(staff_ja, hanako):
    response = staff_ja.post(f"/watch/residents/{hanako.pk}/contacts/",
                             {"channel": "visit", "outcome": "dancing"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    form = response.content.decode().split('class="contact-form')[1].split("</form>")[0]
    assert 'class="errorlist"' in form


def test_a_municipal_number_already_used_is_refused_in_words_not_as_a_constraint_name(hanako):
    from django.core.exceptions import ValidationError

    with tenant_scope("tenant_a"):
        Resident.objects.filter(pk=hanako.pk).update(external_id="1001")
        with pytest.raises(ValidationError) as refused, translation.override("ja"):
            actions.do_create_resident(area=hanako.area, name="別の人", external_id="1001")
        assert Resident.objects.filter(external_id="1001").count() == 1
    assert "この番号（住民番号）はすでに別の対象者に使われています。" in str(refused.value)
    assert "resident_unique_external_id" not in str(refused.value)
