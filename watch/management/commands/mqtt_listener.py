import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from watch.mqtt import Listener, get_mqtt_url


class Command(BaseCommand):
    help = "Receive device signals over MQTT (MQTT_URL) until SIGTERM or SIGINT."

    def add_arguments(self, parser):
        parser.add_argument("--url", help="broker URL, default MQTT_URL (mqtt://user:password@host:port)")
        parser.add_argument("--client-id", default="mimamori-listener",
                            help="MQTT client id; the broker keeps its session across restarts")

    def handle(self, *args, url, client_id, **opts):
        try:
            listener = Listener(url or get_mqtt_url(), client_id=client_id)
        except ValueError as error:
            raise CommandError(str(error)) from error
        # The network loop runs in a thread; the signal handler only sets an event, and
        # the main thread then disconnects cleanly.
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        thread = threading.Thread(target=listener.run, name="mqtt-listener")
        thread.start()
        while thread.is_alive() and not stop.wait(1):
            pass
        listener.stop()
        thread.join(timeout=10)
        if not stop.is_set():
            raise CommandError("the MQTT listener stopped unexpectedly")
