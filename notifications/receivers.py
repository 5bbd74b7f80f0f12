"""Live events for what happens in `tenants` (which cannot import this app)."""
from django.dispatch import receiver

from notifications.events import send_event_on_commit, to_role, to_user
from tenants.accounts.models import User
from tenants.accounts.signals import user_deactivated, user_joined


@receiver(user_deactivated)
def end_live_connections(sender, schema_name, user_id, **kwargs):
    # Open pages of a deactivated user must stop receiving anything at once.
    send_event_on_commit(schema_name, {"type": "session.ended"}, [to_user(user_id)])


@receiver(user_joined)
def announce_new_user(sender, schema_name, user_id, **kwargs):
    user = User.objects.get(pk=user_id)
    event = {"type": "user.joined", "user": {"id": user.pk, "name": str(user), "role": user.role}}
    send_event_on_commit(schema_name, event, [to_role(User.Role.ADMIN)])
