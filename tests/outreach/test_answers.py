"""Residents' answers from every channel but LINE and voice (issue 11): the answer link,
an SMS reply, a device press, and an answer recorded by a volunteer or staff member after
a visit or a call; each is one answer, kept late after the deadline, and a contact in
the log ("needs help" raising the urgent concern by watch's rule)."""
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.utils import timezone

from outreach import answers
from outreach.models import Answer, Ask, Concern, SafetyCheck
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, TenantClient, make_user
from tests.outreach.test_replies import fake_providers, post_sms, sms_params  # noqa: F401 - fixture
from watch import actions as watch_actions
from watch.models import Channel, ContactLog, Outcome

PHONE = "090-1234-5678"
E164 = "+819012345678"


def make_check(**fields) -> SafetyCheck:
    defaults = {"title": "避難訓練", "question": "ご無事ですか？", "state": SafetyCheck.State.OPEN,
                "deadline": timezone.now() + timedelta(hours=2), "channels": ["sms"]}
    return SafetyCheck.objects.create(**{**defaults, **fields})


def ask_of(resident, check=None, kind=Ask.Kind.SAFETY, **fields) -> Ask:
    with tenant_scope("tenant_a"):
        if kind == Ask.Kind.SAFETY:
            check = check or make_check()
            fields.setdefault("safety_check", check)
        else:
            fields.setdefault("day", timezone.localdate())
        fields.setdefault("state", Ask.State.WAITING)
        return Ask.objects.create(kind=kind, resident=resident, area_id=resident.area_id, **fields)


def token_of(ask) -> str:
    with tenant_scope("tenant_a"):
        return answers.answer_token(ask)


def reloaded(ask) -> Ask:
    with tenant_scope("tenant_a"):
        return Ask.objects.select_related("contact").get(pk=ask.pk)


def link(ask) -> str:
    return f"/r/a/{token_of(ask)}/"


def csrf_client(language="ja") -> TenantClient:
    return TenantClient(HOST_A, language=language, enforce_csrf_checks=True)


def post_answer(client, url, answer):
    page = client.get(url)
    token = page.context["csrf_token"]
    return client.post(url, {"answer": answer, "csrfmiddlewaretoken": str(token)})


# The answer link ------------------------------------------------------------------------

def test_the_answer_link_shows_the_question_and_the_organisation_but_not_the_resident(hanako):
    ask = ask_of(hanako)
    response = csrf_client().get(link(ask))
    page = response.content.decode()
    assert response.status_code == HTTPStatus.OK
    assert "ご無事ですか？" in page and "テスト市A" in page
    assert 'value="fine"' in page and 'value="need_help"' in page and 'value="unwell"' not in page
    assert "山田" not in page and "花子" not in page and "csrfmiddlewaretoken" in page
    assert reloaded(ask).answer == ""  # opening the link (a link preview) records nothing


def test_the_answer_link_is_in_english_for_a_resident_whose_language_is_english(hanako):
    with tenant_scope("tenant_a"):
        type(hanako).objects.filter(pk=hanako.pk).update(language="en")
        hanako.refresh_from_db()
    ask = ask_of(hanako, kind=Ask.Kind.CHECKIN)
    page = csrf_client(language="ja").get(link(ask)).content.decode()
    assert "Good morning. How are you?" in page and "Please call me" in page


def test_answering_by_link_records_the_answer_as_a_contact_and_thanks(hanako, django_capture_on_commit_callbacks):
    ask = ask_of(hanako)
    client = csrf_client()
    with django_capture_on_commit_callbacks(execute=True):
        response = post_answer(client, link(ask), "fine")
    assert (response.status_code, response["Location"]) == (HTTPStatus.SEE_OTHER, link(ask))
    page = client.get(link(ask)).content.decode()
    assert 'data-testid="thanks"' in page and "無事です" in page and 'name="answer"' not in page
    ask = reloaded(ask)
    assert (ask.answer, ask.answered_via, ask.late, ask.state) == ("fine", Channel.LINK, False, Ask.State.ANSWERED)
    assert (ask.contact.channel, ask.contact.outcome, ask.contact.resident_id) == (Channel.LINK, Outcome.FINE,
                                                                                   hanako.pk)


def test_a_link_used_twice_records_one_answer_and_says_what_was_recorded(hanako, django_capture_on_commit_callbacks):
    ask = ask_of(hanako)
    client = csrf_client()
    with django_capture_on_commit_callbacks(execute=True):
        post_answer(client, link(ask), "fine")
        second = post_answer(client, link(ask), "need_help")
    page = second.content.decode()
    assert second.status_code == HTTPStatus.OK and 'data-testid="already"' in page and "無事です" in page
    assert reloaded(ask).answer == "fine"
    with tenant_scope("tenant_a"):
        assert ContactLog.objects.filter(resident=hanako).count() == 1
        assert not Concern.objects.filter(resident=hanako).exists()


