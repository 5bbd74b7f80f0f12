"""Take an earthquake report for every active tenant (outreach.quakes): a tenant whose
region and intensity match holds a real safety check and tells its staff."""
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from outreach.quakes import check_intensity, do_receive_quake_report
from tenants.context import tenant_scope
from tenants.tasks import active_schema_names


class Command(BaseCommand):
    help = "Take an earthquake report (event id, region, JMA intensity) for every active tenant."

    def add_arguments(self, parser):
        parser.add_argument("--event-id", required=True)
        parser.add_argument("--region", required=True)
        parser.add_argument("--intensity", required=True, help="JMA: 1, 2, 3, 4, 5-, 5+, 6-, 6+, 7")
        parser.add_argument("--at", help="when it occurred, ISO 8601 (default: now)")

    def handle(self, *args, **options):
        try:
            intensity = check_intensity(options["intensity"])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        occurred = timezone.now()
        if options["at"]:
            try:
                occurred = datetime.fromisoformat(options["at"])
            except ValueError:
                raise CommandError(f"--at is not an ISO 8601 time: {options['at']}") from None
            if timezone.is_naive(occurred):
                occurred = timezone.make_aware(occurred)
        for schema_name in list(active_schema_names()):
            with tenant_scope(schema_name):
                try:
                    result = do_receive_quake_report(event_id=options["event_id"], region=options["region"],
                                                     intensity=intensity, occurred_at=occurred)
                except ValidationError as exc:
                    raise CommandError(" ".join(exc.messages)) from None
            check = f" (safety check {result.check.pk}, sent at {result.check.send_at:%H:%M})" if result.check else ""
            self.stdout.write(f"{schema_name}: {result.outcome}{check}")
