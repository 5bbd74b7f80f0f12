"""The benchmark contract.

A benchmark is a module `bench/bench_<name>.py` with a docstring (its description) and
`run() -> list[Metric]`. Each metric's value is the median of its runs. Results go to
bench/results/<name>.json as a list of {name, value, unit, target, better, runs}.
Benchmarks report; they never fail the test suite.
"""
import argparse
import ast
import importlib
import json
import os
import pkgutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
UNITS = {"s", "ms", "per_s"}


@dataclass
class Metric:
    name: str
    value: float
    unit: str
    target: float | None
    better: str  # "higher" or "lower"
    runs: list[float]

    @classmethod
    def from_runs(cls, name: str, runs: list[float], unit: str, target: float | None, better: str) -> "Metric":
        assert unit in UNITS and better in {"higher", "lower"}
        return cls(name, round(statistics.median(runs), 4), unit, target, better, [round(r, 4) for r in runs])

    @property
    def meets_target(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.better == "higher" else self.value <= self.target


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def available() -> dict[str, str]:
    """Benchmark names and first docstring lines, read without importing (Django is not set up yet)."""
    names = {}
    for info in sorted(pkgutil.iter_modules([str(BENCH_DIR)]), key=lambda i: i.name):
        if info.name.startswith("bench_"):
            doc = ast.get_docstring(ast.parse((BENCH_DIR / f"{info.name}.py").read_text())) or ""
            names[info.name.removeprefix("bench_")] = doc.strip().splitlines()[0] if doc else ""
    return names


def _bench_database_url(url: str) -> str:
    parsed = urlparse(url)
    name = parsed.path.lstrip("/") or "mimamori"
    return urlunparse(parsed._replace(path=f"/{name}_bench"))


def _ensure_database(url: str) -> None:
    import psycopg

    from config.env import database_from_url

    db = database_from_url(url)
    admin = {k: v for k, v in {"host": db["HOST"], "port": db["PORT"], "user": db["USER"],
                                "password": db["PASSWORD"]}.items() if v}
    with psycopg.connect(dbname="postgres", autocommit=True, **admin) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone():
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def setup_django() -> None:
    os.environ["DATABASE_URL"] = _bench_database_url(os.environ["DATABASE_URL"])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-key-not-secret-0123456789abcdefghijklmnop")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    _ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("setup_platform", verbosity=0)


def print_table(name: str, metrics: list[Metric]) -> None:
    for m in metrics:
        verdict = {True: "meets target", False: "MISSES target", None: ""}[m.meets_target]
        target = "-" if m.target is None else f"{'≥' if m.better == 'higher' else '≤'} {m.target:g}"
        print(f"{name:<22} {m.name:<40} {m.value:>12.4f} {m.unit:<6} target {target:<12} {verdict}"
              f"   runs={m.runs}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    benches = available()
    if args.list:
        for name, description in benches.items():
            print(f"{name:<24} {description}")
        return 0
    unknown = set(args.names) - set(benches)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; see --list")
    from config import services

    with services.running(purpose="bench"):
        setup_django()
        RESULTS_DIR.mkdir(exist_ok=True)
        for name in args.names or list(benches):
            module = importlib.import_module(f"bench.bench_{name}")
            metrics = module.run()
            (RESULTS_DIR / f"{name}.json").write_text(json.dumps([asdict(m) for m in metrics], indent=1) + "\n")
            print_table(name, metrics)
    return 0
