"""Replies on LINE and SMS acknowledge a concern only when they mean it (issue 8, B.1):
a whole acknowledging answer or the answer button, about the concern the message was
about; anything else is kept on the concern as the person's message, and the person is
told how to acknowledge. A redelivered event changes nothing."""
import json
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from notifications.actions import do_configure_providers
from notifications.models import Notification, ReceivedWebhookEvent
from outreach import actions
from outreach.models import AckLink, Concern, ConcernEvent
from outreach.replies import Outcome, answer_text, is_acknowledgement
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, TenantClient, make_user
from tests.notifications import conftest as provider_fakes
from tests.notifications.conftest import LINE_USER, TWILIO_FROM, TWILIO_SID, TWILIO_TOKEN
from tests.notifications.helpers import set_channels
from tests.notifications.test_line_webhook import sign
from tests.watch.conftest import make_resident

LINE_URL = "/notifications/line/webhook/"
SMS_URL = "/notifications/sms/webhook/"
PHONE = "+819012345678"
REFUSALS = ["了解しかねます", "了解しかねます。今日は伺えません。", "今日は行けません。明日ならOKです",
            "not ok", "back", "ok?"]
ACKNOWLEDGEMENTS = ["了解", "了解です。", "OK", "ＯＫ！", " りょうかい "]
KEPT = answer_text(Outcome.KEPT)
HOW = "「了解」"  # the Japanese answer tells the person what to tap or send
fake_providers = provider_fakes.fake_providers  # the fake LINE and Twilio, as a fixture of this module


@pytest.fixture
def volunteer(volunteer_a, fake_providers):
    """The volunteer of 花子, reached on LINE, with a phone number for SMS."""
    set_channels(volunteer_a, ["line"], line_user_id=LINE_USER, phone=PHONE)
    return volunteer_a


def raise_concern(resident, capture, cause="worried_contact") -> Concern:
    """A concern whose first step notifies the assigned volunteer (pushed to the fake LINE)."""
    with capture(execute=True), tenant_scope("tenant_a"):
        concern, _opened = actions.do_raise_concern(resident=resident, cause=cause)
    return concern


@pytest.fixture
def concern(volunteer, hanako, django_capture_on_commit_callbacks):
    return raise_concern(hanako, django_capture_on_commit_callbacks)


def line_event(event_id: str, user_id: str = LINE_USER, *, text: str | None = None, postback: str | None = None,
               redelivery: bool = False) -> dict:
    event = {"mode": "active", "timestamp": 1700000000000, "webhookEventId": event_id,
             "deliveryContext": {"isRedelivery": redelivery}, "replyToken": f"token-{event_id}",
             "source": {"type": "user", "userId": user_id}}
    if postback is not None:
        return {**event, "type": "postback", "postback": {"data": postback}}
    return {**event, "type": "message", "message": {"id": "4687", "type": "text", "text": text, "quoteToken": "q"}}


def post_line(client, *events, secret=None):
    body = json.dumps({"destination": "U0", "events": list(events)}, ensure_ascii=False).encode()
    return client.post(LINE_URL, body, content_type="application/json",
                       HTTP_X_LINE_SIGNATURE=sign(body, **({"secret": secret} if secret else {})))


def sms_params(text: str, sid: str = "SM" + "1" * 32, sender: str = PHONE, account: str = TWILIO_SID) -> dict:
    return {"MessageSid": sid, "AccountSid": account, "From": sender, "To": TWILIO_FROM, "Body": text,
            "NumMedia": "0"}


def post_sms(client, params: dict, token: str = TWILIO_TOKEN, signed_for: str | None = None, signature=None):
    """As Twilio posts it: a form, signed over the full URL and the parameters."""
    url = f"http://{signed_for or client.host}{SMS_URL}"
    if signature is None:
        signature = RequestValidator(token).compute_signature(url, params)
    headers = {"HTTP_X_TWILIO_SIGNATURE": signature} if signature else {}
    return client.post(SMS_URL, urlencode(params), content_type="application/x-www-form-urlencoded", **headers)


def state(concern) -> str:
    with tenant_scope("tenant_a"):
        return Concern.objects.get(pk=concern.pk).state


def messages(concern) -> list[tuple[str, int]]:
    with tenant_scope("tenant_a"):
        return list(ConcernEvent.objects.filter(concern=concern, kind=ConcernEvent.Kind.MESSAGE)
                    .values_list("note", "actor_id"))


def rows() -> tuple:
    """Everything a reply could change."""
    with tenant_scope("tenant_a"):
        return (list(Concern.objects.order_by("pk").values_list("pk", "state", "acknowledged_by_id")),
                ConcernEvent.objects.count(), AckLink.objects.filter(used_at__isnull=False).count(),
                ReceivedWebhookEvent.objects.count())


