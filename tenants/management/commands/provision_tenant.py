from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tenants.actions import default_domain, do_provision_tenant
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Create a tenant: its schema, host name and first administrator (with a one-time password)."

    def add_arguments(self, parser):
        parser.add_argument("schema_name", help="short name, e.g. kyotanabe")
        parser.add_argument("--name", required=True, help="e.g. 京田辺市")
        parser.add_argument("--kind", required=True, choices=Tenant.Kind.values)
        parser.add_argument("--prefecture", required=True, help="e.g. 京都府")
        parser.add_argument("--code", required=True, help="6-digit local government code, e.g. 262111")
        parser.add_argument("--domain", help=f"host name (default: <schema_name>.{settings.TENANT_BASE_DOMAIN})")
        parser.add_argument("--admin-username", default="admin")
        parser.add_argument("--admin-email", default="")

    def handle(self, *args, **opts):
        try:
            result = do_provision_tenant(
                schema_name=opts["schema_name"],
                domain=opts["domain"] or default_domain(opts["schema_name"]),
                name=opts["name"], kind=opts["kind"], prefecture=opts["prefecture"],
                local_government_code=opts["code"],
                admin_username=opts["admin_username"], admin_email=opts["admin_email"],
            )
        except ValidationError as exc:
            lines = [f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()]
            raise CommandError("tenant not created:\n  " + "\n  ".join(lines)) from exc
        self.stdout.write(self.style.SUCCESS(f"Created {result.tenant.name} at {result.domain}"))
        self.stdout.write(f"First administrator: {result.admin_username}")
        self.stdout.write(f"One-time password:   {result.admin_one_time_password}  (must be changed at first sign-in)")
