"""Issue 10's "Done when", in the browser only: a platform operator provisions a new
municipality; its administrator sets a password, builds the area tree, invites staff, a
case worker and a volunteer (each accepts from the link in the mail) and gives them their
roles and areas, adds residents by hand and by CSV, registers a device and prints its
label, edits an escalation policy and the rota; the case worker plans the volunteer's
week, and the volunteer does today's visit on a phone. Every step keeps a screenshot and
is checked by axe-core (tests/browser/conftest.py)."""
import re
import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from playwright.sync_api import expect

from tenants.accounts.models import User
from tenants.context import forget_cached_hosts, tenant_scope
from tenants.models import Tenant
from tests.conftest import PASSWORD, PUBLIC_HOST
from tests.watch.test_import import make_csv
from watch.models import Area, AreaMembership, Assignment, ContactLog, Device, Resident, Visit

pytestmark = pytest.mark.browser

NEW_PASSWORD = "yamate-higashi 3han no mimamori"
DISTRICT, ASSOCIATION, BLOCK = "大住", "山手東自治会", "3班"
BLOCK_PATH = f"{DISTRICT} › {ASSOCIATION} › {BLOCK}"
CSV_HEADERS = ["番号", "氏名", "フリガナ", "生年月日", "住所", "電話番号", "地区", "自治会", "班", "名簿提供同意"]
CSV_ROWS = [
    ["1001", "佐藤 トメ", "サトウ トメ", "昭和10年5月5日", "京田辺市大住1-2-3", "0774-11-2222", DISTRICT, ASSOCIATION,
     BLOCK, "同意"],
    ["1002", "鈴木 一郎", "スズキ イチロウ", "1938/02/11", "京田辺市大住4-5-6", "", DISTRICT, ASSOCIATION, BLOCK,
     "同意"],
]


@pytest.fixture
def operator_and_new_tenant(live_server_url):
    """An operator on the public schema and the schema name the test will provision;
    afterwards the operator, the tenant row, its domain and its schema are removed (the
    committed data of live-server tests is not rolled back)."""
    connection.set_schema_to_public()
    operator = User.objects.create_user(username="journey-operator", password=PASSWORD, role=User.Role.OPERATOR)
    schema = f"journey_{uuid.uuid4().hex[:8]}"
    yield schema
    connection.set_schema_to_public()
    for tenant in Tenant.objects.filter(schema_name=schema):
        tenant.delete(force_drop=True)
    # Not operator.delete(): its cascade would look for tenant tables on the public schema.
    User.objects.filter(pk=operator.pk)._raw_delete(connection.alias)
    forget_cached_hosts()


def sign_in(page, url: str, username: str, password: str = PASSWORD) -> None:
    page.goto(url + "/accounts/login/")
    page.get_by_label("ユーザー名").fill(username)
    page.get_by_label("パスワード").fill(password)
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("who")).to_be_visible()


def desktop(browser):
    page = browser.new_context(viewport={"width": 1280, "height": 800}, locale="ja-JP").new_page()
    page.set_default_timeout(15_000)
    return page


def messages_of(page):
    return page.locator("ul.messages")


