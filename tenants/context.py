"""The tenant context outside a request: Celery tasks, websocket consumers, commands.

Every database call made on behalf of a tenant runs inside `tenant_scope`, which puts
the connection on that tenant's schema and tags log lines with the schema name.
"""
import contextlib
import threading
import time
from collections import OrderedDict
from contextvars import ContextVar

from django.db import connection
from django_tenants.utils import get_public_schema_name, schema_context

# The schema the current request, task or consumer works for; read by the log filter.
current_schema: ContextVar[str | None] = ContextVar("current_schema", default=None)

# Every process caches host lookups briefly: a deactivated tenant stops being served
# within this TTL everywhere. Bounded, whatever Host headers arrive (unknown hosts are
# cached too, as None); the least recently used host goes first.
_HOST_CACHE_TTL = 1.0
_HOST_CACHE_SIZE = 1_000
_host_cache: OrderedDict[str, tuple[float, object | None]] = OrderedDict()
_host_cache_lock = threading.Lock()


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
    """The active tenant serving `hostname`, or None. One query at most per host per
    second in each process.

    Must be called outside any tenant scope's queries; it switches to the public schema.
    """
    now = time.monotonic()
    with _host_cache_lock:
        cached = _host_cache.get(hostname)
        if cached and cached[0] > now:
            _host_cache.move_to_end(hostname)
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
    with _host_cache_lock:
        _host_cache[hostname] = (now + _HOST_CACHE_TTL, tenant)
        _host_cache.move_to_end(hostname)
        while len(_host_cache) > _HOST_CACHE_SIZE:
            _host_cache.popitem(last=False)
    return tenant


def forget_cached_hosts() -> None:
    """Drop this process's host cache (after a tenant or domain changes)."""
    with _host_cache_lock:
        _host_cache.clear()


def is_public(tenant) -> bool:
    return tenant.schema_name == get_public_schema_name()


def primary_domain(schema_name: str) -> str | None:
    """The host name a tenant's links are built on (its primary domain), never a
    request's Host header."""
    from tenants.models import Domain

    return (Domain.objects.filter(tenant__schema_name=schema_name).order_by("-is_primary", "pk")
            .values_list("domain", flat=True).first())


def absolute_url(schema_name: str, path: str) -> str:
    """A link into the tenant for messages sent outside any request (email, LINE, SMS)."""
    from django.conf import settings

    port = f":{settings.SITE_PORT}" if settings.SITE_PORT else ""
    return f"{settings.SITE_SCHEME}://{primary_domain(schema_name)}{port}{path}"
