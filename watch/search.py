"""Finding residents by what a person types: kanji, kana in hiragana or katakana, full-
or half-width, a 2-character surname, part of a phone number or of an address.

pg_trgm does not use its index for 1-2 character Japanese patterns, so each resident
carries its own grams (`Resident.search_grams`, GIN-indexed): every character and every
pair of characters of its normalised name, furigana and address, and every run of up to
three digits of its phone numbers, municipal number and postal code. A query is
normalised the same way; the rows whose grams contain all of the query's grams are
then checked against the whole normalised text (`search_text`), so the index narrows
and the text decides. A query no longer than a gram (「田中」, 「321」) is decided by the
index alone.
"""
import re
import unicodedata
from datetime import timedelta

from django import forms
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet, Value
from django.db.models.functions import StrIndex
from django.db.models.lookups import GreaterThan
from django.forms.utils import flatatt
from django.http import Http404
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from watch.access import areas_for_user, can_see_sensitive, residents_for_user
from watch.models import Device, Resident

# The fields a search reads; saving any of them recomputes the search columns.
TEXT_FIELDS = ("name", "furigana", "address")
DIGIT_FIELDS = ("phone", "mobile_phone", "external_id", "postal_code")
SOURCE_FIELDS = TEXT_FIELDS + DIGIT_FIELDS
# Between fields in search_text: never in a normalised query, so no match spans two fields.
FIELD_SEPARATOR = "\x1f"
MAX_QUERY = 100

_KATAKANA = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}
# Old and variant forms (異体字) that registers keep in names, and their common form: a
# person who types 「高橋」 finds 「髙橋」. NFKC leaves them apart.
_VARIANTS = {ord(old): new for old, new in zip(
    "髙﨑嵜碕齋齊邊邉澤濱櫻廣嶋嶌冨德國圓實惠榮槇曾藪條眞淺瀨當莊藏彌靜顯鐵",
    "高崎崎崎斎斉辺辺沢浜桜広島島富徳国円実恵栄槙曽薮条真浅瀬当荘蔵弥静顕鉄", strict=True)}
_FOLDED = {**_KATAKANA, **_VARIANTS}
# Control characters too: NUL cannot reach PostgreSQL, FIELD_SEPARATOR must not match.
_IGNORED = re.compile(r"[\s\x00-\x1f\x7f・\-‐―‑–—()]+")
# After NFKC: digits with the separators people type between them (「ー」 too, from an IME).
_DIGITS_ONLY = re.compile(r"[0-9\-‐―‑–—()ー\s]+")


def normalise(text: str) -> str:
    """Width folded (NFKC), katakana as hiragana, variant kanji in their common form, lower
    case, without spaces, middle dots, hyphens and brackets: 「ﾀﾅｶ ﾊﾅｺ」, 「タナカ・ハナコ」 and
    「たなか はなこ」 are one text, and so are 「髙橋」 and 「高橋」."""
    folded = unicodedata.normalize("NFKC", text or "").translate(_FOLDED).lower()
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
    A query of digits (and hyphens) is a phone or municipal number: matched on digits.
    A query as short as the grams is its own one gram (「田中」, 「321」)."""
    query = unicodedata.normalize("NFKC", (query or "")[:MAX_QUERY])
    if _DIGITS_ONLY.fullmatch(query) and digits(query):
        text, size = digits(query), 3
    else:
        text, size = normalise(query), 2
    if not text:
        return "", []
    if len(text) <= size:
        return text, [text]
    return text, sorted({text[i:i + size] for i in range(len(text) - size + 1)})


def search_residents(residents: QuerySet, query: str) -> QuerySet:
    """`residents` narrowed to those matching `query` (all of it, as typed); unchanged
    for an empty query."""
    text, grams = query_grams(query)
    if not text:
        return residents
    residents = residents.filter(search_grams__contains=grams)
    if grams == [text]:
        # Every substring that short is a gram of its own field: the index alone decides.
        return residents
    # strpos rather than LIKE: nothing to escape, and the planner does not take a match
    # of the whole text for rare (LIKE '%..%' is estimated at a few rows, then joins loop).
    return residents.filter(GreaterThan(StrIndex("search_text", Value(text)), 0))


# Filters of every list of residents (the overview page and GET /api/v1/residents/) ------
YES, NO = "true", "false"
MAX_DAYS = 3650


class YesNoField(forms.ChoiceField):
    """"true", "false" or nothing (either); any other value is refused, not ignored."""

    def __init__(self, **kwargs):
        super().__init__(required=False, choices=[("", _("Either")), (YES, _("Yes")), (NO, _("No"))], **kwargs)

    def clean(self, value):
        value = super().clean(value)
        return None if value == "" else value == YES


class ManyOptionsSelect(forms.Select):
    """A select built in Python: Django renders each option through two templates, which
    costs milliseconds per page with a municipality's hundred areas."""

    def render(self, name, value, attrs=None, renderer=None):
        chosen = "" if value is None else str(value)
        options = format_html_join("", "<option value=\"{}\"{}>{}</option>", (
            (key, " selected" if str(key) == chosen else "", label)
            for key, label in self.choices))
        return format_html("<select name=\"{}\"{}>{}</select>", name, flatatt(self.build_attrs(self.attrs, attrs)),
                           options)


