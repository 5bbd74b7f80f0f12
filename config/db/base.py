"""The database backend: django-tenants' PostgreSQL backend, reading dates leniently.

A row that is already odd (a timestamp before year 1 or after 9999, ±infinity, a date
BC), written by an older version, a fast path or by hand, cannot be read by Python's
datetime, and a far edge of its range cannot be shown in another time zone: either
took every page that lists the row down. Such values are read as the nearest safe
moment instead (a day inside Python's range, so any time zone can show it), so that the
row can be seen, and corrected, like any other.
"""
from datetime import UTC, date, datetime

from django.db.backends.postgresql.psycopg_any import BaseTzLoader
from django_tenants.postgresql_backend.base import DatabaseWrapper as TenantDatabaseWrapper
from psycopg import DataError
from psycopg.types.datetime import DateLoader

SAFE_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
SAFE_LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def _lenient_timestamptz(tz):
    class LenientTzLoader(BaseTzLoader):
        timezone = tz  # Django's create_cursor compares it with the connection's

        def load(self, data):
            try:
                value = super().load(data)
            except DataError:  # BC or -infinity, after 9999 or infinity
                value = SAFE_EARLIEST if bytes(data).endswith(b"BC") or bytes(data).startswith(b"-") else SAFE_LATEST
                return value if self.timezone is None else value.astimezone(self.timezone)
            return max(min(value, SAFE_LATEST), SAFE_EARLIEST) if value.tzinfo else value

    return LenientTzLoader


class LenientDateLoader(DateLoader):
    def load(self, data):
        try:
            return super().load(data)
        except DataError:
            return date.min if bytes(data).endswith(b"BC") or bytes(data).startswith(b"-") else date.max


class DatabaseWrapper(TenantDatabaseWrapper):
    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        connection.adapters.register_loader("timestamptz", _lenient_timestamptz(self.timezone))
        connection.adapters.register_loader("date", LenientDateLoader)
        return connection
