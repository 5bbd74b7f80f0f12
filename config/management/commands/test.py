"""`python3.11 manage.py test [pytest arguments]`: the whole test suite with pytest.

Replaces Django's test runner. manage.py has already started the embedded PostgreSQL
and Redis (unless DATABASE_URL / REDIS_URL are set); this compiles the translations
and runs pytest in a child process, returning its exit status.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from config.i18n import compile_messages


class Command(BaseCommand):
    help = "Run the whole test suite (pytest); extra arguments go to pytest."

    def add_arguments(self, parser):
        parser.add_argument("pytest_args", nargs="*")

    def run_from_argv(self, argv):
        # Pass everything after "test" to pytest untouched (e.g. -k, -x, -q).
        compile_messages()
        ensure_test_tools()
        args = argv[2:]
        code = subprocess.call([sys.executable, "-m", "pytest", *parallel(args), *args], cwd=settings.BASE_DIR)
        raise SystemExit(code)

    def handle(self, *args, **opts):  # pragma: no cover - run_from_argv does the work
        raise SystemExit(1)


def parallel(args: list[str]) -> list[str]:
    """pytest-xdist options: a process per core (at least 2, at most 4), a file's tests together in one
    process (they share module fixtures: live servers, a browser). Each process has its own
    test database (pytest-django) and Redis database (config.settings). MIMAMORI_TEST_PROCESSES
    sets the number; 1, or -n / --dist / -p no:xdist given by the caller, runs in one process."""
    count = int(os.environ.get("MIMAMORI_TEST_PROCESSES") or min(4, max(2, os.cpu_count() or 1)))
    if count <= 1 or "no:xdist" in args or any(a.startswith(("-n", "--numprocesses", "--dist")) for a in args):
        return []
    return ["-n", str(count), "--dist", "loadfile"]


TEST_TOOLS = {"/usr/bin/chromium": "chromium", "/usr/share/fonts/opentype/noto": "fonts-noto-cjk",
              "/usr/sbin/mosquitto": "mosquitto"}


def ensure_test_tools() -> None:
    """Browser tests drive Debian's Chromium (with a Japanese font); the MQTT test runs a
    real Mosquitto. Install them where apt and root are at hand; elsewhere those tests are
    skipped, saying what is missing."""
    missing = [package for path, package in TEST_TOOLS.items() if not Path(path).exists()]
    if not missing or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    print(f"Installing {', '.join(missing)} for the browser and MQTT tests ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env, "check": False}
    apt = shutil.which("apt-get")
    subprocess.run([apt, "update", "-qq"], **quiet)
    if subprocess.run([apt, "install", "-y", "-qq", *missing], **quiet).returncode:
        print(f"Could not install {', '.join(missing)}: the tests needing them will be skipped.", flush=True)
