"""Device heartbeats answered at the edge (watch.edge), through the real ASGI server."""
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.utils import timezone

from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, HOST_B, make_user
from tests.watch.conftest import make_resident
from watch import actions
from watch.models import ContactLog, Device, Resident, Rhythm


def ping(url: str, method: str = "GET") -> tuple[int, bytes]:
    host, path = url.split("/", 3)[2], "/" + url.split("/", 3)[3]
    request = urllib.request.Request(f"http://127.0.0.1:{host.split(':')[1]}{path}", method=method,
                                     headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback test server
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def setup_device(kind="button"):
    staff = make_user("tenant_a", "staff-ping", User.Role.MUNICIPAL_STAFF)
    with tenant_scope("tenant_a"):
        area = actions.do_create_area(name="大住", kind="district")
        resident = make_resident(area, "山田 花子")
        device, token = actions.do_register_device(actor=staff, resident=resident, kind=kind)
    return staff, resident, device, token


def test_heartbeat_is_committed_before_the_reply_and_moves_only_the_device_rhythm(live_server_url):
    _staff, resident, device, token = setup_device()
    with tenant_scope("tenant_a"):
        due_before = Resident.objects.get(pk=resident.pk).next_due_at
    assert ping(live_server_url(HOST_A) + f"/ping/{token}") == (200, b"OK\n")
    with tenant_scope("tenant_a"):
        device.refresh_from_db()
        rhythm = Rhythm.objects.get(device=device)
        assert device.last_signal_at is not None
        assert rhythm.alert_at == rhythm.last_contact_at + timedelta(hours=25)
        assert Resident.objects.get(pk=resident.pk).next_due_at == due_before  # the person's clock is theirs
        assert not ContactLog.objects.exists()


def test_unknown_revoked_and_foreign_tokens_get_404_and_fast_repeats_429(live_server_url):
    staff, _resident, device, token = setup_device()
    a, b = live_server_url(HOST_A), live_server_url(HOST_B)
    assert ping(a + "/ping/" + "x" * 32) == (404, b"not found\n")
    assert ping(b + f"/ping/{token}") == (404, b"not found\n")
    assert ping(live_server_url("nowhere.mimamori.test") + f"/ping/{token}")[0] == 404
    assert ping(a + f"/ping/{token}", "POST")[0] == 200
    assert ping(a + f"/ping/{token}")[0] == 429
    with tenant_scope("tenant_a"):
        actions.do_revoke_device(actor=staff, device=device)
        Device.objects.filter(pk=device.pk).update(last_signal_at=timezone.now() - timedelta(seconds=5))
    assert ping(a + f"/ping/{token}") == (404, b"not found\n")


def test_heartbeat_of_an_overdue_device_clears_the_overdue_mark(live_server_url):
    _staff, resident, device, token = setup_device()
    with tenant_scope("tenant_a"):
        Rhythm.objects.filter(device=device).update(alert_at=timezone.now() - timedelta(minutes=1))
        actions.do_mark_overdue()
        assert Resident.objects.get(pk=resident.pk).is_overdue
    assert ping(live_server_url(HOST_A) + f"/ping/{token}")[0] == 200
    with tenant_scope("tenant_a"):
        assert Rhythm.objects.get(device=device).state == "ok"
        assert not Resident.objects.get(pk=resident.pk).is_overdue


def test_motion_sensor_heartbeat_goes_through_the_full_rules_as_a_sign_of_life(live_server_url):
    _staff, resident, _device, token = setup_device(kind="motion")
    with tenant_scope("tenant_a"):
        Rhythm.objects.filter(resident=resident, device=None).update(channel="device")
    assert ping(live_server_url(HOST_A) + f"/ping/{token}")[0] == 200
    with tenant_scope("tenant_a"):
        person = Rhythm.objects.get(resident=resident, device=None)
        assert person.last_contact_at is not None  # the motion reset the person's own rhythm


def test_other_signals_still_work_through_django(live_server_url):
    _staff, _resident, _device, token = setup_device()
    assert ping(live_server_url(HOST_A) + f"/ping/{token}/call", "POST")[0] == 200
    with tenant_scope("tenant_a"):
        assert list(ContactLog.objects.values_list("outcome", flat=True)) == ["asked_for_call"]


def test_heartbeats_that_arrive_together_go_in_one_batch_each_answered_for_its_own_device(committed_db):
    """Two heartbeats start at once; the rest wait and go together in the next statement:
    each counts for its own device, a device twice in one batch counts once (the second is
    too fast), and tokens of another tenant, revoked or unknown are told apart as before."""
    import asyncio

    from tenants.accounts.models import hash_token
    from watch.edge import Edge

    staff, resident, first, first_token = setup_device()
    with tenant_scope("tenant_a"):
        pairs = [actions.do_register_device(actor=staff, resident=resident, kind="button") for _ in range(4)]
        revoked, revoked_token = actions.do_register_device(actor=staff, resident=resident, kind="button")
        actions.do_revoke_device(actor=staff, device=revoked)
    devices = [device for device, _token in pairs]
    tokens = [token for _device, token in pairs]
    edge = Edge(inner=None)

    async def together():
        batches = edge._batches()
        batches.IN_FLIGHT = 2
        futures = [batches.heartbeat("tenant_a", hash_token(t))
                   for t in (first_token, tokens[0], tokens[1], tokens[1], tokens[2], tokens[3], revoked_token,
                             "x" * 32)]
        futures.append(batches.heartbeat("tenant_b", hash_token(tokens[3])))
        assert len(batches.running) == 2 and len(batches.waiting) == 7  # waiting for the next statement
        answers = await asyncio.gather(*futures)
        await edge.pool.close()
        return answers

    answers = asyncio.run(together())
    ids = [first.pk, *[d.pk for d in devices]]
    assert [a[0] for a in answers] == [ids[0], ids[1], ids[2], None, ids[3], ids[4], None, None, None]
    assert [a[1] for a in answers] == ["button"] * 6 + [None, None, None]  # the 4th: too fast (429)
    with tenant_scope("tenant_a"):
        assert all(d.last_signal_at is not None for d in Device.objects.filter(pk__in=ids))
        assert Device.objects.get(pk=revoked.pk).last_signal_at is None
        assert Rhythm.objects.filter(device_id__in=ids, last_contact_at__isnull=False).count() == 5
    with tenant_scope("tenant_b"):
        assert not Device.objects.exists()


def test_one_tenants_failing_heartbeats_do_not_fail_anothers_in_the_same_batch(committed_db):
    """A batch with pings of two tenants: one tenant's statement fails (its schema is
    gone); the other's pings are answered as usual."""
    import asyncio

    from tenants.accounts.models import hash_token
    from watch.edge import Edge

    _staff, _resident, device, token = setup_device()
    edge = Edge(inner=None)

    async def together():
        batches = edge._batches()
        batches.IN_FLIGHT = 1
        first = batches.heartbeat("tenant_b", hash_token("y" * 32))  # goes alone
        mixed = [batches.heartbeat("no_such_schema", hash_token("z" * 32)), batches.heartbeat("tenant_a",
                                                                                               hash_token(token))]
        answers = await asyncio.gather(first, *mixed, return_exceptions=True)
        await edge.pool.close()
        return answers

    alone, failed, ok = asyncio.run(together())
    assert alone == (None, None, False)
    assert isinstance(failed, Exception) and "no_such_schema" in str(failed)
    assert ok == (device.pk, "button", False)


# Volunteers' check-ins at the edge.
def post(url: str, data: dict, headers: dict) -> tuple[int, dict]:
    """POST JSON to the live server as `url`'s host; (status, the answer's JSON)."""
    import json

    host, path = url.split("/", 3)[2], "/" + url.split("/", 3)[3]
    request = urllib.request.Request(f"http://127.0.0.1:{host.split(':')[1]}{path}", method="POST",
                                     data=json.dumps(data).encode(),
                                     headers={"Host": host, "Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback test server
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body or b"{}")
        except ValueError:
            return exc.code, {"body": body.decode(errors="replace")}


def post_json(url: str, data: dict, token: str | None) -> tuple[int, dict]:
    return post(url, data, {"Authorization": f"Token {token}"} if token else {})


def round_setup():
    """A volunteer with one assigned, consenting resident; another resident not theirs."""
    from tenants.accounts.actions import do_issue_api_token
    from watch.models import Assignment

    volunteer = make_user("tenant_a", "kazuko", User.Role.VOLUNTEER)
    staff = make_user("tenant_a", "staff-edge", User.Role.MUNICIPAL_STAFF)
    with tenant_scope("tenant_a"):
        area = actions.do_create_area(name="大住", kind="district")
        mine = make_resident(area, "山田 花子")
        other = make_resident(area, "髙橋 茂")
        Assignment.objects.create(resident=mine, user=volunteer)
        tokens = {u.username: do_issue_api_token(u) for u in (volunteer, staff)}
    return volunteer, mine, other, tokens


def test_a_volunteer_check_in_at_the_edge_leaves_the_same_rows_as_the_action(live_server_url):
    import uuid

    volunteer, mine, _other, tokens = round_setup()
    key = str(uuid.uuid4())
    status, body = post_json(live_server_url(HOST_A) + "/api/v1/contacts/",
                             {"resident": mine.pk, "channel": "visit", "outcome": "fine", "idempotency_key": key},
                             tokens["kazuko"])
    assert status == 201
    assert (body["resident"], body["outcome"], body["logged_by"], body["idempotency_key"]) == (
        mine.pk, "fine", volunteer.pk, key)
    with tenant_scope("tenant_a"):
        contact = ContactLog.objects.get()
        rhythm = Rhythm.objects.get(resident=mine)
        resident = Resident.objects.get(pk=mine.pk)
    assert contact.pk == body["id"] and contact.logged_by_id == volunteer.pk
    assert rhythm.last_contact_at == contact.occurred_at
    assert rhythm.alert_at == contact.occurred_at + timedelta(days=7, hours=12)
    assert (resident.last_contact_at, resident.last_outcome, resident.next_due_at, resident.is_overdue) == (
        contact.occurred_at, "fine", rhythm.alert_at, False)
    # The retry is answered by Django: the original entry, nothing new.
    again = post_json(live_server_url(HOST_A) + "/api/v1/contacts/",
                      {"resident": mine.pk, "channel": "visit", "outcome": "fine", "idempotency_key": key},
                      tokens["kazuko"])
    assert again[0] == 200 and again[1]["id"] == body["id"]
    with tenant_scope("tenant_a"):
        assert ContactLog.objects.count() == 1


def test_check_in_of_an_overdue_resident_clears_it_and_lowers_the_wakeup(live_server_url):
    from tenants.models import Wakeup

    _volunteer, mine, _other, tokens = round_setup()
    with tenant_scope("tenant_a"):
        Rhythm.objects.filter(resident=mine).update(alert_at=timezone.now() - timedelta(minutes=1))
        actions.do_mark_overdue()
        Wakeup.objects.filter(tenant__schema_name="tenant_a").update(due_at=timezone.now() + timedelta(days=30))
    when = timezone.now() - timedelta(days=7)  # logged late: its new alert is in twelve hours
    status, _body = post_json(live_server_url(HOST_A) + "/api/v1/contacts/",
                              {"resident": mine.pk, "channel": "visit", "outcome": "fine",
                               "occurred_at": when.isoformat()}, tokens["kazuko"])
    assert status == 201
    with tenant_scope("tenant_a"):
        rhythm = Rhythm.objects.get(resident=mine)
        assert rhythm.state == "ok" and not Resident.objects.get(pk=mine.pk).is_overdue
        assert Wakeup.objects.get(tenant__schema_name="tenant_a", purpose="overdue").due_at == rhythm.alert_at


def test_everything_but_the_plain_case_is_answered_by_django(live_server_url):
    from outreach.models import Concern

    _volunteer, mine, other, tokens = round_setup()
    url = live_server_url(HOST_A) + "/api/v1/contacts/"
    # Not theirs: 404. Bad input: 400 with Django's messages. Staff: through DRF. Worried: a concern.
    assert post_json(url, {"resident": other.pk, "channel": "visit", "outcome": "fine"}, tokens["kazuko"])[0] == 404
    status, body = post_json(url, {"resident": mine.pk, "channel": "pigeon", "outcome": "fine"}, tokens["kazuko"])
    assert status == 400 and "channel" in body
    assert post_json(url, {"resident": mine.pk, "channel": "visit", "outcome": "fine"}, "0" * 40)[0] == 401
    assert post_json(url, {"resident": other.pk, "channel": "phone", "outcome": "fine"}, tokens["staff-edge"])[0] == 201
    assert post_json(url, {"resident": mine.pk, "channel": "visit", "outcome": "worried", "note": "元気がない"},
                     tokens["kazuko"])[0] == 201
    with tenant_scope("tenant_a"):
        assert ContactLog.objects.count() == 2
        assert Concern.objects.filter(resident=mine, cause="worried_contact").exists()


def test_tenant_b_host_with_a_tenant_a_token_gets_nothing(live_server_url):
    _volunteer, mine, _other, tokens = round_setup()
    status, _body = post_json(live_server_url(HOST_B) + "/api/v1/contacts/",
                              {"resident": mine.pk, "channel": "visit", "outcome": "fine"}, tokens["kazuko"])
    assert status == 401
    with tenant_scope("tenant_a"):
        assert not ContactLog.objects.exists()


# The phone page's check-ins: session-authenticated, at the edge.
def session_of(username: str, host: str = HOST_A) -> dict:
    """A signed-in session's cookie and a CSRF secret, as the phone page sends them."""
    from django.middleware.csrf import _get_new_csrf_string

    from tests.conftest import TenantClient

    client = TenantClient(host)
    client.sign_in(username)
    return {"session": client.cookies["mimamori_session"].value, "csrf": _get_new_csrf_string()}


def post_from_page(url: str, data: dict, page: dict, *, origin: str | None = None,
                   csrf: str | None = None, extra: dict | None = None) -> tuple[int, dict]:
    """POST as checkin.js does: the session cookie, the CSRF cookie and header, the Origin."""
    host = url.split("/", 3)[2]
    return post(url, data, {"Origin": origin or f"http://{host}",
                            "Cookie": f"mimamori_session={page['session']}; mimamori_csrftoken={page['csrf']}",
                            "X-CSRFToken": page["csrf"] if csrf is None else csrf, **(extra or {})})


def test_the_phone_pages_session_check_in_is_answered_at_the_edge(live_server_url, django_calls, expect_events):
    import uuid

    volunteer, mine, _other, _tokens = round_setup()
    page = session_of("kazuko")
    key = str(uuid.uuid4())
    with expect_events(1) as published:
        status, body = post_from_page(live_server_url(HOST_A) + "/api/v1/contacts/",
                                      {"resident": mine.pk, "channel": "visit", "outcome": "fine",
                                       "idempotency_key": key}, page)
    assert status == 201 and body["logged_by"] == volunteer.pk and body["idempotency_key"] == key
    assert django_calls == []  # the edge answered it
    with tenant_scope("tenant_a"):
        assert ContactLog.objects.filter(resident=mine, logged_by=volunteer).count() == 1
    assert {e["type"] for _g, e in published} == {"contact.logged"}
    assert f"tenant_a.user.{volunteer.pk}" in {g for g, _e in published}


def test_a_session_check_in_the_edge_cannot_judge_goes_to_django_and_is_refused_there(live_server_url, django_calls):
    """No CSRF token, another origin, another tenant's host, a resident who did not consent:
    Django answers (403/401/404) and nothing is saved."""
    volunteer, mine, _other, _tokens = round_setup()
    with tenant_scope("tenant_a"):
        refused = make_resident(Resident.objects.get(pk=mine.pk).area, "同意なし", consent="refused", share=False)
        from watch.models import Assignment

        Assignment.objects.create(resident=refused, user=volunteer)
    page = session_of("kazuko")
    url = live_server_url(HOST_A) + "/api/v1/contacts/"
    fine = {"resident": mine.pk, "channel": "visit", "outcome": "fine"}
    assert post_from_page(url, fine, page, csrf="")[0] == 403
    assert post_from_page(url, fine, page, csrf="x" * 32)[0] == 403
    assert post_from_page(url, fine, page, origin="http://evil.example")[0] == 403
    assert post_from_page(live_server_url(HOST_B) + "/api/v1/contacts/", fine, page)[0] == 401  # not signed in there
    assert post_from_page(url, {**fine, "resident": refused.pk}, page)[0] == 404
    assert len(django_calls) == 5
    with tenant_scope("tenant_a"):
        assert not ContactLog.objects.exists()
    with tenant_scope("tenant_b"):
        assert not ContactLog.objects.exists()


def test_behind_a_tls_proxy_the_phone_pages_https_origin_is_judged_at_the_edge(live_server_url, django_calls,
                                                                               settings):
    """The proxy says https (X-Forwarded-Proto, trusted as Django trusts it): the page's
    origin is https://host, and the edge answers as it does on plain http."""
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    volunteer, mine, _other, _tokens = round_setup()
    page = session_of("kazuko")
    url = live_server_url(HOST_A) + "/api/v1/contacts/"
    host = url.split("/", 3)[2]
    status, body = post_from_page(url, {"resident": mine.pk, "channel": "visit", "outcome": "fine"}, page,
                                  origin=f"https://{host}", extra={"X-Forwarded-Proto": "https"})
    assert (status, body["logged_by"], django_calls) == (201, volunteer.pk, [])
    # The same origin claimed over plain http is another origin: Django refuses it.
    assert post_from_page(url, {"resident": mine.pk, "channel": "visit", "outcome": "fine"}, page,
                          origin=f"https://{host}")[0] == 403


def test_a_check_in_dated_year_one_is_refused_with_400_on_the_fast_path_and_nothing_is_saved(live_server_url):
    _volunteer, mine, _other, tokens = round_setup()
    page = session_of("kazuko")
    url = live_server_url(HOST_A) + "/api/v1/contacts/"
    for when in ("0001-01-01T05:00:00+14:00", "1899-12-31T23:59:59+09:00",
                 (timezone.now() + timedelta(minutes=10)).isoformat()):
        data = {"resident": mine.pk, "channel": "visit", "outcome": "fine", "occurred_at": when}
        status, body = post_from_page(url, data, page)
        assert status == 400 and "occurred_at" in body, (when, status, body)
        assert post_json(url, data, tokens["kazuko"])[0] == 400
    with tenant_scope("tenant_a"):
        assert not ContactLog.objects.exists()


# Parity: the same check-in through the action and through the edge leaves the same rows
# and publishes the same event to the same groups.
T0 = timezone.now().replace(microsecond=0) - timedelta(days=2)
PARITY_CASES = {
    "on time": {"before": "fine", "at": timedelta(days=1), "channel": "visit", "outcome": "fine"},
    "overdue, then a visit": {"before": "fine", "overdue": True, "at": timedelta(days=1), "channel": "visit",
                              "outcome": "fine"},
    "logged late, older than the last contact": {"before": "fine", "at": timedelta(hours=-5), "channel": "phone",
                                                "outcome": "fine"},
    "not at home: no sign of life": {"before": "fine", "at": timedelta(days=1), "channel": "visit",
                                     "outcome": "not_home"},
    "phone rhythm, visit contact": {"before": "fine", "rhythm_channel": "phone", "at": timedelta(days=1),
                                    "channel": "visit", "outcome": "fine"},
    "paused rhythm": {"before": "fine", "paused": True, "at": timedelta(days=1), "channel": "visit", "outcome": "fine"},
}


def parity_setup(case: dict):
    from watch.models import Assignment

    volunteer = make_user("tenant_a", "kazuko", User.Role.VOLUNTEER)
    with tenant_scope("tenant_a"):
        district = actions.do_create_area(name="大住", kind="district")
        block = actions.do_create_area(name="3班", kind="block", parent=district)
        resident = make_resident(block, "山田 花子", rhythms=[
            {"channel": case.get("rhythm_channel", ""), "interval": timedelta(days=7), "grace": timedelta(hours=12)}])
        Assignment.objects.create(resident=resident, user=volunteer)
        actions.do_log_contact(actor=volunteer, resident=resident, occurred_at=T0,
                               channel=case.get("rhythm_channel") or "visit", outcome=case["before"])
        if case.get("overdue"):
            Rhythm.objects.filter(resident=resident).update(alert_at=T0 + timedelta(hours=1))
            actions.do_mark_overdue(now=T0 + timedelta(hours=2))
        if case.get("paused"):
            Rhythm.objects.filter(resident=resident).update(state=Rhythm.State.PAUSED)
    return volunteer, resident


def parity_rows() -> dict:
    from tenants.models import Wakeup

    with tenant_scope("tenant_a"):
        return {
            "contacts": list(ContactLog.objects.order_by("pk").values(
                "resident_id", "occurred_at", "logged_by_id", "device_id", "channel", "outcome", "note",
                "idempotency_key")),
            "rhythms": list(Rhythm.objects.order_by("pk").values(
                "resident_id", "channel", "interval", "grace", "last_contact_at", "alert_at", "state",
                "overdue_since")),
            "residents": list(Resident.objects.order_by("pk").values(
                "last_contact_at", "last_outcome", "next_due_at", "is_overdue")),
            "wakeups": list(Wakeup.objects.filter(tenant__schema_name="tenant_a").order_by("purpose")
                            .values("purpose", "due_at")),
        }


@pytest.mark.parametrize("name", list(PARITY_CASES))
def test_a_check_in_through_the_action_and_through_the_edge_leaves_the_same_rows_and_event(
        name, live_server_url, django_calls, captured_events):
    import uuid

    from tests.conftest import wipe_tenant_tables

    case = PARITY_CASES[name]
    key = uuid.uuid4()
    at = T0 + case["at"]
    submission = {"channel": case["channel"], "outcome": case["outcome"], "note": "庭にいた"}

    volunteer, resident = parity_setup(case)
    captured_events.clear()
    with tenant_scope("tenant_a"):
        actions.do_log_contact(actor=volunteer, resident=Resident.objects.select_related("area").get(pk=resident.pk),
                               occurred_at=at, idempotency_key=key, **submission)
    by_action, action_events = parity_rows(), list(captured_events)

    wipe_tenant_tables()  # identities restart: the same ids again
    volunteer, resident = parity_setup(case)
    page = session_of("kazuko")
    captured_events.clear()
    status, body = post_from_page(live_server_url(HOST_A) + "/api/v1/contacts/",
                                  {"resident": resident.pk, "occurred_at": at.isoformat(),
                                   "idempotency_key": str(key), **submission}, page)
    assert status == 201, body
    assert django_calls == []
    by_edge, edge_events = parity_rows(), list(captured_events)

    assert by_edge == by_action
    assert sorted((g, sorted(e.items())) for g, e in edge_events) == sorted(
        (g, sorted(e.items())) for g, e in action_events)
    assert {e["type"] for _g, e in edge_events} == {"contact.logged"}


def test_the_rhythm_alert_formula_in_sql_is_the_python_one(db, tenant_a):
    """Rhythm.ALERT_TIME_SQL (the edge's statements) against Rhythm.alert_time."""
    from django.db import connection

    last, interval, grace = timezone.now(), timedelta(days=3, hours=5), timedelta(minutes=90)
    with tenant_scope("tenant_a"), connection.cursor() as cursor:
        expression = Rhythm.ALERT_TIME_SQL.format(last="%s::timestamptz", rhythm="r")
        cursor.execute(f'SELECT {expression} FROM (SELECT %s::interval AS "interval", %s::interval AS grace) AS r',  # noqa: S608
                       [last, interval, grace])
        assert cursor.fetchone()[0] == Rhythm.alert_time(last, interval, grace)


def test_with_the_database_unreachable_the_edge_answers_503_with_retry_after_within_two_seconds(monkeypatch):
    """A database that takes the connection and never answers (the worst case: a refusal
    would be quicker): pings and check-ins get 503 and Retry-After, each in about 2 s."""
    import asyncio
    import json
    import socket
    import time

    from watch.edge import Edge

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # connections queue in the backlog; nothing ever answers them
    from django.conf import settings

    database = settings.DATABASES["default"]  # read by the edge's pool when it opens; no Django query here
    for key, value in {"HOST": "127.0.0.1", "PORT": silent.getsockname()[1], "OPTIONS": {}}.items():
        monkeypatch.setitem(database, key, value)

    async def call(edge, path, body=b"", headers=()):
        sent = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": path, "scheme": "http",
                 "headers": [(b"host", HOST_A.encode()), *headers]}
        started = time.monotonic()
        await edge(scope, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:]), \
            time.monotonic() - started

    async def scenario():
        edge = Edge(inner=None)
        try:
            ping = await call(edge, "/ping/" + "x" * 32)
            contact = await call(edge, "/api/v1/contacts/",
                                 json.dumps({"resident": 1, "channel": "visit", "outcome": "fine"}).encode(),
                                 [(b"authorization", b"Token " + b"0" * 40), (b"accept-language", b"en")])
        finally:
            await edge.pool.close(timeout=1)
        return ping, contact

    try:
        ping, contact = asyncio.run(scenario())
    finally:
        silent.close()
    for status, headers, _body, seconds in (ping, contact):
        assert status == 503 and headers[b"retry-after"] == b"5"
        assert seconds < 3.0, seconds
    assert "一時的に利用できません" in ping[2].decode()
    assert json.loads(contact[2]) == {"detail": "The service is unavailable for a moment. Try again shortly."}


