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
