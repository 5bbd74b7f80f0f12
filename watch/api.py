"""REST API under /api/v1/ (token or session authentication). Every resident named by
input is fetched through watch.access; every change goes through watch.actions."""
from datetime import timedelta

from django import forms
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.accounts import actions as account_actions
from tenants.accounts.forms import client_address
from watch import actions
from watch.access import areas_for_user, get_resident_for_user, residents_for_user
from watch.models import ContactLog, Device
from watch.search import ResidentFilter, filter_residents
from watch.serializers import (
    AreaSerializer,
    ContactInputSerializer,
    ContactSerializer,
    DeviceInputSerializer,
    DeviceSerializer,
    ResidentSerializer,
    resident_detail_serializer_for,
)


class ObtainTokenView(APIView):
    """Exchange a user name and password for an API token (throttled like sign-in)."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(request={"application/json": {"type": "object", "properties": {
        "username": {"type": "string"}, "password": {"type": "string"}}}},
        responses={200: {"type": "object", "properties": {"token": {"type": "string"}}},
                   400: OpenApiResponse(description="Missing or wrong user name or password."),
                   429: OpenApiResponse(description="Too many failed attempts for the account or address.")})
    def post(self, request):
        from django.contrib.auth import authenticate

        data = request.data if isinstance(request.data, dict) else {}
        username, password = data.get("username"), data.get("password")
        if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
            raise ValidationError({"non_field_errors": [_("Send the user name and the password.")]})
        address = client_address(request)
        if not account_actions.do_count_sign_in_attempt(username, address):
            raise Throttled(detail=_("Too many failed sign-in attempts. Please wait 15 minutes and try again."))
        user = authenticate(request, username=username, password=password)
        if user is None:
            raise ValidationError({"non_field_errors": [_("The user name or password is incorrect.")]})
        account_actions.do_record_sign_in_success(username, address)
        return Response({"token": account_actions.do_issue_api_token(user)})


def filter_parameters() -> list[OpenApiParameter]:
    """The query parameters of a list of residents, read from watch.search.ResidentFilter."""
    parameters = []
    for name, field in ResidentFilter.base_fields.items():
        integer = isinstance(field, forms.IntegerField)
        choices = [value for value, _label in field.choices if value] if isinstance(field, forms.ChoiceField) else None
        description = str(field.help_text or field.label)
        if integer:
            description += f" ({field.min_value}–{field.max_value})"
        if name in ResidentFilter.SENSITIVE_FILTERS:
            description += " (only for roles that see the sensitive parts of a record; ignored for others)"
        parameters.append(OpenApiParameter(name, OpenApiTypes.INT if integer else OpenApiTypes.STR, required=False,
                                           enum=choices, description=description))
    return parameters


class ResidentList(generics.ListAPIView):
    serializer_class = ResidentSerializer

    @extend_schema(parameters=filter_parameters(), description=(
        "The residents you may see, found by `q` (name, kana in hiragana or katakana, full- or half-width, "
        "phone number or part of the address) and narrowed by the filters; overdue first, then by the next due "
        "time. `count` is the total. A value that is not valid is a 400 naming the parameter; an area that is not "
        "one of yours is a 404."))
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        residents, search = filter_residents(self.request.user, self.request.query_params)
        if search.errors:
            raise ValidationError({field: list(messages) for field, messages in search.errors.items()})
        return residents.select_related("area").order_by("-is_overdue", "next_due_at", "pk")


class ResidentDetail(generics.RetrieveAPIView):
    def get_object(self):
        return get_resident_for_user(self.request.user, self.kwargs["pk"])

    def get_serializer_class(self):
        return resident_detail_serializer_for(self.request.user)


class ResidentContacts(generics.ListAPIView):
    """A resident's contact timeline, newest first."""

    serializer_class = ContactSerializer

    def get_queryset(self):
        resident = get_resident_for_user(self.request.user, self.kwargs["pk"])
        return ContactLog.objects.filter(resident=resident).select_related("logged_by")


class ContactCreate(APIView):
    @extend_schema(request=ContactInputSerializer, responses={
        201: ContactSerializer, 200: OpenApiResponse(ContactSerializer, description="a retry: the original entry"),
        404: OpenApiResponse(description="no such resident, or not one you may see"),
        409: OpenApiResponse(description="idempotency key already used for another resident")})
    def post(self, request):
        data = ContactInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        resident = get_resident_for_user(request.user, values["resident"])
        try:
            contact, created = actions.do_log_contact(
                actor=request.user, resident=resident, occurred_at=values.get("occurred_at") or timezone.now(),
                channel=values["channel"], outcome=values["outcome"], note=values.get("note", ""),
                idempotency_key=values.get("idempotency_key"),
            )
        except actions.IdempotencyConflict:
            return Response({"idempotency_key": ["This key was already used for another contact."]},
                            status=status.HTTP_409_CONFLICT)
        return Response(ContactSerializer(contact, context={"request": request}).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class AreaList(generics.ListAPIView):
    serializer_class = AreaSerializer
    pagination_class = None

    def get_queryset(self):
        return areas_for_user(self.request.user)


class DeviceRegister(APIView):
    @extend_schema(request=DeviceInputSerializer, responses={201: {"type": "object"}})
    def post(self, request, pk):
        resident = get_resident_for_user(request.user, pk)
        data = DeviceInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        device, token = actions.do_register_device(
            actor=request.user, resident=resident, kind=data.validated_data["kind"],
            name=data.validated_data["name"], interval=timedelta(hours=data.validated_data["interval_hours"]),
        )
        ping_url = request.build_absolute_uri(f"/ping/{token}")
        return Response({**DeviceSerializer(device).data, "token": token, "ping_url": ping_url},
                        status=status.HTTP_201_CREATED)


class DeviceRevoke(APIView):
    @extend_schema(request=None, responses={200: DeviceSerializer})
    def post(self, request, pk):
        device = get_object_or_404(Device, pk=pk, resident__in=residents_for_user(request.user))
        actions.do_revoke_device(actor=request.user, device=device)
        device.refresh_from_db()
        return Response(DeviceSerializer(device).data)
