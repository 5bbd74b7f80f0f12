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

class HostCache:
    """What each host name resolves to, cached briefly in this process: a deactivated
    tenant stops being served within `ttl` everywhere. Bounded, whatever Host headers
    arrive (unknown hosts are cached too, as None); the least recently used goes first.
    Used by Django's path (get_tenant_for_host) and the edge's (watch.edge)."""

    TTL = 1.0
    SIZE = 1_000
    MISSING = object()

    def __init__(self):
        self._entries: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, host: str):
        """The cached value, or HostCache.MISSING when there is none (or it is too old)."""
        with self._lock:
            cached = self._entries.get(host)
            if cached is None or cached[0] <= time.monotonic():
                return self.MISSING
            self._entries.move_to_end(host)
            return cached[1]

    def put(self, host: str, value) -> None:
        with self._lock:
            self._entries[host] = (time.monotonic() + self.TTL, value)
            self._entries.move_to_end(host)
            while len(self._entries) > self.SIZE:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_host_cache = HostCache()


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
    cached = _host_cache.get(hostname)
    if cached is not HostCache.MISSING:
        return cached
    from tenants.models import Domain

    connection.set_schema_to_public()
    domain = (
        Domain.objects.select_related("tenant")
        .filter(domain=hostname, tenant__is_active=True)
        .only("tenant")
        .first()
    )
    tenant = domain.tenant if domain else None
    _host_cache.put(hostname, tenant)
    return tenant


def forget_cached_hosts() -> None:
    """Drop this process's host cache (after a tenant or domain changes)."""
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
