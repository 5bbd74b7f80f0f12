from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

from config.i18n import compile_messages
from tenants.actions import do_ensure_public_tenant


class Command(BaseCommand):
    help = "Migrate every schema, compile translations and make sure the public (operator) host exists."

    def handle(self, *args, **opts):
        compile_messages()
        call_command("migrate_schemas", interactive=False, verbosity=0)
        connection.set_schema_to_public()
        do_ensure_public_tenant(settings.PUBLIC_HOST)
        self.stdout.write(f"Platform ready; operators sign in at host {settings.PUBLIC_HOST}")
