"""Retries, fallback, failure for good, timeouts, quiet hours, leases and the sweep."""
import threading
import time
from datetime import datetime, timedelta
from datetime import time as clock
from zoneinfo import ZoneInfo

from django.core import mail
from django.db import connection, connections
from django.utils import timezone, translation
from django.utils.translation import gettext

from notifications.delivery import quiet_hours_end
from notifications.models import ChannelPreference, DeliveryAttempt, Notification
from notifications.tasks import deliver, sweep_deliveries
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import make_user
from tests.notifications.conftest import LINE_USER
from tests.notifications.helpers import attempts, notify, reload, set_channels

TOKYO = ZoneInfo("Asia/Tokyo")


def test_a_provider_failing_twice_then_succeeding_is_logged_three_times_and_delivered_once(
    volunteer_a, fake_providers, django_capture_on_commit_callbacks
):
    set_channels(volunteer_a, ["line", "email"], line_user_id=LINE_USER)
    fake_providers.fail(2, status=500)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("line", 1, False), ("line", 2, False), ("line", 3, True)]
    with tenant_scope("tenant_a"):
        statuses = list(DeliveryAttempt.objects.filter(notification_id=notification.pk)
                        .order_by("pk").values_list("provider_status", flat=True))
    assert statuses == [500, 500, 200]
    pushes = fake_providers.to("/v2/bot/message/push")
    assert len(pushes) == 3
    assert len({p.headers["X-Line-Retry-Key"] for p in pushes}) == 1  # LINE drops a repeat it already took
    assert reload(notification).state == "delivered"
    assert mail.outbox == []


def test_too_many_requests_is_retried(volunteer_a, fake_providers, django_capture_on_commit_callbacks):
    set_channels(volunteer_a, ["sms"], phone="+819012345678")
    fake_providers.fail(1, status=429)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("sms", 1, False), ("sms", 2, True)]


def test_a_permanent_refusal_falls_back_to_the_next_channel_at_once(
    volunteer_a, fake_providers, django_capture_on_commit_callbacks
):
    set_channels(volunteer_a, ["line", "sms", "email"], line_user_id=LINE_USER, phone="+819012345678")
    fake_providers.fail(1, status=400, path="/v2/")
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("line", 1, False), ("sms", 1, True)]
    assert reload(notification).delivered_via == "sms"


def test_retries_exhausted_on_one_channel_fall_back_to_the_next(
    volunteer_a, fake_providers, django_capture_on_commit_callbacks
):
    set_channels(volunteer_a, ["line", "email"], line_user_id=LINE_USER)
    fake_providers.fail(10, status=503, path="/v2/")
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("line", n, False) for n in (1, 2, 3, 4)] + [("email", 1, True)]
    assert len(mail.outbox) == 1


