"""A tenant's own LINE, SMS and email accounts: set by its administrator (page or
command), used for its people only, secrets never shown again."""
import base64
import io
from urllib.parse import parse_qs

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from notifications.models import ProviderSettings
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, HOST_B, PASSWORD, TenantClient, make_user
from tests.notifications.conftest import LINE_SECRET, LINE_TOKEN, LINE_USER, TWILIO_FROM, TWILIO_SID, TWILIO_TOKEN
from tests.notifications.helpers import attempts, notify, set_channels
from tests.notifications.test_line_webhook import body_with_text, sign

URL = "/notifications/providers/"
A_SID = "AC" + "a" * 32
A_TOKEN = "b" * 32
A_FROM = "+815099990000"
A_LINE_TOKEN = "kyotanabe-line-token-0123456789"
A_LINE_SECRET = "c" * 32
A_OWN = {"line_channel_access_token": A_LINE_TOKEN, "line_channel_secret": A_LINE_SECRET,
         "twilio_account_sid": A_SID, "twilio_auth_token": A_TOKEN, "twilio_from_number": "050-9999-0000",
         "email_from": "京田辺市 見守り <mimamori@city.kyotanabe.example.jp>"}


@pytest.fixture
def admin_client(admin_a):
    client = TenantClient(HOST_A)
    client.sign_in(admin_a.username)
    return client


@pytest.fixture
def accounts(fake_providers):
    """The fake knows tenant A's own Twilio account and LINE token besides the platform's."""
    fake_providers.twilio_accounts[A_SID] = A_TOKEN
    fake_providers.line_tokens.add(A_LINE_TOKEN)
    return fake_providers


def test_the_administrator_sets_the_accounts_and_secrets_are_stored_sealed_and_never_shown(admin_client, accounts):
    response = admin_client.post(URL, A_OWN)
    assert response.status_code == 302
    with tenant_scope("tenant_a"):
        row = ProviderSettings.objects.get()
    assert row.twilio_account_sid == A_SID and row.twilio_from_number == A_FROM
    for secret in (A_TOKEN, A_LINE_TOKEN, A_LINE_SECRET):
        assert secret not in (row.twilio_auth_token + row.line_channel_access_token + row.line_channel_secret)
    page = admin_client.get(URL)
    text = page.content.decode()
    assert page.status_code == 200 and A_SID in text and A_FROM in text
    assert "Your own LINE official account." in text and "Your own Twilio account or number." in text
    assert f"://{HOST_A}/notifications/line/webhook/</code>" in text  # to paste in LINE's console
    for secret in (A_TOKEN, A_LINE_TOKEN, A_LINE_SECRET):
        assert secret not in text
    # Saving again with the secrets blank keeps them.
    assert admin_client.post(URL, {**A_OWN, "line_channel_access_token": "", "line_channel_secret": "",
                                   "twilio_auth_token": ""}).status_code == 302
    with tenant_scope("tenant_a"):
        from notifications import credentials

        creds = credentials.current()
    assert (creds.twilio_auth_token, creds.line_channel_access_token) == (A_TOKEN, A_LINE_TOKEN)


