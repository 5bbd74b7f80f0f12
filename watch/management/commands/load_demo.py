"""Demo tenants, users and residents for trying the platform locally (in `watch`, the
highest app whose data it makes). Idempotent: a second run
keeps what exists and prints the same credentials (kept in .data/, never committed)."""
import json
import secrets

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

from tenants.accounts.actions import do_create_user
from tenants.accounts.models import User
from tenants.actions import do_provision_tenant
from tenants.context import tenant_scope
from tenants.models import Tenant

DEMO_TENANTS = [
    {"schema_name": "kyotanabe", "name": "京田辺市", "kind": Tenant.Kind.MUNICIPALITY,
     "prefecture": "京都府", "local_government_code": "262111"},
    {"schema_name": "toyooka", "name": "豊岡市社会福祉協議会", "kind": Tenant.Kind.WELFARE_COUNCIL,
     "prefecture": "兵庫県", "local_government_code": "282090"},
]
DEMO_USERS = [
    ("admin", "管理 太郎", User.Role.ADMIN),
    ("staff", "福祉 花子", User.Role.MUNICIPAL_STAFF),
    ("caseworker", "相談 一郎", User.Role.CASE_WORKER),
    ("volunteer", "民生 和子", User.Role.VOLUNTEER),
    ("officer", "自治 次郎", User.Role.ASSOCIATION_OFFICER),
]
SAMPLE = settings.BASE_DIR / "watch" / "demo" / "residents_sample_cp932.csv"


def load_demo_residents() -> str | None:
    """Import the sample residents' list (its clean rows), give the volunteer the residents
    who consented, attach the officer to their association, and register one button.
    Returns the button's token (shown once), or None if residents already exist."""
    from watch.actions import do_assign, do_attach_to_area, do_register_device
    from watch.importing import check_import, do_import_residents
    from watch.models import Area, Resident

    if Resident.objects.exists():
        return None
    admin = User.objects.get(username="admin")
    data = SAMPLE.read_bytes()
    bad = set(check_import(data, create_areas=True).error_lines)
    lines = data.split(b"\r\n")
    clean = b"\r\n".join(line for number, line in enumerate(lines, start=1) if number not in bad)
    do_import_residents(actor=admin, data=clean, create_areas=True)
    volunteer = User.objects.get(username="volunteer")
    for resident in Resident.objects.filter(consent_share_with_volunteers=True):
        do_assign(actor=admin, resident=resident, user=volunteer)
    officer = User.objects.get(username="officer")
    for area in Area.objects.filter(kind=Area.Kind.ASSOCIATION):
        do_attach_to_area(actor=admin, user=officer, area=area)
    _device, token = do_register_device(actor=admin, resident=Resident.objects.get(external_id="1"),
                                        kind="button", name="玄関の見守りボタン")
    return token


def credentials_file():
    """Where the demo passwords of this database are kept (never committed)."""
    db = settings.DATABASES["default"]
    return settings.BASE_DIR / ".data" / f"demo-credentials-{db['NAME']}.json"


class Command(BaseCommand):
    help = "Create the demo tenants (kyotanabe, toyooka) and their users; print how to sign in."

    def handle(self, *args, **opts):
        call_command("setup_platform", verbosity=0)
        path = credentials_file()
        creds = json.loads(path.read_text()) if path.exists() else {}
        connection.set_schema_to_public()
        if not User.objects.filter(username="operator").exists():
            creds["public:operator"] = secrets.token_urlsafe(9)
            do_create_user(username="operator", password=creds["public:operator"],
                           role=User.Role.OPERATOR, display_name="運営 担当")
        for spec in DEMO_TENANTS:
            schema = spec["schema_name"]
            if not Tenant.objects.filter(schema_name=schema).exists():
                do_provision_tenant(**spec, domain=f"{schema}.{settings.TENANT_BASE_DOMAIN}",
                                    admin_username="setup-admin")
            with tenant_scope(schema):
                for username, name, role in DEMO_USERS:
                    if not User.objects.filter(username=username).exists():
                        creds[f"{schema}:{username}"] = secrets.token_urlsafe(9)
                        do_create_user(username=username, password=creds[f"{schema}:{username}"],
                                       role=role, display_name=name, email=f"{username}@{schema}.example")
                if schema == "kyotanabe":
                    token = load_demo_residents()
                    if token:
                        creds["kyotanabe:device"] = token
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(creds, indent=1))
        path.chmod(0o600)
        self.print_credentials(creds)

    def print_credentials(self, creds):
        if creds.get("kyotanabe:device"):
            port = f":{settings.SITE_PORT}" if settings.SITE_PORT else ""
            self.stdout.write("A demo watch-over button (山田 花子) pings like this:")
            self.stdout.write(f"  curl http://kyotanabe.{settings.TENANT_BASE_DOMAIN}{port}"
                              f"/ping/{creds['kyotanabe:device']}")
        port = f":{settings.SITE_PORT}" if settings.SITE_PORT else ""
        out = self.stdout
        out.write("")
        out.write(self.style.SUCCESS("mimamori is up. Sign in at:"))
        out.write(f"  Platform operators  http://{settings.PUBLIC_HOST}{port}/   "
                  f"operator / {creds.get('public:operator', '(see .data/demo-credentials-*.json)')}")
        for spec in DEMO_TENANTS:
            schema = spec["schema_name"]
            out.write(f"  {spec['name']}  http://{schema}.{settings.TENANT_BASE_DOMAIN}{port}/")
            for username, _name, role in DEMO_USERS:
                out.write(f"      {role.label:<34} {username} / {creds.get(f'{schema}:{username}', '?')}")
        out.write("")
