"""Tenant and user resolution for websocket connections.

django-tenants covers HTTP only. This ASGI middleware resolves the tenant from the
Host header, refuses cross-origin handshakes, and loads the session's user inside the
tenant's schema (the database thread is shared between tenants, so every query of a
consumer must run inside `tenant_scope`).
"""
from http.cookies import SimpleCookie
from types import SimpleNamespace
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.http.request import split_domain_port
from django.utils.module_loading import import_string

from tenants.context import current_schema, get_tenant_for_host, is_public, tenant_scope


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return ""


@database_sync_to_async
def _resolve(hostname: str, session_key: str | None):
    tenant = get_tenant_for_host(hostname)
    if tenant is None or is_public(tenant):
        return None, AnonymousUser()
    if not session_key:
        return tenant, AnonymousUser()
    with tenant_scope(tenant.schema_name):
        session = import_string(f"{settings.SESSION_ENGINE}.SessionStore")(session_key)
        if session.get("schema") != tenant.schema_name:
            return tenant, AnonymousUser()
        user = get_user(SimpleNamespace(session=session))
        return tenant, user


class TenantWebsocketMiddleware:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        host = _header(scope, b"host")
        hostname, _port = split_domain_port(host)
        origin = _header(scope, b"origin")
        if not hostname or (origin and urlsplit(origin).netloc != host):
            return await WebsocketDenier()(scope, receive, send)
        cookies = SimpleCookie()
        cookies.load(_header(scope, b"cookie"))
        morsel = cookies.get(settings.SESSION_COOKIE_NAME)
        session_key = morsel.value if morsel else None
        tenant, user = await _resolve(hostname, session_key)
        if tenant is None:
            return await WebsocketDenier()(scope, receive, send)
        # The session key lets the consumer join its session's audience (closed at sign-out).
        session_key = session_key if user.is_authenticated else None
        token = current_schema.set(tenant.schema_name)
        try:
            return await self.inner(dict(scope, tenant=tenant, user=user, session_key=session_key), receive, send)
        finally:
            current_schema.reset(token)
