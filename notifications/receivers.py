"""Live events for what happens in `tenants` (which cannot import this app)."""
from django.dispatch import receiver

from notifications.consumers import to_session
from notifications.events import EVERYONE, send_event_on_commit, to_role, to_user
from tenants.accounts.models import User
from tenants.accounts.signals import (
    password_changed,
    role_changed,
    session_ended,
    tenant_deactivated,
    user_deactivated,
    user_joined,
)

SESSION_ENDED = {"type": "session.ended"}


@receiver(user_deactivated)
@receiver(password_changed)
@receiver(role_changed)
def end_live_connections(sender, schema_name, user_id, **kwargs):
    # Open pages of a deactivated user, or of sessions a new password or role ended, stop at once.
    send_event_on_commit(schema_name, SESSION_ENDED, [to_user(user_id)])


@receiver(session_ended)
def end_connections_of_session(sender, schema_name, session_key, **kwargs):
    # Signing out on one device closes that session's pages, not the user's other devices.
    send_event_on_commit(schema_name, SESSION_ENDED, [to_session(session_key)])


@receiver(tenant_deactivated)
def end_connections_of_tenant(sender, schema_name, **kwargs):
    send_event_on_commit(schema_name, SESSION_ENDED, [EVERYONE])


@receiver(user_joined)
def announce_new_user(sender, schema_name, user_id, **kwargs):
    user = User.objects.get(pk=user_id)
    event = {"type": "user.joined", "user": {"id": user.pk, "name": str(user), "role": user.role}}
    send_event_on_commit(schema_name, event, [to_role(User.Role.ADMIN)])