def test_every_channel_failing_marks_it_failed_and_tells_staff_who_see_it_listed(
    volunteer_a, staff_a, client_a, fake_providers, captured_events, django_capture_on_commit_callbacks
):
    set_channels(volunteer_a, ["line", "sms"], line_user_id=LINE_USER, phone="+819012345678")
    fake_providers.fail(100, status=500)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("line", n, False) for n in (1, 2, 3, 4)] + [
        ("sms", n, False) for n in (1, 2, 3, 4)]
    notification = reload(notification)
    assert notification.state == "failed" and notification.failed_at is not None
    failed = [(g, e) for g, e in captured_events if e["type"] == "notification.failed"]
    with tenant_scope("tenant_a"):
        staff = set(User.objects.filter(role__in=["admin", "municipal_staff"]).values_list("pk", flat=True))
    assert staff_a.pk in staff
    assert {g for g, _ in failed} == {f"tenant_a.user.{pk}" for pk in staff}  # those who see it listed
    assert failed[0][1]["notification"]["id"] == notification.pk
    assert "山田" not in str(failed)  # the title may name a resident: ids and the recipient only
    client_a.sign_in("staff-a")
    page = client_a.get("/notifications/failed/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'data-notification="{notification.pk}"' in html and "fake failure 500" in html
    assert "volunteer-a" in html and "LINE #4" in html and "SMS #4" in html
    # Retried by nobody: the sweep leaves failed notifications alone.
    assert sweep_deliveries.delay("tenant_a").get() == 0


def test_the_failed_deliveries_page_is_for_staff_only(client_a, volunteer_a):
    client_a.sign_in("volunteer-a")
    assert client_a.get("/notifications/failed/").status_code == 403


def test_a_provider_that_hangs_is_given_up_within_the_timeout_and_retried(
    volunteer_a, fake_providers, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATION_PROVIDER_TIMEOUT = 0.5
    set_channels(volunteer_a, ["line"], line_user_id=LINE_USER)
    fake_providers.hang(1)
    started = time.monotonic()
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert time.monotonic() - started < 3
    assert attempts(notification) == [("line", 1, False), ("line", 2, True)]
    with tenant_scope("tenant_a"):
        first = DeliveryAttempt.objects.filter(notification_id=notification.pk).order_by("pk").first()
    assert first.provider_status is None and first.error
    assert (first.finished_at - first.started_at).total_seconds() < 2


def test_an_sms_provider_that_hangs_is_given_up_within_the_timeout(
    volunteer_a, fake_providers, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATION_PROVIDER_TIMEOUT = 0.5
    set_channels(volunteer_a, ["sms"], phone="+819012345678")
    fake_providers.hang(1)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("sms", 1, False), ("sms", 2, True)]
    # Before sending again, Twilio was asked whether it had the first: it had not.
    assert [r.method for r in fake_providers.to("/2010-04-01/")] == ["POST", "GET", "POST"]
    assert len(fake_providers.sms_messages) == 1


def test_an_sms_twilio_accepted_but_answered_too_late_is_found_there_and_not_sent_again(
    volunteer_a, fake_providers, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATION_PROVIDER_TIMEOUT = 0.5
    set_channels(volunteer_a, ["sms"], phone="+819012345678")
    fake_providers.slow(1, seconds=1.0, path="/2010-04-01/")
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("sms", 1, False), ("sms", 2, True)]
    [message] = fake_providers.sms_messages
    assert [r.method for r in fake_providers.to("/2010-04-01/")] == ["POST", "GET"]
    with tenant_scope("tenant_a"):
        found = notification.attempts.get(attempt=2)
    assert found.provider_answer.startswith(f"already accepted: sid={message['sid']}")
    assert reload(notification).delivered_via == "sms"


def test_an_earlier_sms_to_the_same_number_with_other_text_is_not_taken_for_this_one(
    volunteer_a, fake_providers, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATION_PROVIDER_TIMEOUT = 0.5
    set_channels(volunteer_a, ["sms"], phone="+819012345678")
    notify(django_capture_on_commit_callbacks, volunteer_a)  # an SMS about something else, delivered
    fake_providers.hang(1)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a, key="concern:2:step:1", title="別件です")
    assert attempts(notification) == [("sms", 1, False), ("sms", 2, True)]
    assert [m["body"].split("\n")[0] for m in fake_providers.sms_messages] == [
        "山田 花子さんの見守りが遅れています", "別件です"]


def test_an_sms_is_looked_up_after_any_unanswered_attempt_not_only_the_last(
    volunteer_a, fake_providers, settings, django_capture_on_commit_callbacks
):
    """1: accepted, answered too late. 2: the lookup fails, so it sends; Twilio refuses
    that one (503). 3: the lookup works and finds the first: nothing more is sent."""
    settings.NOTIFICATION_PROVIDER_TIMEOUT = 0.5
    set_channels(volunteer_a, ["sms"], phone="+819012345678")
    fake_providers.slow(1, seconds=1.0, path="/2010-04-01/")
    fake_providers.fail(1, status=503, path="/2010-04-01/")  # attempt 2's lookup
    fake_providers.fail(1, status=503, path="/2010-04-01/")  # attempt 2's send
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("sms", 1, False), ("sms", 2, False), ("sms", 3, True)]
    assert [r.method for r in fake_providers.to("/2010-04-01/")] == ["POST", "GET", "POST", "GET"]
    assert len(fake_providers.sms_messages) == 1


def test_a_message_twilio_could_not_deliver_is_not_taken_for_delivered(
    volunteer_a, fake_providers, django_capture_on_commit_callbacks
):
    from notifications.delivery import SmsProvider

    set_channels(volunteer_a, ["sms"], phone="+819012345678")
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    [message] = fake_providers.sms_messages
    since = timezone.now() - timedelta(minutes=5)
    with tenant_scope("tenant_a"):
        preference = ChannelPreference.objects.get(user=volunteer_a)
        found = SmsProvider().find_sent(notification, preference, since)
        assert found.ok and found.answer.startswith(f"already accepted: sid={message['sid']}")
        for status in ("failed", "undelivered", "canceled"):
            message["status"] = status
            assert SmsProvider().find_sent(notification, preference, since) is None


def test_when_twilio_cannot_say_whether_it_has_the_sms_it_is_sent_again_rather_than_lost(
    volunteer_a, fake_providers, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATION_PROVIDER_TIMEOUT = 0.5
    set_channels(volunteer_a, ["sms"], phone="+819012345678")
    fake_providers.hang(1)
    fake_providers.fail(1, status=503, path="/2010-04-01/")  # the lookup
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("sms", 1, False), ("sms", 2, True)]
    assert [r.method for r in fake_providers.to("/2010-04-01/")] == ["POST", "GET", "POST"]


def test_a_refused_connection_is_retried_then_falls_back(
    volunteer_a, fake_providers, settings, django_capture_on_commit_callbacks
):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        settings.LINE_API_BASE = f"http://127.0.0.1:{probe.getsockname()[1]}"
    set_channels(volunteer_a, ["line", "email"], line_user_id=LINE_USER)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("line", n, False) for n in (1, 2, 3, 4)] + [("email", 1, True)]


