import logging

from django.contrib.sessions.models import Session
from django.core.mail import send_mail
from django.db import connection
from django.template.loader import render_to_string
from django.utils import timezone, translation

from tenants.accounts.models import Invitation
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
    Invitation.objects.filter(pk=invitation_id, sent_at=None).update(sent_at=timezone.now())
    logger.info("invitation %s sent", invitation_id)
    return True


@tenant_task
def clear_expired_sessions() -> int:
    deleted, _ = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    return deleted
