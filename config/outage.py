"""A database that cannot be reached is answered 503 with Retry-After, never 500.

`server_error` is both URL confs' handler500: Django calls it, inside its exception
handler, for an exception raised anywhere in the request (a view, the tenant lookup,
the session), so every path is covered, whichever middleware met the outage. (With
DJANGO_DEBUG=1, in development, Django shows its debug page instead.) The connection
attempt is bounded by DATABASE_CONNECT_TIMEOUT (config/settings.py), so the answer
comes within about two seconds; the next request connects afresh (CONN_HEALTH_CHECKS),
so recovery needs no restart.
"""
import logging
import sys

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _
from django.views import defaults

logger = logging.getLogger(__name__)
UNAVAILABLE = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


def is_unavailable(exc: BaseException | None) -> bool:
    """The exception, or one it was raised from, says the database cannot be reached."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UNAVAILABLE):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def unavailable_response(request) -> HttpResponse:
    """503 with Retry-After in the request's language: JSON under /api/, text for devices,
    a page otherwise. Touches no database."""
    with translation.override(translation.get_language_from_request(request)):
        message = _("The service is unavailable for a moment. Try again shortly.")
        if request.path.startswith("/api/"):
            response = JsonResponse({"detail": message}, status=503, json_dumps_params={"ensure_ascii": False})
        elif request.path.startswith("/ping/"):
            response = HttpResponse(f"{message}\n", status=503, content_type="text/plain; charset=utf-8")
        else:
            response = HttpResponse(render_to_string("503.html", {"message": message,
                                                                  "language": translation.get_language()}),
                                    status=503)
    response["Retry-After"] = str(settings.OUTAGE_RETRY_AFTER_SECONDS)
    return response


def server_error(request, template_name=defaults.ERROR_500_TEMPLATE_NAME):
    error = sys.exc_info()[1]
    if is_unavailable(error):
        # One line per request, not Django's traceback: an outage is not a bug.
        logger.warning("database unavailable: %s %s answered 503 (%s)", request.method, request.path,
                       str(error).splitlines()[0] if str(error) else type(error).__name__)
        response = unavailable_response(request)
        response._has_been_logged = True
        return response
    return defaults.server_error(request, template_name)
