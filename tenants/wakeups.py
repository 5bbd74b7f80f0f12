"""Per-tenant wakeup times in the public schema (see tenants.models.Wakeup)."""
import logging
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from tenants.context import tenant_scope
from tenants.models import Tenant, Wakeup

logger = logging.getLogger(__name__)

# How much later a tenant's (or a concern's) failed pass is tried again: soon, but not
# in a tight loop that would crowd out every other tenant.
RETRY_AFTER = timedelta(seconds=45)


def _table() -> str:
    return f'public."{Wakeup._meta.db_table}"'


def do_lower_wakeup(schema_name: str, purpose: str, due_at) -> None:
    """Make sure the tenant's `purpose` wakeup is no later than `due_at` (one statement).

    Locks the row until the transaction ends; with due_at None it only takes the lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {_table()} (tenant_id, purpose, due_at)
                SELECT id, %s, %s FROM public."{Tenant._meta.db_table}" WHERE schema_name = %s
                ON CONFLICT (tenant_id, purpose) DO UPDATE
                SET due_at = LEAST(COALESCE({_table()}.due_at, EXCLUDED.due_at), EXCLUDED.due_at)""",
            [purpose, due_at, schema_name],
        )


def do_set_wakeup(schema_name: str, purpose: str, due_at) -> None:
    """Set the tenant's `purpose` wakeup to exactly `due_at` (None: nothing pending)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {_table()} (tenant_id, purpose, due_at)
                SELECT id, %s, %s FROM public."{Tenant._meta.db_table}" WHERE schema_name = %s
                ON CONFLICT (tenant_id, purpose) DO UPDATE SET due_at = EXCLUDED.due_at""",
            [purpose, due_at, schema_name],
        )


def due_schema_names(purpose: str, now) -> list[str]:
    """Active tenants whose `purpose` wakeup has come (one indexed query)."""
    return list(
        Wakeup.objects.filter(purpose=purpose, due_at__lte=now, tenant__is_active=True)
        .order_by("due_at")
        .values_list("tenant__schema_name", flat=True)
    )


def run_each_tenant(schema_names: Iterable[str], purpose: str, run: Callable[[str], object]) -> int:
    """`run(schema_name)` for each tenant on its own: one that raises is logged with its
    schema and its `purpose` wakeup moved `RETRY_AFTER` later, to be retried then; the
    others proceed. Returns how many tenants were visited."""
    count = 0
    for schema_name in schema_names:
        count += 1
        try:
            run(schema_name)
        except Exception:
            with tenant_scope(schema_name):
                logger.exception("%s pass failed; retried in %d s", purpose, RETRY_AFTER.seconds)
                do_set_wakeup(schema_name, purpose, timezone.now() + RETRY_AFTER)
    return count
