#!/usr/bin/env python3
"""Django's command-line utility, and the project's two entry points.

`python3.11 manage.py start` brings the whole platform up; `python3.11 manage.py test`
runs the whole test suite. On a machine with only Python, both first create `.venv`
and install the project into it, then run again from there.
"""
import os
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SERVICE_COMMANDS = {"start", "test"}


def main():
    from config import bootstrap

    bootstrap.ensure_venv(sys.argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "start":
        os.environ.setdefault("DJANGO_DEBUG", "1")
    if command == "test":
        os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-key-not-secret-0123456789abcdefghijklmnop")
    if command in SERVICE_COMMANDS:
        from config import services

        with services.running(purpose="test" if command == "test" else "dev"):
            run(sys.argv)
    else:
        run(sys.argv)


def run(argv):
    from django.core.management import execute_from_command_line

    execute_from_command_line(argv)


if __name__ == "__main__":
    main()
