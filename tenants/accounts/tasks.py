import logging

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import connection
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from tenants.accounts.actions import do_clear_expired_sessions, do_mark_invitation_sent
from tenants.accounts.models import Invitation, User
from tenants.context import absolute_url, primary_domain
from tenants.models import Tenant
from tenants.tasks import tenant_task

logger = logging.getLogger(__name__)


@tenant_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_invitation_email(invitation_id: int, accept_url: str) -> bool:
    """Send the invitation link once; a second delivery of this task sends nothing."""
    invitation = Invitation.objects.filter(pk=invitation_id, sent_at=None).first()
    if invitation is None or not invitation.is_usable:
        return False
    with translation.override("ja"):
        tenant = Tenant.objects.get(schema_name=connection.schema_name)
        context = {"invitation": invitation, "accept_url": accept_url, "tenant": tenant}
        subject = render_to_string("accounts/invitation_subject.txt", context).strip()
        body = render_to_string("accounts/invitation_email.txt", context)
    send_mail(subject, body, None, [invitation.email])
    do_mark_invitation_sent(invitation_id)
    logger.info("invitation %s sent", invitation_id)
    return True


@tenant_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_password_reset_email(user_id: int, request_id: str) -> bool:
    """Mail a password-reset link on the tenant's own domain, once per request: a second
    delivery of this task sends nothing (a failed send releases its claim for the retry)."""
    claim = f"pwreset-sent:{request_id}"
    if not cache.add(claim, 1, timeout=settings.PASSWORD_RESET_TIMEOUT):
        return False
    try:
        user = User.objects.filter(pk=user_id, is_active=True).first()
        if user is None or not user.has_usable_password() or not user.email:
            return False
        schema_name = connection.schema_name
        path = reverse("accounts:password_reset_confirm", urlconf=settings.ROOT_URLCONF, kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)), "token": default_token_generator.make_token(user)})
        with translation.override("ja"):
            context = {"user": user, "domain": primary_domain(schema_name),
                       "reset_url": absolute_url(schema_name, path)}
            subject = render_to_string("registration/password_reset_subject.txt", context).strip()
            body = render_to_string("registration/password_reset_email.txt", context)
        send_mail(subject, body, None, [user.email])
    except Exception:
        cache.delete(claim)
        raise
    logger.info("password reset link sent to user %s", user_id)
    return True


@tenant_task
def clear_expired_sessions() -> int:
    return do_clear_expired_sessions()
