"""Staff home page: GET / over 10,000 residents and 1,000,000 contact logs, as the administrator and as district staff.

One tenant with 100 blocks in 5 districts (5 x 4 associations x 5 blocks), 10,000
residents, 1,000,000 contact log rows (100 per resident spread over the last year,
inserted with generate_series, about 19,000 of them in the last 7 days), the residents'
summaries and rhythms made consistent with them (about a tenth are overdue), 300 live
concerns (a tenth urgent, opened over the last month) and 20,000 visits over the year,
300 of them planned for today. The administrator (the whole tenant) and a municipal
staff member attached to one district (2,000 residents) request the home page through
django.test.Client in-process; the time is the server's whole handling of the request.
Also counts the queries per request here and in a tenant with 10 residents.
Seeded data is kept between runs (get-or-create by schema name).
"""
import time

from django.db import connection

from bench import harness
from bench.bench_overview import _SUMMARY_SQL
from bench.runner import Metric

SCHEMA = "bench_home"
SMALL_SCHEMA = "bench_home_small"
DISTRICTS, ASSOCIATIONS, BLOCKS = 5, 4, 5
RESIDENTS = 10_000
SMALL_RESIDENTS = 10
CONTACTS_PER_RESIDENT = 100
CONCERNS = 300
VISITS, VISITS_TODAY = 20_000, 300
VOLUNTEERS = 200
REQUESTS = 50
RUNS = 3
ADMIN, STAFF = "bench-admin", "bench-district-staff"
SEED = "seed v2"  # in the tenant's name: a seed of another version is replaced

# 100 contacts a resident over the last 365 days: one every 3.65 days, each moved by up to
# 7 days (pseudo-random) and the whole series shifted per resident, so that about one in
# ten is last seen more than 7.5 days ago (overdue); every 17th is "no answer".
_CONTACTS_SQL = """
    INSERT INTO watch_contactlog (resident_id, occurred_at, channel, outcome, note, created_at)
    SELECT r.id, t.at, CASE WHEN g %% 3 = 0 THEN 'phone' ELSE 'visit' END,
           CASE WHEN g %% 17 = 16 THEN 'no_answer' ELSE 'fine' END,
           CASE WHEN g %% 5 = 0 THEN '玄関先で少し話した。変わりなし' ELSE '' END, t.at
    FROM watch_resident r CROSS JOIN generate_series(0, %(per)s - 1) AS g
    CROSS JOIN LATERAL (SELECT now() - interval '1 minute' * (
        g * 5256 + (r.id * 7919) %% 5256 + (r.id * 7919 + g * 104729) %% 10080) AS at) AS t"""


