"""Daily check-ins: asked once a day at the resident's time over their first channel;
nobody answering is logged once as a NO_ANSWER contact (which does not reset the rhythm);
the reach page orders the channels and sets the check-in, refusing bad input."""
from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.delivery import tenant_time_zone
from notifications.fake_providers import line_event
from outreach.checkins import do_create_due_checkins, do_log_unanswered_checkins
from outreach.models import Ask, DailyCheckin
from tenants.context import tenant_scope
from tests.conftest import HOST_A, TenantClient
from tests.notifications.conftest import fake_providers  # noqa: F401 - the fixture
from watch.models import Channel, ContactLog, Outcome, Resident, ResidentChange

RESIDENT_LINE = "U" + "e5" * 16


@pytest.fixture
def fake(fake_providers):  # noqa: F811 - the fixture imported above
    return fake_providers


@pytest.fixture
def linked(hanako):
    with tenant_scope("tenant_a"):
        Resident.objects.filter(pk=hanako.pk).update(line_user_id=RESIDENT_LINE, line_linked_at=timezone.now(),
                                                     mobile_phone="090-1234-5678")
        hanako.refresh_from_db()
    return hanako


def local(now):
    with tenant_scope("tenant_a"):
        return now.astimezone(tenant_time_zone())


def agree(resident, at, **extra):
    with tenant_scope("tenant_a"):
        return DailyCheckin.objects.create(resident=resident, at=at, agreed_on=timezone.localdate(), **extra)


def run(capture, now):
    with capture(execute=True), tenant_scope("tenant_a"):
        return do_create_due_checkins(now)


def test_a_checkin_is_asked_once_at_its_minute_over_the_first_channel_and_please_call_me_is_urgent(
    client_a, linked, shigeru, fake, django_capture_on_commit_callbacks
):
    now = timezone.now()
    agree(linked, local(now).time().replace(second=0, microsecond=0))
    agree(shigeru, (local(now) + timedelta(minutes=30)).time().replace(second=0))  # not yet
    assert run(django_capture_on_commit_callbacks, now) == 1
    assert run(django_capture_on_commit_callbacks, now + timedelta(seconds=20)) == 0
    with tenant_scope("tenant_a"):
        [ask] = Ask.objects.all()
        assert (ask.resident_id, ask.kind, ask.day, ask.plan) == (
            linked.pk, Ask.Kind.CHECKIN, local(now).date(), [Channel.LINE, Channel.SMS, Channel.VOICE])
    [message] = fake.shown_to(RESIDENT_LINE)
    assert "お元気ですか" in message["text"]
    assert {item["action"]["data"] for item in message["quickReply"]["items"]} == {
        "answer:checkin:fine", "answer:checkin:unwell", "answer:checkin:need_help"}

    # The resident taps 「電話してほしい」 under it: the urgent concern is raised at once.
    from outreach.models import Concern, Severity
    from tests.outreach.test_line_residents import post_events

    with django_capture_on_commit_callbacks(execute=True):
        post_events(client_a, [line_event("postback", RESIDENT_LINE, data="answer:checkin:need_help")])
    with tenant_scope("tenant_a"):
        assert Ask.objects.get(pk=ask.pk).answer == "need_help"
        assert Concern.objects.get(resident=linked).severity == Severity.URGENT
    assert len(fake.line_replies()) == 1 and len(fake.shown_to(RESIDENT_LINE)) == 1  # a reply, no push


def test_inactive_checkins_paused_residents_and_missed_hours_are_not_asked(
    linked, shigeru, fake, django_capture_on_commit_callbacks
):
    now = timezone.now()
    agree(linked, local(now).time(), active=False)
    agree(shigeru, (local(now) - timedelta(minutes=90)).time())  # long past: not caught up at this hour
    assert run(django_capture_on_commit_callbacks, now) == 0
    with tenant_scope("tenant_a"):
        DailyCheckin.objects.filter(resident=linked).update(active=True)
        Resident.objects.filter(pk=linked.pk).update(status=Resident.Status.PAUSED)
    assert run(django_capture_on_commit_callbacks, now) == 0
    with tenant_scope("tenant_a"):
        assert Ask.objects.count() == 0


def make_ask(resident, *, state, day=None, reached=True):
    with tenant_scope("tenant_a"):
        return Ask.objects.create(kind=Ask.Kind.CHECKIN, day=day or timezone.localdate(), resident=resident,
                                  area_id=resident.area_id, plan=["line", "sms"], channel_index=1, state=state,
                                  reached=reached, last_sent_at=timezone.now() - timedelta(minutes=5))


def test_a_checkin_nobody_answered_is_logged_once_as_no_answer_and_does_not_reset_the_rhythm(linked):
    with tenant_scope("tenant_a"):
        due_before = Resident.objects.get(pk=linked.pk).next_due_at
    make_ask(linked, state=Ask.State.SILENT)
    with tenant_scope("tenant_a"):
        assert do_log_unanswered_checkins() == 1
        assert do_log_unanswered_checkins() == 0
        [contact] = ContactLog.objects.filter(resident=linked)
        assert (contact.outcome, contact.channel) == (Outcome.NO_ANSWER, Channel.SMS)
        assert Resident.objects.get(pk=linked.pk).next_due_at == due_before


