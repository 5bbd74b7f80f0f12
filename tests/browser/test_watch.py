"""Watch-over in the browser: live overview, and check-ins that survive a lost network."""
import re

import pytest
from playwright.sync_api import expect

from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, PASSWORD, make_user
from tests.watch.conftest import make_resident
from watch import actions
from watch.models import Area, Assignment, ContactLog

pytestmark = pytest.mark.browser


@pytest.fixture
def town(live_server_url):
    """Committed data: a volunteer with two assigned residents, and a staff member."""
    volunteer = make_user("tenant_a", "kazuko", User.Role.VOLUNTEER)
    make_user("tenant_a", "hanako-staff", User.Role.MUNICIPAL_STAFF)
    with tenant_scope("tenant_a"):
        area = actions.do_create_area(name="大住", kind=Area.Kind.DISTRICT)
        residents = [make_resident(area, name) for name in ("山田 花子", "髙橋 茂")]
        for resident in residents:
            Assignment.objects.create(resident=resident, user=volunteer)
    return residents


def sign_in(page, url, username):
    page.goto(url + "/accounts/login/")
    page.get_by_label("ユーザー名").fill(username)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("live")).to_have_class("live on")


def volunteer_pk() -> int:
    with tenant_scope("tenant_a"):
        return User.objects.get(username="kazuko").pk


def contacts():
    with tenant_scope("tenant_a"):
        return list(ContactLog.objects.order_by("pk").values_list("resident__name", "outcome"))


def test_volunteer_check_in_updates_the_staff_overview_without_a_reload(browser, phone, live_server_url, town):
    url = live_server_url(HOST_A)
    staff = browser.new_context(locale="ja-JP").new_page()
    sign_in(staff, url, "hanako-staff")
    staff.goto(url + "/watch/")
    hanako_row = staff.locator(f'tr[data-resident-row="{town[0].pk}"]')
    expect(hanako_row.locator('[data-field="last_contact_at"]')).to_have_text("連絡の記録なし")

    sign_in(phone, url, "kazuko")
    phone.goto(url + "/watch/my/")
    phone.get_by_test_id(f"fine-{town[0].pk}").click()

    expect(hanako_row.locator('[data-field="last_outcome"]')).to_have_text("元気", timeout=10_000)
    expect(hanako_row).to_have_class(re.compile("updated"))
    # The toast names the resident the page shows (the event itself carries only ids).
    expect(staff.locator("#events li").first).to_contain_text("山田 花子さんの連絡が記録されました")
    assert contacts() == [("山田 花子", "fine")]
    staff.context.close()


def test_two_check_ins_made_offline_arrive_once_each_when_the_network_returns(phone, live_server_url, town):
    url = live_server_url(HOST_A)
    sign_in(phone, url, "kazuko")
    phone.goto(url + "/watch/my/")
    expect(phone.get_by_test_id(f"fine-{town[1].pk}")).to_be_visible()

    phone.context.set_offline(True)
    phone.get_by_test_id(f"fine-{town[0].pk}").click()
    phone.get_by_test_id(f"fine-{town[1].pk}").click()
    expect(phone.get_by_test_id("queue-status")).to_contain_text("2")
    assert contacts() == []
    # The queue lives on in the phone's storage, as this person's own.
    key = f"mimamori-checkin-queue:{volunteer_pk()}"
    assert phone.evaluate(f"JSON.parse(localStorage.getItem('{key}')).length") == 2

    phone.context.set_offline(False)
    phone.evaluate("window.dispatchEvent(new Event('online'))")
    expect(phone.get_by_test_id("queue-status")).to_be_hidden(timeout=10_000)
    assert sorted(contacts()) == [("山田 花子", "fine"), ("髙橋 茂", "fine")]
    # Sending the queue again (a retry after a lost reply) creates nothing new.
    phone.reload()
    phone.wait_for_timeout(500)
    assert len(contacts()) == 2


