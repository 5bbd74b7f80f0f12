"""Escalation: urgent first, nobody skipped at once and said, recipients by the one
visibility rule, and each tenant's and concern's failure kept to itself."""
import logging
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.db import connection
from django.utils import timezone

from config.logging import TenantFilter
from notifications.models import Notification
from outreach import actions, receivers
from outreach import tasks as outreach_tasks
from outreach.models import Concern, ConcernEvent, DutyShift, EscalationPolicy, EscalationStep, Target
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tenants.models import Wakeup
from tests.conftest import HOST_A, TenantClient, make_user
from tests.watch.conftest import attach
from watch.actions import (
    do_log_contact,
    do_mark_overdue,
    do_record_consent,
    do_record_device_signal,
    do_register_device,
)
from watch.models import Rhythm


def notified(user, schema="tenant_a") -> list[Notification]:
    with tenant_scope(schema):
        return list(Notification.objects.filter(recipient=user))


def raise_(resident, cause="worried_contact", schema="tenant_a", **kw) -> Concern:
    with tenant_scope(schema):
        return actions.do_raise_concern(resident=resident, cause=cause, **kw)[0]


def run_step(concern_id) -> bool:
    """What the scheduled task does once the step's wait is over."""
    with tenant_scope("tenant_a"):
        Concern.objects.filter(pk=concern_id, next_step_at__isnull=False).update(next_step_at=timezone.now())
        concern = Concern.objects.get(pk=concern_id)
        return actions.do_advance_escalation(concern.pk, str(concern.timer))


def events(concern, kind) -> list[ConcernEvent]:
    with tenant_scope("tenant_a"):
        return list(ConcernEvent.objects.filter(concern=concern, kind=kind))


# B.2 Urgent is urgent ------------------------------------------------------------------

def test_please_call_me_reaches_case_workers_and_area_staff_at_once(team, hanako, staff_a,
                                                                   django_capture_on_commit_callbacks):
    with tenant_scope("tenant_a"):
        device, _token = do_register_device(actor=staff_a, resident=hanako, kind="button")
    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        do_record_device_signal(device=device, signal="call")
    with tenant_scope("tenant_a"):
        concern = Concern.objects.get(resident=hanako)
    assert (concern.cause, concern.severity) == ("device_call_request", "urgent")
    assert len(notified(team["case_worker"])) == 1 and len(notified(team["staff"])) == 1  # the first step
    assert notified(team["volunteer"]) == []
    assert all(n.urgent for n in notified(team["case_worker"]) + notified(team["staff"]))


