# ruff: noqa: F811 - pytest fixtures imported from tests.notifications.conftest are parameters here
"""Sending questions: asks made in bulk, LINE multicast batches with their retry keys,
SMS with the answer link, silence moving to the next channel, retries, tenants apart."""
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from outreach import asking
from outreach.answers import do_record_answer
from outreach.models import Answer, Ask, AskAttempt, SafetyCheck
from tenants.context import tenant_scope
from tests.notifications.conftest import fake_providers  # noqa: F401 - the fixture
from watch.models import Area, Channel, Resident

pytestmark = pytest.mark.django_db

MULTICAST = "/v2/bot/message/multicast"


def line_id(n: int, prefix: str = "a") -> str:
    return "U" + (prefix + f"{n:031x}")[-32:].rjust(32, "0")


def residents(area, count: int, *, start: int = 0, line=True, mobile=False, phone=False, prefix="a", **fields):
    """Residents made in bulk (the dispatcher reads only the record)."""
    rows = [Resident(name=f"住民{start + i}", area=area, status=Resident.Status.ACTIVE,
                     line_user_id=line_id(start + i, prefix) if line else "",
                     mobile_phone=f"090{start + i:08d}" if mobile else "",
                     phone=f"075{start + i:07d}" if phone else "", **fields)
            for i in range(count)]
    return Resident.objects.bulk_create(rows)


def make_check(**fields) -> SafetyCheck:
    values = {"title": "防災訓練", "question": "安否確認の訓練です。ご無事ですか？", "kind": SafetyCheck.Kind.DRILL,
              "state": SafetyCheck.State.OPEN, "channels": ["line", "sms", "voice"], "silence_minutes": [10, 30],
              "deadline": timezone.now() + timedelta(hours=6)}
    values.update(fields)
    return SafetyCheck.objects.create(**values)


@pytest.fixture
def area(tenant_a):
    with tenant_scope("tenant_a"):
        return Area.objects.create(name="大住", kind=Area.Kind.DISTRICT)


def multicasts(fake):
    return [r for r in fake.to(MULTICAST) if r.json().get("to")]


def test_1100_line_residents_are_asked_in_three_multicasts_of_at_most_500(fake_providers, area):
    with tenant_scope("tenant_a"):
        people = residents(area, 1100)
        check = make_check()
        assert asking.do_create_asks(check, Resident.objects.all()) == 1100
        assert asking.do_create_asks(check, Resident.objects.all()) == 0  # a repeat makes nothing twice
        assert asking.do_dispatch() == 1100
        sent = multicasts(fake_providers)
        assert sorted(len(r.json()["to"]) for r in sent) == [100, 500, 500]
        assert len({r.headers["X-Line-Retry-Key"] for r in sent}) == 3
        message = sent[0].json()["messages"][0]
        assert message["text"] == check.question
        buttons = [(i["action"]["label"], i["action"]["data"]) for i in message["quickReply"]["items"]]
        assert buttons == [("無事です", "answer:safety:fine"), ("助けが必要です", "answer:safety:need_help")]
        assert all(len(fake_providers.shown_to(p.line_user_id)) == 1 for p in people)
        assert Ask.objects.filter(state=Ask.State.WAITING, reached=True).count() == 1100
        assert AskAttempt.objects.filter(channel=Channel.LINE, ok=True).count() == 1100
        assert asking.do_dispatch() == 0  # nothing is sent twice


class WorkerDied(BaseException):
    pass


def test_a_run_that_died_mid_batch_is_retried_under_the_same_keys_and_shows_nobody_twice(
        fake_providers, area, monkeypatch):
    with tenant_scope("tenant_a"):
        people = residents(area, 700)
        asking.do_create_asks(make_check(), Resident.objects.all())
        real = asking.delivery.line_multicast
        calls = []

        def dies_on_the_second(to, messages, *, retry_key, timeout=None):
            calls.append(retry_key)
            if len(calls) == 2:
                raise WorkerDied
            return real(to, messages, retry_key=retry_key, timeout=timeout)

        monkeypatch.setattr(asking.delivery, "line_multicast", dies_on_the_second)
        with pytest.raises(WorkerDied):
            asking.do_dispatch()
        monkeypatch.setattr(asking.delivery, "line_multicast", real)
        first_keys = {r.headers["X-Line-Retry-Key"] for r in multicasts(fake_providers)}
        assert len(first_keys) == 1
        assert Ask.objects.filter(state=Ask.State.QUEUED, batch_key__isnull=False).count() == 700
        assert asking.do_dispatch() == 0  # the dead run's lease still holds them

        asking.do_dispatch(now=timezone.now() + asking.LEASE + timedelta(seconds=1))
        answers = [r for r in multicasts(fake_providers)]
        assert first_keys < {r.headers["X-Line-Retry-Key"] for r in answers}
        assert {len(fake_providers.shown_to(p.line_user_id)) for p in people} == {1}
        assert Ask.objects.filter(state=Ask.State.WAITING, reached=True).count() == 700


