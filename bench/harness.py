"""Shared machinery for the benchmarks that go over the network.

- `uvicorn_server()` runs the real ASGI app (config.asgi:application) under uvicorn in a
  subprocess, with the environment the runner set (the `<name>_bench` database, Redis,
  secret key) and DJANGO_DEBUG=0, waits for /healthz and stops it afterwards.
- `celery_processes()` runs a real Celery worker (and beat) the same way.
- `max_throughput()` and `fixed_rate()` drive HTTP load from a separate process
  (multiprocessing "spawn", so the load generator shares no GIL and no Django state with
  the measuring process): a lean asyncio HTTP/1.1 client (uvloop) that always connects
  to 127.0.0.1 and sends the tenant's Host header explicitly.

Every response status is recorded; a status outside `LoadPlan.expected`, or a transport
error, is returned in `LoadResult.unexpected` for the benchmark to report, never counted
as a success. Only the standard library, psutil and (in the child) uvloop are imported
here: the module is imported again by the spawned load process, before Django is set up.
"""
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import queue as queue_module
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = str(BASE_DIR / ".venv" / "bin" / "python")
LOOPBACK = "127.0.0.1"


# Subprocesses of the product.
def child_env(**extra: str) -> dict[str, str]:
    """The runner's environment (DATABASE_URL of the bench database, REDIS_URL, secret key)
    for production-like product processes."""
    env = dict(os.environ)
    env.update(DJANGO_DEBUG="0", LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
               DJANGO_SETTINGS_MODULE="config.settings")
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@dataclass
class Product:
    """One product process (and its children) started by the harness."""

    name: str
    proc: subprocess.Popen
    log_path: Path

    def processes(self) -> list[psutil.Process]:
        try:
            parent = psutil.Process(self.proc.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def error_lines(self) -> list[str]:
        """Lines of the process's log that report an error (the log level is WARNING)."""
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines()
                if "Traceback" in line or '"level": "ERROR"' in line or line.startswith("ERROR")
                or '"level": "CRITICAL"' in line]