def pushed_notification(user) -> Notification:
    with tenant_scope("tenant_a"):
        return Notification.objects.filter(recipient=user, kind="concern").latest("pk")


# The meaning of a text ------------------------------------------------------------------

@pytest.mark.parametrize("text", [*ACKNOWLEDGEMENTS, "了解しました", "対応します", "向かいます。", "はい"])
def test_whole_acknowledging_answers_are_acknowledgements(text):
    assert is_acknowledgement(text)


@pytest.mark.parametrize("text", [*REFUSALS, "", "はい、でも今日は無理です", "了解?", "ack", "OKです", "no"])
def test_refusals_questions_and_sentences_containing_ok_are_not_acknowledgements(text):
    assert not is_acknowledgement(text)


# LINE -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ACKNOWLEDGEMENTS)
def test_a_whole_acknowledging_answer_on_line_acknowledges_the_one_awaiting_concern(
    client_a, volunteer, concern, fake_providers, text
):
    assert state(concern) == "open"
    assert post_line(client_a, line_event("01HACK", text=text)).status_code == 200
    with tenant_scope("tenant_a"):
        acknowledged = Concern.objects.get(pk=concern.pk)
    assert (acknowledged.state, acknowledged.acknowledged_by_id) == ("acknowledged", volunteer.pk)
    assert messages(concern) == []
    assert fake_providers.line_replies() == [("token-01HACK", answer_text(Outcome.ACKNOWLEDGED))]


@pytest.mark.parametrize("text", REFUSALS)
def test_a_refusal_on_line_does_not_acknowledge_and_is_kept_as_the_persons_message(
    client_a, volunteer, concern, fake_providers, text
):
    assert post_line(client_a, line_event("01HNO", text=text)).status_code == 200
    assert state(concern) == "open"
    assert messages(concern) == [(text, volunteer.pk)]
    [(token, answer)] = fake_providers.line_replies()
    assert token == "token-01HNO" and answer == KEPT and HOW in answer


def test_the_line_push_of_a_concern_carries_the_answer_button_and_its_text_is_unchanged(volunteer, concern,
                                                                                       fake_providers):
    from notifications.delivery import message_text

    notification = pushed_notification(volunteer)
    [push] = fake_providers.to("/v2/bot/message/push")
    [message] = push.json()["messages"]
    with tenant_scope("tenant_a"):
        assert message["text"] == message_text(notification, 5000)
    [button] = message["quickReply"]["items"]
    assert button["action"] == {"type": "postback", "label": "了解", "displayText": "了解",
                                "data": f"ack:{notification.pk}"}


def test_tapping_the_button_acknowledges_the_concern_it_was_under_not_the_latest(
    client_a, volunteer, areas_a, hanako, fake_providers, django_capture_on_commit_callbacks
):
    from watch.models import Assignment

    first = raise_concern(hanako, django_capture_on_commit_callbacks)
    [first_push] = fake_providers.to("/v2/bot/message/push")
    with tenant_scope("tenant_a"):
        other = make_resident(areas_a["block"], "田中 一郎")
        Assignment.objects.create(resident=other, user=volunteer)
    latest = raise_concern(other, django_capture_on_commit_callbacks)
    tapped = first_push.json()["messages"][0]["quickReply"]["items"][0]["action"]["data"]
    assert post_line(client_a, line_event("01HTAP", postback=tapped)).status_code == 200
    assert (state(first), state(latest)) == ("acknowledged", "open")
    assert fake_providers.line_replies() == [("token-01HTAP", answer_text(Outcome.ACKNOWLEDGED))]
    # A second tap: the concern is no longer open, nothing changes.
    before = rows()
    assert post_line(client_a, line_event("01HTAP2", postback=tapped)).status_code == 200
    assert rows()[:3] == before[:3]
    assert fake_providers.line_replies()[-1] == ("token-01HTAP2", answer_text(Outcome.ALREADY_HANDLED))


def test_a_typed_answer_with_several_concerns_awaiting_guesses_none_and_a_message_reaches_each(
    client_a, volunteer, areas_a, hanako, fake_providers, django_capture_on_commit_callbacks
):
    from watch.models import Assignment

    first = raise_concern(hanako, django_capture_on_commit_callbacks)
    with tenant_scope("tenant_a"):
        other = make_resident(areas_a["block"], "田中 一郎")
        Assignment.objects.create(resident=other, user=volunteer)
    second = raise_concern(other, django_capture_on_commit_callbacks)
    for number, text in enumerate(["了解", "今日は行けません"]):
        assert post_line(client_a, line_event(f"01HSEV{number}", text=text)).status_code == 200
    assert (state(first), state(second)) == ("open", "open")
    # The answer acknowledged neither; the message is kept on both (it may be about either).
    assert messages(first) == messages(second) == [("今日は行けません", volunteer.pk)]
    assert [answer for _token, answer in fake_providers.line_replies()] == [
        answer_text(Outcome.SEVERAL), answer_text(Outcome.KEPT)]


