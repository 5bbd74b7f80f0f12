"""`python3.11 manage.py line_as_resident kyotanabe 鈴木 --say 元気です` (or `--tap fine`):
do what a resident does in LINE, for the demo: send the tenant's LINE webhook the signed
event LINE would send for that resident's linked account (a text message, or a tap on an
answer button under a question). The platform answers it as it would LINE's."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from notifications import credentials
from notifications.fake_providers import LINE_SECRET, line_event, send_line_events
from outreach.answers import postback_data
from outreach.models import Answer, Ask
from tenants.context import tenant_scope
from watch.models import Resident


class Command(BaseCommand):
    help = "Send the tenant's LINE webhook what LINE sends when a linked resident writes or taps (demo)."

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="the tenant's schema name, e.g. kyotanabe")
        parser.add_argument("resident", help="the resident's id, municipal number or (part of the) name")
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--say", help="a text message, e.g. 元気です")
        what.add_argument("--tap", choices=Answer.values, help="tap an answer button")
        parser.add_argument("--kind", choices=Ask.Kind.values, default=Ask.Kind.SAFETY.value,
                            help="the question the button is under (default: safety check)")
        parser.add_argument("--port", type=int, default=int(settings.SITE_PORT or 8000))

    def handle(self, *args, tenant, resident, say, tap, kind, port, **opts):
        with tenant_scope(tenant):
            candidates = Resident.objects.exclude(line_user_id="")
            found = (candidates.filter(pk=int(resident)) if resident.isdigit() else Resident.objects.none()) \
                or candidates.filter(external_id=resident) or candidates.filter(name__contains=resident)
            if len(found) != 1:
                names = ", ".join(r.name for r in found[:5]) or "none"
                raise CommandError(f"{len(found)} residents with a linked LINE account match {resident!r}: {names}")
            person = found[0]
            secret = credentials.current().line_channel_secret or LINE_SECRET
        event = (line_event("message", person.line_user_id, text=say) if say is not None
                 else line_event("postback", person.line_user_id, data=postback_data(kind, tap)))
        status = send_line_events(f"http://127.0.0.1:{port}/notifications/line/webhook/", [event], secret=secret,
                                  host=f"{tenant}.{settings.TENANT_BASE_DOMAIN}")
        if status != 200:
            raise CommandError(f"the webhook answered HTTP {status}")
        self.stdout.write(f"sent as {person.name} ({person.line_user_id[:9]}…): HTTP {status}")
