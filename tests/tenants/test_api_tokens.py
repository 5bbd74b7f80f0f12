"""API tokens: stored as hashes, expiring, ended by a new token, a password change, a
reset and a deactivation; a token of one tenant means nothing on another."""
import hashlib
import re
from datetime import timedelta
from http import HTTPStatus

from django.core import mail
from django.db import connection
from django.test import Client
from django.utils import timezone

from tenants.accounts.models import ApiToken
from tenants.context import tenant_scope
from tests.conftest import HOST_A, HOST_B, PASSWORD, TenantClient

TOKEN_URL = "/api/v1/auth/token/"


def obtain(username: str, host: str = HOST_A, password: str = PASSWORD, language: str = "en"):
    return Client(HTTP_HOST=host, HTTP_ACCEPT_LANGUAGE=language).post(
        TOKEN_URL, {"username": username, "password": password}, content_type="application/json")


def api(token: str, host: str = HOST_A):
    return Client(HTTP_HOST=host, HTTP_AUTHORIZATION=f"Token {token}", HTTP_ACCEPT_LANGUAGE="en").get(
        "/api/v1/residents/")


def test_a_token_is_stored_only_as_its_sha256_and_expires(volunteer_a, settings):
    token = obtain("volunteer-a").json()["token"]
    assert re.fullmatch(r"[0-9a-f]{40}", token)
    with tenant_scope("tenant_a"):
        row = ApiToken.objects.get(user=volunteer_a)
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM accounts_apitoken")
            stored = " ".join(str(v) for v in cursor.fetchone())
    assert row.key_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in stored
    expected = timezone.now() + timedelta(days=settings.API_TOKEN_TTL_DAYS)
    assert abs(row.expires_at - expected) < timedelta(minutes=1)
    assert api(token).status_code == HTTPStatus.OK
    with tenant_scope("tenant_a"):
        ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api(token).status_code == HTTPStatus.UNAUTHORIZED


def test_a_new_token_ends_the_previous_one(volunteer_a):
    first = obtain("volunteer-a").json()["token"]
    second = obtain("volunteer-a").json()["token"]
    assert api(first).status_code == HTTPStatus.UNAUTHORIZED
    assert api(second).status_code == HTTPStatus.OK


def test_a_password_change_ends_the_users_tokens(client_a, volunteer_a):
    token = obtain("volunteer-a").json()["token"]
    client_a.sign_in("volunteer-a")
    response = client_a.post("/accounts/password/", {
        "old_password": PASSWORD, "new_password1": "a-new-long-passphrase", "new_password2": "a-new-long-passphrase"})
    assert response.status_code == HTTPStatus.FOUND
    assert api(token).status_code == HTTPStatus.UNAUTHORIZED
    with tenant_scope("tenant_a"):
        assert not ApiToken.objects.exists()


def test_a_password_reset_ends_the_users_tokens(client_a, volunteer_a, django_capture_on_commit_callbacks):
    token = obtain("volunteer-a").json()["token"]
    with django_capture_on_commit_callbacks(execute=True):
        client_a.post("/accounts/password/reset/", {"email": "volunteer-a@example.jp"})
    path = re.search(r"/accounts/password/reset/\S+/", mail.outbox[0].body).group(0)
    set_url = client_a.get(path, follow=True).redirect_chain[-1][0]
    response = client_a.post(set_url, {"new_password1": "a-new-long-passphrase",
                                       "new_password2": "a-new-long-passphrase"})
    assert response.status_code == HTTPStatus.FOUND
    assert api(token).status_code == HTTPStatus.UNAUTHORIZED


def test_deactivation_ends_the_users_tokens(client_a, admin_a, volunteer_a, django_capture_on_commit_callbacks):
    token = obtain("volunteer-a").json()["token"]
    client_a.sign_in("admin-a")
    with django_capture_on_commit_callbacks(execute=True):
        client_a.post(f"/accounts/users/{volunteer_a.pk}/deactivate/", {"confirm": "yes"})
    assert api(token).status_code == HTTPStatus.UNAUTHORIZED
    with tenant_scope("tenant_a"):
        assert not ApiToken.objects.filter(user=volunteer_a).exists()


def test_a_token_of_tenant_b_is_401_on_tenant_a(outsider_b, volunteer_a):
    token = obtain("outsider-b", host=HOST_B).json()["token"]
    assert api(token, host=HOST_B).status_code == HTTPStatus.OK
    response = api(token, host=HOST_A)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json() == {"detail": "The API token is invalid or has expired."}


def test_a_wrong_token_is_401_in_japanese_by_default(tenant_a):
    response = Client(HTTP_HOST=HOST_A, HTTP_AUTHORIZATION="Token " + "0" * 40).get("/api/v1/residents/")
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json() == {"detail": "APIトークンが無効か、有効期限が切れています。"}


def test_bad_token_requests_get_400_with_a_message_and_issue_nothing(volunteer_a):
    for body in ([], "abc"):
        response = Client(HTTP_HOST=HOST_A).post(TOKEN_URL, body, content_type="application/json")
        assert response.status_code == HTTPStatus.BAD_REQUEST
    for body in ({"username": ["volunteer-a"], "password": PASSWORD}, {"username": "volunteer-a"},
                 {"username": "volunteer-a", "password": 12345}):
        for language, message in [("en", "Send the user name and the password."),
                                  ("ja", "ユーザー名とパスワードを送ってください。")]:
            response = Client(HTTP_HOST=HOST_A, HTTP_ACCEPT_LANGUAGE=language).post(
                TOKEN_URL, body, content_type="application/json")
            assert response.status_code == HTTPStatus.BAD_REQUEST, body
            assert response.json() == {"non_field_errors": [message]}
    with tenant_scope("tenant_a"):
        assert not ApiToken.objects.exists()


def test_a_session_of_tenant_b_is_not_signed_in_on_tenant_a(client_b, outsider_b, tenant_a):
    client_b.sign_in("outsider-b")
    thief = TenantClient(HOST_A)
    thief.cookies["mimamori_session"] = client_b.cookies["mimamori_session"].value
    assert thief.get("/api/v1/residents/").status_code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN)
    assert thief.get("/")["Location"].startswith("/accounts/login/")
