"""Answers arriving at 1,000/s over the answer link, with a live-progress viewer (uvicorn, 2 workers).

One tenant with 10,000 residents. Each run opens a new safety check asking all of them,
then a separate load process POSTs the answer link's form (/r/a/<token>/, answer=fine,
the CSRF cookie and header, as the page's button does) open loop at BENCH_RATE (1,000)
a second for BENCH_SECONDS (10), each token once; at the same time a staff member's
websocket (/ws/safety/<id>/) in another process records every progress message.

Checked and reported per run: every 303 (the answer recorded) is an answered ask and nothing else is
(no answer lost or doubled); the live progress's lag, the longest time any answer
(its answered_at) waited before a message showed a count that includes it; and how fast
the answers are then applied as contacts (outreach.answers.do_apply_answers in this
process, on 2,000 of the backlog the run left; the check is then dropped). No Celery worker runs during the load: the
apply tasks queue up in Redis and are purged afterwards; applying is measured alone.
"""
import asyncio
import multiprocessing
import os
import statistics
import time
import urllib.parse

from django.db import connection

from bench import harness
from bench.runner import Metric

SCHEMA = "bench_answers"
RESIDENTS = int(os.environ.get("BENCH_RESIDENTS", 10_000))
RATE = int(os.environ.get("BENCH_RATE", 1_000))
SECONDS = int(os.environ.get("BENCH_SECONDS", 10))
WORKERS = int(os.environ.get("BENCH_WORKERS", 2))
MAX_IN_FLIGHT = int(os.environ.get("BENCH_IN_FLIGHT", 256))
RUNS = 3
APPLY_SAMPLE = int(os.environ.get("BENCH_APPLY_SAMPLE", 2_000))
TABLES = ["outreach_ask", "outreach_safetycheck", "watch_resident", "watch_contactlog"]


def _seed() -> None:
    from tenants.context import tenant_scope
    from watch.actions import do_create_area
    from watch.models import Area, Resident

    if harness.tenant_to_seed(SCHEMA, lambda: Resident.objects.count() == RESIDENTS):
        started = time.perf_counter()
        with tenant_scope(SCHEMA):
            areas = [do_create_area(name=f"第{i + 1}地区", kind=Area.Kind.DISTRICT) for i in range(10)]
            Resident.objects.bulk_create(
                [Resident(name=f"住民 {i:05d}", area=areas[i % len(areas)], mobile_phone=f"090{i:08d}")
                 for i in range(RESIDENTS)], batch_size=2000)
        print(f"(seeded {SCHEMA}: {RESIDENTS} residents in {time.perf_counter() - started:.1f} s)", flush=True)


def _new_check(run: int) -> tuple[int, list[str]]:
    """A safety check asking every resident, open; its answer links' tokens."""
    from django.utils import timezone

    from outreach.answers import answer_token
    from outreach.models import Ask, SafetyCheck
    from tenants.context import tenant_scope
    from watch.models import Resident

    with tenant_scope(SCHEMA):
        check = SafetyCheck.objects.create(title=f"訓練 {run}", question="ご無事ですか？", state=SafetyCheck.State.OPEN,
                                           deadline=timezone.now() + timezone.timedelta(hours=1), channels=["sms"],
                                           started_at=timezone.now())
        Ask.objects.bulk_create([Ask(kind=Ask.Kind.SAFETY, safety_check=check, resident_id=pk, area_id=area,
                                     state=Ask.State.WAITING)
                                 for pk, area in Resident.objects.values_list("pk", "area_id")], batch_size=5000)
        tokens = [answer_token(ask) for ask in Ask.objects.filter(safety_check=check).order_by("?")]
    connection.set_schema_to_public()
    return check.pk, tokens


def _staff_session() -> str:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from tenants.accounts.models import User
    from tenants.context import tenant_scope

    with tenant_scope(SCHEMA):
        user = User.objects.get(username="admin")
        session = SessionStore()
        session.update({SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: settings.AUTHENTICATION_BACKENDS[0],
                        HASH_SESSION_KEY: user.get_session_auth_hash(), "schema": SCHEMA})
        session.set_expiry(24 * 60 * 60)
        session.create()
        return session.session_key


def _answered(check_id: int) -> list[float]:
    """The answered_at of every answered ask of the check, as epoch seconds, in order."""
    from outreach.models import Ask
    from tenants.context import tenant_scope

    with tenant_scope(SCHEMA):
        times = [t.timestamp() for t in Ask.objects.filter(safety_check_id=check_id, answered_at__isnull=False)
                 .order_by("answered_at").values_list("answered_at", flat=True)]
    connection.set_schema_to_public()
    return times