def test_an_answer_after_the_deadline_is_kept_marked_late_and_the_page_says_so(hanako):
    with tenant_scope("tenant_a"):
        check = make_check(deadline=timezone.now() - timedelta(minutes=5))
    ask = ask_of(hanako, check)
    client = csrf_client()
    assert post_answer(client, link(ask), "fine").status_code == HTTPStatus.SEE_OTHER
    assert 'data-testid="late"' in client.get(link(ask)).content.decode()
    ask = reloaded(ask)
    assert (ask.answer, ask.late) == ("fine", True)


@pytest.mark.parametrize("bad", ["unwell", "", "yes", "fine'--"])
def test_an_answer_the_question_does_not_offer_is_refused_with_a_message_and_nothing_saved(hanako, bad):
    ask = ask_of(hanako)
    response = post_answer(csrf_client(), link(ask), bad)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "下のいずれかを選んでください" in response.content.decode() or \
        "choose one of the answers" in response.content.decode()
    assert reloaded(ask).answer == ""


def test_a_post_without_the_csrf_token_records_nothing(hanako):
    ask = ask_of(hanako)
    response = csrf_client().post(link(ask), {"answer": "fine"})
    assert response.status_code == HTTPStatus.FORBIDDEN and reloaded(ask).answer == ""


def test_a_bad_token_or_one_of_another_tenant_is_a_plain_not_found_page(hanako, client_b):
    ask = ask_of(hanako)
    for client, url in ((csrf_client(), "/r/a/nonsense/"), (csrf_client(), link(ask)[:-3] + "x/"),
                        (client_b, link(ask))):
        response = client.get(url)
        page = response.content.decode()
        assert response.status_code == HTTPStatus.NOT_FOUND
        assert "このリンクは使えません" in page and "This link does not work" in page and "ご無事" not in page
    assert client_b.post(link(ask), {"answer": "fine"}).status_code in (HTTPStatus.NOT_FOUND, HTTPStatus.FORBIDDEN)
    assert reloaded(ask).answer == ""


def test_a_household_check_answered_by_one_link_answers_the_household(hanako, areas_a):
    from tests.watch.conftest import make_resident

    with tenant_scope("tenant_a"):
        check = make_check(by_household=True)
        spouse = make_resident(areas_a["block"], "山田 太郎")
    first = ask_of(hanako, check, household_key="k")
    other = ask_of(spouse, check, household_key="k", state=Ask.State.COVERED)
    post_answer(csrf_client(), link(first), "fine")
    assert reloaded(other).answer == "fine"
    second = post_answer(csrf_client(), link(other), "need_help")
    assert second.status_code == HTTPStatus.OK and 'data-testid="already"' in second.content.decode()
    assert reloaded(other).answer == "fine"


# SMS replies ----------------------------------------------------------------------------

@pytest.fixture
def reachable(hanako):
    with tenant_scope("tenant_a"):
        type(hanako).objects.filter(pk=hanako.pk).update(mobile_phone=PHONE)
        hanako.refresh_from_db()
    return hanako


@pytest.mark.parametrize(("text", "answer"), [("1", "fine"), ("１", "fine"), ("元気です。", "fine"),
                                              ("2", "need_help"), ("２", "need_help"), ("助けて！", "need_help")])
def test_a_residents_sms_reply_answers_their_open_question_and_is_thanked(
        client_a, reachable, fake_providers, django_capture_on_commit_callbacks, text, answer):  # noqa: F811
    ask = ask_of(reachable)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_sms(client_a, sms_params(text, sender=E164))
    assert response.status_code == HTTPStatus.OK
    assert "<Message>" in response.content.decode() and "ありがとうございます" in response.content.decode()
    ask = reloaded(ask)
    assert (ask.answer, ask.answered_via, ask.contact.channel) == (answer, Channel.SMS, Channel.SMS)


def test_an_sms_that_is_no_answer_records_nothing_and_says_how_to_answer(client_a, reachable, fake_providers):  # noqa: F811
    ask = ask_of(reachable)
    response = post_sms(client_a, sms_params("元気じゃない", sender=E164))
    assert "1" in response.content.decode() and "<Message>" in response.content.decode()
    assert reloaded(ask).answer == ""


def test_an_sms_delivered_again_records_one_answer(client_a, reachable, fake_providers):  # noqa: F811
    ask = ask_of(reachable)
    params = sms_params("1", sender=E164)
    post_sms(client_a, params)
    again = post_sms(client_a, params)
    assert "<Message>" not in again.content.decode()
    assert reloaded(ask).answer == "fine"


