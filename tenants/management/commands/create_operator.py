import secrets

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from tenants.accounts.actions import do_create_user
from tenants.accounts.models import User


class Command(BaseCommand):
    help = "Create a platform operator (public schema) and print a one-time password."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")

    def handle(self, *args, username, email, **opts):
        connection.set_schema_to_public()
        if User.objects.filter(username=username).exists():
            raise CommandError(f"operator {username!r} already exists")
        password = secrets.token_urlsafe(12)
        do_create_user(username=username, password=password, role=User.Role.OPERATOR, email=email,
                       must_change_password=True)
        self.stdout.write(f"Operator {username} created; one-time password: {password}")
