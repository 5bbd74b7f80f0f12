"""Issue 8, B.3: bad input gets a 4xx with a message in Japanese and English, never a
500, and never a half-saved or poisoned row; an odd row already in the database never
takes a page down; request bodies are capped before they are read."""
import http.client
import json
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.db import connection
from django.utils import timezone

from notifications.models import ChannelPreference
from tenants.context import tenant_scope
from tests.conftest import HOST_A, TenantClient
from watch import actions
from watch.models import Assignment, ContactLog, Device, Resident
from watch.serializers import ContactInputSerializer

NOT_ALLOWED = ("The request contains a character that is not allowed (a NUL byte or a lone surrogate).",
               "使用できない文字（NUL文字または対になっていないサロゲート）が含まれています。")
TOO_DEEP = ("The JSON is nested too deeply.", "JSONの入れ子が深すぎます。")
NOT_AN_OBJECT = ("The request body must be a JSON object.", "リクエストの本文はJSONオブジェクトにしてください。")
NUMBER_OUT_OF_RANGE = ("A number is out of range.", "数値が範囲外です。")
ID_OUT_OF_RANGE = ("An id in the address is out of range.", "アドレスのIDが範囲外です。")
HUGE_IDS = [99999999999999999999, 2**63]


@pytest.fixture
def clients(tenant_a):
    """An English and a Japanese client of tenant A, not signed in."""
    return TenantClient(HOST_A, language="en"), TenantClient(HOST_A, language="ja")


def signed_in(clients, username):
    for client in clients:
        client.sign_in(username)
    return clients


def message_of(response) -> str:
    if response["Content-Type"].startswith("application/json"):
        body = response.json()
        return body.get("detail") or next(iter(body.values()))[0]
    return response.content.decode()


def assert_refused(requests, messages, status=HTTPStatus.BAD_REQUEST):
    """Each request, made by the English and the Japanese client, is refused with the message."""
    for send in requests:
        for language, message in zip(("en", "ja"), messages, strict=True):
            response = send(language)
            assert response.status_code == status, (language, response.status_code, response.content[:300])
            assert message_of(response) == message, (language, response.content[:300])


def counts() -> dict:
    with tenant_scope("tenant_a"):
        return {"contacts": ContactLog.objects.count(), "residents": Resident.objects.count(),
                "assignments": Assignment.objects.count(), "signals": Device.objects.exclude(last_signal_at=None)
                .count(), "preferences": ChannelPreference.objects.exclude(webpush_subscription=None).count()}


def post_json(client, path, body: str, **headers):
    return client.post(path, body, content_type="application/json", **headers)


@pytest.fixture
def device_token(hanako, admin_a):
    with tenant_scope("tenant_a"):
        _device, token = actions.do_register_device(actor=admin_a, resident=hanako, kind=Device.Kind.BUTTON)
    return token


def test_a_nul_byte_in_a_form_field_or_query_string_is_400_and_saves_nothing(clients, staff_a, hanako,
                                                                            device_token):
    en, ja = signed_in(clients, "staff-a")
    by = {"en": en, "ja": ja}
    before = counts()
    assert_refused([
        lambda lang: by[lang].post(f"/watch/residents/{hanako.pk}/contacts/",
                                   {"channel": "visit", "outcome": "fine", "note": "元気\x00"}),
        lambda lang: by[lang].post(f"/watch/residents/{hanako.pk}/consent/",
                                   {"status": "given", "note": "\x00"}),
        lambda lang: by[lang].get("/watch/?area=1%00"),
        lambda lang: by[lang].get(f"/api/v1/residents/{hanako.pk}/contacts/?page=%00"),
        lambda lang: by[lang].post(f"/ping/{device_token}/ok", {"battery": "\x00"}),
        lambda lang: by[lang].get(f"/ping/{device_token}?\x00=1"),
    ], NOT_ALLOWED)
    assert counts() == before