def test_a_person_logging_that_the_resident_needs_help_raises_an_urgent_concern(
        team, hanako, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        do_log_contact(actor=team["volunteer"], resident=hanako, occurred_at=timezone.now(), channel="phone",
                       outcome="asked_for_call", note="電話してほしいとのこと")
        concern = Concern.objects.get(resident=hanako)
    assert concern.severity == "urgent" and concern.steps == actions.URGENT_STEPS
    assert len(notified(team["case_worker"])) == 1 and len(notified(team["staff"])) == 1


def test_any_urgent_concern_follows_the_urgent_default_even_where_a_general_policy_exists(team, hanako):
    with tenant_scope("tenant_a"):
        general = EscalationPolicy.objects.create(name="市の手順")
        EscalationStep.objects.create(policy=general, order=1, target=Target.ASSIGNED_VOLUNTEERS, wait_minutes=30)
    urgent = raise_(hanako, cause="manual", severity="urgent")
    assert urgent.policy_name == actions.URGENT_POLICY_NAME and urgent.steps == actions.URGENT_STEPS
    assert urgent.steps[0]["targets"] == [Target.CASE_WORKERS, Target.AREA_STAFF]
    # The general policy still applies to what is not urgent.
    assert raise_(hanako, cause="worried_contact").policy_name == "市の手順"


def test_a_tenant_policy_made_for_urgent_concerns_is_used_and_steps_of_one_order_go_together(team, hanako):
    with tenant_scope("tenant_a"):
        policy = EscalationPolicy.objects.create(name="緊急", severity="urgent", repeat_limit=2)
        EscalationStep.objects.create(policy=policy, order=1, target=Target.USER, user=team["staff"], wait_minutes=5)
        EscalationStep.objects.create(policy=policy, order=1, target=Target.CASE_WORKERS, wait_minutes=5)
        EscalationStep.objects.create(policy=policy, order=2, target=Target.ON_DUTY, wait_minutes=20)
    concern = raise_(hanako, cause="device_call_request")
    assert concern.policy_name == "緊急" and concern.repeat_limit == 2
    assert concern.steps == [
        {"targets": ["user", "case_workers"], "users": [team["staff"].pk], "wait_minutes": 5},
        {"targets": ["on_duty"], "users": [], "wait_minutes": 20},
    ]


def test_the_concern_page_shows_the_urgent_policy_and_its_steps_in_japanese(team, hanako, staff_a):
    concern = raise_(hanako, cause="device_call_request")
    client = TenantClient(HOST_A, language="ja")
    client.sign_in("staff-a")
    page = client.get(f"/outreach/concerns/{concern.pk}/").content.decode()
    assert "緊急時の標準エスカレーション" in page
    assert "担当の相談員・地域の担当職員に同時に通知し、10分待つ" in page
    assert "当番の人・担当の見守りボランティアに同時に通知し、10分待つ" in page
    english = TenantClient(HOST_A)
    english.sign_in("staff-a")
    page = english.get(f"/outreach/concerns/{concern.pk}/").content.decode()
    assert "Urgent escalation" in page and "at once, then wait 10 min" in page


def test_the_concern_page_shows_the_default_policy_and_its_steps(team, hanako, staff_a):
    concern = raise_(hanako)
    client = TenantClient(HOST_A, language="ja")
    client.sign_in("staff-a")
    page = client.get(f"/outreach/concerns/{concern.pk}/").content.decode()
    assert "標準のエスカレーション" in page
    assert "担当の見守りボランティアに通知し、15分待つ" in page and "担当の相談員に通知し、30分待つ" in page


def test_a_step_with_nobody_to_notify_is_skipped_at_once_and_the_concern_says_so(hanako, volunteer_a, areas_a,
                                                                                 staff_a):
    staff = make_user("tenant_a", "area-staff", User.Role.MUNICIPAL_STAFF)
    attach(staff, areas_a["osumi"])  # no case worker anywhere
    concern = raise_(hanako)
    with tenant_scope("tenant_a"):
        assert actions.do_advance_escalation(concern.pk, str(Concern.objects.get(pk=concern.pk).timer))
    assert len(notified(volunteer_a)) == 1
    assert run_step(concern.pk)  # step 2 reaches nobody: step 3 runs in the same pass
    assert len(notified(staff)) == 1
    skipped = events(concern, ConcernEvent.Kind.SKIPPED)
    assert [(e.data["step"], e.data["targets"]) for e in skipped] == [(2, ["case_workers"])]
    client = TenantClient(HOST_A, language="ja")
    client.sign_in("staff-a")
    assert "手順 2：通知できる相談員がいません" in client.get(f"/outreach/concerns/{concern.pk}/").content.decode()
    english = TenantClient(HOST_A)
    english.sign_in("staff-a")
    assert "Step 2: no case worker could be notified" in english.get(
        f"/outreach/concerns/{concern.pk}/").content.decode()


def test_a_concern_that_reaches_nobody_goes_to_the_administrators_and_stands_out(shigeru, admin_a, staff_a):
    with tenant_scope("tenant_a"):
        policy = EscalationPolicy.objects.create(name="近所だけ")
        EscalationStep.objects.create(policy=policy, order=1, target=Target.ASSIGNED_VOLUNTEERS, wait_minutes=5)
        EscalationStep.objects.create(policy=policy, order=2, target=Target.ON_DUTY, wait_minutes=5)
        inactive = make_user("tenant_a", "old-admin", User.Role.ADMIN)
        User.objects.filter(pk=inactive.pk).update(is_active=False)
    concern = raise_(shigeru)
    assert run_step(concern.pk)
    with tenant_scope("tenant_a"):
        concern.refresh_from_db()
    assert concern.reached_nobody and concern.next_step_at is None  # ran out: one round
    assert [n.kind for n in notified(admin_a)] == ["concern"]
    assert notified(inactive) == [] and notified(staff_a) == []
    assert [e.data["step"] for e in events(concern, ConcernEvent.Kind.SKIPPED)] == [1, 2]
    with tenant_scope("tenant_a"):  # the first administrator, made with the tenant, and admin-a
        admins = list(User.objects.filter(role="admin", is_active=True).order_by("pk").values_list("pk", flat=True))
    assert admin_a.pk in admins and inactive.pk not in admins
    assert [e.data["recipients"] for e in events(concern, ConcernEvent.Kind.UNREACHED)] == [admins]
    client = TenantClient(HOST_A, language="ja")
    client.sign_in("staff-a")
    board = client.get("/outreach/").content.decode()
    assert "誰にも通知できませんでした" in board and 'class="overdue unreached"' in board
    assert "誰にも通知できませんでした" in client.get("/outreach/?rows=1").content.decode()


def test_a_concern_that_reached_someone_does_not_stand_out(team, hanako, staff_a,
                                                           django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        raise_(hanako)
    client = TenantClient(HOST_A, language="ja")
    client.sign_in("staff-a")
    assert "誰にも通知できませんでした" not in client.get("/outreach/").content.decode()


# Recipients ask the one visibility rule ------------------------------------------------

def test_the_volunteer_of_a_resident_who_did_not_consent_is_not_notified(team, hanako):
    with tenant_scope("tenant_a"):
        do_record_consent(actor=None, resident=hanako, status="given", share_with_volunteers=False)
    concern = raise_(hanako)
    with tenant_scope("tenant_a"):
        assert actions.do_advance_escalation(concern.pk, str(Concern.objects.get(pk=concern.pk).timer))
    assert notified(team["volunteer"]) == []
    assert len(notified(team["case_worker"])) == 1  # step 1 skipped at once
    assert [e.data["step"] for e in events(concern, ConcernEvent.Kind.SKIPPED)] == [1]


def test_people_on_duty_who_may_not_see_the_resident_are_not_notified(team, hanako, areas_a, staff_a):
    with tenant_scope("tenant_a"):
        do_record_consent(actor=None, resident=hanako, status="given", share_with_volunteers=True,
                          share_with_association=False)
    officer = make_user("tenant_a", "officer-a", User.Role.ASSOCIATION_OFFICER)
    attach(officer, areas_a["assoc"])
    elsewhere = make_user("tenant_a", "cw-kodo", User.Role.CASE_WORKER)
    attach(elsewhere, areas_a["kodo"])
    with tenant_scope("tenant_a"):
        policy = EscalationPolicy.objects.create(name="当番")
        EscalationStep.objects.create(policy=policy, order=1, target=Target.ON_DUTY, wait_minutes=5)
        now = timezone.now()
        for person in (officer, elsewhere, staff_a):
            DutyShift.objects.create(user=person, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=1))
    concern = raise_(hanako)
    with tenant_scope("tenant_a"):
        people = actions.recipients_for(concern, concern.steps[0])
    assert people == [staff_a]


def test_a_notification_about_a_concern_names_its_resident_and_carries_no_note(team, hanako,
                                                                             django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        raise_(hanako, note="認知症の進行が見られる")
    [message] = notified(team["volunteer"])
    assert message.subject_resident == hanako.pk
    assert "山田 花子" in message.title and "認知症" not in message.title + message.body


def test_a_user_of_another_tenant_gets_nothing_from_an_escalation(team, hanako, outsider_b, client_b,
                                                                 django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        concern = raise_(hanako, cause="device_call_request")
    run_step(concern.pk)
    assert notified(outsider_b, schema="tenant_b") == []
    client_b.sign_in("outsider-b")
    assert client_b.get(f"/outreach/concerns/{concern.pk}/").status_code == HTTPStatus.NOT_FOUND
    assert "山田" not in client_b.get("/outreach/").content.decode()


@pytest.mark.parametrize(("language", "message"), [("ja", "表示されている重要度から選んでください。"),
                                                   ("en", "Choose one of the severities offered.")])
def test_raising_with_an_unknown_severity_is_400_with_a_message_and_saves_nothing(hanako, staff_a, language,
                                                                                  message):
    client = TenantClient(HOST_A, language=language)
    client.sign_in("staff-a")
    response = client.post(f"/outreach/residents/{hanako.pk}/raise/", {"severity": "x", "note": "様子が変"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert message in response.content.decode()
    with tenant_scope("tenant_a"):
        assert not Concern.objects.exists() and not ConcernEvent.objects.exists()
        assert not Notification.objects.exists()


# B.4 One tenant's failure is its own -----------------------------------------------------

def tenant_filtered(caplog):
    caplog.handler.addFilter(TenantFilter())
    caplog.set_level(logging.ERROR)
    return caplog


def make_due(schema, concern):
    with tenant_scope(schema):
        Concern.objects.filter(pk=concern.pk).update(next_step_at=timezone.now() - timedelta(seconds=5))
    from tenants.wakeups import do_lower_wakeup

    do_lower_wakeup(schema, actions.ESCALATION, timezone.now() - timedelta(seconds=5))


def test_one_tenants_failing_escalation_sweep_does_not_stop_the_others(team, hanako, resident_b, outsider_b,
                                                                       monkeypatch, caplog):
    concern_a = raise_(hanako)
    concern_b = raise_(resident_b, schema="tenant_b")  # tenant B's administrator is its area staff
    make_due("tenant_a", concern_a)
    make_due("tenant_b", concern_b)
    original = outreach_tasks.do_run_due_escalations

    def fails_in_a():
        if connection.schema_name == "tenant_a":
            raise RuntimeError("tenant A is broken")
        return original()

    monkeypatch.setattr(outreach_tasks, "do_run_due_escalations", fails_in_a)
    tenant_filtered(caplog)
    before = timezone.now()
    assert outreach_tasks.sweep_escalations.delay().get() == 2
    with tenant_scope("tenant_b"):
        assert ConcernEvent.objects.filter(concern=concern_b, kind="notified").exists()
    assert notified(team["volunteer"]) == []
    wakeup = Wakeup.objects.get(tenant__schema_name="tenant_a", purpose=actions.ESCALATION).due_at
    assert before + timedelta(seconds=29) < wakeup < timezone.now() + timedelta(seconds=61)  # pushed back
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.schema == "tenant_a" and record.exc_info
    # Retried later: once it works again, tenant A's step runs.
    monkeypatch.setattr(outreach_tasks, "do_run_due_escalations", original)
    make_due("tenant_a", concern_a)
    outreach_tasks.sweep_escalations.delay().get()
    assert len(notified(team["volunteer"])) == 1


def test_one_failing_concern_does_not_stop_the_others_and_is_retried(team, hanako, shigeru, staff_a,
                                                                     monkeypatch, caplog):
    failing = raise_(hanako)
    other = raise_(shigeru)
    make_due("tenant_a", failing)
    make_due("tenant_a", other)
    original = actions.recipients_for

    def breaks_on_hanako(concern, step):
        if concern.resident_id == hanako.pk:
            raise RuntimeError("bad row")
        return original(concern, step)

    monkeypatch.setattr(actions, "recipients_for", breaks_on_hanako)
    tenant_filtered(caplog)
    with tenant_scope("tenant_a"):
        assert actions.do_run_due_escalations() == 1
        failing.refresh_from_db()
        other.refresh_from_db()
        wakeup = Wakeup.objects.get(tenant__schema_name="tenant_a", purpose=actions.ESCALATION).due_at
    assert other.step_index == 1 or other.round == 1  # ran
    assert (failing.step_index, failing.round) == (0, 0)
    assert timezone.now() + timedelta(seconds=29) < failing.next_step_at < timezone.now() + timedelta(seconds=61)
    assert wakeup <= failing.next_step_at
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.schema == "tenant_a" and str(failing.pk) in record.getMessage()
    monkeypatch.setattr(actions, "recipients_for", original)
    make_due("tenant_a", failing)
    with tenant_scope("tenant_a"):
        assert actions.do_run_due_escalations() == 1
    assert len(notified(team["volunteer"])) == 1


def make_overdue(resident):
    with tenant_scope("tenant_a"):
        Rhythm.objects.filter(resident=resident).update(alert_at=timezone.now() - timedelta(minutes=1))


def test_a_failing_overdue_hook_cannot_roll_back_the_overdue_mark_and_the_repair_raises_the_concern(
        team, hanako, monkeypatch, caplog, django_capture_on_commit_callbacks):
    make_overdue(hanako)

    def broken(**kwargs):
        raise RuntimeError("outreach is broken")

    monkeypatch.setattr(receivers, "do_raise_concern", broken)
    tenant_filtered(caplog)
    with tenant_scope("tenant_a"):
        assert do_mark_overdue() == [hanako.pk]
        assert Rhythm.objects.get(resident=hanako).state == "overdue"
        assert not Concern.objects.exists()
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.schema == "tenant_a"
    monkeypatch.undo()
    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        assert actions.do_repair_overdue_concerns() == [hanako.pk]
        assert actions.do_repair_overdue_concerns() == []  # repaired once
        concern = Concern.objects.get(resident=hanako)
    assert (concern.cause, concern.state) == ("overdue", "open")
    assert len(notified(team["volunteer"])) == 1  # and it escalates


def test_the_repair_leaves_an_overdue_concern_someone_closed(team, hanako, staff_a):
    make_overdue(hanako)
    with tenant_scope("tenant_a"):
        do_mark_overdue()
        concern = Concern.objects.get(resident=hanako)
        actions.do_close_concern(concern=concern, actor=staff_a, state="dismissed", note="入院中と確認")
        assert actions.do_repair_overdue_concerns() == []
        assert Concern.objects.count() == 1


def test_the_repair_task_runs_for_its_own_tenant_only(hanako, resident_b, monkeypatch):
    make_overdue(hanako)
    with tenant_scope("tenant_b"):
        Rhythm.objects.update(alert_at=timezone.now() - timedelta(minutes=1))
    monkeypatch.setattr(receivers, "do_raise_concern", lambda **kw: 1 / 0)
    for schema in ("tenant_a", "tenant_b"):
        with tenant_scope(schema):
            do_mark_overdue()
    monkeypatch.undo()
    assert outreach_tasks.repair_overdue_concerns.delay("tenant_a").get() == 1
    with tenant_scope("tenant_b"):
        assert not Concern.objects.exists()
    with tenant_scope("tenant_a"):
        assert Concern.objects.filter(resident=hanako, cause="overdue").count() == 1


def test_a_failing_attention_hook_cannot_roll_back_the_contact(team, hanako, monkeypatch, caplog):
    monkeypatch.setattr(receivers, "do_raise_concern", lambda **kw: 1 / 0)
    tenant_filtered(caplog)
    with tenant_scope("tenant_a"):
        contact, created = do_log_contact(actor=team["volunteer"], resident=hanako, occurred_at=timezone.now(),
                                          channel="visit", outcome="worried")
        assert created and contact.pk
    assert [r.schema for r in caplog.records if r.levelno == logging.ERROR] == ["tenant_a"]


def test_asked_to_be_called_on_an_open_worried_concern_raises_it_to_urgent_at_once(
        team, hanako, staff_a, django_capture_on_commit_callbacks):
    """A worried visit opened a concern (volunteers first, 15 minutes); then 「電話してほしい」:
    the same concern becomes urgent and its case workers and area staff are notified now."""
    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        do_log_contact(actor=team["volunteer"], resident=hanako, occurred_at=timezone.now(), channel="visit",
                    outcome="worried", note="元気がない")
    with tenant_scope("tenant_a"):
        concern = Concern.objects.get(resident=hanako)
        assert concern.severity == "high"
        assert not Notification.objects.filter(recipient__in=[team["case_worker"], team["staff"]]).exists()
    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        do_log_contact(actor=team["volunteer"], resident=hanako, occurred_at=timezone.now(), channel="phone",
                    outcome="asked_for_call")
    with tenant_scope("tenant_a"):
        concern.refresh_from_db()
        assert (Concern.objects.filter(resident=hanako).count(), concern.severity) == (1, "urgent")
        urgent = Notification.objects.filter(urgent=True)
        assert set(urgent.values_list("recipient_id", flat=True)) >= {team["case_worker"].pk, team["staff"].pk}
        assert ConcernEvent.objects.filter(concern=concern, kind=ConcernEvent.Kind.SIGNAL).exists()


def test_a_less_severe_signal_on_an_urgent_concern_changes_nothing_of_its_escalation(
        team, hanako, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        concern, _opened = actions.do_raise_concern(resident=hanako, cause="worried_contact", severity="urgent")
        concern.refresh_from_db()
        before = (concern.severity, concern.step_index, concern.timer)
        actions.do_raise_concern(resident=hanako, cause="worried_contact", severity="normal")
        concern.refresh_from_db()
    assert (concern.severity, concern.step_index, concern.timer) == before


def test_asked_to_be_called_on_an_acknowledged_worried_concern_reopens_it_as_urgent(
        team, hanako, django_capture_on_commit_callbacks):
    """Someone took the worried visit; then 「電話してほしい」: the case workers and area staff
    are told at once all the same, and the board shows the concern open and urgent."""
    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        do_log_contact(actor=team["volunteer"], resident=hanako, occurred_at=timezone.now(), channel="visit",
                       outcome="worried", note="元気がない")
        concern = Concern.objects.get(resident=hanako)
        actions.do_acknowledge_concern(concern=concern, actor=team["volunteer"])
    with django_capture_on_commit_callbacks(execute=True) as callbacks, tenant_scope("tenant_a"):
        do_log_contact(actor=team["volunteer"], resident=hanako, occurred_at=timezone.now(), channel="phone",
                       outcome="asked_for_call")
    with tenant_scope("tenant_a"):
        concern.refresh_from_db()
        assert (concern.state, concern.severity) == ("open", "urgent")
        urgent = set(Notification.objects.filter(urgent=True).values_list("recipient_id", flat=True))
        assert urgent >= {team["case_worker"].pk, team["staff"].pk}
    assert callbacks  # the urgent step was enqueued after commit
