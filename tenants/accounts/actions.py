"""Every state change of accounts: invitations, activation, sign-in throttling."""
import hashlib
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from tenants.accounts.models import Invitation, User, hash_token
from tenants.accounts.signals import user_deactivated, user_joined
from tenants.tasks import enqueue_on_commit

logger = logging.getLogger(__name__)


# Sign-in throttling. Keys are per schema (the cache's key function adds it).
def _failure_keys(username: str, address: str) -> list[str]:
    user_digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return [f"login-fail:user:{user_digest}", f"login-fail:addr:{address}"]


def check_login_allowed(username: str, address: str) -> bool:
    """False while the account or the address has too many recent failures."""
    counts = cache.get_many(_failure_keys(username, address)).values()
    return all(count < settings.LOGIN_FAILURE_LIMIT for count in counts)


def do_record_login_failure(username: str, address: str) -> None:
    for key in _failure_keys(username, address):
        cache.add(key, 0, timeout=settings.LOGIN_FAILURE_WINDOW)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW)
    logger.info("sign-in failed for a user name from %s", address)


def do_clear_login_failures(username: str) -> None:
    cache.delete(_failure_keys(username, "-")[0])


# Invitations.
def check_can_manage_users(actor: User) -> None:
    if not actor.is_tenant_admin:
        raise PermissionDenied(_("Only a tenant administrator can manage users."))


def do_invite_user(*, actor: User, email: str, display_name: str, role: str, accept_url_for) -> Invitation:
    """Create an invitation and send its link by email after commit.

    `accept_url_for(token)` builds the absolute link; the token itself is never stored.
    """
    check_can_manage_users(actor)
    if role not in User.Role.values or role == User.Role.OPERATOR:
        raise ValidationError({"role": [_("Choose one of the roles offered.")]})
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        invitation = Invitation.objects.create(
            email=email, display_name=display_name, role=role, token_hash=hash_token(token),
            invited_by=actor, expires_at=timezone.now() + timedelta(hours=settings.INVITATION_TTL_HOURS),
        )
        from tenants.accounts.tasks import send_invitation_email

        enqueue_on_commit(send_invitation_email, invitation.pk, accept_url_for(token))
    logger.info("user %s invited a %s (invitation %s)", actor.pk, role, invitation.pk)
    return invitation


def get_usable_invitation(token: str) -> Invitation | None:
    invitation = Invitation.objects.filter(token_hash=hash_token(token)).first()
    return invitation if invitation and invitation.is_usable else None


def do_accept_invitation(*, token: str, username: str, password: str) -> User:
    """Turn a usable invitation into an account; a link works once."""
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().filter(token_hash=hash_token(token)).first()
        if invitation is None or not invitation.is_usable:
            raise ValidationError(_("This invitation link is invalid, expired or already used."))
        if User.objects.filter(username__iexact=username).exists():
            raise ValidationError({"username": [_("This user name is already taken.")]})
        user = User.objects.create_user(
            username=username, password=password, email=invitation.email,
            display_name=invitation.display_name, role=invitation.role,
        )
        invitation.accepted_at = timezone.now()
        invitation.accepted_user = user
        invitation.save(update_fields=["accepted_at", "accepted_user"])
        user_joined.send(sender=User, schema_name=connection.schema_name, user_id=user.pk)
    logger.info("invitation %s accepted by new user %s", invitation.pk, user.pk)
    return user


def do_revoke_invitation(*, actor: User, invitation: Invitation) -> bool:
    check_can_manage_users(actor)
    return bool(
        Invitation.objects.filter(pk=invitation.pk, accepted_at=None, revoked_at=None).update(
            revoked_at=timezone.now()
        )
    )


# Activation.
def do_set_user_active(*, actor: User, user: User, active: bool) -> bool:
    """Deactivate (signing the user out everywhere) or reactivate an account."""
    check_can_manage_users(actor)
    if user.pk == actor.pk and not active:
        raise ValidationError(_("You cannot deactivate your own account."))
    with transaction.atomic():
        changed = User.objects.filter(pk=user.pk, is_active=not active).update(is_active=active)
        if changed and not active:
            _end_sessions_of(user.pk)
            user_deactivated.send(sender=User, schema_name=connection.schema_name, user_id=user.pk)
    logger.info("user %s set user %s active=%s", actor.pk, user.pk, active)
    return bool(changed)


def _end_sessions_of(user_id: int) -> None:
    from django.contrib.auth import SESSION_KEY

    doomed = [s.pk for s in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
              if s.get_decoded().get(SESSION_KEY) == str(user_id)]
    Session.objects.filter(pk__in=doomed).delete()


def do_create_user(*, username: str, password: str, role: str, display_name: str = "", email: str = "") -> User:
    """Create an account directly (operators, demo data). Operators only in the public schema."""
    is_public = connection.schema_name == "public"
    if (role == User.Role.OPERATOR) != is_public:
        raise ValidationError(_("Operators live only in the public schema, tenant roles only in tenants."))
    return User.objects.create_user(
        username=username, password=password, role=role, email=email,
        display_name=display_name or username,
    )
