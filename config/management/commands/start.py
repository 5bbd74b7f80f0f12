"""Start the whole platform in the foreground: web (ASGI), Celery worker and beat.

Run through `python3.11 manage.py start`, which first starts the embedded PostgreSQL
and Redis unless DATABASE_URL / REDIS_URL are set. Ctrl-C stops everything.
"""
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from config.services import DATA_DIR


class Command(BaseCommand):
    help = "Migrate, load the demo, then run web, worker, beat (and the MQTT listener if MQTT_URL is set)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(settings.SITE_PORT or 8000))
        parser.add_argument("--no-demo", action="store_true", help="do not create the demo tenants")

    def handle(self, *args, host, port, no_demo, **opts):
        settings.SITE_PORT = str(port)
        call_command("setup_platform" if no_demo else "load_demo")
        env = {**os.environ, "MIMAMORI_SITE_PORT": str(port), "PYTHONUNBUFFERED": "1"}
        python = sys.executable
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        schedule = DATA_DIR / "celerybeat-schedule"  # beside the embedded servers' data (MIMAMORI_DATA_DIR)
        commands = {
            "web": [python, "-m", "uvicorn", "config.asgi:application", "--host", host, "--port", str(port),
                    "--lifespan", "off", "--no-access-log", "--no-proxy-headers"],
            "worker": [python, "-m", "celery", "-A", "config.celery:app", "worker", "-l", "INFO",
                       "--concurrency", "2", "-n", "worker@%h"],
            "beat": [python, "-m", "celery", "-A", "config.celery:app", "beat", "-l", "INFO", "-s", str(schedule)],
        }
        stopping = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.append(True))
        if settings.MQTT_URL:
            commands["mqtt"] = [python, "manage.py", "mqtt_listener"]
        procs = {name: subprocess.Popen(cmd, env=env, cwd=settings.BASE_DIR) for name, cmd in commands.items()}
        self.stdout.write(self.style.SUCCESS(f"web, worker and beat started; web on http://{host}:{port}/ "
                                             "(Ctrl-C stops all)"))
        failed = None
        try:
            while not stopping and failed is None:
                time.sleep(0.3)
                failed = next((name for name, proc in procs.items() if proc.poll() is not None), None)
        finally:
            self.stdout.write("stopping ...")
            self.stop(procs)
        if failed and not stopping:
            raise SystemExit(f"{failed} exited with code {procs[failed].returncode}; stopped the rest")
        self.stdout.write("stopped.")

    @staticmethod
    def stop(procs):
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