def _raise_on_sigterm() -> None:
    """Turn SIGTERM into an exception, so the `finally` blocks stop what we started."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        def handler(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, handler)


def _start(name: str, cmd: list[str], env: dict[str, str]) -> Product:
    _raise_on_sigterm()
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
    # A new session: the process and its children form one group that we stop by its id.
    proc = subprocess.Popen(cmd, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()
    return Product(name, proc, Path(log.name))


def _stop(product: Product, timeout: float = 20.0) -> None:
    proc = product.proc
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    # Children (uvicorn workers, celery pool processes) are in the same group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, 0)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGKILL)


def _http_ok(url: str, host: str = "localhost") -> bool:
    try:
        request = urllib.request.Request(url, headers={"Host": host})  # noqa: S310 (http://127.0.0.1 only)
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


@dataclass
class Server(Product):
    port: int = 0
    workers: int = 1

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}"


@contextlib.contextmanager
def uvicorn_server(workers: int = 2, port: int | None = None, env: dict[str, str] | None = None,
                   ready_timeout: float = 90.0):
    """Run config.asgi:application under uvicorn on 127.0.0.1; yield a Server once /healthz
    answers and every worker process exists; stop it (and its workers) afterwards."""
    port = port or free_port()
    cmd = [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", LOOPBACK, "--port", str(port),
           "--workers", str(workers), "--lifespan", "off", "--no-access-log", "--log-level", "warning"]
    product = _start("uvicorn", cmd, child_env(**(env or {})))
    server = Server(product.name, product.proc, product.log_path, port=port, workers=workers)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if server.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {server.proc.returncode}:\n{server.log_tail()}")
            expected_procs = 1 + (workers if workers > 1 else 0)
            if len(server.processes()) >= expected_procs and _http_ok(server.url + "/healthz"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not become ready in {ready_timeout:.0f} s:\n{server.log_tail()}")
            time.sleep(0.2)
        # With several workers, /healthz proves only one of them is up: give the others
        # time to finish importing Django (the load generator warms up as well).
        if workers > 1:
            time.sleep(3.0)
        yield server
    finally:
        _stop(server)


@contextlib.contextmanager
def celery_processes(concurrency: int = 2, beat: bool = True, ready_timeout: float = 60.0):
    """A real Celery worker (prefork, `concurrency` processes) and, if asked, one beat with
    a fresh schedule file. Yields {"worker": Product, "beat": Product|None}."""
    from config.celery import app  # needs Django settings; imported only by the caller's process

    schedule = Path(tempfile.mkdtemp(prefix="bench-beat-")) / "celerybeat-schedule"
    nodename = f"bench{os.getpid()}@%h"
    env = child_env()
    # Both queues, as `start`'s main worker reads them (urgent deliveries are routed to "urgent").
    worker = _start("celery-worker", [PYTHON, "-m", "celery", "-A", "config.celery:app", "worker", "-l", "WARNING",
                                      "--concurrency", str(concurrency), "-n", nodename, "-Q", "celery,urgent"], env)
    started = {"worker": worker, "beat": None}
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if worker.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited:\n{worker.log_tail()}")
            replies = app.control.ping(timeout=1.0) or []
            if any(name.startswith(f"bench{os.getpid()}@") for reply in replies for name in reply):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"celery worker not ready in {ready_timeout:.0f} s:\n{worker.log_tail()}")
        if beat:
            started["beat"] = _start("celery-beat", [PYTHON, "-m", "celery", "-A", "config.celery:app", "beat",
                                                     "-l", "WARNING", "-s", str(schedule)], env)
        yield started
    finally:
        for product in (started["beat"], worker):
            if product is not None:
                _stop(product, timeout=30.0)
        shutil.rmtree(schedule.parent, ignore_errors=True)


# Load generation.
@dataclass
class Req:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    json: dict | None = None


@dataclass
class LoadPlan:
    url: str  # http://127.0.0.1:PORT
    host: str  # the Host header (the tenant's domain)
    requests: list[Req]  # cycled in order
    expected: tuple[int, ...] = (200,)
    uuid_field: str | None = None  # set json[uuid_field] to a fresh uuid4 in every request
    min_gap_s: float = 0.0  # never send the same item again within this time
    timeout_s: float = 60.0
    track_items: bool = False  # report each item's last send time with an expected status
    created_status: int | None = None  # collect the uuid of every request answered with this
    start_index: int = 0  # the first item to send (to continue where the previous run stopped)


@dataclass
class LoadResult:
    mode: str
    concurrency: int | None
    rate: float | None
    duration_s: float  # from the first send to the last response
    sent: int
    completed: int  # responses (any status)
    throughput: float  # responses with an expected status per second
    latency_ms: dict[str, float]  # p50/p90/p99/max over all answered requests
    service_ms: dict[str, float]  # open loop: from the actual send, not the schedule
    statuses: dict[int, int]
    errors: dict[str, int]
    warmup_statuses: dict[int, int]
    schedule_lag_ms_max: float  # open loop: how far the generator fell behind its schedule
    client_cpu_s: float  # the load generator's whole life, warm-up included
    server_cpu_s: float = 0.0  # the uvicorn processes, over cpu_window_s
    other_cpu_s: float = 0.0  # every other process on the machine (PostgreSQL, Redis, client)
    cpu_window_s: float = 0.0
    cpu_by_process: dict[str, float] = field(default_factory=dict)  # cores, by process name (not the server)
    system_busy_pct: float = 0.0
    created_keys: list[str] = field(default_factory=list)
    item_last_ok: list[float | None] = field(default_factory=list)  # wall-clock send times
    throttled_429: int = 0
    next_index: int = 0  # the item the next run should start with

    @property
    def unexpected(self) -> dict[str, int]:
        out = {str(k): v for k, v in self.statuses.items() if k not in self._expected}
        out.update({str(k): v for k, v in self.warmup_statuses.items() if k not in self._expected})
        out.update(self.errors)
        return out

    _expected: tuple[int, ...] = (200,)

    def summary(self) -> str:
        what = f"C={self.concurrency}" if self.mode == "max" else f"{self.rate:g}/s offered"
        lat = self.latency_ms
        text = (f"{self.mode} {what}: {self.completed} answered in {self.duration_s:.1f} s → "
                f"{self.throughput:.0f}/s ok; latency p50 {lat.get('p50', 0):.1f} p90 {lat.get('p90', 0):.1f} "
                f"p99 {lat.get('p99', 0):.1f} max {lat.get('max', 0):.1f} ms; statuses {dict(self.statuses)}")
        if self.errors:
            text += f"; errors {dict(self.errors)}"
        if self.mode == "rate":
            text += (f"; service p50 {self.service_ms.get('p50', 0):.1f} p99 {self.service_ms.get('p99', 0):.1f} ms;"
                     f" generator lag max {self.schedule_lag_ms_max:.0f} ms")
        window = max(self.cpu_window_s, 1e-9)
        text += (f"; CPU in cores: server {self.server_cpu_s / window:.2f}, load generator "
                 f"{self.client_cpu_s / window:.2f}, everything else (PostgreSQL, Redis, ...) "
                 f"{(self.other_cpu_s - self.client_cpu_s) / window:.2f}; machine {self.system_busy_pct:.0f}% busy")
        if self.cpu_by_process:
            text += " [" + ", ".join(f"{name} {cores:.2f}" for name, cores in self.cpu_by_process.items()) + "]"
        # Kernel time and processes that started or ended during the run (PostgreSQL
        # backends of short connections, other people's tests on a shared machine).
        unattributed = (self.other_cpu_s - self.client_cpu_s) / window - sum(self.cpu_by_process.values())
        text += f" unattributed {unattributed:.2f}"
        return text


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {"p50": rank(0.50), "p90": rank(0.90), "p95": rank(0.95), "p99": rank(0.99), "max": ordered[-1]}


def _cpu_by_process() -> dict[tuple[int, str], float]:
    out = {}
    for p in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            out[(p.pid, p.info["name"])] = t.user + t.system
    return out


def _machine_busy_seconds() -> float:
    """CPU seconds spent by every process on the machine (all cores), from /proc/stat."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _run_in_process(kind: str, plan: LoadPlan, server: Product | None, **params) -> LoadResult:
    if plan.min_gap_s:
        # A new load process does not know when the previous run last sent each item.
        time.sleep(plan.min_gap_s)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_main, args=(queue, kind, plan, params), daemon=True)
    server_before = server.cpu_seconds() if server else 0.0
    busy_before, wall_before = _machine_busy_seconds(), time.monotonic()
    by_process_before = _cpu_by_process()
    child.start()
    deadline = time.monotonic() + params.get("duration_s", 60) + params.get("warmup_s", 0) + plan.timeout_s + 180
    try:
        while True:
            try:
                result: LoadResult = queue.get(timeout=1.0)
                break
            except queue_module.Empty:
                if not child.is_alive():
                    raise RuntimeError(f"the load generator exited with {child.exitcode} without a result") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("the load generator did not finish in time") from None
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    # Over the whole child's life (warm-up included): the server's share, and everything
    # else on the machine (PostgreSQL backends, Redis, the client) as one rest.
    wall = time.monotonic() - wall_before
    busy = _machine_busy_seconds() - busy_before
    result.server_cpu_s = (server.cpu_seconds() - server_before) if server else 0.0
    result.cpu_window_s = wall
    result.other_cpu_s = busy - result.server_cpu_s
    result.system_busy_pct = busy / (wall * psutil.cpu_count()) * 100
    # Processes alive at both ends (PostgreSQL pool backends, Redis, anything else on the
    # machine); the load generator and short-lived backends are not in it.
    server_pids = {p.pid for p in server.processes()} if server else set()
    by_name: Counter = Counter()
    for (pid, name), seconds in _cpu_by_process().items():
        if pid not in server_pids and (pid, name) in by_process_before:
            by_name[name] += seconds - by_process_before[(pid, name)]
    result.cpu_by_process = {name: round(sec / wall, 2) for name, sec in by_name.most_common(4) if sec / wall >= 0.02}
    result._expected = plan.expected
    return result


