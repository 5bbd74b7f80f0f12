"""Issue 11's "Done when", in a real browser on the demo's data: a staff member starts a
drill for the whole city; residents answer from their watch-over button, from LINE (a
signed webhook event, as LINE sends it, acknowledged through the fake LINE server) and
from the link in their SMS on a phone; the progress page moves on its own as each answer
arrives; staff close the drill and read the report beside the previous drill. A household
then reads a notice of the circular board from the email it got and answers it on a phone.

Real Chromium matters here: it sends the Origin of a form's POST (and `Origin: null` under
a no-referrer policy, which the CSRF check refuses), which Django's test client never
does. Every step keeps a screenshot and is checked by axe-core."""
import re
from urllib.parse import urlsplit

import pytest
import requests
from django.core import mail
from playwright.sync_api import expect

from notifications.fake_providers import line_event, send_line_events
from outreach import board
from outreach.answers import postback_data
from outreach.demo import DEMO_TITLE, do_load_demo_drill
from outreach.models import Ask, NoticeReceipt, SafetyCheck
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.browser.conftest import new_phone, off_the_loop
from tests.browser.test_cockpit_journey import desktop, sign_in
from tests.conftest import HOST_A, make_user
from tests.notifications.conftest import fake_providers  # noqa: F401 - the fake LINE and Twilio
from watch.management.commands.load_demo import DEMO_USERS, fill_duty_rota, load_demo_residents
from watch.models import ContactLog, Resident

pytestmark = pytest.mark.browser

TITLE = "12月の防災訓練"


def _demo() -> dict:
    for username, _name, role in DEMO_USERS:
        make_user("tenant_a", username, role)
    with tenant_scope("tenant_a"):
        token = load_demo_residents("kyotanabe")
        fill_duty_rota()
        past = do_load_demo_drill()
        residents = list(Resident.objects.order_by("pk"))
    return {"button": token, "past": past, "residents": residents}


@pytest.fixture
def demo(committed_db, live_server_url):
    """Tenant A with the demo's team, residents (half of them on LINE), button and past drill."""
    return off_the_loop(_demo)


def answered(page, count: int, total: int):
    """The progress page says so, without being reloaded."""
    expect(page.get_by_text(f"({count} / {total})")).to_be_visible(timeout=10_000)


