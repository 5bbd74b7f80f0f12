"""The LINE webhook: signed requests only; text from a linked person is a reply."""
import base64
import hashlib
import hmac
import json

import pytest

from notifications.hooks import reply_received
from notifications.models import ChannelPreference, Notification
from tenants.context import tenant_scope
from tests.notifications.conftest import LINE_SECRET, LINE_USER
from tests.notifications.helpers import set_channels

URL = "/notifications/line/webhook/"


def body_with_text(user_id: str, text: str) -> bytes:
    return json.dumps({"destination": "Uxxxxxxxx", "events": [{
        "type": "message", "mode": "active", "timestamp": 1700000000000, "webhookEventId": "01H",
        "deliveryContext": {"isRedelivery": False}, "replyToken": "r" * 32,
        "source": {"type": "user", "userId": user_id},
        "message": {"id": "468789577898262530", "type": "text", "text": text, "quoteToken": "q"},
    }]}, ensure_ascii=False).encode()


def sign(body: bytes, secret: str = LINE_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@pytest.fixture
def replies():
    received = []

    def receiver(sender, user, channel, text, event_id, **kwargs):
        received.append((user.pk, channel, text, event_id))

    reply_received.connect(receiver, weak=False)
    yield received
    reply_received.disconnect(receiver)


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
