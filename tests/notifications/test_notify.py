"""do_notify: one notification per (recipient, dedupe key), live event, delivery once."""
import threading

from channels.db import database_sync_to_async
from django.core import mail
from django.db import connection, connections

from notifications.actions import do_mark_all_read, do_mark_read, do_notify
from notifications.models import DeliveryAttempt, Notification
from tenants.context import tenant_scope
from tests.conftest import HOST_A, make_user, websocket
from tests.notifications.helpers import attempts, notify, reload


def test_notifying_twice_with_the_same_key_gives_one_notification_and_one_delivery(
    volunteer_a, django_capture_on_commit_callbacks
):
    first, created = notify(django_capture_on_commit_callbacks, volunteer_a)
    again, created_again = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert created and not created_again
    assert again.pk == first.pk
    with tenant_scope("tenant_a"):
        assert Notification.objects.filter(recipient=volunteer_a).count() == 1
    assert attempts(first) == [("email", 1, True)]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["volunteer-a@example.jp"]
    assert "山田 花子さんの見守りが遅れています" in mail.outbox[0].subject
    assert "://tenant-a.mimamori.test/watch/residents/1/" in mail.outbox[0].body
    assert reload(first).state == "delivered" and reload(first).delivered_via == "email"


def test_the_same_key_for_two_people_notifies_each(volunteer_a, staff_a, django_capture_on_commit_callbacks):
    a, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    b, _ = notify(django_capture_on_commit_callbacks, staff_a)
    assert a.pk != b.pk
    assert len(mail.outbox) == 2


def test_a_second_delivery_task_for_a_delivered_notification_sends_nothing(
    volunteer_a, django_capture_on_commit_callbacks
):
    from notifications.tasks import deliver

    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert deliver.delay("tenant_a", notification.pk).get() == "not-due"
    assert deliver.delay("tenant_b", notification.pk).get() == "not-due"  # another tenant's id space
    assert len(mail.outbox) == 1


def test_the_new_notification_is_published_to_the_recipient_only_with_the_unread_count(
    volunteer_a, captured_events, django_capture_on_commit_callbacks
):
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    notify(django_capture_on_commit_callbacks, volunteer_a, key="concern:2:step:1", title="二件目")
    created = [(g, e) for g, e in captured_events if e["type"] == "notification.created"]
    assert [g for g, _ in created] == [f"tenant_a.user.{volunteer_a.pk}"] * 2
    assert created[0][1]["notification"]["id"] == notification.pk
    assert created[0][1]["notification"]["url"] == "/watch/residents/1/"
    assert [e["unread"] for _, e in created] == [1, 2]


def test_nothing_is_published_or_sent_when_the_callers_transaction_rolls_back(
    volunteer_a, captured_events, django_capture_on_commit_callbacks
):
    from django.db import transaction

    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        try:
            with transaction.atomic():
                do_notify(recipient=volunteer_a, kind="k", title="t", body="", dedupe_key="x")
                raise RuntimeError("the caller failed")
        except RuntimeError:
            pass
        assert not Notification.objects.exists()
    assert captured_events == [] and mail.outbox == []


def test_the_notification_reaches_the_recipients_open_page_over_the_websocket(
    run_async, client_a, volunteer_a, django_capture_on_commit_callbacks
):
    client_a.sign_in("volunteer-a")
    session = client_a.cookies["mimamori_session"].value

    def create():
        return notify(django_capture_on_commit_callbacks, volunteer_a)[0]

    async def scenario():
        async with websocket(HOST_A, session) as (connected, _, ws):
            assert connected
            await ws.receive_json_from()  # hello
            notification = await database_sync_to_async(create)()
            event = await ws.receive_json_from(timeout=5)
            assert event["type"] == "notification.created"
            assert event["notification"]["id"] == notification.pk and event["unread"] == 1

    run_async(scenario)


def test_marking_read_updates_the_count_live(volunteer_a, captured_events, django_capture_on_commit_callbacks):
    one, _ = notify(django_capture_on_commit_callbacks, volunteer_a, key="a")
    notify(django_capture_on_commit_callbacks, volunteer_a, key="b")
    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        assert do_mark_read(user=volunteer_a, notification=one) is True
        assert do_mark_read(user=volunteer_a, notification=one) is False
        assert do_mark_all_read(user=volunteer_a) == 1
    assert [e["unread"] for _, e in captured_events if e["type"] == "notification.read"] == [1, 0]


def test_two_concurrent_notifies_with_the_same_key_create_one_row_and_send_once(committed_db, settings):
    """Duplicate task delivery upstream: two callers on two connections at once."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    user = make_user("tenant_a", "volunteer-c", "volunteer", email="c@example.jp")
    results, barrier = [], threading.Barrier(2)

    def call():
        try:
            barrier.wait()
            with tenant_scope("tenant_a"):
                results.append(do_notify(recipient=user, kind="k", title="t", body="b", dedupe_key="same"))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    assert results[0][0].pk == results[1][0].pk
    assert sorted(created for _, created in results) == [False, True]
    with tenant_scope("tenant_a"):
        assert Notification.objects.count() == 1
        assert DeliveryAttempt.objects.filter(ok=True).count() == 1
    assert len(mail.outbox) == 1
    connection.set_schema_to_public()

