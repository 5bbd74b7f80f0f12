"""Linking a resident's LINE account, LINE's way: a printed sheet with the official
account's QR code and a one-time code; adding the account (follow) is answered with a
link to our page; a right code goes on to LINE's dialog (the fake's), whose accountLink
event ties the account to the resident. Wrong, expired or foreign codes change nothing."""
import json
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from notifications import fake_providers as fake_module
from notifications.fake_providers import LINE_SECRET, line_event, line_signature
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import make_user
from tests.notifications.conftest import fake_providers  # noqa: F401 - the fixture
from watch.models import LineLinkCode, LineLinkNonce, Resident, ResidentChange

WEBHOOK = "/notifications/line/webhook/"
FAMILY = "U" + "a1" * 16
OTHER = "U" + "b2" * 16
ADD_FRIEND = "https://line.me/R/ti/p/@mimamori-test"


@pytest.fixture
def line(fake_providers, settings, monkeypatch):  # noqa: F811 - the fixture imported above
    """The fake LINE server as access.line.me too; the accountLink events its dialog sends
    are kept here (and posted to the webhook by `deliver_dialog_events`)."""
    settings.LINE_ACCESS_BASE = fake_providers.url
    settings.LINE_ADD_FRIEND_URL = ADD_FRIEND
    fake_providers.line_webhook_url = "http://tenant-a.mimamori.test" + WEBHOOK
    fake_providers.dialog_events = []

    def keep(url, events, *, secret=LINE_SECRET, host=None):
        fake_providers.dialog_events.append((url, events, secret))
        return 200

    monkeypatch.setattr(fake_module, "send_line_events", keep)
    return fake_providers


def follow_event(user_id: str) -> dict:
    return line_event("follow", user_id) | {"follow": {"isUnblocked": False}}


def post_events(client, events, secret=LINE_SECRET):
    body = json.dumps({"destination": "U" + "0" * 32, "events": events}, ensure_ascii=False).encode()
    return client.post(WEBHOOK, body, content_type="application/json",
                       HTTP_X_LINE_SIGNATURE=line_signature(secret, body))


def deliver_dialog_events(client, line):
    """What LINE's dialog sent, posted to the tenant's webhook as LINE would."""
    for _url, events, secret in line.dialog_events:
        assert post_events(client, events, secret).status_code == 200
    line.dialog_events.clear()


def issue_code(client, resident) -> str:
    response = client.post(f"/outreach/residents/{resident.pk}/reach/line-code/")
    assert response.status_code == 200
    html = response.content.decode()
    return re.search(r'data-testid="line-code-digits">([0-9 ]+)<', html)[1].replace(" ", "")


def follow_and_open_link(client, line, user_id=FAMILY) -> str:
    """Add the official account: the reply carries our link page; returns its link token."""
    assert post_events(client, [follow_event(user_id)]).status_code == 200
    text = line.line_replies()[-1][1]
    url = re.search(r"https?://\S+", text)[0]
    parts = urlsplit(url)
    assert parts.netloc == "tenant-a.mimamori.test" and parts.path == "/r/line-link/"
    return parse_qs(parts.query)["linkToken"][0]


@pytest.fixture
def staff_client(client_a, staff_a):
    client_a.sign_in("staff-a")
    return client_a


def reload(resident, schema="tenant_a") -> Resident:
    with tenant_scope(schema):
        return Resident.objects.get(pk=resident.pk)


def test_a_resident_is_linked_through_the_sheet_the_follow_reply_the_code_and_lines_dialog(
    staff_client, staff_a, hanako, line, client_a
):
    code = issue_code(staff_client, hanako)
    family = type(client_a)(client_a.host, language="ja")
    token = follow_and_open_link(family, line)

    page = family.get(f"/r/line-link/?linkToken={token}")
    assert page.status_code == 200 and 'name="code"' in page.content.decode()
    response = family.post("/r/line-link/", {"linkToken": token, "code": code})
    assert response.status_code == 302
    dialog = urlsplit(response["Location"])
    assert f"{dialog.scheme}://{dialog.netloc}" == line.url and dialog.path == "/dialog/bot/accountLink"
    query = parse_qs(dialog.query)
    assert query["linkToken"] == [token] and len(query["nonce"][0]) >= 10

    # The family agrees in LINE's dialog; LINE sends the accountLink event.
    import requests
    assert requests.get(response["Location"], timeout=5).status_code == 200
    [(_url, [event], _secret)] = line.dialog_events
    assert event["type"] == "accountLink" and event["source"]["userId"] == FAMILY
    deliver_dialog_events(client_a, line)

    resident = reload(hanako)
    assert resident.line_user_id == FAMILY and resident.line_linked_at is not None
    assert line.line_replies()[-1][1] == "見守りサービスとLINEがつながりました。"
    with tenant_scope("tenant_a"):
        assert LineLinkCode.objects.get(resident=hanako).used_at is not None
        assert LineLinkNonce.objects.get(resident=hanako).used_at is not None
        change = ResidentChange.objects.filter(resident=hanako).first()
        assert change.actor_id == staff_a.pk and "line_linked_at" in change.changes
    # The code cannot be used a second time.
    again = family.post("/r/line-link/", {"linkToken": follow_and_open_link(family, line, OTHER), "code": code})
    assert again.status_code == 400 and "使用済み" in again.content.decode()


