"""Earthquake reports: a held real check and staff told; cancel during the hold; started
by the sweep when the hold ends; aftershocks and repeated reports send nothing."""
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from notifications.models import Notification
from outreach import quakes
from outreach.models import Ask, QuakeReport, QuakeSettings, SafetyCheck
from tenants.accounts.models import STAFF_ROLES, User
from tenants.context import tenant_scope
from tests.notifications.conftest import fake_providers  # noqa: F401 - the fixture
from watch.models import Area, Resident

pytestmark = pytest.mark.django_db


@pytest.fixture
def town(tenant_a, admin_a, staff_a):
    with tenant_scope("tenant_a"):
        QuakeSettings.objects.create(pk=1, enabled=True, min_intensity="5-", regions=["京都府南部"], hold_minutes=3,
                                     deadline_hours=6)
        area = Area.objects.create(name="大住", kind=Area.Kind.DISTRICT)
        Resident.objects.bulk_create([Resident(name=f"住民{i}", area=area, line_user_id=f"U{i:032x}")
                                      for i in range(3)])
    return {"staff": staff_a, "admin": admin_a}


def staff_count() -> int:
    return User.objects.filter(role__in=STAFF_ROLES, is_active=True).count()


def report(event_id="ev1", region="京都府南部", intensity="5+", at=None):
    return quakes.do_receive_quake_report(event_id=event_id, region=region, intensity=intensity, occurred_at=at)


def test_a_strong_report_for_our_region_holds_a_real_check_and_tells_staff_urgently(town, volunteer_a):
    with tenant_scope("tenant_a"):
        before = timezone.now()
        result = report()
        check = result.check
        assert (result.outcome, check.state, check.kind, check.trigger) == (
            "held", SafetyCheck.State.HELD, SafetyCheck.Kind.REAL, SafetyCheck.Trigger.QUAKE)
        assert before + timedelta(minutes=3) <= check.send_at <= timezone.now() + timedelta(minutes=3)
        assert check.deadline == check.send_at + timedelta(hours=6)
        assert (check.scope, check.channels) == ({}, ["line", "sms", "voice"])
        assert Ask.objects.count() == 0  # nothing goes out during the hold
        told = Notification.objects.filter(kind="outreach.quake")
        assert {"admin-a", "staff-a"} <= {n.recipient.username for n in told}
        assert told.count() == staff_count()
        assert "volunteer-a" not in {n.recipient.username for n in told}
        assert all(n.urgent for n in told)


def test_the_sweep_starts_a_held_check_when_the_hold_ends(town):
    with tenant_scope("tenant_a"):
        check = report().check
        assert quakes.do_start_due_held_checks(timezone.now()) == []
        assert quakes.do_start_due_held_checks(check.send_at) == [check.pk]
        check.refresh_from_db()
        assert check.state == SafetyCheck.State.OPEN
        assert Ask.objects.filter(safety_check=check, state=Ask.State.QUEUED).count() == 3
        assert quakes.do_start_due_held_checks(check.send_at) == []  # once


def test_staff_cancel_during_the_hold_and_nothing_is_sent(town, volunteer_a):
    with tenant_scope("tenant_a"):
        check = report().check
        with pytest.raises(PermissionDenied):
            quakes.do_cancel_held_check(volunteer_a, check)
        quakes.do_cancel_held_check(town["staff"], check)
        check.refresh_from_db()
        assert (check.state, check.closed_by) == (SafetyCheck.State.CANCELLED, town["staff"])
        assert quakes.do_start_due_held_checks(check.send_at) == []
        assert Ask.objects.count() == 0
        with pytest.raises(ValidationError):
            quakes.do_cancel_held_check(town["staff"], check)


def test_a_started_check_cannot_be_cancelled_as_held(town):
    with tenant_scope("tenant_a"):
        check = report().check
        quakes.do_start_due_held_checks(check.send_at)
        check.refresh_from_db()
        with pytest.raises(ValidationError):
            quakes.do_cancel_held_check(town["staff"], check)


def test_a_second_report_within_six_hours_is_an_aftershock_and_sends_nothing(town):
    with tenant_scope("tenant_a"):
        first_at = timezone.now() - timedelta(hours=2)
        first = report("ev1", at=first_at)
        second = report("ev2", intensity="6-", at=first_at + timedelta(hours=5))
        assert second.outcome == "aftershock" and second.check is None
        assert QuakeReport.objects.get(event_id="ev2").aftershock_of == first.report
        assert SafetyCheck.objects.count() == 1
        assert Notification.objects.filter(kind="outreach.quake", title__contains="余震").count() == staff_count()
        later = report("ev3", at=first_at + timedelta(hours=7))
        assert later.outcome == "held"


def test_the_same_event_twice_records_nothing_new(town):
    with tenant_scope("tenant_a"):
        report("ev1")
        assert report("ev1").outcome == "duplicate"
        assert (QuakeReport.objects.count(), SafetyCheck.objects.count()) == (1, 1)
        assert Notification.objects.filter(kind="outreach.quake").count() == staff_count()


@pytest.mark.parametrize("region,intensity", [("大阪府北部", "6+"), ("京都府南部", "4")])
def test_a_report_elsewhere_or_too_weak_is_ignored(town, region, intensity):
    with tenant_scope("tenant_a"):
        assert report(region=region, intensity=intensity).outcome == "ignored"
        assert SafetyCheck.objects.count() == 0 and Notification.objects.count() == 0


def test_a_bad_intensity_is_refused():
    with pytest.raises(ValidationError):
        quakes.check_intensity("8")
    assert quakes.check_intensity("５弱") == "5-"


def test_the_command_goes_through_every_tenant(town, tenant_b, capsys):
    call_command("quake_report", "--event-id", "jma-1", "--region", "京都府南部", "--intensity", "6弱")
    out = capsys.readouterr().out
    assert "tenant_a: held" in out and "tenant_b: ignored" in out
    with tenant_scope("tenant_b"):
        assert SafetyCheck.objects.count() == 0
    with tenant_scope("tenant_a"):
        assert SafetyCheck.objects.get().state == SafetyCheck.State.HELD
    with pytest.raises(CommandError):
        call_command("quake_report", "--event-id", "jma-2", "--region", "京都府南部", "--intensity", "9")


def test_the_asking_sweep_starts_a_held_check_when_its_wakeup_comes(town, fake_providers):  # noqa: F811
    from outreach.asking import ASKING
    from outreach.tasks import sweep_asking
    from tenants.models import Wakeup
    from tenants.wakeups import do_set_wakeup

    with tenant_scope("tenant_a"):
        check = report().check
        assert Wakeup.objects.get(tenant__schema_name="tenant_a", purpose=ASKING).due_at == check.send_at
        assert sweep_asking() == 0  # not yet
        past = timezone.now() - timedelta(seconds=1)
        SafetyCheck.objects.filter(pk=check.pk).update(send_at=past)
        do_set_wakeup("tenant_a", ASKING, past)
    assert sweep_asking() == 1
    with tenant_scope("tenant_a"):
        check.refresh_from_db()
        assert check.state == SafetyCheck.State.OPEN
        assert Ask.objects.filter(safety_check=check, reached=True).count() == 3
    assert len(fake_providers.shown_to(f"U{0:032x}")) == 1