@pytest.fixture
def secure_phone(browser, live_server_url):
    """A phone whose browser takes the plain-http test host for a secure origin, as https
    is in production: service workers exist only there."""
    from tests.browser.conftest import CHROMIUM, FLAGS, new_phone

    origin = live_server_url(HOST_A)
    own = browser.browser_type.launch(executable_path=str(CHROMIUM),
                                      args=[*FLAGS, f"--unsafely-treat-insecure-origin-as-secure={origin}"])
    page = new_phone(own)
    yield page
    page.context.close()
    own.close()


def test_the_page_opens_without_a_network_and_a_check_in_made_then_is_sent_after_signing_in_again(
    secure_phone, live_server_url, town
):
    """A volunteer opens "my residents" where there is no signal: the copy the phone kept
    is shown (the server has even forgotten the session meanwhile, so a page from the
    network would be the sign-in page). The check-in waits on the phone and is sent once
    the volunteer is signed in again; signing out deletes the kept copy."""
    from django.contrib.sessions.models import Session

    url = live_server_url(HOST_A)
    sign_in(secure_phone, url, "kazuko")
    secure_phone.goto(url + "/watch/my/")
    secure_phone.evaluate("navigator.serviceWorker.ready.then(() => true)")
    secure_phone.reload()  # now through the service worker, which keeps the page
    expect(secure_phone.get_by_test_id(f"fine-{town[0].pk}")).to_be_visible()
    assert secure_phone.evaluate("caches.has('mimamori-my-residents')")

    with tenant_scope("tenant_a"):
        Session.objects.all().delete()
    secure_phone.context.set_offline(True)
    secure_phone.reload()
    expect(secure_phone.get_by_test_id(f"fine-{town[1].pk}")).to_be_visible()
    expect(secure_phone.get_by_test_id("offline-status")).to_contain_text("ネットワークがありません")
    secure_phone.get_by_test_id(f"fine-{town[1].pk}").click()
    expect(secure_phone.get_by_test_id("queue-status")).to_contain_text("1")

    secure_phone.context.set_offline(False)
    secure_phone.evaluate("window.dispatchEvent(new Event('online'))")
    secure_phone.wait_for_timeout(500)
    assert contacts() == []  # the session is gone: the check-in waits, it is not dropped
    sign_in(secure_phone, url, "kazuko")
    secure_phone.goto(url + "/watch/my/")
    expect(secure_phone.get_by_test_id("queue-status")).to_be_hidden(timeout=10_000)
    assert contacts() == [("髙橋 茂", "fine")]

    secure_phone.get_by_test_id("sign-out").click()
    expect(secure_phone.get_by_test_id("sign-in")).to_be_visible()
    secure_phone.wait_for_function("caches.has('mimamori-my-residents').then((kept) => !kept)")


def test_a_check_in_answered_503_stays_queued_and_is_sent_once_when_the_server_is_back(phone, live_server_url,
                                                                                        town):
    """The server's outage answer (503, Retry-After; tests/config/test_outages.py) as the
    phone sees it: the check-in is kept and sent again, not dropped and not doubled."""
    url = live_server_url(HOST_A)
    sign_in(phone, url, "kazuko")
    phone.goto(url + "/watch/my/")
    answered = []

    def unavailable(route):
        answered.append(503)
        route.fulfill(status=503, headers={"Retry-After": "5"}, content_type="application/json",
                      body='{"detail": "一時的に利用できません。しばらくしてからもう一度お試しください。"}')

    phone.route("**/api/v1/contacts/", unavailable)
    phone.get_by_test_id(f"fine-{town[0].pk}").click()
    expect(phone.get_by_test_id("queue-status")).to_contain_text("1")
    phone.evaluate("window.dispatchEvent(new Event('online'))")  # a second try, still 503
    phone.wait_for_timeout(300)
    assert len(answered) >= 2 and contacts() == []
    assert phone.evaluate(f"JSON.parse(localStorage.getItem('mimamori-checkin-queue:{volunteer_pk()}')).length") == 1

    phone.unroute("**/api/v1/contacts/")
    phone.evaluate("window.dispatchEvent(new Event('online'))")
    expect(phone.get_by_test_id("queue-status")).to_be_hidden(timeout=10_000)
    assert contacts() == [("山田 花子", "fine")]
