"""Sends whose outcome is unknown (the answer was lost after the message went out, or the
worker died during the call) are never repeated blindly; urgent notifications move to the
next channel at once. Email goes through the product's SMTP backend to a fake SMTP server."""
import time
import uuid

from django.core import mail
from django.utils import timezone

from notifications.models import DeliveryAttempt, Notification
from notifications.tasks import URGENT_QUEUE, deliver, sweep_deliveries
from tenants.context import primary_domain, tenant_scope
from tests.notifications.conftest import LINE_USER
from tests.notifications.helpers import attempts, notify, reload, set_channels

LINE_PATH = "/v2/bot/message/push"


def unknown_flags(notification) -> list[bool]:
    with tenant_scope("tenant_a"):
        return list(DeliveryAttempt.objects.filter(notification_id=notification.pk)
                    .order_by("pk").values_list("unknown", flat=True))


def test_an_email_answered_after_the_wait_for_data_is_not_sent_again_and_is_unconfirmed_not_failed(
    volunteer_a, smtp_settings, settings, captured_events, django_capture_on_commit_callbacks
):
    settings.NOTIFICATION_PROVIDER_TIMEOUT = settings.NOTIFICATION_EMAIL_DATA_TIMEOUT = 0.5
    settings.NOTIFICATION_RETRY_DELAYS = [0, 0, 0]  # retries, were it retried, at once
    smtp_settings.late(10, seconds=2.0)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert len(smtp_settings.messages) == 1  # the server has it: one copy, never four
    assert attempts(notification) == [("email", 1, False)] and unknown_flags(notification) == [True]
    notification = reload(notification)
    assert notification.state == Notification.State.UNCONFIRMED and notification.failed_at is None
    assert not [e for _g, e in captured_events if e["type"] == "notification.failed"]
    with tenant_scope("tenant_a"):
        assert DeliveryAttempt.objects.get(notification=notification).error.startswith("unknown: ")
    assert sweep_deliveries.delay("tenant_a").get() == 0  # settled: nobody sends it again


def test_an_email_whose_answer_was_lost_moves_to_the_persons_next_channel(
    volunteer_a, smtp_settings, fake_providers, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATION_PROVIDER_TIMEOUT = settings.NOTIFICATION_EMAIL_DATA_TIMEOUT = 0.5
    set_channels(volunteer_a, ["email", "line"], line_user_id=LINE_USER)
    smtp_settings.late(1, seconds=2.0)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("email", 1, False), ("line", 1, True)]
    assert len(smtp_settings.messages) == 1 and len(fake_providers.to(LINE_PATH)) == 1
    assert reload(notification).delivered_via == "line"


def test_the_longer_wait_for_the_answer_to_data_lets_a_slow_server_confirm_the_email(
    volunteer_a, smtp_settings, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATION_PROVIDER_TIMEOUT = 0.5  # connect and every command but the end of data
    settings.NOTIFICATION_EMAIL_DATA_TIMEOUT = 5
    smtp_settings.late(1, seconds=1.0)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("email", 1, True)] and len(smtp_settings.messages) == 1
    assert reload(notification).state == Notification.State.DELIVERED


def test_an_email_refused_before_data_is_a_known_failure_and_retried(
    volunteer_a, smtp_settings, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATION_RETRY_DELAYS = [0, 0, 0]
    smtp_settings.refuse(1, code=451)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("email", 1, False), ("email", 2, True)]
    assert unknown_flags(notification) == [False, False] and len(smtp_settings.messages) == 1


def test_an_email_carries_a_message_id_derived_from_the_notification(
    volunteer_a, smtp_settings, django_capture_on_commit_callbacks
):
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    key = uuid.uuid5(uuid.NAMESPACE_URL, f"mimamori:tenant_a:{notification.pk}")
    with tenant_scope("tenant_a"):
        domain = primary_domain("tenant_a")
    assert smtp_settings.message_ids() == [f"<{key}@{domain}>"]


def test_an_email_cut_short_by_a_dying_worker_is_recorded_unknown_and_not_sent_again(
    volunteer_a, fake_providers, django_capture_on_commit_callbacks
):
    set_channels(volunteer_a, ["email", "line"], line_user_id=LINE_USER)
    with django_capture_on_commit_callbacks(execute=False), tenant_scope("tenant_a"):
        from notifications.actions import do_notify

        notification, _ = do_notify(recipient=volunteer_a, kind="k", title="t", body="", dedupe_key="cut-short")
        # What a worker killed inside the SMTP call leaves: the plan, an attempt never finished.
        Notification.objects.filter(pk=notification.pk).update(plan=["email", "line"])
        DeliveryAttempt.objects.create(notification=notification, channel="email", attempt=1,
                                       started_at=timezone.now())
    assert deliver.delay("tenant_a", notification.pk).get() == "delivered"
    assert mail.outbox == []
    assert attempts(notification) == [("email", 1, False), ("line", 1, True)]
    assert unknown_flags(notification) == [True, False]
    with tenant_scope("tenant_a"):
        cut = DeliveryAttempt.objects.get(notification=notification, channel="email")
    assert cut.finished_at is None and cut.error.startswith("unknown: ")


