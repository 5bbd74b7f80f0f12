"""Overdue detection across 200 tenants / 100,000 residents: an idle pass, and due → marked → on a websocket.

200 tenants with 500 residents each, every resident with the default rhythm (any
contact every 7 days, 12 h grace), seeded with bulk inserts (the wakeup rows are set to
each tenant's earliest alert_at). Measures `watch.tasks.detect_overdue.run()` when
nothing is due, then, with a real Celery worker (2 processes) and beat (detect_overdue
every 3 s) and uvicorn (2 workers) serving websockets, makes 50 residents in 50 tenants
due at known times and measures from each alert_at to the moment a tenant admin's
websocket receives the "resident.overdue" event.
"""
import multiprocessing
import os
import queue as queue_module
import statistics
import time
from datetime import timedelta

from django.db import connection

from bench import harness
from bench.runner import Metric

TENANTS = 200
RESIDENTS_PER_TENANT = 500
PREFIX = "bench_o"
PASS_RUNS = 20
E2E_TENANTS = 50  # one resident due in each, per round
E2E_ROUNDS = 3
E2E_LEAD = 5.0  # seconds from setting alert_at to the first one coming due
E2E_SPREAD = 0.4  # seconds between two residents' due times (50 over 20 s)
E2E_WAIT = 45.0  # after the last due time, give up on events not received
DEFAULT_INTERVAL = timedelta(days=7)
DEFAULT_GRACE = timedelta(hours=12)


def _schemas() -> list[str]:
    return [f"{PREFIX}{i:03d}" for i in range(TENANTS)]


def _seed() -> None:
    """Get-or-create the tenants; bulk-insert residents and rhythms where missing."""
    from django.utils import timezone

    from tenants.context import tenant_scope
    from tenants.wakeups import do_set_wakeup
    from watch.actions import OVERDUE, do_create_area
    from watch.models import Area, Resident, Rhythm

    started = time.perf_counter()
    provisioned = filled = 0
    for schema in _schemas():
        _tenant, created = harness.ensure_tenant(schema)
        provisioned += created
        with tenant_scope(schema):
            if Resident.objects.count() == RESIDENTS_PER_TENANT and Rhythm.objects.count() == RESIDENTS_PER_TENANT:
                continue
            Rhythm.objects.all().delete()
            Resident.objects.all().delete()
            area = Area.objects.filter(parent=None).first() or do_create_area(name="Bench district",
                                                                            kind=Area.Kind.DISTRICT)
            alert_at = timezone.now() + DEFAULT_INTERVAL + DEFAULT_GRACE
            residents = Resident.objects.bulk_create(
                [Resident(area=area, name=f"Resident {i:03d}", next_due_at=alert_at)
                 for i in range(RESIDENTS_PER_TENANT)])
            Rhythm.objects.bulk_create(
                [Rhythm(resident=r, interval=DEFAULT_INTERVAL, grace=DEFAULT_GRACE, alert_at=alert_at)
                 for r in residents])
            do_set_wakeup(schema, OVERDUE, alert_at)
            filled += 1
    if provisioned or filled:
        print(f"(seeded: {provisioned} tenants provisioned, {filled} filled with {RESIDENTS_PER_TENANT} residents, "
              f"in {time.perf_counter() - started:.0f} s)", flush=True)


def _reset() -> None:
    """Put every rhythm that an earlier run made due or overdue back on the clock (as a
    fresh default rhythm), so that nothing is due; the wakeup rows follow."""
    from django.utils import timezone

    from tenants.context import tenant_scope
    from tenants.wakeups import do_set_wakeup
    from watch.actions import OVERDUE
    from watch.models import Resident, Rhythm

    started = time.perf_counter()
    changed = 0
    soon = timezone.now() + timedelta(days=1)
    for schema in _schemas():
        with tenant_scope(schema):
            stale = list(Rhythm.objects.exclude(state=Rhythm.State.OK, alert_at__gt=soon)
                         .values_list("pk", "resident_id"))
            if not stale:
                continue
            alert_at = timezone.now() + DEFAULT_INTERVAL + DEFAULT_GRACE
            Rhythm.objects.filter(pk__in=[pk for pk, _r in stale]).update(
                state=Rhythm.State.OK, overdue_since=None, alert_at=alert_at, last_contact_at=None)
            Resident.objects.filter(pk__in=[r for _pk, r in stale]).update(is_overdue=False, next_due_at=alert_at)
            first = Rhythm.objects.filter(state=Rhythm.State.OK).order_by("alert_at").values_list(
                "alert_at", flat=True).first()
            do_set_wakeup(schema, OVERDUE, first)
            changed += len(stale)
    if changed:
        print(f"(reset {changed} rhythms of earlier runs in {time.perf_counter() - started:.1f} s)", flush=True)


