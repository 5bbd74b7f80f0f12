# ruff: noqa: F811 - pytest fixtures imported from tests.notifications.conftest are parameters here
"""The automated call: the call the dispatcher places, the TwiML it plays, and the key
the resident presses (only an answer key counts)."""
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone
from twilio.request_validator import RequestValidator

from outreach import asking
from outreach.answers import answer_token
from outreach.models import Answer, Ask, SafetyCheck
from tenants.context import tenant_scope
from tests.conftest import HOST_A
from tests.notifications.conftest import TWILIO_SID, TWILIO_TOKEN, fake_providers  # noqa: F401
from watch.models import Area, Channel, Resident

pytestmark = pytest.mark.django_db


def signed_post(client, path: str, params: dict, token: str = TWILIO_TOKEN):
    url = f"http://{client.host}{path}"
    params = {"AccountSid": TWILIO_SID, "CallSid": "CA" + "1" * 32, **params}
    signature = RequestValidator(token).compute_signature(url, params)
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


def make_ask(schema: str, *, kind=Ask.Kind.SAFETY) -> Ask:
    with tenant_scope(schema):
        area = Area.objects.create(name="大住", kind=Area.Kind.DISTRICT)
        Resident.objects.create(name="山田 花子", area=area, phone="075-111-2222")
        check = None
        if kind == Ask.Kind.SAFETY:
            check = SafetyCheck.objects.create(title="訓練", question="安否確認の訓練です。ご無事ですか？",
                                               state=SafetyCheck.State.OPEN, channels=["voice"],
                                               deadline=timezone.now() + timedelta(hours=2))
            asking.do_create_asks(check, Resident.objects.all())
        else:
            asking.do_create_checkin_asks(timezone.localdate(), Resident.objects.all())
        return Ask.objects.select_related("safety_check", "resident").get()


@pytest.fixture
def call(fake_providers, tenant_a):
    """A voice ask sent by the dispatcher: the path of the TwiML the call fetches."""
    ask = make_ask("tenant_a")
    with tenant_scope("tenant_a"):
        assert asking.do_dispatch() == 1
    [placed] = fake_providers.calls
    assert placed["to"] == "+81751112222"
    url = urlsplit(placed["url"])
    assert url.netloc == HOST_A
    return ask, url.path


def test_the_call_plays_the_question_and_gathers_one_key(call, client_a):
    _ask, path = call
    response = signed_post(client_a, path, {})
    assert response.status_code == 200
    twiml = response.content.decode()
    assert '<Gather action="/r/voice/' in twiml and 'numDigits="1"' in twiml
    assert '<Say language="ja-JP">安否確認の訓練です。ご無事ですか？</Say>' in twiml
    assert "元気なら 1 を、助けが必要なら 2 を押してください。" in twiml
    with tenant_scope("tenant_a"):
        assert Ask.objects.get().state == Ask.State.WAITING


def test_pressing_2_records_need_help_once(call, client_a):
    _ask, path = call
    response = signed_post(client_a, path + "answer/", {"Digits": "2"})
    assert response.status_code == 200 and "<Hangup />" in response.content.decode()
    again = signed_post(client_a, path + "answer/", {"Digits": "1"})
    assert again.status_code == 200
    with tenant_scope("tenant_a"):
        ask = Ask.objects.get()
        assert (ask.state, ask.answer, ask.answered_via) == (Ask.State.ANSWERED, Answer.NEED_HELP, Channel.VOICE)


@pytest.mark.parametrize("digits", ["", "9", "12", "*"])
def test_no_key_or_another_key_records_nothing(call, client_a, digits):
    _ask, path = call
    response = signed_post(client_a, path + "answer/", {"Digits": digits} if digits else {})
    assert response.status_code == 200
    twiml = response.content.decode()
    if digits:  # said so, asked again
        assert "<Gather" in twiml
    else:
        assert "<Hangup />" in twiml and "<Gather" not in twiml
    with tenant_scope("tenant_a"):
        assert Ask.objects.get().answer == ""


def test_a_check_in_call_offers_three_keys(fake_providers, tenant_a, client_a):
    ask = make_ask("tenant_a", kind=Ask.Kind.CHECKIN)
    with tenant_scope("tenant_a"):
        path = f"/r/voice/{answer_token(ask)}/"
    twiml = signed_post(client_a, path, {}).content.decode()
    assert "お元気ですか" in twiml
    signed_post(client_a, path + "answer/", {"Digits": "3"})
    with tenant_scope("tenant_a"):
        assert Ask.objects.get().answer == Answer.UNWELL


def test_a_request_without_a_valid_twilio_signature_is_refused(call, client_a):
    _ask, path = call
    assert client_a.post(path + "answer/", {"Digits": "1"}).status_code == 403
    assert signed_post(client_a, path + "answer/", {"Digits": "1"}, token="wrong").status_code == 403
    assert signed_post(client_a, path, {}, token="wrong").status_code == 403
    with tenant_scope("tenant_a"):
        assert Ask.objects.get().answer == ""


def test_tenant_b_token_on_tenant_a_host_is_404(fake_providers, tenant_a, tenant_b, client_a, client_b):
    ask_b = make_ask("tenant_b")
    with tenant_scope("tenant_b"):
        token = answer_token(ask_b)
    assert signed_post(client_a, f"/r/voice/{token}/", {}).status_code == 404
    assert signed_post(client_a, f"/r/voice/{token}/answer/", {"Digits": "1"}).status_code == 404
    assert signed_post(client_a, "/r/voice/not-a-token/answer/", {"Digits": "1"}).status_code == 404
    with tenant_scope("tenant_b"):
        assert Ask.objects.get().answer == ""
    assert signed_post(client_b, f"/r/voice/{token}/answer/", {"Digits": "1"}).status_code == 200
