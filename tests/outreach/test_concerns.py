from datetime import timedelta
from http import HTTPStatus

import pytest
from django.utils import timezone

from notifications.models import Notification
from outreach import actions
from outreach.models import AckLink, Concern, ConcernEvent, EscalationPolicy, EscalationStep
from tenants.context import tenant_scope


def notified(user) -> list[str]:
    with tenant_scope("tenant_a"):
        return list(Notification.objects.filter(recipient=user).values_list("dedupe_key", flat=True))


def raise_(resident, cause="worried_contact", **kw):
    with tenant_scope("tenant_a"):
        return actions.do_raise_concern(resident=resident, cause=cause, **kw)


def run_step(concern_id):
    """What the scheduled task does, with the concern's current timer."""
    with tenant_scope("tenant_a"):
        concern = Concern.objects.get(pk=concern_id)
        # Time passes: the step's wait is over (if a step is still scheduled).
        Concern.objects.filter(pk=concern_id, next_step_at__isnull=False).update(next_step_at=timezone.now())
        return actions.do_advance_escalation(concern.pk, str(concern.timer)), str(concern.timer)


def test_a_second_signal_for_the_same_cause_adds_to_the_open_concern(team, hanako,
                                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first, opened = raise_(hanako, note="新聞がたまっている")
        second, opened_again = raise_(hanako, note="夜も電気がつかない")
    assert opened and not opened_again and first.pk == second.pk
    with tenant_scope("tenant_a"):
        assert Concern.objects.count() == 1
        kinds = list(ConcernEvent.objects.values_list("kind", flat=True))
    assert kinds[:1] == ["opened"] and "signal" in kinds


def test_escalation_goes_volunteer_then_case_worker_then_staff_each_once(team, hanako,
                                                                         django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        concern, _ = raise_(hanako)  # step 1 runs on commit (eager Celery)
    assert len(notified(team["volunteer"])) == 1 and notified(team["case_worker"]) == []
    ran, _timer = run_step(concern.pk)
    assert ran and len(notified(team["case_worker"])) == 1
    run_step(concern.pk)
    assert len(notified(team["staff"])) == 1
    # The default policy runs once: then it has run out of steps.
    assert run_step(concern.pk)[0] is False
    with tenant_scope("tenant_a"):
        assert Concern.objects.get(pk=concern.pk).next_step_at is None
        assert ConcernEvent.objects.filter(concern=concern, kind="exhausted").count() == 1


def test_the_same_task_delivered_twice_runs_its_step_once(team, hanako):
    concern, _ = raise_(hanako)  # no commit callbacks: the first task is not run yet
    with tenant_scope("tenant_a"):
        timer = str(Concern.objects.get(pk=concern.pk).timer)
        assert actions.do_advance_escalation(concern.pk, timer) is True
        assert actions.do_advance_escalation(concern.pk, timer) is False  # redelivered: stale timer
    assert len(notified(team["volunteer"])) == 1
    assert notified(team["case_worker"]) == []


def test_a_step_that_failed_midway_runs_again_and_notifies_nobody_twice(team, hanako, monkeypatch):
    concern, _ = raise_(hanako)
    with tenant_scope("tenant_a"):
        timer = str(Concern.objects.get(pk=concern.pk).timer)
    original = actions.concern_event

    def crash(*args, **kwargs):
        if args[1] == ConcernEvent.Kind.NOTIFIED:
            raise RuntimeError("worker died")
        return original(*args, **kwargs)

    monkeypatch.setattr(actions, "concern_event", crash)
    with pytest.raises(RuntimeError), tenant_scope("tenant_a"):
        actions.do_advance_escalation(concern.pk, timer)
    assert notified(team["volunteer"]) == []  # rolled back with the step
    monkeypatch.setattr(actions, "concern_event", original)
    with tenant_scope("tenant_a"):
        assert actions.do_run_due_escalations() == 1  # the sweep resumes it from the database
    assert len(notified(team["volunteer"])) == 1


def test_acknowledging_stops_further_steps_at_once(team, hanako, client_a, volunteer_a,
                                                   django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        concern, _ = raise_(hanako)
    client_a.sign_in("volunteer-a")
    response = client_a.post(f"/outreach/concerns/{concern.pk}/acknowledge/", {"note": "向かいます"})
    assert response.status_code == HTTPStatus.FOUND
    assert run_step(concern.pk)[0] is False
    assert notified(team["case_worker"]) == []
    with tenant_scope("tenant_a"):
        concern.refresh_from_db()
    assert (concern.state, concern.acknowledged_by_id, concern.next_step_at) == ("acknowledged", volunteer_a.pk, None)


def test_the_policy_in_force_is_copied_when_the_concern_opens(team, hanako, areas_a):
    with tenant_scope("tenant_a"):
        policy = EscalationPolicy.objects.create(name="大住 緊急", area=areas_a["osumi"], repeat_limit=2)
        EscalationStep.objects.create(policy=policy, order=1, target="user", user=team["staff"], wait_minutes=5)
    concern, _ = raise_(hanako)
    with tenant_scope("tenant_a"):
        EscalationStep.objects.filter(policy=policy).update(wait_minutes=99)  # a later edit
        concern.refresh_from_db()
    assert concern.policy_name == "大住 緊急" and concern.repeat_limit == 2
    assert concern.steps == [{"targets": ["user"], "users": [team["staff"].pk], "wait_minutes": 5}]


def test_overdue_and_device_call_raise_concerns(team, hanako, staff_a, django_capture_on_commit_callbacks):
    from watch.actions import do_mark_overdue, do_record_device_signal, do_register_device
    from watch.models import Rhythm

    with tenant_scope("tenant_a"):
        Rhythm.objects.filter(resident=hanako).update(alert_at=timezone.now() - timedelta(minutes=1))
        do_mark_overdue()
        device, _token = do_register_device(actor=staff_a, resident=hanako, kind="button")
        do_record_device_signal(device=device, signal="call")
        causes = dict(Concern.objects.values_list("cause", "severity"))
    assert causes == {"overdue": "high", "device_call_request": "urgent"}


def test_ack_link_works_once_for_its_own_person(team, hanako, django_capture_on_commit_callbacks):
    from tests.conftest import HOST_A, TenantClient

    with django_capture_on_commit_callbacks(execute=True):
        concern, _ = raise_(hanako)
    with tenant_scope("tenant_a"):
        body = Notification.objects.get(recipient=team["volunteer"]).body
    token = body.split("/outreach/ack/")[1].split("/")[0]
    anyone = TenantClient(HOST_A)
    assert anyone.get(f"/outreach/ack/{token}/").status_code == HTTPStatus.OK  # a preview changes nothing
    with tenant_scope("tenant_a"):
        assert Concern.objects.get(pk=concern.pk).state == "open"
    assert anyone.post(f"/outreach/ack/{token}/").status_code == HTTPStatus.OK
    with tenant_scope("tenant_a"):
        concern.refresh_from_db()
    assert (concern.state, concern.acknowledged_by_id) == ("acknowledged", team["volunteer"].pk)
    replay = anyone.post(f"/outreach/ack/{token}/")
    forged = anyone.post("/outreach/ack/forged-token-1234567890/")
    assert replay.status_code == forged.status_code == HTTPStatus.NOT_FOUND


def test_expired_ack_link_changes_nothing(team, hanako, django_capture_on_commit_callbacks):
    from tests.conftest import HOST_A, TenantClient

    with django_capture_on_commit_callbacks(execute=True):
        concern, _ = raise_(hanako)
    with tenant_scope("tenant_a"):
        body = Notification.objects.get(recipient=team["volunteer"]).body
        AckLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    token = body.split("/outreach/ack/")[1].split("/")[0]
    assert TenantClient(HOST_A).post(f"/outreach/ack/{token}/").status_code == HTTPStatus.NOT_FOUND
    with tenant_scope("tenant_a"):
        assert Concern.objects.get(pk=concern.pk).state == "open"


def test_user_outside_the_scope_cannot_acknowledge(team, hanako, shigeru, client_a, volunteer_a, client_b,
                                                   outsider_b):
    concern, _ = raise_(shigeru)  # not the volunteer's resident
    client_a.sign_in("volunteer-a")
    assert client_a.post(f"/outreach/concerns/{concern.pk}/acknowledge/").status_code == HTTPStatus.NOT_FOUND
    client_b.sign_in("outsider-b")
    assert client_b.post(f"/outreach/concerns/{concern.pk}/acknowledge/").status_code == HTTPStatus.NOT_FOUND
    assert "髙橋" not in client_b.get("/outreach/").content.decode()
    with tenant_scope("tenant_a"):
        assert Concern.objects.get(pk=concern.pk).state == "open"


def test_closing_needs_a_note_and_a_valid_state(team, hanako, client_a, staff_a):
    concern, _ = raise_(hanako)
    client_a.sign_in("staff-a")
    response = client_a.post(f"/outreach/concerns/{concern.pk}/close/", {"state": "resolved", "note": ""})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Say what was done or found." in response.content.decode()
    response = client_a.post(f"/outreach/concerns/{concern.pk}/close/", {"state": "deleted", "note": "x"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    client_a.post(f"/outreach/concerns/{concern.pk}/close/", {"state": "resolved", "note": "訪問し無事を確認"})
    with tenant_scope("tenant_a"):
        assert Concern.objects.get(pk=concern.pk).state == "resolved"


def test_raising_by_hand_with_bad_input_is_400_and_saves_nothing(hanako, client_a, staff_a):
    client_a.sign_in("staff-a")
    response = client_a.post(f"/outreach/residents/{hanako.pk}/raise/", {"severity": "apocalyptic", "note": "x"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Choose one of the severities offered." in response.content.decode()
    response = client_a.post(f"/outreach/residents/{hanako.pk}/raise/", {"severity": "high", "note": "   "})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "The note is only spaces: write something or leave it empty." in response.content.decode()
    with tenant_scope("tenant_a"):
        assert not Concern.objects.exists()


def test_events_after_an_id_replay_what_a_client_missed(team, hanako, client_a, staff_a, client_b, outsider_b):
    raise_(hanako)
    client_a.sign_in("staff-a")
    everything = client_a.get("/outreach/events/?after=0").json()["events"]
    assert [e["type"] for e in everything] == ["concern.opened"]
    raise_(hanako)
    missed = client_a.get(f"/outreach/events/?after={everything[-1]['id']}").json()["events"]
    assert [e["type"] for e in missed] == ["concern.signal"]
    assert client_a.get("/outreach/events/?after=x").status_code == HTTPStatus.BAD_REQUEST
    client_b.sign_in("outsider-b")
    assert client_b.get("/outreach/events/?after=0").json()["events"] == []


def test_a_whole_acknowledging_reply_in_line_acknowledges_the_one_concern_awaiting_it(
        team, hanako, django_capture_on_commit_callbacks):
    from notifications.hooks import reply_received

    with django_capture_on_commit_callbacks(execute=True):
        concern, _ = raise_(hanako)
    with tenant_scope("tenant_a"):
        reply_received.send(sender=None, user=team["volunteer"], channel="line", text="了解しました")
        concern.refresh_from_db()
    assert concern.state == "acknowledged"


def ack_token_of(user) -> str:
    with tenant_scope("tenant_a"):
        body = Notification.objects.filter(recipient=user).latest("pk").body
    return body.split("/outreach/ack/")[1].split("/")[0]


@pytest.mark.parametrize("language, taken", [
    ("ja", "cw-aさんが 12/2 10:05 に対応中です。"),
    ("en", "cw-a has been on it since 12/2 10:05."),
])
def test_second_ack_link_says_who_took_the_concern_and_when(team, hanako, django_capture_on_commit_callbacks,
                                                            language, taken):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from tests.conftest import HOST_A, TenantClient

    with django_capture_on_commit_callbacks(execute=True):
        concern, _ = raise_(hanako)
    run_step(concern.pk)  # the case worker is alerted too: two people hold a link
    first = TenantClient(HOST_A, language=language).post(f"/outreach/ack/{ack_token_of(team['case_worker'])}/")
    assert first.status_code == HTTPStatus.OK
    with tenant_scope("tenant_a"):
        Concern.objects.filter(pk=concern.pk).update(
            acknowledged_at=datetime(2026, 12, 2, 10, 5, tzinfo=ZoneInfo("Asia/Tokyo")))
    second = TenantClient(HOST_A, language=language).post(f"/outreach/ack/{ack_token_of(team['volunteer'])}/")
    assert second.status_code == HTTPStatus.OK
    assert taken in second.content.decode()
    thanks = {"ja": "ありがとうございます", "en": "Thank you"}[language]
    assert thanks in first.content.decode() and thanks not in second.content.decode()
    with tenant_scope("tenant_a"):
        concern.refresh_from_db()
        assert (concern.state, concern.acknowledged_by_id) == ("acknowledged", team["case_worker"].pk)
        assert ConcernEvent.objects.filter(concern=concern, kind="acknowledged").count() == 1


def test_ack_link_of_a_closed_concern_says_who_closed_it(team, hanako, django_capture_on_commit_callbacks):
    from tests.conftest import HOST_A, TenantClient

    with django_capture_on_commit_callbacks(execute=True):
        concern, _ = raise_(hanako)
    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        actions.do_close_concern(concern=concern, actor=team["staff"], state="dismissed", note="入院中と確認")
    answer = TenantClient(HOST_A, language="en").post(f"/outreach/ack/{ack_token_of(team['volunteer'])}/")
    assert answer.status_code == HTTPStatus.OK
    assert "area-staff closed it at" in answer.content.decode()
    with tenant_scope("tenant_a"):
        assert Concern.objects.get(pk=concern.pk).state == "dismissed"