def test_retry_waits_follow_the_setting(volunteer_a, fake_providers, settings, django_capture_on_commit_callbacks):
    """With real waits, an eager run does not retry early: the retry is due later."""
    settings.NOTIFICATION_RETRY_DELAYS = [10, 30, 90]
    set_channels(volunteer_a, ["line"], line_user_id=LINE_USER)
    fake_providers.fail(1)
    before = timezone.now()
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    notification = reload(notification)
    assert attempts(notification) == [("line", 1, False)]
    assert notification.state == "pending" and notification.delivering_until is None
    assert before + timedelta(seconds=9) < notification.next_attempt_at < before + timedelta(seconds=12)


def quiet_around_now(user, schema="tenant_a"):
    local = timezone.now().astimezone(TOKYO)
    start = (local - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (local + timedelta(hours=1)).time().replace(second=0, microsecond=0)
    with tenant_scope(schema):
        ChannelPreference.objects.update_or_create(user=user, defaults={"quiet_start": start, "quiet_end": end})
    return end


def test_quiet_hours_defer_external_delivery_but_not_the_in_app_notification(
    volunteer_a, captured_events, django_capture_on_commit_callbacks
):
    quiet_around_now(volunteer_a)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert [e["type"] for _, e in captured_events] == ["notification.created"]
    notification = reload(notification)
    assert notification.state == "pending" and attempts(notification) == [] and mail.outbox == []
    assert timedelta(minutes=55) < notification.next_attempt_at - timezone.now() < timedelta(minutes=61)
    # Nothing is due yet, so the sweep leaves it; once due, the sweep sends it.
    assert sweep_deliveries.delay("tenant_a").get() == 0
    with tenant_scope("tenant_a"):
        ChannelPreference.objects.filter(user=volunteer_a).update(quiet_start=None, quiet_end=None)
        Notification.objects.filter(pk=notification.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=1))
    assert sweep_deliveries.delay("tenant_a").get() == 1
    assert attempts(notification) == [("email", 1, True)]


def test_urgent_notifications_ignore_quiet_hours(volunteer_a, django_capture_on_commit_callbacks):
    quiet_around_now(volunteer_a)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a, urgent=True)
    assert attempts(notification) == [("email", 1, True)]
    with translation.override("ja"):
        assert mail.outbox[0].subject.startswith(gettext("[Urgent]") + " ")


def test_quiet_hours_may_wrap_midnight():
    preference = ChannelPreference(quiet_start=clock(22, 0), quiet_end=clock(7, 0))

    def at(hour, minute=0, day=10):
        return datetime(2026, 1, day, hour, minute, tzinfo=TOKYO)

    assert quiet_hours_end(preference, at(23, 30), TOKYO) == at(7, day=11)
    assert quiet_hours_end(preference, at(3), TOKYO) == at(7)
    assert quiet_hours_end(preference, at(22), TOKYO) == at(7, day=11)
    assert quiet_hours_end(preference, at(7), TOKYO) is None
    assert quiet_hours_end(preference, at(12), TOKYO) is None
    daytime = ChannelPreference(quiet_start=clock(12, 0), quiet_end=clock(13, 0))
    assert quiet_hours_end(daytime, at(12, 30), TOKYO) == at(13)
    assert quiet_hours_end(daytime, at(13), TOKYO) is None
    # UTC instants are read in the tenant's zone: 14:00 UTC is 23:00 in Tokyo.
    assert quiet_hours_end(preference, datetime(2026, 1, 10, 14, 0, tzinfo=ZoneInfo("UTC")), TOKYO) == at(7, day=11)