def test_an_sms_from_an_unknown_number_answers_nothing_and_keeps_no_trace(client_a, reachable, fake_providers):  # noqa: F811
    from notifications.models import ReceivedWebhookEvent

    ask = ask_of(reachable)
    response = post_sms(client_a, sms_params("1", sender="+819011112222"))
    assert response.status_code == HTTPStatus.OK and "<Message>" not in response.content.decode()
    assert reloaded(ask).answer == ""
    with tenant_scope("tenant_a"):
        assert not ReceivedWebhookEvent.objects.exists()


def test_the_sms_webhook_of_tenant_b_answers_no_question_of_tenant_a(client_b, reachable, fake_providers):  # noqa: F811
    ask = ask_of(reachable)
    response = post_sms(client_b, sms_params("1", sender=E164))
    assert "<Message>" not in response.content.decode()
    assert reloaded(ask).answer == ""


# Device presses -------------------------------------------------------------------------

def test_a_fine_press_answers_the_open_questions_with_the_press_as_the_only_contact(
        hanako, staff_a, django_capture_on_commit_callbacks):
    checkin = ask_of(hanako, kind=Ask.Kind.CHECKIN)
    safety = ask_of(hanako)
    with tenant_scope("tenant_a"):
        device, _token = watch_actions.do_register_device(actor=staff_a, resident=hanako, kind="button")
        with django_capture_on_commit_callbacks(execute=True):
            press = watch_actions.do_record_device_signal(device=device, signal="ok")
        assert ContactLog.objects.filter(resident=hanako).count() == 1
    for ask in (checkin, safety):
        ask = reloaded(ask)
        assert (ask.answer, ask.answered_via, ask.contact_id) == ("fine", Channel.DEVICE, press.pk)


def test_a_call_me_press_answers_need_help_and_raises_one_urgent_concern(
        hanako, staff_a, django_capture_on_commit_callbacks):
    safety = ask_of(hanako)
    with tenant_scope("tenant_a"):
        device, _token = watch_actions.do_register_device(actor=staff_a, resident=hanako, kind="button")
        with django_capture_on_commit_callbacks(execute=True):
            watch_actions.do_record_device_signal(device=device, signal="call")
        assert ContactLog.objects.filter(resident=hanako).count() == 1
        concerns = list(Concern.objects.filter(resident=hanako).values_list("cause", "severity"))
    assert reloaded(safety).answer == "need_help"
    assert concerns == [(Concern.Cause.DEVICE_CALL_REQUEST, "urgent")]


# Applying answers: the urgent concern follows watch's rule ------------------------------

def test_a_need_help_answer_opens_an_urgent_asked_for_help_concern(hanako, django_capture_on_commit_callbacks):
    ask = ask_of(hanako)
    with tenant_scope("tenant_a"), django_capture_on_commit_callbacks(execute=True):
        assert answers.do_record_answer(ask, Answer.NEED_HELP, Channel.LINK)
    with tenant_scope("tenant_a"):
        concern = Concern.objects.get(resident=hanako)
        assert (concern.cause, concern.severity) == (Concern.Cause.ASKED_FOR_HELP, "urgent")
        assert reloaded(ask).contact.outcome == Outcome.NEEDS_HELP


def test_a_checkin_please_call_me_opens_an_urgent_concern(hanako, django_capture_on_commit_callbacks):
    ask = ask_of(hanako, kind=Ask.Kind.CHECKIN)
    with tenant_scope("tenant_a"), django_capture_on_commit_callbacks(execute=True):
        assert answers.do_record_answer(ask, Answer.NEED_HELP, Channel.SMS)
    with tenant_scope("tenant_a"):
        concern = Concern.objects.get(resident=hanako)
        assert concern.severity == "urgent"
        assert reloaded(ask).contact.outcome == Outcome.ASKED_FOR_CALL


def test_a_fine_answer_moves_the_rhythm_and_applies_once(hanako, django_capture_on_commit_callbacks):
    ask = ask_of(hanako)
    with tenant_scope("tenant_a"):
        before = type(hanako).objects.get(pk=hanako.pk).next_due_at
        answers.do_record_answer(ask, Answer.FINE, Channel.LINK)
        assert answers.do_apply_answers() == 1
        assert answers.do_apply_answers() == 0
        after = type(hanako).objects.get(pk=hanako.pk)
    assert after.last_outcome == Outcome.FINE and (before is None or after.next_due_at > before)


# Answers recorded by a person -----------------------------------------------------------

def record_url(ask) -> str:
    return f"/outreach/safety/asks/{ask.pk}/answer/"