def test_a_new_municipality_is_set_up_in_the_browser_and_its_volunteer_does_todays_visit_on_a_phone(
    browser, phone, live_server_url, operator_and_new_tenant, journey, tmp_path
):
    schema = operator_and_new_tenant
    host = f"{schema.replace('_', '-')}.mimamori.test"
    public, url = live_server_url(PUBLIC_HOST), live_server_url(host)

    # The operator provisions the tenant on the public host.
    operator = desktop(browser)
    sign_in(operator, public, "journey-operator")
    expect(operator.locator("h1")).to_have_text("運営コンソール")
    journey.step(operator, "operator-console")
    form = operator.locator("form.card").last
    form.locator("[name=name]").fill("福知山市")
    form.locator("[name=kind]").select_option("municipality")
    form.locator("[name=prefecture]").select_option("京都府")
    form.locator("[name=local_government_code]").fill("262013")
    form.locator("[name=schema_name]").fill(schema)
    form.locator("[name=domain]").fill(host)
    form.locator("[name=admin_username]").fill("chief")
    form.locator("[type=submit]").click()
    provisioned = operator.get_by_test_id("provisioned")
    expect(provisioned).to_contain_text(host)
    one_time_password = provisioned.locator("code").nth(1).inner_text()
    expect(operator.get_by_test_id("tenants")).to_contain_text("福知山市")
    journey.step(operator, "tenant-provisioned")
    operator.context.close()

    # Its administrator signs in with the one-time password and must choose a new one.
    admin = desktop(browser)
    sign_in(admin, url, "chief", one_time_password)
    expect(admin).to_have_url(re.compile(r"/accounts/password/$"))
    journey.step(admin, "must-change-password")
    admin.locator("[name=old_password]").fill(one_time_password)
    admin.locator("[name=new_password1]").fill(NEW_PASSWORD)
    admin.locator("[name=new_password2]").fill(NEW_PASSWORD)
    admin.locator("main [type=submit]").click()
    # The new password ends the person's other sessions ("session.ended" to their pages):
    # this page, on its way to the answer, is not reloaded by it.
    expect(admin).to_have_url(re.compile(r"/accounts/password/done/$"))
    journey.step(admin, "password-changed")
    admin.goto(url + "/")
    expect(admin.get_by_test_id("first-steps")).to_contain_text("地域")
    journey.step(admin, "empty-tenant-first-steps")

    # The area tree: district → association → block.
    admin.goto(url + "/watch/areas/")
    expect(admin.get_by_test_id("no-areas")).to_be_visible()
    journey.step(admin, "no-areas-yet")
    for name, kind, parent in [(DISTRICT, "district", None), (ASSOCIATION, "association", DISTRICT),
                               (BLOCK, "block", f"{DISTRICT} › {ASSOCIATION}")]:
        admin.locator("#id_name").fill(name)
        admin.locator("#id_kind").select_option(kind)
        if parent:
            admin.locator("#id_parent").select_option(label=parent)
        admin.get_by_role("button", name="追加する").click()
        expect(messages_of(admin)).to_contain_text("を追加しました")
    areas = admin.get_by_test_id("areas")
    expect(areas.locator("tr[data-area]")).to_have_count(3)
    expect(areas).to_contain_text(BLOCK_PATH)
    journey.step(admin, "area-tree")

    # Invitations: staff, a case worker (invited with the default, least powerful role and
    # promoted on the person page) and a volunteer.
    admin.goto(url + "/accounts/users/")
    expect(admin.locator("#id_role")).to_have_value("volunteer")
    journey.step(admin, "users-before-invitations")
    for name, email, role in [("大住 職員", "staff@fukuchiyama.example.jp", "municipal_staff"),
                              ("相談 花子", "case@fukuchiyama.example.jp", None),
                              ("見守 和子", "kazuko@fukuchiyama.example.jp", "volunteer")]:
        admin.locator("#id_display_name").fill(name)
        admin.locator("#id_email").fill(email)
        if role:
            admin.locator("#id_role").select_option(role)
        admin.get_by_role("button", name="招待を送信").click()
        expect(messages_of(admin)).to_contain_text(f"{email} に招待を送信しました")
    journey.step(admin, "invitations-sent")
    # Celery is eager and the live server runs in this process: the mails are here.
    links = {message.to[0]: re.search(r"http://\S+/accounts/invitations/accept/\S+/", message.body).group(0)
             for message in mail.outbox}
    assert sorted(links) == ["case@fukuchiyama.example.jp", "kazuko@fukuchiyama.example.jp",
                             "staff@fukuchiyama.example.jp"]

    # Each accepts from the link in their mail (the volunteer on her phone).
    for email, username in [("staff@fukuchiyama.example.jp", "oosumi-staff"),
                            ("case@fukuchiyama.example.jp", "soudan"),
                            ("kazuko@fukuchiyama.example.jp", "kazuko")]:
        page = phone if username == "kazuko" else desktop(browser)
        page.goto(links[email])
        expect(page.locator("h1")).to_contain_text("福知山市")
        journey.step(page, f"accept-invitation-{username}")
        page.locator("[name=username]").fill(username)
        page.locator("[name=password1]").fill(PASSWORD)
        page.locator("[name=password2]").fill(PASSWORD)
        page.get_by_role("button", name="アカウントを作成").click()
        expect(messages_of(page)).to_contain_text("アカウントを作成しました。サインインしてください。")
        if page is not phone:
            page.context.close()

    with tenant_scope(schema):
        people = {u.username: u for u in User.objects.all()}
    assert people["soudan"].role == User.Role.VOLUNTEER

    # Roles and areas on each person's page.
    admin.goto(url + "/accounts/users/")
    expect(admin.get_by_test_id("users").locator("tbody tr")).to_have_count(4)
    admin.get_by_role("link", name="相談 花子").click()
    journey.step(admin, "person-page-before")
    admin.locator("#id_role").select_option("case_worker")
    admin.get_by_role("button", name="役割を変更").click()
    expect(admin.get_by_test_id("role")).to_have_text("相談員")
    admin.locator("#id_area").select_option(label=f"{DISTRICT} › {ASSOCIATION}")
    admin.get_by_role("button", name="この地域に割り当てる").click()
    expect(admin.get_by_test_id("memberships")).to_contain_text(f"{DISTRICT} › {ASSOCIATION}")
    journey.step(admin, "case-worker-attached")
    admin.goto(url + f"/watch/people/{people['oosumi-staff'].pk}/")
    admin.locator("#id_area").select_option(label=DISTRICT)
    admin.get_by_role("button", name="この地域に割り当てる").click()
    expect(admin.get_by_test_id("memberships")).to_contain_text(DISTRICT)
    journey.step(admin, "staff-attached")

    # A resident added by hand, with consent to share with volunteers, on the volunteer's team.
    admin.goto(url + "/watch/residents/new/")
    journey.step(admin, "add-resident-form")
    admin.locator("#id_area").select_option(label=BLOCK_PATH)
    admin.locator("#id_name").fill("山田 花子")
    admin.locator("#id_furigana").fill("ヤマダ ハナコ")
    admin.locator("#id_date_of_birth").fill("1940-04-01")
    admin.locator("#id_address").fill("京田辺市大住3-3-3")
    admin.locator("#id_phone").fill("0774-33-4444")
    admin.get_by_role("button", name="登録する").click()
    expect(messages_of(admin)).to_contain_text("登録しました。")
    hanako = int(re.search(r"/watch/residents/(\d+)/$", admin.url).group(1))
    expect(admin.locator("h1")).to_contain_text("山田 花子")
    journey.step(admin, "resident-registered")
    admin.locator("details > summary", has_text="同意").click()
    admin.locator("select[name=status]").select_option("given")
    admin.locator("[name=share_with_volunteers]").check()
    admin.get_by_role("button", name="同意を記録").click()
    expect(messages_of(admin)).to_contain_text("保存")
    admin.locator("#team-user").select_option(label="見守 和子 (見守りボランティア)")
    admin.locator("#team-user").locator("xpath=..").get_by_role("button", name="追加").click()
    expect(admin.get_by_test_id("team")).to_contain_text("見守 和子")
    journey.step(admin, "resident-team")

    # A device, and its printable label with the QR code.
    admin.get_by_role("link", name="機器を登録").click()
    journey.step(admin, "device-form")
    admin.locator("#id_kind").select_option(index=1)
    admin.locator("#id_name").fill("玄関")
    admin.get_by_role("button", name="登録してラベルを印刷").click()
    label = admin.get_by_test_id("device-label")
    expect(label.get_by_test_id("label-resident")).to_have_text("山田 花子")
    expect(label.get_by_test_id("label-device")).to_contain_text("玄関")
    expect(label.locator("[data-testid=label-qr] svg")).to_be_visible()
    expect(label.get_by_test_id("label-url")).to_contain_text(f"{host}:")
    expect(admin.get_by_test_id("print")).to_be_visible()  # shown by our script, under the CSP
    journey.step(admin, "device-label")

    # Other residents from a CSV file (Shift_JIS, as an older Excel saves it).
    csv_file = tmp_path / "名簿.csv"
    csv_file.write_bytes(make_csv(CSV_HEADERS, CSV_ROWS, encoding="cp932"))
    admin.goto(url + "/watch/import/")
    journey.step(admin, "import-page")
    admin.get_by_test_id("import-file").set_input_files(str(csv_file))
    admin.get_by_test_id("check").click()
    expect(admin.get_by_test_id("import-summary")).to_contain_text("2 行を読み込みました：取り込み可能 2 件、誤り 0 件")
    expect(admin.get_by_test_id("import-rows")).to_contain_text("サトウ トメ")
    journey.step(admin, "import-dry-run")
    admin.get_by_test_id("import").click()
    expect(admin.get_by_test_id("import-summary")).to_contain_text("取り込み 2 件、誤り 0 件")
    journey.step(admin, "import-done")

    # The overview finds an imported resident by her 2-character surname.
    admin.goto(url + "/watch/?q=" + "佐藤")
    main = admin.locator("main")
    expect(main).to_contain_text("佐藤 トメ")
    expect(main).not_to_contain_text("鈴木 一郎")
    journey.step(admin, "overview-search")
    admin.get_by_role("link", name="佐藤 トメ").first.click()
    tome = int(re.search(r"/watch/residents/(\d+)/$", admin.url).group(1))
    admin.locator("#team-user").select_option(label="見守 和子 (見守りボランティア)")
    admin.locator("#team-user").locator("xpath=..").get_by_role("button", name="追加").click()
    expect(admin.get_by_test_id("team")).to_contain_text("見守 和子")

    # An escalation policy for the district, then edited.
    admin.goto(url + "/outreach/policies/")
    journey.step(admin, "policies")
    admin.get_by_test_id("policy-new").click()
    form = admin.get_by_test_id("policy-form")
    form.locator("[name=name]").fill("大住の見守り")
    form.locator("[name=area]").select_option(label=DISTRICT)
    form.locator("[name=step_1_targets][value=area_staff]").check()
    form.locator("[name=step_1_wait]").fill("20")
    journey.step(admin, "policy-new")
    form.get_by_role("button", name="保存").click()
    expect(messages_of(admin)).to_contain_text("大住の見守り")
    policy = admin.get_by_test_id("policy").filter(has_text="大住の見守り")
    expect(policy).to_contain_text("20")
    admin.get_by_role("link", name=re.compile("大住の見守り.*編集|編集.*大住の見守り")).click()
    form = admin.get_by_test_id("policy-form")
    form.locator("[name=step_1_targets][value=case_workers]").check()
    form.locator("[name=step_1_wait]").fill("45")
    journey.step(admin, "policy-edit")
    form.get_by_role("button", name="保存").click()
    policy = admin.get_by_test_id("policy").filter(has_text="大住の見守り")
    expect(policy).to_contain_text("45")
    journey.step(admin, "policy-edited")

    # The rota of next week: an empty week is one gap; two day shifts leave the nights as gaps.
    admin.goto(url + "/outreach/rota/")
    admin.get_by_test_id("next-week").click()
    expect(admin.get_by_test_id("gaps").locator("li")).to_have_count(1)
    journey.step(admin, "rota-empty")
    monday = admin.locator("[name=day]").input_value()
    for day_offset in (0, 1):
        shift = admin.get_by_test_id("add-shift")
        shift.locator("[name=user]").select_option(label="大住 職員 (市区町村職員)")
        day = (_date(monday) + timedelta(days=day_offset)).isoformat()
        shift.locator("[name=day]").fill(day)
        shift.locator("[name=starts]").fill("09:00")
        shift.locator("[name=ends]").fill("17:00")
        shift.get_by_role("button", name="当番を追加する").click()
        expect(messages_of(admin)).to_contain_text("当番を追加しました。")
    expect(admin.get_by_test_id("shift")).to_have_count(2)
    expect(admin.get_by_test_id("gaps").locator("li")).to_have_count(3)
    journey.step(admin, "rota-with-gaps")

    # The case worker plans the volunteer's week: 山田 花子 today, 佐藤 トメ from tomorrow.
    case_worker = desktop(browser)
    sign_in(case_worker, url, "soudan")
    with tenant_scope(schema):
        from watch.visits import tenant_today

        today = tenant_today()
    for query, name, starts, ends in [("ヤマダ", "山田 花子", today, None),
                                      ("とめ", "佐藤 トメ", today + timedelta(days=1), today + timedelta(days=6))]:
        case_worker.goto(url + "/watch/visits/")
        case_worker.locator("#visit-q").fill(query)
        case_worker.get_by_role("button", name="検索").click()
        expect(case_worker.get_by_test_id("found")).to_contain_text(name)
        case_worker.get_by_test_id("found").get_by_role("link", name=name).click()
        plan = case_worker.get_by_test_id("plan-form")
        plan.locator("#visit-visitor").select_option(label="見守 和子 (見守りボランティア)")
        plan.locator("#visit-starts").fill(starts.isoformat())
        if ends:
            plan.locator("#visit-ends").fill(ends.isoformat())
        journey.step(case_worker, f"plan-visit-{query}")
        plan.get_by_role("button", name="訪問予定を登録").click()
        expect(messages_of(case_worker)).to_contain_text(name)
    case_worker.goto(url + "/watch/visits/week/")
    week = case_worker.locator("main")
    expect(week).to_contain_text("見守 和子")
    expect(week).to_contain_text("山田 花子")
    journey.step(case_worker, "week-by-visitor")

    # The volunteer, on her phone: today's visit first, one tap, 「記録しました」.
    sign_in(phone, url, "kazuko")
    phone.goto(url + "/watch/my/")
    expect(phone.get_by_test_id("my-visits")).to_contain_text("山田 花子")
    expect(phone.get_by_test_id("my-visits")).not_to_contain_text("佐藤 トメ")
    expect(phone.get_by_test_id("my-residents")).to_contain_text("佐藤 トメ")
    expect(phone.get_by_test_id(f"tel-{hanako}")).to_have_attribute("href", "tel:0774-33-4444")
    journey.step(phone, "my-residents-phone")
    phone.get_by_test_id(f"fine-{hanako}").click()
    expect(phone.get_by_test_id(f"checkin-status-{hanako}")).to_have_text("記録しました")
    journey.step(phone, "checked-in")

    # The case worker sees the visit done.
    case_worker.goto(url + "/watch/visits/week/")
    with tenant_scope(schema):
        done = Visit.objects.get(resident_id=hanako)
    expect(case_worker.locator(f"[data-visit-row='{done.pk}'] .badge")).to_have_text("訪問済み")
    journey.step(case_worker, "visit-done")
    case_worker.context.close()
    admin.context.close()

    with tenant_scope(schema):
        assert Area.objects.get(name=BLOCK).full_name == BLOCK_PATH
        assert {(m.user.username, m.area.full_name) for m in AreaMembership.objects.select_related("user", "area")} \
            == {("soudan", f"{DISTRICT} › {ASSOCIATION}"), ("oosumi-staff", DISTRICT)}
        assert User.objects.get(username="soudan").role == User.Role.CASE_WORKER
        assert sorted(Resident.objects.values_list("name", flat=True)) == ["佐藤 トメ", "山田 花子", "鈴木 一郎"]
        assert set(Assignment.objects.values_list("resident_id", "user__username")) == {(hanako, "kazuko"),
                                                                                          (tome, "kazuko")}
        assert Device.objects.get().resident_id == hanako
        visits = dict(Visit.objects.values_list("resident_id", "state"))
        assert visits == {hanako: Visit.State.DONE, tome: Visit.State.PLANNED}
        contacts = list(ContactLog.objects.values_list("resident_id", "logged_by__username", "outcome"))
        assert contacts == [(hanako, "kazuko", "fine")]
        assert Visit.objects.get(resident_id=hanako).contact_id == ContactLog.objects.get().pk


def _date(text: str):
    from datetime import date

    return date.fromisoformat(text)