def test_a_tap_naming_another_persons_notification_changes_nothing(
    client_a, volunteer, hanako, fake_providers, django_capture_on_commit_callbacks
):
    from watch.models import Assignment

    colleague = make_user("tenant_a", "volunteer-a2", User.Role.VOLUNTEER)
    with tenant_scope("tenant_a"):
        Assignment.objects.create(resident=hanako, user=colleague)
    concern = raise_concern(hanako, django_capture_on_commit_callbacks)
    theirs = pushed_notification(colleague)
    before = rows()
    assert post_line(client_a, line_event("01HOTHER", postback=f"ack:{theirs.pk}")).status_code == 200
    assert state(concern) == "open" and rows() == before
    assert fake_providers.line_replies() == []


def test_a_redelivered_line_event_changes_nothing(client_a, volunteer, concern, fake_providers):
    event = line_event("01HSAME", text="今日は行けません")
    assert post_line(client_a, event).status_code == 200
    after_first = rows()
    assert post_line(client_a, {**event, "deliveryContext": {"isRedelivery": True}}).status_code == 200
    assert rows() == after_first
    assert messages(concern) == [("今日は行けません", volunteer.pk)]
    assert len(fake_providers.line_replies()) == 1
    with tenant_scope("tenant_a"):
        assert list(ReceivedWebhookEvent.objects.values_list("provider", "event_id")) == [("line", "01HSAME")]


def test_a_redelivered_acknowledgement_after_the_concern_reopened_elsewhere_changes_nothing(
    client_a, volunteer, concern, fake_providers
):
    event = line_event("01HACKTWICE", text="了解")
    post_line(client_a, event)
    assert state(concern) == "acknowledged"
    with tenant_scope("tenant_a"):  # set back, as if a later round was waiting again
        Concern.objects.filter(pk=concern.pk).update(state="open", acknowledged_by=None)
        AckLink.objects.update(used_at=None)
    post_line(client_a, event)
    assert state(concern) == "open"


def test_a_reply_with_nothing_awaiting_changes_nothing(client_a, volunteer, fake_providers):
    before = rows()
    post_line(client_a, line_event("01HNONE", text="了解"))
    assert rows()[:3] == before[:3]
    assert fake_providers.line_replies() == [("token-01HNONE", answer_text(Outcome.NOTHING))]


def test_a_line_signature_of_tenant_a_is_refused_on_tenant_bs_host(client_b, volunteer, concern, fake_providers):
    own_secret = "c" * 32
    with tenant_scope("tenant_a"):
        do_configure_providers(actor=None, line_channel_access_token="kyotanabe-line-token-0123456789",
                               line_channel_secret=own_secret)
    assert post_line(client_b, line_event("01HB", text="了解"), secret=own_secret).status_code == 400
    assert state(concern) == "open"


def in_language(response, language: str) -> bool:
    """The refusal's message is in Japanese for "ja", in English for "en"."""
    text = response.content.decode()
    text = json.loads(text)["detail"] if response["Content-Type"].startswith("application/json") else text
    japanese = any("\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff" for c in text)
    return bool(text.strip()) and japanese == (language == "ja")


@pytest.mark.parametrize("language", ["ja", "en"])
def test_an_unreadable_line_body_is_refused_in_the_requests_language(volunteer, concern, fake_providers, language):
    client = TenantClient(HOST_A, language=language)
    before = rows()
    text_with_nul = json.dumps({"destination": "U0", "events": [line_event("01HNUL", text="了解\x00")]}).encode()
    for body in (b"{not json", "了解".encode("utf-16"), b'{"destination": "U0", "events": [{"type": "message"}]}',
                 text_with_nul):
        response = client.post(LINE_URL, body, content_type="application/json", HTTP_X_LINE_SIGNATURE=sign(body))
        assert response.status_code == 400 and in_language(response, language), body
    assert rows() == before


# SMS --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ACKNOWLEDGEMENTS)
def test_a_whole_acknowledging_answer_by_sms_acknowledges_the_concern(client_a, volunteer, concern, text):
    response = post_sms(client_a, sms_params(text))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/xml")
    assert state(concern) == "acknowledged"
    assert f"<Message>{answer_text(Outcome.ACKNOWLEDGED)}</Message>" in response.content.decode()


@pytest.mark.parametrize("text", REFUSALS)
def test_a_refusal_by_sms_does_not_acknowledge_and_is_kept_as_the_persons_message(client_a, volunteer, concern,
                                                                                  text):
    response = post_sms(client_a, sms_params(text))
    assert response.status_code == 200
    assert state(concern) == "open"
    assert messages(concern) == [(text, volunteer.pk)]
    assert "<Message>" in response.content.decode() and HOW in response.content.decode()