def test_a_nul_byte_or_lone_surrogate_in_json_is_400_and_saves_nothing(clients, volunteer_a, hanako):
    en, ja = clients
    by = {"en": en, "ja": ja}
    before = counts()
    assert_refused([
        # The token endpoint looked the name up in the database with it: 500.
        lambda lang: post_json(by[lang], "/api/v1/auth/token/", '{"username": "volunteer-a\\u0000", "password": "x"}'),
        lambda lang: post_json(by[lang], "/api/v1/auth/token/", '{"username": "\\ud800", "password": "x"}'),
        lambda lang: post_json(by[lang], "/api/v1/auth/token/", '{"username\\u0000": "a"}'),
    ], NOT_ALLOWED)
    signed_in(clients, "volunteer-a")
    assert_refused([
        lambda lang: post_json(by[lang], "/api/v1/contacts/",
                               f'{{"resident": {hanako.pk}, "channel": "visit", "outcome": "fine", '
                               '"note": "a\\udfffb"}'),
        lambda lang: post_json(by[lang], "/notifications/webpush/subscription/",
                               '{"subscription": {"endpoint": "https://fcm.googleapis.com/\\u0000"}}'),
    ], NOT_ALLOWED)
    assert counts() == before


def test_a_valid_surrogate_pair_in_json_is_an_ordinary_character(client_a, volunteer_a, hanako):
    client_a.sign_in("volunteer-a")
    response = post_json(client_a, "/api/v1/contacts/", f'{{"resident": {hanako.pk}, "channel": "visit", '
                         '"outcome": "fine", "note": "\\ud83d\\ude0a"}')
    assert response.status_code == HTTPStatus.CREATED, response.content
    assert response.json()["note"] == "😊"


def test_deeply_nested_json_is_400_on_the_api_and_the_line_webhook(clients, volunteer_a, hanako, settings):
    import base64
    import hashlib
    import hmac

    settings.LINE_CHANNEL_SECRET = "line-secret"
    deep = '{"events": [], "x": ' + "[" * 10_000 + "]" * 10_000 + "}"
    signature = base64.b64encode(hmac.new(b"line-secret", deep.encode(), hashlib.sha256).digest()).decode()
    en, ja = signed_in(clients, "volunteer-a")
    by = {"en": en, "ja": ja}
    before = counts()
    assert_refused([
        lambda lang: post_json(by[lang], "/api/v1/contacts/", "[" * 10_000 + "]" * 10_000),
        lambda lang: post_json(by[lang], "/api/v1/contacts/", '{"note": ' + "[" * 100 + "]" * 100 + "}"),
        lambda lang: post_json(by[lang], "/notifications/line/webhook/", deep, HTTP_X_LINE_SIGNATURE=signature),
    ], TOO_DEEP)
    assert counts() == before


@pytest.mark.parametrize("body", ["[]", '"abc"', "1", "null", "true"])
def test_a_json_body_that_is_not_an_object_is_400(clients, volunteer_a, body):
    en, ja = clients
    by = {"en": en, "ja": ja}
    assert_refused([lambda lang: post_json(by[lang], "/api/v1/auth/token/", body)], NOT_AN_OBJECT)
    signed_in(clients, "volunteer-a")
    assert_refused([
        lambda lang: post_json(by[lang], "/api/v1/contacts/", body),
        lambda lang: post_json(by[lang], "/notifications/webpush/subscription/", body),
    ], NOT_AN_OBJECT)


def test_ids_out_of_range_in_bodies_are_400_and_save_nothing(clients, staff_a, hanako):
    en, ja = signed_in(clients, "staff-a")
    by = {"en": en, "ja": ja}
    before = counts()
    contact = '{"resident": %s, "channel": "visit", "outcome": "fine"}'
    assert_refused([lambda lang, i=i: post_json(by[lang], "/api/v1/contacts/", contact % i) for i in HUGE_IDS],
                   NUMBER_OUT_OF_RANGE)
    # Given as text, or below 1, they are the id field's own errors.
    assert_refused([lambda lang: post_json(by[lang], "/api/v1/contacts/", contact % '"99999999999999999999"')],
                   ("Ensure this value is less than or equal to 9223372036854775807.",
                    "この値は9223372036854775807以下にしてください。"))
    assert_refused([lambda lang: post_json(by[lang], "/api/v1/contacts/", contact % -1)],
                   ("Ensure this value is greater than or equal to 1.", "この値は1以上にしてください。"))
    assert counts() == before


