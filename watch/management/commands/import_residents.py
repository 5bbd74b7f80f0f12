"""Import a residents' list (CSV) into one tenant: a dry run unless told to commit."""
from pathlib import Path

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from tenants.accounts.models import User
from tenants.context import tenant_scope
from tenants.models import Tenant
from watch.importing import ImportReport, check_import, do_import_residents


class Command(BaseCommand):
    help = ("Check a residents' list (CSV, UTF-8 or Shift_JIS) against a tenant and print every error by row "
            "(as Excel numbers them) and column; with --commit, import it all or nothing. Columns are matched by "
            "their headers or by the tenant's saved mapping (made on the import page).")

    def add_arguments(self, parser):
        parser.add_argument("schema_name", help="the tenant's schema")
        parser.add_argument("file", type=Path, help="the CSV file")
        parser.add_argument("--commit", action="store_true", help="import (all or nothing); default: dry run")
        parser.add_argument("--create-areas", action="store_true",
                            help="create districts, associations and blocks that do not exist yet")
        parser.add_argument("--as", dest="username",
                            help="the staff member the import is recorded as (required with --commit); a dry run "
                                 "with it also checks that the rows are in the areas they look after")

    def handle(self, *args, schema_name, file, commit, create_areas, username, **opts):
        if not Tenant.objects.exclude(schema_name="public").filter(schema_name=schema_name).exists():
            raise CommandError(f"no tenant {schema_name!r}")
        if commit and not username:
            raise CommandError("--commit needs --as USERNAME: the staff member the import is recorded as")
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc}") from exc
        with tenant_scope(schema_name):
            actor = None
            if username:
                actor = User.objects.filter(username=username, is_active=True).first()
                if actor is None:
                    raise CommandError(f"no active user {username!r} in {schema_name}")
            if commit:
                try:
                    report = do_import_residents(actor=actor, data=data, create_areas=create_areas)
                except PermissionDenied as exc:
                    raise CommandError(f"{username} may not import residents: {exc}") from exc
            else:
                report = check_import(data, create_areas=create_areas, actor=actor)
        self.print_report(report, commit=commit)
        if report.errors:
            raise CommandError(f"{len(report.errors)} error(s) on {len(report.error_lines)} row(s); "
                               "nothing was imported")

    def print_report(self, report: ImportReport, *, commit: bool) -> None:
        out = self.stdout
        if report.encoding:
            out.write(f"encoding: {report.encoding}, records read: {report.row_count}")
        for error in report.errors:
            where = "file" if error.line is None else f"row {error.line}"
            column = f" [{error.field}]" if error.field else ""
            out.write(self.style.ERROR(f"{where}{column}: {error.message}"))
        if report.fatal:
            return
        verb = "created" if report.committed else "to create"
        for names in report.new_areas:
            out.write(f"area {verb}: {' › '.join(names)}")
        if report.committed:
            out.write(self.style.SUCCESS(f"{report.row_count} record(s) read, imported {len(report.imported)} "
                                         "resident(s), 0 errors"))
        elif not commit:
            out.write(f"{report.row_count} record(s) read: {len(report.rows)} can be imported, {len(report.errors)} "
                      "error(s) (dry run: nothing changed)")