def _seed_tenant(schema: str, residents: int) -> None:
    """Get-or-create a tenant with areas, residents, contacts, concerns, visits, an
    administrator and a staff member attached to the first district."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from django.contrib.auth.hashers import make_password
    from django.utils import timezone

    from outreach.models import Concern, Severity
    from tenants.accounts.models import User
    from tenants.context import tenant_scope
    from watch.actions import do_create_area
    from watch.models import Area, AreaMembership, ContactLog, Resident, Rhythm, Visit

    expected_contacts = residents * CONTACTS_PER_RESIDENT
    concerns, visits = min(CONCERNS, residents), min(VISITS, residents * 2)

    def complete():
        return (Resident.objects.count() == residents and ContactLog.objects.count() == expected_contacts
                and Concern.objects.count() == concerns and Visit.objects.count() == visits
                and User.objects.filter(username__in=[ADMIN, STAFF]).count() == 2)

    if not harness.tenant_to_seed(schema, complete, name=f"{schema} {SEED}"):
        return
    started = time.perf_counter()
    with tenant_scope(schema):
        admin = User.objects.create_user(username=ADMIN, password=None, role=User.Role.ADMIN, display_name="管理者")
        staff = User.objects.create_user(username=STAFF, password=None, role=User.Role.MUNICIPAL_STAFF,
                                         display_name="地区担当")
        volunteers = User.objects.bulk_create(
            User(username=f"volunteer-{i}", role=User.Role.VOLUNTEER, display_name=f"協力員 {i}",
                 password=make_password(None))
            for i in range(VOLUNTEERS))
        blocks = []
        for d in range(DISTRICTS):
            district = do_create_area(name=f"地区 {d}", kind=Area.Kind.DISTRICT)
            if d == 0:
                AreaMembership.objects.create(user=staff, area=district)
            for a in range(ASSOCIATIONS):
                association = do_create_area(name=f"自治会 {d}-{a}", kind=Area.Kind.ASSOCIATION, parent=district)
                blocks += [do_create_area(name=f"{b + 1}班", kind=Area.Kind.BLOCK, parent=association)
                           for b in range(BLOCKS)]
        now = timezone.now()
        # Blocks in district order, so that the first district holds a fifth of the residents.
        created = Resident.objects.bulk_create(
            [Resident(area=blocks[i * len(blocks) // residents], name=f"住民 {i:05d}",
                      furigana=f"じゅうみん {i:05d}", consent=Resident.Consent.GIVEN)
             for i in range(residents)], batch_size=2000)
        Rhythm.objects.bulk_create(
            [Rhythm(resident=r, alert_at=now + timedelta(days=7, hours=12)) for r in created], batch_size=2000)
        with connection.cursor() as cursor:
            cursor.execute(_CONTACTS_SQL, {"per": CONTACTS_PER_RESIDENT})
            for statement in _SUMMARY_SQL[1:]:  # the summaries, as the overview's bench keeps them
                cursor.execute(statement)
        # Live concerns, mostly about the overdue, opened over the last 30 days.
        overdue = list(Resident.objects.filter(is_overdue=True).order_by("pk")[:concerns])
        taken = {r.pk for r in overdue}
        overdue += [r for r in created if r.pk not in taken][:concerns - len(overdue)]
        made = Concern.objects.bulk_create(
            Concern(resident=r, cause=Concern.Cause.OVERDUE if r.is_overdue else Concern.Cause.WORRIED_CONTACT,
                    severity=Severity.URGENT if i % 10 == 0 else Severity.HIGH,
                    state=Concern.State.ACKNOWLEDGED if i % 3 == 0 else Concern.State.OPEN)
            for i, r in enumerate(overdue))
        for i, concern in enumerate(made):
            concern.opened_at = now - timedelta(minutes=(i * 7919) % (30 * 24 * 60))
        Concern.objects.bulk_update(made, ["opened_at"], batch_size=1000)
        # Visits: VISITS_TODAY planned for today, the others done over the past year.
        tz = ZoneInfo("Asia/Tokyo")
        today = now.astimezone(tz).date()
        rows = []
        for i in range(visits):
            resident, visitor = created[(i * 7919) % residents], volunteers[i % VOLUNTEERS]
            day = today if i < VISITS_TODAY else today - timedelta(days=1 + i % 365)
            rows.append(Visit(resident=resident, visitor=visitor, starts_on=day, ends_on=day,
                              due_at=now + timedelta(days=(day - today).days + 1), planned_by=admin,
                              state=Visit.State.PLANNED if i < VISITS_TODAY else Visit.State.DONE))
        Visit.objects.bulk_create(rows, batch_size=2000)
        harness.vacuum(schema, ["watch_contactlog", "watch_resident", "watch_rhythm", "watch_area", "watch_visit",
                                "outreach_concern"])
    print(f"(seeded {schema}: {residents} residents, {expected_contacts} contacts, {concerns} concerns, "
          f"{visits} visits in {time.perf_counter() - started:.1f} s)", flush=True)


def _get(client) -> float:
    start = time.perf_counter()
    response = client.get("/")
    elapsed = time.perf_counter() - start
    if response.status_code != 200 or b'data-testid="home-overdue"' not in response.content:
        raise RuntimeError(f"GET / answered {response.status_code} without the staff home page")
    return elapsed * 1000


def _query_count(client) -> int:
    from django.test.utils import CaptureQueriesContext

    _get(client)  # a warm host cache (a cold one adds 2 queries every 10 s)
    with CaptureQueriesContext(connection) as captured:
        _get(client)
    return len(captured.captured_queries)


def _contact_scans(schema: str, username: str) -> list[str]:
    """How the page's two statements over contacts read the table (the plans' scan nodes)."""
    from zoneinfo import ZoneInfo

    from django.utils import timezone

    from outreach.views_home import contacts_per_day, contacts_this_week
    from tenants.accounts.models import User
    from tenants.context import tenant_scope
    from watch.access import residents_for_user

    tz = ZoneInfo("Asia/Tokyo")
    with tenant_scope(schema):
        visible = residents_for_user(User.objects.get(username=username))
        week = contacts_this_week(visible, timezone.now(), tz)
        plans = [contacts_per_day(week["contacts"], tz).explain(), week["latest_contacts"].explain()]
    connection.set_schema_to_public()
    return [line.strip(" ->") for plan in plans for line in plan.splitlines() if "on watch_contactlog" in line]


def run() -> list[Metric]:
    _seed_tenant(SCHEMA, RESIDENTS)
    _seed_tenant(SMALL_SCHEMA, SMALL_RESIDENTS)
    print(f"(product: {harness.product_revision()}; {harness.background_load()})", flush=True)
    clients = {ADMIN: harness.signed_in_client(SCHEMA, ADMIN), STAFF: harness.signed_in_client(SCHEMA, STAFF)}
    for client in clients.values():
        for _ in range(3):
            _get(client)  # templates, translations, the host cache
    p95: dict[str, list[float]] = {name: [] for name in clients}
    p50: dict[str, list[float]] = {name: [] for name in clients}
    for i in range(RUNS):
        for name, client in clients.items():
            pct = harness.percentiles([_get(client) for _ in range(REQUESTS)])
            p95[name].append(pct["p95"])
            p50[name].append(pct["p50"])
            print(f"  run {i + 1} as {name:<22} {REQUESTS} requests, p50 {pct['p50']:.1f} p95 {pct['p95']:.1f} "
                  f"max {pct['max']:.1f} ms", flush=True)
    for name in clients:
        print(f"(contacts read as {name}: {'; '.join(_contact_scans(SCHEMA, name))})", flush=True)
        big = _query_count(clients[name])
        small = _query_count(harness.signed_in_client(SMALL_SCHEMA, name))
        print(f"(queries per request as {name}: {RESIDENTS} residents {big}, {SMALL_RESIDENTS} residents {small} → "
              f"{'the same' if big == small else 'NOT the same'})", flush=True)
    connection.set_schema_to_public()
    return [
        Metric.from_runs("home_admin_p95_ms", p95[ADMIN], "ms", target=200, better="lower"),
        Metric.from_runs("home_admin_p50_ms", p50[ADMIN], "ms", target=None, better="lower"),
        Metric.from_runs("home_district_staff_p95_ms", p95[STAFF], "ms", target=200, better="lower"),
        Metric.from_runs("home_district_staff_p50_ms", p50[STAFF], "ms", target=None, better="lower"),
    ]