def test_a_volunteer_records_the_answer_after_a_visit_as_one_contact_on_that_channel(
        client_a, hanako, volunteer_a, django_capture_on_commit_callbacks):
    ask = ask_of(hanako)
    client_a.sign_in("volunteer-a")
    assert client_a.get(record_url(ask)).status_code == HTTPStatus.OK
    with django_capture_on_commit_callbacks(execute=True):
        response = client_a.post(record_url(ask), {"answer": "fine", "channel": "visit", "note": "玄関で会えた"})
    assert response.status_code == HTTPStatus.FOUND
    ask = reloaded(ask)
    assert (ask.answer, ask.answered_via, ask.answered_by_id) == ("fine", answers.STAFF, volunteer_a.pk)
    with tenant_scope("tenant_a"):
        contacts = list(ContactLog.objects.filter(resident=hanako).values_list("channel", "logged_by_id", "outcome"))
    assert contacts == [("visit", volunteer_a.pk, "fine")] and ask.contact is not None
    again = client_a.post(record_url(ask), {"answer": "need_help", "channel": "phone"})
    assert again.status_code == HTTPStatus.FOUND and reloaded(ask).answer == "fine"


@pytest.mark.parametrize("data", [{"answer": "maybe", "channel": "visit"}, {"answer": "fine", "channel": "line"},
                                  {"answer": "fine"}, {"answer": "fine", "channel": "phone", "note": "   "}])
def test_a_recorded_answer_with_bad_input_is_refused_with_a_message_and_nothing_saved(client_a, hanako, staff_a,
                                                                                       areas_a, data):
    from tests.watch.conftest import attach

    attach(staff_a, areas_a["osumi"])
    ask = ask_of(hanako)
    client_a.sign_in("staff-a")
    response = client_a.post(record_url(ask), data)
    assert response.status_code == HTTPStatus.BAD_REQUEST and 'data-testid="error"' in response.content.decode()
    assert reloaded(ask).answer == ""
    with tenant_scope("tenant_a"):
        assert not ContactLog.objects.exists()


def test_a_volunteer_cannot_record_an_answer_for_a_resident_they_do_not_see(client_a, shigeru, volunteer_a):
    ask = ask_of(shigeru)
    client_a.sign_in("volunteer-a")
    assert client_a.get(record_url(ask)).status_code == HTTPStatus.NOT_FOUND
    assert client_a.post(record_url(ask), {"answer": "fine", "channel": "visit"}).status_code == HTTPStatus.NOT_FOUND
    assert reloaded(ask).answer == ""


def test_an_outsider_of_tenant_b_cannot_record_an_answer(client_b, outsider_b, hanako):
    ask = ask_of(hanako)
    with tenant_scope("tenant_b"):
        pass
    client_b.sign_in("outsider-b")
    assert client_b.post(record_url(ask), {"answer": "fine", "channel": "visit"}).status_code == HTTPStatus.NOT_FOUND
    assert reloaded(ask).answer == ""


def test_signed_out_people_are_sent_to_sign_in(client_a, hanako):
    ask = ask_of(hanako)
    response = client_a.post(record_url(ask), {"answer": "fine", "channel": "visit"})
    assert response.status_code == HTTPStatus.FOUND and "/accounts/login/" in response["Location"]
    assert reloaded(ask).answer == ""


def test_only_people_who_see_the_resident_record_their_answer(client_a, hanako):
    officer = make_user("tenant_a", "officer-x", User.Role.ASSOCIATION_OFFICER)
    ask = ask_of(hanako)
    client = TenantClient(HOST_A)
    client.sign_in(officer.username)
    # The officer has no area: they see nobody, so the question is not theirs.
    assert client.post(record_url(ask), {"answer": "fine", "channel": "visit"}).status_code == HTTPStatus.NOT_FOUND


def test_an_sms_from_a_number_two_residents_share_answers_neither_and_says_so(
        client_a, reachable, areas_a, fake_providers):  # noqa: F811
    from tests.watch.conftest import make_resident

    with tenant_scope("tenant_a"):
        spouse = make_resident(areas_a["block"], "山田 太郎", mobile_phone="09012345678")
    asks = [ask_of(reachable), ask_of(spouse)]
    response = post_sms(client_a, sms_params("1", sender=E164))
    assert "リンク" in response.content.decode()
    assert [reloaded(ask).answer for ask in asks] == ["", ""]


def test_a_resident_whose_language_is_english_is_thanked_in_english(client_a, reachable, fake_providers):  # noqa: F811
    with tenant_scope("tenant_a"):
        type(reachable).objects.filter(pk=reachable.pk).update(language="en")
    ask = ask_of(reachable)
    response = post_sms(client_a, sms_params("１", sender=E164))
    assert "Thank you. Your answer “I'm safe” was received." in response.content.decode()
    assert reloaded(ask).answer == "fine"
