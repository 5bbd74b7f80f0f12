"""Celery edges of external delivery. The database drives everything: a lost message
or a dead worker is made good by `sweep_deliveries` (every minute, all tenants)."""
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from notifications.delivery import do_deliver
from notifications.models import Notification
from tenants.tasks import enqueue_on_commit, tenant_task

# Longer waits (quiet hours) are left to the sweep: on Redis, a message held past the
# visibility timeout is delivered again, and again.
MAX_COUNTDOWN = 240
# A notification due this long ago and not held by any run has lost its message.
SWEEP_GRACE = timedelta(seconds=20)
SWEEP_BATCH = 500
# Urgent deliveries have a queue and a worker of their own (see `start`): a provider
# that hangs on everybody else's notifications does not hold them up.
URGENT_QUEUE = "urgent"


def route_delivery(name, args, kwargs, options, task=None, **kw):
    """Celery router (CELERY_TASK_ROUTES): `deliver(schema, id, True)` goes to the urgent
    queue, whoever enqueues it."""
    if name == deliver.name and len(args) > 2 and args[2]:
        return {"queue": URGENT_QUEUE}
    return None


def schedule_delivery(notification_id: int, delay: float, urgent: bool = False) -> None:
    """Run `deliver` again after `delay` seconds, once the current transaction commits."""
    enqueue_on_commit(deliver, notification_id, urgent, countdown=max(0.0, delay))


@tenant_task(acks_late=True, time_limit=settings.NOTIFICATION_LEASE_SECONDS)
def deliver(notification_id: int, urgent: bool = False) -> str:
    """One delivery run (see notifications.delivery.do_deliver); idempotent. `urgent` only
    picks the queue (route_delivery): the row says what the run does."""
    outcome = do_deliver(notification_id)
    if outcome.retry_in is not None and outcome.retry_in <= MAX_COUNTDOWN:
        schedule_delivery(notification_id, outcome.retry_in, urgent)
    return outcome.status


@tenant_task(acks_late=True)
def sweep_deliveries() -> int:
    """Re-enqueue every pending notification that is due and held by no run."""
    now = timezone.now()
    due = (
        Notification.objects.filter(state=Notification.State.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now - SWEEP_GRACE))
        .filter(Q(delivering_until__isnull=True) | Q(delivering_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("pk", "urgent")[:SWEEP_BATCH]
    )
    rows = list(due)
    for notification_id, urgent in rows:
        deliver.delay(connection.schema_name, notification_id, urgent)
    return len(rows)