def test_the_sheet_shows_the_add_friend_qr_code_and_the_code_in_large_digits(staff_client, hanako, line):
    response = staff_client.post(f"/outreach/residents/{hanako.pk}/reach/line-code/")
    html = response.content.decode()
    assert response["Cache-Control"] == "no-store"
    assert 'data-testid="line-qr"' in html and "<svg" in html and ADD_FRIEND in html
    assert re.search(r'data-testid="line-code-digits">[0-9]{4} [0-9]{4}<', html)
    assert "友だち追加" in html  # the resident's own language: Japanese
    with tenant_scope("tenant_a"):
        row = LineLinkCode.objects.get(resident=hanako)
        digits = re.search(r'data-testid="line-code-digits">([0-9 ]+)<', html)[1].replace(" ", "")
        assert digits not in row.code_hash and len(row.code_hash) == 64
        assert timedelta(days=29) < row.expires_at - timezone.now() <= timedelta(days=30)


def test_a_new_code_voids_the_earlier_one(staff_client, hanako, line, client_a):
    first = issue_code(staff_client, hanako)
    second = issue_code(staff_client, hanako)
    token = follow_and_open_link(client_a, line)
    assert client_a.post("/r/line-link/", {"linkToken": token, "code": first}).status_code == 400
    assert client_a.post("/r/line-link/", {"linkToken": token, "code": second}).status_code == 302


def test_a_wrong_code_changes_nothing_and_says_so_in_japanese_and_english(staff_client, hanako, line, client_a):
    issue_code(staff_client, hanako)
    ja = type(client_a)(client_a.host, language="ja")
    token = follow_and_open_link(ja, line)
    response = ja.post("/r/line-link/", {"linkToken": token, "code": "00000000"})
    assert response.status_code == 400
    assert "番号が正しくありません" in response.content.decode()
    en = type(client_a)(client_a.host, language="en")
    response = en.post("/r/line-link/", {"linkToken": token, "code": "1234"})
    assert response.status_code == 400 and "This code is not right" in response.content.decode()
    with tenant_scope("tenant_a"):
        assert LineLinkNonce.objects.count() == 0
    assert reload(hanako).line_user_id == ""


def test_an_expired_code_changes_nothing_and_says_so(staff_client, hanako, line, client_a):
    code = issue_code(staff_client, hanako)
    with tenant_scope("tenant_a"):
        LineLinkCode.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    token = follow_and_open_link(client_a, line)
    response = client_a.post("/r/line-link/", {"linkToken": token, "code": code})
    assert response.status_code == 400 and "expired" in response.content.decode()
    with tenant_scope("tenant_a"):
        assert LineLinkNonce.objects.count() == 0


def test_full_width_digits_and_spaces_in_the_code_are_accepted(staff_client, hanako, line, client_a):
    code = issue_code(staff_client, hanako)
    typed = "".join(chr(ord(c) + 0xFEE0) for c in code[:4]) + "　" + code[4:]
    token = follow_and_open_link(client_a, line)
    assert client_a.post("/r/line-link/", {"linkToken": token, "code": typed}).status_code == 302


def test_five_wrong_codes_for_one_link_token_stop_even_the_right_one_for_a_while(
    staff_client, hanako, line, client_a
):
    code = issue_code(staff_client, hanako)
    token = follow_and_open_link(client_a, line)
    for _try in range(5):
        assert client_a.post("/r/line-link/", {"linkToken": token, "code": "11111111"}).status_code == 400
    response = client_a.post("/r/line-link/", {"linkToken": token, "code": code})
    assert response.status_code == 429 and "10 minutes" in response.content.decode()
    # Another link token (another LINE account) is not held up.
    other = follow_and_open_link(client_a, line, OTHER)
    assert client_a.post("/r/line-link/", {"linkToken": other, "code": code}).status_code == 302


