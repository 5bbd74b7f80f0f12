"""Start the whole platform in the foreground: web (ASGI), Celery worker and beat.

Run through `python3.11 manage.py start`, which first starts the embedded PostgreSQL
and Redis unless DATABASE_URL / REDIS_URL are set. A process that exits is started
again (and the output says so); Ctrl-C or SIGTERM stops everything.
"""
import contextlib
import functools
import os
import signal
import subprocess
import sys
import time

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


def kill_group(proc) -> None:
    """Each child leads a process group of its own (start_new_session): end all of it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


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
        # A session of its own each: Ctrl-C reaches `start` only, which stops each in order.
        spawn = functools.partial(subprocess.Popen, env=env, cwd=settings.BASE_DIR, start_new_session=True)

        def say(line):
            self.stdout.write(line)
            self.stdout.flush()

        self.stdout.write(self.style.SUCCESS(f"web, worker and beat starting; web on http://{host}:{port}/ "
                                             "(Ctrl-C stops all)"))
        procs = {}
        try:
            supervise(commands, spawn, say, stopping, procs)
        finally:
            self.stdout.write("stopping ...")
            self.stop(procs)
        self.stdout.write("stopped.")

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
