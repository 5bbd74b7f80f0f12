"""Start the whole platform in the foreground: web (ASGI), Celery worker and beat.

Run through `python3.11 manage.py start`, which first starts the embedded PostgreSQL
and Redis unless DATABASE_URL / REDIS_URL are set. A process that exits is started
again (and the output says so); Ctrl-C or SIGTERM stops everything. The sign-in banner
is printed once the web server answers. The workers' and beat's output goes to
.data/logs/<name>.log; the console shows only their warnings and errors (their INFO
lines, a few every minute for the periodic tasks, would bury everything else).
"""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from config.services import DATA_DIR

BACKOFF_FIRST = 1.0  # seconds before the first restart of a process that exited
BACKOFF_MAX = 30.0
STEADY = 60.0  # a process that ran this long before exiting starts again from BACKOFF_FIRST


def supervise(commands: dict, spawn, say, stopping: list, procs: dict, *, tick: float = 0.3) -> None:
    """Run each of `commands` ({name: argv}) with `spawn`, into `procs` ({name: Popen}),
    and keep it running until `stopping` is non-empty (Ctrl-C, SIGTERM). A process that
    exits is started again after a backoff (1 s, doubling up to 30 s; back to 1 s once it
    had run for a minute), and `say` tells which, with its exit code."""
    for name, cmd in commands.items():
        procs[name] = spawn(cmd)
    started = dict.fromkeys(commands, time.monotonic())
    delay = dict.fromkeys(commands, BACKOFF_FIRST)
    restart_at: dict[str, float] = {}
    while not stopping:
        time.sleep(tick)
        now = time.monotonic()
        for name in commands:
            if stopping:
                break
            if name in restart_at:
                if now >= restart_at[name]:
                    del restart_at[name]
                    procs[name], started[name] = spawn(commands[name]), now
                    say(f"{name} restarted")
                continue
            proc = procs[name]
            if proc.poll() is None:
                continue
            kill_group(proc)  # what it left behind (a worker's pool) must not outlive it
            if now - started[name] >= STEADY:
                delay[name] = BACKOFF_FIRST
            say(f"{name} exited with code {proc.returncode}; restarting in {delay[name]:g} s")
            restart_at[name] = now + delay[name]
            delay[name] = min(delay[name] * 2, BACKOFF_MAX)


# A log line at WARNING or above, in Celery's format ("[…: WARNING/MainProcess] …") or
# ours (JSON, "level": "ERROR").
LOUD = re.compile(r"(: |\"level\": \")(WARNING|ERROR|CRITICAL)\b")
LOG_LINE = re.compile(r"^(\[\d{4}-|\{\")")


def relay(stream, log_path, say, name: str, *, everything: bool) -> None:
    """Copy a process's output to its log file, and to the console `everything` or only
    its warnings and errors (with the lines of a traceback that follow them)."""
    loud = False
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        for line in stream:
            log.write(line)
            log.flush()
            if LOG_LINE.match(line):
                loud = bool(LOUD.search(line))
            if everything or loud:
                say(f"{name}: {line.rstrip()}" if not everything else line.rstrip())


def wait_until_answering(url: str, stopping: list, *, host: str = "", interval: float = 0.5) -> bool:
    """Poll `url` (as `host`) until any HTTP answer comes (a 404 is an answer); False if
    stopped first."""
    request = urllib.request.Request(url, headers={"Host": host} if host else {})  # noqa: S310 (http only)
    while not stopping:
        try:
            with urllib.request.urlopen(request, timeout=2):  # noqa: S310 (our own local server)
                return True
        except urllib.error.HTTPError:
            return True
        except (OSError, ValueError):
            time.sleep(interval)
    return False


