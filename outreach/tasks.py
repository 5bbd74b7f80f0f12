from celery import shared_task
from django.utils import timezone

from outreach.actions import ESCALATION, do_advance_escalation, do_repair_overdue_concerns, do_run_due_escalations
from tenants.tasks import tenant_task
from tenants.wakeups import due_schema_names, run_each_tenant


@tenant_task(acks_late=True)
def advance_escalation(concern_id: int, timer: str) -> bool:
    return do_advance_escalation(concern_id, timer)


@tenant_task
def run_due_escalations() -> int:
    return do_run_due_escalations()


@shared_task(name="outreach.sweep_escalations", acks_late=False)
def sweep_escalations() -> int:
    """Every few seconds: run due steps in the tenants whose escalation wakeup has come.
    This, not the broker, guarantees every step runs: the database holds the timers. A
    tenant whose pass fails is pushed back and retried; the others proceed."""
    return run_each_tenant(due_schema_names(ESCALATION, timezone.now()), ESCALATION, run_due_escalations.run)


@tenant_task
def repair_overdue_concerns() -> int:
    """Periodic (beat, per tenant): raise the overdue concerns a failed hook left out."""
    return len(do_repair_overdue_concerns())


@tenant_task
def apply_answers() -> int:
    """Log recorded answers as contacts (outreach.answers): enqueued when an answer is
    recorded; the asking sweep runs it too, so an answer whose task was lost is applied."""
    from outreach.answers import do_apply_answers

    total = 0
    while (applied := do_apply_answers()):
        total += applied
    return total


# Asking residents (outreach.asking): the dispatcher, its wakeup sweep and its rebuild.

@tenant_task(acks_late=True)
def dispatch_asks() -> int:
    """Send this tenant's due asks (several runs share them: SKIP LOCKED); enqueued when
    asks are made, by the sweep when the asking wakeup comes, and by a run out of time."""
    from outreach.asking import do_run_asking

    return do_run_asking()


@shared_task(name="outreach.sweep_asking", acks_late=False)
def sweep_asking() -> int:
    """Every few seconds: a dispatcher run for each tenant whose asking wakeup has come
    (asks due, silences over, held checks due). The run sets the next wakeup; until then
    the wakeup is pushed a minute on, so a long run is not joined by a new one every pass."""
    from datetime import timedelta

    from outreach.asking import ASKING
    from tenants.tasks import enqueue
    from tenants.wakeups import do_set_wakeup

    def run(schema_name: str) -> None:
        do_set_wakeup(schema_name, ASKING, timezone.now() + timedelta(minutes=1))
        enqueue(dispatch_asks, schema_name)

    return run_each_tenant(due_schema_names(ASKING, timezone.now()), ASKING, run)


@tenant_task
def rebuild_asking_wakeup() -> None:
    """Periodic (beat, per tenant): the asking wakeup rebuilt from the asks and held
    checks, so a lost wakeup or a dead run loses nothing."""
    from outreach.asking import ASKING, next_due
    from tenants.wakeups import do_lower_wakeup

    due = next_due()
    if due is not None:
        from django.db import connection

        do_lower_wakeup(connection.schema_name, ASKING, due)
