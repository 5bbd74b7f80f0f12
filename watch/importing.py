"""Importing a residents' list (住民名簿) from the CSV files municipal offices export
from Excel: Windows-31J or UTF-8, Japanese headers, 和暦 dates, full- and half-width
characters as people typed them.

`check_import` reads and validates every row and changes nothing; `do_import_residents`
validates again and creates the residents, their areas, consent and emergency contacts
in one transaction, only when the whole file is clean.
"""
import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from tenants.accounts.models import User
from watch.access import area_scope
from watch.actions import (
    check_can_manage_residents,
    do_add_emergency_contact,
    do_create_area,
    do_create_resident,
    do_record_consent,
)
from watch.models import Area, EmergencyContact, Resident

# The headers, as municipal exports write them.
NUMBER = "番号"
NAME = "氏名"
FURIGANA = "フリガナ"
GENDER = "性別"
BIRTH_DATE = "生年月日"
POSTAL_CODE = "郵便番号"
ADDRESS = "住所"
PHONE = "電話番号"
MOBILE = "携帯電話"
HOUSEHOLD = "世帯区分"
CARE_LEVEL = "要介護度"
DISTRICT = "地区"
ASSOCIATION = "自治会"
BLOCK = "班"
EVACUATION = "避難支援"
CONSENT = "名簿提供同意"
CONTACT_NAME = "緊急連絡先氏名"
CONTACT_RELATION = "続柄"
CONTACT_PHONE = "緊急連絡先電話"
NOTES = "備考"

HEADERS = (NUMBER, NAME, FURIGANA, GENDER, BIRTH_DATE, POSTAL_CODE, ADDRESS, PHONE, MOBILE, HOUSEHOLD, CARE_LEVEL,
           DISTRICT, ASSOCIATION, BLOCK, EVACUATION, CONSENT, CONTACT_NAME, CONTACT_RELATION, CONTACT_PHONE, NOTES)
REQUIRED_HEADERS = (NUMBER, NAME, BIRTH_DATE, DISTRICT, ASSOCIATION)
AREA_LEVELS = ((DISTRICT, Area.Kind.DISTRICT), (ASSOCIATION, Area.Kind.ASSOCIATION), (BLOCK, Area.Kind.BLOCK))

GENDERS = {
    "男": Resident.Gender.MALE, "男性": Resident.Gender.MALE,
    "女": Resident.Gender.FEMALE, "女性": Resident.Gender.FEMALE,
    "その他": Resident.Gender.OTHER, "不明": Resident.Gender.UNKNOWN, "": Resident.Gender.UNKNOWN,
}
HOUSEHOLDS = {
    "独居": Resident.Household.LIVING_ALONE,
    "高齢者のみ世帯": Resident.Household.ELDERLY_ONLY,
    "日中独居": Resident.Household.ALONE_DAYTIME,
    "ひとり親世帯": Resident.Household.SINGLE_PARENT,
}
EVACUATION_SUPPORT = {"要": True, "必要": True, "不要": False, "": False}
CONSENTS = {
    "同意": Resident.Consent.GIVEN,
    "不同意": Resident.Consent.REFUSED,
    "未回答": Resident.Consent.NOT_ANSWERED,
    "": Resident.Consent.NOT_ANSWERED,
}

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
_PHONE = re.compile(r"\+?[0-9()-]+")
_POSTAL_CODE = re.compile(r"\d{3}-\d{4}")
# Characters defined only on the exporting computer (外字): they show as blanks elsewhere.
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")
# Control characters never found in a text file (a byte stream that merely decoded).
_BINARY = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class ImportFileError(Exception):
    """The file cannot be read as a residents' list at all."""


