"""Every state change of accounts: invitations, activation, sign-in throttling."""
import hashlib
import logging
import secrets
import time
from datetime import timedelta

import redis
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from tenants.accounts.models import TENANT_ROLES, ApiToken, Invitation, User, hash_token
from tenants.accounts.signals import password_changed, role_changed, session_ended, user_deactivated, user_joined
from tenants.tasks import enqueue_on_commit

logger = logging.getLogger(__name__)


# Throttling. Counters are taken before the check they guard, so that parallel attempts
# cannot all pass a check made before any of them counted. Keys are per schema (the
# cache's key function adds it).
def _digest(text: str) -> str:
    return hashlib.sha256(text.strip().lower().encode()).hexdigest()[:32]


# While Redis (the shared cache) is unreachable, counters are kept in this process.
# Failing closed would lock everyone out of the platform for the outage, failing open
# would allow unlimited guesses; a local count keeps every limit per process (with N
# web processes, at most N times the limit), and nobody is locked out. After a failure
# the shared cache is left alone for SHARED_CACHE_PAUSE, so that a Redis that hangs
# costs one wait of its socket timeout, not one per counter.
_local_counters = LocMemCache("mimamori-throttle-fallback", {
    "KEY_FUNCTION": "django_tenants.cache.make_key", "KEY_PREFIX": "mimamori",
    "OPTIONS": {"MAX_ENTRIES": 100_000},  # no culling of counters by a flood of names
})
CACHE_ERRORS = (redis.RedisError, OSError)
SHARED_CACHE_PAUSE = 5.0
_shared_cache_down_until = 0.0


def _throttle_store(operation):
    """operation(store) on the shared cache, or on this process's counters while it is unreachable."""
    global _shared_cache_down_until
    if time.monotonic() >= _shared_cache_down_until:
        try:
            return operation(cache)
        except CACHE_ERRORS as error:
            _shared_cache_down_until = time.monotonic() + SHARED_CACHE_PAUSE
            logger.warning("throttle: the shared cache is unreachable (%s); counting in this process", error)
    return operation(_local_counters)


def _count(key: str, window: int) -> int:
    """Add one to the counter `key` (started with a lifetime of `window` seconds); its new value."""

    def count(store) -> int:
        store.add(key, 0, timeout=window)
        try:
            return store.incr(key)
        except ValueError:  # expired between add and incr
            store.add(key, 1, timeout=window)
            return 1

    return _throttle_store(count)


def _sign_in_keys(username: str, address: str) -> tuple[str, str]:
    return f"login-fail:user:{_digest(username)}", f"login-fail:addr:{address}"


def do_count_sign_in_attempt(username: str, address: str) -> bool:
    """Count an attempt as a failure before its password is checked; False (do not check
    it) once the account or, at a much higher count, the address is over its limit.

    A success clears the account's count and takes its attempt off the address's.
    """
    user_key, address_key = _sign_in_keys(username, address)
    window = settings.LOGIN_FAILURE_WINDOW
    user_count, address_count = _count(user_key, window), _count(address_key, window)
    allowed = user_count <= settings.LOGIN_FAILURE_LIMIT and address_count <= settings.LOGIN_ADDRESS_FAILURE_LIMIT
    if allowed:
        logger.info("sign-in attempt for a user name from %s (failures: %d, from the address: %d)",
                    address, user_count - 1, address_count - 1)
    else:
        logger.warning("sign-in attempt refused: too many failures for the name or from %s", address)
    return allowed


def do_record_sign_in_success(username: str, address: str) -> None:
    user_key, address_key = _sign_in_keys(username, address)

    def forget(store) -> None:
        store.delete(user_key)
        try:
            store.decr(address_key)
        except ValueError:
            pass

    _throttle_store(forget)


def do_count_password_reset_request(email: str, address: str) -> bool:
    """Count a password-reset request; False once the email (whether or not it is
    anyone's: the answer must not tell) or the address is over its limit."""
    window = settings.PASSWORD_RESET_WINDOW
    email_count = _count(f"pwreset:email:{_digest(email)}", window)
    address_count = _count(f"pwreset:addr:{address}", window)
    return email_count <= settings.PASSWORD_RESET_LIMIT and address_count <= settings.PASSWORD_RESET_ADDRESS_LIMIT


# API tokens and passwords.
def do_issue_api_token(user: User) -> str:
    """A new API key for `user`, ending the user's earlier ones (one live token per
    person: signing in on a new device ends the old device's). Only its hash is kept."""
    key = secrets.token_hex(20)
    with transaction.atomic():
        ApiToken.objects.filter(user=user).delete()
        ApiToken.objects.create(user=user, key_hash=hash_token(key),
                                expires_at=timezone.now() + timedelta(days=settings.API_TOKEN_TTL_DAYS))
    logger.info("API token issued to user %s", user.pk)
    return key


def do_record_password_change(user: User) -> None:
    """After the password changed (by the user or by a reset link): the one-time
    password flag is cleared, every API token of the user ends, and every live connection
    of the user closes (their other sessions end with the password's hash; the page where
    it was changed reconnects with its new session)."""
    with transaction.atomic():
        User.objects.filter(pk=user.pk, must_change_password=True).update(must_change_password=False)
        ApiToken.objects.filter(user=user).delete()
        password_changed.send(sender=User, schema_name=connection.schema_name, user_id=user.pk)
    logger.info("user %s changed their password", user.pk)


