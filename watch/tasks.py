import logging

from celery import shared_task
from django.utils import timezone

from tenants.tasks import active_schema_names, tenant_task
from tenants.wakeups import due_schema_names, run_each_tenant
from watch.actions import OVERDUE, do_mark_overdue, do_resume_ended_pauses
from watch.importing import do_run_import_job, do_sweep_import_jobs

logger = logging.getLogger(__name__)


@tenant_task
def mark_overdue_in_tenant() -> int:
    return len(do_mark_overdue())


@shared_task(name="watch.detect_overdue", acks_late=False)
def detect_overdue() -> int:
    """Every few seconds: mark overdue in the tenants whose wakeup has come. One indexed
    query when nothing is due; work follows the tenants with something due. A tenant
    whose pass fails is pushed back and retried; the others proceed."""
    return run_each_tenant(due_schema_names(OVERDUE, timezone.now()), OVERDUE, mark_overdue_in_tenant.run)


@shared_task(name="watch.sweep_wakeups")
def sweep_wakeups() -> int:
    """Rebuild every tenant's overdue wakeup from its rhythms (anything lost is redone),
    each tenant on its own."""
    return run_each_tenant(list(active_schema_names()), OVERDUE, mark_overdue_in_tenant.run)


@tenant_task
def resume_ended_pauses() -> int:
    return do_resume_ended_pauses(timezone.localdate())


@tenant_task
def sweep_import_jobs() -> int:
    lost, _expired = do_sweep_import_jobs()
    return len(lost)


@tenant_task(acks_late=True)
def run_import_job(job_id: int) -> str | None:
    """Import a residents' list of several thousand rows (an ImportJob), all or nothing;
    a redelivered or repeated run finds the job finished and does nothing."""
    return do_run_import_job(job_id)