def test_a_tenants_people_are_reached_through_its_own_accounts_and_the_others_through_the_platforms(
    admin_client, accounts, volunteer_a, tenant_b, django_capture_on_commit_callbacks
):
    admin_client.post(URL, A_OWN)
    volunteer_b = make_user("tenant_b", "vol-b", User.Role.VOLUNTEER, email="vol-b@example.jp")
    for user, schema in ((volunteer_a, "tenant_a"), (volunteer_b, "tenant_b")):
        set_channels(user, ["sms"], schema=schema, phone="090-1234-5678")
        notify(django_capture_on_commit_callbacks, user, schema=schema)
    sent = {r.path.split("/")[3]: r for r in accounts.to("/2010-04-01/")}
    assert set(sent) == {A_SID, TWILIO_SID}
    assert sent[A_SID].headers["Authorization"] == "Basic " + base64.b64encode(f"{A_SID}:{A_TOKEN}".encode()).decode()
    assert parse_qs(sent[A_SID].text)["From"] == [A_FROM]
    assert parse_qs(sent[TWILIO_SID].text)["From"] == [TWILIO_FROM]
    assert sent[TWILIO_SID].headers["Authorization"] == "Basic " + base64.b64encode(
        f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()

    set_channels(volunteer_a, ["line"], line_user_id=LINE_USER)
    set_channels(volunteer_b, ["line"], schema="tenant_b", line_user_id=LINE_USER)
    notify(django_capture_on_commit_callbacks, volunteer_a, key="k2")
    notify(django_capture_on_commit_callbacks, volunteer_b, key="k2", schema="tenant_b")
    assert [r.headers["Authorization"] for r in accounts.to("/v2/bot/message/push")] == [
        f"Bearer {A_LINE_TOKEN}", f"Bearer {LINE_TOKEN}"]

    set_channels(volunteer_a, ["email"])
    set_channels(volunteer_b, ["email"], schema="tenant_b")
    notify(django_capture_on_commit_callbacks, volunteer_a, key="k3")
    notify(django_capture_on_commit_callbacks, volunteer_b, key="k3", schema="tenant_b")
    assert [m.from_email for m in mail.outbox] == [A_OWN["email_from"], "mimamori <noreply@mimamori.invalid>"]


def test_the_line_webhook_of_a_tenant_checks_its_own_channel_secret(admin_client, accounts, client_b, volunteer_a):
    admin_client.post(URL, A_OWN)
    body = body_with_text(LINE_USER, "はい")
    hook = "/notifications/line/webhook/"
    anonymous_a = TenantClient(HOST_A)
    assert anonymous_a.post(hook, body, content_type="application/json",
                            HTTP_X_LINE_SIGNATURE=sign(body, LINE_SECRET)).status_code == 400
    assert anonymous_a.post(hook, body, content_type="application/json",
                            HTTP_X_LINE_SIGNATURE=sign(body, A_LINE_SECRET)).status_code == 200
    # B has no account of its own: the platform's secret, and not A's.
    assert client_b.post(hook, body, content_type="application/json",
                         HTTP_X_LINE_SIGNATURE=sign(body, A_LINE_SECRET)).status_code == 400
    assert client_b.post(hook, body, content_type="application/json",
                         HTTP_X_LINE_SIGNATURE=sign(body, LINE_SECRET)).status_code == 200


def test_going_back_to_the_platforms_account(admin_client, accounts):
    admin_client.post(URL, A_OWN)
    assert admin_client.post(URL, {"line_use_platform": "1", "twilio_use_platform": "1",
                                   "email_from": ""}).status_code == 302
    with tenant_scope("tenant_a"):
        from notifications import credentials

        creds = credentials.current()
    assert creds.own == frozenset()
    assert (creds.twilio_account_sid, creds.line_channel_access_token) == (TWILIO_SID, LINE_TOKEN)


@pytest.mark.parametrize(("language", "posted", "field_message"), [
    ("en", {"twilio_account_sid": "SK123", "twilio_auth_token": A_TOKEN, "twilio_from_number": A_FROM},
     "A Twilio account SID is AC followed by 32 characters 0-9 and a-f."),
    ("ja", {"twilio_account_sid": "SK123", "twilio_auth_token": A_TOKEN, "twilio_from_number": A_FROM},
     "Twilio のアカウント SID は AC に続く 0-9・a-f の 32 文字です。"),
    ("en", {"line_channel_access_token": A_LINE_TOKEN},
     "Give both the LINE channel access token and the channel secret, or neither."),
    ("ja", {"twilio_account_sid": A_SID, "twilio_auth_token": A_TOKEN},
     "Twilio アカウントの送信元の電話番号を入力してください。"),
    ("en", {"email_from": "not an address"}, "Enter a sender like 京田辺市 見守り &lt;mimamori@example.lg.jp&gt;."),
    ("en", {"email_from": "a@example.jp, b@example.jp"},
     "Enter a sender like 京田辺市 見守り &lt;mimamori@example.lg.jp&gt;."),
    ("en", {"email_from": "X <a@example.jp>\nBcc: b@example.jp"},
     "Enter a sender like 京田辺市 見守り &lt;mimamori@example.lg.jp&gt;."),
    ("en", {"email_from": "見守り <" + "a" * 250 + "@example.jp>"},
     "Enter a sender like 京田辺市 見守り &lt;mimamori@example.lg.jp&gt;."),
    ("ja", {"twilio_from_number": A_FROM},
     "送信元の電話番号には、自団体の Twilio アカウント（アカウント SID と認証トークン）も必要です。"),
])
def test_bad_input_is_refused_with_a_message_and_nothing_saved(admin_a, accounts, language, posted, field_message):
    client = TenantClient(HOST_A, language=language)
    client.sign_in(admin_a.username)
    response = client.post(URL, {**A_OWN, "line_channel_access_token": "", "line_channel_secret": "",
                                 "twilio_account_sid": "", "twilio_auth_token": "", "twilio_from_number": "",
                                 "email_from": "", **posted})
    assert response.status_code == 400
    assert field_message in response.content.decode()
    with tenant_scope("tenant_a"):
        assert not ProviderSettings.objects.exists()


def test_only_the_tenants_administrator_sees_or_changes_the_accounts(admin_client, accounts, staff_a, volunteer_a,
                                                                   tenant_b):
    admin_client.post(URL, A_OWN)
    for user in (staff_a, volunteer_a):
        client = TenantClient(HOST_A)
        client.sign_in(user.username)
        assert client.get(URL).status_code == 403
        assert client.post(URL, {"email_from": "x@example.jp", "twilio_use_platform": "1"}).status_code == 403
    assert TenantClient(HOST_A).get(URL).status_code == 302  # to sign-in
    # B's administrator sees B's (none), nothing of A's; A's session is nothing on B.
    admin_b = make_user("tenant_b", "admin-b", User.Role.ADMIN)
    client_b = TenantClient(HOST_B)
    client_b.sign_in(admin_b.username, PASSWORD)
    text = client_b.get(URL).content.decode()
    assert A_SID not in text and "kyotanabe" not in text
    stolen = TenantClient(HOST_B)
    stolen.cookies = admin_client.cookies
    assert stolen.get(URL).status_code == 302
    with tenant_scope("tenant_a"):
        assert ProviderSettings.objects.get().twilio_account_sid == A_SID
    with tenant_scope("tenant_b"):
        assert not ProviderSettings.objects.exists()


def test_the_operator_command_sets_a_tenants_accounts_reading_secrets_from_stdin(tenant_a, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(A_TOKEN + "\n"))
    out = io.StringIO()
    call_command("configure_providers", "tenant_a", "--twilio-sid", A_SID, "--twilio-token", "-",
                 "--twilio-from", A_FROM, stdout=out)
    assert "tenant_a: SMS uses the own account" in out.getvalue()
    assert "tenant_a: LINE uses the platform's account" in out.getvalue()
    with pytest.raises(CommandError, match="twilio_account_sid"):
        call_command("configure_providers", "tenant_a", "--twilio-sid", "nope")
    with pytest.raises(CommandError, match="no tenant"):
        call_command("configure_providers", "public", "--email-from", "a@example.jp")
    with tenant_scope("tenant_a"):
        assert ProviderSettings.objects.get().twilio_account_sid == A_SID


def test_a_secret_sealed_under_another_secret_key_is_not_used_with_the_platforms_account(
    admin_client, accounts, volunteer_a, settings, django_capture_on_commit_callbacks
):
    admin_client.post(URL, A_OWN)
    settings.SECRET_KEY = "another-secret-key-0123456789-0123456789-0123456789"
    set_channels(volunteer_a, ["sms", "email"], phone="090-1234-5678")
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    # The token no longer unseals: SMS is not configured (neither A's SID with the
    # platform's token nor the platform's account), so email is used.
    assert attempts(notification) == [("email", 1, True)]
    assert accounts.to("/2010-04-01/") == []
    # Nor is LINE: not A's (it no longer unseals), and not the platform's in A's name.
    set_channels(volunteer_a, ["line", "email"], line_user_id=LINE_USER)
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a, key="k2")
    assert attempts(notification) == [("email", 1, True)]
    assert accounts.to("/v2/bot/") == []
