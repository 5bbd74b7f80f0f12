"""A resident's history: every change to the record, who made it and when.

Actions that change a resident call `record_change` inside their transaction; the
resident page shows the rows (watch.models.ResidentChange)."""
from datetime import date, datetime

from django.db import models

from watch.models import ResidentChange


def _stored(value):
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def diff(before: dict, after: dict) -> dict:
    """{field: [before, after]} of the fields whose value changed."""
    return {name: [_stored(before.get(name)), _stored(value)] for name, value in after.items()
            if _stored(before.get(name)) != _stored(value)}


def record_change(*, resident, actor, kind: str, changes: dict | None = None) -> ResidentChange:
    """Record one change of `resident` by `actor` (None: the platform itself)."""
    return ResidentChange.objects.create(resident=resident, actor=actor, kind=kind, changes=changes or {})