def test_a_drill_runs_end_to_end_and_is_read_next_to_the_previous_one(
        browser, live_server_url, demo, fake_providers, journey):  # noqa: F811 - the fixture imported above
    base = live_server_url(HOST_A)
    loopback = live_server_url("127.0.0.1")  # for requests made here (the Host header names the tenant)
    total = len(demo["residents"])
    staff = desktop(browser)
    sign_in(staff, base, "staff")

    # Start: the form, the confirmation step, then the progress page.
    staff.get_by_role("link", name="安否確認", exact=True).click()
    staff.get_by_role("link", name=re.compile("新しい安否確認")).click()
    journey.step(staff, "new-drill")
    staff.get_by_label("題名").fill(TITLE)
    staff.get_by_role("button", name=re.compile("確認")).click()
    journey.step(staff, "confirm-start")
    staff.get_by_role("button", name=re.compile("訓練を開始")).click()
    answered(staff, 0, total)
    journey.step(staff, "progress-at-start")
    with tenant_scope("tenant_a"):
        check = SafetyCheck.objects.get(title=TITLE)
        assert check.state == SafetyCheck.State.OPEN and check.started_by.username == "staff"
        asks = {a.resident_id: a for a in Ask.objects.filter(safety_check=check)}
    assert len(asks) == total and all(a.reached for a in asks.values())  # all sent through the fake

    # 1. The watch-over button of the first resident (山田 花子): "ok".
    yamada, *others = demo["residents"]
    pressed = requests.post(f"{loopback}/ping/{demo['button']}/ok", headers={"Host": HOST_A}, timeout=10)
    assert pressed.status_code == 200
    answered(staff, 1, total)

    # 2. A tap under the question in LINE, by the next resident whose LINE is linked.
    on_line = next(r for r in others if r.line_user_id)
    tap = line_event("postback", on_line.line_user_id, data=postback_data(Ask.Kind.SAFETY, "fine"))
    assert send_line_events(f"{loopback}/notifications/line/webhook/", [tap], host=HOST_A) == 200
    answered(staff, 2, total)
    [(_token, reply)] = fake_providers.line_replies()
    assert "ありがとうございます" in reply  # acknowledged by reply (free), not by a push

    # 3. The link in an SMS, on a phone.
    texted = next(r for r in others if r.mobile_phone and not r.line_user_id)
    [sms] = [m for m in fake_providers.sms_messages if m["to"] == "+81" + re.sub(r"\D", "", texted.mobile_phone)[1:]]
    link = urlsplit(re.search(r"https?://\S+/r/a/\S+/", sms["body"]).group(0))
    phone = new_phone(browser)
    phone.goto(base + link.path)
    expect(phone.get_by_role("button", name="無事です")).to_be_visible()
    journey.step(phone, "answer-link")
    phone.get_by_role("button", name="無事です").click()
    expect(phone.get_by_text("受け付けたお返事：「無事です」")).to_be_visible()
    journey.step(phone, "answer-received")
    answered(staff, 3, total)
    journey.step(staff, "progress-moved")
    with tenant_scope("tenant_a"):
        by = dict(Ask.objects.filter(safety_check=check).exclude(answer="").values_list("resident_id", "answered_via"))
    assert by == {yamada.pk: "device", on_line.pk: "line", texted.pk: "link"}

    # Close: the silent ones get follow-up visits; the report sits beside the past drill.
    staff.get_by_text("この安否確認を終了する").click()
    staff.get_by_label(re.compile("これ以上は送信しません")).check()
    staff.get_by_role("button", name="安否確認を終了する").click()
    expect(staff.get_by_text("安否確認を終了しました")).to_be_visible()
    journey.step(staff, "closed")
    staff.get_by_role("link", name="報告", exact=True).click()
    report = staff.locator("main")
    expect(report.get_by_role("heading", name=re.compile("これまでの訓練との比較"))).to_be_visible()
    expect(report.get_by_role("row", name=re.compile(re.escape(DEMO_TITLE)))).to_contain_text("90%")
    expect(report.get_by_role("row", name=re.compile(f"{TITLE}.*今回"))).to_contain_text("30%")
    journey.step(staff, "report")
    with tenant_scope("tenant_a"):
        check.refresh_from_db()
        assert check.state == SafetyCheck.State.CLOSED and check.closed_by.username == "staff"
        # Every answer is a contact in the log; the button's press is its one contact.
        today = ContactLog.objects.filter(occurred_at__gte=check.started_at)
        assert sorted(today.values_list("resident_id", "channel", "outcome")) == sorted(
            [(yamada.pk, "device", "fine"), (on_line.pk, "line", "fine"), (texted.pk, "link", "fine")])
    phone.context.close()
    staff.context.close()


def _post_notice(household):
    with tenant_scope("tenant_a"):
        officer = User.objects.get(username="officer")
        notice = board.do_post_notice(officer, title="防災訓練のお知らせ", body="12月6日に公園で防災訓練を行います。",
                                      area_ids=[household.area_id], reply="attendance")
        receipt = NoticeReceipt.objects.get(notice=notice, resident=household)
        return receipt, board.receipt_token(receipt)


def test_a_household_reads_a_notice_from_its_email_and_answers_it_on_a_phone(browser, live_server_url, demo,
                                                                             journey):
    base = live_server_url(HOST_A)
    household = demo["residents"][1]
    receipt, _token = off_the_loop(_post_notice, household)
    # 髙橋 茂's household has no LINE: the notice went to his daughter's email, with its own link.
    [message] = [m for m in mail.outbox if m.to == ["takahashi-megumi@example.jp"]]
    link = urlsplit(re.search(r"https?://\S+/r/n/\S+/", message.body).group(0))
    phone = new_phone(browser)
    phone.goto(base + link.path)
    expect(phone.get_by_role("heading", name="防災訓練のお知らせ")).to_be_visible()
    journey.step(phone, "notice")
    phone.get_by_role("button", name="出席します").click()
    expect(phone.get_by_text(re.compile("受け付けました"))).to_be_visible()
    journey.step(phone, "notice-answered")
    with tenant_scope("tenant_a"):
        receipt.refresh_from_db()
        assert (receipt.sent_via, receipt.response) == ("email", "yes") and receipt.read_at is not None
    phone.context.close()