def kill_group(proc) -> None:
    """Each child leads a process group of its own (start_new_session): end all of it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


FAKE_PROVIDERS_PORT = 8025


def fake_provider_settings(host: str, port: int) -> dict[str, str]:
    """In development with no LINE or Twilio account configured: the environment that points
    every process at the local fake provider server (notifications.fake_providers), so LINE
    and SMS can be tried without accounts. Empty otherwise."""
    from notifications import fake_providers as fake

    if not settings.DEBUG or settings.LINE_CHANNEL_ACCESS_TOKEN or settings.TWILIO_ACCOUNT_SID:
        return {}
    base = f"http://{host}:{FAKE_PROVIDERS_PORT}"
    return {"MIMAMORI_FAKE_PROVIDERS_PORT": str(FAKE_PROVIDERS_PORT),
            "LINE_API_BASE": base, "LINE_ACCESS_BASE": base, "LINE_CHANNEL_ACCESS_TOKEN": fake.LINE_TOKEN,
            "LINE_CHANNEL_SECRET": fake.LINE_SECRET, "TWILIO_API_BASE": base, "TWILIO_ACCOUNT_SID": fake.TWILIO_SID,
            "TWILIO_AUTH_TOKEN": fake.TWILIO_TOKEN, "TWILIO_FROM_NUMBER": fake.TWILIO_FROM}


class Command(BaseCommand):
    help = "Migrate, load the demo, then run web, worker, beat (and the MQTT listener if MQTT_URL is set)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(settings.SITE_PORT or 8000))
        parser.add_argument("--no-demo", action="store_true", help="do not create the demo tenants")

    def handle(self, *args, host, port, no_demo, **opts):
        settings.SITE_PORT = str(port)
        if no_demo:
            call_command("setup_platform")
        else:
            call_command("load_demo", banner=False)
            call_command("load_demo_drill", verbosity=0)  # a past drill, for the report's comparison
        env = {**os.environ, "MIMAMORI_SITE_PORT": str(port), "PYTHONUNBUFFERED": "1"}
        python = sys.executable
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        logs = DATA_DIR / "logs"
        logs.mkdir(exist_ok=True)
        schedule = DATA_DIR / "celerybeat-schedule"  # beside the embedded servers' data (MIMAMORI_DATA_DIR)
        commands = {
            "web": [python, "-m", "uvicorn", "config.asgi:application", "--host", host, "--port", str(port),
                    "--lifespan", "off", "--no-access-log", "--no-proxy-headers"],
            "worker": [python, "-m", "celery", "-A", "config.celery:app", "worker", "-l", "INFO",
                       "--concurrency", "2", "-n", "worker@%h", "-Q", "celery,urgent"],
            # Urgent deliveries only (notifications.tasks.route_delivery): never behind others'
            # deliveries to a hung provider; the main worker takes them too when it is free.
            "urgent-worker": [python, "-m", "celery", "-A", "config.celery:app", "worker", "-l", "INFO",
                              "--concurrency", "2", "-n", "urgent@%h", "-Q", "urgent"],
            "beat": [python, "-m", "celery", "-A", "config.celery:app", "beat", "-l", "INFO", "-s", str(schedule)],
        }
        stopping = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.append(True))
        if settings.MQTT_URL:
            commands["mqtt"] = [python, "manage.py", "mqtt_listener"]
        if fake := fake_provider_settings(host, port):
            env.update(fake)
            commands["providers"] = [python, "manage.py", "fake_providers", "--host", host,
                                     "--port", fake["MIMAMORI_FAKE_PROVIDERS_PORT"],
                                     "--line-webhook", f"http://{host}:{port}/notifications/line/webhook/",
                                     "--line-webhook-host", f"kyotanabe.{settings.TENANT_BASE_DOMAIN}"]
        lock = threading.Lock()

        def say(line):
            with lock:
                self.stdout.write(line)
                self.stdout.flush()

        def spawn(cmd):
            # A session of its own each: Ctrl-C reaches `start` only, which stops each in order.
            name = next(key for key, value in commands.items() if value is cmd)
            proc = subprocess.Popen(cmd, env=env, cwd=settings.BASE_DIR, start_new_session=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
            threading.Thread(target=relay, args=(proc.stdout, logs / f"{name}.log", say, name),
                             kwargs={"everything": name in ("web", "mqtt")}, daemon=True).start()
            return proc

        say(f"web, workers and beat starting (their logs: {logs}/); Ctrl-C stops all ...")
        threading.Thread(target=self.announce, args=(host, port, no_demo, stopping, say), daemon=True).start()
        procs = {}
        try:
            supervise(commands, spawn, say, stopping, procs)
        finally:
            self.stdout.write("stopping ...")
            self.stop(procs)
        self.stdout.write("stopped.")

    def announce(self, host, port, no_demo, stopping, say) -> None:
        """Once the web server answers: how to sign in, and where development mail goes."""
        # As the operators' host: a known host, so the poll logs no "Not Found".
        if not wait_until_answering(f"http://{host}:{port}/accounts/login/", stopping, host=settings.PUBLIC_HOST):
            return
        from io import StringIO

        from watch.management.commands.load_demo import Command as LoadDemo
        from watch.management.commands.load_demo import credentials_file

        out = StringIO()
        if no_demo:
            out.write(self.style.SUCCESS(f"mimamori is up: http://{settings.PUBLIC_HOST}:{port}/\n"))
        else:
            path = credentials_file()
            LoadDemo(stdout=out).print_credentials(json.loads(path.read_text()) if path.exists() else {})
        if settings.EMAIL_BACKEND == "notifications.mail.DevelopmentFileBackend":
            out.write(f"Emails are not sent: each one is kept as a text file in {settings.EMAIL_FILE_PATH}/\n")
        if fake := fake_provider_settings(host, port):
            out.write(f"LINE and SMS go to the local fake provider server; what it received: "
                      f"{fake['LINE_API_BASE']}/_fake/\n")
        say(out.getvalue().rstrip("\n"))

    @staticmethod
    def stop(procs):
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            kill_group(proc)