def do_request_password_reset(email: str) -> None:
    """Send a reset link, by a task after commit, to each active account of this tenant
    with `email` that has a password. The requester's answer must not depend on it."""
    from tenants.accounts.tasks import send_password_reset_email

    with transaction.atomic():
        for user in User.objects.filter(email__iexact=email, is_active=True).exclude(role=User.Role.OPERATOR):
            if user.has_usable_password():
                enqueue_on_commit(send_password_reset_email, user.pk, secrets.token_hex(8))


def do_sign_out(request) -> None:
    """End the request's session; its open pages' live connections are closed at once."""
    from django.contrib.auth import logout

    session_key = request.session.session_key
    logout(request)
    if session_key:
        session_ended.send(sender=User, schema_name=connection.schema_name, session_key=session_key)


# Invitations.
def check_can_manage_users(actor: User) -> None:
    if not actor.is_tenant_admin:
        raise PermissionDenied(_("Only a tenant administrator can manage users."))


def check_email_unused(email: str) -> None:
    """Refuse (on "email") an address of an active person of this tenant or of an invitation
    still waiting to be accepted, compared without case. Inside a transaction: two
    invitations to one address at the same moment are taken one after the other."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                       [f"invite:{connection.schema_name}:{email.strip().lower()}"])
    person = User.objects.filter(email__iexact=email.strip(), is_active=True).first()
    if person is not None:
        raise ValidationError({"email": [_("%(name)s already uses this address.") % {"name": person}]})
    waiting = Invitation.objects.filter(email__iexact=email.strip(), accepted_at=None, revoked_at=None,
                                        expires_at__gt=timezone.now()).first()
    if waiting is not None:
        raise ValidationError({"email": [
            _("An invitation to this address is waiting to be accepted (until %(date)s). Revoke it to send "
              "a new one.") % {"date": timezone.localtime(waiting.expires_at).strftime("%Y-%m-%d %H:%M")}]})


def do_invite_user(*, actor: User, email: str, display_name: str, role: str, accept_url_for) -> Invitation:
    """Create an invitation and send its link by email after commit.

    `accept_url_for(token)` builds the absolute link; the token itself is never stored.
    """
    check_can_manage_users(actor)
    if role not in User.Role.values or role == User.Role.OPERATOR:
        raise ValidationError({"role": [_("Choose one of the roles offered.")]})
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        check_email_unused(email)
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


def do_mark_invitation_sent(invitation_id: int) -> bool:
    """Record that the invitation's mail went out (once: False if it was already marked)."""
    return bool(Invitation.objects.filter(pk=invitation_id, sent_at=None).update(sent_at=timezone.now()))


def do_clear_expired_sessions() -> int:
    deleted, _count = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    return deleted


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
            ApiToken.objects.filter(user_id=user.pk).delete()
            user_deactivated.send(sender=User, schema_name=connection.schema_name, user_id=user.pk)
    logger.info("user %s set user %s active=%s", actor.pk, user.pk, active)
    return bool(changed)


def do_change_role(*, actor: User, user: User, role: str) -> bool:
    """Give `user` another tenant role; False when it was theirs already. Their sessions
    end, so that the new role applies at once (an open page's live connection joined its
    groups by the old role). The tenant always keeps an active administrator."""
    check_can_manage_users(actor)
    if role not in {choice.value for choice in TENANT_ROLES}:
        raise ValidationError({"role": [_("Choose one of the roles offered.")]})
    with transaction.atomic():
        # Locked: two administrators demoting each other at once must not both pass.
        admins = set(User.objects.select_for_update().filter(role=User.Role.ADMIN, is_active=True)
                     .values_list("pk", flat=True))
        current = User.objects.select_for_update().get(pk=user.pk)
        if current.role == role:
            return False
        if current.pk in admins and len(admins) == 1:
            raise ValidationError({"role": [_("The tenant needs an active administrator: make someone else an "
                                              "administrator first.")]})
        User.objects.filter(pk=user.pk).update(role=role)
        user.role = role
        _end_sessions_of(user.pk)
        role_changed.send(sender=User, schema_name=connection.schema_name, user_id=user.pk)
    logger.info("user %s changed the role of user %s from %s to %s", actor.pk, user.pk, current.role, role)
    return True


def _end_sessions_of(user_id: int) -> None:
    from django.contrib.auth import SESSION_KEY

    doomed = [s.pk for s in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
              if s.get_decoded().get(SESSION_KEY) == str(user_id)]
    Session.objects.filter(pk__in=doomed).delete()


def do_create_user(*, username: str, password: str, role: str, display_name: str = "", email: str = "",
                   must_change_password: bool = False) -> User:
    """Create an account directly (operators, demo data). Operators only in the public schema.
    With must_change_password, the password is a one-time one: a new one is chosen at first sign-in."""
    is_public = connection.schema_name == "public"
    if (role == User.Role.OPERATOR) != is_public:
        raise ValidationError(_("Operators live only in the public schema, tenant roles only in tenants."))
    return User.objects.create_user(
        username=username, password=password, role=role, email=email,
        display_name=display_name or username, must_change_password=must_change_password,
    )
