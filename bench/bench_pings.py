"""Device pings over HTTP: GET /ping/<token> from 5,000 registered devices (uvicorn, 2 workers).

One tenant, 5,000 residents with one button each, registered with do_register_device.
Requests go round the devices in order, and the load generator never sends a device's
next ping within 1.2 s of its last one (the product answers 429 to more than one signal
a second; any 429 is counted and reported). Measures the closed-loop maximum, the
open-loop latency at 1,000 pings/s, and a 60 s burst at 10x a normal rate (normal: every
device once a minute, 83/s; burst 833/s) after which every device's last_signal_at must
be no earlier than the send time of its last answered ping (nothing lost).
"""
import os
import statistics
import time

from django.db import connection

from bench import harness
from bench.harness import LoadPlan, Req
from bench.runner import Metric

SCHEMA = "bench_pings"
DEVICES = 5_000
RUNS = 3
# Vacuumed before each run: autovacuum is off on this machine's PostgreSQL.
TABLES = ["watch_device", "watch_rhythm"]
WORKERS = int(os.environ.get("BENCH_WORKERS", 2))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", 32))
MAX_SECONDS = 15
RATE = 1_000
RATE_SECONDS = 20
MIN_GAP = 1.2  # the product throttles at 1 s per device; the margin absorbs queueing jitter
NORMAL_RATE = DEVICES / 60  # every device once a minute
BURST_RATE = 10 * NORMAL_RATE
BURST_SECONDS = int(os.environ.get("BENCH_BURST_SECONDS", 60))


def _seed() -> list[tuple[int, str]]:
    """Get-or-create the tenant and its devices; (device id, token) for each device.

    Devices are registered with do_register_device once. Only token hashes are stored, so
    on every run the bench gives each device a fresh token (a bulk update of token_hash)."""
    import secrets

    from tenants.accounts.models import User, hash_token
    from tenants.context import tenant_scope
    from watch.actions import do_create_area, do_create_resident, do_register_device
    from watch.models import Area, Device

    if harness.tenant_to_seed(SCHEMA, lambda: Device.objects.filter(revoked_at=None).count() == DEVICES):
        started = time.perf_counter()
        with tenant_scope(SCHEMA):
            admin = User.objects.get(username="admin")
            area = do_create_area(name="Bench district", kind=Area.Kind.DISTRICT)
            for i in range(DEVICES):
                resident = do_create_resident(area=area, name=f"Resident {i:04d}")
                do_register_device(actor=admin, resident=resident, kind=Device.Kind.BUTTON, name=f"button {i}")
        print(f"(seeded {SCHEMA}: {DEVICES} residents with a button each in {time.perf_counter() - started:.1f} s)",
              flush=True)
    with tenant_scope(SCHEMA):
        devices = list(Device.objects.filter(revoked_at=None).order_by("pk"))
        tokens = [secrets.token_urlsafe(24) for _ in devices]
        for device, token in zip(devices, tokens, strict=True):
            device.token_hash = hash_token(token)
        Device.objects.bulk_update(devices, ["token_hash"], batch_size=1000)
    return [(device.pk, token) for device, token in zip(devices, tokens, strict=True)]


def _check_nothing_lost(devices: list[tuple[int, str]], last_ok: list[float | None]) -> tuple[int, int, int]:
    """(devices pinged, devices whose last_signal_at is earlier than their last answered
    ping's send time, devices whose own rhythm did not move with it)."""
    from datetime import UTC, datetime, timedelta

    from tenants.context import tenant_scope
    from watch.models import Device, Rhythm

    with tenant_scope(SCHEMA):
        signals = dict(Device.objects.values_list("pk", "last_signal_at"))
        rhythms = dict(Rhythm.objects.filter(device__isnull=False).values_list("device_id", "last_contact_at"))
    pinged = stale = rhythm_stale = 0
    for (device_id, _token), sent in zip(devices, last_ok, strict=True):
        if sent is None:
            continue
        pinged += 1
        # The server stamps the ping after the client sent it; allow 1 ms of rounding.
        sent_at = datetime.fromtimestamp(sent, UTC) - timedelta(milliseconds=1)
        if signals.get(device_id) is None or signals[device_id] < sent_at:
            stale += 1
        if rhythms.get(device_id) is None or rhythms[device_id] < sent_at:
            rhythm_stale += 1
    return pinged, stale, rhythm_stale


