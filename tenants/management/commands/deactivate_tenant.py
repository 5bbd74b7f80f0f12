from django.core.management.base import BaseCommand, CommandError

from tenants.actions import do_deactivate_tenant, do_reactivate_tenant
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Deactivate a tenant (its hosts answer 404, its users are signed out; data is kept)."

    def add_arguments(self, parser):
        parser.add_argument("schema_name")
        parser.add_argument("--reactivate", action="store_true", help="serve the tenant again")

    def handle(self, *args, schema_name, reactivate, **opts):
        tenant = Tenant.objects.exclude(schema_name="public").filter(schema_name=schema_name).first()
        if tenant is None:
            raise CommandError(f"no tenant {schema_name!r}")
        changed = do_reactivate_tenant(tenant) if reactivate else do_deactivate_tenant(tenant)
        state = "active" if tenant.is_active else "deactivated"
        self.stdout.write(f"{schema_name} is {state}" + ("" if changed else " (unchanged)"))