def max_throughput(plan: LoadPlan, *, concurrency: int, duration_s: float, warmup_s: float = 2.0,
                   server: Product | None = None) -> LoadResult:
    """Closed loop: `concurrency` connections each send the next request as soon as the
    previous one is answered, for `duration_s`."""
    return _run_in_process("max", plan, server, concurrency=concurrency, duration_s=duration_s, warmup_s=warmup_s)


def fixed_rate(plan: LoadPlan, *, rate: float, duration_s: float, max_in_flight: int = 64, warmup_s: float = 2.0,
               server: Product | None = None) -> LoadResult:
    """Open loop: request i is due at start + i/rate whatever happened before; latency is
    measured from that due time (no coordinated omission). At most `max_in_flight`
    connections; requests beyond wait for one, and that wait counts."""
    return _run_in_process("rate", plan, server, rate=rate, duration_s=duration_s, max_in_flight=max_in_flight,
                           warmup_s=warmup_s)


# The load process.
def _child_main(queue, kind: str, plan: LoadPlan, params: dict) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    queue.put(asyncio.run(_generate(kind, plan, **params)))


class _Client:
    def __init__(self, plan: LoadPlan, connections: "_Connections"):
        self.plan = plan
        self.connections = connections
        self.head = f"Host: {plan.host}\r\n".encode()
        self.next_index = plan.start_index
        self.last_done = [-1e9] * len(plan.requests)  # monotonic, when the last answer (or error) came
        self.in_flight: set[int] = set()
        self.item_last_ok: list[float | None] = [None] * len(plan.requests) if plan.track_items else []
        self.reset()

    def reset(self) -> None:
        self.latencies: list[float] = []
        self.service: list[float] = []
        self.statuses: Counter = Counter()
        self.errors: Counter = Counter()
        self.sent = 0
        self.created_keys: list[str] = []

    def take(self) -> int:
        index = self.next_index % len(self.plan.requests)
        self.next_index += 1
        return index

    async def send(self, index: int, due: float | None = None) -> None:
        plan = self.plan
        if plan.min_gap_s:
            # The item's previous request must be answered, and min_gap_s must have passed
            # since then: even when the server queues and reorders requests, it never sees
            # two of one item closer together than that.
            while True:
                if index in self.in_flight:
                    await asyncio.sleep(0.01)
                    continue
                gap = plan.min_gap_s - (time.perf_counter() - self.last_done[index])
                if gap <= 0:
                    break
                await asyncio.sleep(gap)
            self.in_flight.add(index)
        req = plan.requests[index]
        body = None
        if req.json is not None:
            body = dict(req.json)
            if plan.uuid_field:
                body[plan.uuid_field] = str(uuid.uuid4())
        raw = _http_request(req, self.head, body)
        start = time.perf_counter()
        wall = time.time()
        self.sent += 1
        try:
            async with asyncio.timeout(plan.timeout_s):
                status = await self.connections.request(raw)
        except TimeoutError:
            self.errors["timeout"] += 1
            return
        except Exception as exc:
            self.errors[type(exc).__name__] += 1
            return
        finally:
            self.last_done[index] = time.perf_counter()
            self.in_flight.discard(index)
        end = time.perf_counter()
        self.statuses[status] += 1
        self.latencies.append((end - (due if due is not None else start)) * 1000)
        self.service.append((end - start) * 1000)
        if plan.created_status is not None and status == plan.created_status and body and plan.uuid_field:
            self.created_keys.append(body[plan.uuid_field])
        if plan.track_items and status in plan.expected:
            self.item_last_ok[index] = wall