def test_a_checkin_still_open_when_its_day_ended_is_closed_and_logged_once(linked, shigeru):
    yesterday = timezone.localdate() - timedelta(days=1)
    ask = make_ask(linked, state=Ask.State.WAITING, day=yesterday)
    never_sent = make_ask(shigeru, state=Ask.State.QUEUED, day=yesterday, reached=False)
    today = make_ask(shigeru, state=Ask.State.WAITING)
    with tenant_scope("tenant_a"):
        assert do_log_unanswered_checkins() == 1
        assert do_log_unanswered_checkins() == 0
        assert Ask.objects.get(pk=ask.pk).state == Ask.State.CLOSED
        assert Ask.objects.get(pk=never_sent.pk).state == Ask.State.CLOSED
        assert Ask.objects.get(pk=today.pk).state == Ask.State.WAITING
        assert list(ContactLog.objects.values_list("resident_id", "outcome")) == [(linked.pk, Outcome.NO_ANSWER)]


def test_an_answered_checkin_is_not_logged_as_no_answer(linked):
    ask = make_ask(linked, state=Ask.State.SILENT)
    with tenant_scope("tenant_a"):
        Ask.objects.filter(pk=ask.pk).update(state=Ask.State.ANSWERED, answer="fine")
        assert do_log_unanswered_checkins() == 0


# The reach page --------------------------------------------------------------------------

@pytest.fixture
def staff_client(client_a, staff_a):
    client_a.sign_in("staff-a")
    return client_a


def test_the_reach_page_shows_each_channel_with_its_address(staff_client, linked):
    html = staff_client.get(f"/outreach/residents/{linked.pk}/reach/").content.decode()
    assert 'data-testid="address-line"' in html and "connected on" in html
    assert "+819012345678" in html


def test_the_residents_page_says_how_they_are_asked_and_links_the_reach_page_for_staff_only(
        staff_client, linked, volunteer_a):
    with tenant_scope("tenant_a"):
        agree(linked, "08:30")
    html = staff_client.get(f"/watch/residents/{linked.pk}/").content.decode()
    assert 'data-testid="resident-reach"' in html and "LINE → SMS" in html and "08:30" in html
    assert f'href="/outreach/residents/{linked.pk}/reach/"' in html
    volunteer = TenantClient(HOST_A)
    volunteer.sign_in("volunteer-a")
    page = volunteer.get(f"/watch/residents/{linked.pk}/")
    assert page.status_code == 200 and 'data-testid="resident-reach"' not in page.content.decode()


def test_staff_order_and_enable_the_channels(staff_client, linked):
    url = f"/outreach/residents/{linked.pk}/reach/"
    response = staff_client.post(url, {"order_sms": "1", "order_line": "2", "order_voice": ""})
    assert response.status_code == 302
    with tenant_scope("tenant_a"):
        assert Resident.objects.get(pk=linked.pk).reach_channels == ["sms", "line"]
        assert "reach_channels" in ResidentChange.objects.filter(resident=linked).first().changes


@pytest.mark.parametrize(("form", "message"), [
    ({"order_sms": "1", "order_line": "1"}, "Give each channel its own number."),
    ({"order_sms": "x"}, "Choose a number from the list for each channel."),
    ({"order_sms": "9"}, "Choose a number from the list for each channel."),
    ({}, "Choose at least one channel."),
])
def test_bad_input_on_the_reach_form_is_refused_with_a_message_and_saves_nothing(
    staff_client, linked, form, message
):
    response = staff_client.post(f"/outreach/residents/{linked.pk}/reach/", form)
    assert response.status_code == 400 and message in response.content.decode()
    with tenant_scope("tenant_a"):
        assert Resident.objects.get(pk=linked.pk).reach_channels == []


def test_the_reach_form_speaks_japanese(staff_client, linked):
    staff_client.defaults["HTTP_ACCEPT_LANGUAGE"] = "ja"
    response = staff_client.post(f"/outreach/residents/{linked.pk}/reach/", {})
    assert "連絡手段を1つ以上選んでください" in response.content.decode()


def test_staff_set_a_daily_checkin(staff_client, linked):
    response = staff_client.post(f"/outreach/residents/{linked.pk}/reach/checkin/", {
        "active": "on", "at": "08:30", "wait_minutes": "45", "agreed_on": timezone.localdate().isoformat()})
    assert response.status_code == 302
    with tenant_scope("tenant_a"):
        row = DailyCheckin.objects.get(resident=linked)
        assert (row.active, row.at.strftime("%H:%M"), row.wait_minutes) == (True, "08:30", 45)


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"active": "on", "wait_minutes": "60", "agreed_on": "2026-01-05"}, "at", "Enter the time of the question"),
    ({"active": "on", "at": "08:00", "wait_minutes": "0", "agreed_on": "2026-01-05"}, "wait_minutes", "5"),
    ({"active": "on", "at": "25:00", "wait_minutes": "60", "agreed_on": "2026-01-05"}, "at", "valid time"),
    ({"active": "on", "at": "08:00", "wait_minutes": "60"}, "agreed_on", "Enter the date the resident agreed"),
    ({"active": "on", "at": "08:00", "wait_minutes": "60", "agreed_on": "2999-01-01"}, "agreed_on", "future"),
])
def test_bad_input_on_the_checkin_form_is_refused_and_saves_nothing(staff_client, linked, form, field, message):
    response = staff_client.post(f"/outreach/residents/{linked.pk}/reach/checkin/", form)
    html = response.content.decode()
    assert response.status_code == 400 and f'data-testid="errors-{field}"' in html and message in html
    with tenant_scope("tenant_a"):
        assert not DailyCheckin.objects.exists()