def run() -> list[Metric]:
    devices = _seed()
    connection.set_schema_to_public()
    print(f"(product: {harness.product_revision()}; {harness.background_load()})", flush=True)
    plan = LoadPlan(url="", host=harness.tenant_domain(SCHEMA),
                    requests=[Req("GET", f"/ping/{token}") for _pk, token in devices],
                    expected=(200,), min_gap_s=MIN_GAP, timeout_s=60, track_items=True)
    problems: list[str] = []
    max_runs, p99_runs, p50_runs = [], [], []
    with harness.uvicorn_server(workers=WORKERS) as server:
        plan.url = server.url
        print(f"(uvicorn --workers {WORKERS} on {server.url}; closed loop C={CONCURRENCY} for {MAX_SECONDS} s; "
              f"open loop {RATE}/s for {RATE_SECONDS} s; burst {BURST_RATE:.0f}/s for {BURST_SECONDS} s)", flush=True)
        for i in range(RUNS):
            harness.vacuum(SCHEMA, TABLES)
            result = harness.max_throughput(plan, concurrency=CONCURRENCY, duration_s=MAX_SECONDS, server=server)
            plan.start_index = result.next_index
            print(f"  max run {i + 1}: {result.summary()}; dead rows after: {harness.dead_rows(SCHEMA, TABLES)}",
                  flush=True)
            harness.report_unexpected(f"max run {i + 1}", result, problems)
            max_runs.append(result.throughput)
        for i in range(RUNS):
            harness.vacuum(SCHEMA, TABLES)
            result = harness.fixed_rate(plan, rate=RATE, duration_s=RATE_SECONDS, max_in_flight=64, server=server)
            plan.start_index = result.next_index
            print(f"  rate run {i + 1}: {result.summary()}; dead rows after: {harness.dead_rows(SCHEMA, TABLES)}",
                  flush=True)
            harness.report_unexpected(f"rate run {i + 1}", result, problems)
            p99_runs.append(result.latency_ms["p99"])
            p50_runs.append(result.latency_ms["p50"])
        harness.vacuum(SCHEMA, TABLES)
        burst = harness.fixed_rate(plan, rate=BURST_RATE, duration_s=BURST_SECONDS, max_in_flight=64, warmup_s=0,
                                   server=server)
        print(f"  burst: {burst.summary()}; dead rows after: {harness.dead_rows(SCHEMA, TABLES)}", flush=True)
        harness.report_unexpected("burst", burst, problems)
        errors = server.error_lines()
    pinged, stale, rhythm_stale = _check_nothing_lost(devices, burst.item_last_ok)
    all_ok = burst.statuses.get(200, 0) == burst.sent and not burst.errors
    print(f"(burst at {BURST_RATE:.0f}/s for {BURST_SECONDS} s = 10 x normal {NORMAL_RATE:.0f}/s: {burst.sent} sent, "
          f"{burst.statuses.get(200, 0)} answered 200 ({'every one' if all_ok else 'NOT every one'}), "
          f"429s {burst.throttled_429}; {pinged} devices pinged, {stale} with last_signal_at older than their last "
          f"answered ping, {rhythm_stale} whose device rhythm did not move)", flush=True)
    if stale or rhythm_stale or not all_ok:
        problems.append(f"burst: {burst.sent - burst.statuses.get(200, 0)} pings not answered 200, {stale} devices "
                        f"with a lost signal, {rhythm_stale} rhythms not moved")
    if errors:
        problems.append(f"server log: {len(errors)} error line(s), first: {errors[0][:300]}")
    for problem in problems:
        print(f"!! {problem}", flush=True)
    print(f"(median p50 at {RATE}/s: {statistics.median(p50_runs):.1f} ms)", flush=True)
    return [
        Metric.from_runs("pings_per_s_max", max_runs, "per_s", target=3000, better="higher"),
        Metric.from_runs(f"pings_p99_ms_at_{RATE}_per_s", p99_runs, "ms", target=50, better="lower"),
        Metric.from_runs(f"pings_p50_ms_at_{RATE}_per_s", p50_runs, "ms", target=None, better="lower"),
        Metric.from_runs("pings_burst_p99_ms", [burst.latency_ms.get("p99", float("nan"))], "ms", target=None,
                         better="lower"),
    ]
