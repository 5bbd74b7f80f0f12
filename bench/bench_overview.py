"""Area overview page: GET /watch/ for municipal staff over 10,000 residents and 1,000,000 contact logs.

One tenant with 100 blocks in 5 districts (5 x 4 associations x 5 blocks), 10,000
residents, 1,000,000 contact log rows (100 per resident, inserted with generate_series),
and the residents' summaries (last_contact_at, last_outcome, next_due_at, is_overdue) and
rhythms made consistent with them. A municipal staff member attached to no area (sees
the whole municipality) requests the first page and the first page of one district
through django.test.Client in-process; the time is the server's whole handling of the
request. Also counts the queries per request here and in a tenant with 10 residents.
Seeded data is kept between runs (get-or-create by schema name).
"""
import time

from django.db import connection

from bench import harness
from bench.runner import Metric

SCHEMA = "bench_overview"
SMALL_SCHEMA = "bench_overview_small"
DISTRICTS, ASSOCIATIONS, BLOCKS = 5, 4, 5
RESIDENTS = 10_000
SMALL_RESIDENTS = 10
CONTACTS_PER_RESIDENT = 100
REQUESTS = 50
RUNS = 3
STAFF = "bench-staff"
SEED = "seed v2"  # in the tenant's name: a seed of another version is replaced

_SUMMARY_SQL = [
    # 100 contacts a resident, one a day, the latest 1 to 8 days ago: those last seen more
    # than 7.5 days ago are overdue (about 7 %). Every 17th contact is "no answer".
    """INSERT INTO watch_contactlog (resident_id, occurred_at, channel, outcome, note, created_at)
       SELECT r.id, t.at, CASE WHEN g %% 3 = 0 THEN 'phone' ELSE 'visit' END,
              CASE WHEN g %% 17 = 16 THEN 'no_answer' ELSE 'fine' END, '', t.at
       FROM watch_resident r CROSS JOIN generate_series(0, %(per)s - 1) AS g
       CROSS JOIN LATERAL (SELECT now() - interval '1 day' * (1 + g + (r.id * 7919 %% 700) / 100.0) AS at) AS t""",
    # The summary the contact action keeps: the latest contact (any outcome).
    """UPDATE watch_resident r SET last_contact_at = l.occurred_at, last_outcome = l.outcome
       FROM (SELECT DISTINCT ON (resident_id) resident_id, occurred_at, outcome FROM watch_contactlog
             ORDER BY resident_id, occurred_at DESC, id DESC) AS l
       WHERE r.id = l.resident_id""",
    # The rhythm moves with the latest sign of life (no_answer is not one).
    """UPDATE watch_rhythm h SET last_contact_at = l.at, alert_at = l.at + h."interval" + h.grace,
              state = CASE WHEN l.at + h."interval" + h.grace <= now() THEN 'overdue' ELSE 'ok' END,
              overdue_since = CASE WHEN l.at + h."interval" + h.grace <= now()
                                   THEN l.at + h."interval" + h.grace END
       FROM (SELECT resident_id, max(occurred_at) AS at FROM watch_contactlog
             WHERE outcome <> 'no_answer' GROUP BY resident_id) AS l
       WHERE h.resident_id = l.resident_id""",
    """UPDATE watch_resident r SET next_due_at = h.due, is_overdue = h.overdue
       FROM (SELECT resident_id, min(alert_at) AS due, bool_or(state = 'overdue') AS overdue
             FROM watch_rhythm GROUP BY resident_id) AS h
       WHERE r.id = h.resident_id""",
]