def _lag(answered: list[float], seen: list[tuple[float, int]], end: float) -> tuple[float, int]:
    """The longest an answer waited to be counted by the viewer, and how many never were
    (counted as waiting until `end`). The viewer's counts only grow."""
    worst, index, missing = 0.0, 0, 0
    seen = sorted(seen)
    for k, at in enumerate(answered, start=1):
        while index < len(seen) and seen[index][1] < k:
            index += 1
        if index < len(seen):
            shown = seen[index][0]
        else:
            shown, missing = end, missing + 1
        worst = max(worst, shown - at)
    return worst, missing


# The load process: open loop, one form POST per token.
def _load_main(queue, url: str, host: str, tokens: list[str], csrf: str, rate: float, seconds: float,
               max_in_flight: int) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    queue.put(asyncio.run(_load(url, host, tokens, csrf, rate, seconds, max_in_flight)))


async def _load(url, host, tokens, csrf, rate, seconds, max_in_flight) -> dict:
    from collections import Counter

    connections = harness._Connections(url, max_in_flight)
    body = urllib.parse.urlencode({"answer": "fine"}).encode()
    head = (f"Host: {host}\r\nCookie: mimamori_csrftoken={csrf}\r\nX-CSRFToken: {csrf}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    statuses: Counter = Counter()
    errors: Counter = Counter()
    latencies: list[float] = []
    ok_tokens: list[str] = []
    total = min(len(tokens), int(rate * seconds))

    async def send(token: str, due: float) -> None:
        raw = f"POST /r/a/{token}/ HTTP/1.1\r\n".encode() + head + body
        try:
            async with asyncio.timeout(60):
                status = await connections.request(raw)
        except Exception as exc:
            errors[type(exc).__name__] += 1
            return
        statuses[status] += 1
        latencies.append((time.perf_counter() - due) * 1000)
        if status == 303:
            ok_tokens.append(token)

    start = time.perf_counter() + 0.05
    wall_start = time.time() + 0.05
    tasks = set()
    async with connections:
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(send(tokens[i], due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return {"sent": total, "statuses": dict(statuses), "errors": dict(errors), "elapsed": elapsed,
            "latency": harness.percentiles(latencies), "ok_tokens": ok_tokens, "wall_start": wall_start,
            "rate": statuses.get(303, 0) / elapsed if elapsed else 0.0}


# The viewer process: one staff websocket on the check's progress.
def _viewer_main(queue, port: int, host: str, check_id: int, session: str, ready, stop) -> None:
    asyncio.run(_viewer(queue, port, host, check_id, session, ready, stop))


async def _viewer(queue, port, host, check_id, session, ready, stop) -> None:
    import json

    from websockets.asyncio.client import connect

    seen: list[tuple[float, int]] = []
    failure = ""
    try:
        async with connect(f"ws://{host}:{port}/ws/safety/{check_id}/", host=harness.LOOPBACK, port=port,
                           open_timeout=30, additional_headers={"Cookie": f"mimamori_session={session}"}) as ws:
            first = json.loads(await ws.recv())
            if first.get("type") != "safety.progress":
                raise RuntimeError(f"expected safety.progress, got {first}")
            seen.append((time.time(), first["totals"]["answered"]))
            ready.set()
            while not stop.is_set():
                try:
                    message = await asyncio.wait_for(ws.recv(), timeout=0.2)
                except TimeoutError:
                    continue
                seen.append((time.time(), json.loads(message)["totals"]["answered"]))
    except Exception as exc:
        failure = repr(exc)
        ready.set()
    queue.put({"seen": seen, "failure": failure})


def _apply_backlog(check_id: int) -> tuple[int, float]:
    """Apply APPLY_SAMPLE of the run's answers as contacts, timed; then drop the check
    (its asks with it), so no backlog is left for the next run to sort."""
    from outreach.answers import do_apply_answers
    from outreach.models import SafetyCheck
    from tenants.context import tenant_scope

    started = time.perf_counter()
    applied = 0
    with tenant_scope(SCHEMA):
        while applied < APPLY_SAMPLE and (n := do_apply_answers(limit=min(500, APPLY_SAMPLE - applied))):
            applied += n
        seconds = time.perf_counter() - started
        SafetyCheck.objects.filter(pk=check_id).delete()
    connection.set_schema_to_public()
    return applied, seconds


def _purge_tasks() -> None:
    from config.celery import app

    try:
        app.control.purge()
    except Exception as exc:  # the broker is only a queue here
        print(f"(could not purge the task queue: {exc})", flush=True)


def run() -> list[Metric]:
    _seed()
    connection.set_schema_to_public()
    print(f"(product: {harness.product_revision()}; {harness.background_load()})", flush=True)
    session = _staff_session()
    csrf = "b" * 32
    host = harness.tenant_domain(SCHEMA)
    ctx = multiprocessing.get_context("spawn")
    rates, lags, p99s, applies, problems = [], [], [], [], []
    _purge_tasks()
    with harness.uvicorn_server(workers=WORKERS) as server:
        print(f"(uvicorn --workers {WORKERS} on {server.url}; {RATE}/s offered for {SECONDS} s, "
              f"at most {MAX_IN_FLIGHT} in flight; {RESIDENTS} residents)", flush=True)
        for run_number in range(1, RUNS + 1):
            harness.vacuum(SCHEMA, TABLES)
            check_id, tokens = _new_check(run_number)
            results, ready, stop = ctx.Queue(), ctx.Event(), ctx.Event()
            viewer = ctx.Process(target=_viewer_main, args=(results, server.port, host, check_id, session, ready,
                                                            stop), daemon=True)
            viewer.start()
            ready.wait(60)
            loads = ctx.Queue()
            loader = ctx.Process(target=_load_main, args=(loads, server.url, host, tokens, csrf, RATE, SECONDS,
                                                          MAX_IN_FLIGHT), daemon=True)
            cpu_before = server.cpu_seconds()
            loader.start()
            load = loads.get(timeout=SECONDS + 180)
            loader.join(10)
            answered = _answered(check_id)
            # Let the viewer catch up (it should within 2 s), then stop it.
            deadline = time.time() + 5
            time.sleep(2.5)
            stop.set()
            view = results.get(timeout=30)
            viewer.join(10)
            end = min(deadline, time.time())
            lag, missing = _lag(answered, view["seen"], end)
            ok = load["statuses"].get(303, 0)
            server_cores = (server.cpu_seconds() - cpu_before) / max(load["elapsed"], 1e-9)
            print(f"  run {run_number}: sent {load['sent']} in {load['elapsed']:.1f} s → {load['rate']:.0f}/s answered "
                  f"303; statuses {load['statuses']} errors {load['errors']}; latency p50 "
                  f"{load['latency'].get('p50', 0):.0f} p99 {load['latency'].get('p99', 0):.0f} max "
                  f"{load['latency'].get('max', 0):.0f} ms; server {server_cores:.2f} cores; answered rows "
                  f"{len(answered)}; viewer got {len(view['seen'])} messages, last count "
                  f"{view['seen'][-1][1] if view['seen'] else '-'}; live lag max {lag:.2f} s"
                  f"{f', {missing} never shown' if missing else ''}", flush=True)
            if view["failure"]:
                problems.append(f"run {run_number}: viewer failed: {view['failure']}")
            if ok != len(answered) or load["errors"] or set(load["statuses"]) - {303}:
                problems.append(f"run {run_number}: {ok} answered 303 but {len(answered)} answered rows; "
                                f"statuses {load['statuses']} errors {load['errors']}")
            gaps = [b[0] - a[0] for a, b in zip(view["seen"], view["seen"][1:], strict=False)]
            if gaps and min(gaps) < 0.9:
                problems.append(f"run {run_number}: two progress messages {min(gaps):.2f} s apart")
            applied, seconds = _apply_backlog(check_id)
            print(f"  run {run_number}: applied {applied} answers as contacts in {seconds:.1f} s "
                  f"→ {applied / seconds:.0f}/s (one process, after the load)", flush=True)
            rates.append(load["rate"])
            lags.append(lag)
            p99s.append(load["latency"].get("p99", 0))
            applies.append(applied / seconds if seconds else 0.0)
        errors = server.error_lines()
    _purge_tasks()
    if errors:
        problems.append(f"server log: {len(errors)} error line(s), first: {errors[0][:300]}")
    for problem in problems:
        print(f"!! {problem}", flush=True)
    print(f"(median p99 latency {statistics.median(p99s):.0f} ms)", flush=True)
    return [
        Metric.from_runs(f"answers_per_s_at_{RATE}_offered", rates, "per_s", target=RATE * 0.98, better="higher"),
        Metric.from_runs("live_progress_lag_max_s", lags, "s", target=2.0, better="lower"),
        Metric.from_runs(f"answer_p99_ms_at_{RATE}_per_s", p99s, "ms", target=None, better="lower"),
        Metric.from_runs("answers_applied_as_contacts_per_s", applies, "per_s", target=RATE, better="higher"),
    ]
