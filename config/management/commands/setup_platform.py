from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

from config.i18n import compile_messages
from tenants.context import forget_cached_hosts
from tenants.models import Domain, Tenant


class Command(BaseCommand):
    help = "Migrate every schema, compile translations and make sure the public (operator) host exists."

    def handle(self, *args, **opts):
        compile_messages()
        call_command("migrate_schemas", interactive=False, verbosity=0)
        connection.set_schema_to_public()
        public, _ = Tenant.objects.get_or_create(schema_name="public", defaults={"name": "mimamori"})
        Domain.objects.get_or_create(domain=settings.PUBLIC_HOST, defaults={"tenant": public, "is_primary": True})
        forget_cached_hosts()
        self.stdout.write(f"Platform ready; operators sign in at host {settings.PUBLIC_HOST}")
