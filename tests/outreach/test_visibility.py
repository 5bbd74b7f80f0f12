"""Everything that tells a person about a resident asks the one visibility rule: notes on
pages and in the API, live events of every type, and notifications."""
from http import HTTPStatus

import pytest
from django.utils import timezone

from outreach.models import Concern
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, TenantClient, make_user
from tests.watch.conftest import attach, make_resident
from watch import actions
from watch.models import Assignment, Rhythm

NOTE = "認知症の進行が見られる。服薬の管理が難しい。"


@pytest.fixture
def people(hanako, volunteer_a, staff_a, areas_a):
    """Around 花子 (3班, consent given to both): her volunteer, an officer of her
    association, a case worker of her district; and outside: a volunteer not on her
    team, an officer and a case worker of another district."""
    people = {
        "volunteer": volunteer_a, "staff": staff_a,
        "officer": make_user("tenant_a", "officer", User.Role.ASSOCIATION_OFFICER),
        "case_worker": make_user("tenant_a", "case-worker", User.Role.CASE_WORKER),
        "other_volunteer": make_user("tenant_a", "other-volunteer", User.Role.VOLUNTEER),
        "other_officer": make_user("tenant_a", "other-officer", User.Role.ASSOCIATION_OFFICER),
        "other_case_worker": make_user("tenant_a", "other-case-worker", User.Role.CASE_WORKER),
    }
    attach(people["officer"], areas_a["assoc"])
    attach(people["case_worker"], areas_a["osumi"])
    attach(people["other_officer"], areas_a["kodo"])
    attach(people["other_case_worker"], areas_a["kodo"])
    return people


def signed_in(username: str) -> TenantClient:
    client = TenantClient(HOST_A)
    client.sign_in(username)
    return client


def worried_contact(resident, author) -> Concern:
    with tenant_scope("tenant_a"):
        actions.do_log_contact(actor=author, resident=resident, occurred_at=timezone.now(), channel="visit",
                               outcome="worried", note=NOTE)
        return Concern.objects.get(resident=resident)


def test_a_case_workers_note_is_never_shown_to_volunteers_or_officers(people, hanako):
    concern = worried_contact(hanako, people["case_worker"])
    for username in ("volunteer-a", "officer"):
        client = signed_in(username)
        for path in (f"/outreach/concerns/{concern.pk}/", f"/watch/residents/{hanako.pk}/",
                     f"/api/v1/residents/{hanako.pk}/contacts/"):
            response = client.get(path)
            assert response.status_code == HTTPStatus.OK, (username, path)
            assert NOTE not in response.content.decode(), (username, path)
        # They see that a concern exists, its cause and state.
        page = client.get(f"/outreach/concerns/{concern.pk}/").content.decode()
        assert "Worrying contact" in page and "Open" in page
    for username in ("staff-a", "case-worker"):
        assert NOTE in signed_in(username).get(f"/outreach/concerns/{concern.pk}/").content.decode()


def test_a_volunteer_still_reads_the_note_they_wrote_themselves(people, hanako):
    concern = worried_contact(hanako, people["volunteer"])
    assert NOTE in signed_in("volunteer-a").get(f"/outreach/concerns/{concern.pk}/").content.decode()
    assert NOTE not in signed_in("officer").get(f"/outreach/concerns/{concern.pk}/").content.decode()


def test_the_failed_deliveries_page_lists_only_what_the_viewer_may_see(people, hanako, shigeru, areas_a):
    from notifications.actions import do_notify
    from notifications.models import Notification

    district_staff = make_user("tenant_a", "district-staff", User.Role.MUNICIPAL_STAFF)
    attach(district_staff, areas_a["kodo"])  # 茂's district, not 花子's
    with tenant_scope("tenant_a"):
        for resident in (hanako, shigeru):
            notification, _created = do_notify(
                recipient=people["volunteer"], kind="concern", title=f"見守り：{resident.name}", body="",
                dedupe_key=f"test:{resident.pk}", subject_resident=resident.pk)
            Notification.objects.filter(pk=notification.pk).update(state=Notification.State.FAILED,
                                                                   failed_at=timezone.now())
    everything = signed_in("staff-a").get("/notifications/failed/").content.decode()
    assert "山田 花子" in everything and "髙橋 茂" in everything
    district = signed_in("district-staff").get("/notifications/failed/").content.decode()
    assert "髙橋 茂" in district and "山田 花子" not in district


