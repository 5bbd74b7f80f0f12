from datetime import timedelta

from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core import mail
from django.utils import timezone

from tenants.accounts.models import Invitation
from tenants.accounts.tasks import clear_expired_sessions, send_invitation_email
from tenants.actions import do_deactivate_tenant
from tenants.context import tenant_scope
from tenants.tasks import active_schema_names, fan_out


def expired_session(schema_name: str) -> str:
    with tenant_scope(schema_name):
        store = SessionStore()
        store["marker"] = schema_name
        store.create()
        Session.objects.filter(pk=store.session_key).update(expire_date=timezone.now() - timedelta(days=1))
        return store.session_key


def sessions_in(schema_name: str) -> set[str]:
    with tenant_scope(schema_name):
        return set(Session.objects.values_list("session_key", flat=True))


def test_task_run_for_b_writes_only_into_b(tenant_a, tenant_b):
    key_a, key_b = expired_session("tenant_a"), expired_session("tenant_b")
    assert clear_expired_sessions.delay("tenant_b").get() == 1
    assert key_b not in sessions_in("tenant_b")
    assert key_a in sessions_in("tenant_a")


def test_task_for_a_deactivated_tenant_does_nothing(tenant_a):
    do_deactivate_tenant(tenant_a)
    key = expired_session("tenant_a")
    assert clear_expired_sessions.delay("tenant_a").get() is None
    assert key in sessions_in("tenant_a")


def test_task_for_an_unknown_schema_does_nothing(db):
    assert clear_expired_sessions.delay("no_such_tenant").get() is None


def test_fan_out_runs_the_task_once_per_active_tenant(tenant_a, tenant_b):
    do_deactivate_tenant(tenant_b)
    key_a, key_b = expired_session("tenant_a"), expired_session("tenant_b")
    assert fan_out.delay("tenants.accounts.tasks.clear_expired_sessions").get() == len(list(active_schema_names()))
    assert key_a not in sessions_in("tenant_a")
    assert key_b in sessions_in("tenant_b")


def test_active_schema_names_streams_active_tenants_without_public(tenant_a, tenant_b):
    names = list(active_schema_names())
    assert "tenant_a" in names and "tenant_b" in names
    assert "public" not in names


def test_invitation_email_task_delivered_twice_sends_one_email(admin_a):
    with tenant_scope("tenant_a"):
        invitation = Invitation.objects.create(
            email="x@example.jp", display_name="X", role="volunteer", token_hash="h" * 64,
            invited_by=admin_a, expires_at=timezone.now() + timedelta(hours=1),
        )
    assert send_invitation_email.delay("tenant_a", invitation.pk, "http://x/").get() is True
    assert send_invitation_email.delay("tenant_a", invitation.pk, "http://x/").get() is False
    # The same id in B's schema is a different (absent) invitation: nothing sent.
    assert send_invitation_email.delay("tenant_b", invitation.pk, "http://x/").get() is False
    assert len(mail.outbox) == 1
