"""The overview in the browser after the channel layer's Redis forgot every socket: the
page is told to resync and reads its rows again, so a contact whose live event was lost
still shows within 10 s."""
import redis
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import expect

from tenants.context import tenant_scope
from tests.browser.conftest import off_the_loop
from tests.browser.test_watch import pytestmark, sign_in, town  # noqa: F401 (the fixture and the mark)
from tests.conftest import HOST_A
from watch import actions


def log_fine_visit(resident):
    with tenant_scope("tenant_a"):
        actions.do_log_contact(actor=None, resident=resident, occurred_at=timezone.now(), channel="visit",
                               outcome="fine")


def test_staff_overview_catches_up_after_a_redis_flush(browser, live_server_url, town):  # noqa: F811
    url = live_server_url(HOST_A)
    staff = browser.new_context(locale="ja-JP").new_page()
    sign_in(staff, url, "hanako-staff")
    staff.goto(url + "/watch/")
    expect(staff.get_by_test_id("live")).to_have_class("live on")
    row = staff.locator(f'tr[data-resident-row="{town[0].pk}"]')
    expect(row.locator('[data-field="last_contact_at"]')).to_have_text("連絡の記録なし")

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    # Logged while the socket's groups are gone: its live event reaches no one. (In a thread
    # of its own: publishing is async_to_sync, and Playwright keeps a loop on this one.)
    off_the_loop(log_fine_visit, town[0])

    expect(row.locator('[data-field="last_outcome"]')).to_have_text("元気", timeout=10_000)
    staff.context.close()


def publish_to_tenant_a(event):
    from notifications.events import EVERYONE, publish

    publish("tenant_a", [EVERYONE], event)


def test_a_concern_event_naming_a_resident_leaves_the_row_due_time_as_it_is(
    browser, live_server_url, town  # noqa: F811
):
    url = live_server_url(HOST_A)
    staff = browser.new_context(locale="ja-JP").new_page()
    sign_in(staff, url, "hanako-staff")
    staff.goto(url + "/watch/")
    expect(staff.get_by_test_id("live")).to_have_class("live on")
    due = staff.locator(f'tr[data-resident-row="{town[0].pk}"] [data-field="next_due_at"] time')
    expect(due).to_have_count(1)

    # Concern events carry the resident's id but not the resident's state.
    off_the_loop(publish_to_tenant_a, {"type": "concern.opened", "id": 1, "concern": 1, "resident": town[0].pk,
                                       "text": "見守りの心配"})
    # In words of the page, with the name the page shows (the text of the event is not shown).
    expect(staff.locator("#events li").first).to_contain_text("山田 花子さんについて新しい気がかりがあります")
    expect(due).to_have_count(1)
    staff.context.close()
