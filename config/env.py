"""Reading settings from the environment (and from NAME_FILE for secrets)."""
import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured


def get(name: str, default: str | None = None) -> str | None:
    """NAME, or the contents of the file named by NAME_FILE, or default."""
    if name in os.environ:
        return os.environ[name]
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return default


def get_bool(name: str, default: bool) -> bool:
    value = get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def get_int(name: str, default: int) -> int:
    value = get(name)
    return default if value in (None, "") else int(value)


def get_list(name: str, default: list[str]) -> list[str]:
    value = get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def database_from_url(url: str, **default_options) -> dict:
    """A Django DATABASES entry for postgresql://user:password@host:port/name?host=/socket;
    `default_options` (connect_timeout) unless the URL's query sets them."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(f"DATABASE_URL must be a postgresql:// URL, not {parsed.scheme}://")
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    host = query.pop("host", None) or unquote(parsed.hostname or "")
    return {
        "NAME": unquote(parsed.path.lstrip("/")),
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        "OPTIONS": {**default_options, **query},
    }


def redis_url_with_db(url: str, offset: int) -> str:
    """The same Redis server, `offset` databases further (of its 16): redis://host:port/N
    or the embedded server's unix:///path/redis.sock?db=N."""
    parsed = urlparse(url)
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    if parsed.scheme == "unix":
        db = (int(query.get("db", 0)) + offset) % 16
        query["db"] = str(db)
        return f"unix://{parsed.path}?" + "&".join(f"{k}={v}" for k, v in query.items())
    db = (int(parsed.path.lstrip("/") or 0) + offset) % 16
    return parsed._replace(path=f"/{db}").geturl()


def celery_broker_url(redis_url: str) -> str:
    """The broker URL of Celery (kombu) for a redis-py URL. A unix socket is kombu's
    redis+socket://, whose database is `virtual_host`: kombu ignores `?db=` there and
    would use database 0, so two test processes (or two platforms on one Redis) shared
    one queue."""
    parsed = urlparse(redis_url)
    if parsed.scheme != "unix":
        return redis_url
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    if "db" in query:
        query["virtual_host"] = query.pop("db")
    return f"redis+socket://{parsed.path}" + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
