"""Template filters that ask watch.access, so no template restates a visibility rule."""
from django import template

from watch.access import note_visible_to

register = template.Library()


@register.filter
def note_for(entry, user) -> str:
    """The note of a contact (logged_by) or a concern event (actor), if `user` may read it; else ""."""
    author_id = entry.logged_by_id if hasattr(entry, "logged_by_id") else entry.actor_id
    return entry.note if entry.note and note_visible_to(user, author_id) else ""
