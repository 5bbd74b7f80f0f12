"""Notifications to a person, every attempt to deliver them outside the app, and each
person's choice of channels.

The in-app notification is the record: it exists at once and stays whatever the
providers answer. External delivery is driven from these rows (state, lease, next
attempt), so a lost Celery message or a dead worker loses nothing: the sweep re-drives
whatever is pending and unheld.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class Channel(models.TextChoices):
    EMAIL = "email", pgettext_lazy("notification channel", "Email")
    LINE = "line", _("LINE")
    SMS = "sms", _("SMS")
    WEBPUSH = "webpush", _("Push notification on this phone")


EXTERNAL_CHANNELS = [c.value for c in Channel]


def default_channels() -> list[str]:
    return [Channel.EMAIL.value]


class Notification(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", _("Being delivered")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Delivery failed")
        # The person has no external channel with an address: the app is the only way.
        IN_APP_ONLY = "in_app_only", _("In the app only")
        # Handed to a provider whose answer was lost (email after a timeout past DATA),
        # no other channel confirmed it: maybe delivered, never called failed.
        UNCONFIRMED = "unconfirmed", _("Sent, delivery not confirmed")
        # Not sent: before it went out, its recipient could no longer see its resident.
        WITHDRAWN = "withdrawn", _("Not sent: no longer about someone the person may see")

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=64)
    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("message"), blank=True)
    url = models.CharField(max_length=500, blank=True)
    urgent = models.BooleanField(_("urgent"), default=False)
    # The sender's identity of this message, e.g. "concern:12:step:2": the same key
    # for the same person gives the same row, whatever retries happen upstream.
    dedupe_key = models.CharField(max_length=200)
    # The resident the notification tells about (an id of watch's, which this app cannot
    # reference): pages listing notifications show only those the viewer may see.
    subject_resident = models.BigIntegerField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    delivered_via = models.CharField(max_length=16, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    # The channels to try, fixed at the first delivery run, and where we are in them.
    plan = models.JSONField(default=list, blank=True)
    channel_index = models.PositiveSmallIntegerField(default=0)
    # No delivery run acts before this (backoff, quiet hours).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Held by one delivery run until then; compare-and-set on this value.
    delivering_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["recipient", "dedupe_key"], name="notification_once_per_recipient"),
        ]
        indexes = [
            models.Index(fields=["recipient", "read_at"], name="notification_unread"),
            models.Index(fields=["next_attempt_at"], condition=Q(state="pending"), name="notification_pending"),
            models.Index(fields=["-failed_at"], condition=Q(state="failed"), name="notification_failed"),
        ]

    def __str__(self) -> str:
        return self.title


class DeliveryAttempt(models.Model):
    """One call to a provider: the delivery log. Written before the call (so an attempt
    cut short by a dying worker still shows) and completed with the provider's answer."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="attempts")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    attempt = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(default=False)
    provider_status = models.PositiveSmallIntegerField(null=True, blank=True)
    provider_answer = models.CharField(max_length=1000, blank=True)
    error = models.TextField(blank=True)
    # The provider may have accepted it but its answer was lost (a timeout or a dropped
    # connection after the message was sent, a worker that died during the call).
    unknown = models.BooleanField(default=False)

    class Meta:
        ordering = ["started_at", "pk"]

    def __str__(self) -> str:
        return f"{self.channel} #{self.attempt} {'ok' if self.ok else 'unknown' if self.unknown else 'failed'}"


class ReceivedWebhookEvent(models.Model):
    """A provider's webhook event already handled (LINE's webhookEventId, Twilio's
    MessageSid): a redelivery of it changes nothing."""

    provider = models.CharField(max_length=16)
    event_id = models.CharField(max_length=100)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "event_id"], name="webhook_event_once")]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_id}"


class ChannelPreference(models.Model):
    """How a person wants to be reached outside the app. Created on first need."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="channel_preference")
    channels = models.JSONField(default=default_channels)  # in order of preference, e.g. ["line", "email"]
    line_user_id = models.CharField(max_length=64, blank=True, db_index=True)
    phone = models.CharField(max_length=16, blank=True)  # E.164, e.g. +819012345678
    webpush_subscription = models.JSONField(null=True, blank=True)  # {"endpoint": ..., "keys": {...}}
    # Non-urgent messages wait while quiet; may wrap midnight (22:00-07:00), tenant time.
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user}: {', '.join(self.channels)}"


class ProviderSettings(models.Model):
    """This tenant's own accounts with the providers: its LINE official account, its
    Twilio number, the sender of its email. One row (pk 1) per tenant schema; a blank
    field falls back to the platform's setting (notifications.credentials). Secrets are
    stored sealed with a key derived from SECRET_KEY."""

    line_channel_access_token = models.TextField(blank=True)  # sealed
    line_channel_secret = models.TextField(blank=True)  # sealed
    twilio_account_sid = models.CharField(max_length=34, blank=True)
    twilio_auth_token = models.TextField(blank=True)  # sealed
    twilio_from_number = models.CharField(max_length=16, blank=True)
    email_from = models.CharField(max_length=254, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    def __str__(self) -> str:
        return "provider settings"
