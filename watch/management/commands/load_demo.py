"""Demo tenants, users and residents for trying the platform locally. Idempotent: a
second run keeps what exists and prints the same credentials (kept in .data/, never
committed). It makes outreach's duty rota too, so it lives beside the highest app whose
data it makes, and names outreach's model by name only."""
import hashlib
import json
import secrets
from datetime import datetime, time, timedelta

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection
from django.utils import timezone

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
DEMO_DIR = settings.BASE_DIR / "watch" / "demo"
# What the visitors wrote after their contacts (external id → [(days ago, channel, outcome, note)]).
DEMO_CONTACTS = {
    "kyotanabe": {
        "1": [(9, "visit", "fine", "玄関先で10分ほど話した。膝の痛みは落ち着いているとのこと。"),
              (2, "phone", "no_answer", "")],
        "2": [(3, "visit", "fine", "畑で作業中。野菜をいただいた。")],
        "3": [(5, "visit", "worried", "食欲が落ちているとのこと。ケアマネジャーに伝えた。")],
        "7": [(1, "phone", "fine", "来週の通院の付き添いを長男が行う。")],
        "12": [(12, "visit", "fine", "玄関の段差に手すりがほしいとの希望。")],
    },
    "toyooka": {
        "101": [(4, "visit", "fine", "灯油の配達は済んでいた。変わりなし。")],
        "103": [(2, "visit", "not_home", "不在。隣の方によるとデイサービスの日。")],
        "105": [(6, "phone", "fine", "散歩中に会い、元気そうだった。")],
    },
}


DEMO_EMAILS = {"kyotanabe": {"2": "takahashi-megumi@example.jp"}}  # 髙橋 茂's daughter


def load_demo_residents(schema: str) -> str | None:
    """The tenant's demo residents (watch/demo/<schema>.csv, a municipality's own list),
    and a team such that every step of the default and urgent escalations reaches
    someone: the case worker and the staff member attached to every district, the
    officer to every association, the volunteer assigned to the residents who consented
    (with visits planned), and a duty rota round the clock. Returns the token of a demo
    button (shown once), or None if residents already exist."""
    from watch.actions import do_assign, do_attach_to_area, do_log_contact, do_register_device
    from watch.importing import check_import, do_import_residents
    from watch.models import Area, Resident
    from watch.visits import do_plan_visit

    if Resident.objects.exists():
        return None
    admin = User.objects.get(username="admin")
    data = (DEMO_DIR / f"{schema}.csv").read_bytes()
    bad = set(check_import(data, create_areas=True).error_lines)
    lines = data.split(b"\r\n")
    clean = b"\r\n".join(line for number, line in enumerate(lines, start=1) if number not in bad)
    do_import_residents(actor=admin, data=clean, create_areas=True)
    team = {username: User.objects.get(username=username) for username, _name, _role in DEMO_USERS}
    for area in Area.objects.filter(kind=Area.Kind.DISTRICT):
        do_attach_to_area(actor=admin, user=team["caseworker"], area=area)
        do_attach_to_area(actor=admin, user=team["staff"], area=area)
    for area in Area.objects.filter(kind=Area.Kind.ASSOCIATION):
        do_attach_to_area(actor=admin, user=team["officer"], area=area)
    today = timezone.localdate()
    for number, resident in enumerate(Resident.objects.filter(consent_share_with_volunteers=True).order_by("pk")):
        do_assign(actor=admin, resident=resident, user=team["volunteer"])
        do_plan_visit(actor=team["caseworker"], resident=resident, visitor=team["volunteer"],
                      starts_on=today + timedelta(days=number % 5), ends_on=today + timedelta(days=number % 5 + 2))
    for external_id, contacts in DEMO_CONTACTS.get(schema, {}).items():
        resident = Resident.objects.get(external_id=external_id)
        for days_ago, channel, outcome, note in contacts:
            do_log_contact(actor=team["volunteer"] if channel == "visit" else team["caseworker"], resident=resident,
                           occurred_at=timezone.now() - timedelta(days=days_ago, hours=3), channel=channel,
                           outcome=outcome, note=note)
    # A family's email (the circular board sends there when the household has no LINE).
    for external_id, email in DEMO_EMAILS.get(schema, {}).items():
        Resident.objects.filter(external_id=external_id).update(email=email)
    first = Resident.objects.order_by("pk").first()
    _device, token = do_register_device(actor=admin, resident=first, kind="button", name="玄関の見守りボタン")
    link_demo_line_accounts(schema)
    return token


def demo_line_user_id(schema: str, resident_id: int) -> str:
    """The LINE account of a demo resident (the shape of LINE's user ids: U + 32 hex)."""
    return "U" + hashlib.md5(f"{schema}:{resident_id}".encode(), usedforsecurity=False).hexdigest()


def link_demo_line_accounts(schema: str) -> None:
    """Every other demo resident (the first one included) has linked LINE, as the account-link
    flow would have done; `line_as_resident` then speaks for them to the local fake LINE."""
    from watch.models import Resident

    for number, resident in enumerate(Resident.objects.order_by("pk")):
        if number % 2 == 0:
            Resident.objects.filter(pk=resident.pk).update(line_user_id=demo_line_user_id(schema, resident.pk),
                                                           line_linked_at=timezone.now())


def fill_duty_rota(days: int = 60) -> None:
    """Someone on duty at every hour (the urgent escalation's second step): the staff
    member on weekdays 8:30–17:15, the case worker the rest of the time, from yesterday
    for `days` days. Only the days not yet covered are added, so a later run extends it."""
    # By name: watch must not import outreach (tests/config/test_architecture.py); only
    # this demo command, which fills every app, needs it.
    DutyShift = apps.get_model("outreach", "DutyShift")

    team = {u.username: u for u in User.objects.filter(username__in=["staff", "caseworker"])}
    last = DutyShift.objects.order_by("-ends_at").values_list("ends_at", flat=True).first()
    day = timezone.localdate() - timedelta(days=1)
    shifts = []
    for offset in range(days):
        date = day + timedelta(days=offset)
        midnight = timezone.make_aware(datetime.combine(date, time(0)))
        if last and midnight + timedelta(days=1) <= last:
            continue
        if date.weekday() < 5:
            opens, closes = midnight + timedelta(hours=8, minutes=30), midnight + timedelta(hours=17, minutes=15)
            shifts += [DutyShift(user=team["caseworker"], starts_at=midnight, ends_at=opens),
                       DutyShift(user=team["staff"], starts_at=opens, ends_at=closes),
                       DutyShift(user=team["caseworker"], starts_at=closes, ends_at=midnight + timedelta(days=1))]
        else:
            shifts.append(DutyShift(user=team["caseworker"], starts_at=midnight, ends_at=midnight + timedelta(days=1)))
    DutyShift.objects.bulk_create(shifts)


def credentials_file():
    """Where the demo passwords of this database are kept (never committed)."""
    db = settings.DATABASES["default"]
    return settings.BASE_DIR / ".data" / f"demo-credentials-{db['NAME']}.json"


class Command(BaseCommand):
    help = "Create the demo tenants (kyotanabe, toyooka) and their users; print how to sign in."

    def add_arguments(self, parser):
        parser.add_argument("--no-banner", dest="banner", action="store_false",
                            help="do not print how to sign in (`start` prints it once the web server answers)")

    def handle(self, *args, banner=True, **opts):
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
                token = load_demo_residents(schema)
                if token:
                    creds[f"{schema}:device"] = token
                fill_duty_rota()
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(creds, indent=1))
        path.chmod(0o600)
        if banner:
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