class RowError(Exception):
    """One field of one row is wrong; `field` is its Japanese header."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class LineError:
    line: int | None  # as in the file (the header is line 1); None: the whole file
    field: str  # the Japanese header, or "" for the whole line or file
    message: str


@dataclass
class PlannedResident:
    """A row that passed every check: what will be created for it."""

    line: int
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
    row_count: int = 0  # data rows read (blank lines not counted)
    rows: list[PlannedResident] = field(default_factory=list)  # the rows without errors
    errors: list[LineError] = field(default_factory=list)
    new_areas: list[tuple[str, ...]] = field(default_factory=list)  # paths of areas to create
    fatal: bool = False  # the file could not be read as a residents' list
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
        return sorted({e.line for e in self.errors if e.line is not None})

    def add_error(self, line: int | None, field_name: str, message: str) -> None:
        self.errors.append(LineError(line, field_name, message))


# Decoding.
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


# Values.
def _nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip()


def normalize_phone(value: str) -> str:
    """Full-width digits and any kind of dash to ASCII, spaces removed: ０７７４－６２ → 0774-62."""
    return re.sub(r"\s+", "", _nfkc(value).translate(_DASHES))


def normalize_furigana(value: str) -> str:
    """Half-width katakana and hiragana to full-width katakana, spaces collapsed: ﾔﾏｻﾞｷ → ヤマザキ."""
    text = re.sub(r"\s+", " ", _nfkc(value))
    return "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in text)


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
def _area_key(name: str) -> str:
    """Names are matched ignoring width and spacing (３班 is 3班); they are kept as written."""
    return re.sub(r"\s+", " ", _nfkc(name))


class _AreaTree:
    """The tenant's areas by (parent id, name), read once; also remembers areas to create."""

    def __init__(self):
        self.index: dict[tuple[int | None, str], Area] = {
            (area.parent_id, _area_key(area.name)): area for area in Area.objects.all()
        }
        self.planned: dict[tuple[str, ...], tuple[str, ...]] = {}  # key path → names as first written

    def find(self, names: tuple[str, ...]) -> tuple[Area | None, int]:
        """The deepest existing area along `names` and how many levels of it exist."""
        parent = None
        for depth, name in enumerate(names):
            area = self.index.get((parent.pk if parent else None, _area_key(name)))
            if area is None:
                return parent, depth
            parent = area
        return parent, len(names)

    def plan(self, names: tuple[str, ...], existing_depth: int) -> None:
        for depth in range(existing_depth + 1, len(names) + 1):
            key = tuple(_area_key(n) for n in names[:depth])
            self.planned.setdefault(key, names[:depth])

    def get_or_create(self, names: tuple[str, ...], created: list[Area]) -> Area:
        parent = None
        for depth, name in enumerate(names):
            key = (parent.pk if parent else None, _area_key(name))
            area = self.index.get(key)
            if area is None:
                area = do_create_area(name=name, kind=AREA_LEVELS[depth][1], parent=parent)
                self.index[key] = area
                created.append(area)
            parent = area
        return parent


# Rows.
_MAX_LENGTHS = {
    NUMBER: Resident._meta.get_field("external_id").max_length,
    NAME: Resident._meta.get_field("name").max_length,
    FURIGANA: Resident._meta.get_field("furigana").max_length,
    POSTAL_CODE: Resident._meta.get_field("postal_code").max_length,
    ADDRESS: Resident._meta.get_field("address").max_length,
    PHONE: Resident._meta.get_field("phone").max_length,
    MOBILE: Resident._meta.get_field("mobile_phone").max_length,
    CARE_LEVEL: Resident._meta.get_field("care_level").max_length,
    DISTRICT: Area._meta.get_field("name").max_length,
    ASSOCIATION: Area._meta.get_field("name").max_length,
    BLOCK: Area._meta.get_field("name").max_length,
    CONTACT_NAME: EmergencyContact._meta.get_field("name").max_length,
    CONTACT_RELATION: EmergencyContact._meta.get_field("relation").max_length,
    CONTACT_PHONE: EmergencyContact._meta.get_field("phone").max_length,
    NOTES: Resident._meta.get_field("visit_notes").max_length,
}
_FIELD_HEADERS = {
    "external_id": NUMBER, "name": NAME, "furigana": FURIGANA, "gender": GENDER, "date_of_birth": BIRTH_DATE,
    "postal_code": POSTAL_CODE, "address": ADDRESS, "phone": PHONE, "mobile_phone": MOBILE,
    "household": HOUSEHOLD, "care_level": CARE_LEVEL, "needs_evacuation_support": EVACUATION,
    "visit_notes": NOTES,
}