# Live events and notifications, type by type: nobody outside the resident's visibility gets them.
def outsiders_groups(people) -> dict[str, set[str]]:
    """The live-event groups of each person who may not see 花子 (as their connection joins them)."""
    from notifications.events import groups_for_user

    with tenant_scope("tenant_a"):
        return {name: set(groups_for_user("tenant_a", people[name]))
                for name in ("other_volunteer", "other_officer", "other_case_worker")}


def insiders_groups(people) -> dict[str, set[str]]:
    from notifications.events import groups_for_user

    with tenant_scope("tenant_a"):
        return {name: set(groups_for_user("tenant_a", people[name]))
                for name in ("volunteer", "officer", "case_worker", "staff")}


def every_resident_event(hanako, people, django_capture_on_commit_callbacks):
    """Cause one event of every type about 花子, each through its action."""
    from outreach.actions import do_acknowledge_concern, do_close_concern

    staff = people["staff"]
    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        resident = type(hanako).objects.select_related("area").get(pk=hanako.pk)
        device, _token = actions.do_register_device(actor=staff, resident=resident, kind="button")
        actions.do_log_contact(actor=people["volunteer"], resident=resident, occurred_at=timezone.now(),
                               channel="visit", outcome="fine")
        actions.do_record_device_signal(device=device, signal=actions.DeviceSignal.LOW_BATTERY)
        actions.do_record_device_signal(device=device, signal=actions.DeviceSignal.CALL_ME,
                                        at=timezone.now() + timezone.timedelta(seconds=2))
        concern = Concern.objects.get(resident=resident)
        do_acknowledge_concern(concern=concern, actor=staff)
        do_close_concern(concern=concern, actor=staff, state="resolved", note="電話で確認")
        Rhythm.objects.filter(device=device).update(alert_at=timezone.now() - timezone.timedelta(minutes=1))
        actions.do_mark_overdue()
        actions.do_device_rhythm_recovered(device=device, at=timezone.now())
        actions.do_set_resident_status(actor=staff, resident=resident, status="paused", reason="入院")


EVENT_TYPES = {"contact.logged", "device.battery_low", "concern.opened", "concern.notified", "concern.acknowledged",
               "concern.resolved", "resident.overdue", "device.recovered", "resident.status"}


@pytest.mark.parametrize("consent", ["given", "refused"])
def test_no_resident_event_of_any_type_reaches_anyone_outside_the_residents_visibility(
        consent, people, hanako, captured_events, django_capture_on_commit_callbacks):
    if consent == "refused":
        with tenant_scope("tenant_a"):
            actions.do_record_consent(actor=None, resident=hanako, status="refused")
    every_resident_event(hanako, people, django_capture_on_commit_callbacks)
    about_her = [(group, event) for group, event in captured_events if event.get("resident") == hanako.pk]
    assert EVENT_TYPES <= {event["type"] for _group, event in about_her}
    outsiders = outsiders_groups(people)
    if consent == "refused":  # now her volunteer and officer may not see her either
        insiders = insiders_groups(people)
        outsiders.update(volunteer=insiders["volunteer"], officer=insiders["officer"])
    for name, groups in outsiders.items():
        reached = {event["type"] for group, event in about_her if group in groups}
        assert reached == set(), f"{name} received {reached}"
    for name, groups in insiders_groups(people).items():
        if consent == "refused" and name in ("volunteer", "officer"):
            continue
        reached = {event["type"] for group, event in about_her if group in groups}
        assert EVENT_TYPES <= reached, f"{name} missed {EVENT_TYPES - reached}"


