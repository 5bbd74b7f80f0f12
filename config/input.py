"""The input policy of every Django path (pages, forms, the API, device pings, webhooks),
in one place: text that PostgreSQL cannot store or that no person typed, JSON that is
not an object or too deep, and numbers or ids beyond a 64-bit integer answer 400 with
a message in the request's language, before any view runs (so nothing is half-saved)."""
import json
import re

from django.db import connection
from django.http import HttpResponseBadRequest, JsonResponse
from django.utils.translation import gettext as _

# The database's ids (bigint): a larger number cannot name a row, nor be stored as one.
BIGINT_MIN, BIGINT_MAX = connection.ops.integer_field_range("BigAutoField")
# The deepest JSON any endpoint takes is a few levels (a LINE webhook: 5).
MAX_JSON_DEPTH = 32
# NUL (PostgreSQL text cannot hold it) and lone UTF-16 surrogates (not characters; a
# valid pair in JSON decodes to one character outside this range).
FORBIDDEN_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


class BadInput(ValueError):
    """Why the request cannot be read, in the request's language."""


def check_text(value: str) -> None:
    if FORBIDDEN_CHARACTERS.search(value):
        raise BadInput(_("The request contains a character that is not allowed (a NUL byte or a lone surrogate)."))


def _checked_int(text: str) -> int:
    value = int(text)
    if not BIGINT_MIN <= value <= BIGINT_MAX:
        raise BadInput(_("A number is out of range."))
    return value


def check_json(body: bytes) -> None:
    """A JSON body is one object, at most MAX_JSON_DEPTH deep, of text that can be stored
    and integers that fit in 64 bits."""
    try:
        data = json.loads(body.decode("utf-8"), parse_int=_checked_int)
    except BadInput:
        raise
    except RecursionError:
        raise BadInput(_("The JSON is nested too deeply.")) from None
    except ValueError:  # not UTF-8, not JSON
        raise BadInput(_("The request body is not valid JSON.")) from None
    if not isinstance(data, dict):
        raise BadInput(_("The request body must be a JSON object."))
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadInput(_("The JSON is nested too deeply."))
        if isinstance(value, str):
            check_text(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                check_text(key)
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)


def check_request(request) -> None:
    for values in (request.GET, request.POST if request.method == "POST" else None):
        for key, items in (values.lists() if values is not None else ()):
            check_text(key)
            for item in items:
                check_text(item)
    if request.content_type == "application/json" or request.content_type.endswith("+json"):
        body = request.body
        if body.strip():
            check_json(body)


def _refuse(request, message: str):
    if request.path.startswith("/api/") or request.content_type.endswith("json"):
        return JsonResponse({"detail": message}, status=400)
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")


class InputPolicyMiddleware:
    """Runs after LocaleMiddleware (messages in the request's language)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            check_request(request)
        except BadInput as exc:
            return _refuse(request, str(exc))
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        """An id in the address (`<int:pk>`) beyond a bigint names nothing: 400, not a lookup."""
        if any(isinstance(value, int) and value > BIGINT_MAX for value in [*view_args, *view_kwargs.values()]):
            return _refuse(request, _("An id in the address is out of range."))
        return None
