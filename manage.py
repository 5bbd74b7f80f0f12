#!/usr/bin/env python3
"""Django's command-line utility, and the project's two entry points.

`python3.11 manage.py start` brings the whole platform up; `python3.11 manage.py test`
runs the whole test suite. In a checkout, every command first makes sure `.venv` exists
and is up to date, runs from it, and has PostgreSQL and Redis (embedded ones unless
DATABASE_URL / REDIS_URL are set). With MIMAMORI_NO_VENV=1 (containers) it does none
of that and is configured by the environment alone.
"""
import os
import sys


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if os.environ.get("MIMAMORI_NO_VENV") == "1":
        return run(sys.argv)

    from config import bootstrap, services

    bootstrap.ensure_venv(sys.argv)
    if command == "test":
        os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-key-not-secret-0123456789abcdefghijklmnop")
    else:
        os.environ.setdefault("DJANGO_DEBUG", "1")  # a checkout is a development machine
    with services.running(purpose="test" if command == "test" else "dev"):
        run(sys.argv)


def run(argv):
    from django.core.management import execute_from_command_line

    execute_from_command_line(argv)


if __name__ == "__main__":
    main()
