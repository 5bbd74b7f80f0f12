"""Run benchmarks against real PostgreSQL and Redis and write bench/results/NAME.json.

    python -m bench            run every benchmark
    python -m bench NAME ...   run some
    python -m bench --list     list them

Embedded PostgreSQL and Redis are started unless DATABASE_URL / REDIS_URL are set; the
benchmarks use their own database (`<name>_bench`) so they never touch real data.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config import bootstrap


def main(argv: list[str]) -> int:
    bootstrap.ensure_venv([sys.argv[0] if sys.argv[0].endswith(".py") else __file__, *argv])
    from bench import runner

    return runner.main(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
