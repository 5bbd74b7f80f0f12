"""What a resident's LINE account sends: a tap on an answer button or a rich-menu text
answers their open question and is acknowledged with a reply (free), never a push;
「電話してほしい」 raises the urgent concern; an account linked to no resident gets a polite
reply and changes nothing; a redelivered event changes nothing; people who are users
are still handled as users first."""
import json

import pytest
from django.utils import timezone

from notifications.fake_providers import LINE_SECRET, line_event, line_signature
from notifications.models import ChannelPreference, ReceivedWebhookEvent
from outreach.models import Answer, Ask, Concern, Severity
from tenants.context import tenant_scope
from tests.notifications.conftest import fake_providers  # noqa: F401 - the fixture
from watch.models import Channel, ContactLog, Outcome, Resident

WEBHOOK = "/notifications/line/webhook/"
RESIDENT_LINE = "U" + "c3" * 16
STRANGER = "U" + "d4" * 16


def post_events(client, events):
    body = json.dumps({"destination": "U" + "0" * 32, "events": events}, ensure_ascii=False).encode()
    return client.post(WEBHOOK, body, content_type="application/json",
                       HTTP_X_LINE_SIGNATURE=line_signature(LINE_SECRET, body))


@pytest.fixture
def fake(fake_providers):  # noqa: F811 - the fixture imported above
    return fake_providers


@pytest.fixture
def linked(hanako):
    with tenant_scope("tenant_a"):
        Resident.objects.filter(pk=hanako.pk).update(line_user_id=RESIDENT_LINE, line_linked_at=timezone.now())
        hanako.refresh_from_db()
    return hanako


def open_checkin(resident, schema="tenant_a") -> Ask:
    with tenant_scope(schema):
        return Ask.objects.create(kind=Ask.Kind.CHECKIN, day=timezone.localdate(), resident=resident,
                                  area_id=resident.area_id, plan=["line"], state=Ask.State.WAITING, reached=True,
                                  first_sent_at=timezone.now(), last_sent_at=timezone.now())


def send(client, capture, events):
    with capture(execute=True):
        assert post_events(client, events).status_code == 200


def reload(ask, schema="tenant_a") -> Ask:
    with tenant_scope(schema):
        return Ask.objects.get(pk=ask.pk)


def contacts(resident, schema="tenant_a"):
    with tenant_scope(schema):
        return list(ContactLog.objects.filter(resident=resident).values_list("channel", "outcome"))


def test_a_tap_on_an_answer_button_answers_the_checkin_and_is_acknowledged_by_reply_not_push(
    client_a, linked, fake, django_capture_on_commit_callbacks
):
    ask = open_checkin(linked)
    send(client_a, django_capture_on_commit_callbacks,
         [line_event("postback", RESIDENT_LINE, data="answer:checkin:fine")])
    ask = reload(ask)
    assert (ask.state, ask.answer, ask.answered_via) == (Ask.State.ANSWERED, Answer.FINE, Channel.LINE)
    assert contacts(linked) == [(Channel.LINE, Outcome.FINE)]
    [(_token, text)] = fake.line_replies()
    assert "元気" in text
    assert fake.to("/v2/bot/message/push") == [] and fake.to("/v2/bot/message/multicast") == []


def test_please_call_me_from_a_line_tap_raises_the_urgent_concern_at_once(
    client_a, linked, fake, django_capture_on_commit_callbacks
):
    ask = open_checkin(linked)
    send(client_a, django_capture_on_commit_callbacks,
         [line_event("postback", RESIDENT_LINE, data="answer:checkin:need_help")])
    assert reload(ask).answer == Answer.NEED_HELP
    assert contacts(linked) == [(Channel.LINE, Outcome.ASKED_FOR_CALL)]
    with tenant_scope("tenant_a"):
        [concern] = Concern.objects.filter(resident=linked)
        assert concern.severity == Severity.URGENT and concern.state == Concern.State.OPEN
    assert "連絡" in fake.line_replies()[0][1]


@pytest.mark.parametrize("text", ["元気です", "元気です！", "　元気　", "げんき。"])
def test_a_rich_menu_text_answers_the_checkin_in_full_or_half_width(
    client_a, linked, fake, django_capture_on_commit_callbacks, text
):
    ask = open_checkin(linked)
    send(client_a, django_capture_on_commit_callbacks, [line_event("message", RESIDENT_LINE, text=text)])
    assert reload(ask).answer == Answer.FINE
    assert len(fake.line_replies()) == 1


def test_a_text_that_is_not_an_answer_records_nothing(
    client_a, linked, fake, django_capture_on_commit_callbacks
):
    ask = open_checkin(linked)
    send(client_a, django_capture_on_commit_callbacks, [line_event("message", RESIDENT_LINE, text="元気じゃない")])
    assert reload(ask).answer == ""
    assert contacts(linked) == []
    assert len(fake.line_replies()) == 1


def test_please_call_me_with_no_question_waiting_is_still_logged_and_raises_the_concern(
    client_a, linked, fake, django_capture_on_commit_callbacks
):
    send(client_a, django_capture_on_commit_callbacks, [line_event("message", RESIDENT_LINE, text="電話してほしい")])
    assert contacts(linked) == [(Channel.LINE, Outcome.ASKED_FOR_CALL)]
    with tenant_scope("tenant_a"):
        assert Concern.objects.get(resident=linked).severity == Severity.URGENT
    assert "連絡" in fake.line_replies()[0][1]


