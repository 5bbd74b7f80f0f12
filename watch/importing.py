"""Importing a residents' list (住民名簿) from the CSV files municipal offices export
from Excel: Windows-31J or UTF-8 (with or without BOM), headers named as each system
names them, 和暦 dates, values written as people type them.

Each field of the list is defined once (`FIELDS`): its header, the other names systems
give it, and for fields with choices every written value that means each choice. A
tenant's own choices for columns and values the definitions do not know are saved
(ImportMapping, ImportValueMapping) and used for the next file.

`check_import` reads and validates every record and changes nothing; `do_import_residents`
validates again and creates the residents, their areas, consent and emergency contacts
in one transaction, only when the whole file is clean. Errors name the record by its
row as Excel numbers it (the header is row 1; a cell with line breaks is still one row)
and the column by its header as written in the file.

An ImportJob holds an uploaded file from upload through mapping to the import, which
runs in a Celery task for large files (`do_run_import_job`, the same rules either way).
"""
import csv
import hashlib
import io
import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.http import Http404
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from tenants.accounts.models import User
from tenants.tasks import enqueue_on_commit
from watch.access import area_scope
from watch.actions import (
    check_can_manage_residents,
    do_add_emergency_contact,
    do_create_area,
    do_create_resident,
    do_record_consent,
)
from watch.models import (
    Area,
    EmergencyContact,
    ImportJob,
    ImportMapping,
    ImportValueMapping,
    Resident,
    ResidentChange,
)

logger = logging.getLogger(__name__)


# Normalising what people type.
def _nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip()


_BRACKETS = re.compile(r"[\s()\[\]{}<>「」『』【】〔〕〈〉《》・.。:*※]")


def header_key(header: str) -> str:
    """How headers are compared: 氏名（カナ）, 氏名(ｶﾅ) and 氏名 カナ are one header."""
    return _BRACKETS.sub("", _nfkc(header.lstrip("\ufeff"))).lower()


def value_key(value: str) -> str:
    """How written values are compared: width, case and spaces do not count (有 , ｱﾘ, あり)."""
    return re.sub(r"\s+", "", _nfkc(value)).upper()


# The fields of a residents' list, each defined once.
@dataclass(frozen=True)
class Field:
    key: str
    header: str  # the header of our own export format
    # Other names for it; compared by header_key, so ﾌﾘｶﾞﾅ is フリガナ and 氏名(漢字) is 氏名（漢字）.
    label: str  # what the mapping page calls it (lazy)
    synonyms: tuple[str, ...] = ()
    required: bool = False
    # Written values (as value_key) → the code stored; None for free text.
    values: dict[str, str] | None = None
    choices: tuple[tuple[str, str], ...] = ()  # (code, label) offered for an unknown value


