"""Finding residents by what a person types: kanji, kana in hiragana or katakana, full-
or half-width, a 2-character surname, part of a phone number or of an address.

pg_trgm does not use its index for 1-2 character Japanese patterns, so each resident
carries its own grams (`Resident.search_grams`, GIN-indexed): every character and every
pair of characters of its normalised name, furigana and address, and every run of up to
three digits of its phone numbers, municipal number and postal code. A query is
normalised the same way; the rows whose grams contain all of the query's grams are
then checked against the whole normalised text (`search_text`), so the index narrows
and the text decides.
"""
import re
import unicodedata

from django.db.models import QuerySet

# The fields a search reads; saving any of them recomputes the search columns.
TEXT_FIELDS = ("name", "furigana", "address")
DIGIT_FIELDS = ("phone", "mobile_phone", "external_id", "postal_code")
SOURCE_FIELDS = TEXT_FIELDS + DIGIT_FIELDS
# Between fields in search_text: never in a normalised query, so no match spans two fields.
FIELD_SEPARATOR = "\x1f"
MAX_QUERY = 100

_KATAKANA = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}
_IGNORED = re.compile(r"[\s・\-‐―‑–—()]+")
# After NFKC: digits with the separators people type between them (「ー」 too, from an IME).
_DIGITS_ONLY = re.compile(r"[0-9\-‐―‑–—()ー\s]+")


def normalise(text: str) -> str:
    """Width folded (NFKC), katakana as hiragana, lower case, without spaces, middle
    dots, hyphens and brackets: 「ﾀﾅｶ ﾊﾅｺ」, 「タナカ・ハナコ」 and 「たなか はなこ」 are one text."""
    folded = unicodedata.normalize("NFKC", text or "").translate(_KATAKANA).lower()
    return _IGNORED.sub("", folded)


def digits(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text or "") if ch.isdigit())


def grams_of(text: str, longest: int) -> set[str]:
    return {text[i:i + n] for n in range(1, longest + 1) for i in range(len(text) - n + 1)}


def resident_search_fields(resident) -> tuple[str, list[str]]:
    """(search_text, search_grams) of a resident's current fields."""
    texts = [normalise(getattr(resident, field)) for field in TEXT_FIELDS]
    numbers = [digits(getattr(resident, field)) for field in DIGIT_FIELDS]
    grams: set[str] = set()
    for text in texts:
        grams |= grams_of(text, 2)
    for number in numbers:
        grams |= grams_of(number, 3)
    return FIELD_SEPARATOR.join(texts + numbers), sorted(grams)


def query_grams(query: str) -> tuple[str, list[str]]:
    """The normalised query and the grams a row must contain; ("", []) for nothing to find.
    A query of digits (and hyphens) is a phone or municipal number: matched on digits."""
    query = unicodedata.normalize("NFKC", (query or "")[:MAX_QUERY])
    if _DIGITS_ONLY.fullmatch(query) and digits(query):
        text = digits(query)
        return text, sorted(grams_of(text, 3) if len(text) < 3 else {text[i:i + 3] for i in range(len(text) - 2)})
    text = normalise(query)
    if not text:
        return "", []
    return text, sorted({text} if len(text) == 1 else {text[i:i + 2] for i in range(len(text) - 1)})


def search_residents(residents: QuerySet, query: str) -> QuerySet:
    """`residents` narrowed to those matching `query` (all of it, as typed); unchanged
    for an empty query."""
    text, grams = query_grams(query)
    if not text:
        return residents
    return residents.filter(search_grams__contains=grams, search_text__contains=text)
