"""Live fan-out: one concern event to 1,000 websocket clients of one tenant (p99), nothing to another tenant.

uvicorn (2 workers) serves config.asgi:application with the Redis channel layer. 1,000
clients of tenant A watch the area of the resident (500 as administrators, who see
every area, and 500 as municipal staff attached to the resident's district: the two
area groups of the event), plus 100 clients of tenant B signed in as B's
administrators. Every client has its own session and connects from a separate process
(asyncio + the `websockets` library). Each round raises one concern in A
(`do_raise_concern` inside `tenant_scope`; the live event is published when it
commits) and measures, per A client, the time its "concern.opened" event arrived minus
the time just before the action was called. A client that never receives it counts as
the whole wait. Any message a B client receives after its hello is reported.
"""
import multiprocessing
import queue as queue_module
import statistics
import time

from django.db import connection

from bench import harness
from bench.runner import Metric

SCHEMA_A = "bench_fan_a"
SCHEMA_B = "bench_fan_b"
CLIENTS_A = 1000
CLIENTS_B = 100
CLIENT_PROCESSES = 2
ROUNDS = 5
ROUND_WAIT_S = 10.0  # a client that has not received the event by then counts as this
CONNECT_PARALLEL = 50  # handshakes in flight per client process
CPU_WINDOW_S = 1.5  # after publishing: where the CPU went while the event fanned out


