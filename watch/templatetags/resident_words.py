"""A resident's record in words: rhythms (「いずれかの連絡：7日ごと（猶予12時間）」),
durations and watch-over status, never a raw timedelta or a code (watch.records)."""
from django import template

from watch import records

register = template.Library()


@register.filter
def rhythm_words(rhythm) -> str:
    return records.rhythm_words(**records.rhythm_spec(rhythm))


@register.filter
def status_words(status: str) -> str:
    return records.status_words(status)


@register.filter
def form_errors_for(form_errors: dict, key: str) -> dict:
    """The messages of the resident page's form `key` (a URL name), by field."""
    return (form_errors or {}).get(key, {})
