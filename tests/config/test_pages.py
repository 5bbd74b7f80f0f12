"""What every page shares: the menu by role, the bell, the live words, the error pages
in the person's language, development mail kept as files, and the start banner."""
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer

from django.core import mail
from django.test import override_settings

from config.management.commands import start
from tests.conftest import HOST_A, TenantClient


def test_the_bell_is_an_svg_icon_with_a_name_and_the_unread_badge(client_a, staff_a):
    client_a.sign_in("staff-a")
    page = client_a.get("/notifications/").content.decode()
    bell = page.split('data-testid="bell"')[1].split("</a>")[0]
    assert "<svg" in bell and "🔔" not in page
    assert '<span class="visually-hidden">Notifications</span>' in bell and "data-unread-count" in bell


def test_the_page_carries_the_tenant_time_zone_and_live_words_in_its_language(tenant_a, staff_a):
    client = TenantClient(HOST_A, language="ja")
    client.sign_in("staff-a")
    page = client.get("/notifications/").content.decode()
    assert 'data-time-zone="Asia/Tokyo"' in page
    assert "連絡が記録されました。" in page and "{name}さんの連絡が記録されました" in page
    assert "contact.logged</" not in page  # the type is only a key, never the words


def test_the_menu_shows_what_the_role_may_use(tenant_a, admin_a, volunteer_a):
    client = TenantClient(HOST_A)
    client.sign_in(admin_a.username)
    menu = client.get("/notifications/").content.decode().split('data-testid="main-nav"')[1].split("</nav>")[0]
    assert "/accounts/users/" in menu and "Watch-over overview" in menu
    assert "/outreach/safety/" in menu and "/outreach/notices/" in menu
    volunteer = TenantClient(HOST_A)
    volunteer.sign_in(volunteer_a.username)
    menu = volunteer.get("/notifications/").content.decode().split('data-testid="main-nav"')[1].split("</nav>")[0]
    assert "My residents" in menu and "/accounts/users/" not in menu and "Escalation policies" not in menu
    assert "/outreach/safety/" not in menu and "/outreach/notices/" not in menu


def test_a_missing_page_is_a_styled_404_in_japanese_and_in_english(tenant_a, staff_a):
    for language, words in (("ja", "このページはありません"), ("en", "This page does not exist")):
        client = TenantClient(HOST_A, language=language)
        client.sign_in("staff-a")
        response = client.get("/outreach/concerns/999999/")
        assert response.status_code == HTTPStatus.NOT_FOUND
        page = response.content.decode()
        assert words in page and "app.css" in page and f'lang="{language}"' in page


def test_a_refused_page_is_a_styled_403_in_the_persons_language(tenant_a, volunteer_a):
    client = TenantClient(HOST_A, language="ja")
    client.sign_in(volunteer_a.username)
    response = client.get("/notifications/failed/")
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert "このページは開けません" in response.content.decode()


def test_the_500_page_renders_without_a_request_or_database_in_both_languages():
    from django.template.loader import render_to_string
    from django.utils import translation

    for language, words in (("ja", "エラーが発生しました"), ("en", "Something went wrong")):
        with translation.override(language):
            page = render_to_string("500.html")
        assert words in page and f'lang="{language}"' in page


def test_development_mail_is_kept_as_a_readable_file(tmp_path):
    with override_settings(EMAIL_BACKEND="notifications.mail.DevelopmentFileBackend", EMAIL_FILE_PATH=str(tmp_path)):
        sent = mail.get_connection().send_messages([mail.EmailMessage(
            subject="見守り：山田 花子さん", body="確認をお願いします", to=["staff@kyotanabe.example"])])
    assert sent == 1
    [kept] = tmp_path.iterdir()
    text = kept.read_text(encoding="utf-8")
    assert "Subject: 見守り：山田 花子さん" in text and "確認をお願いします" in text
    assert "staff@kyotanabe.example" in kept.name


def test_the_banner_waits_until_the_web_server_answers():
    assert start.wait_until_answering("http://127.0.0.1:9/", [True]) is False  # stopped first: no banner
    stopping: list = []

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)  # an unknown host's 404 is an answer too
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.handle_request, daemon=True).start()
    try:
        assert start.wait_until_answering(f"http://127.0.0.1:{server.server_port}/", stopping, interval=0.05)
    finally:
        server.server_close()


def test_periodic_task_lines_stay_out_of_the_console_but_reach_the_log_file(tmp_path):
    lines = ["[2026-12-02 10:00:00,000: INFO/MainProcess] Scheduler: Sending due task sweep (watch.tasks.sweep)\n",
             "[2026-12-02 10:00:01,000: ERROR/MainProcess] Task watch.tasks.sweep raised\n",
             "Traceback (most recent call last):\n",
             "[2026-12-02 10:00:02,000: INFO/MainProcess] Task watch.tasks.sweep succeeded\n"]
    said: list = []
    start.relay(iter(lines), tmp_path / "beat.log", said.append, "beat", everything=False)
    assert said == ["beat: [2026-12-02 10:00:01,000: ERROR/MainProcess] Task watch.tasks.sweep raised",
                    "beat: Traceback (most recent call last):"]
    assert (tmp_path / "beat.log").read_text() == "".join(lines)



def test_under_the_real_server_a_signed_in_persons_404_and_403_are_the_styled_pages_not_500(live_server_url):
    """Django renders error pages on another thread under ASGI, whose connection has no
    tenant: the menu's queries failed there and every 404 became a 500."""
    import urllib.error
    import urllib.request

    from tenants.accounts.models import User
    from tests.conftest import make_user
    from tests.watch.test_edge import session_of

    make_user("tenant_a", "staff-a", User.Role.MUNICIPAL_STAFF)  # committed: the server sees them
    make_user("tenant_a", "volunteer-a", User.Role.VOLUNTEER)
    port = live_server_url(HOST_A).rsplit(":", 1)[1]
    for username, path, status, words in (("staff-a", "/no-such-page/", 404, "このページはありません"),
                                          ("staff-a", "/watch/residents/999999/", 404, "このページはありません"),
                                          ("volunteer-a", "/watch/visits/", 403, "このページは開けません")):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={
            "Host": f"{HOST_A}:{port}", "Cookie": f"mimamori_session={session_of(username)['session']}",
            "Accept-Language": "ja"})
        try:
            urllib.request.urlopen(request, timeout=10)  # noqa: S310 - loopback test server
        except urllib.error.HTTPError as answer:
            body = answer.read().decode()
            assert answer.code == status, (path, answer.code, body[:300])
            assert words in body and 'data-testid="main-nav"' in body
        else:
            raise AssertionError(f"{path} answered 2xx")
