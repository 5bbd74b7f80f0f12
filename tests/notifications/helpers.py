"""Small helpers of the notification tests."""
from notifications.actions import do_notify, do_set_preferences
from notifications.models import DeliveryAttempt, Notification
from tenants.context import tenant_scope


def notify(capture, recipient, key="concern:1:step:1", schema="tenant_a", **extra):
    """do_notify as an action's caller would, with the on-commit work (event, delivery
    task chain) run eagerly at the end."""
    fields = {"kind": "concern.escalated", "title": "山田 花子さんの見守りが遅れています",
              "body": "確認をお願いします。", "url": "/watch/residents/1/", "urgent": False, **extra}
    with capture(execute=True), tenant_scope(schema):
        notification, created = do_notify(recipient=recipient, dedupe_key=key, **fields)
    return notification, created


def set_channels(user, channels, schema="tenant_a", **extra):
    with tenant_scope(schema):
        return do_set_preferences(user=user, channels=channels, **extra)


def reload(notification, schema="tenant_a") -> Notification:
    with tenant_scope(schema):
        return Notification.objects.get(pk=notification.pk)


def attempts(notification, schema="tenant_a") -> list[tuple[str, int, bool]]:
    """The delivery log of a notification as (channel, attempt, ok)."""
    with tenant_scope(schema):
        return list(DeliveryAttempt.objects.filter(notification_id=notification.pk)
                    .order_by("pk").values_list("channel", "attempt", "ok"))