class ResidentFilter(forms.Form):
    """What a person may narrow a list of residents by. Its errors are per field, in the
    person's language; an area that is not one of the person's is a 404, as a missing one."""

    q = forms.CharField(label=_("Search"), required=False, widget=forms.SearchInput(attrs={"maxlength": MAX_QUERY}),
                        help_text=_(
        "Name, kana, phone number or part of the address. 「たなか」 also finds 「タナカ」 and 「ﾀﾅｶ」."))
    area = forms.IntegerField(label=_("Area"), required=False, min_value=1,
                              max_value=connection.ops.integer_field_range("BigAutoField")[1],
                              help_text=_("An area and every area under it."))
    overdue = YesNoField(label=_("Overdue"))
    consent = forms.ChoiceField(label=_("Consent"), required=False,
                                choices=[("", _("Any")), *Resident.Consent.choices])
    needs_evacuation_support = YesNoField(label=_("Needs help to evacuate"))
    has_device = YesNoField(label=_("Has an active device"))
    no_contact_days = forms.IntegerField(
        label=_("No contact for (days)"), required=False, min_value=1, max_value=MAX_DAYS,
        help_text=_("No contact logged in this many days, or never."))

    # Shown only with the sensitive parts of a record (the resident page shows devices and
    # consent to those roles alone): for others these filters are not there, and ignored.
    SENSITIVE_FILTERS = ("consent", "has_device")

    def __init__(self, data, *, user):
        super().__init__(data, label_suffix="")
        self.user = user
        self.area = None
        if not can_see_sensitive(user):
            for name in self.SENSITIVE_FILTERS:
                del self.fields[name]

    @cached_property
    def areas(self) -> QuerySet:
        """The person's areas (asked only when an area is chosen or offered: one query less)."""
        return areas_for_user(self.user).only("pk", "name", "full_name", "path")

    @property
    def narrows(self) -> bool:
        """Whether a filter besides the text is set (or refused): the page shows them open."""
        return any(self.data.get(name) for name in self.fields if name != "q") or bool(self.errors)

    def offer_areas(self) -> "ResidentFilter":
        """For a page: the area is chosen from the person's areas, shown with their full path."""
        self.fields["area"].widget = ManyOptionsSelect(
            choices=[("", _("All my areas")), *((area.pk, str(area)) for area in self.areas)])
        return self

    def clean_q(self) -> str:
        return self.cleaned_data["q"][:MAX_QUERY]

    def clean_area(self):
        area_id = self.cleaned_data["area"]
        if area_id is not None:
            self.area = self.areas.filter(pk=area_id).first()
            if self.area is None:
                raise Http404
        return area_id


def filter_residents(user, params) -> tuple[QuerySet, ResidentFilter]:
    """The residents `user` may see (watch.access, always), narrowed by `params` (a
    QueryDict: q, area, overdue, consent, needs_evacuation_support, has_device,
    no_contact_days), and the bound ResidentFilter. A value that is not valid narrows
    nothing and leaves its message in `form.errors` (the caller answers 400)."""
    form = ResidentFilter(params, user=user)
    form.is_valid()
    data = form.cleaned_data
    residents = search_residents(residents_for_user(user), data.get("q", ""))
    if form.area is not None:
        residents = residents.filter(area__path__startswith=form.area.path)
    for field in ("overdue", "needs_evacuation_support"):
        if data.get(field) is not None:
            residents = residents.filter(**{"is_overdue" if field == "overdue" else field: data[field]})
    if data.get("consent"):
        residents = residents.filter(consent=data["consent"])
    if data.get("has_device") is not None:
        active = Exists(Device.objects.filter(resident=OuterRef("pk"), revoked_at=None))
        residents = residents.filter(active if data["has_device"] else ~active)
    if data.get("no_contact_days"):
        since = timezone.now() - timedelta(days=data["no_contact_days"])
        residents = residents.filter(Q(last_contact_at__lt=since) | Q(last_contact_at=None))
    return residents, form
