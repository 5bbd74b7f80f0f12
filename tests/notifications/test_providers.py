"""Each provider delivers through its real client library to the local fake server."""
import base64
from urllib.parse import parse_qs

from django.core import mail

from notifications.actions import do_set_webpush_subscription
from tenants.context import tenant_scope
from tests.notifications.conftest import LINE_TOKEN, LINE_USER, TWILIO_FROM, TWILIO_SID, TWILIO_TOKEN
from tests.notifications.helpers import attempts, notify, reload, set_channels

TITLE = "山田 花子さんの見守りが遅れています"


def test_line_push_goes_through_the_sdk_with_the_token_and_the_text(
    volunteer_a, fake_providers, django_capture_on_commit_callbacks
):
    set_channels(volunteer_a, ["line", "email"], line_user_id=LINE_USER)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    [push] = fake_providers.to("/v2/bot/message/push")
    assert push.headers["Authorization"] == f"Bearer {LINE_TOKEN}"
    assert push.json()["to"] == LINE_USER
    [message] = push.json()["messages"]
    assert message["type"] == "text" and TITLE in message["text"] and "確認をお願いします。" in message["text"]
    assert push.headers["X-Line-Retry-Key"]
    assert attempts(notification) == [("line", 1, True)]
    assert reload(notification).delivered_via == "line"
    assert mail.outbox == []


def test_sms_goes_through_twilios_client_with_basic_auth_and_the_text(
    volunteer_a, fake_providers, django_capture_on_commit_callbacks
):
    set_channels(volunteer_a, ["sms"], phone="090-1234-5678")
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    [request] = fake_providers.to("/2010-04-01/")
    assert request.path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(
        f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
    form = parse_qs(request.text)
    assert form["To"] == ["+819012345678"] and form["From"] == [TWILIO_FROM]
    assert TITLE in form["Body"][0]
    assert attempts(notification) == [("sms", 1, True)]
    with tenant_scope("tenant_a"):
        assert notification.attempts.get().provider_answer.startswith("sid=SM")


def test_web_push_is_signed_with_vapid_and_encrypted_for_the_phone(
    volunteer_a, fake_providers, push_receiver, django_capture_on_commit_callbacks
):
    with tenant_scope("tenant_a"):
        do_set_webpush_subscription(user=volunteer_a, subscription=push_receiver.subscription)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a, urgent=True)
    [push] = fake_providers.to("/push/")
    assert push.path == "/push/phone-1"
    assert push.headers["Authorization"].startswith("vapid t=")
    assert push.headers["Urgency"] == "high"
    payload = push_receiver.decrypt(push.body)
    assert payload["title"] == TITLE and payload["id"] == notification.pk and payload["url"] == "/watch/residents/1/"
    assert attempts(notification) == [("webpush", 1, True)]


def test_a_push_subscription_the_browser_dropped_is_forgotten_and_the_next_channel_used(
    volunteer_a, fake_providers, push_receiver, django_capture_on_commit_callbacks
):
    with tenant_scope("tenant_a"):
        preference = do_set_webpush_subscription(user=volunteer_a, subscription=push_receiver.subscription)
    assert preference.channels == ["webpush", "email"]
    fake_providers.fail(1, status=410, path="/push/")
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("webpush", 1, False), ("email", 1, True)]
    with tenant_scope("tenant_a"):
        preference.refresh_from_db()
    assert preference.webpush_subscription is None


def test_a_channel_without_credentials_is_skipped_not_failed(
    volunteer_a, fake_providers, settings, django_capture_on_commit_callbacks
):
    set_channels(volunteer_a, ["line", "email"], line_user_id=LINE_USER)
    settings.LINE_CHANNEL_ACCESS_TOKEN = ""
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("email", 1, True)]
    assert fake_providers.requests == []


def test_a_person_without_any_reachable_channel_has_the_notification_in_the_app_only(
    tenant_a, django_capture_on_commit_callbacks
):
    from tests.conftest import make_user

    user = make_user("tenant_a", "no-mail", "volunteer")
    notification, _ = notify(django_capture_on_commit_callbacks, user)
    assert reload(notification).state == "in_app_only"
    assert attempts(notification) == []
