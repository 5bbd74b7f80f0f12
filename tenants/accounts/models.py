"""People who sign in. Lives in every schema: a tenant's staff and volunteers in the
tenant's schema, platform operators in the public schema. A person who helps two
municipalities has two accounts."""
import hashlib

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class User(AbstractUser):
    class Role(models.TextChoices):
        ADMIN = "admin", _("Tenant administrator")
        MUNICIPAL_STAFF = "municipal_staff", _("Municipal staff")
        CASE_WORKER = "case_worker", _("Case worker")
        VOLUNTEER = "volunteer", _("Volunteer")
        ASSOCIATION_OFFICER = "association_officer", _("Residents' association officer")
        # Only in the public schema: creates tenants, reads no tenant's people.
        OPERATOR = "operator", _("Platform operator")

    display_name = models.CharField(_("name"), max_length=100)
    role = models.CharField(_("role"), max_length=32, choices=Role.choices)
    must_change_password = models.BooleanField(default=False)
    # Django's first_name/last_name do not fit Japanese names; display_name is used.
    first_name = None
    last_name = None

    REQUIRED_FIELDS = ["email"]

    class Meta:
        ordering = ["display_name", "username"]

    def __str__(self) -> str:
        return self.display_name or self.username

    def get_full_name(self) -> str:
        return str(self)

    def get_short_name(self) -> str:
        return str(self)

    @property
    def is_tenant_admin(self) -> bool:
        return self.is_active and self.role == self.Role.ADMIN


TENANT_ROLES = [role for role in User.Role if role != User.Role.OPERATOR]
# Those who run the tenant's notifications: they see failed deliveries (of the residents they may see).
STAFF_ROLES = (User.Role.ADMIN, User.Role.MUNICIPAL_STAFF)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Invitation(models.Model):
    """An administrator's invitation to join the tenant with a role. Only the token's
    hash is stored; the link works once and expires."""

    email = models.EmailField(_("email"))
    display_name = models.CharField(_("name"), max_length=100)
    role = models.CharField(_("role"), max_length=32, choices=[(r.value, r.label) for r in TENANT_ROLES])
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_user = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.display_name} <{self.email}> ({self.role})"

    @property
    def is_usable(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > timezone.now()


class ApiToken(models.Model):
    """A key for the API (`Authorization: Token <key>`). Only its hash is stored
    (hash_token: sha256 hex of the key); it ends at `expires_at`, when another is issued
    for the user, when the password changes, and when the user is deactivated."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"API token of user {self.user_id} until {self.expires_at:%Y-%m-%d}"
