"""`python3.11 manage.py fake_providers`: the local fake of LINE's and Twilio's APIs
(notifications.fake_providers) on its own, for the demo: `start` runs it when no real
LINE or Twilio account is configured, and points the platform at it. What it received:
GET /_fake/ on it (JSON)."""
import time

from django.core.management.base import BaseCommand

from notifications.fake_providers import serve, stop


class Command(BaseCommand):
    help = "Run the local fake LINE / Twilio server (demo and benchmarks)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8025)
        parser.add_argument("--line-webhook", default="",
                            help="where LINE's account-link dialog sends the accountLink event")
        parser.add_argument("--line-webhook-host", default="", help="the Host header of that request")

    def handle(self, *args, host, port, line_webhook, line_webhook_host, **opts):
        fake, server = serve(host, port)
        fake.line_webhook_url = line_webhook
        fake.line_webhook_host = line_webhook_host
        self.stdout.write(f"fake LINE / Twilio at {fake.url} (what it received: {fake.url}/_fake/)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            stop(fake, server)
