from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from django.utils import timezone
from rest_framework import serializers

from watch.access import can_see_sensitive, note_visible_to
from watch.actions import NOTE_MAX, check_contact_input
from watch.models import Area, Channel, ContactLog, Device, EmergencyContact, Outcome, Resident, Rhythm


def IdField(**kwargs):
    """An id given as input: a positive integer that fits the database's ids (larger
    ones would name no row: 400, not a lookup)."""
    return serializers.IntegerField(min_value=1, max_value=connection.ops.integer_field_range("BigAutoField")[1],
                                    **kwargs)


class AreaSerializer(serializers.ModelSerializer):
    class Meta:
        model = Area
        fields = ["id", "name", "kind", "parent"]


class EmergencyContactSerializer(serializers.ModelSerializer):
    class Meta:
        model = EmergencyContact
        fields = ["name", "relation", "phone"]


class RhythmSerializer(serializers.ModelSerializer):
    class Meta:
        model = Rhythm
        fields = ["id", "channel", "device", "interval", "grace", "last_contact_at", "alert_at", "state"]


class ResidentSerializer(serializers.ModelSerializer):
    """What anyone who may see the resident sees."""

    area_name = serializers.CharField(source="area.name", read_only=True)
    # How an area is shown: "大住 › 山手東自治会 › 3班".
    area_full_name = serializers.CharField(source="area.__str__", read_only=True)

    class Meta:
        model = Resident
        fields = [
            "id", "name", "furigana", "gender", "date_of_birth", "address", "area", "area_name", "area_full_name",
            "phone", "mobile_phone", "household", "needs_evacuation_support", "risk", "visit_notes", "status",
            "last_contact_at", "last_outcome", "next_due_at", "is_overdue",
        ]
        read_only_fields = fields


class ResidentDetailSerializer(ResidentSerializer):
    emergency_contacts = EmergencyContactSerializer(many=True, read_only=True)
    rhythms = RhythmSerializer(many=True, read_only=True)

    class Meta(ResidentSerializer.Meta):
        fields = [*ResidentSerializer.Meta.fields, "emergency_contacts", "rhythms", "consent"]
        read_only_fields = fields


class SensitiveResidentDetailSerializer(ResidentDetailSerializer):
    """Adds 要配慮個人情報 for the roles that need it (never volunteers or officers)."""

    class Meta(ResidentDetailSerializer.Meta):
        fields = [*ResidentDetailSerializer.Meta.fields, "care_level", "health_notes", "paused_reason",
                  "paused_until", "end_reason"]
        read_only_fields = fields


def resident_detail_serializer_for(user):
    return SensitiveResidentDetailSerializer if can_see_sensitive(user) else ResidentDetailSerializer


class ContactInputSerializer(serializers.Serializer):
    resident = IdField()
    occurred_at = serializers.DateTimeField(required=False)
    channel = serializers.ChoiceField(choices=Channel.choices)
    outcome = serializers.ChoiceField(choices=Outcome.choices)
    # Not trimmed here: a note of only spaces is refused by the action (watch.notes).
    note = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=NOTE_MAX,
                                 default="")
    idempotency_key = serializers.UUIDField(required=False)

    def validate(self, attrs):
        """The action's own check (the contact time window among others), before any lookup."""
        try:
            check_contact_input(occurred_at=attrs.get("occurred_at") or timezone.now(), channel=attrs["channel"],
                                outcome=attrs["outcome"], note=attrs.get("note", ""))
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        return attrs


class ContactSerializer(serializers.ModelSerializer):
    logged_by_name = serializers.SerializerMethodField()

    class Meta:
        model = ContactLog
        fields = ["id", "resident", "occurred_at", "channel", "outcome", "note", "logged_by", "logged_by_name",
                  "device", "idempotency_key", "created_at"]
        read_only_fields = fields

    def get_logged_by_name(self, contact) -> str:
        return str(contact.logged_by) if contact.logged_by_id else ""

    def to_representation(self, contact):
        data = super().to_representation(contact)
        user = self.context["request"].user
        if not note_visible_to(user, contact.logged_by_id):
            data["note"] = ""
        return data


class DeviceInputSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Device.Kind.choices)
    name = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    interval_hours = serializers.IntegerField(required=False, min_value=1, max_value=24 * 14, default=24)


class DeviceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = ["id", "resident", "kind", "name", "created_at", "revoked_at", "last_signal_at", "battery_low"]
        read_only_fields = fields
