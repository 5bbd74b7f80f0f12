"""The answer link's POST answered at the edge (outreach.edge), through the real ASGI
server: the same rows as Django's path (outreach.answers.do_record_answer), the same
303 reply; everything but the plain case is Django's."""
import time
import urllib.error
import urllib.request
from datetime import timedelta
from urllib.parse import urlencode

from django.utils import timezone

from outreach import answers
from outreach.models import Ask, SafetyCheck
from tenants.context import tenant_scope
from tests.conftest import HOST_A, HOST_B
from tests.watch.conftest import make_resident
from watch import actions
from watch.models import Channel, ContactLog

CSRF = "c" * 32
COLUMNS = ("state", "answer", "answered_via", "answered_by_id", "late", "next_attempt_at", "delivering_until")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def post(base: str, path: str, data: dict, csrf: str | None = CSRF, origin: str | None = None):
    host, port = base.split("//")[1].split(":")
    headers = {"Host": host, "Content-Type": "application/x-www-form-urlencoded"}
    if csrf:
        headers["Cookie"] = f"mimamori_csrftoken={csrf}"
    if origin:
        headers["Origin"] = origin
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=urlencode(data).encode(),
                                     method="POST", headers=headers)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def setup(n=2, *, late=False, by_household=False):
    deadline = timezone.now() + (timedelta(minutes=-5) if late else timedelta(hours=1))
    with tenant_scope("tenant_a"):
        area = actions.do_create_area(name="大住", kind="district")
        check = SafetyCheck.objects.create(title="訓練", question="ご無事ですか？", state=SafetyCheck.State.OPEN,
                                           channels=["sms"], by_household=by_household, deadline=deadline)
        asks = []
        for i in range(n):
            resident = make_resident(area, f"住民{i}")
            asks.append(Ask.objects.create(kind=Ask.Kind.SAFETY, safety_check=check, resident=resident, area=area,
                                           state=Ask.State.WAITING, household_key="h" if by_household else ""))
        tokens = [answers.answer_token(ask) for ask in asks]
    return check, asks, tokens


def row(ask) -> dict:
    with tenant_scope("tenant_a"):
        return Ask.objects.filter(pk=ask.pk).values(*COLUMNS, "answered_at").get()


def form(answer: str) -> dict:
    return {"answer": answer, "csrfmiddlewaretoken": CSRF}


def test_the_edge_records_what_django_records_and_answers_303(live_server_url, django_calls, captured_events):
    check, (by_edge, by_django), tokens = setup()
    before = timezone.now()
    status, headers, _body = post(live_server_url(HOST_A), f"/r/a/{tokens[0]}/", form("need_help"))
    assert (status, headers["location"]) == (303, f"/r/a/{tokens[0]}/")
    assert django_calls == []  # answered at the edge
    with tenant_scope("tenant_a"):
        answers.do_record_answer(Ask.objects.select_related("safety_check").get(pk=by_django.pk), "need_help",
                                 Channel.LINK)
    edge_row, django_row = row(by_edge), row(by_django)
    assert {k: edge_row[k] for k in COLUMNS} == {k: django_row[k] for k in COLUMNS}
    assert edge_row["answer"] == "need_help" and before <= edge_row["answered_at"] <= timezone.now()
    # The answer becomes a contact (the apply task), and the live progress hears of it.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with tenant_scope("tenant_a"):
            if ContactLog.objects.filter(resident_id=by_edge.resident_id, outcome="needs_help").exists():
                break
        time.sleep(0.05)
    with tenant_scope("tenant_a"):
        assert Ask.objects.get(pk=by_edge.pk).contact.outcome == "needs_help"
    assert any(event == {"type": "safety.changed", "check": check.pk} for _group, event in captured_events)


def test_a_late_answer_is_marked_late_on_both_paths(live_server_url, django_calls):
    _check, (by_edge, by_django), tokens = setup(late=True)
    assert post(live_server_url(HOST_A), f"/r/a/{tokens[0]}/", form("fine"))[0] == 303
    with tenant_scope("tenant_a"):
        answers.do_record_answer(Ask.objects.select_related("safety_check").get(pk=by_django.pk), "fine",
                                 Channel.LINK)
    assert row(by_edge)["late"] is True and row(by_django)["late"] is True and django_calls == []


def test_everything_but_the_plain_answer_goes_to_django(live_server_url, django_calls):
    _check, (first, _other), tokens = setup()
    base = live_server_url(HOST_A)
    path = f"/r/a/{tokens[0]}/"
    # A bad CSRF token, a foreign origin, an extra field, an answer not offered: Django's refusals.
    assert post(base, path, {"answer": "fine", "csrfmiddlewaretoken": "d" * 32})[0] == 403
    assert post(base, path, form("fine"), origin="http://evil.example")[0] == 403
    assert post(base, path, {**form("fine"), "resident": "1"})[0] == 303  # Django's view reads only the answer
    with tenant_scope("tenant_a"):
        Ask.objects.filter(pk=first.pk).update(state=Ask.State.WAITING, answer="", answered_at=None,
                                               answered_via="")
    assert post(base, path, form("unwell"))[0] == 400
    assert len(django_calls) == 4 and row(first)["answer"] == ""
    # A second use: Django says what was received; a foreign host knows no such link.
    assert post(base, path, form("fine"))[0] == 303
    status, _headers, body = post(base, path, form("need_help"))
    assert status == 200 and 'data-testid="already"' in body and row(first)["answer"] == "fine"
    assert post(live_server_url(HOST_B), f"/r/a/{tokens[1]}/", form("fine"))[0] == 404


def test_a_household_answer_is_left_to_django_which_answers_the_household(live_server_url, django_calls):
    _check, asks, tokens = setup(by_household=True)
    assert post(live_server_url(HOST_A), f"/r/a/{tokens[0]}/", form("fine"))[0] == 303
    assert django_calls == [f"/r/a/{tokens[0]}/"]
    assert [row(ask)["answer"] for ask in asks] == ["fine", "fine"]