def test_a_line_push_whose_answer_was_lost_is_repeated_with_its_retry_key(
    volunteer_a, fake_providers, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATION_PROVIDER_TIMEOUT = 0.5
    set_channels(volunteer_a, ["line", "email"], line_user_id=LINE_USER)
    fake_providers.hang(1)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("line", 1, False), ("line", 2, True)] and mail.outbox == []
    assert unknown_flags(notification) == [True, False]
    assert len({r.headers["X-Line-Retry-Key"] for r in fake_providers.to(LINE_PATH)}) == 1


def test_a_refused_connection_is_known_not_sent(volunteer_a, fake_providers, settings,
                                                django_capture_on_commit_callbacks):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        settings.LINE_API_BASE = f"http://127.0.0.1:{probe.getsockname()[1]}"
    set_channels(volunteer_a, ["line"], line_user_id=LINE_USER)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert unknown_flags(notification) == [False] * 4
    assert reload(notification).state == Notification.State.FAILED


def test_an_urgent_notification_moves_to_the_next_channel_at_once_when_the_provider_hangs(
    volunteer_a, fake_providers, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATION_PROVIDER_TIMEOUT = 10
    settings.NOTIFICATION_URGENT_TIMEOUT = 0.5
    settings.NOTIFICATION_RETRY_DELAYS = [10, 30, 90]
    set_channels(volunteer_a, ["line", "email"], line_user_id=LINE_USER)
    fake_providers.hang(1)
    started = time.monotonic()
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a, urgent=True)
    assert time.monotonic() - started < 3  # the urgent timeout, not the usual 10 s, then email at once
    assert attempts(notification) == [("line", 1, False), ("email", 1, True)] and len(mail.outbox) == 1
    assert reload(notification).delivered_via == "email"


def test_an_urgent_notification_on_its_last_channel_still_retries_it(
    volunteer_a, fake_providers, settings, django_capture_on_commit_callbacks
):
    set_channels(volunteer_a, ["line"], line_user_id=LINE_USER)
    fake_providers.fail(1, status=503)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a, urgent=True)
    assert attempts(notification) == [("line", 1, False), ("line", 2, True)]


def test_a_non_urgent_notification_retries_the_same_channel_first(
    volunteer_a, fake_providers, settings, django_capture_on_commit_callbacks
):
    set_channels(volunteer_a, ["line", "email"], line_user_id=LINE_USER)
    fake_providers.fail(1, status=503)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("line", 1, False), ("line", 2, True)] and mail.outbox == []


def test_urgent_deliveries_are_routed_to_their_own_queue():
    from config.celery import app

    def queue(*args):
        return app.amqp.router.route({}, deliver.name, args=args, kwargs={})["queue"].name

    assert queue("tenant_a", 1, True) == URGENT_QUEUE
    assert queue("tenant_a", 1, False) == queue("tenant_a", 1) == app.conf.task_default_queue


def test_a_provider_that_stopped_answering_is_paused_after_three_silences_and_urgent_ones_go_on(
        tenant_a, fake_providers, settings, django_capture_on_commit_callbacks):
    """LINE hangs. Three attempts each wait out the timeout; then LINE is not called for a
    while: the next notifications cost no wait and no attempt (they are due again when the
    pause ends, their retries untouched), and an urgent one goes to the person's email at once."""
    from notifications.delivery import BREAKER
    from tests.conftest import make_user

    settings.NOTIFICATION_PROVIDER_TIMEOUT = 0.5
    settings.NOTIFICATION_RETRY_DELAYS = [60, 60, 60]
    fake_providers.hang(100, path="/v2/bot/message/push")
    people = [make_user("tenant_a", f"line-{n}", "volunteer", email=f"line-{n}@example.jp") for n in range(6)]
    for n, person in enumerate(people):
        set_channels(person, ["line", "email"], line_user_id=f"U{n:032x}")
    try:
        hung = [notify(django_capture_on_commit_callbacks, person, key=f"hung:{person.pk}")[0] for person in people[:3]]
        started = time.monotonic()
        waited = [notify(django_capture_on_commit_callbacks, person, key=f"hung:{person.pk}")[0]
                  for person in people[3:5]]
        elapsed = time.monotonic() - started  # both together, less than one timeout
        urgent, _created = notify(django_capture_on_commit_callbacks, people[5], key="urgent", urgent=True)
        assert len(fake_providers.to("/v2/bot/message/push")) == 3
        assert elapsed < 0.5, elapsed
        assert [attempts(n) for n in waited] == [[], []]  # nothing tried, no retry used
        for notification in waited:
            reloaded = reload(notification)
            assert reloaded.state == "pending" and reloaded.next_attempt_at > timezone.now()
        assert all(len(attempts(n)) == 1 for n in hung)
        assert [a[0] for a in attempts(urgent)] == ["email"] and reload(urgent).state == "delivered"
        assert [m.to for m in mail.outbox] == [["line-5@example.jp"]]
    finally:
        fake_providers.release.set()
        BREAKER.open_until.clear()
        BREAKER.silent.clear()