def test_ids_out_of_range_in_addresses_are_400(clients, staff_a, hanako):
    en, ja = signed_in(clients, "staff-a")
    by = {"en": en, "ja": ja}
    before = counts()
    assert_refused([request for huge in HUGE_IDS for request in (
        lambda lang, huge=huge: by[lang].get(f"/watch/residents/{huge}/"),
        lambda lang, huge=huge: by[lang].post(f"/watch/residents/{huge}/contacts/", {"channel": "visit",
                                                                                     "outcome": "fine"}),
        lambda lang, huge=huge: by[lang].get(f"/api/v1/residents/{huge}/contacts/"),
        lambda lang, huge=huge: by[lang].post(f"/api/v1/devices/{huge}/revoke/"),
        lambda lang, huge=huge: by[lang].post(f"/notifications/{huge}/read/"),
    )], ID_OUT_OF_RANGE)
    assert counts() == before


def test_the_contact_serializer_refuses_times_outside_the_window(clients, volunteer_a, hanako):
    """Before any lookup, on the API as in the action (watch.actions.occurred_in_window)."""
    base = {"resident": 1, "channel": "visit", "outcome": "fine"}
    for at, message in [
        ("1899-12-31T23:59:00+09:00", "The date is before 1900. Check the date."),
        ((timezone.now() + timedelta(minutes=6)).isoformat(), "The time is in the future. Check the phone's clock."),
        ("0001-01-01T05:00:00+14:00", "Datetime value out of range."),
    ]:
        serializer = ContactInputSerializer(data={**base, "occurred_at": at})
        assert not serializer.is_valid()
        assert serializer.errors["occurred_at"] == [message]
    assert ContactInputSerializer(data={**base, "occurred_at": (timezone.now() + timedelta(minutes=4)).isoformat()}
                                  ).is_valid()
    en, ja = signed_in(clients, "volunteer-a")
    by = {"en": en, "ja": ja}
    before = counts()

    def contact(at):
        return lambda lang: post_json(by[lang], "/api/v1/contacts/", json.dumps(
            {"resident": hanako.pk, "channel": "visit", "outcome": "fine", "occurred_at": at}))

    assert_refused([contact("1899-12-31T23:59:00+09:00")],
                   ("The date is before 1900. Check the date.", "1900年より前の日付です。日付を確認してください。"))
    assert_refused([contact("0001-01-01T05:00:00+14:00")], ("Datetime value out of range.", "日時が範囲外です。"))
    assert counts() == before


def test_an_odd_row_already_in_the_database_never_takes_a_page_down(client_a, staff_a, volunteer_a, hanako):
    with tenant_scope("tenant_a"), connection.cursor() as cursor:
        cursor.execute("INSERT INTO watch_contactlog (resident_id, occurred_at, channel, outcome, note, created_at) "
                       "VALUES (%s, '0001-01-01T05:00:00+14:00', 'visit', 'fine', '', 'infinity')", [hanako.pk])
        cursor.execute("UPDATE watch_resident SET last_contact_at = '0001-01-01T05:00:00+14:00', "
                       "next_due_at = '9999-12-31T23:59:00+00:00', date_of_birth = '0044-03-15 BC' WHERE id = %s",
                       [hanako.pk])
        cursor.execute("UPDATE watch_rhythm SET alert_at = '-infinity' WHERE resident_id = %s", [hanako.pk])
    pages = [f"/watch/residents/{hanako.pk}/", f"/api/v1/residents/{hanako.pk}/contacts/",
             f"/api/v1/residents/{hanako.pk}/", "/api/v1/residents/", "/watch/"]
    client_a.sign_in("staff-a")
    for page in pages:
        assert client_a.get(page).status_code == HTTPStatus.OK, page
    timeline = client_a.get(f"/api/v1/residents/{hanako.pk}/contacts/").json()["results"]
    assert [c["occurred_at"][:4] for c in timeline] == ["0001"]
    volunteer = TenantClient(HOST_A)
    volunteer.sign_in("volunteer-a")
    for page in ["/watch/my/", f"/watch/residents/{hanako.pk}/", f"/api/v1/residents/{hanako.pk}/contacts/"]:
        assert volunteer.get(page).status_code == HTTPStatus.OK, page