def test_a_429_from_line_is_retried_later_under_the_same_key(fake_providers, area):
    with tenant_scope("tenant_a"):
        [person] = residents(area, 1)
        asking.do_create_asks(make_check(), Resident.objects.all())
        fake_providers.fail(1, status=429, path=MULTICAST)
        now = timezone.now()
        assert asking.do_dispatch(now=now) == 0
        ask = Ask.objects.get()
        assert (ask.state, ask.next_attempt_at > now) == (Ask.State.QUEUED, True)
        assert AskAttempt.objects.get().provider_status == 429
        assert fake_providers.shown_to(person.line_user_id) == []
        assert asking.do_dispatch(now=now + timedelta(seconds=2)) == 1
        keys = [r.headers["X-Line-Retry-Key"] for r in fake_providers.to(MULTICAST)]
        assert len(keys) == 2 and keys[0] == keys[1]
        assert len(fake_providers.shown_to(person.line_user_id)) == 1


def test_an_sms_carries_an_answer_link_that_records_the_answer(fake_providers, area, client_a):
    with tenant_scope("tenant_a"):
        residents(area, 1, line=False, mobile=True)
        asking.do_create_asks(make_check(), Resident.objects.all())
        assert asking.do_dispatch() == 1
    [sms] = fake_providers.sms_messages
    assert sms["to"] == "+819000000000"
    assert sms["body"].startswith("安否確認の訓練です。ご無事ですか？")
    link = next(word for word in sms["body"].split() if word.startswith("http"))
    assert urlsplit(link).netloc == client_a.host
    assert client_a.get(urlsplit(link).path).status_code == 200
    client_a.post(urlsplit(link).path, {"answer": Answer.FINE})
    with tenant_scope("tenant_a"):
        ask = Ask.objects.get()
        assert (ask.state, ask.answer) == (Ask.State.ANSWERED, Answer.FINE)


def test_silence_moves_the_question_to_the_next_channel_and_then_to_silent(fake_providers, area):
    with tenant_scope("tenant_a"):
        [person] = residents(area, 1, mobile=True)
        asking.do_create_asks(make_check(channels=["line", "sms"], silence_minutes=[10, 30]), Resident.objects.all())
        start = timezone.now()
        asking.do_dispatch(now=start)
        ask = Ask.objects.get()
        assert (ask.plan, ask.state, ask.next_attempt_at) == (["line", "sms"], Ask.State.WAITING,
                                                             start + timedelta(minutes=10))
        assert asking.do_dispatch(now=start + timedelta(minutes=9)) == 0
        assert fake_providers.sms_messages == []
        assert asking.do_dispatch(now=start + timedelta(minutes=11)) == 1
        assert len(fake_providers.sms_messages) == 1
        ask.refresh_from_db()
        assert (ask.channel_index, ask.next_attempt_at) == (1, start + timedelta(minutes=41))
        asking.do_dispatch(now=start + timedelta(minutes=42))
        ask.refresh_from_db()
        assert (ask.state, ask.next_attempt_at) == (Ask.State.SILENT, None)
        assert len(fake_providers.shown_to(person.line_user_id)) == 1 and len(fake_providers.sms_messages) == 1


def test_an_answer_while_waiting_stops_the_next_channel(fake_providers, area):
    with tenant_scope("tenant_a"):
        residents(area, 1, mobile=True)
        asking.do_create_asks(make_check(), Resident.objects.all())
        start = timezone.now()
        asking.do_dispatch(now=start)
        assert do_record_answer(Ask.objects.select_related("safety_check").get(), Answer.FINE, via=Channel.LINE)
        asking.do_dispatch(now=start + timedelta(minutes=11))
        assert fake_providers.sms_messages == []
        assert Ask.objects.get().state == Ask.State.ANSWERED


def test_a_refused_request_moves_to_the_next_channel_at_once(fake_providers, area):
    with tenant_scope("tenant_a"):
        residents(area, 1, mobile=True)
        asking.do_create_asks(make_check(), Resident.objects.all())
        fake_providers.fail(1, status=400, path=MULTICAST)
        assert asking.do_dispatch() == 1
        assert len(fake_providers.sms_messages) == 1
        ask = Ask.objects.get()
        assert (ask.channel_index, ask.state) == (1, Ask.State.WAITING)


def test_an_sms_whose_run_died_after_twilio_took_it_is_not_sent_again(fake_providers, area, monkeypatch):
    with tenant_scope("tenant_a"):
        residents(area, 1, line=False, mobile=True)
        asking.do_create_asks(make_check(), Resident.objects.all())

        def dies(*args, **kwargs):
            raise WorkerDied

        monkeypatch.setattr(asking, "_record", dies)
        with pytest.raises(WorkerDied):
            asking.do_dispatch()
        monkeypatch.undo()
        assert len(fake_providers.sms_messages) == 1
        asking.do_dispatch(now=timezone.now() + asking.LEASE + timedelta(seconds=1))
        assert len(fake_providers.sms_messages) == 1
        assert Ask.objects.get().state == Ask.State.WAITING
        assert "already accepted" in AskAttempt.objects.get().error or AskAttempt.objects.get().ok