def _http_request(req: Req, head: bytes, body: dict | None) -> bytes:
    """One HTTP/1.1 keep-alive request, as bytes."""
    lines = [f"{req.method} {req.path} HTTP/1.1\r\n".encode(), head]
    lines += [f"{name}: {value}\r\n".encode() for name, value in req.headers.items()]
    payload = b""
    if body is not None:
        payload = json.dumps(body).encode()
        lines.append(b"Content-Type: application/json\r\n")
    if payload or req.method == "POST":
        lines.append(f"Content-Length: {len(payload)}\r\n".encode())
    return b"".join(lines) + b"\r\n" + payload


CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)")


class _Connection(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection that sends one request at a time and reads just
    the status line, Content-Length (or chunked) and the body. A few microseconds a
    request, where aiohttp's client costs hundreds: on a 2-core machine the load
    generator's CPU is taken from the server it measures."""

    def __init__(self):
        self.transport = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("the server closed the connection"))

    def data_received(self, data: bytes):
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        length = CONTENT_LENGTH.search(head)
        if length:
            total = end + 4 + int(length[1])
        elif b"transfer-encoding: chunked" in head:
            last = self.buffer.find(b"\r\n0\r\n\r\n", end)
            total = last + 7 if last >= 0 else -1
        else:
            total = end + 4
        if total < 0 or len(self.buffer) < total:
            return
        del self.buffer[:total]
        self.waiter.set_result(int(head[9:12]))

    async def request(self, raw: bytes) -> int:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        try:
            return await self.waiter
        finally:
            self.waiter = None