def test_a_user_of_tenant_b_gets_nothing_with_such_requests(client_b, outsider_b, hanako, resident_b):
    """With A's real ids on B's host: 404, as for anything of A's; on A's host B's session means nothing."""
    with tenant_scope("tenant_a"), connection.cursor() as cursor:
        cursor.execute("UPDATE watch_resident SET last_contact_at = '0001-01-01T05:00:00+14:00' WHERE id = %s",
                       [hanako.pk])
    before = counts()
    client_b.sign_in("outsider-b")
    for page in [f"/watch/residents/{hanako.pk}/", f"/api/v1/residents/{hanako.pk}/contacts/",
                 f"/api/v1/residents/{hanako.pk}/"]:
        assert client_b.get(page).status_code == HTTPStatus.NOT_FOUND, page
    assert post_json(client_b, "/api/v1/contacts/", json.dumps(
        {"resident": hanako.pk, "channel": "visit", "outcome": "fine"})).status_code == HTTPStatus.NOT_FOUND
    on_a = TenantClient(HOST_A)
    on_a.cookies = client_b.cookies
    assert on_a.get(f"/api/v1/residents/{hanako.pk}/contacts/").status_code in (HTTPStatus.UNAUTHORIZED,
                                                                                HTTPStatus.FORBIDDEN)
    assert on_a.get(f"/watch/residents/{hanako.pk}/").status_code == HTTPStatus.FOUND  # to the sign-in page
    assert counts() == before


# Request bodies are capped before they are read (config.http.BodyLimit, on the real ASGI app).

def raw_request(url: str, method: str, path: str, headers: dict, body=None, chunks=None):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", host)
        for name, value in headers.items():
            conn.putheader(name, value)
        if chunks is not None:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        try:
            if chunks is not None:
                for chunk in chunks:
                    conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                conn.send(b"0\r\n\r\n")
            elif body:
                conn.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading it all
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.fixture
def small_limits(settings):
    settings.REQUEST_BODY_MAX_BYTES = 4096
    settings.IMPORT_BODY_MAX_BYTES = 64 * 1024


def test_a_body_declared_larger_than_the_limit_is_413_at_once(small_limits, live_server_url):
    url = live_server_url(HOST_A)
    status, text = raw_request(url, "POST", "/api/v1/contacts/", {"Content-Length": str(10**9),
                                                                   "Content-Type": "application/json"})
    assert (status, text) == (413, "リクエストが大きすぎます（上限は4 KBです）。\n")
    status, text = raw_request(url, "POST", "/ping/" + "x" * 32, {"Content-Length": "5000", "Accept-Language": "en"},
                               body=b"x" * 5000)
    assert (status, text) == (413, "The request is too large (at most 4 KB).\n")


def test_a_chunked_body_is_refused_with_413_once_it_passes_the_limit(small_limits, live_server_url):
    status, text = raw_request(live_server_url(HOST_A), "POST", "/accounts/login/", {"Accept-Language": "en"},
                               chunks=[b"a" * 1024] * 64)
    assert (status, text) == (413, "The request is too large (at most 4 KB).\n")


def test_the_residents_import_of_a_tenant_host_takes_a_larger_body(small_limits, live_server_url):
    url = live_server_url(HOST_A)
    headers = {"Content-Length": "20000", "Content-Type": "multipart/form-data; boundary=x"}
    status, _text = raw_request(url, "POST", "/watch/import/", headers, body=b"x" * 20000)
    assert status != 413  # not signed in: Django answers (the sign-in page)
    status, _text = raw_request(url, "POST", "/watch/import/", {**headers, "Content-Length": str(65 * 1024)},
                                body=b"x" * 65 * 1024)
    assert status == 413


def test_djangos_own_limit_is_kept_in_step(settings):
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == settings.REQUEST_BODY_MAX_BYTES


def test_digits_that_are_not_ascii_in_filters_and_forms_are_not_a_500(client_a, staff_a):
    """「²」 passes str.isdigit() but not int(): the residents' filters refuse it with a
    message, the preferences form ignores it."""
    client_a.sign_in("staff-a")
    assert client_a.get("/api/v1/residents/", {"area": "²"}).status_code == 400
    assert client_a.get("/watch/", {"area": "²"}).status_code == 400
    response = client_a.post("/notifications/preferences/", {"order_email": "²"})
    assert response.status_code in (200, 302, 400)
