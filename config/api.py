"""API conventions shared by every app: Django's ValidationError (raised by actions)
becomes a 400 with field messages, like DRF's own; every refusal has one documented body."""
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import JsonResponse
from django.views.defaults import page_not_found
from drf_spectacular import openapi
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else
                                         {"non_field_errors": exc.messages})
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    return drf_exception_handler(exc, context)


class ErrorSerializer(serializers.Serializer):
    """The body of every refusal: `detail` for 401, 403, 404, 405 and 429; for 400, each
    field name (or `non_field_errors`) with its messages."""

    detail = serializers.CharField(required=False)
    non_field_errors = serializers.ListField(child=serializers.CharField(), required=False)


ERROR_MEANINGS = {
    400: "The input is not valid: the messages say why, field by field.",
    401: "No valid credentials: sign in, or send `Authorization: Token <key>`.",
    403: "Signed in, but this role may not do this (or the session's CSRF check failed).",
    404: "Not found, or not one you may see (the same answer for both).",
    429: "Too many attempts; wait and try again.",
}


class AutoSchema(openapi.AutoSchema):
    """Every operation documents the refusals it gives, each with ErrorSerializer's body:
    401 and 403 wherever authentication is required, 400 wherever a body or parameter is
    read, 404 wherever the path names an object or a page is asked for, and what the
    view declares with extend_schema (a 429, a 404 for an id in the body); a 4xx
    declared without a body gets it. Named by DEFAULT_SCHEMA_CLASS, so no app imports it."""

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        codes = set()
        if not all(issubclass(permission, AllowAny) for permission in self.view.permission_classes):
            codes |= {401, 403}
        if "requestBody" in operation or operation.get("parameters"):  # out-of-range ids, NUL bytes…
            codes.add(400)
        if "{" in self.path or (self.method == "GET" and getattr(self.view, "paginator", None) is not None):
            codes.add(404)
        responses = operation["responses"]
        for code in sorted(codes):
            responses.setdefault(str(code), {})
        error = self.resolve_serializer(ErrorSerializer, "response").ref
        for code, response in responses.items():
            if code.startswith("4") and not response.get("content"):
                response["content"] = {"application/json": {"schema": error}}
                response["description"] = response.get("description") or ERROR_MEANINGS.get(int(code), "")
        operation["responses"] = dict(sorted(responses.items()))
        return operation


def not_found(request, exception):
    """The tenant hosts' 404: under /api/, the API's JSON body even where no route
    matched (an id that is not a number); elsewhere Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": str(exceptions.NotFound.default_detail)}, status=404)
    return page_not_found(request, exception)