def test_a_redelivered_event_changes_nothing_and_is_answered_once(
    client_a, linked, fake, django_capture_on_commit_callbacks
):
    event = line_event("message", RESIDENT_LINE, text="電話してほしい")
    send(client_a, django_capture_on_commit_callbacks, [event])
    redelivered = event | {"deliveryContext": {"isRedelivery": True}}
    send(client_a, django_capture_on_commit_callbacks, [redelivered])
    assert contacts(linked) == [(Channel.LINE, Outcome.ASKED_FOR_CALL)]
    assert len(fake.line_replies()) == 1
    with tenant_scope("tenant_a"):
        assert ReceivedWebhookEvent.objects.filter(event_id=event["webhookEventId"]).count() == 1


def test_a_line_account_linked_to_no_resident_gets_a_polite_reply_and_nothing_changes(
    client_a, linked, fake, django_capture_on_commit_callbacks
):
    ask = open_checkin(linked)
    for event in (line_event("message", STRANGER, text="元気です"),
                  line_event("postback", STRANGER, data="answer:checkin:need_help")):
        send(client_a, django_capture_on_commit_callbacks, [event])
    assert reload(ask).answer == ""
    with tenant_scope("tenant_a"):
        assert ContactLog.objects.count() == 0 and Concern.objects.count() == 0
    replies = [text for _token, text in fake.line_replies()]
    assert len(replies) == 2
    assert all("まだ見守りサービスにつながっていません" in text for text in replies)
    assert "/r/line-link/?linkToken=" in replies[0]


def test_a_resident_of_tenant_b_is_unknown_on_tenant_as_webhook(
    client_a, resident_b, fake, django_capture_on_commit_callbacks
):
    with tenant_scope("tenant_b"):
        Resident.objects.filter(pk=resident_b.pk).update(line_user_id=RESIDENT_LINE)
        resident_b.refresh_from_db()
    ask = open_checkin(resident_b, schema="tenant_b")
    send(client_a, django_capture_on_commit_callbacks,
         [line_event("postback", RESIDENT_LINE, data="answer:checkin:fine")])
    assert reload(ask, schema="tenant_b").answer == ""
    assert "まだ見守りサービスにつながっていません" in fake.line_replies()[0][1]


def test_a_user_with_the_same_line_account_is_handled_as_a_user_first(
    client_a, linked, volunteer_a, fake, django_capture_on_commit_callbacks
):
    with tenant_scope("tenant_a"):
        ChannelPreference.objects.update_or_create(user=volunteer_a, defaults={"line_user_id": RESIDENT_LINE})
    ask = open_checkin(linked)
    send(client_a, django_capture_on_commit_callbacks, [line_event("message", RESIDENT_LINE, text="元気です")])
    assert reload(ask).answer == ""  # a volunteer's reply, not the resident's answer


def test_a_safety_check_and_a_checkin_open_together_are_both_answered_by_one_fine(
    client_a, linked, fake, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from outreach.models import SafetyCheck

    checkin = open_checkin(linked)
    with tenant_scope("tenant_a"):
        check = SafetyCheck.objects.create(title="訓練", question="ご無事ですか？", state=SafetyCheck.State.OPEN,
                                           deadline=timezone.now() + timedelta(hours=1), channels=["line"])
        safety = Ask.objects.create(kind=Ask.Kind.SAFETY, safety_check=check, resident=linked,
                                    area_id=linked.area_id, plan=["line"], state=Ask.State.WAITING, reached=True)
    send(client_a, django_capture_on_commit_callbacks,
         [line_event("postback", RESIDENT_LINE, data="answer:safety:fine")])
    assert reload(safety).answer == Answer.FINE and reload(checkin).answer == Answer.FINE


def test_a_resident_who_blocks_the_official_account_is_unlinked_and_asked_on_another_channel(
    client_a, linked, resident_b, fake, django_capture_on_commit_callbacks
):
    """LINE accepts messages to a user who blocked the account and shows them nothing: the
    unfollow event is the only sign. Tenant B's resident with the same LINE id keeps it."""
    from watch.reach import channels_for

    with tenant_scope("tenant_a"):
        Resident.objects.filter(pk=linked.pk).update(mobile_phone="090-1234-5678")
    with tenant_scope("tenant_b"):
        Resident.objects.filter(pk=resident_b.pk).update(line_user_id=RESIDENT_LINE)
    unfollow = line_event("unfollow", RESIDENT_LINE)
    send(client_a, django_capture_on_commit_callbacks, [unfollow])
    send(client_a, django_capture_on_commit_callbacks, [unfollow])  # redelivered: nothing more
    send(client_a, django_capture_on_commit_callbacks, [line_event("unfollow", STRANGER)])
    with tenant_scope("tenant_a"):
        resident = Resident.objects.get(pk=linked.pk)
        assert (resident.line_user_id, resident.line_linked_at) == ("", None)
        assert channels_for(resident) == ["sms", "voice"]
        [change] = resident.changes.filter(changes__has_key="line_linked_at")
        assert change.actor is None and change.changes["line_linked_at"][1] is None
    with tenant_scope("tenant_b"):
        assert Resident.objects.get(pk=resident_b.pk).line_user_id == RESIDENT_LINE
    assert fake.line_replies() == [] and fake.to("/v2/bot/message/push") == []