def test_a_redelivered_sms_changes_nothing(client_a, volunteer, concern):
    params = sms_params("明日なら伺えます")
    assert post_sms(client_a, params).status_code == 200
    after_first = rows()
    again = post_sms(client_a, params)
    assert again.status_code == 200 and "<Message>" not in again.content.decode()
    assert rows() == after_first and len(messages(concern)) == 1


def test_an_sms_from_an_unknown_number_or_a_tenant_b_persons_number_changes_nothing(
    client_a, volunteer, concern, outsider_b
):
    set_channels(outsider_b, [], schema="tenant_b", phone="+819099998888")
    before = rows()
    for number, sender in enumerate(["+819011112222", "+819099998888"]):
        response = post_sms(client_a, sms_params("了解", sid=f"SM{number:032x}", sender=sender))
        assert response.status_code == 200 and "<Message>" not in response.content.decode()
    assert rows() == before


@pytest.mark.parametrize("signature", [None, "", "bm90IGEgc2lnbmF0dXJl", "wrong-token"])
def test_an_unsigned_or_badly_signed_sms_is_refused_and_changes_nothing(client_a, volunteer, concern, signature):
    params = sms_params("了解")
    if signature is None:
        response = post_sms(client_a, params, signature="")
    elif signature == "wrong-token":
        response = post_sms(client_a, params, token="f" * 32)
    else:
        response = post_sms(client_a, params, signature=signature or "")
    assert response.status_code == 403
    assert state(concern) == "open" and rows()[3] == 0


def test_an_sms_body_changed_after_signing_is_refused(client_a, volunteer, concern):
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"http://{HOST_A}{SMS_URL}", sms_params("いいえ"))
    assert post_sms(client_a, sms_params("了解"), signature=signature).status_code == 403
    assert state(concern) == "open"


def test_tenant_as_twilio_signature_is_refused_on_tenant_bs_host(client_b, volunteer, concern):
    own_token = "b" * 32
    with tenant_scope("tenant_a"):
        do_configure_providers(actor=None, twilio_account_sid="AC" + "a" * 32, twilio_auth_token=own_token,
                               twilio_from_number="050-9999-0000")
    params = sms_params("了解", account="AC" + "a" * 32)
    assert post_sms(client_b, params, token=own_token).status_code == 403
    assert post_sms(client_b, params, token=own_token, signed_for=HOST_A).status_code == 403
    assert state(concern) == "open"
    # On its own host, signed with its own token, the same SMS is tenant A's.
    assert post_sms(TenantClient(HOST_A), params, token=own_token).status_code == 200
    assert state(concern) == "acknowledged"


@pytest.mark.parametrize("language, message", [("ja", "署名"), ("en", "not signed by this organisation")])
def test_an_unsigned_sms_is_refused_in_the_requests_language(volunteer, concern, language, message):
    response = post_sms(TenantClient(HOST_A, language=language), sms_params("了解"), signature="")
    assert response.status_code == 403 and message in response.content.decode()


@pytest.mark.parametrize("language, message", [("ja", "読み取れません"), ("en", "cannot be read")])
def test_a_signed_sms_without_its_fields_is_refused_in_the_requests_language(volunteer, concern, language,
                                                                            message):
    client = TenantClient(HOST_A, language=language)
    for params in ({**sms_params("了解"), "MessageSid": "x"}, {"AccountSid": TWILIO_SID, "From": PHONE},
                   {k: v for k, v in sms_params("了解").items() if k != "Body"}):
        response = post_sms(client, params)
        assert response.status_code == 400 and message in response.content.decode()
    response = client.post(SMS_URL, b'{"Body": "\\u4e86\\u89e3"}', content_type="application/json",
                           HTTP_X_TWILIO_SIGNATURE=RequestValidator(TWILIO_TOKEN).compute_signature(
                               f"http://{HOST_A}{SMS_URL}", {}))
    assert response.status_code in (400, 403)
    assert state(concern) == "open" and rows()[3] == 0


@pytest.mark.parametrize("language", ["ja", "en"])
def test_an_sms_with_a_nul_byte_is_refused_and_changes_nothing(volunteer, concern, language):
    before = rows()
    response = post_sms(TenantClient(HOST_A, language=language), sms_params("行けま\x00せん"))
    assert response.status_code == 400 and in_language(response, language)
    assert rows() == before


def test_the_sms_webhook_of_tenant_b_knows_nobody_of_tenant_a(client_b, volunteer, concern, fake_providers):
    response = post_sms(client_b, sms_params("了解"))
    assert response.status_code == 200 and "<Message>" not in response.content.decode()
    assert state(concern) == "open"
