"""Check-ins as the volunteers' phone page sends them (watch/static/watch/checkin.js):
POST /api/v1/contacts/ with the signed-in session's cookie, the CSRF cookie and header,
and the page's Origin (uvicorn, 2 workers).

One tenant with 1,000 residents and 50 volunteers, each assigned 20 residents who gave
consent to share with volunteers; each volunteer has a signed-in session. Every request
posts a visit with outcome "fine" and a fresh idempotency key for a resident the
volunteer can see. Measures the closed-loop maximum and the open-loop latency at 250 requests/s, then
checks that the ContactLog rows created equal the 201 responses (nothing lost or doubled).
"""
import os
import statistics
import time

from django.db import connection

from bench import harness
from bench.harness import LoadPlan, Req
from bench.runner import Metric

SCHEMA = "bench_contacts"
RESIDENTS = 1_000
VOLUNTEERS = 50
PER_VOLUNTEER = RESIDENTS // VOLUNTEERS
RUNS = 3
# Vacuumed before each run: autovacuum is off on this machine's PostgreSQL.
TABLES = ["watch_rhythm", "watch_resident", "watch_contactlog", "watch_assignment"]
WORKERS = int(os.environ.get("BENCH_WORKERS", 2))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", 32))
MAX_SECONDS = 15
RATE = 250
RATE_SECONDS = 20


def _seed() -> list[Req]:
    """Get-or-create the tenant and its people; the request list, one per (volunteer, resident)."""
    from tenants.accounts.models import User
    from tenants.context import tenant_scope
    from watch.actions import do_assign, do_create_area, do_create_resident, do_record_consent
    from watch.models import Area, Assignment, Resident

    if harness.tenant_to_seed(SCHEMA, lambda: Resident.objects.count() == RESIDENTS
                              and Assignment.objects.count() == RESIDENTS):
        started = time.perf_counter()
        with tenant_scope(SCHEMA):
            admin = User.objects.get(username="admin")
            area = do_create_area(name="Bench district", kind=Area.Kind.DISTRICT)
            for v in range(VOLUNTEERS):
                volunteer = User.objects.create_user(username=f"volunteer{v:02d}", password=None,
                                                     role=User.Role.VOLUNTEER, display_name=f"Volunteer {v}")
                for j in range(PER_VOLUNTEER):
                    resident = do_create_resident(area=area, name=f"Resident {v:02d}-{j:02d}")
                    do_record_consent(actor=admin, resident=resident, status=Resident.Consent.GIVEN,
                                      share_with_volunteers=True)
                    do_assign(actor=admin, resident=resident, user=volunteer)
        print(f"(seeded {SCHEMA}: {RESIDENTS} residents, {VOLUNTEERS} volunteers in "
              f"{time.perf_counter() - started:.1f} s)", flush=True)
    with tenant_scope(SCHEMA):
        pairs = {}
        for user_id, resident_id in (Assignment.objects.filter(user__role=User.Role.VOLUNTEER)
                                     .order_by("user_id", "resident_id").values_list("user_id", "resident_id")):
            pairs.setdefault(user_id, []).append(resident_id)
        headers = {user.pk: _page_headers(user) for user in User.objects.filter(pk__in=pairs)}
    # Interleaved: consecutive requests come from different volunteers about different residents.
    requests = []
    for j in range(PER_VOLUNTEER):
        for user_id in sorted(pairs):
            requests.append(Req("POST", "/api/v1/contacts/", headers=headers[user_id],
                                json={"resident": pairs[user_id][j], "channel": "visit", "outcome": "fine"}))
    return requests


