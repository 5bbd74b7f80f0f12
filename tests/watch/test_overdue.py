import threading
from datetime import timedelta

from django.db import connection, connections
from django.utils import timezone

from tenants.context import tenant_scope
from tenants.models import Wakeup
from watch.actions import do_mark_overdue
from watch.models import Resident, Rhythm
from watch.signals import resident_overdue
from watch.tasks import detect_overdue


def make_due(resident, ago=timedelta(minutes=1)):
    with tenant_scope("tenant_a"):
        Rhythm.objects.filter(resident=resident).update(alert_at=timezone.now() - ago)


def test_an_overdue_resident_is_marked_once_and_published(hanako, shigeru, captured_events,
                                                          django_capture_on_commit_callbacks):
    make_due(hanako)
    hooks = []
    resident_overdue.connect(lambda **kw: hooks.append(kw["resident_id"]), weak=False, dispatch_uid="t")
    try:
        with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
            assert do_mark_overdue() == [hanako.pk]
            assert do_mark_overdue() == []
    finally:
        resident_overdue.disconnect(dispatch_uid="t")
    assert hooks == [hanako.pk]
    with tenant_scope("tenant_a"):
        assert Resident.objects.get(pk=hanako.pk).is_overdue
        assert not Resident.objects.get(pk=shigeru.pk).is_overdue
    overdue_events = [(group, event) for group, event in captured_events if event["type"] == "resident.overdue"]
    groups = [group for group, _event in overdue_events]
    assert {event["resident"] for _group, event in overdue_events} == {hanako.pk}
    assert "tenant_a.areas.all" in groups
    assert len(groups) == len(set(groups))  # published once, by the one pass that marked it


def test_detection_pass_visits_only_tenants_whose_wakeup_has_come(hanako, shigeru, resident_b):
    make_due(hanako)
    with tenant_scope("tenant_a"):
        assert Wakeup.objects.get(tenant__schema_name="tenant_a", purpose="overdue").due_at > timezone.now()
    # The stored wakeup is later than the rhythm's new alert time: lower it as an edit would.
    from tenants.wakeups import do_lower_wakeup

    do_lower_wakeup("tenant_a", "overdue", timezone.now() - timedelta(minutes=1))
    assert detect_overdue.delay().get() == 1  # tenant B has nothing due: not visited
    with tenant_scope("tenant_a"):
        assert Resident.objects.get(pk=hanako.pk).is_overdue
        wakeup = Wakeup.objects.get(tenant__schema_name="tenant_a", purpose="overdue").due_at
        # The next wakeup is the next alert among rhythms still on time: shigeru's.
        assert wakeup == Rhythm.objects.get(resident=shigeru).alert_at
    assert detect_overdue.delay().get() == 0


def test_a_contact_clears_overdue_and_moves_the_wakeup_earlier_if_needed(client_a, volunteer_a, hanako):
    make_due(hanako)
    with tenant_scope("tenant_a"):
        do_mark_overdue()
    client_a.sign_in("volunteer-a")
    client_a.post("/api/v1/contacts/", {"resident": hanako.pk, "channel": "visit", "outcome": "fine"},
                  content_type="application/json")
    with tenant_scope("tenant_a"):
        resident = Resident.objects.get(pk=hanako.pk)
        rhythm = Rhythm.objects.get(resident=hanako)
        wakeup = Wakeup.objects.get(tenant__schema_name="tenant_a", purpose="overdue").due_at
    assert not resident.is_overdue and rhythm.state == "ok"
    assert wakeup <= rhythm.alert_at


def test_two_concurrent_detection_passes_mark_each_resident_once(committed_db):
    """Two passes on two connections at the same moment: each rhythm is marked by one."""
    from tests.watch.conftest import make_resident
    from watch.actions import do_create_area

    with tenant_scope("tenant_a"):
        area = do_create_area(name="大住", kind="district")
        residents = [make_resident(area, f"住民{i}") for i in range(30)]
        Rhythm.objects.update(alert_at=timezone.now() - timedelta(minutes=1))
    results, barrier = [], threading.Barrier(2)

    def one_pass():
        try:
            barrier.wait()
            with tenant_scope("tenant_a"):
                results.append(do_mark_overdue())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one_pass) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    marked = [rid for result in results for rid in result]
    assert sorted(marked) == sorted(r.pk for r in residents)  # each exactly once across both passes
    with tenant_scope("tenant_a"):
        assert Rhythm.objects.filter(state="overdue").count() == 30
    connection.set_schema_to_public()


def _failing_in_tenant_a(monkeypatch, caplog):
    """do_mark_overdue raises for tenant A only; error log lines carry their schema."""
    import logging

    from config.logging import TenantFilter
    from watch import tasks

    original = tasks.do_mark_overdue

    def fails_in_a(*args, **kwargs):
        if connection.schema_name == "tenant_a":
            raise RuntimeError("tenant A is broken")
        return original(*args, **kwargs)

    monkeypatch.setattr(tasks, "do_mark_overdue", fails_in_a)
    caplog.handler.addFilter(TenantFilter())
    caplog.set_level(logging.ERROR)
    return lambda: [r.schema for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]


def _due_in_both_tenants(hanako, resident_b):
    from tenants.wakeups import do_lower_wakeup

    make_due(hanako)
    with tenant_scope("tenant_b"):
        Rhythm.objects.filter(resident=resident_b).update(alert_at=timezone.now() - timedelta(minutes=1))
    # Tenant A's wakeup comes first, so its failure happens before tenant B's turn.
    do_lower_wakeup("tenant_a", "overdue", timezone.now() - timedelta(minutes=2))
    do_lower_wakeup("tenant_b", "overdue", timezone.now() - timedelta(minutes=1))


def test_one_tenants_failing_overdue_pass_does_not_stop_the_others(hanako, resident_b, monkeypatch, caplog):
    _due_in_both_tenants(hanako, resident_b)
    errors = _failing_in_tenant_a(monkeypatch, caplog)
    before = timezone.now()
    assert detect_overdue.delay().get() == 2
    with tenant_scope("tenant_b"):
        assert Resident.objects.get(pk=resident_b.pk).is_overdue
    with tenant_scope("tenant_a"):
        assert not Resident.objects.get(pk=hanako.pk).is_overdue
    assert errors() == ["tenant_a"]
    # Pushed back a little, not forgotten: the next passes skip it until then, then retry.
    wakeup = Wakeup.objects.get(tenant__schema_name="tenant_a", purpose="overdue").due_at
    assert before + timedelta(seconds=29) < wakeup < timezone.now() + timedelta(seconds=61)
    assert detect_overdue.delay().get() == 0
    monkeypatch.undo()
    Wakeup.objects.filter(tenant__schema_name="tenant_a", purpose="overdue").update(due_at=timezone.now())
    assert detect_overdue.delay().get() == 1
    with tenant_scope("tenant_a"):
        assert Resident.objects.get(pk=hanako.pk).is_overdue


def test_one_tenants_failing_wakeup_sweep_does_not_stop_the_others(hanako, resident_b, monkeypatch, caplog):
    from watch.tasks import sweep_wakeups

    _due_in_both_tenants(hanako, resident_b)
    errors = _failing_in_tenant_a(monkeypatch, caplog)
    sweep_wakeups.delay().get()
    with tenant_scope("tenant_b"):
        assert Resident.objects.get(pk=resident_b.pk).is_overdue
    assert errors() == ["tenant_a"]
    wakeup = Wakeup.objects.get(tenant__schema_name="tenant_a", purpose="overdue").due_at
    assert timezone.now() + timedelta(seconds=29) < wakeup < timezone.now() + timedelta(seconds=61)