def test_escalation_notifies_nobody_who_may_not_see_the_resident(people, hanako, django_capture_on_commit_callbacks):
    """An assigned volunteer of a resident who did not consent gets no notification and so
    never her name; every notification sent is about a resident its recipient may see."""
    from notifications.models import Notification
    from watch.access import can_see_resident, residents_for_user

    with tenant_scope("tenant_a"):
        shared = make_resident(hanako.area, "同意あり")
        Assignment.objects.create(resident=shared, user=people["other_volunteer"])
        actions.do_record_consent(actor=None, resident=hanako, status="refused")
    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        for resident in (hanako, shared):
            actions.do_log_contact(actor=people["staff"], resident=resident, occurred_at=timezone.now(),
                                   channel="phone", outcome="worried", note=NOTE)
    with tenant_scope("tenant_a"):
        from outreach.actions import do_advance_escalation

        for concern in Concern.objects.all():  # run every step now
            for _step in range(len(concern.steps) * concern.repeat_limit):
                concern.refresh_from_db()
                Concern.objects.filter(pk=concern.pk, next_step_at__isnull=False).update(next_step_at=timezone.now())
                do_advance_escalation(concern.pk, str(concern.timer))
        notifications = list(Notification.objects.select_related("recipient"))
        assert notifications
        assert not Notification.objects.filter(recipient=people["volunteer"]).exists()
        for notification in notifications:
            assert notification.subject_resident is not None
            resident = type(hanako).objects.get(pk=notification.subject_resident)
            assert can_see_resident(notification.recipient, resident), (notification.recipient, resident)
            if notification.recipient.role in (User.Role.VOLUNTEER, User.Role.ASSOCIATION_OFFICER):
                assert NOTE not in notification.title + notification.body
            assert resident in residents_for_user(notification.recipient)


def notify_about(resident, recipient, django_capture_on_commit_callbacks, key="test:about"):
    from notifications.actions import do_notify

    with django_capture_on_commit_callbacks(execute=False), tenant_scope("tenant_a"):
        notification, _created = do_notify(recipient=recipient, kind="concern", title=f"見守り：{resident.name}",
                                           body="", dedupe_key=key, subject_resident=resident.pk)
    return notification


def test_taken_off_a_residents_team_the_volunteer_no_longer_reads_notifications_about_her(
        people, hanako, django_capture_on_commit_callbacks):
    notify_about(hanako, people["volunteer"], django_capture_on_commit_callbacks)
    client = signed_in("volunteer-a")
    assert "山田 花子" in client.get("/notifications/").content.decode()
    assert client.get("/notifications/unread-count/").json() == {"unread": 1}
    with tenant_scope("tenant_a"):
        Assignment.objects.filter(resident=hanako, user=people["volunteer"]).delete()
    assert "山田 花子" not in client.get("/notifications/").content.decode()
    assert client.get("/notifications/unread-count/").json() == {"unread": 0}


def test_a_notification_whose_recipient_can_no_longer_see_the_resident_is_not_sent(
        people, hanako, django_capture_on_commit_callbacks):
    """Consent withdrawn between the notification and its delivery: nothing goes out."""
    from django.core import mail

    from notifications.delivery import do_deliver
    from notifications.models import Notification

    notification = notify_about(hanako, people["volunteer"], django_capture_on_commit_callbacks)
    with tenant_scope("tenant_a"):
        actions.do_record_consent(actor=None, resident=hanako, status="withdrawn")
        assert do_deliver(notification.pk).status == "withdrawn"
        assert Notification.objects.get(pk=notification.pk).state == Notification.State.WITHDRAWN
    assert mail.outbox == []


def test_a_failed_delivery_is_announced_only_to_staff_who_may_see_its_resident(
        people, hanako, areas_a, captured_events, django_capture_on_commit_callbacks):
    from notifications.delivery import _give_up, _Lease
    from notifications.models import Notification

    elsewhere = make_user("tenant_a", "kodo-staff", User.Role.MUNICIPAL_STAFF)
    attach(elsewhere, areas_a["kodo"])
    admin = make_user("tenant_a", "admin-x", User.Role.ADMIN)
    notification = notify_about(hanako, people["volunteer"], django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        lease = _Lease(notification.pk)
        assert lease.claim()
        _give_up(lease, Notification.objects.select_related("recipient").get(pk=notification.pk), 0)
    groups = {group for group, event in captured_events if event["type"] == "notification.failed"}
    with tenant_scope("tenant_a"):
        admins = set(User.objects.filter(role=User.Role.ADMIN).values_list("pk", flat=True))
    assert admin.pk in admins
    assert groups == {f"tenant_a.user.{pk}" for pk in {people["staff"].pk, *admins}}  # not kodo-staff
