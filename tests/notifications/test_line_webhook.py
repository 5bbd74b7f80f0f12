"""The LINE webhook: signed requests only; a text from a linked person, or a tap on the
answer button under their own notification, is a reply, passed on once per event and
answered with LINE's reply API."""
import base64
import hashlib
import hmac
import json

import pytest

from notifications.hooks import reply_received
from notifications.models import ChannelPreference, Notification, ReceivedWebhookEvent
from tenants.context import tenant_scope
from tests.notifications.conftest import LINE_SECRET, LINE_USER
from tests.notifications.helpers import notify, set_channels

URL = "/notifications/line/webhook/"


def body_with_text(user_id: str, text: str, event_id: str = "01H") -> bytes:
    return json.dumps({"destination": "Uxxxxxxxx", "events": [{
        "type": "message", "mode": "active", "timestamp": 1700000000000, "webhookEventId": event_id,
        "deliveryContext": {"isRedelivery": False}, "replyToken": "r" * 32,
        "source": {"type": "user", "userId": user_id},
        "message": {"id": "468789577898262530", "type": "text", "text": text, "quoteToken": "q"},
    }]}, ensure_ascii=False).encode()


def body_with_postback(user_id: str, data: str, event_id: str = "01HP") -> bytes:
    return json.dumps({"destination": "Uxxxxxxxx", "events": [{
        "type": "postback", "mode": "active", "timestamp": 1700000000000, "webhookEventId": event_id,
        "deliveryContext": {"isRedelivery": False}, "replyToken": "p" * 32,
        "source": {"type": "user", "userId": user_id}, "postback": {"data": data},
    }]}).encode()