def test_the_link_page_without_a_link_token_says_to_open_it_from_line(client_a, line):
    for url in ("/r/line-link/", "/r/line-link/?linkToken=<script>"):
        response = client_a.get(url)
        assert response.status_code == 400 and "Open it from LINE again" in response.content.decode()


def test_a_code_of_tenant_a_typed_on_tenant_bs_link_page_does_nothing(
    staff_client, hanako, resident_b, line, client_b
):
    code = issue_code(staff_client, hanako)
    response = client_b.post("/r/line-link/", {"linkToken": "a" * 32, "code": code})
    assert response.status_code == 400
    with tenant_scope("tenant_b"):
        assert LineLinkNonce.objects.count() == 0


def test_an_account_link_event_with_an_unknown_or_used_nonce_or_a_failed_result_changes_nothing(
    staff_client, hanako, line, client_a
):
    code = issue_code(staff_client, hanako)
    token = follow_and_open_link(client_a, line)
    nonce = parse_qs(urlsplit(client_a.post("/r/line-link/", {"linkToken": token, "code": code})["Location"]).query)[
        "nonce"][0]
    for number, link in enumerate([{"result": "ok", "nonce": "not-a-nonce-of-ours"},
                                   {"result": "failed", "nonce": nonce}]):
        event = line_event("accountLink", FAMILY) | {"link": link}
        event["webhookEventId"] = f"01LINK{number}"
        assert post_events(client_a, [event]).status_code == 200
    assert reload(hanako).line_user_id == ""
    assert "did not work" in line.line_replies()[-1][1] or "うまくいきません" in line.line_replies()[-1][1]


def test_a_line_account_already_linked_to_another_resident_is_refused_politely(
    staff_client, hanako, shigeru, line, client_a
):
    code = issue_code(staff_client, hanako)
    token = follow_and_open_link(client_a, line)
    with tenant_scope("tenant_a"):  # meanwhile, the same LINE account was linked to 茂
        Resident.objects.filter(pk=shigeru.pk).update(line_user_id=FAMILY, line_linked_at=timezone.now())
    location = client_a.post("/r/line-link/", {"linkToken": token, "code": code})["Location"]
    nonce = parse_qs(urlsplit(location).query)["nonce"][0]
    event = line_event("accountLink", FAMILY) | {"link": {"result": "ok", "nonce": nonce}}
    assert post_events(client_a, [event]).status_code == 200
    assert reload(hanako).line_user_id == ""
    assert reload(shigeru).line_user_id == FAMILY
    assert "another person" in line.line_replies()[-1][1] or "別の方" in line.line_replies()[-1][1]


def test_staff_unlink_a_residents_line_account(staff_client, hanako, line):
    with tenant_scope("tenant_a"):
        Resident.objects.filter(pk=hanako.pk).update(line_user_id=FAMILY, line_linked_at=timezone.now())
    response = staff_client.post(f"/outreach/residents/{hanako.pk}/reach/line-unlink/")
    assert response.status_code == 302
    resident = reload(hanako)
    assert resident.line_user_id == "" and resident.line_linked_at is None


def test_a_volunteer_cannot_issue_codes_and_an_outsider_gets_404(
    client_a, volunteer_a, hanako, client_b, outsider_b, line
):
    client_a.sign_in("volunteer-a")
    assert client_a.post(f"/outreach/residents/{hanako.pk}/reach/line-code/").status_code == 403
    client_b.sign_in("outsider-b")
    for url in ("reach/", "reach/line-code/", "reach/line-unlink/", "reach/checkin/"):
        assert client_b.post(f"/outreach/residents/{hanako.pk}/{url}").status_code == 404
    assert client_b.get(f"/outreach/residents/{hanako.pk}/reach/").status_code == 404
    with tenant_scope("tenant_a"):
        assert LineLinkCode.objects.count() == 0


def test_a_case_worker_of_the_resident_may_issue_a_code(client_a, hanako, line):
    case_worker = make_user("tenant_a", "cw-link", User.Role.CASE_WORKER)
    from watch.models import Assignment
    with tenant_scope("tenant_a"):
        Assignment.objects.create(resident=hanako, user=case_worker)
    client_a.sign_in("cw-link")
    assert issue_code(client_a, hanako)