@pytest.mark.parametrize("odd", [
    {"outcome": []}, {"outcome": {"a": 1}}, {"channel": ["visit"]}, {"note": 5}, {"occurred_at": None},
    {"occurred_at": ""}, {"occurred_at": False}, {"idempotency_key": None}, {"idempotency_key": 7},
    {"note": "  padded  "}, {"resident": "1"}, {"resident": True}, {"extra": 1},
], ids=repr)
def test_a_check_in_the_serializer_would_refuse_or_rewrite_is_never_judged_at_the_edge(
        odd, live_server_url, django_calls):
    """Whatever Django's serializer refuses (400) or rewrites (a trimmed note) goes to
    Django, token or session: the edge never answers 500, nor saves what Django would not."""
    _volunteer, mine, _other, tokens = round_setup()
    data = {"resident": mine.pk, "channel": "visit", "outcome": "fine", **odd}
    url = live_server_url(HOST_A) + "/api/v1/contacts/"
    by_token = post_json(url, data, tokens["kazuko"])
    by_page = post_from_page(url, data, session_of("kazuko"))
    assert django_calls == ["/api/v1/contacts/"] * 2
    # (a retry of the same key, as the integer 7 becomes for DRF, is 200)
    assert {by_token[0], by_page[0]} <= {200, 201, 400}, (by_token, by_page)
    with tenant_scope("tenant_a"):
        notes = list(ContactLog.objects.values_list("note", flat=True))
    assert all(note == note.strip() for note in notes)


def test_an_unauthenticated_odd_check_in_is_refused_by_django_not_answered_500(live_server_url, django_calls):
    url = live_server_url(HOST_A) + "/api/v1/contacts/"
    assert post_json(url, {"resident": 1, "channel": "visit", "outcome": []}, "0" * 40)[0] == 401
