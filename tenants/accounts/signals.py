"""Hooks for apps to the right of `tenants` (which may not be imported from here)."""
from django.dispatch import Signal

# Sent inside the transaction that deactivated the user; kwargs: schema_name, user_id.
user_deactivated = Signal()
# Sent inside the transaction that created the account; kwargs: schema_name, user_id.
user_joined = Signal()
# Sent inside the transaction that recorded a new password; kwargs: schema_name, user_id.
password_changed = Signal()
# Sent inside the transaction that gave a user another role; kwargs: schema_name, user_id.
role_changed = Signal()
# Sent when a signed-in session signs out; kwargs: schema_name, session_key.
session_ended = Signal()
# Sent inside the transaction that deactivated a tenant; kwargs: schema_name.
tenant_deactivated = Signal()