def _phone(row: dict, header: str) -> str:
    phone = normalize_phone(row[header])
    if phone and not _PHONE.fullmatch(phone):
        raise RowError(header, _("“%(value)s” is not a phone number: use digits and hyphens, like 0774-62-1234.")
                       % {"value": row[header]})
    return phone


def _choice(row: dict, header: str, choices: dict, message: str):
    value = _nfkc(row[header])
    if value not in choices:
        raise RowError(header, message % {"value": row[header]})
    return choices[value]


def _parse_row(line: int, row: dict) -> tuple[PlannedResident | None, list[RowError]]:
    """Every field of one row: (what to create, []) or (None, an error for each wrong field)."""
    errors: list[RowError] = []
    values: dict = {}

    def take(key, parse):
        try:
            values[key] = parse()
        except RowError as exc:
            errors.append(exc)

    def birth_date():
        try:
            return parse_birth_date(row[BIRTH_DATE])
        except ValueError as exc:
            raise RowError(BIRTH_DATE, str(exc)) from None

    def postal_code():
        code = normalize_postal_code(row[POSTAL_CODE])
        if code and not _POSTAL_CODE.fullmatch(code):
            raise RowError(POSTAL_CODE, _("“%(value)s” is not a postal code: write it like 610-0341.")
                           % {"value": row[POSTAL_CODE]})
        return code

    for header in REQUIRED_HEADERS:
        if not row[header].strip():
            errors.append(RowError(header, _("This field is required.")))
    for header, max_length in _MAX_LENGTHS.items():
        if len(row[header].strip()) > max_length:
            errors.append(RowError(header, _("Too long: at most %(max)d characters.") % {"max": max_length}))
    for header in HEADERS:
        if _PRIVATE_USE.search(row[header]):
            errors.append(RowError(header, _("Contains a character made on the exporting computer (外字) that "
                                             "other computers cannot show. Replace it with a standard character.")))
    take("gender", lambda: _choice(row, GENDER, GENDERS, _("Write 男 or 女 (or leave it empty), not “%(value)s”.")))
    if row[BIRTH_DATE].strip():
        take("date_of_birth", birth_date)
    take("postal_code", postal_code)
    take("phone", lambda: _phone(row, PHONE))
    take("mobile_phone", lambda: _phone(row, MOBILE))
    take("needs_evacuation_support", lambda: _choice(row, EVACUATION, EVACUATION_SUPPORT,
                                                     _("Write 要 or 不要 (or leave it empty), not “%(value)s”.")))
    take("consent", lambda: _choice(row, CONSENT, CONSENTS,
                                    _("Write 同意, 不同意 or 未回答 (or leave it empty), not “%(value)s”.")))
    take("contact_phone", lambda: _phone(row, CONTACT_PHONE))
    contact_name, relation = row[CONTACT_NAME].strip(), row[CONTACT_RELATION].strip()
    if not contact_name and (relation or row[CONTACT_PHONE].strip()):
        errors.append(RowError(CONTACT_NAME, _("Give the emergency contact's name as well.")))
    if errors:
        return None, _dedupe(errors)

    fields = {
        "external_id": _nfkc(row[NUMBER]),
        "furigana": normalize_furigana(row[FURIGANA]),
        "gender": values["gender"],
        "date_of_birth": values["date_of_birth"],
        "postal_code": values["postal_code"],
        "address": row[ADDRESS].strip(),
        "phone": values["phone"],
        "mobile_phone": values["mobile_phone"],
        "household": HOUSEHOLDS.get(_nfkc(row[HOUSEHOLD]), Resident.Household.OTHER),
        "care_level": _nfkc(row[CARE_LEVEL]),
        "needs_evacuation_support": values["needs_evacuation_support"],
        "visit_notes": row[NOTES].strip(),
    }
    name = row[NAME].strip()  # kept exactly as written: 髙 and 﨑 are not 高 and 崎
    # Anything else the model rejects, reported against the column it came from.
    try:
        Resident(name=name, **fields).clean_fields(exclude=["area"])
    except ValidationError as exc:
        return None, [RowError(_FIELD_HEADERS.get(key, ""), " ".join(messages))
                      for key, messages in exc.message_dict.items()]
    area_names = _area_names(row)
    contact = ({"name": contact_name, "relation": relation, "phone": values["contact_phone"]}
               if contact_name else None)
    return PlannedResident(line=line, area_names=area_names, fields=fields, name=name,
                           consent=values["consent"], emergency_contact=contact), []


