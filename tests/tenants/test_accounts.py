import re
import threading
import time
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.contrib.sessions.models import Session
from django.core import mail
from django.db import connection
from django.utils import timezone

from tenants.accounts.models import Invitation, User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, HOST_B, PASSWORD, TenantClient

WRONG = "The user name or password is incorrect."


def test_user_signs_in_sees_home_and_signs_out(client_a, staff_a):
    client_a.sign_in("staff-a")
    response = client_a.get("/")
    assert response.status_code == HTTPStatus.OK
    assert "Welcome, staff-a." in response.content.decode()
    response = client_a.post("/accounts/logout/")
    assert response.status_code == HTTPStatus.FOUND
    assert client_a.get("/").status_code == HTTPStatus.FOUND


def test_wrong_password_unknown_user_and_deactivated_user_get_the_same_message(client_a, staff_a, volunteer_a):
    with tenant_scope("tenant_a"):
        User.objects.filter(pk=volunteer_a.pk).update(is_active=False)
    for username, password in [("staff-a", "wrong"), ("nobody", PASSWORD), ("volunteer-a", PASSWORD)]:
        response = client_a.post("/accounts/login/", {"username": username, "password": password})
        assert response.status_code == HTTPStatus.OK
        assert WRONG in response.content.decode()


def test_repeated_failures_are_throttled_even_with_the_right_password(client_a, staff_a):
    for _ in range(5):
        client_a.post("/accounts/login/", {"username": "staff-a", "password": "wrong"})
    response = client_a.post("/accounts/login/", {"username": "staff-a", "password": PASSWORD})
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert "Too many failed sign-in attempts" in response.content.decode()
    japanese = TenantClient(HOST_A, language="ja").post(
        "/accounts/login/", {"username": "staff-a", "password": PASSWORD}
    )
    assert "サインインの失敗が続いたため" in japanese.content.decode()


def test_throttling_in_one_tenant_does_not_lock_the_same_name_in_another(client_a, client_b, staff_a):
    from tests.conftest import make_user

    make_user("tenant_b", "staff-a", User.Role.MUNICIPAL_STAFF)
    for _ in range(5):
        client_a.post("/accounts/login/", {"username": "staff-a", "password": "wrong"},
                      REMOTE_ADDR="10.0.0.1")
    client_b.sign_in("staff-a")


def test_tenant_a_user_cannot_sign_in_on_tenant_b(client_b, staff_a):
    response = client_b.post("/accounts/login/", {"username": "staff-a", "password": PASSWORD})
    assert response.status_code == HTTPStatus.OK
    assert WRONG in response.content.decode()
    assert client_b.get("/").status_code == HTTPStatus.FOUND


def test_session_cookie_of_a_is_useless_on_b(client_a, staff_a, outsider_b):
    client_a.sign_in("staff-a")
    stolen = client_a.cookies["mimamori_session"].value
    thief = TenantClient(HOST_B)
    thief.cookies["mimamori_session"] = stolen
    response = thief.get("/")
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith("/accounts/login/")
    assert thief.get("/accounts/users/").status_code == HTTPStatus.FOUND


def test_session_copied_into_another_schema_is_refused(client_a, staff_a, tenant_b):
    """Even if A's session row turned up in B's schema, with a B user of the same id and
    password hash, the session is bound to A's schema and refused on B."""
    client_a.sign_in("staff-a")
    key = client_a.cookies["mimamori_session"].value
    with tenant_scope("tenant_a"):
        row = Session.objects.get(pk=key)
    with tenant_scope("tenant_b"):
        User.objects.create(pk=staff_a.pk, username="twin", password=staff_a.password, role=User.Role.ADMIN)
        Session.objects.create(session_key=key, session_data=row.session_data, expire_date=row.expire_date)
    thief = TenantClient(HOST_B)
    thief.cookies["mimamori_session"] = key
    response = thief.get("/")
    assert response.status_code == HTTPStatus.FOUND


def test_cookies_are_host_only(client_a, staff_a):
    response = client_a.sign_in("staff-a")
    assert response.cookies["mimamori_session"]["domain"] == ""
    assert response.cookies["mimamori_session"]["httponly"]


def invite(client, django_capture_on_commit_callbacks, **data):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post("/accounts/users/", data)