def _page_headers(user) -> dict[str, str]:
    """What the phone page sends: a session signed in as django.contrib.auth.login makes
    it (bound to the tenant's schema), its CSRF cookie and header, and the page's Origin."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.middleware.csrf import _get_new_csrf_string

    session = SessionStore()
    session.update({SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: settings.AUTHENTICATION_BACKENDS[0],
                    HASH_SESSION_KEY: user.get_session_auth_hash(), "schema": SCHEMA})
    session.set_expiry(24 * 60 * 60)
    session.create()
    csrf = _get_new_csrf_string()
    return {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}; {settings.CSRF_COOKIE_NAME}={csrf}",
            "X-CSRFToken": csrf, "Origin": f"http://{harness.tenant_domain(SCHEMA)}"}


def _contact_keys_since(since) -> list[str]:
    from tenants.context import tenant_scope
    from watch.models import ContactLog

    with tenant_scope(SCHEMA):
        return [str(k) for k in ContactLog.objects.filter(created_at__gte=since)
                .values_list("idempotency_key", flat=True)]


def run() -> list[Metric]:
    from django.utils import timezone

    requests = _seed()
    connection.set_schema_to_public()
    print(f"(product: {harness.product_revision()}; {harness.background_load()})", flush=True)
    plan = LoadPlan(url="", host=harness.tenant_domain(SCHEMA), requests=requests, expected=(201,),
                    uuid_field="idempotency_key", created_status=201, timeout_s=60)
    problems: list[str] = []
    max_runs, p99_runs, p50_runs = [], [], []
    created_keys: list[str] = []
    count_201 = 0
    since = timezone.now()
    with harness.uvicorn_server(workers=WORKERS) as server:
        plan.url = server.url
        print(f"(uvicorn --workers {WORKERS} on {server.url}; closed loop C={CONCURRENCY} for {MAX_SECONDS} s; "
              f"open loop {RATE}/s for {RATE_SECONDS} s)", flush=True)
        for i in range(RUNS):
            harness.vacuum(SCHEMA, TABLES)
            result = harness.max_throughput(plan, concurrency=CONCURRENCY, duration_s=MAX_SECONDS, server=server)
            print(f"  max run {i + 1}: {result.summary()}; dead rows after: {harness.dead_rows(SCHEMA, TABLES)}",
                  flush=True)
            harness.report_unexpected(f"max run {i + 1}", result, problems)
            max_runs.append(result.throughput)
            created_keys += result.created_keys
            count_201 += result.statuses.get(201, 0) + result.warmup_statuses.get(201, 0)
        for i in range(RUNS):
            harness.vacuum(SCHEMA, TABLES)
            result = harness.fixed_rate(plan, rate=RATE, duration_s=RATE_SECONDS, max_in_flight=64, server=server)
            print(f"  rate run {i + 1}: {result.summary()}; dead rows after: {harness.dead_rows(SCHEMA, TABLES)}",
                  flush=True)
            harness.report_unexpected(f"rate run {i + 1}", result, problems)
            p99_runs.append(result.latency_ms["p99"])
            p50_runs.append(result.latency_ms["p50"])
            created_keys += result.created_keys
            count_201 += result.statuses.get(201, 0) + result.warmup_statuses.get(201, 0)
        errors = server.error_lines()
    if errors:
        problems.append(f"server log: {len(errors)} error line(s), first: {errors[0][:300]}")
        print(f"!! server log has {len(errors)} error line(s):\n" + "\n".join(e[:300] for e in errors[:5]))

    # Nothing lost or doubled: the rows created since the start are exactly the 201s.
    db_keys = _contact_keys_since(since)
    sent, stored = set(created_keys), set(db_keys)
    print(f"(verification: {count_201} responses 201, {len(created_keys)} keys collected, {len(db_keys)} ContactLog "
          f"rows created; rows without a 201: {len(stored - sent)}, 201s without a row: {len(sent - stored)}, "
          f"duplicate keys in rows: {len(db_keys) - len(stored)})", flush=True)
    if not (count_201 == len(db_keys) == len(stored) and sent == stored):
        problems.append(f"ContactLog rows ({len(db_keys)}) do not match the 201 responses ({count_201})")
    for problem in problems:
        print(f"!! {problem}", flush=True)
    print(f"(median p50 at {RATE}/s: {statistics.median(p50_runs):.1f} ms)", flush=True)
    return [
        Metric.from_runs("contacts_per_s_max", max_runs, "per_s", target=500, better="higher"),
        Metric.from_runs(f"contacts_p99_ms_at_{RATE}_per_s", p99_runs, "ms", target=50, better="lower"),
        Metric.from_runs(f"contacts_p50_ms_at_{RATE}_per_s", p50_runs, "ms", target=None, better="lower"),
    ]
