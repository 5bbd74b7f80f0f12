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


@tenant_task(acks_late=True)
def send_notice(notice_id: int, attempt: int = 0) -> dict:
    """Send a published notice's LINE and email receipts (outreach.board); each LINE batch keeps its
    retry key, so a run repeated after a lost answer shows it to nobody twice. A transient
    failure tries again later, SEND_ATTEMPTS times in all; then the rest goes on paper."""
    from django.db import connection

    from outreach.board import SEND_ATTEMPTS, SEND_RETRY_SECONDS, do_put_on_paper, do_send_notice
    from tenants.tasks import enqueue

    result = do_send_notice(notice_id)
    if result["retry"] and attempt + 1 < SEND_ATTEMPTS:
        enqueue(send_notice, connection.schema_name, notice_id, attempt + 1, countdown=SEND_RETRY_SECONDS)
    elif result["retry"]:
        result["paper"] += do_put_on_paper(notice_id)
    return result


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


@tenant_task
def send_waiting_notices() -> int:
    """Periodic (beat, per tenant): send again the notices whose LINE or email receipts wait
    (their task was lost); LINE's retry keys keep every household from seeing one twice."""
    from outreach.board import do_send_notice, notices_waiting_to_send

    notice_ids = notices_waiting_to_send()
    for notice_id in notice_ids:
        do_send_notice(notice_id)
    return len(notice_ids)


@tenant_task
def run_daily_checkins() -> int:
    """Every minute (beat, per tenant): ask today's check-ins whose time has come, and log
    the ones nobody answered as NO_ANSWER contacts (outreach.checkins)."""
    from outreach.checkins import do_create_due_checkins, do_log_unanswered_checkins

    made = do_create_due_checkins()
    do_log_unanswered_checkins()
    return made


@tenant_task
def follow_up_safety_checks() -> int:
    """Periodic (beat, per tenant): the silent residents of safety checks whose deadline
    passed (or that were closed) become follow-up visits, and for a real event concerns;
    once per check (outreach.safety.do_follow_up_due_checks)."""
    from outreach.safety import do_follow_up_due_checks

    return len(do_follow_up_due_checks(timezone.now()))