def test_admin_invites_a_volunteer_who_accepts_once(client_a, admin_a, django_capture_on_commit_callbacks):
    client_a.sign_in("admin-a")
    response = invite(client_a, django_capture_on_commit_callbacks,
                      display_name="見守り 太郎", email="taro@example.jp", role="volunteer")
    assert response.status_code == HTTPStatus.FOUND
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["taro@example.jp"]
    assert "テスト市A" in message.subject
    link = re.search(r"http://\S+/accounts/invitations/accept/\S+/", message.body).group(0)
    path = link.split(HOST_A)[1]

    newcomer = TenantClient(HOST_A)
    assert newcomer.get(path).status_code == HTTPStatus.OK
    response = newcomer.post(path, {"username": "taro", "password1": "kinjo-no-mimamori-42",
                                    "password2": "kinjo-no-mimamori-42"})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        taro = User.objects.get(username="taro")
        assert taro.role == User.Role.VOLUNTEER
        assert Invitation.objects.get(accepted_user=taro).sent_at is not None
    newcomer.sign_in("taro", "kinjo-no-mimamori-42")
    # The link works once.
    assert TenantClient(HOST_A).get(path).status_code == HTTPStatus.NOT_FOUND


def test_invitation_link_does_not_work_on_another_tenant_or_after_expiry(
    client_a, admin_a, django_capture_on_commit_callbacks
):
    client_a.sign_in("admin-a")
    invite(client_a, django_capture_on_commit_callbacks, display_name="X", email="x@example.jp", role="volunteer")
    path = re.search(r"/accounts/invitations/accept/\S+/", mail.outbox[0].body).group(0)
    assert TenantClient(HOST_B).get(path).status_code == HTTPStatus.NOT_FOUND
    with tenant_scope("tenant_a"):
        Invitation.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    assert TenantClient(HOST_A).get(path).status_code == HTTPStatus.NOT_FOUND