def _seed_tenant(schema: str, residents: int) -> dict:
    """Get-or-create a tenant with areas, residents, contacts and a staff member.
    Returns {"district": id of the first district}."""
    from datetime import timedelta

    from django.utils import timezone

    from tenants.accounts.models import User
    from tenants.context import tenant_scope
    from tenants.wakeups import do_set_wakeup
    from watch.actions import OVERDUE, do_create_area
    from watch.models import Area, ContactLog, Resident, Rhythm

    expected_contacts = residents * CONTACTS_PER_RESIDENT

    def complete():
        return (Resident.objects.count() == residents and ContactLog.objects.count() == expected_contacts
                and User.objects.filter(username=STAFF).exists())

    if harness.tenant_to_seed(schema, complete, name=f"{schema} {SEED}"):
        started = time.perf_counter()
        with tenant_scope(schema):
            User.objects.create_user(username=STAFF, password=None, role=User.Role.MUNICIPAL_STAFF,
                                     display_name="Bench staff")
            blocks = []
            for d in range(DISTRICTS):
                district = do_create_area(name=f"District {d}", kind=Area.Kind.DISTRICT)
                for a in range(ASSOCIATIONS):
                    association = do_create_area(name=f"Association {d}-{a}", kind=Area.Kind.ASSOCIATION,
                                                 parent=district)
                    blocks += [do_create_area(name=f"Block {d}-{a}-{b}", kind=Area.Kind.BLOCK, parent=association)
                               for b in range(BLOCKS)]
            now = timezone.now()
            created_residents = Resident.objects.bulk_create(
                [Resident(area=blocks[i % len(blocks)], name=f"住民 {i:05d}", furigana=f"じゅうみん {i:05d}",
                          consent=Resident.Consent.GIVEN) for i in range(residents)], batch_size=2000)
            Rhythm.objects.bulk_create(
                [Rhythm(resident=r, alert_at=now + timedelta(days=7, hours=12)) for r in created_residents],
                batch_size=2000)
            with connection.cursor() as cursor:
                for statement in _SUMMARY_SQL:
                    cursor.execute(statement, {"per": CONTACTS_PER_RESIDENT})
            first = (Rhythm.objects.filter(state=Rhythm.State.OK).order_by("alert_at")
                     .values_list("alert_at", flat=True).first())
            do_set_wakeup(schema, OVERDUE, first)
            with connection.cursor() as cursor:
                for table in ("watch_contactlog", "watch_resident", "watch_rhythm", "watch_area"):
                    cursor.execute(f'VACUUM (ANALYZE) "{schema}"."{table}"')
        print(f"(seeded {schema}: {residents} residents, {expected_contacts} contacts in "
              f"{time.perf_counter() - started:.1f} s)", flush=True)
    with tenant_scope(schema):
        district = Area.objects.filter(kind=Area.Kind.DISTRICT).order_by("pk").first()
        overdue = Resident.objects.filter(is_overdue=True).count()
    return {"district": district.pk, "overdue": overdue}


def _get(client, url: str) -> float:
    start = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}")
    return elapsed * 1000


def _query_counts(client, urls: list[str]) -> dict[str, int]:
    from django.test.utils import CaptureQueriesContext

    counts = {}
    for url in urls:
        with CaptureQueriesContext(connection) as captured:
            _get(client, url)
        counts[url] = len(captured.captured_queries)
    return counts


def run() -> list[Metric]:
    big = _seed_tenant(SCHEMA, RESIDENTS)
    small = _seed_tenant(SMALL_SCHEMA, SMALL_RESIDENTS)
    print(f"(product: {harness.product_revision()}; {big['overdue']} of {RESIDENTS} residents overdue)", flush=True)
    client, small_client = harness.signed_in_client(SCHEMA, STAFF), harness.signed_in_client(SMALL_SCHEMA, STAFF)
    urls = ["/watch/", f"/watch/?area={big['district']}"]
    small_urls = ["/watch/", f"/watch/?area={small['district']}"]
    for url in urls * 3:
        _get(client, url)  # templates, translations, the host cache
    p95_runs, p50_runs = [], []
    by_url: dict[str, list[float]] = {url: [] for url in urls}
    for i in range(RUNS):
        timings = []
        for n in range(REQUESTS):
            url = urls[n % len(urls)]
            elapsed = _get(client, url)
            timings.append(elapsed)
            by_url[url].append(elapsed)
        pct = harness.percentiles(timings)
        p95_runs.append(pct["p95"])
        p50_runs.append(pct["p50"])
        print(f"  run {i + 1}: {REQUESTS} requests, p50 {pct['p50']:.1f} p95 {pct['p95']:.1f} max {pct['max']:.1f} ms",
              flush=True)
    for url, timings in by_url.items():
        pct = harness.percentiles(timings)
        print(f"  {url:<22} p50 {pct['p50']:.1f} p95 {pct['p95']:.1f} ms over {len(timings)}", flush=True)
    for url in small_urls:
        _get(small_client, url)  # count both with a warm host cache (a cold one adds 2 queries every 10 s)
    big_counts = _query_counts(client, urls)
    small_counts = _query_counts(small_client, small_urls)
    same = list(big_counts.values()) == list(small_counts.values())
    print(f"(queries per request: {RESIDENTS} residents {list(big_counts.values())}, {SMALL_RESIDENTS} residents "
          f"{list(small_counts.values())} for [first page, one district] → "
          f"{'the same' if same else 'NOT the same'})", flush=True)
    connection.set_schema_to_public()
    return [
        Metric.from_runs("overview_p95_ms", p95_runs, "ms", target=200, better="lower"),
        Metric.from_runs("overview_p50_ms", p50_runs, "ms", target=None, better="lower"),
    ]