def _dedupe(errors: list[RowError]) -> list[RowError]:
    """One message per column: the first found (a required value before its format)."""
    seen: set[str] = set()
    return [e for e in errors if not (e.field in seen or seen.add(e.field))]


def _read_rows(text: str, report: ImportReport):
    """Yield (line, {header: value}) for each non-blank data row; header problems are fatal."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [_nfkc(h.lstrip("\ufeff")) for h in next(reader, [])]  # ﾌﾘｶﾞﾅ is フリガナ
        missing = [h for h in REQUIRED_HEADERS if h not in header]
        if missing:
            raise ImportFileError(_("The header line lacks the required columns: %(columns)s. The first line must "
                                    "name the columns, like 番号,氏名,生年月日,地区,自治会.")
                                  % {"columns": ", ".join(missing)})
        duplicated = sorted({h for h in header if h and header.count(h) > 1}, key=header.index)
        if duplicated:
            raise ImportFileError(_("The header line names these columns more than once: %(columns)s.")
                                  % {"columns": ", ".join(duplicated)})
        last_line = reader.line_num
        for cells in reader:
            line, last_line = last_line + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(header) and any(cell.strip() for cell in cells[len(header):]):
                report.add_error(line, "", _("The line has %(count)d values but the header has %(expected)d "
                                             "columns.") % {"count": len(cells), "expected": len(header)})
                report.row_count += 1
                continue
            cells += [""] * (len(header) - len(cells))
            row = dict.fromkeys(HEADERS, "")
            row.update((h, cell) for h, cell in zip(header, cells, strict=False) if h in row)
            report.row_count += 1
            yield line, row
    except csv.Error as exc:
        raise ImportFileError(_("The file is not valid CSV near line %(line)d: %(error)s")
                              % {"line": reader.line_num, "error": exc}) from None


def _area_names(row: dict) -> tuple[str, ...] | None:
    """(district, association[, block]) as written, or None when the required two are missing."""
    names = tuple(row[header].strip() for header, _kind in AREA_LEVELS)
    if not (names[0] and names[1]):
        return None
    return names if names[2] else names[:2]


def _outside(names: tuple[str, ...], area: Area | None, depth: int, scope: list[str]) -> tuple[str, str] | None:
    """The error for a row whose area (existing, or to be created under `area`) is not
    in the actor's part of the tree."""
    if area is not None and any(area.path.startswith(path) for path in scope):
        return None
    return AREA_LEVELS[0][0], _("You do not look after %(area)s, so you cannot import residents there.") % {
        "area": " › ".join(names[:max(depth, 1)])}


