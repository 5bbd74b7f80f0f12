import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from notifications import credentials
from notifications.actions import do_configure_providers
from tenants.context import tenant_scope
from tenants.models import Tenant

OPTIONS = {  # option → ProviderSettings field
    "line_token": "line_channel_access_token",
    "line_secret": "line_channel_secret",
    "twilio_sid": "twilio_account_sid",
    "twilio_token": "twilio_auth_token",
    "twilio_from": "twilio_from_number",
    "email_from": "email_from",
}
SECRETS = {"line_token", "line_secret", "twilio_token"}
PLATFORM = {"line": ("line_token", "line_secret"), "sms": ("twilio_sid", "twilio_token", "twilio_from"),
            "email": ("email_from",)}


class Command(BaseCommand):
    help = ("Set a tenant's own LINE, SMS (Twilio) and email sender accounts; what is not set uses the "
            "platform's. A secret given as '-' is read from standard input (one line), so it is not seen in ps.")

    def add_arguments(self, parser):
        parser.add_argument("schema_name")
        for option in OPTIONS:
            parser.add_argument(f"--{option.replace('_', '-')}", dest=option)
        parser.add_argument("--use-platform", action="append", choices=sorted(PLATFORM), default=[],
                            help="forget the tenant's own account for this channel")

    def handle(self, *args, schema_name, use_platform, **opts):
        if not Tenant.objects.exclude(schema_name="public").filter(schema_name=schema_name).exists():
            raise CommandError(f"no tenant {schema_name!r}")
        changes = {}
        for option, field in OPTIONS.items():
            value = opts.get(option)
            if value == "-" and option in SECRETS:
                value = sys.stdin.readline().strip()
            if value is not None:
                changes[field] = value
        for channel in use_platform:
            changes.update({OPTIONS[option]: "" for option in PLATFORM[channel]})
        with tenant_scope(schema_name):
            try:
                do_configure_providers(actor=None, **changes)
            except ValidationError as exc:
                raise CommandError("; ".join(f"{field}: {' '.join(messages)}"
                                             for field, messages in exc.message_dict.items())) from None
            creds = credentials.current()
        for channel, fields in (("LINE", ("line_channel_access_token",)), ("SMS", ("twilio_account_sid",
                                "twilio_from_number")), ("email", ("email_from",))):
            whose = "own" if any(f in creds.own for f in fields) else "platform's"
            self.stdout.write(f"{schema_name}: {channel} uses the {whose} account")
