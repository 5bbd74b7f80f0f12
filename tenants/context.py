"""The tenant context outside a request: Celery tasks, websocket consumers, commands.

Every database call made on behalf of a tenant runs inside `tenant_scope`, which puts
the connection on that tenant's schema and tags log lines with the schema name.
"""
import contextlib
import time
from contextvars import ContextVar

from django.db import connection
from django_tenants.utils import get_public_schema_name, schema_context

# The schema the current request, task or consumer works for; read by the log filter.
current_schema: ContextVar[str | None] = ContextVar("current_schema", default=None)

_HOST_CACHE_TTL = 10.0
_host_cache: dict[str, tuple[float, object | None]] = {}


@contextlib.contextmanager
def tenant_scope(schema_name: str):
    """Run the block on `schema_name`'s schema; restore the previous schema afterwards."""
    token = current_schema.set(schema_name)
    try:
        with schema_context(schema_name):
            yield
    finally:
        current_schema.reset(token)


def get_tenant_for_host(hostname: str):
    """The active tenant serving `hostname`, or None. One query at most per host per 10 s.

    Must be called outside any tenant scope's queries; it switches to the public schema.
    """
    now = time.monotonic()
    cached = _host_cache.get(hostname)
    if cached and cached[0] > now:
        return cached[1]
    from tenants.models import Domain

    connection.set_schema_to_public()
    domain = (
        Domain.objects.select_related("tenant")
        .filter(domain=hostname, tenant__is_active=True)
        .only("tenant")
        .first()
    )
    tenant = domain.tenant if domain else None
    _host_cache[hostname] = (now + _HOST_CACHE_TTL, tenant)
    return tenant


def forget_cached_hosts() -> None:
    """Drop this process's host cache (after a tenant or domain changes)."""
    _host_cache.clear()


def is_public(tenant) -> bool:
    return tenant.schema_name == get_public_schema_name()


def absolute_url(schema_name: str, path: str) -> str:
    """A link into the tenant for messages sent outside any request (email, LINE, SMS)."""
    from django.conf import settings

    from tenants.models import Domain

    domain = (Domain.objects.filter(tenant__schema_name=schema_name).order_by("-is_primary", "pk")
              .values_list("domain", flat=True).first())
    port = f":{settings.SITE_PORT}" if settings.SITE_PORT else ""
    return f"{settings.SITE_SCHEME}://{domain}{port}{path}"