def test_by_household_one_resident_with_a_channel_is_asked_for_the_household(fake_providers, area):
    with tenant_scope("tenant_a"):
        same = {"household_key": "610-0300|大住1-1"}
        no_line, lead, other = residents(area, 3, line=False, **same)
        Resident.objects.filter(pk__in=[lead.pk, other.pk]).update(mobile_phone="09011112222")
        [alone] = residents(area, 1, start=9, line=False)
        check = make_check(by_household=True)
        asking.do_create_asks(check, Resident.objects.all())
        states = dict(Ask.objects.values_list("resident_id", "state"))
        assert states == {no_line.pk: Ask.State.NO_CHANNEL, lead.pk: Ask.State.QUEUED,
                          other.pk: Ask.State.COVERED, alone.pk: Ask.State.NO_CHANNEL}
        assert asking.do_dispatch() == 1
        assert [m["to"] for m in fake_providers.sms_messages] == ["+819011112222"]
        do_record_answer(Ask.objects.select_related("safety_check").get(resident=lead), Answer.FINE, via="sms")
        assert Ask.objects.filter(answer=Answer.FINE).count() == 3  # the whole household


def test_a_closed_check_sends_nothing(fake_providers, area):
    with tenant_scope("tenant_a"):
        residents(area, 2)
        check = make_check()
        asking.do_create_asks(check, Resident.objects.all())
        SafetyCheck.objects.filter(pk=check.pk).update(state=SafetyCheck.State.CLOSED)
        assert asking.do_dispatch() == 0
        assert fake_providers.to(MULTICAST) == []


def test_check_ins_ask_on_each_residents_channels_with_three_answers(fake_providers, area):
    from outreach.models import DailyCheckin

    with tenant_scope("tenant_a"):
        [person] = residents(area, 1, language="en")
        DailyCheckin.objects.create(resident=person, at="08:00", wait_minutes=45)
        today = timezone.localdate()
        assert asking.do_create_checkin_asks(today, Resident.objects.all()) == 1
        assert asking.do_create_checkin_asks(today, Resident.objects.all()) == 0
        now = timezone.now()
        asking.do_dispatch(now=now)
        [message] = fake_providers.shown_to(person.line_user_id)
        assert message["text"] == "Good morning. How are you?"
        assert [i["action"]["data"] for i in message["quickReply"]["items"]] == [
            "answer:checkin:fine", "answer:checkin:unwell", "answer:checkin:need_help"]
        assert Ask.objects.get().next_attempt_at == now + timedelta(minutes=45)


def test_a_check_of_tenant_b_never_reaches_tenant_a_residents(fake_providers, area, tenant_b):
    with tenant_scope("tenant_a"):
        [a_person] = residents(area, 1, prefix="a")
        asking.do_create_asks(make_check(state=SafetyCheck.State.DRAFT), Resident.objects.all())
    with tenant_scope("tenant_b"):
        area_b = Area.objects.create(name="豊岡", kind=Area.Kind.DISTRICT)
        [b_person] = residents(area_b, 1, prefix="b")
        asking.do_create_asks(make_check(), Resident.objects.all())
        assert asking.do_dispatch() == 1
    with tenant_scope("tenant_a"):
        assert asking.do_dispatch() == 0  # A's check is not open
        assert Ask.objects.get().state == Ask.State.QUEUED
    assert fake_providers.shown_to(a_person.line_user_id) == []
    assert len(fake_providers.shown_to(b_person.line_user_id)) == 1


def test_the_line_rate_limit_waits_for_the_tenths_other_processes_used_up_in_redis():
    import hashlib
    import time
    import uuid

    token = uuid.uuid4().hex
    per_tick = int(asking.LINE_LIMITS["multicast"] * asking.LIMIT_SHARE / 10)
    channel = hashlib.sha256(token.encode()).hexdigest()[:16]
    redis = asking._redis_client()
    tick = int(time.time() * 10)
    for t in range(tick, tick + 3):  # another worker used this tenth of a second and the next two
        redis.set(f"mimamori:line-rate:{channel}:multicast:{t}", per_tick, ex=5)
    asking.line_slot("multicast", token)
    taken = int(time.time() * 10)
    assert taken >= tick + 3
    later = [int(redis.get(f"mimamori:line-rate:{channel}:multicast:{t}") or 0) for t in range(tick + 3, taken + 1)]
    assert sum(later) == 1  # this one request, in a tenth nobody had used up


def test_a_paused_provider_is_not_called_and_the_ask_waits_for_it(fake_providers, area, settings, monkeypatch):
    from notifications.delivery import BREAKER

    with tenant_scope("tenant_a"):
        residents(area, 1)
        asking.do_create_asks(make_check(), Resident.objects.all())
        now = timezone.now()
        monkeypatch.setitem(BREAKER.open_until, f"line:{settings.LINE_API_BASE}", now + timedelta(seconds=30))
        assert asking.do_dispatch(now=now) == 0
        ask = Ask.objects.get()
        assert (ask.state, ask.channel_index) == (Ask.State.QUEUED, 0)
        assert ask.next_attempt_at > now + timedelta(seconds=20)
        assert fake_providers.to(MULTICAST) == [] and AskAttempt.objects.count() == 0