def test_a_notification_read_in_the_app_before_delivery_is_not_sent_outside(
    volunteer_a, django_capture_on_commit_callbacks
):
    quiet_around_now(volunteer_a)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    with tenant_scope("tenant_a"):
        Notification.objects.filter(pk=notification.pk).update(
            read_at=timezone.now(), next_attempt_at=timezone.now() - timedelta(minutes=1))
    assert deliver.delay("tenant_a", notification.pk).get() == "read-in-app"
    assert reload(notification).state == "delivered" and mail.outbox == []


def test_a_run_held_by_another_worker_does_nothing_until_its_lease_expires(
    volunteer_a, django_capture_on_commit_callbacks
):
    quiet_around_now(volunteer_a)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    with tenant_scope("tenant_a"):
        ChannelPreference.objects.filter(user=volunteer_a).update(quiet_start=None, quiet_end=None)
        Notification.objects.filter(pk=notification.pk).update(
            next_attempt_at=timezone.now() - timedelta(minutes=5),
            delivering_until=timezone.now() + timedelta(minutes=1))
    assert deliver.delay("tenant_a", notification.pk).get() == "not-due"
    assert sweep_deliveries.delay("tenant_a").get() == 0
    # The worker holding it died: its lease runs out and the sweep re-drives it.
    with tenant_scope("tenant_a"):
        Notification.objects.filter(pk=notification.pk).update(delivering_until=timezone.now() - timedelta(seconds=1))
    assert sweep_deliveries.delay("tenant_a").get() == 1
    assert attempts(notification) == [("email", 1, True)]
    assert sweep_deliveries.delay("tenant_a").get() == 0


def test_a_lost_delivery_message_is_re_driven_by_the_sweep(volunteer_a, django_capture_on_commit_callbacks):
    """Redis flushed before the worker took the message: the row is still pending."""
    with django_capture_on_commit_callbacks(execute=False), tenant_scope("tenant_a"):
        from notifications.actions import do_notify

        notification, _ = do_notify(recipient=volunteer_a, kind="k", title="t", body="", dedupe_key="lost")
    with tenant_scope("tenant_a"):
        Notification.objects.filter(pk=notification.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=1))
    assert sweep_deliveries.delay("tenant_a").get() == 1
    assert attempts(notification) == [("email", 1, True)] and len(mail.outbox) == 1


def test_two_concurrent_runs_of_the_same_delivery_send_once(committed_db, fake_providers):
    user = make_user("tenant_a", "volunteer-c", "volunteer", email="c@example.jp")
    set_channels(user, ["line"], line_user_id=LINE_USER)
    with tenant_scope("tenant_a"):
        notification = Notification.objects.create(recipient=user, kind="k", title="t", dedupe_key="k",
                                                    next_attempt_at=timezone.now())
    fake_providers.slow(5, seconds=0.5)
    results, barrier = [], threading.Barrier(2)

    def run():
        try:
            barrier.wait()
            results.append(deliver.apply(args=("tenant_a", notification.pk)).get())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["delivered", "not-due"]
    assert len(fake_providers.to("/v2/bot/message/push")) == 1
    assert attempts(notification) == [("line", 1, True)]
    connection.set_schema_to_public()


def test_the_sweep_runs_for_every_tenant_through_beat(volunteer_a):
    from config.celery import app

    entry = app.conf.beat_schedule["deliveries"]
    assert entry["task"] == "tenants.fan_out"
    assert entry["args"] == ("notifications.tasks.sweep_deliveries",)
    assert "notifications.tasks.sweep_deliveries" in app.tasks


def test_the_fakes_summary_page_shows_what_it_received_as_a_person_reads_it(db, fake_providers):
    """/_fake/ is what someone trying the demo opens in the browser: the SMS in Japanese."""
    import requests

    from notifications import delivery

    with tenant_scope("tenant_a"):
        sent = delivery.twilio_request(lambda client, sender: client.messages.create(
            to="+819012345678", from_=sender, body="安否確認です。ご無事ですか？"))
    assert sent.ok
    page = requests.get(f"{fake_providers.url}/_fake/", timeout=5)
    assert page.headers["Content-Type"] == "application/json; charset=utf-8"
    assert '"body": "安否確認です。ご無事ですか？"' in page.text
    assert page.json()["sms"][-1]["to"] == "+819012345678"