def _admin_session(schema: str) -> str:
    """A session of the tenant's administrator, created as django.contrib.auth would."""
    from django.contrib.sessions.backends.db import SessionStore

    from tenants.accounts.models import User
    from tenants.context import tenant_scope

    with tenant_scope(schema):
        admin = User.objects.get(username="admin")
        session = SessionStore()
        session["_auth_user_id"] = str(admin.pk)
        session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        session["_auth_user_hash"] = admin.get_session_auth_hash()
        session["schema"] = schema
        session.create()
        return session.session_key


# The websocket client process.
def _ws_main(ws_url: str, port: int, tenants: list[tuple[str, str, str]], events, ready, stop) -> None:
    import asyncio

    asyncio.run(_ws_clients(ws_url, port, tenants, events, ready, stop))


async def _ws_clients(ws_url, port, tenants, events, ready, stop) -> None:
    import asyncio
    import json

    from websockets.asyncio.client import connect

    connected = 0

    async def client(schema: str, host: str, cookie: str) -> None:
        nonlocal connected
        uri = f"ws://{host}:{port}/ws/events/"
        async with connect(uri, host=harness.LOOPBACK, port=port, open_timeout=30,
                           additional_headers={"Cookie": f"mimamori_session={cookie}"}) as ws:
            hello = json.loads(await ws.recv())
            if hello.get("type") != "hello":
                raise RuntimeError(f"{schema}: expected hello, got {hello}")
            connected += 1
            if connected == len(tenants):
                ready.set()
            while True:
                try:
                    message = await asyncio.wait_for(ws.recv(), timeout=0.5)
                except TimeoutError:
                    if stop.is_set():
                        return
                    continue
                received = time.time()
                event = json.loads(message)
                if event.get("type") == "resident.overdue":
                    events.put((schema, event["resident"], received))

    results = await asyncio.gather(*(client(*t) for t in tenants), return_exceptions=True)
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    events.put(("__closed__", failures, time.time()))


