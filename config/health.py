"""/healthz (the process answers) and /readyz (PostgreSQL and Redis answer; else 503).

Answered before tenant resolution, so they work on every host, known or not.
"""
import logging

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse

logger = logging.getLogger(__name__)
HEALTH_PATHS = ("/healthz", "/readyz")  # probed over plain http too: never redirected to https


def check_database() -> bool:
    try:
        connection.set_schema_to_public()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        logger.exception("readiness: database unreachable")
        return False


def check_redis() -> bool:
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        logger.exception("readiness: redis unreachable")
        return False


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/healthz":
            return JsonResponse({"status": "ok"})
        if request.path == "/readyz":
            checks = {"database": check_database(), "redis": check_redis()}
            ready = all(checks.values())
            return JsonResponse(
                {"status": "ok" if ready else "unavailable",
                 **{name: "ok" if ok else "unreachable" for name, ok in checks.items()}},
                status=200 if ready else 503,
            )
        return self.get_response(request)