def _seed() -> dict:
    """Users of both tenants (get-or-create), a district with one resident per round in
    A, and fresh sessions: [(schema, session key)] for every client."""
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session

    from outreach.models import Concern
    from tenants.accounts.models import User
    from tenants.context import tenant_scope
    from watch.actions import do_create_area, do_create_resident
    from watch.models import Area, AreaMembership, Resident

    def session_for(schema: str, user) -> str:
        session = SessionStore()
        session["_auth_user_id"] = str(user.pk)
        session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        session["_auth_user_hash"] = user.get_session_auth_hash()
        session["schema"] = schema
        session.create()
        return session.session_key

    def user(username: str, role: str):
        found = User.objects.filter(username=username).first()
        return found or User.objects.create_user(username=username, password=None, role=role, display_name=username)

    started = time.perf_counter()
    for schema in (SCHEMA_A, SCHEMA_B):
        harness.ensure_tenant(schema)
    clients = []
    with tenant_scope(SCHEMA_A):
        Session.objects.all().delete()
        district = Area.objects.filter(name="Bench district").first() or do_create_area(
            name="Bench district", kind=Area.Kind.DISTRICT)
        residents = list(Resident.objects.filter(area=district).order_by("pk"))
        for i in range(len(residents), ROUNDS):
            residents.append(do_create_resident(area=district, name=f"Resident {i}"))
        admins = [user(f"admin{i}", User.Role.ADMIN) for i in range(5)]
        staff = [user(f"staff{i}", User.Role.MUNICIPAL_STAFF) for i in range(5)]
        for person in staff:
            AreaMembership.objects.get_or_create(user=person, area=district)
        people = admins + staff
        for i in range(CLIENTS_A):
            clients.append((SCHEMA_A, session_for(SCHEMA_A, people[i * len(people) // CLIENTS_A])))
        # Earlier runs' concerns are closed, so that each round opens a new one.
        Concern.objects.filter(state__in=Concern.LIVE_STATES).update(state=Concern.State.DISMISSED, next_step_at=None)
        resident_ids = [r.pk for r in residents[:ROUNDS]]
        district_id = district.pk
    with tenant_scope(SCHEMA_B):
        Session.objects.all().delete()
        admins_b = [user(f"admin{i}", User.Role.ADMIN) for i in range(2)]
        for i in range(CLIENTS_B):
            clients.append((SCHEMA_B, session_for(SCHEMA_B, admins_b[i % len(admins_b)])))
    print(f"(seeded users and {len(clients)} sessions in {time.perf_counter() - started:.1f} s; "
          f"A clients: {CLIENTS_A // 2} administrators, {CLIENTS_A - CLIENTS_A // 2} staff of district "
          f"{district_id})", flush=True)
    return {"clients": clients, "residents": resident_ids}


# The websocket client processes.
def _clients_main(port: int, clients: list[tuple[str, str]], out, ready, stop) -> None:
    import asyncio
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_clients(port, clients, out, ready, stop))


async def _clients(port: int, clients, out, ready, stop) -> None:
    import asyncio
    import json

    from websockets.asyncio.client import connect

    gate = asyncio.Semaphore(CONNECT_PARALLEL)
    connected = 0
    received: list[tuple[int, str, float, str]] = []  # (client, schema, time, raw message)
    closes: list[str] = []
    sockets = []

    async def client(index: int, schema: str, session_key: str) -> None:
        nonlocal connected
        host = harness.tenant_domain(schema)
        await gate.acquire()
        released = False
        try:
            async with connect(f"ws://{host}:{port}/ws/events/", host=harness.LOOPBACK, port=port,
                               open_timeout=60, ping_interval=None, max_queue=None,
                               additional_headers={"Cookie": f"mimamori_session={session_key}"}) as ws:
                hello = json.loads(await ws.recv())
                gate.release()
                released = True
                if hello != {"type": "hello", "tenant": schema}:
                    raise RuntimeError(f"unexpected hello {hello}")
                sockets.append(ws)
                connected += 1
                if connected == len(clients):
                    ready.set()
                async for message in ws:
                    received.append((index, schema, time.time(), message))
                if not stop.is_set():
                    closes.append(f"{schema}: closed by the server {ws.close_code} {ws.close_reason}")
        except Exception as exc:
            if not stop.is_set():
                closes.append(f"{schema}: {type(exc).__name__}: {exc}"[:200])
        finally:
            if not released:
                gate.release()

    async def stopper() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.5)
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

    watcher = asyncio.create_task(stopper())
    await asyncio.gather(*(client(i, s, k) for i, (s, k) in enumerate(clients)))
    watcher.cancel()
    out.put({"received": received, "closes": closes, "connected": connected})


def _drain(results, processes, timeout: float) -> list[dict]:
    gathered = []
    deadline = time.monotonic() + timeout
    while len(gathered) < len(processes) and time.monotonic() < deadline:
        try:
            gathered.append(results.get(timeout=0.5))
        except queue_module.Empty:
            continue
    return gathered


def _raise(resident_id: int) -> tuple[int, float, float]:
    from outreach.actions import do_raise_concern
    from tenants.context import tenant_scope
    from watch.models import Resident

    with tenant_scope(SCHEMA_A):
        resident = Resident.objects.select_related("area").get(pk=resident_id)
        started = time.time()
        concern, opened = do_raise_concern(resident=resident, cause="manual", note="bench")
        returned = time.time()
    if not opened:
        raise RuntimeError("the concern was not opened afresh")
    return concern.pk, started, returned


def run() -> list[Metric]:
    import json

    seeded = _seed()
    print(f"(product: {harness.product_revision()})", flush=True)
    connection.close()
    clients = seeded["clients"]
    problems: list[str] = []
    published: dict[int, tuple[float, float]] = {}
    cpu: dict[int, str] = {}
    gathered: list[dict] = []
    with harness.uvicorn_server(workers=2) as server:
        ctx = multiprocessing.get_context("spawn")
        results, stop = ctx.Queue(), ctx.Event()
        readies, processes = [], []
        for p in range(CLIENT_PROCESSES):
            share = clients[p::CLIENT_PROCESSES]
            ready = ctx.Event()
            proc = ctx.Process(target=_clients_main, args=(server.port, share, results, ready, stop), daemon=True)
            proc.start()
            readies.append(ready)
            processes.append(proc)
        try:
            connect_start = time.monotonic()
            deadline = connect_start + 180
            while not all(r.is_set() for r in readies):
                if time.monotonic() > deadline or not all(p.is_alive() for p in processes):
                    stop.set()
                    early = _drain(results, processes, 10)
                    raise RuntimeError(f"not every client connected: {[g['connected'] for g in early]} connected; "
                                       f"failures {[g['closes'][:3] for g in early]}")
                time.sleep(0.2)
            print(f"  {len(clients)} clients connected in {time.monotonic() - connect_start:.1f} s", flush=True)
            time.sleep(2.0)
            for resident_id in seeded["residents"]:
                before = _cpu(server, processes)
                concern_id, started, returned = _raise(resident_id)
                published[concern_id] = (started, returned)
                time.sleep(max(0.0, started + CPU_WINDOW_S - time.time()))
                cpu[concern_id] = _cpu_used(before, _cpu(server, processes))
                connection.close()
                time.sleep(max(0.0, started + ROUND_WAIT_S - time.time()))
        finally:
            stop.set()
            gathered = _drain(results, processes, 30)
            for proc in processes:
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.kill()
        lines = server.error_lines()
        if lines:
            problems.append(f"uvicorn log: {len(lines)} error line(s), first: {lines[0][:400]}")
    _purge_escalation_tasks()

    if len(gathered) != CLIENT_PROCESSES:
        problems.append(f"only {len(gathered)} of {CLIENT_PROCESSES} client processes reported")
    closes = [c for g in gathered for c in g["closes"]]
    if closes:
        problems.append(f"{len(closes)} client connections failed or closed early, e.g. {closes[:3]}")
    # Client indexes are per process: make them global.
    arrivals: dict[int, dict[tuple[int, int], float]] = {cid: {} for cid in published}
    leaked: list[str] = []
    for p, report in enumerate(gathered):
        share = clients[p::CLIENT_PROCESSES]
        for index, schema, at, raw in report["received"]:
            event = json.loads(raw)
            if schema == SCHEMA_B:
                leaked.append(raw[:200])
                continue
            if event.get("type") == "concern.opened" and event.get("concern") in arrivals:
                arrivals[event["concern"]].setdefault((p, index), at)
            assert share[index][0] == schema
    p99_runs, p50_runs, call_runs = [], [], []
    for number, (concern_id, (started, returned)) in enumerate(published.items(), start=1):
        delays = [at - started for at in arrivals[concern_id].values()]
        missing = CLIENTS_A - len(delays)
        if missing:
            problems.append(f"round {number}: {missing} of {CLIENTS_A} tenant A clients did not receive the event "
                            f"within {ROUND_WAIT_S:.0f} s")
        pct = harness.percentiles(delays + [ROUND_WAIT_S] * missing)
        p99_runs.append(pct["p99"])
        p50_runs.append(pct["p50"])
        call_runs.append(returned - started)
        print(f"  round {number}: {len(delays)}/{CLIENTS_A} A clients received concern {concern_id}; from the "
              f"action's call p50 {pct['p50']:.3f} p99 {pct['p99']:.3f} max {pct['max']:.3f} s "
              f"(the action with its commit and publish took {returned - started:.3f} s; first arrival "
              f"{min(delays, default=float('nan')):.3f} s); {cpu[concern_id]}", flush=True)
    print(f"  tenant B clients ({CLIENTS_B}) received {len(leaked)} messages after their hello"
          + (f": {leaked[:3]}" if leaked else " (as expected)"), flush=True)
    if leaked:
        problems.append(f"tenant B clients received {len(leaked)} messages: {leaked[:3]}")
    for problem in problems:
        print(f"!! {problem}", flush=True)
    print(f"(median action call incl. commit and publish: {statistics.median(call_runs):.3f} s)", flush=True)
    return [
        Metric.from_runs("fanout_1000_clients_p99_s", p99_runs, "s", target=1, better="lower"),
        Metric.from_runs("fanout_1000_clients_p50_s", p50_runs, "s", target=None, better="lower"),
    ]


def _cpu(server, clients) -> tuple[float, float, float, float]:
    """(wall, machine busy, uvicorn, client processes) CPU seconds so far."""
    import psutil

    client_cpu = 0.0
    for proc in clients:
        try:
            t = psutil.Process(proc.pid).cpu_times()
            client_cpu += t.user + t.system
        except psutil.Error:
            pass
    return time.monotonic(), harness._machine_busy_seconds(), server.cpu_seconds(), client_cpu


def _cpu_used(before, after) -> str:
    """Where the machine's CPU went in the window, in cores: other processes (another
    benchmark, PostgreSQL, Redis, this process) compete with the server on 2 cores."""
    import psutil

    wall, busy, server, clients = (a - b for a, b in zip(after, before, strict=True))
    return (f"CPU over the first {wall:.1f} s in cores: uvicorn {server / wall:.2f}, clients {clients / wall:.2f}, "
            f"everything else {(busy - server - clients) / wall:.2f}; machine {busy / wall / psutil.cpu_count():.0%} "
            f"busy")


def _purge_escalation_tasks() -> None:
    """Each round's concern enqueued its first escalation step; no worker runs here, so
    drop those messages rather than leave them to a later benchmark's worker."""
    from config.celery import app

    app.control.purge()
