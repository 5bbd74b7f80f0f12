"""The one way a Celery task runs for a tenant.

A tenant task takes the schema name as its first argument and runs inside
`tenant_scope`; an unknown or deactivated tenant's task does nothing. Periodic work
for every tenant goes through `fan_out`, which streams the tenant list from the
database and enqueues one task per tenant.
"""
import functools
import logging

from celery import current_app, shared_task
from django.db import connection, transaction
from django_tenants.utils import get_public_schema_name

from tenants.context import tenant_scope

logger = logging.getLogger(__name__)


def tenant_task(*task_args, **task_options):
    """Decorate `fn(*args)` into a Celery task called as `task.delay(schema_name, *args)`."""

    def decorator(fn):
        @functools.wraps(fn)
        def run(schema_name: str, *args, **kwargs):
            from tenants.models import Tenant

            # Scopes restore the caller's schema: an eager task may run inside a tenant's code.
            with tenant_scope(get_public_schema_name()):
                active = Tenant.objects.filter(schema_name=schema_name, is_active=True).exists()
            if not active:
                logger.warning("task %s skipped: tenant %s is unknown or inactive", fn.__name__, schema_name)
                return None
            with tenant_scope(schema_name):
                return fn(*args, **kwargs)

        return shared_task(**task_options)(run)

    if task_args and callable(task_args[0]):
        return decorator(task_args[0])
    return decorator


def enqueue_on_commit(task, *args, **options) -> None:
    """Enqueue `task(schema, *args)` for the current tenant once the surrounding transaction
    commits (`options` go to apply_async: a countdown). The commit is the answer: a broker
    that is down is logged, never raised, and the task's sweep rebuilds the work from the
    database (escalation steps: outreach.sweep_escalations; deliveries:
    notifications.sweep_deliveries)."""
    schema_name = connection.schema_name
    transaction.on_commit(lambda: enqueue(task, schema_name, *args, **options))


def enqueue(task, *args, **options) -> bool:
    """apply_async(args, **options); False, logged, if the broker could not take it.
    Eager tasks (tests) run here and keep their own errors."""
    if task.app.conf.task_always_eager:
        task.apply_async(args, **options)
        return True
    try:
        task.apply_async(args, **options)
    except Exception:
        logger.exception("task %s for %s not enqueued (broker unavailable?); its sweep will redo it",
                         task.name, args[0] if args else "-")
        return False
    return True


def active_schema_names():
    """Every active tenant's schema name, streamed from the database."""
    from tenants.models import Tenant

    connection.set_schema_to_public()
    return (
        Tenant.objects.filter(is_active=True)
        .exclude(schema_name="public")
        .order_by("pk")
        .values_list("schema_name", flat=True)
        .iterator(chunk_size=500)
    )


@shared_task(name="tenants.fan_out")
def fan_out(task_name: str, *args) -> int:
    """Enqueue `task_name(schema, *args)` once for every active tenant."""
    task = current_app.tasks[task_name]
    count = 0
    for schema_name in active_schema_names():
        task.delay(schema_name, *args)
        count += 1
    return count
