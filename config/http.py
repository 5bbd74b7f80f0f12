"""ASGI middleware around the whole HTTP application, the edge's fast paths included
(config/asgi.py), so that every answer, whichever path gives it, is guarded alike:

- `SecurityHeaders`: the HTTPS redirect and the security headers of Django's own
  SecurityMiddleware and XFrameOptionsMiddleware (computed by them from their settings:
  one source), the Content-Security-Policy, and `Cache-Control: no-store` on every
  answer that does not say how it may be cached (static files and service workers do).
- `BodyLimit`: a request body above its limit is refused with 413 before it is read or
  spooled: at once for a Content-Length above it, as soon as a chunked body passes it.
"""
import functools
from types import SimpleNamespace

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpResponse
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from config.health import HEALTH_PATHS


def _headers(scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", [])}


@functools.cache
def _security(secure: bool) -> tuple[SecurityMiddleware, list[tuple[bytes, bytes]]]:
    """Django's SecurityMiddleware (for the redirect rule) and the headers it and
    XFrameOptionsMiddleware give an answer to a request that is (not) secure."""
    security = SecurityMiddleware(lambda request: None)
    response = security.process_response(SimpleNamespace(is_secure=lambda: secure), HttpResponse())
    response = XFrameOptionsMiddleware(lambda request: None).process_response(None, response)
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.items()
               if name.lower() != "content-type"]
    if settings.CONTENT_SECURITY_POLICY:
        headers.append((b"content-security-policy", settings.CONTENT_SECURITY_POLICY.encode("latin-1")))
    headers.append((b"cache-control", b"no-store"))  # only where the answer has none
    return security, headers


@receiver(setting_changed)
def _forget_security(**kwargs):
    _security.cache_clear()


def is_secure(scope, headers: dict[bytes, bytes]) -> bool:
    """As django.http.HttpRequest.is_secure, on the ASGI scope."""
    if settings.SECURE_PROXY_SSL_HEADER:
        name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        value = headers.get(name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1"))
        if value is not None:
            return value.decode("latin-1").split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") == "https"


def language(headers: dict[bytes, bytes]) -> str:
    """The language Django's LocaleMiddleware would choose (cookie, then Accept-Language)."""
    request = SimpleNamespace(
        COOKIES=parse_cookie(headers.get(b"cookie", b"").decode("latin-1")),
        META={"HTTP_ACCEPT_LANGUAGE": headers.get(b"accept-language", b"").decode("latin-1")},
    )
    return translation.get_language_from_request(request)


async def answer(send, status: int, text: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), *headers]})
    await send({"type": "http.response.body", "body": text.encode()})


class SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        secure = is_secure(scope, headers)
        security, extra = _security(secure)
        path = scope["path"]
        if (security.redirect and not secure and path not in HEALTH_PATHS
                and not any(pattern.search(path.lstrip("/")) for pattern in security.redirect_exempt)):
            host = security.redirect_host or headers.get(b"host", b"").decode("latin-1")
            if not validate_host(split_domain_port(host)[0], settings.ALLOWED_HOSTS):
                return await answer(send, 400, "Bad Request\n", extra)
            query = scope.get("query_string", b"").decode("latin-1")
            location = f"https://{host}{(scope.get('raw_path') or path.encode()).decode('latin-1')}"
            return await answer(send, 301, "", [(b"location", (location + (f"?{query}" if query else ""))
                                                 .encode("latin-1")), *extra])

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _value in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *((n, v) for n, v in extra if n not in present)]}
            await send(message)

        # Behind a TLS proxy the scope says http: what is inside (the edge's origin check
        # too) sees the scheme the client used, by Django's own rule.
        scope = {**scope, "scheme": "https"} if secure and scope.get("scheme") != "https" else scope
        return await self.app(scope, receive, send_with_headers)


@functools.cache
def _import_path() -> str:
    return reverse("watch:import_residents", urlconf=settings.ROOT_URLCONF)


def body_limit(path: str) -> int:
    """The largest request body this path takes: a tenant's residents import takes a file."""
    return settings.IMPORT_BODY_MAX_BYTES if path == _import_path() else settings.REQUEST_BODY_MAX_BYTES


class BodyLimit:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = body_limit(scope["path"])
        headers = _headers(scope)

        async def refuse():
            with translation.override(language(headers)):
                text = _("The request is too large (at most %(size)s KB).") % {"size": limit // 1024}
            await answer(send, 413, text + "\n", [(b"connection", b"close")])

        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = limit + 1
        if declared > limit:
            return await refuse()
        received, state = 0, SimpleNamespace(started=False, refused=False)

        async def limited_receive():
            nonlocal received
            if state.refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    state.refused = True
                    if not state.started:
                        await refuse()
                    return {"type": "http.disconnect"}  # the app stops reading; nothing is spooled
            return message

        async def guarded_send(message):
            if state.refused:
                return  # the 413 is the answer
            state.started = True
            await send(message)

        return await self.app(scope, limited_receive, guarded_send)
