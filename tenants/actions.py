"""Every state change of tenants: provisioning, deactivation, reactivation."""
import logging
import secrets
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.utils import timezone
from django.utils.translation import gettext as _
from django_tenants.utils import schema_exists

from tenants.context import forget_cached_hosts, tenant_scope
from tenants.models import Domain, Tenant, normalise_host_name, schema_name_validator, validate_host_name

logger = logging.getLogger(__name__)

RESERVED_SCHEMAS = {"public", "information_schema", "pg_catalog", "pg_toast"}


@dataclass(frozen=True)
class ProvisionedTenant:
    tenant: Tenant
    domain: str
    admin_username: str
    admin_one_time_password: str


def default_domain(schema_name: str) -> str:
    """The host a new tenant gets when none is given (underscores are not allowed in host names)."""
    from django.conf import settings

    return f"{schema_name.replace('_', '-')}.{settings.TENANT_BASE_DOMAIN}"


def check_new_tenant(*, schema_name: str, domain: str, **fields) -> Tenant:
    """Validate a tenant that does not exist yet; raise ValidationError naming each field.
    The domain is checked lower-cased (as do_provision_tenant stores it)."""
    tenant = Tenant(schema_name=schema_name, **fields)
    errors: dict[str, list[str]] = {}
    try:
        tenant.full_clean(validate_unique=False)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    for field in ("name", "kind", "prefecture", "local_government_code"):
        if not fields.get(field):
            errors.setdefault(field, []).append(_("This field is required."))
    try:
        schema_name_validator(schema_name)
    except ValidationError as exc:
        errors.setdefault("schema_name", []).extend(exc.messages)
    if schema_name in RESERVED_SCHEMAS or schema_name.startswith("pg_"):
        errors.setdefault("schema_name", []).append(_("This schema name is reserved."))
    elif Tenant.objects.filter(schema_name=schema_name).exists() or schema_exists(schema_name):
        errors.setdefault("schema_name", []).append(_("A tenant with this schema name already exists."))
    domain = normalise_host_name(domain)
    try:
        validate_host_name(domain)
    except ValidationError as exc:
        errors.setdefault("domain", []).extend(exc.messages)
    if Domain.objects.filter(domain=domain).exists():
        errors.setdefault("domain", []).append(_("This domain already serves another tenant."))
    if errors:
        raise ValidationError(errors)
    return tenant


def do_provision_tenant(
    *,
    schema_name: str,
    domain: str,
    name: str,
    kind: str,
    prefecture: str,
    local_government_code: str,
    admin_username: str = "admin",
    admin_email: str = "",
    admin_display_name: str = "",
) -> ProvisionedTenant:
    """Create the tenant row, its schema with every migration, its domain and its first
    administrator, in one transaction: on any failure nothing of it remains.

    The administrator gets a one-time password and must choose a new one at first sign-in.
    """
    from tenants.accounts.models import User

    connection.set_schema_to_public()
    domain = normalise_host_name(domain)
    tenant = check_new_tenant(
        schema_name=schema_name, domain=domain, name=name, kind=kind,
        prefecture=prefecture, local_government_code=local_government_code,
    )
    password = secrets.token_urlsafe(12)
    try:
        with transaction.atomic():
            tenant.save()
            Domain.objects.create(domain=domain, tenant=tenant, is_primary=True)
            # DDL is transactional in PostgreSQL: the schema and its tables roll back too.
            tenant.create_schema(check_if_exists=False, verbosity=0)
            with tenant_scope(schema_name):
                User.objects.create_user(
                    username=admin_username, email=admin_email, password=password,
                    display_name=admin_display_name or admin_username,
                    role=User.Role.ADMIN, must_change_password=True,
                )
    except DatabaseError as exc:
        # A concurrent provisioning of the same schema or domain lost the race.
        logger.warning("provisioning %s failed: %s", schema_name, exc)
        raise ValidationError(
            {"schema_name": [_("The tenant could not be created: the schema name or domain was just taken.")]}
        ) from exc
    finally:
        connection.set_schema_to_public()
    forget_cached_hosts()
    logger.info("provisioned tenant %s at %s", schema_name, domain)
    return ProvisionedTenant(tenant, domain, admin_username, password)


def do_deactivate_tenant(tenant: Tenant) -> bool:
    """Stop serving a tenant: its hosts answer 404 (in every process within a second:
    tenants.context), its sessions and API tokens end, its live connections close, its
    tasks stop.

    The schema and its data are kept. Returns False if it was already inactive.
    """
    from django.contrib.sessions.models import Session

    from tenants.accounts.models import ApiToken
    from tenants.accounts.signals import tenant_deactivated

    with transaction.atomic():
        changed = Tenant.objects.filter(pk=tenant.pk, is_active=True).update(
            is_active=False, deactivated_at=timezone.now()
        )
        if changed:
            with tenant_scope(tenant.schema_name):
                Session.objects.all().delete()
                ApiToken.objects.all().delete()
                # Open pages are told at once (their connections close) after commit.
                tenant_deactivated.send(sender=Tenant, schema_name=tenant.schema_name)
    if changed:
        forget_cached_hosts()
        logger.info("deactivated tenant %s", tenant.schema_name)
    tenant.refresh_from_db()
    return bool(changed)


def do_reactivate_tenant(tenant: Tenant) -> bool:
    changed = Tenant.objects.filter(pk=tenant.pk, is_active=False).update(is_active=True, deactivated_at=None)
    forget_cached_hosts()
    tenant.refresh_from_db()
    return bool(changed)


def do_ensure_public_tenant(host: str) -> Tenant:
    """The public (operators') tenant and its host exist (idempotent). Assumes the public schema
    is migrated and current."""
    public, _created = Tenant.objects.get_or_create(schema_name="public", defaults={"name": "mimamori"})
    Domain.objects.get_or_create(domain=host, defaults={"tenant": public, "is_primary": True})
    forget_cached_hosts()
    return public
