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
        ensure_chromium()
        code = subprocess.call([sys.executable, "-m", "pytest", *argv[2:]], cwd=settings.BASE_DIR)
        raise SystemExit(code)

    def handle(self, *args, **opts):  # pragma: no cover - run_from_argv does the work
        raise SystemExit(1)


def ensure_chromium() -> None:
    """Browser tests drive Debian's Chromium; install it (with a Japanese font) where apt
    and root are at hand. Elsewhere those tests are skipped, saying what is missing."""
    if Path("/usr/bin/chromium").exists() or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    print("Installing Debian's chromium and fonts-noto-cjk for the browser tests ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env, "check": False}
    apt = shutil.which("apt-get")
    subprocess.run([apt, "update", "-qq"], **quiet)
    if subprocess.run([apt, "install", "-y", "-qq", "chromium", "fonts-noto-cjk"], **quiet).returncode:
        print("Could not install chromium: the browser tests will be skipped.", flush=True)
