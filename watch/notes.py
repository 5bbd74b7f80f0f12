"""The one rule for notes people write (of a contact, a concern, a visit)."""
from django.utils.translation import gettext as _


def note_problems(note: str, limit: int) -> list[str]:
    """What is wrong with a note, [] when nothing is (an empty note is fine): only spaces
    (which would look like a note and say nothing), or longer than `limit` once trimmed."""
    if note and not note.strip():
        return [_("The note is only spaces: write something or leave it empty.")]
    if len(note.strip()) > limit:
        return [_("The note is too long (at most %(max)d characters).") % {"max": limit}]
    return []
