"""/healthz (the process answers) and /readyz (PostgreSQL and Redis answer; else 503,
naming the one that did not).

Answered before tenant resolution, so they work on every host, known or not. Both
checks run side by side, each on a connection of its own, and /readyz answers within
CHECK_SECONDS whatever the dependencies do (a check still waiting counts as failed).
"""
import logging
from concurrent.futures import ThreadPoolExecutor, wait

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse

logger = logging.getLogger(__name__)
HEALTH_PATHS = ("/healthz", "/readyz")  # probed over plain http too: never redirected to https
CHECK_SECONDS = 2.0


def check_database() -> bool:
    """A new connection configured as Django's (its connect_timeout bounds the wait) answers SELECT 1."""
    try:
        raw = connection.get_new_connection(connection.get_connection_params())
        try:
            return raw.execute("SELECT 1").fetchone() == (1,)
        finally:
            raw.close()
    except Exception:
        logger.exception("readiness: database unreachable")
        return False


def check_redis() -> bool:
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=CHECK_SECONDS,
                                      socket_connect_timeout=CHECK_SECONDS)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        logger.exception("readiness: redis unreachable")
        return False


CHECKS = {"database": check_database, "redis": check_redis}


def run_checks() -> dict[str, bool]:
    """Every check, side by side; one still running after CHECK_SECONDS has failed."""
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="readyz")
    try:
        futures = {name: pool.submit(check) for name, check in CHECKS.items()}
        wait(futures.values(), timeout=CHECK_SECONDS)
        results = {}
        for name, future in futures.items():
            results[name] = future.done() and future.result()
            if not future.done():
                logger.error("readiness: %s did not answer within %s s", name, CHECK_SECONDS)
        return results
    finally:
        pool.shutdown(wait=False)  # a check still waiting ends by its own timeout


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/healthz":
            return JsonResponse({"status": "ok"})
        if request.path == "/readyz":
            checks = run_checks()
            ready = all(checks.values())
            return JsonResponse(
                {"status": "ok" if ready else "unavailable",
                 **{name: "ok" if ok else "unreachable" for name, ok in checks.items()}},
                status=200 if ready else 503,
            )
        return self.get_response(request)