def _spellings(meanings: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {value_key(spelling): code for code, spellings in meanings.items() for spelling in spellings}


YES, NO = "yes", "no"
_CIRCLES, _CROSSES = ("○", "〇", "◯", "●"), ("×", "✕", "✖", "X")

FIELDS = (
    Field("number", "番号", gettext_lazy("Number (番号)"),
          ("住民番号", "個人番号", "管理番号", "整理番号", "宛名番号", "識別番号", "No", "ID"), required=True),
    Field("name", "氏名", gettext_lazy("Name"),
          ("氏名（漢字）", "名前", "漢字氏名", "本人氏名", "対象者氏名"), required=True),
    Field("furigana", "フリガナ", gettext_lazy("Furigana"),
          ("ふりがな", "氏名（カナ）", "氏名（フリガナ）", "カナ氏名", "カナ", "よみがな", "読み仮名")),
    Field("gender", "性別", gettext_lazy("Gender"), ("男女", "男女別"),
          values=_spellings({
              Resident.Gender.FEMALE: ("女", "女性", "F"), Resident.Gender.MALE: ("男", "男性", "M"),
              Resident.Gender.OTHER: ("その他",), Resident.Gender.UNKNOWN: ("不明", "未記入", ""),
          }),
          choices=tuple(Resident.Gender.choices)),
    Field("birth_date", "生年月日", gettext_lazy("Date of birth"), ("生年月日（和暦）", "誕生日"),
          required=True),
    Field("postal_code", "郵便番号", gettext_lazy("Postal code"), ("〒", "郵便")),
    Field("address", "住所", gettext_lazy("Address"), ("現住所", "所在地", "住所地")),
    Field("phone", "電話番号", gettext_lazy("Phone"),
          ("電話", "自宅電話", "自宅電話番号", "固定電話", "電話番号（自宅）", "TEL")),
    Field("mobile", "携帯電話", gettext_lazy("Mobile phone"), ("携帯", "携帯番号", "携帯電話番号", "携帯TEL")),
    Field("household", "世帯区分", gettext_lazy("Household"), ("世帯", "世帯構成", "世帯状況", "世帯類型"),
          values=_spellings({
              Resident.Household.LIVING_ALONE: ("独居", "独居世帯", "ひとり暮らし", "一人暮らし", "独り暮らし",
                                                "単身", "単身世帯", "独居高齢者", "高齢者独居"),
              Resident.Household.ELDERLY_ONLY: ("高齢者のみ", "高齢者のみ世帯", "高齢者世帯", "高齢世帯",
                                                "高齢夫婦", "高齢者夫婦", "高齢者夫婦のみ"),
              Resident.Household.ALONE_DAYTIME: ("日中独居", "日中独居世帯", "日中ひとり"),
              Resident.Household.SINGLE_PARENT: ("ひとり親", "ひとり親世帯", "一人親", "一人親世帯", "母子世帯",
                                                 "父子世帯", "母子家庭", "父子家庭"),
              Resident.Household.OTHER: ("その他", ""),
          }),
          choices=tuple(Resident.Household.choices)),
    Field("care_level", "要介護度", gettext_lazy("Care level"), ("介護度", "要介護認定", "要介護状態区分", "介護認定")),
    Field("district", "地区", gettext_lazy("District"), ("地区名", "地域", "地域名"), required=True),
    Field("association", "自治会", gettext_lazy("Residents' association"),
          ("自治会名", "町内会", "町内会名", "自治会・町内会"), required=True),
    Field("block", "班", gettext_lazy("Block"), ("班名", "組", "隣組")),
    Field("evacuation", "避難支援", gettext_lazy("Needs help to evacuate"),
          ("避難支援の要否", "避難支援要否", "避難行動要支援", "避難支援の必要"),
          values=_spellings({
              YES: ("要", "必要", "有", "あり", "はい", "要支援", *_CIRCLES),
              NO: ("不要", "無", "なし", "いいえ", "", *_CROSSES),
          }),
          choices=((YES, gettext_lazy("Needs help to evacuate")), (NO, gettext_lazy("Does not need help")))),
    Field("consent", "名簿提供同意", gettext_lazy("Consent to share"),
          ("同意", "同意の有無", "同意有無", "情報提供同意", "提供同意", "同意状況", "名簿掲載同意", "同意確認"),
          values=_spellings({
              Resident.Consent.GIVEN: ("同意", "同意する", "同意あり", "同意済", "有", "あり", "済", "はい", "可",
                                       *_CIRCLES),
              Resident.Consent.REFUSED: ("不同意", "同意しない", "同意なし", "無", "なし", "いいえ", "否", "拒否",
                                         *_CROSSES),
              Resident.Consent.NOT_ANSWERED: ("未回答", "未", "未確認", "回答なし", ""),
          }),
          choices=tuple((c, label) for c, label in Resident.Consent.choices if c != Resident.Consent.WITHDRAWN)),
    Field("contact_name", "緊急連絡先氏名", gettext_lazy("Emergency contact's name"),
          ("緊急連絡先", "緊急連絡先名", "連絡先氏名")),
    Field("contact_relation", "続柄", gettext_lazy("Emergency contact's relation"), ("緊急連絡先続柄", "続き柄")),
    Field("contact_phone", "緊急連絡先電話", gettext_lazy("Emergency contact's phone"),
          ("緊急連絡先電話番号", "緊急連絡先TEL", "連絡先電話番号")),
    Field("notes", "備考", gettext_lazy("Notes for visitors"), ("メモ", "特記事項")),
)
FIELD_BY_KEY = {f.key: f for f in FIELDS}
FIELD_KEYS = tuple(FIELD_BY_KEY)
REQUIRED = tuple(f.key for f in FIELDS if f.required)
CHOICE_FIELDS = tuple(f.key for f in FIELDS if f.values is not None)
_BY_HEADER = {header_key(spelling): f.key for f in FIELDS for spelling in (f.header, *f.synonyms)}
IGNORE = ""  # a column the import leaves out
AREA_LEVELS = (("district", Area.Kind.DISTRICT), ("association", Area.Kind.ASSOCIATION), ("block", Area.Kind.BLOCK))

# 和暦: name, Latin abbreviation, one-kanji abbreviation, first and last day.
ERAS = (
    ("明治", "M", "明", date(1868, 1, 25), date(1912, 7, 29)),
    ("大正", "T", "大", date(1912, 7, 30), date(1926, 12, 24)),
    ("昭和", "S", "昭", date(1926, 12, 25), date(1989, 1, 7)),
    ("平成", "H", "平", date(1989, 1, 8), date(2019, 4, 30)),
    ("令和", "R", "令", date(2019, 5, 1), None),
)
_ERA_BY_SPELLING = {spelling: era for era in ERAS for spelling in (era[0], era[1], era[2])}
_ERA_DATE = re.compile(
    r"(?P<era>明治|大正|昭和|平成|令和|[明大昭平令MTSHR])(?P<year>元|\d{1,2})(?:年|[./-])"
    r"(?P<month>\d{1,2})(?:月|[./-])(?P<day>\d{1,2})日?"
)
_WESTERN_DATE = re.compile(r"(?P<year>\d{4})(?:年|[./-])(?P<month>\d{1,2})(?:月|[./-])(?P<day>\d{1,2})日?")
_KANJI_DIGITS = "〇一二三四五六七八九"
_KANJI_NUMBER = re.compile("[〇一二三四五六七八九十]+")
_COMPACT_DATE = re.compile(r"(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})")

# Dashes people type in phone numbers and postal codes that NFKC leaves alone.
_DASHES = str.maketrans({c: "-" for c in "‐‑‒–—―−ー"})
_PHONE_SEPARATORS = re.compile(r"[\s()\-.]+")
_PHONE = re.compile(r"\+?\d+(?:-\d+)*")
_POSTAL_CODE = re.compile(r"\d{3}-\d{4}")
# Characters defined only on the exporting computer (外字): they show as blanks elsewhere.
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")
# Control characters never found in a text file (a byte stream that merely decoded).
_BINARY = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
SAMPLE_VALUES = 3  # shown per column on the mapping page


class ImportFileError(Exception):
    """The file cannot be read as a residents' list at all."""


class RowError(Exception):
    """One field of one record is wrong; `field` is its key in FIELDS."""

    def __init__(self, field_key: str, message: str):
        super().__init__(message)
        self.field = field_key
        self.message = message


@dataclass(frozen=True)
class LineError:
    line: int | None  # the row as Excel numbers it (the header is row 1); None: the whole file
    field: str  # the column's header as written in the file, or "" for the whole record or file
    message: str


@dataclass
class PlannedResident:
    """A record that passed every check: what will be created for it."""

    line: int  # its row, as Excel numbers it
    area_names: tuple[str, ...]  # district, association[, block], as written
    fields: dict  # keyword arguments of do_create_resident besides area and name
    name: str
    consent: str
    emergency_contact: dict | None = None

    @property
    def external_id(self) -> str:
        return self.fields["external_id"]

    @property
    def area_label(self) -> str:
        return " › ".join(self.area_names)

    @property
    def consent_label(self) -> str:
        return Resident.Consent(self.consent).label


@dataclass
class ImportReport:
    encoding: str = ""
    row_count: int = 0  # records read (blank rows not counted)
    rows: list[PlannedResident] = field(default_factory=list)  # the records without errors
    errors: list[LineError] = field(default_factory=list)
    new_areas: list[tuple[str, ...]] = field(default_factory=list)  # paths of areas to create
    fatal: bool = False  # the file could not be read as a residents' list
    needs_mapping: bool = False  # its columns must be mapped to fields first
    imported: list[Resident] = field(default_factory=list)  # filled by a successful import
    created_areas: list[Area] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def committed(self) -> bool:
        return bool(self.imported)

    @property
    def error_lines(self) -> list[int]:
        """The rows with errors, as Excel numbers them."""
        return sorted({e.line for e in self.errors if e.line is not None})

    def add_error(self, line: int | None, column: str, message: str) -> None:
        self.errors.append(LineError(line, column, message))


# Reading the file.
def decode_csv_bytes(data: bytes) -> tuple[str, str]:
    """(text, encoding) of a CSV file in UTF-8 (with or without BOM) or Windows-31J.

    Strict shift_jis would reject 髙, 﨑 and the other NEC/IBM characters Excel writes."""
    if not data.strip():
        raise ImportFileError(_("The file is empty."))
    for encoding in ("utf-8-sig", "cp932"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        break
    else:
        raise ImportFileError(_("The file is neither UTF-8 nor Shift_JIS (Windows-31J) text. "
                                "In Excel, save it as “CSV UTF-8” or “CSV”."))
    text = text.rstrip("\x1a")  # an old DOS end-of-file mark
    if _BINARY.search(text):
        raise ImportFileError(_("This is not a CSV text file. In Excel, use “Save as” and choose “CSV”."))
    return text, "utf-8" if encoding == "utf-8-sig" else encoding


@dataclass
class Table:
    """A CSV file read whole: its headers as written and its non-blank records."""

    encoding: str
    headers: list[str]
    records: list[tuple[int, list[str]]]  # (row as Excel numbers it, cells padded to the headers)
    too_long: list[tuple[int, int]]  # (row, values) of records with values beyond the last header

    def samples(self, index: int) -> list[str]:
        """The first few different values of a column, for the mapping page."""
        found: list[str] = []
        for _row, cells in self.records:
            value = cells[index].strip()
            if value and value not in found:
                found.append(value)
                if len(found) == SAMPLE_VALUES:
                    break
        return found

    @property
    def signature(self) -> str:
        """Files with the same headers (as compared) share a saved mapping."""
        return hashlib.sha256("\x1f".join(header_key(h) for h in self.headers).encode()).hexdigest()


def read_table(data: bytes) -> Table:
    """The file's header row and records; raises ImportFileError when it is no CSV list."""
    text, encoding = decode_csv_bytes(data)
    reader = csv.reader(io.StringIO(text, newline=""))
    records, too_long = [], []
    try:
        # Excel's numbering: one row per record, a cell with line breaks included; blank rows count.
        rows = enumerate(reader, start=1)
        headers = next((cells for _row, cells in rows), [])
        headers = [h.lstrip("\ufeff").strip() for h in headers]
        while headers and not headers[-1]:
            headers.pop()  # Excel's trailing empty columns
        if not headers:
            raise ImportFileError(_("The first row must name the columns, like 番号,氏名,生年月日,地区,自治会."))
        for row, cells in rows:
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(headers) and any(cell.strip() for cell in cells[len(headers):]):
                too_long.append((row, len(cells)))
                continue
            records.append((row, (cells + [""] * len(headers))[:len(headers)]))
    except csv.Error as exc:
        raise ImportFileError(_("The file is not valid CSV near row %(line)d: %(error)s")
                              % {"line": reader.line_num, "error": exc}) from None
    return Table(encoding, headers, records, too_long)


# Columns.
def suggest_columns(table: Table) -> list[str | None]:
    """Per column of the file: the field its header names, IGNORE for an empty column
    without a header, or None when the header is not known."""
    columns: list[str | None] = []
    for index, header in enumerate(table.headers):
        key = _BY_HEADER.get(header_key(header))
        if key is None and not header and not table.samples(index):
            key = IGNORE
        columns.append(None if key in columns and key != IGNORE else key)  # a field is taken once
    return columns


def column_problems(columns: list[str | None]) -> list[str]:
    """Why these columns cannot be imported (an empty list when they can)."""
    problems = []
    missing = [FIELD_BY_KEY[key].header for key in REQUIRED if key not in columns]
    if missing:
        problems.append(_("No column is chosen for these required fields: %(fields)s.")
                        % {"fields": ", ".join(missing)})
    twice = [FIELD_BY_KEY[key].header for key in FIELD_KEYS if columns.count(key) > 1]
    if twice:
        problems.append(_("These fields are chosen for more than one column: %(fields)s.")
                        % {"fields": ", ".join(twice)})
    if None in columns:
        problems.append(_("Choose a field for every column, or ignore it."))
    return problems


def saved_columns(table: Table) -> list[str] | None:
    """The tenant's saved mapping for files with these headers, if any still fits."""
    mapping = ImportMapping.objects.filter(signature=table.signature).first()
    if mapping is None or len(mapping.columns) != len(table.headers):
        return None
    columns = [key if key in FIELD_BY_KEY else IGNORE for key in mapping.columns]
    return None if column_problems(columns) else columns


def columns_for(table: Table) -> list[str] | None:
    """The columns to import with, when no person needs to choose: the saved mapping,
    or every header known by its name."""
    saved = saved_columns(table)
    if saved is not None:
        return saved
    suggested = suggest_columns(table)
    return None if column_problems(suggested) else suggested


def _unmappable(table: Table) -> str | None:
    """Why no mapping can make this file a residents' list: every header is known and
    required ones are missing (a person has nothing left to choose)."""
    suggested = suggest_columns(table)
    missing = [FIELD_BY_KEY[key].header for key in REQUIRED if key not in suggested]
    if missing and None not in suggested:
        return (_("The header row lacks the required columns: %(columns)s. The first row must name the columns, "
                  "like 番号,氏名,生年月日,地区,自治会.") % {"columns": ", ".join(missing)})
    return None


def _mapping_needed(table: Table) -> str:
    suggested = suggest_columns(table)
    unknown = [table.headers[i] or _("(column %(number)d, no header)") % {"number": i + 1}
               for i, key in enumerate(suggested) if key is None]
    missing = [FIELD_BY_KEY[key].header for key in REQUIRED if key not in suggested]
    parts = []
    if unknown:
        parts.append(_("These columns are not known: %(columns)s.") % {"columns": ", ".join(unknown)})
    if missing:
        parts.append(_("No column was found for %(fields)s.") % {"fields": ", ".join(missing)})
    parts.append(_("Map the columns on the import page; the mapping is kept for the next file."))
    return " ".join(parts)


# Values.
def value_maps() -> dict[str, dict[str, str]]:
    """Per choice field, every written value (as value_key) the import understands: the
    definitions above and the tenant's own saved choices."""
    maps = {key: dict(FIELD_BY_KEY[key].values) for key in CHOICE_FIELDS}
    for field_key, value, code in ImportValueMapping.objects.values_list("field", "value", "code"):
        if field_key in maps and code in dict(FIELD_BY_KEY[field_key].choices):
            maps[field_key].setdefault(value, code)
    return maps


def unknown_values(table: Table, columns: list[str | None]) -> dict[str, list[str]]:
    """Per choice field mapped to a column, the values of the file the import does not
    understand (each once, as first written)."""
    maps = value_maps()
    found: dict[str, dict[str, str]] = {}
    for index, key in enumerate(columns):
        if key not in maps:
            continue
        for _row, cells in table.records:
            written = cells[index].strip()
            if value_key(written) not in maps[key]:
                found.setdefault(key, {}).setdefault(value_key(written), written)
    return {key: list(values.values()) for key, values in found.items()}


def normalize_phone(value: str) -> str:
    """One rule for every phone number: full-width digits to ASCII, and any run of
    separators (spaces, dashes of any kind, brackets, dots) to one hyphen:
    (0796)22-1234 → 0796-22-1234, ０７７４ ６２ ５６７８ → 0774-62-5678."""
    text = _nfkc(value).translate(_DASHES)
    return _PHONE_SEPARATORS.sub("-", text).strip("-")


def normalize_furigana(value: str) -> str:
    """Half-width katakana and hiragana to full-width katakana, spaces collapsed: ﾔﾏｻﾞｷ → ヤマザキ."""
    text = re.sub(r"\s+", " ", _nfkc(value))
    return "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in text)


def normalize_name(value: str) -> str:
    """Spaces (full-width ones too) collapsed; the characters kept as written: NFKC would
    turn 﨑 into 崎."""
    return re.sub(r"\s+", " ", value).strip()


def normalize_postal_code(value: str) -> str:
    text = re.sub(r"\s+", "", _nfkc(value).translate(_DASHES)).removeprefix("〒")
    return f"{text[:3]}-{text[3:]}" if re.fullmatch(r"\d{7}", text) else text


def parse_birth_date(value: str, *, today: date | None = None) -> date:
    """A date written as 昭和13年4月1日, 昭13.4.1, S13.4.1 (or with - or /), 1938/4/1,
    1938-04-01, 1938年4月1日 or 19380401, full-width or kanji digits allowed; 元年 is year 1.

    Raises ValueError with a message for a date that cannot be read, does not exist,
    lies outside its era, or is in the future."""
    text = _KANJI_NUMBER.sub(_kanji_to_digits, re.sub(r"\s+", "", _nfkc(value)))
    today = today or timezone.localdate()
    if match := _ERA_DATE.fullmatch(text.upper()):
        era_name, _latin, _kanji, first, last = _ERA_BY_SPELLING[match["era"]]
        era_year = 1 if match["year"] == "元" else int(match["year"])
        if era_year < 1:
            raise ValueError(_("%(value)s: there is no year 0 in an era; the first year is 元年 (1).")
                             % {"value": value})
        born = _real_date(value, first.year + era_year - 1, int(match["month"]), int(match["day"]))
        if born < first or (last is not None and born > last):
            if last is None:
                message = _("%(value)s does not exist: %(era)s began on %(first)s.")
            else:
                message = _("%(value)s does not exist: %(era)s ran from %(first)s to %(last)s.")
            raise ValueError(message % {"value": value, "era": era_name, "first": first.isoformat(),
                                        "last": last.isoformat() if last else ""})
    elif match := (_WESTERN_DATE.fullmatch(text) or _COMPACT_DATE.fullmatch(text)):
        born = _real_date(value, int(match["year"]), int(match["month"]), int(match["day"]))
    else:
        raise ValueError(_("“%(value)s” is not a date that can be read. Write it like 昭和13年4月1日, "
                           "S13.4.1 or 1938/04/01.") % {"value": value})
    if born > today:
        raise ValueError(_("%(value)s is in the future.") % {"value": value})
    return born


def _kanji_to_digits(match: re.Match) -> str:
    """十三 → 13, 二十五 → 25, 一九四一 → 1941 (older lists write dates in kanji)."""
    run = match.group()
    if "十" not in run:
        return "".join(str(_KANJI_DIGITS.index(c)) for c in run)
    tens, _ten, ones = run.partition("十")
    if len(tens) > 1 or len(ones) > 1:
        return run  # not a number up to 99: left for the "cannot be read" message
    return str((_KANJI_DIGITS.index(tens) if tens else 1) * 10 + (_KANJI_DIGITS.index(ones) if ones else 0))


def _real_date(value: str, year: int, month: int, day: int) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise ValueError(_("%(value)s is not a real date (there is no such day in that month).")
                         % {"value": value}) from None


# Areas.
class _AreaTree:
    """The tenant's areas by (parent id, name), read once; also remembers areas to create."""

    def __init__(self):
        self.index: dict[tuple[int | None, str], Area] = {
            (area.parent_id, Area.name_key(area.name)): area for area in Area.objects.all()
        }
        self.planned: dict[tuple[str, ...], tuple[str, ...]] = {}  # key path → names as first written

    def find(self, names: tuple[str, ...]) -> tuple[Area | None, int]:
        """The deepest existing area along `names` and how many levels of it exist."""
        parent = None
        for depth, name in enumerate(names):
            area = self.index.get((parent.pk if parent else None, Area.name_key(name)))
            if area is None:
                return parent, depth
            parent = area
        return parent, len(names)

    def plan(self, names: tuple[str, ...], existing_depth: int) -> None:
        for depth in range(existing_depth + 1, len(names) + 1):
            key = tuple(Area.name_key(n) for n in names[:depth])
            self.planned.setdefault(key, names[:depth])

    def get_or_create(self, names: tuple[str, ...], created: list[Area]) -> Area:
        parent = None
        for depth, name in enumerate(names):
            key = (parent.pk if parent else None, Area.name_key(name))
            area = self.index.get(key)
            if area is None:
                area = do_create_area(name=name, kind=AREA_LEVELS[depth][1], parent=parent)
                self.index[key] = area
                created.append(area)
            parent = area
        return parent


# Records.
_MAX_LENGTHS = {
    "number": Resident._meta.get_field("external_id").max_length,
    "name": Resident._meta.get_field("name").max_length,
    "furigana": Resident._meta.get_field("furigana").max_length,
    "postal_code": Resident._meta.get_field("postal_code").max_length,
    "address": Resident._meta.get_field("address").max_length,
    "phone": Resident._meta.get_field("phone").max_length,
    "mobile": Resident._meta.get_field("mobile_phone").max_length,
    "care_level": Resident._meta.get_field("care_level").max_length,
    "district": Area._meta.get_field("name").max_length,
    "association": Area._meta.get_field("name").max_length,
    "block": Area._meta.get_field("name").max_length,
    "contact_name": EmergencyContact._meta.get_field("name").max_length,
    "contact_relation": EmergencyContact._meta.get_field("relation").max_length,
    "contact_phone": EmergencyContact._meta.get_field("phone").max_length,
    "notes": Resident._meta.get_field("visit_notes").max_length,
}
# Resident's model fields → our field keys, for the model's own validation messages.
_MODEL_FIELDS = {
    "external_id": "number", "name": "name", "furigana": "furigana", "gender": "gender",
    "date_of_birth": "birth_date", "postal_code": "postal_code", "address": "address", "phone": "phone",
    "mobile_phone": "mobile", "household": "household", "care_level": "care_level",
    "needs_evacuation_support": "evacuation", "visit_notes": "notes",
}
_CONTACT_FIELDS = {"name": "contact_name", "relation": "contact_relation", "phone": "contact_phone"}


def _phone(row: dict, key: str) -> str:
    phone = normalize_phone(row[key])
    if phone and not _PHONE.fullmatch(phone):
        raise RowError(key, _("“%(value)s” is not a phone number: use digits and hyphens, like 0774-62-1234.")
                       % {"value": row[key]})
    return phone


def _choice(row: dict, key: str, maps: dict[str, dict[str, str]], headers: dict[str, str]) -> str:
    written = row[key]
    code = maps[key].get(value_key(written))
    if code is None:
        raise RowError(key, _("The value “%(value)s” in the column “%(column)s” is not one the import knows. "
                              "Write it as one of %(examples)s, or map it on the import page.")
                       % {"value": written.strip(), "column": headers.get(key, FIELD_BY_KEY[key].header),
                          "examples": _examples(key)})
    return code


def _examples(key: str) -> str:
    """The first spelling of each choice: 同意, 不同意, 未回答."""
    seen: dict[str, str] = {}
    for spelling, code in FIELD_BY_KEY[key].values.items():
        if spelling:
            seen.setdefault(code, spelling)
    return "、".join(seen.values())


def _parse_row(line: int, row: dict, maps: dict, headers: dict) -> tuple[PlannedResident | None, list[RowError]]:
    """Every field of one record: (what to create, []) or (None, an error for each wrong field)."""
    errors: list[RowError] = []
    values: dict = {}

    def take(key, parse):
        try:
            values[key] = parse()
        except RowError as exc:
            errors.append(exc)

    def birth_date():
        try:
            return parse_birth_date(row["birth_date"])
        except ValueError as exc:
            raise RowError("birth_date", str(exc)) from None

    def postal_code():
        code = normalize_postal_code(row["postal_code"])
        if code and not _POSTAL_CODE.fullmatch(code):
            raise RowError("postal_code", _("“%(value)s” is not a postal code: write it like 610-0341.")
                           % {"value": row["postal_code"]})
        return code

    for key in REQUIRED:
        if not row[key].strip():
            errors.append(RowError(key, _("This field is required.")))
    for key, max_length in _MAX_LENGTHS.items():
        if len(row[key].strip()) > max_length:
            errors.append(RowError(key, _("Too long: at most %(max)d characters.") % {"max": max_length}))
    for key in FIELD_KEYS:
        if _PRIVATE_USE.search(row[key]):
            errors.append(RowError(key, _("Contains a character made on the exporting computer (外字) that "
                                          "other computers cannot show. Replace it with a standard character.")))
    for key in CHOICE_FIELDS:
        take(key, lambda key=key: _choice(row, key, maps, headers))
    if row["birth_date"].strip():
        take("birth_date", birth_date)
    take("postal_code", postal_code)
    for key in ("phone", "mobile", "contact_phone"):
        take(key, lambda key=key: _phone(row, key))
    contact_name, relation = normalize_name(row["contact_name"]), row["contact_relation"].strip()
    if not contact_name and (relation or row["contact_phone"].strip()):
        errors.append(RowError("contact_name", _("Give the emergency contact's name as well.")))
    if errors:
        return None, _dedupe(errors)

    fields = {
        "external_id": _nfkc(row["number"]),
        "furigana": normalize_furigana(row["furigana"]),
        "gender": values["gender"],
        "date_of_birth": values["birth_date"],
        "postal_code": values["postal_code"],
        "address": row["address"].strip(),
        "phone": values["phone"],
        "mobile_phone": values["mobile"],
        "household": values["household"],
        "care_level": _nfkc(row["care_level"]),
        "needs_evacuation_support": values["evacuation"] == YES,
        "visit_notes": row["notes"].strip(),
    }
    name = normalize_name(row["name"])
    # Anything else the model rejects, reported against the column it came from.
    try:
        Resident(name=name, **fields).clean_fields(exclude=["area"])
    except ValidationError as exc:
        return None, [RowError(_MODEL_FIELDS.get(key, ""), " ".join(messages))
                      for key, messages in exc.message_dict.items()]
    contact = ({"name": contact_name, "relation": relation, "phone": values["contact_phone"]}
               if contact_name else None)
    return PlannedResident(line=line, area_names=_area_names(row), fields=fields, name=name,
                           consent=values["consent"], emergency_contact=contact), []


def _dedupe(errors: list[RowError]) -> list[RowError]:
    """One message per column: the first found (a required value before its format)."""
    seen: set[str] = set()
    return [e for e in errors if not (e.field in seen or seen.add(e.field))]


def _area_names(row: dict) -> tuple[str, ...] | None:
    """(district, association[, block]) as written, or None when the required two are missing."""
    names = tuple(row[key].strip() for key, _kind in AREA_LEVELS)
    if not (names[0] and names[1]):
        return None
    return names if names[2] else names[:2]


def _outside(names: tuple[str, ...], area: Area | None, depth: int, scope: list[str]) -> tuple[str, str] | None:
    """The error for a record whose area (existing, or to be created under `area`) is not
    in the actor's part of the tree."""
    if area is not None and any(area.path.startswith(path) for path in scope):
        return None
    return AREA_LEVELS[0][0], _("You do not look after %(area)s, so you cannot import residents there.") % {
        "area": " › ".join(names[:max(depth, 1)])}


def _missing_area(names: tuple[str, ...], depth: int) -> tuple[str, str]:
    key = AREA_LEVELS[depth][0]
    hint = _("Register it first, or let the import create missing areas.")
    if depth == 0:
        message = _("There is no district “%(name)s”.") % {"name": names[0]}
    elif depth == 1:
        message = _("There is no residents' association “%(name)s” in %(parent)s.") % {
            "name": names[1], "parent": names[0]}
    else:
        message = _("There is no block “%(name)s” in %(parent)s.") % {"name": names[2], "parent": names[1]}
    return key, f"{message} {hint}"


Progress = Callable[[str, int, int], None]  # (phase, records done, records in all)
CHECKING, CREATING = "checking", "creating"
PROGRESS_EVERY = 100


def _check(data: bytes, *, create_areas: bool, actor: User | None, columns: list[str] | None,
           progress: Progress | None = None) -> tuple[ImportReport, _AreaTree | None]:
    """Every problem of the file, each record checked in full so one dry run shows them all."""
    report = ImportReport()
    try:
        table = read_table(data)
        report.encoding = table.encoding
        if columns is None:
            columns = columns_for(table)
            if columns is None:
                report.needs_mapping = _unmappable(table) is None
                raise ImportFileError(_unmappable(table) or _mapping_needed(table))
        elif len(columns) != len(table.headers) or column_problems(columns):
            raise ImportFileError(" ".join(column_problems(columns)) or _mapping_needed(table))
    except ImportFileError as exc:
        report.fatal = True
        report.errors = [LineError(None, "", str(exc))]
        return report, None
    headers = {key: table.headers[index] for index, key in enumerate(columns) if key}
    position = {key: index for index, key in enumerate(columns) if key}
    column_of = {key: headers.get(key, FIELD_BY_KEY[key].header) for key in FIELD_KEYS}
    maps = value_maps()

    for row, count in table.too_long:
        report.add_error(row, "", _("The row has %(count)d values but the header has %(expected)d columns.")
                         % {"count": count, "expected": len(table.headers)})
    report.row_count = len(table.records) + len(table.too_long)
    if report.row_count == 0:
        report.add_error(None, "", _("The file has no residents below the header row."))
        return report, None

    # (row, 番号, area names, the record's plan or None when a field is wrong)
    candidates: list[tuple[int, str, tuple[str, ...] | None, PlannedResident | None]] = []
    first_row_of: dict[str, int] = {}
    for done, (line, cells) in enumerate(table.records, start=1):
        if progress and done % PROGRESS_EVERY == 0:
            progress(CHECKING, done, len(table.records))
        row = {key: cells[position[key]] if key in position else "" for key in FIELD_KEYS}
        number = _nfkc(row["number"])
        if number and number in first_row_of:
            report.add_error(line, column_of["number"],
                             _("番号 %(number)s is already used on row %(line)d; a resident is imported only once.")
                             % {"number": number, "line": first_row_of[number]})
            continue
        if number:
            first_row_of[number] = line
        planned, errors = _parse_row(line, row, maps, column_of)
        for error in errors:
            report.add_error(line, column_of.get(error.field, ""), error.message)
        candidates.append((line, number, _area_names(row), planned))

    existing = set(Resident.objects.filter(external_id__in=[number for _l, number, _a, _p in candidates if number])
                   .values_list("external_id", flat=True))
    tree = _AreaTree()
    scope = area_scope(actor) if actor is not None else None  # None: anywhere
    for line, number, area_names, planned in candidates:
        clean = planned is not None
        if number in existing:
            clean = False
            report.add_error(line, column_of["number"], _("A resident with 番号 %(number)s is already registered; "
                                                          "the import does not change existing residents.")
                             % {"number": number})
        if area_names:
            area, depth = tree.find(area_names)
            outside = _outside(area_names, area, depth, scope) if scope is not None else None
            if outside:
                clean = False
                report.add_error(line, column_of[outside[0]], outside[1])
            elif depth < len(area_names) and not create_areas:
                clean = False
                key, message = _missing_area(area_names, depth)
                report.add_error(line, column_of[key], message)
            elif depth < len(area_names) and clean:
                tree.plan(area_names, depth)  # only areas that an importable record needs
        if clean:
            report.rows.append(planned)
    report.new_areas = list(tree.planned.values())
    order = {header: index for index, header in enumerate(table.headers)}
    report.errors.sort(key=lambda e: (e.line or 0, order.get(e.field, -1)))
    return report, tree


def check_import(data: bytes, *, create_areas: bool = False, actor: User | None = None,
                 columns: list[str] | None = None) -> ImportReport:
    """Read and validate the whole file without changing anything: every error by row
    and column, and the records (and areas, with create_areas) an import would create.
    Without `columns` the tenant's saved mapping or the known headers are used.
    With `actor`, records outside the areas that person looks after are errors too."""
    report, _tree = _check(data, create_areas=create_areas, actor=actor, columns=columns)
    return report


class _RowFailed(Exception):
    """Creating a record failed after it passed the checks."""

    def __init__(self, line: int, column: str, message: str):
        super().__init__(message)
        self.line, self.field, self.message = line, column, message


def do_import_residents(*, actor: User, data: bytes, create_areas: bool = False, columns: list[str] | None = None,
                        progress: Progress | None = None) -> ImportReport:
    """Import the file all or nothing: when every record is clean, create the residents
    (each with the default rhythm), their consent records, emergency contacts and, with
    create_areas, missing areas, in one transaction. With any error nothing is created
    and the report says why. Existing residents (same 番号) are never changed."""
    check_can_manage_residents(actor)
    try:
        with transaction.atomic():
            report, tree = _check(data, create_areas=create_areas, actor=actor, columns=columns, progress=progress)
            if not report.ok:
                return report
            for done, planned in enumerate(report.rows, start=1):
                _create_resident(actor, planned, tree, report)
                if progress and done % PROGRESS_EVERY == 0:
                    progress(CREATING, done, len(report.rows))
    except IntegrityError:
        # Another import or edit created the same 番号 or area since the check above.
        report.imported, report.created_areas = [], []
        report.add_error(None, "", _("The residents or areas changed while the file was being imported, so nothing "
                                     "was imported. Check the file again and retry."))
    except _RowFailed as failed:
        report.imported, report.created_areas = [], []
        report.add_error(failed.line, failed.field, failed.message)
    return report


def _create_resident(actor: User, planned: PlannedResident, tree: _AreaTree, report: ImportReport) -> None:
    area = tree.get_or_create(planned.area_names, report.created_areas)
    try:
        resident = do_create_resident(area=area, name=planned.name, actor=actor,
                                      change_kind=ResidentChange.Kind.IMPORTED, **planned.fields)
    except ValidationError as exc:  # checked before; kept so a surprise still names its row
        key, messages = next(iter(exc.message_dict.items()))
        raise _RowFailed(planned.line, FIELD_BY_KEY[_MODEL_FIELDS[key]].header if key in _MODEL_FIELDS else "",
                         " ".join(messages)) from exc
    given = planned.consent == Resident.Consent.GIVEN
    do_record_consent(actor=actor, resident=resident, status=planned.consent,
                      share_with_volunteers=given, share_with_association=given)
    if planned.emergency_contact:
        try:
            do_add_emergency_contact(actor=actor, resident=resident, **planned.emergency_contact)
        except ValidationError as exc:  # checked before, as above
            key, messages = next(iter(exc.message_dict.items()))
            raise _RowFailed(planned.line, FIELD_BY_KEY[_CONTACT_FIELDS[key]].header if key in _CONTACT_FIELDS
                             else "", " ".join(messages)) from exc
    report.imported.append(resident)


# Import jobs: an uploaded file from upload through mapping to the import.
SYNC_MAX_ROWS = 200  # larger files are imported by a Celery task, with progress shown


def get_import_job_for_user(user: User, pk: int) -> ImportJob:
    """The job, if this person uploaded it (the file is theirs alone); 404 alike for
    missing and not theirs. Only those who may import get this far (403 otherwise)."""
    check_can_manage_residents(user)
    job = ImportJob.objects.filter(pk=pk, created_by=user).first()
    if job is None:
        raise Http404
    return job


def do_create_import_job(*, actor: User, file_name: str, data: bytes, create_areas: bool) -> ImportJob:
    """Keep an uploaded file for its import, with its columns mapped when no person needs
    to choose. Raises ImportFileError (nothing saved) when it is no residents' list."""
    check_can_manage_residents(actor)
    table = read_table(data)
    columns = columns_for(table)
    if columns is None and (problem := _unmappable(table)):
        raise ImportFileError(problem)
    if not table.records and not table.too_long:
        raise ImportFileError(_("The file has no residents below the header row."))
    return ImportJob.objects.create(
        created_by=actor, file_name=file_name[:ImportJob._meta.get_field("file_name").max_length], data=data,
        encoding=table.encoding, create_areas=create_areas, columns=columns,
        row_count=len(table.records) + len(table.too_long))


def job_table(job: ImportJob) -> Table:
    return read_table(bytes(job.data))


def do_map_import_job(*, actor: User, job: ImportJob, columns: list[str], values: dict[str, dict[str, str]]) -> None:
    """Save how this file's columns (and values the import did not know) map to fields:
    for this job, and for the tenant's next file with the same headers.

    `columns`: per column a field key or IGNORE. `values`: per choice field, written
    value → code. Raises ValidationError with the reasons when they cannot be used."""
    if job.state != ImportJob.State.PENDING:
        raise ValidationError(_("This file has already been imported or refused; upload it again."))
    table = job_table(job)
    if len(columns) != len(table.headers) or any(key not in FIELD_BY_KEY and key != IGNORE for key in columns):
        raise ValidationError(_("Choose a field for every column, or ignore it."))
    problems = column_problems(columns)
    for field_key, chosen in values.items():
        allowed = dict(FIELD_BY_KEY[field_key].choices) if field_key in CHOICE_FIELDS else {}
        if any(code not in allowed for code in chosen.values()):
            problems.append(_("Choose one of the values offered."))
            break
    if problems:
        raise ValidationError(problems)
    with transaction.atomic():
        ImportMapping.objects.update_or_create(
            signature=table.signature, defaults={"headers": table.headers, "columns": columns, "updated_by": actor})
        for field_key, chosen in values.items():
            for written, code in chosen.items():
                ImportValueMapping.objects.update_or_create(
                    field=field_key, value=value_key(written), defaults={"code": code, "updated_by": actor})
        ImportJob.objects.filter(pk=job.pk, state=ImportJob.State.PENDING).update(columns=columns)
    job.refresh_from_db()


def do_start_import_job(*, actor: User, job: ImportJob) -> bool:
    """Start the import of a mapped job, once: a small file is imported now, a larger one
    by a task (after commit). False when it was started before."""
    if job.columns is None:
        raise ValidationError(_("Map the file's columns before importing it."))
    language = translation.get_language() or "ja"
    started = ImportJob.objects.filter(pk=job.pk, created_by=actor, state=ImportJob.State.PENDING).update(
        state=ImportJob.State.QUEUED, language=language)
    if not started:
        return False
    if job.row_count <= SYNC_MAX_ROWS:
        do_run_import_job(job.pk)
    else:
        from watch.tasks import run_import_job  # tasks import this module

        enqueue_on_commit(run_import_job, job.pk)
    job.refresh_from_db()
    return True


# An upload never mapped or started holds a municipal list of personal data: kept a day.
PENDING_JOB_TTL = timedelta(hours=24)


def do_sweep_import_jobs(now=None) -> tuple[list[int], int]:
    """The database drives imports: every queued job that no run is importing (its task
    was lost: Redis down at enqueue, a worker gone) is handed to a task again, and uploads
    left pending past PENDING_JOB_TTL are deleted with their file. Returns (the ids
    enqueued, the number deleted)."""
    from watch.tasks import run_import_job  # tasks import this module

    now = now or timezone.now()
    with transaction.atomic():
        # A running import holds its job's row lock: skip_locked leaves exactly those out.
        lost = list(ImportJob.objects.select_for_update(skip_locked=True)
                    .filter(state=ImportJob.State.QUEUED).values_list("pk", flat=True))
        for job_id in lost:
            enqueue_on_commit(run_import_job, job_id)
        expired, _kinds = ImportJob.objects.filter(state=ImportJob.State.PENDING,
                                                   created_at__lt=now - PENDING_JOB_TTL).delete()
    if lost or expired:
        logger.info("import sweep: %d queued job(s) enqueued again, %d stale upload(s) deleted", len(lost), expired)
    return lost, expired


def progress_key(job_id: int) -> str:
    return f"watch:import-progress:{job_id}"  # the cache's key function adds the schema


def job_progress(job: ImportJob) -> dict:
    """Where a job stands, for the page and its JSON: the database's state, and while it
    runs the task's last count (kept in the cache: the import's transaction hides its rows)."""
    status = {"state": job.state, "rows": job.row_count, "imported": job.imported_count,
              "errors": job.error_count, "phase": "", "done": 0, "total": 0}
    if job.state == ImportJob.State.QUEUED:
        try:
            status.update(cache.get(progress_key(job.pk)) or {})
        except Exception:  # the count is a view; the state is in the database
            logger.warning("import progress unavailable for job %s in %s", job.pk, connection.schema_name)
    return status


def _report_progress(job_id: int) -> Progress:
    def report(phase: str, done: int, total: int) -> None:
        try:
            cache.set(progress_key(job_id), {"phase": phase, "done": done, "total": total}, timeout=3600)
        except Exception:  # a count lost is not an import lost
            logger.warning("import progress not stored for job %s in %s", job_id, connection.schema_name)

    return report


def do_run_import_job(job_id: int) -> str | None:
    """Import a queued job, all or nothing, and record its outcome; the state of the job
    changes in the import's own transaction, so a run that died left it queued and a
    second run (a redelivered task) imports it then, or finds it finished and stops.
    Returns the final state, or None when there was nothing to do."""
    with transaction.atomic():
        job = (ImportJob.objects.select_for_update().select_related("created_by")
               .filter(pk=job_id, state=ImportJob.State.QUEUED).first())
        if job is None:
            return None
        with translation.override(job.language):
            try:
                report = do_import_residents(actor=job.created_by, data=bytes(job.data),
                                             create_areas=job.create_areas, columns=job.columns,
                                             progress=_report_progress(job.pk))
            except PermissionDenied as exc:
                report = ImportReport(errors=[LineError(None, "", str(exc))])
        job.state = ImportJob.State.DONE if report.committed else ImportJob.State.FAILED
        job.row_count = report.row_count or job.row_count
        job.imported_count = len(report.imported)
        job.created_area_count = len(report.created_areas)
        job.error_count = len(report.errors)
        job.errors = [{"line": e.line, "field": e.field, "message": e.message} for e in report.errors]
        job.data = b""  # the file's personal data is not kept once it is imported or refused
        job.finished_at = timezone.now()
        job.save()
    return job.state