def sign(body: bytes, secret: str = LINE_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


class Replies(list):
    """What reached the hook, as (user, channel, text, event id[, notification])."""

    answer = None  # what the receiver answers the person with


@pytest.fixture
def replies():
    """This test's receiver of the hook, in place of outreach's."""
    from outreach.receivers import acknowledge_by_reply

    received = Replies()

    def receiver(sender, user, channel, text, event_id, notification, **kwargs):
        received.append((user.pk, channel, text, event_id) + ((notification.pk,) if notification else ()))
        return received.answer

    reply_received.disconnect(dispatch_uid="outreach-ack-by-reply")
    reply_received.connect(receiver, weak=False)
    yield received
    reply_received.disconnect(receiver)
    reply_received.connect(acknowledge_by_reply, dispatch_uid="outreach-ack-by-reply")


def post(client, body: bytes, signature: str | None):
    headers = {"HTTP_X_LINE_SIGNATURE": signature} if signature is not None else {}
    return client.post(URL, body, content_type="application/json", **headers)


def test_a_signed_text_from_a_linked_person_is_passed_on_as_a_reply(
    client_a, volunteer_a, fake_providers, replies
):
    set_channels(volunteer_a, ["line"], line_user_id=LINE_USER)
    body = body_with_text(LINE_USER, "大丈夫です、確認しました")
    response = post(client_a, body, sign(body))
    assert response.status_code == 200
    assert replies == [(volunteer_a.pk, "line", "大丈夫です、確認しました", "01H")]


def test_a_text_from_an_unknown_line_user_is_ignored(client_a, volunteer_a, fake_providers, replies):
    body = body_with_text("U" + "f" * 32, "こんにちは")
    assert post(client_a, body, sign(body)).status_code == 200
    assert replies == []


def test_a_line_user_of_tenant_b_is_unknown_on_tenant_a(client_a, outsider_b, fake_providers, replies):
    set_channels(outsider_b, ["line"], schema="tenant_b", line_user_id=LINE_USER)
    body = body_with_text(LINE_USER, "はい")
    assert post(client_a, body, sign(body)).status_code == 200
    assert replies == []


@pytest.mark.parametrize("signature", [None, "", "bm90IGEgc2lnbmF0dXJl", "wrong-secret"])
def test_a_bad_or_missing_signature_is_refused_and_changes_nothing(
    client_a, volunteer_a, fake_providers, replies, caplog, signature
):
    set_channels(volunteer_a, ["line"], line_user_id=LINE_USER)
    body = body_with_text(LINE_USER, "偽物")
    if signature == "wrong-secret":
        signature = sign(body, secret="not-the-secret")
    with tenant_scope("tenant_a"):
        before = (Notification.objects.count(), list(ChannelPreference.objects.values()))
    response = post(client_a, body, signature)
    assert response.status_code == 400
    assert replies == []
    with tenant_scope("tenant_a"):
        assert (Notification.objects.count(), list(ChannelPreference.objects.values())) == before
    assert any("LINE webhook refused" in r.getMessage() for r in caplog.records)


def test_a_body_changed_after_signing_is_refused(client_a, volunteer_a, fake_providers, replies):
    set_channels(volunteer_a, ["line"], line_user_id=LINE_USER)
    signature = sign(body_with_text(LINE_USER, "はい"))
    assert post(client_a, body_with_text(LINE_USER, "いいえ"), signature).status_code == 400
    assert replies == []


def test_the_webhook_refuses_everything_when_no_channel_secret_is_set(
    client_a, volunteer_a, fake_providers, settings, replies
):
    settings.LINE_CHANNEL_SECRET = ""
    body = body_with_text(LINE_USER, "はい")
    assert post(client_a, body, sign(body)).status_code == 400


def test_lines_verification_request_with_no_events_is_answered(client_a, fake_providers, replies):
    body = json.dumps({"destination": "U0", "events": []}).encode()
    assert post(client_a, body, sign(body)).status_code == 200
    assert client_a.get(URL).status_code == 405


def test_the_answer_of_whoever_listens_is_sent_back_with_the_events_reply_token(
    client_a, volunteer_a, fake_providers, replies
):
    set_channels(volunteer_a, ["line"], line_user_id=LINE_USER)
    replies.answer = "ありがとうございます"
    body = body_with_text(LINE_USER, "了解")
    assert post(client_a, body, sign(body)).status_code == 200
    [reply] = fake_providers.to("/v2/bot/message/reply")
    assert reply.headers["Authorization"] == "Bearer line-test-token"
    assert reply.json() == {"replyToken": "r" * 32, "messages": [{"type": "text", "text": "ありがとうございます"}],
                            "notificationDisabled": False}


def test_a_redelivered_event_is_passed_on_once(client_a, volunteer_a, fake_providers, replies):
    set_channels(volunteer_a, ["line"], line_user_id=LINE_USER)
    replies.answer = "了解しました"
    body = body_with_text(LINE_USER, "今日は行けません", event_id="01HTWICE")
    for _time in range(2):
        assert post(client_a, body, sign(body)).status_code == 200
    assert replies == [(volunteer_a.pk, "line", "今日は行けません", "01HTWICE")]
    assert len(fake_providers.to("/v2/bot/message/reply")) == 1
    with tenant_scope("tenant_a"):
        assert list(ReceivedWebhookEvent.objects.values_list("provider", "event_id")) == [("line", "01HTWICE")]


def test_a_tap_on_the_answer_button_passes_on_the_persons_own_notification(
    client_a, volunteer_a, fake_providers, replies, django_capture_on_commit_callbacks
):
    set_channels(volunteer_a, ["line"], line_user_id=LINE_USER)
    notification, _created = notify(django_capture_on_commit_callbacks, volunteer_a)
    body = body_with_postback(LINE_USER, f"ack:{notification.pk}")
    assert post(client_a, body, sign(body)).status_code == 200
    assert replies == [(volunteer_a.pk, "line", "", "01HP", notification.pk)]


def test_a_tap_naming_someone_elses_or_no_notification_is_not_passed_on(
    client_a, volunteer_a, staff_a, fake_providers, replies, django_capture_on_commit_callbacks
):
    set_channels(volunteer_a, ["line"], line_user_id=LINE_USER)
    theirs, _created = notify(django_capture_on_commit_callbacks, staff_a)
    for number, data in enumerate([f"ack:{theirs.pk}", "ack:999999", "ack:x", "richmenu", ""]):
        body = body_with_postback(LINE_USER, data, event_id=f"01HX{number}")
        assert post(client_a, body, sign(body)).status_code == 200
    assert replies == []
    with tenant_scope("tenant_a"):
        assert ReceivedWebhookEvent.objects.count() == 0


def test_only_notifications_that_take_an_answer_carry_the_button(volunteer_a, fake_providers,
                                                                 django_capture_on_commit_callbacks):
    set_channels(volunteer_a, ["line"], line_user_id=LINE_USER)
    answerable, _created = notify(django_capture_on_commit_callbacks, volunteer_a, key="concern:7:round:0:step:0",
                                  kind="concern")
    notify(django_capture_on_commit_callbacks, volunteer_a, key="other:1")
    first, second = (push.json()["messages"][0] for push in fake_providers.to("/v2/bot/message/push"))
    assert first["quickReply"]["items"][0]["action"]["data"] == f"ack:{answerable.pk}"
    assert "quickReply" not in second