def test_invitation_with_bad_input_gets_400_with_messages_and_saves_nothing(client_a, admin_a):
    client_a.sign_in("admin-a")
    response = client_a.post("/accounts/users/", {"display_name": "", "email": "not-an-email", "role": "operator"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    body = response.content.decode()
    assert "Enter a valid email address." in body
    assert "Select a valid choice. operator is not one of the available choices." in body
    with tenant_scope("tenant_a"):
        assert not Invitation.objects.exists()
    assert mail.outbox == []


def test_accepting_with_mismatched_or_weak_passwords_gets_400_and_creates_nobody(
    client_a, admin_a, django_capture_on_commit_callbacks
):
    client_a.sign_in("admin-a")
    invite(client_a, django_capture_on_commit_callbacks, display_name="X", email="x@example.jp", role="volunteer")
    path = re.search(r"/accounts/invitations/accept/\S+/", mail.outbox[0].body).group(0)
    newcomer = TenantClient(HOST_A)
    response = newcomer.post(path, {"username": "x", "password1": "kinjo-no-mimamori-42", "password2": "other"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "The two passwords do not match." in response.content.decode()
    response = newcomer.post(path, {"username": "x", "password1": "1234", "password2": "1234"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "This password is too short." in response.content.decode()
    with tenant_scope("tenant_a"):
        assert not User.objects.filter(username="x").exists()


def test_volunteer_cannot_manage_users(client_a, volunteer_a):
    client_a.sign_in("volunteer-a")
    assert client_a.get("/accounts/users/").status_code == HTTPStatus.FORBIDDEN
    assert client_a.post("/accounts/users/", {"display_name": "x", "email": "x@example.jp",
                                              "role": "admin"}).status_code == HTTPStatus.FORBIDDEN


def test_admin_deactivates_a_user_who_is_signed_out_at_once(client_a, admin_a, volunteer_a, captured_events,
                                                             django_capture_on_commit_callbacks):
    volunteer = TenantClient(HOST_A)
    volunteer.sign_in("volunteer-a")
    client_a.sign_in("admin-a")
    with django_capture_on_commit_callbacks(execute=True):
        response = client_a.post(f"/accounts/users/{volunteer_a.pk}/deactivate/", {"confirm": "yes"})
    assert response.status_code == HTTPStatus.FOUND
    assert volunteer.get("/").status_code == HTTPStatus.FOUND
    assert (f"tenant_a.user.{volunteer_a.pk}", {"type": "session.ended"}) in captured_events
    response = volunteer.post("/accounts/login/", {"username": "volunteer-a", "password": PASSWORD})
    assert WRONG in response.content.decode()


def test_admin_of_b_cannot_deactivate_a_user_of_a(client_b, outsider_b, volunteer_a):
    client_b.sign_in("outsider-b")
    response = client_b.post(f"/accounts/users/{volunteer_a.pk}/deactivate/", {"confirm": "yes"})
    # Ids are per schema: either no such user in B (404) or B's own user; never A's.
    with tenant_scope("tenant_a"):
        assert User.objects.get(pk=volunteer_a.pk).is_active
    assert response.status_code in (HTTPStatus.NOT_FOUND, HTTPStatus.FOUND)


def test_admin_cannot_deactivate_themselves(client_a, admin_a):
    client_a.sign_in("admin-a")
    response = client_a.post(f"/accounts/users/{admin_a.pk}/deactivate/", {"confirm": "yes"}, follow=True)
    assert "You cannot deactivate your own account." in response.content.decode()
    with tenant_scope("tenant_a"):
        assert User.objects.get(pk=admin_a.pk).is_active


def test_password_change_clears_the_one_time_password_flag(client_a, staff_a):
    with tenant_scope("tenant_a"):
        User.objects.filter(pk=staff_a.pk).update(must_change_password=True)
    client_a.sign_in("staff-a")
    assert client_a.get("/")["Location"] == "/accounts/password/"
    response = client_a.post("/accounts/password/", {
        "old_password": PASSWORD, "new_password1": "a-new-long-passphrase", "new_password2": "a-new-long-passphrase"})
    assert response.status_code == HTTPStatus.FOUND
    assert client_a.get("/").status_code == HTTPStatus.OK


def test_password_reset_by_email_on_the_tenant_host(client_a, staff_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_a.post("/accounts/password/reset/", {"email": "staff-a@example.jp"})
    assert response.status_code == HTTPStatus.FOUND
    assert len(mail.outbox) == 1
    link = re.search(r"https?://(\S+?)(/accounts/password/reset/\S+/)", mail.outbox[0].body)
    assert link.group(1) == HOST_A
    response = client_a.get(link.group(2), follow=True)
    assert response.status_code == HTTPStatus.OK
    set_url = response.redirect_chain[-1][0]
    response = client_a.post(set_url, {"new_password1": "a-new-long-passphrase",
                                       "new_password2": "a-new-long-passphrase"})
    assert response.status_code == HTTPStatus.FOUND
    TenantClient(HOST_A).sign_in("staff-a", "a-new-long-passphrase")


def test_password_reset_for_an_address_of_another_tenant_sends_nothing(
    client_b, staff_a, tenant_b, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client_b.post("/accounts/password/reset/", {"email": "staff-a@example.jp"})
    assert callbacks == []
    assert response.status_code == HTTPStatus.FOUND
    assert mail.outbox == []


def test_language_is_japanese_by_default_and_switchable_to_english(client_a, staff_a):
    client = TenantClient(HOST_A, language="ja")
    response = client.get("/accounts/login/")
    assert '<html lang="ja">' in response.content.decode()
    assert "サインイン" in response.content.decode()
    client.post("/i18n/setlang/", {"language": "en", "next": "/accounts/login/"})
    response = client.get("/accounts/login/")
    assert '<html lang="en">' in response.content.decode()
    assert "Sign in" in response.content.decode()


# Sign-in throttling: counted before the password is checked, per account and (much
# higher) per client address, the address taken from trusted proxies only.
class CountingBackend:
    """An authentication backend that counts the passwords it was asked to check."""

    checked: list[str] = []

    def authenticate(self, request, username=None, password=None, **kwargs):
        CountingBackend.checked.append(password)
        time.sleep(0.05)  # a slow hash, so that the attempts overlap
        return None

    def get_user(self, user_id):
        return None


def sign_in_form(username: str, password: str, address: str = "192.0.2.10", **meta):
    from django.test import RequestFactory

    from tenants.accounts.forms import SignInForm

    request = RequestFactory().post("/accounts/login/", REMOTE_ADDR=address, **meta)
    return SignInForm(request, data={"username": username, "password": password})


def test_twenty_parallel_wrong_passwords_for_one_account_get_at_most_five_checked(settings):
    settings.AUTHENTICATION_BACKENDS = [f"{__name__}.CountingBackend"]
    CountingBackend.checked = []
    start = threading.Barrier(20)
    valid = []

    def attempt(i: int):
        try:
            with tenant_scope("tenant_a"):
                form = sign_in_form("staff-a", f"guess-{i}", address=f"198.51.100.{i}")
                start.wait()
                valid.append(form.is_valid())
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert valid == [False] * 20
    assert len(CountingBackend.checked) == 5


def post_login(client, username, password, **meta):
    return client.post("/accounts/login/", {"username": username, "password": password}, **meta)


def test_typos_of_several_people_behind_one_address_do_not_lock_out_the_office(client_a, staff_a):
    for name in ("clerk-1", "clerk-2", "clerk-3"):
        for _ in range(4):
            assert post_login(client_a, name, "wrong", REMOTE_ADDR="192.0.2.1").status_code == HTTPStatus.OK
    assert post_login(client_a, "staff-a", PASSWORD, REMOTE_ADDR="192.0.2.1").status_code == HTTPStatus.FOUND


def test_many_failures_from_one_address_are_throttled_at_the_address_limit(client_a, staff_a, settings):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 8
    for i in range(8):
        post_login(client_a, f"guess-{i}", "wrong", REMOTE_ADDR="192.0.2.1")
    response = post_login(client_a, "staff-a", PASSWORD, REMOTE_ADDR="192.0.2.1")
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert post_login(client_a, "staff-a", PASSWORD, REMOTE_ADDR="192.0.2.2").status_code == HTTPStatus.FOUND


def test_a_success_clears_the_account_count(client_a, staff_a):
    for _ in range(4):
        post_login(client_a, "staff-a", "wrong")
    client_a.sign_in("staff-a")
    other = TenantClient(HOST_A)
    for _ in range(4):
        assert post_login(other, "staff-a", "wrong").status_code == HTTPStatus.OK
    other.sign_in("staff-a")


def test_clients_behind_a_trusted_proxy_are_counted_by_their_own_address(client_a, staff_a, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 8
    for i in range(10):
        post_login(client_a, f"guess-{i}", "wrong", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
    response = post_login(client_a, "staff-a", PASSWORD, REMOTE_ADDR="10.0.0.2",
                          HTTP_X_FORWARDED_FOR="198.51.100.99")
    assert response.status_code == HTTPStatus.FOUND


def test_forwarded_for_from_a_peer_that_is_not_a_trusted_proxy_is_ignored(client_a, staff_a, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 8
    for i in range(8):
        post_login(client_a, f"guess-{i}", "wrong", REMOTE_ADDR="203.0.113.7",
                   HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
    response = post_login(client_a, "staff-a", PASSWORD, REMOTE_ADDR="203.0.113.7",
                          HTTP_X_FORWARDED_FOR="198.51.100.99")
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.7", "198.51.100.1", "203.0.113.7"),  # not a proxy: its header is the client's own
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.1, 10.0.0.3", "198.51.100.1"),  # read from the right
        ("10.0.0.2", "", "10.0.0.2"),
        ("10.0.0.2", "10.0.0.5", "10.0.0.5"),  # every hop trusted: the leftmost
        ("10.0.0.2", "not-an-address, 198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "bogus", "10.0.0.2"),
        ("::ffff:10.0.0.2", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_address_comes_from_trusted_proxies_only(settings, peer, forwarded, expected):
    from django.test import RequestFactory

    from tenants.accounts.forms import client_address

    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    meta = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    assert client_address(RequestFactory().get("/", REMOTE_ADDR=peer, **meta)) == expected


def test_throttled_api_token_requests_get_429_with_a_message_in_japanese_and_english(client_a, volunteer_a):
    from django.test import Client

    for _ in range(5):
        Client(HTTP_HOST=HOST_A).post("/api/v1/auth/token/", {"username": "volunteer-a", "password": "x"},
                                      content_type="application/json")
    for language, message in [
        ("en", "Too many failed sign-in attempts. Please wait 15 minutes and try again."),
        ("ja", "サインインの失敗が続いたため、一時的に制限しています。15分後にもう一度お試しください。"),
    ]:
        response = Client(HTTP_HOST=HOST_A, HTTP_ACCEPT_LANGUAGE=language).post(
            "/api/v1/auth/token/", {"username": "volunteer-a", "password": PASSWORD}, content_type="application/json")
        assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
        assert response.json() == {"detail": message}


# Password reset: links on the tenant's own domain, mailed by a task, requests limited.
def request_reset(client, email, capture, **meta):
    with capture(execute=True):
        return client.post("/accounts/password/reset/", {"email": email}, **meta)


def test_password_reset_link_is_built_on_the_tenants_primary_domain_not_the_host_header(
    staff_a, tenant_a, django_capture_on_commit_callbacks
):
    from tenants.models import Domain

    Domain.objects.create(domain="old-name.mimamori.test", tenant=tenant_a, is_primary=False)
    response = request_reset(TenantClient("old-name.mimamori.test"), "staff-a@example.jp",
                             django_capture_on_commit_callbacks)
    assert response.status_code == HTTPStatus.FOUND
    [message] = mail.outbox
    assert re.search(r"https?://(\S+?)/accounts/password/reset/\S+/", message.body).group(1) == HOST_A
    assert "old-name" not in message.body


def test_password_reset_mail_is_sent_by_a_task_after_commit_and_only_once(
    client_a, staff_a, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        client_a.post("/accounts/password/reset/", {"email": "STAFF-A@example.jp"})
    assert mail.outbox == []  # nothing before commit
    [enqueue] = callbacks
    enqueue()
    assert len(mail.outbox) == 1
    from tenants.accounts.tasks import send_password_reset_email

    # A redelivered task (same request) sends nothing more.
    assert send_password_reset_email("tenant_a", staff_a.pk, "request-1")
    assert not send_password_reset_email("tenant_a", staff_a.pk, "request-1")
    assert len(mail.outbox) == 2


def test_password_reset_requests_are_limited_per_email_with_a_429_in_japanese_and_english(
    client_a, staff_a, django_capture_on_commit_callbacks
):
    for _ in range(3):
        assert request_reset(client_a, "staff-a@example.jp", django_capture_on_commit_callbacks,
                             REMOTE_ADDR=f"192.0.2.{_}").status_code == HTTPStatus.FOUND
    response = request_reset(client_a, "staff-a@example.jp", django_capture_on_commit_callbacks,
                             REMOTE_ADDR="192.0.2.9")
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert "Too many password reset requests. Please wait an hour and try again." in response.content.decode()
    japanese = TenantClient(HOST_A, language="ja").post("/accounts/password/reset/", {"email": "staff-a@example.jp"})
    assert japanese.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert "パスワード再設定の依頼が多すぎます。" in japanese.content.decode()
    assert len(mail.outbox) == 3
    # An unknown address is limited alike: the answer tells nothing about who exists.
    for _ in range(3):
        request_reset(client_a, "nobody@example.jp", django_capture_on_commit_callbacks)
    assert request_reset(client_a, "nobody@example.jp", django_capture_on_commit_callbacks,
                         ).status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_password_reset_requests_are_limited_per_client_address(
    client_a, staff_a, settings, django_capture_on_commit_callbacks
):
    settings.PASSWORD_RESET_ADDRESS_LIMIT = 4
    for i in range(4):
        request_reset(client_a, f"someone-{i}@example.jp", django_capture_on_commit_callbacks, REMOTE_ADDR="192.0.2.1")
    response = request_reset(client_a, "staff-a@example.jp", django_capture_on_commit_callbacks,
                             REMOTE_ADDR="192.0.2.1")
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert mail.outbox == []


def test_password_reset_with_a_bad_email_gets_400_in_japanese_and_english(client_a, django_capture_on_commit_callbacks):
    for language, message in [("en", "Enter a valid email address."),
                              ("ja", "有効なメールアドレスを入力してください。")]:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = TenantClient(HOST_A, language=language).post("/accounts/password/reset/", {"email": "nope"})
        assert response.status_code == HTTPStatus.BAD_REQUEST
        assert message in response.content.decode()
        assert callbacks == []