def _check(data: bytes, *, create_areas: bool, actor: User | None = None) -> tuple[ImportReport, _AreaTree | None]:
    """Every problem of the file, each row checked in full so one dry run shows them all."""
    report = ImportReport()
    # (line, 番号, area names, the row's plan or None when a field is wrong)
    candidates: list[tuple[int, str, tuple[str, ...] | None, PlannedResident | None]] = []
    try:
        text, report.encoding = decode_csv_bytes(data)
        first_line_of: dict[str, int] = {}
        for line, row in _read_rows(text, report):
            number = _nfkc(row[NUMBER])
            if number and number in first_line_of:
                report.add_error(line, NUMBER, _("番号 %(number)s is already used on line %(line)d; a resident "
                                                 "is imported only once.")
                                 % {"number": number, "line": first_line_of[number]})
                continue
            if number:
                first_line_of[number] = line
            planned, errors = _parse_row(line, row)
            for error in errors:
                report.add_error(line, error.field, error.message)
            candidates.append((line, number, _area_names(row), planned))
    except ImportFileError as exc:
        report.fatal = True
        report.errors = [LineError(None, "", str(exc))]
        return report, None
    if report.row_count == 0:
        report.add_error(None, "", _("The file has no residents below the header line."))
        return report, None

    existing = set(Resident.objects.filter(external_id__in=[number for _l, number, _a, _p in candidates if number])
                   .values_list("external_id", flat=True))
    tree = _AreaTree()
    scope = area_scope(actor) if actor is not None else None  # None: anywhere
    for line, number, area_names, planned in candidates:
        clean = planned is not None
        if number in existing:
            clean = False
            report.add_error(line, NUMBER, _("A resident with 番号 %(number)s is already registered; the import "
                                             "does not change existing residents.") % {"number": number})
        if area_names:
            area, depth = tree.find(area_names)
            outside = _outside(area_names, area, depth, scope) if scope is not None else None
            if outside:
                clean = False
                report.add_error(line, *outside)
            elif depth < len(area_names) and not create_areas:
                clean = False
                report.add_error(line, *_missing_area(area_names, depth))
            elif depth < len(area_names) and clean:
                tree.plan(area_names, depth)  # only areas that an importable row needs
        if clean:
            report.rows.append(planned)
    report.new_areas = list(tree.planned.values())
    report.errors.sort(key=lambda e: (e.line or 0, HEADERS.index(e.field) if e.field in HEADERS else -1))
    return report, tree


def _missing_area(names: tuple[str, ...], depth: int) -> tuple[str, str]:
    header = AREA_LEVELS[depth][0]
    hint = _("Register it first, or let the import create missing areas.")
    if depth == 0:
        message = _("There is no district “%(name)s”.") % {"name": names[0]}
    elif depth == 1:
        message = _("There is no residents' association “%(name)s” in %(parent)s.") % {
            "name": names[1], "parent": names[0]}
    else:
        message = _("There is no block “%(name)s” in %(parent)s.") % {"name": names[2], "parent": names[1]}
    return header, f"{message} {hint}"


def check_import(data: bytes, *, create_areas: bool = False, actor: User | None = None) -> ImportReport:
    """Read and validate the whole file without changing anything: every error by line
    and column, and the rows (and areas, with create_areas) an import would create.
    With `actor`, rows outside the areas that person looks after are errors too."""
    report, _tree = _check(data, create_areas=create_areas, actor=actor)
    return report


class _RowFailed(Exception):
    """Creating a row failed after it passed the checks."""

    def __init__(self, line: int, field_name: str, message: str):
        super().__init__(message)
        self.line, self.field, self.message = line, field_name, message


def do_import_residents(*, actor: User, data: bytes, create_areas: bool = False) -> ImportReport:
    """Import the file all or nothing: when every row is clean, create the residents
    (each with the default rhythm), their consent records, emergency contacts and, with
    create_areas, missing areas, in one transaction. With any error nothing is created
    and the report says why. Existing residents (same 番号) are never changed."""
    check_can_manage_residents(actor)
    try:
        with transaction.atomic():
            report, tree = _check(data, create_areas=create_areas, actor=actor)
            if not report.ok:
                return report
            for planned in report.rows:
                _create_resident(actor, planned, tree, report)
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
        resident = do_create_resident(area=area, name=planned.name, **planned.fields)
    except ValidationError as exc:  # checked before; kept so a surprise still names its line
        key, messages = next(iter(exc.message_dict.items()))
        raise _RowFailed(planned.line, _FIELD_HEADERS.get(key, ""), " ".join(messages)) from exc
    given = planned.consent == Resident.Consent.GIVEN
    do_record_consent(actor=actor, resident=resident, status=planned.consent,
                      share_with_volunteers=given, share_with_association=given)
    if planned.emergency_contact:
        try:
            do_add_emergency_contact(actor=actor, resident=resident, **planned.emergency_contact)
        except ValidationError as exc:  # checked before, as above
            key, messages = next(iter(exc.message_dict.items()))
            headers = {"name": CONTACT_NAME, "relation": CONTACT_RELATION, "phone": CONTACT_PHONE}
            raise _RowFailed(planned.line, headers.get(key, ""), " ".join(messages)) from exc
    report.imported.append(resident)