class _Connections:
    """At most `limit` connections to `url`; a request waits for an idle one."""

    def __init__(self, url: str, limit: int):
        host_port = url.removeprefix("http://").rstrip("/")
        self.host, _, port = host_port.partition(":")
        self.port = int(port or 80)
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(limit)
        self.all: list[_Connection] = []

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        for conn in self.all:
            if conn.transport is not None:
                conn.transport.close()

    async def request(self, raw: bytes) -> int:
        async with self.slots:
            conn = None
            while self.idle and conn is None:
                candidate = self.idle.pop()
                conn = None if candidate.closed else candidate
            if conn is None:
                _transport, conn = await asyncio.get_running_loop().create_connection(_Connection, self.host,
                                                                                      self.port)
                self.all.append(conn)
            try:
                status = await conn.request(raw)
            except BaseException:
                conn.transport.close()
                raise
            self.idle.append(conn)
            return status


async def _closed_loop(client: _Client, concurrency: int, duration_s: float) -> float:
    stop_at = time.perf_counter() + duration_s

    async def worker():
        while time.perf_counter() < stop_at:
            await client.send(client.take())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


async def _open_loop(client: _Client, rate: float, duration_s: float) -> tuple[float, float]:
    total = int(rate * duration_s)
    start = time.perf_counter() + 0.05
    tasks: set[asyncio.Task] = set()
    lag_max = 0.0
    i = 0
    while i < total:
        now = time.perf_counter()
        due_count = min(total, int((now - start) * rate) + 1)
        while i < due_count:
            due = start + i / rate
            lag_max = max(lag_max, now - due)
            task = asyncio.create_task(client.send(client.take(), due=due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
    if tasks:
        await asyncio.gather(*tasks)
    return time.perf_counter() - start, lag_max


async def _generate(kind: str, plan: LoadPlan, *, duration_s: float, warmup_s: float, concurrency: int = 0,
                    rate: float = 0.0, max_in_flight: int = 0) -> LoadResult:
    rusage_start = resource.getrusage(resource.RUSAGE_SELF)
    limit = concurrency if kind == "max" else max_in_flight
    async with _Connections(plan.url, limit) as connections:
        client = _Client(plan, connections)
        warmup_statuses: Counter = Counter()
        warm_keys: list[str] = []
        if warmup_s > 0:
            if kind == "max":
                await _closed_loop(client, concurrency, warmup_s)
            else:
                await _open_loop(client, min(rate, 200.0), warmup_s)
            warmup_statuses = client.statuses + Counter({f"warmup-{k}": v for k, v in client.errors.items()})
            warm_keys = client.created_keys
            client.reset()
        lag = 0.0
        if kind == "max":
            elapsed = await _closed_loop(client, concurrency, duration_s)
        else:
            elapsed, lag = await _open_loop(client, rate, duration_s)
    rusage_end = resource.getrusage(resource.RUSAGE_SELF)
    ok = sum(v for k, v in client.statuses.items() if k in plan.expected)
    return LoadResult(
        mode=kind, concurrency=concurrency if kind == "max" else max_in_flight, rate=rate if kind == "rate" else None,
        duration_s=elapsed, sent=client.sent, completed=sum(client.statuses.values()),
        throughput=ok / elapsed if elapsed else 0.0,
        latency_ms=percentiles(client.latencies), service_ms=percentiles(client.service),
        statuses=dict(client.statuses), errors=dict(client.errors), warmup_statuses=dict(warmup_statuses),
        schedule_lag_ms_max=lag * 1000,
        client_cpu_s=(rusage_end.ru_utime - rusage_start.ru_utime) + (rusage_end.ru_stime - rusage_start.ru_stime),
        created_keys=warm_keys + client.created_keys, item_last_ok=client.item_last_ok,
        throttled_429=client.statuses.get(429, 0) + warmup_statuses.get(429, 0),
        next_index=client.next_index % len(plan.requests),
    )


def vacuum(schema_name: str, tables: list[str]) -> None:
    """VACUUM ANALYZE the bench tenant's tables. The machine's PostgreSQL runs with
    autovacuum = off (a CI setting), so without this every run would inherit the dead
    rows of all earlier runs; production runs autovacuum."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f'VACUUM (ANALYZE) "{schema_name}"."{table}"')


def dead_rows(schema_name: str, tables: list[str]) -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, n_dead_tup FROM pg_stat_user_tables WHERE schemaname = %s "
                       "AND relname = ANY(%s) ORDER BY relname", [schema_name, tables])
        return dict(cursor.fetchall())


def background_load(seconds: float = 2.0) -> str:
    """How busy the machine is before the benchmark starts (other work skews every figure)."""
    procs = list(psutil.process_iter(["name"]))
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    busy = psutil.cpu_percent(interval=seconds)
    text = f"machine {busy:.0f}% busy before the run"
    if busy > 10:
        usage = []
        for p in procs:
            with contextlib.suppress(psutil.Error):
                usage.append((p.cpu_percent(None), p.info["name"]))
        top = sorted(usage, reverse=True)[:3]
        text += f" (busiest: {', '.join(f'{name} {cpu:.0f}%' for cpu, name in top)})"
    return text


def product_revision() -> str:
    """The commit and uncommitted state the product was measured at (the tree is shared)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=BASE_DIR, capture_output=True, text=True).stdout.rstrip("\n")

    head = git("rev-parse", "--short", "HEAD")
    changed = [line[3:] for line in git("status", "--porcelain").splitlines()
               if not line[3:].startswith("bench/")]
    return f"HEAD {head}" + (f" + {len(changed)} uncommitted path(s) outside bench/" if changed else " (clean)")


# Tenants for the benchmarks (get-or-create, so reruns reuse the seeded data).
def tenant_domain(schema_name: str) -> str:
    return f"{schema_name.replace('_', '-')}.bench.test"


def signed_in_client(schema_name: str, username: str, language: str = "ja"):
    """A Django test client signed in as `username` on the bench tenant's host (the
    session bound to its schema, as a real sign-in binds it), for in-process page timings."""
    from django.db import connection
    from django.test import Client

    from tenants.accounts.models import User
    from tenants.context import tenant_scope

    client = Client(HTTP_HOST=tenant_domain(schema_name), HTTP_ACCEPT_LANGUAGE=language)
    with tenant_scope(schema_name):
        client.force_login(User.objects.get(username=username))
        session = client.session
        session["schema"] = schema_name
        session.save()
    connection.set_schema_to_public()
    return client


def ensure_tenant(schema_name: str, name: str | None = None) -> tuple[object, bool]:
    """The bench tenant `schema_name` at <schema-name>.bench.test; (tenant, created).
    An existing tenant of another `name` (a seed of an older bench version) is replaced."""
    from django.db import connection

    from tenants.actions import do_provision_tenant
    from tenants.models import Tenant

    connection.set_schema_to_public()
    name = name or schema_name
    tenant = Tenant.objects.filter(schema_name=schema_name).first()
    if tenant is not None and tenant.name == name:
        return tenant, False
    if tenant is not None:
        drop_tenant(schema_name)
    provisioned = do_provision_tenant(
        schema_name=schema_name, domain=tenant_domain(schema_name), name=name,
        kind=Tenant.Kind.MUNICIPALITY, prefecture="京都府", local_government_code="262111",
    )
    return provisioned.tenant, True


def tenant_to_seed(schema_name: str, is_complete, name: str | None = None) -> bool:
    """Get or create the bench tenant; True if it must be seeded. `is_complete()` runs
    inside the tenant and says whether an earlier run's seed is all there; an incomplete
    seed is dropped and the tenant provisioned afresh."""
    from tenants.context import tenant_scope

    _tenant, created = ensure_tenant(schema_name, name=name)
    if created:
        return True
    with tenant_scope(schema_name):
        if is_complete():
            return False
    print(f"({schema_name} is incomplete: provisioning it again)", flush=True)
    drop_tenant(schema_name)
    ensure_tenant(schema_name, name=name)
    return True


def drop_tenant(schema_name: str) -> None:
    from django.db import connection

    from tenants.context import forget_cached_hosts
    from tenants.models import Tenant

    connection.set_schema_to_public()
    tenant = Tenant.objects.filter(schema_name=schema_name).first()
    if tenant is not None:
        tenant.domains.all().delete()
        tenant.delete(force_drop=True)
    forget_cached_hosts()


def report_unexpected(label: str, result: LoadResult, problems: list[str]) -> None:
    """Print and collect a run's unexpected statuses and transport errors."""
    if result.unexpected:
        line = f"{label}: unexpected statuses/errors {result.unexpected}"
        print(f"!! {line}", flush=True)
        problems.append(line)


# A fake of the messaging providers (LINE push, Twilio messages, web push) for the
# benchmarks that measure up to "handed to the provider". Standard library only.
@dataclass
class ProviderRequest:
    at: float  # wall clock when the request's headers had arrived
    path: str
    address: str  # LINE "to", Twilio "To", or the push endpoint's path
    retry_key: str  # LINE's X-Line-Retry-Key ("" elsewhere)


@dataclass
class FakeProviderServer:
    url: str = ""
    requests: list[ProviderRequest] = field(default_factory=list)

    LINE_TOKEN = "line-bench-token"  # noqa: S105 - the fake server's own credential
    TWILIO_SID = "AC" + "0" * 32

    def env(self) -> dict[str, str]:
        """Settings that point the product's real provider clients at this server."""
        return {"LINE_API_BASE": self.url, "LINE_CHANNEL_ACCESS_TOKEN": self.LINE_TOKEN,
                "LINE_CHANNEL_SECRET": "line-bench-secret", "TWILIO_API_BASE": self.url,
                "TWILIO_ACCOUNT_SID": self.TWILIO_SID, "TWILIO_AUTH_TOKEN": "twilio-bench-token",
                "TWILIO_FROM_NUMBER": "+815012345678"}


@contextlib.contextmanager
def fake_provider_server():
    """Run a FakeProviderServer on 127.0.0.1 in a thread: every request is accepted
    (LINE 200, Twilio 201, push 201) and recorded with its arrival time."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs

    fake = FakeProviderServer()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):
            pass

        def do_POST(self):
            at = time.time()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            address, status, answer = self.path, 201, b""
            if self.path == "/v2/bot/message/push":
                address = json.loads(body or b"{}").get("to", "")
                status, answer = 200, json.dumps({"sentMessages": [{"id": "1", "quoteToken": "q"}]}).encode()
            elif self.path.endswith("/Messages.json"):
                address = parse_qs(body.decode()).get("To", [""])[0]
                answer = json.dumps({"sid": "SM" + "f" * 32, "status": "queued",
                                     "account_sid": FakeProviderServer.TWILIO_SID}).encode()
            with lock:
                fake.requests.append(ProviderRequest(at, self.path, address,
                                                     self.headers.get("X-Line-Retry-Key", "")))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://{LOOPBACK}:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def environ(**values: str):
    """Set environment variables for the product processes started inside the block."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