def _pass_timings() -> list[float]:
    from django.utils import timezone

    from tenants.wakeups import due_schema_names
    from watch.actions import OVERDUE
    from watch.tasks import detect_overdue

    connection.set_schema_to_public()
    detect_overdue.run()  # anything due from elsewhere in the bench database is handled now
    due = due_schema_names(OVERDUE, timezone.now())
    if due:
        print(f"!! still due after a pass: {due}", flush=True)
    runs = []
    for _ in range(PASS_RUNS):
        start = time.perf_counter()
        handled = detect_overdue.run()
        runs.append((time.perf_counter() - start) * 1000)
        if handled:
            print(f"!! a pass that should have found nothing handled {handled} tenant(s)", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM public.tenants_wakeup")
        wakeups = cursor.fetchone()[0]
    print(f"(idle pass over {wakeups} wakeup rows: {', '.join(f'{r:.2f}' for r in runs)} ms)", flush=True)
    return runs


def _make_due(picks: list[tuple[str, int, int]], first_due: float) -> dict[tuple[str, int], float]:
    """Set each picked rhythm's alert_at (and the resident's next_due_at) to a known time
    and lower its tenant's wakeup, as a contact-less rhythm coming due would."""
    from datetime import UTC, datetime

    from tenants.context import tenant_scope
    from tenants.wakeups import do_lower_wakeup
    from watch.actions import OVERDUE
    from watch.models import Resident, Rhythm

    due_at = {}
    for i, (schema, resident_id, rhythm_id) in enumerate(picks):
        due = first_due + i * E2E_SPREAD
        when = datetime.fromtimestamp(due, UTC)
        with tenant_scope(schema):
            Rhythm.objects.filter(pk=rhythm_id).update(alert_at=when)
            Resident.objects.filter(pk=resident_id).update(next_due_at=when)
            do_lower_wakeup(schema, OVERDUE, when)
        due_at[(schema, resident_id)] = due
    return due_at


def _e2e(problems: list[str]) -> tuple[list[float], list[float], list[list[float]]]:
    from tenants.context import tenant_scope
    from watch.models import Rhythm

    schemas = _schemas()[:: TENANTS // E2E_TENANTS][:E2E_TENANTS]
    rhythms = {}
    for schema in schemas:
        with tenant_scope(schema):
            rhythms[schema] = list(Rhythm.objects.order_by("pk").values_list("resident_id", "pk")[:E2E_ROUNDS])
    sessions = [(schema, harness.tenant_domain(schema), _admin_session(schema)) for schema in schemas]
    connection.close()
    p99_runs, p50_runs, all_delays = [], [], []
    with harness.uvicorn_server(workers=2) as server, harness.celery_processes(concurrency=2, beat=True) as celery:
        ctx = multiprocessing.get_context("spawn")
        events, ready, stop = ctx.Queue(), ctx.Event(), ctx.Event()
        client = ctx.Process(target=_ws_main, args=(server.ws_url, server.port, sessions, events, ready, stop),
                             daemon=True)
        client.start()
        try:
            if not ready.wait(timeout=60):
                raise RuntimeError(f"the websocket clients did not all connect: {_drain(events)}")
            time.sleep(4.0)  # beat's first detect_overdue tick comes 3 s after it starts
            for round_no in range(E2E_ROUNDS):
                picks = [(schema, *rhythms[schema][round_no]) for schema in schemas]
                due_at = _make_due(picks, time.time() + E2E_LEAD)
                connection.close()
                deadline = max(due_at.values()) + E2E_WAIT
                received: dict[tuple[str, int], float] = {}
                while len(received) < len(due_at) and time.time() < deadline:
                    try:
                        schema, resident, at = events.get(timeout=0.5)
                    except queue_module.Empty:
                        continue
                    if schema == "__closed__":
                        raise RuntimeError(f"websocket clients closed early: {resident}")
                    if (schema, resident) in due_at:
                        received.setdefault((schema, resident), at)
                delays = [received[k] - due for k, due in due_at.items() if k in received]
                missing = len(due_at) - len(received)
                early = [d for d in delays if d < 0]
                pct = harness.percentiles(delays)
                print(f"  round {round_no + 1}: {len(delays)}/{len(due_at)} events received; delay from alert_at "
                      f"p50 {pct.get('p50', float('nan')):.2f} s, p99 {pct.get('p99', float('nan')):.2f} s, "
                      f"max {pct.get('max', float('nan')):.2f} s, min {min(delays, default=float('nan')):.2f} s",
                      flush=True)
                if missing:
                    problems.append(f"round {round_no + 1}: {missing} of {len(due_at)} residents' overdue events "
                                    f"not received within {E2E_WAIT:.0f} s of the last due time")
                if early:
                    problems.append(f"round {round_no + 1}: {len(early)} events arrived before alert_at")
                # A missing event counts as the wait we gave it: the p99 cannot look better for it.
                delays += [E2E_WAIT] * missing
                p99_runs.append(harness.percentiles(delays)["p99"])
                p50_runs.append(harness.percentiles(delays)["p50"])
                all_delays.append(delays)
                time.sleep(2.0)
        finally:
            stop.set()
            client.join(timeout=10)
            if client.is_alive():
                client.kill()
        for product in (server, celery["worker"], celery["beat"]):
            lines = product.error_lines()
            if lines:
                problems.append(f"{product.name} log: {len(lines)} error line(s), first: {lines[0][:400]}")
                print(f"({product.name} log {product.log_path}: {len(lines)} error lines)", flush=True)
    return p99_runs, p50_runs, all_delays


def _drain(events) -> list:
    out = []
    while True:
        try:
            out.append(events.get_nowait())
        except queue_module.Empty:
            return out


def run() -> list[Metric]:
    _seed()
    _reset()
    with connection.cursor() as cursor:
        for schema in _schemas():
            cursor.execute(f'VACUUM (ANALYZE) "{schema}"."watch_rhythm"')
        cursor.execute("VACUUM (ANALYZE) public.tenants_wakeup")
    print(f"(product: {harness.product_revision()})", flush=True)
    problems: list[str] = []
    pass_runs = _pass_timings()
    p99_runs, p50_runs, _delays = _e2e(problems)
    for problem in problems:
        print(f"!! {problem}", flush=True)
    print(f"(median over rounds: p50 {statistics.median(p50_runs):.2f} s)", flush=True)
    return [
        Metric.from_runs("detection_pass_nothing_due_ms", pass_runs, "ms", target=100, better="lower"),
        Metric.from_runs("overdue_marked_and_published_p99_s", p99_runs, "s", target=10, better="lower"),
        Metric.from_runs("overdue_marked_and_published_p50_s", p50_runs, "s", target=None, better="lower"),
    ]


if os.environ.get("BENCH_OVERDUE_TENANTS"):  # a smaller run while developing the benchmark
    TENANTS = int(os.environ["BENCH_OVERDUE_TENANTS"])
    E2E_TENANTS = min(E2E_TENANTS, TENANTS)
