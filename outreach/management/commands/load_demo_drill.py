"""Give each demo tenant a drill from a month ago (outreach.demo), so the README's drill
is read next to a previous one. `start` runs it after load_demo; running it again adds nothing."""
from django.core.management.base import BaseCommand

from outreach.demo import do_load_demo_drill
from tenants.context import tenant_scope
from tenants.models import Tenant

DEMO_SCHEMAS = ("kyotanabe", "toyooka")


class Command(BaseCommand):
    help = "Add a past drill to each demo tenant (once), for the safety-check report's comparison."

    def add_arguments(self, parser):
        parser.add_argument("schemas", nargs="*", default=list(DEMO_SCHEMAS))

    def handle(self, *args, schemas=(), verbosity=1, **options):
        say = self.stdout.write if verbosity else (lambda _text: None)
        for schema in schemas:
            if not Tenant.objects.filter(schema_name=schema).exists():
                say(f"{schema}: no such tenant, skipped")
                continue
            with tenant_scope(schema):
                check = do_load_demo_drill()
            say(f"{schema}: " + (f"past drill {check.pk} added" if check else "already there"))
