"""Issue 8, B.8: every answer of the real ASGI application, the edge's fast path and
Django's alike, carries the same security headers (one ASGI middleware, config.http)
and honours the HTTPS redirect; answers with personal data are never stored."""
import http.client
import re
from http import HTTPStatus
from pathlib import Path

import pytest
from django.conf import settings

from tenants.accounts.models import User
from tests.conftest import HOST_A, TenantClient, make_user

UNKNOWN_TOKEN = "u" * 32
SECURITY_HEADERS = ["Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options",
                    "Cross-Origin-Opener-Policy"]


def fetch(url: str, headers: dict | None = None):
    """(status, headers) of a GET to the live server under the URL's host name; redirects are not followed."""
    host_port, _slash, path = url.removeprefix("http://").partition("/")
    connection = http.client.HTTPConnection("127.0.0.1", int(host_port.split(":")[1]), timeout=10)
    try:
        connection.request("GET", "/" + path, headers={"Host": host_port.split(":")[0], **(headers or {})})
        response = connection.getresponse()
        response.read()
        return response.status, response.headers
    finally:
        connection.close()





def security_headers(headers) -> dict:
    return {name: headers[name] for name in SECURITY_HEADERS}


def test_the_edges_answers_carry_the_same_security_headers_as_djangos(live_server_url, django_calls):
    url = live_server_url(HOST_A)
    status, edge_headers = fetch(f"{url}/ping/{UNKNOWN_TOKEN}")
    assert status == HTTPStatus.NOT_FOUND and django_calls == []  # answered at the edge
    status, page_headers = fetch(f"{url}/accounts/login/")
    assert status == HTTPStatus.OK and django_calls == ["/accounts/login/"]
    assert security_headers(edge_headers) == security_headers(page_headers)
    assert security_headers(edge_headers) == {
        "Content-Security-Policy": settings.CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY", "Cross-Origin-Opener-Policy": "same-origin"}
    assert edge_headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in edge_headers  # plain http


def test_the_content_security_policy_runs_only_our_own_scripts():
    policy = dict(part.strip().split(" ", 1) for part in settings.CONTENT_SECURITY_POLICY.split(";"))
    assert policy["script-src"] == "'self'"
    assert "unsafe-inline" not in settings.CONTENT_SECURITY_POLICY
    assert "unsafe-eval" not in settings.CONTENT_SECURITY_POLICY


def test_no_template_has_an_inline_script_or_style():
    """Scripts come from static files (data through data- attributes or json_script,
    which is not run); event-handler attributes and style attributes are inline too."""
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+=|javascript:|\sstyle=|<style", re.IGNORECASE)
    base = Path(settings.BASE_DIR)
    offenders = [f"{path.relative_to(base)}: {match.group(0).strip()}"
                 for folder in ["config", "watch", "outreach", "notifications", "tenants"]
                 for path in (base / folder).rglob("templates/**/*.html")
                 for match in inline.finditer(path.read_text())]
    assert offenders == []


def test_every_answer_with_personal_data_is_no_store_and_static_files_keep_their_own(live_server_url):
    make_user("tenant_a", "staff-h", User.Role.MUNICIPAL_STAFF)
    client = TenantClient(HOST_A)
    client.sign_in("staff-h")  # the session is committed: the live server finds it
    cookie = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"}
    url = live_server_url(HOST_A)
    for path in ["/watch/", "/api/v1/residents/", "/notifications/", "/outreach/", "/accounts/login/"]:
        status, headers = fetch(url + path, cookie)
        assert status in (HTTPStatus.OK, HTTPStatus.FOUND), path
        assert "no-store" in headers["Cache-Control"], (path, headers["Cache-Control"])
        assert headers["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY, path
    status, headers = fetch(url + "/static/css/app.css")
    assert status == HTTPStatus.OK and "no-store" not in headers["Cache-Control"]
    for worker in ["/watch/my/sw.js", "/notifications/sw.js"]:
        status, headers = fetch(url + worker, cookie)
        assert (status, headers["Cache-Control"]) == (HTTPStatus.OK, "no-cache"), worker


def test_the_https_redirect_and_hsts_apply_to_the_edge_too(live_server_url, django_calls, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    url = live_server_url(HOST_A)
    status, headers = fetch(f"{url}/ping/{UNKNOWN_TOKEN}?x=1")
    assert (status, headers["Location"]) == (HTTPStatus.MOVED_PERMANENTLY,
                                             f"https://{HOST_A}/ping/{UNKNOWN_TOKEN}?x=1")
    assert headers["X-Frame-Options"] == "DENY"
    status, headers = fetch(f"{url}/ping/{UNKNOWN_TOKEN}", {"X-Forwarded-Proto": "https"})
    assert status == HTTPStatus.NOT_FOUND
    assert headers["Strict-Transport-Security"] == "max-age=3600"
    assert fetch(f"{url}/healthz")[0] == HTTPStatus.OK  # load balancers probe over plain http
    assert django_calls == ["/healthz"]


@pytest.mark.browser
def test_the_pages_work_under_the_policy_in_a_browser(browser, live_server_url):
    """No script, style or connection of ours is refused by the policy."""
    from playwright.sync_api import expect

    from tenants.context import tenant_scope
    from tests.browser.test_watch import sign_in
    from tests.watch.conftest import make_resident
    from watch import actions
    from watch.models import Area

    make_user("tenant_a", "staff-h", User.Role.MUNICIPAL_STAFF)
    with tenant_scope("tenant_a"):
        area = actions.do_create_area(name="大住", kind=Area.Kind.DISTRICT)
        resident = make_resident(area, "山田 花子")
    url = live_server_url(HOST_A)
    page = browser.new_context(locale="ja-JP").new_page()
    refused = []
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text
            else None)
    sign_in(page, url, "staff-h")  # waits for the live connection (connect-src)
    for path in [f"/watch/residents/{resident.pk}/", "/outreach/", "/notifications/preferences/", "/watch/import/",
                 "/watch/"]:
        page.goto(url + path)
        expect(page.get_by_test_id("live")).to_have_class("live on")
    assert refused == []
