"""The residents' list import: the sample file of shared/data/README.md row by row, the
all-or-nothing import, encodings, tenant isolation, the command and the staff page."""
import csv
import io
import re
from datetime import date, timedelta
from http import HTTPStatus
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.http import Http404
from django.utils import translation

from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, TenantClient, make_user
from watch import importing
from watch.access import get_resident_for_user, residents_for_user
from watch.actions import do_create_area
from watch.importing import (
    check_import,
    do_import_residents,
    normalize_furigana,
    normalize_phone,
    normalize_postal_code,
    parse_birth_date,
)
from watch.models import (
    Area,
    AreaMembership,
    ConsentRecord,
    EmergencyContact,
    ImportJob,
    ImportMapping,
    ImportValueMapping,
    Resident,
    ResidentChange,
    Rhythm,
)
from watch.tasks import run_import_job

IMPORT_URL = "/watch/import/"

_COPY = Path(settings.BASE_DIR) / "watch" / "demo" / "residents_sample_cp932.csv"
_SHARED = Path(settings.BASE_DIR).parent / "shared" / "data" / "residents_sample_cp932.csv"
SAMPLE = _COPY if _COPY.exists() else _SHARED

# Lines of the sample (the header is line 1, so 番号 n is on line n + 1).
SHOWA_65, FEBRUARY_30, UNKNOWN_AREA, NUMBER_1_AGAIN = 8, 9, 10, 11
# The areas the municipality has registered: everything the sample names except row 9's.
SAMPLE_AREAS = {
    "大住": {"大住ヶ丘連合自治会": ["2班", "3班", "5班", "6班"]},
    "興戸": {"山手東自治会": ["1班", "2班"], "山手西自治会": ["1班", "3班"]},
    "三山木": {"健康ヶ丘区自治会": ["4班"]},
}
IMPORTABLE = ["1", "2", "3", "4", "5", "6", "11", "12"]


def last_job() -> ImportJob:
    with tenant_scope("tenant_a"):
        return ImportJob.objects.latest("pk")


def job_url(job: ImportJob, page: str = "") -> str:
    return f"{IMPORT_URL}{job.pk}/{page}"


def sample_bytes() -> bytes:
    return SAMPLE.read_bytes()


def without_lines(data: bytes, *lines: int) -> bytes:
    """The CRLF file without the given lines (1-based, as an editor counts them)."""
    kept = [text for number, text in enumerate(data.split(b"\r\n"), start=1) if number not in lines]
    return b"\r\n".join(kept)


def corrected_sample() -> bytes:
    """The sample after the office removed the three rows that cannot be fixed by the import."""
    return without_lines(sample_bytes(), SHOWA_65, FEBRUARY_30, NUMBER_1_AGAIN)


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count()
            for model in (Resident, Area, ConsentRecord, EmergencyContact, Rhythm)}


def errors_of(report) -> list[tuple[int | None, str]]:
    return [(error.line, error.field) for error in report.errors]


@pytest.fixture
def sample_areas(tenant_a):
    with tenant_scope("tenant_a"):
        for district, associations in SAMPLE_AREAS.items():
            d = do_create_area(name=district, kind=Area.Kind.DISTRICT)
            for association, blocks in associations.items():
                a = do_create_area(name=association, kind=Area.Kind.ASSOCIATION, parent=d)
                for block in blocks:
                    do_create_area(name=block, kind=Area.Kind.BLOCK, parent=a)


# The sample, row by row.
def test_sample_copy_in_the_tests_is_the_shared_sample_byte_for_byte():
    if not _SHARED.exists():
        pytest.skip("shared/ is not beside the repository")
    assert _COPY.read_bytes() == _SHARED.read_bytes()


def test_dry_run_of_the_sample_reports_rows_7_8_9_and_10_by_line_and_field_and_changes_nothing(sample_areas):
    with tenant_scope("tenant_a"):
        before = counts()
        report = check_import(sample_bytes())
        assert counts() == before
    assert report.encoding == "cp932"
    assert report.row_count == 12
    assert errors_of(report) == [(SHOWA_65, "生年月日"), (FEBRUARY_30, "生年月日"), (UNKNOWN_AREA, "地区"),
                                 (NUMBER_1_AGAIN, "番号")]
    showa_65, february_30, unknown_area, number_1_again = (e.message for e in report.errors)
    assert "昭和65年3月3日" in showa_65 and "1989-01-07" in showa_65
    assert "昭和18年2月30日" in february_30 and "not a real date" in february_30
    assert "未登録地区" in unknown_area
    assert "row 2" in number_1_again
    assert [row.external_id for row in report.rows] == IMPORTABLE
    assert report.new_areas == []
    assert not report.ok and not report.committed


def test_dry_run_with_create_areas_accepts_row_9_and_lists_the_areas_it_would_create(sample_areas):
    with tenant_scope("tenant_a"):
        before = counts()
        report = check_import(sample_bytes(), create_areas=True)
        assert counts() == before
    assert errors_of(report) == [(SHOWA_65, "生年月日"), (FEBRUARY_30, "生年月日"), (NUMBER_1_AGAIN, "番号")]
    assert [row.external_id for row in report.rows] == ["1", "2", "3", "4", "5", "6", "9", "11", "12"]
    assert report.new_areas == [("未登録地区",), ("未登録地区", "存在しない自治会"),
                                ("未登録地区", "存在しない自治会", "9班")]


def test_a_missing_association_or_block_is_an_error_on_its_own_column(sample_areas):
    header, row_1 = sample_bytes().decode("cp932").split("\r\n")[:2]
    other_association = row_1.replace("大住ヶ丘連合自治会", "大住北自治会")
    other_block = "21" + row_1[1:].replace(",3班,", ",7班,")
    with tenant_scope("tenant_a"):
        report = check_import("\r\n".join([header, other_association, other_block]).encode("cp932"))
    assert errors_of(report) == [(2, "自治会"), (3, "班")]
    assert "“大住北自治会” in 大住" in report.errors[0].message
    assert "“7班” in 大住ヶ丘連合自治会" in report.errors[1].message


@pytest.mark.parametrize("create_areas", [False, True])
def test_import_of_the_sample_with_errors_creates_nothing(sample_areas, staff_a, create_areas):
    with tenant_scope("tenant_a"):
        before = counts()
        report = do_import_residents(actor=staff_a, data=sample_bytes(), create_areas=create_areas)
        assert counts() == before
        assert Resident.objects.count() == 0
        assert not Area.objects.filter(name="未登録地区").exists()
    assert NUMBER_1_AGAIN in report.error_lines and SHOWA_65 in report.error_lines
    assert report.imported == [] and not report.committed


def test_import_of_the_corrected_sample_creates_the_residents_as_the_readme_expects(sample_areas, staff_a):
    with tenant_scope("tenant_a"):
        areas_before = Area.objects.count()
        report = do_import_residents(actor=staff_a, data=corrected_sample(), create_areas=True)
        assert report.ok, report.errors
        assert report.committed
        residents = {r.external_id: r for r in Resident.objects.select_related("area__parent__parent")}
        assert sorted(residents, key=int) == ["1", "2", "3", "4", "5", "6", "9", "11", "12"]
        assert Area.objects.count() == areas_before + 3

        yamada = residents["1"]
        assert (yamada.name, yamada.furigana, yamada.gender) == ("山田 花子", "ヤマダ ハナコ", Resident.Gender.FEMALE)
        assert yamada.date_of_birth == date(1938, 4, 1)
        assert (yamada.postal_code, yamada.phone, yamada.mobile_phone) == ("610-0341", "0774-62-1234", "")
        assert yamada.address == "京都府京田辺市大住ヶ丘1丁目2-3"
        assert yamada.household == Resident.Household.LIVING_ALONE
        assert yamada.care_level == "要介護1"
        assert yamada.needs_evacuation_support is True
        assert yamada.visit_notes == "耳が遠い。訪問時は大きめの声で。"
        assert [yamada.area.name, yamada.area.parent.name, yamada.area.parent.parent.name] == [
            "3班", "大住ヶ丘連合自治会", "大住"]
        assert list(yamada.emergency_contacts.values_list("name", "relation", "phone")) == [
            ("山田 一郎", "長男", "090-1111-2222")]
        assert (yamada.consent, yamada.consent_share_with_volunteers, yamada.consent_share_with_association) == (
            Resident.Consent.GIVEN, True, True)

        takahashi = residents["2"]
        assert takahashi.name == "髙橋 茂"  # 髙, not 高
        assert takahashi.phone == "0774-62-5678"
        assert takahashi.date_of_birth == date(1935, 11, 23)
        assert takahashi.gender == Resident.Gender.MALE

        yamazaki = residents["3"]
        assert yamazaki.name == "山﨑 トミ"  # 﨑, not 崎
        assert yamazaki.furigana == "ヤマザキ トミ"
        assert yamazaki.date_of_birth == date(1933, 2, 14)
        assert yamazaki.emergency_contacts.count() == 0

        sato = residents["4"]
        assert sato.date_of_birth == date(1941, 7, 30)
        assert (sato.phone, sato.mobile_phone) == ("", "090-5555-6666")
        assert sato.household == Resident.Household.ELDERLY_ONLY
        assert sato.needs_evacuation_support is False
        assert sato.area.parent.name == "山手東自治会"

        suzuki = residents["5"]
        assert suzuki.date_of_birth == date(1925, 5, 5)
        assert (suzuki.consent, suzuki.consent_share_with_volunteers, suzuki.consent_share_with_association) == (
            Resident.Consent.NOT_ANSWERED, False, False)

        tanaka = residents["6"]
        assert tanaka.furigana == ""
        assert tanaka.household == Resident.Household.ALONE_DAYTIME
        assert (tanaka.consent, tanaka.consent_share_with_volunteers, tanaka.consent_share_with_association) == (
            Resident.Consent.REFUSED, False, False)

        nakamura = residents["9"]
        assert nakamura.date_of_birth == date(1934, 8, 8)
        block = nakamura.area
        assert [(a.name, a.kind) for a in (block, block.parent, block.parent.parent)] == [
            ("9班", Area.Kind.BLOCK), ("存在しない自治会", Area.Kind.ASSOCIATION), ("未登録地区", Area.Kind.DISTRICT)]
        assert block.parent.parent.parent is None
        assert block.path == f"/{block.parent.parent.pk}/{block.parent.pk}/{block.pk}/"

        kobayashi = residents["11"]
        assert kobayashi.date_of_birth == date(1990, 6, 1)
        assert kobayashi.household == Resident.Household.SINGLE_PARENT

        kato = residents["12"]
        assert kato.date_of_birth == date(1950, 12, 31)
        assert kato.care_level == "要支援2"
        assert kato.area.parent.name == "山手西自治会"

        # One consent record each, by whoever imported; the default rhythm each.
        assert dict(ConsentRecord.objects.values_list("resident__external_id", "status")) == {
            "1": "given", "2": "given", "3": "given", "4": "given", "5": "not_answered", "6": "refused",
            "9": "given", "11": "given", "12": "given"}
        assert set(ConsentRecord.objects.values_list("recorded_by", flat=True)) == {staff_a.pk}
        assert EmergencyContact.objects.count() == 4
        assert Rhythm.objects.count() == 9
        assert set(Rhythm.objects.values_list("channel", "interval")) == {("", timedelta(days=7))}
        assert Resident.objects.filter(next_due_at__isnull=False).count() == 9
        # Each resident's history begins with the import, by whoever imported.
        assert set(ResidentChange.objects.filter(kind="imported").values_list("resident__external_id", "actor")) == {
            (number, staff_a.pk) for number in residents}
        assert not ResidentChange.objects.filter(kind="created").exists()


def test_without_create_areas_the_corrected_sample_is_refused_for_row_9_alone(sample_areas, staff_a):
    with tenant_scope("tenant_a"):
        report = do_import_residents(actor=staff_a, data=corrected_sample())
        assert errors_of(report) == [(UNKNOWN_AREA - 2, "地区")]  # two lines above it were removed
        assert Resident.objects.count() == 0


@pytest.mark.parametrize(("encoding", "newline"), [("utf-8-sig", "\r\n"), ("utf-8", "\n")])
def test_a_utf8_file_with_or_without_bom_imports_the_same(sample_areas, staff_a, encoding, newline):
    text = corrected_sample().decode("cp932").replace("\r\n", newline)
    with tenant_scope("tenant_a"):
        report = do_import_residents(actor=staff_a, data=text.encode(encoding), create_areas=True)
        assert report.ok, report.errors
        assert report.encoding == "utf-8"
        assert Resident.objects.count() == 9
        assert Resident.objects.get(external_id="2").name == "髙橋 茂"
        assert Resident.objects.get(external_id="3").name == "山﨑 トミ"
        assert Resident.objects.get(external_id="3").furigana == "ヤマザキ トミ"


def test_a_number_already_registered_is_refused_and_the_resident_is_not_changed(sample_areas, staff_a):
    with tenant_scope("tenant_a"):
        do_import_residents(actor=staff_a, data=corrected_sample(), create_areas=True)
        Resident.objects.filter(external_id="1").update(visit_notes="changed by staff")
        before = counts()
        report = do_import_residents(actor=staff_a, data=corrected_sample(), create_areas=True)
        assert counts() == before
        assert Resident.objects.get(external_id="1").visit_notes == "changed by staff"
    assert {field for _line, field in errors_of(report)} == {"番号"}
    assert len(report.errors) == 9
    assert "already registered" in report.errors[0].message


def test_missing_required_headers_are_one_error_for_the_file(tenant_a):
    data = "番号,氏名,フリガナ,住所\r\n1,山田 花子,ヤマダ ハナコ,京田辺市\r\n".encode("cp932")
    with tenant_scope("tenant_a"):
        report = check_import(data)
    assert report.fatal
    assert errors_of(report) == [(None, "")]
    assert "生年月日, 地区, 自治会" in report.errors[0].message


def test_required_values_and_unreadable_values_are_reported_per_column(sample_areas):
    header = sample_bytes().split(b"\r\n")[0].decode("cp932")
    rows = [
        ",名無し,,女,,,,,,独居,,大住,大住ヶ丘連合自治会,3班,要,同意,,,,",
        "20,山田 次郎,,不明な値,昭和20年1月1日,61O-0341,,0774-62-abcd,,"
        "独居,,大住,大住ヶ丘連合自治会,3班,たぶん要る,たぶん,,姉,,",
    ]
    data = "\r\n".join([header, *rows]).encode("cp932")
    with tenant_scope("tenant_a"):
        report = check_import(data)
    assert errors_of(report) == [
        (2, "番号"), (2, "生年月日"),
        (3, "性別"), (3, "郵便番号"), (3, "電話番号"), (3, "避難支援"), (3, "名簿提供同意"), (3, "緊急連絡先氏名"),
    ]
    assert report.rows == []


def test_one_dry_run_shows_every_problem_of_a_row_at_once(sample_areas, staff_a):
    with tenant_scope("tenant_a"):
        do_import_residents(actor=staff_a, data=corrected_sample(), create_areas=True)
    header, row_1 = sample_bytes().decode("cp932").split("\r\n")[:2]
    bad = row_1.replace("昭和13年4月1日", "昭和13年4月31日").replace(",大住,", ",大住南,")
    with tenant_scope("tenant_a"):
        report = check_import(f"{header}\r\n{bad}".encode("cp932"))
    assert errors_of(report) == [(2, "番号"), (2, "生年月日"), (2, "地区")]


def test_the_same_number_written_in_full_width_digits_is_a_duplicate(sample_areas):
    header, row_1 = sample_bytes().split(b"\r\n")[:2]
    again = "１".encode("cp932") + row_1[1:]
    with tenant_scope("tenant_a"):
        report = check_import(b"\r\n".join([header, row_1, again]))
    assert errors_of(report) == [(3, "番号")]


def test_areas_are_matched_ignoring_full_width_digits(sample_areas, staff_a):
    header, row_1 = sample_bytes().split(b"\r\n")[:2]
    full_width_block = row_1.replace("3班".encode("cp932"), "３班".encode("cp932"))
    with tenant_scope("tenant_a"):
        report = do_import_residents(actor=staff_a, data=header + b"\r\n" + full_width_block)
        assert report.ok, report.errors
        assert Resident.objects.get(external_id="1").area.name == "3班"
        assert not Area.objects.filter(name="３班").exists()


def test_only_staff_admins_and_case_workers_may_import(sample_areas, staff_a, admin_a, volunteer_a):
    officer = make_user("tenant_a", "officer-a", User.Role.ASSOCIATION_OFFICER)
    case_worker = make_user("tenant_a", "case-worker-a", User.Role.CASE_WORKER)
    with tenant_scope("tenant_a"):
        for user in (volunteer_a, officer):
            with pytest.raises(PermissionDenied):
                do_import_residents(actor=user, data=corrected_sample(), create_areas=True)
        assert Resident.objects.count() == 0
        for district in SAMPLE_AREAS:  # a case worker imports into the areas they look after
            AreaMembership.objects.create(user=case_worker, area=Area.objects.get(name=district, parent=None))
        data = without_lines(sample_bytes(), SHOWA_65, FEBRUARY_30, UNKNOWN_AREA, NUMBER_1_AGAIN)
        assert do_import_residents(actor=case_worker, data=data).committed


def test_staff_of_one_district_import_only_into_it_and_create_no_district(sample_areas, staff_a, client_a):
    """Staff attached to 大住 see only 大住: rows of other districts, or of a district the
    import would create, are errors by line, and nothing is imported."""
    with tenant_scope("tenant_a"):
        AreaMembership.objects.create(user=staff_a, area=Area.objects.get(name="大住", parent=None))
        before = counts()
        dry_run = check_import(corrected_sample(), create_areas=True, actor=staff_a)
        report = do_import_residents(actor=staff_a, data=corrected_sample(), create_areas=True)
        assert not report.committed and counts() == before
    # corrected_sample() lines: 2, 3 大住; 4-7 興戸 and 三山木; 8 a new district; 9, 10 興戸.
    for result in (dry_run, report):
        assert errors_of(result) == [(line, "地区") for line in (4, 5, 6, 7, 8, 9, 10)]
    messages = [e.message for e in report.errors]
    assert messages[0] == "You do not look after 興戸 › 山手東自治会 › 1班, so you cannot import residents there."
    assert messages[4] == "You do not look after 未登録地区, so you cannot import residents there."
    # Without an actor (an operator's dry run for nobody in particular) the scope is not checked.
    with tenant_scope("tenant_a"):
        assert not check_import(corrected_sample(), create_areas=True).errors
    # The page says it in the user's language.
    client = TenantClient(client_a.host, language="ja")
    client.sign_in(staff_a.username)
    response = client.post(IMPORT_URL, {"file": SimpleUploadedFile("residents.csv", corrected_sample()),
                                        "action": "check", "create_areas": "on"}, follow=True)
    assert "興戸 › 山手東自治会 › 1班 の担当ではないため、そこへは取り込めません。" in response.content.decode()
    # Their own district's rows alone go in.
    with tenant_scope("tenant_a"):
        ohsumi_only = b"\r\n".join(sample_bytes().split(b"\r\n")[:3])
        assert do_import_residents(actor=staff_a, data=ohsumi_only).committed
        assert sorted(Resident.objects.values_list("external_id", flat=True)) == ["1", "2"]


# Tenants.
def test_an_import_into_tenant_a_is_invisible_in_tenant_b(sample_areas, staff_a, outsider_b, client_b):
    with tenant_scope("tenant_a"):
        report = do_import_residents(actor=staff_a, data=corrected_sample(), create_areas=True)
        assert report.committed
        resident_in_a = Resident.objects.get(external_id="1")
    with tenant_scope("tenant_b"):
        assert counts() == dict.fromkeys(counts(), 0)
        assert not residents_for_user(outsider_b).exists()
        with pytest.raises(Http404):
            get_resident_for_user(outsider_b, resident_in_a.pk)
        # The same 番号 are free in B: only B's own (missing) areas stand in the way.
        dry_run = check_import(corrected_sample())
        assert {field for _line, field in errors_of(dry_run)} == {"地区"}
    client_b.sign_in("outsider-b")
    response = client_b.post(IMPORT_URL, {"file": SimpleUploadedFile("residents.csv", corrected_sample()),
                                          "action": "check"}, follow=True)
    assert response.status_code == HTTPStatus.OK
    assert "already registered" not in response.content.decode()
    assert "There is no district “大住”" in response.content.decode()
    with tenant_scope("tenant_b"):
        assert Resident.objects.count() == 0


# Dates and values.
@pytest.mark.parametrize(("written", "expected"), [
    ("昭和13年4月1日", date(1938, 4, 1)),
    ("S8.2.14", date(1933, 2, 14)),
    ("S25.12.31", date(1950, 12, 31)),
    ("s25-12-31", date(1950, 12, 31)),
    ("H2/6/1", date(1990, 6, 1)),
    ("T14.5.5", date(1925, 5, 5)),
    ("M45.7.29", date(1912, 7, 29)),
    ("R2.1.1", date(2020, 1, 1)),
    ("昭１３．４．１", date(1938, 4, 1)),
    ("昭和元年12月25日", date(1926, 12, 25)),
    ("大正元年7月30日", date(1912, 7, 30)),
    ("平成元年1月8日", date(1989, 1, 8)),
    ("令和元年5月1日", date(2019, 5, 1)),
    ("昭和６４年１月７日", date(1989, 1, 7)),
    ("1941/07/30", date(1941, 7, 30)),
    ("1941-07-30", date(1941, 7, 30)),
    ("１９４１／７／３０", date(1941, 7, 30)),
    ("1941年7月30日", date(1941, 7, 30)),
    ("昭和十三年四月一日", date(1938, 4, 1)),
    ("昭和二十五年十二月三十一日", date(1950, 12, 31)),
])
def test_birth_dates_are_read_in_japanese_and_western_forms(written, expected):
    assert parse_birth_date(written) == expected


@pytest.mark.parametrize(("written", "says"), [
    ("昭和65年3月3日", "1989-01-07"),
    ("S64.1.8", "1989-01-07"),
    ("平成元年1月7日", "1989-01-08"),
    ("大正15年12月25日", "1926-12-24"),
    ("R1.4.30", "2019-05-01"),
    ("昭和18年2月30日", "not a real date"),
    ("1941/02/29", "not a real date"),
    ("昭和0年1月1日", "元年"),
    ("2999/01/01", "in the future"),
    ("昭和13年", "not a date that can be read"),
    ("不明", "not a date that can be read"),
])
def test_birth_dates_that_do_not_exist_are_refused_with_the_reason(written, says):
    with pytest.raises(ValueError, match=says):
        parse_birth_date(written)


def test_phones_furigana_and_postal_codes_are_normalised():
    assert normalize_phone("０７７４－６２－５６７８") == "0774-62-5678"
    assert normalize_phone("0774ー62−5678") == "0774-62-5678"
    assert normalize_furigana("ﾔﾏｻﾞｷ ﾄﾐ") == "ヤマザキ トミ"
    assert normalize_furigana("やまだ　はなこ") == "ヤマダ ハナコ"
    assert normalize_postal_code("〒６１００３４１") == "610-0341"


# The command.
def test_command_dry_run_prints_every_error_by_line_and_changes_nothing(sample_areas):
    out = io.StringIO()
    with pytest.raises(CommandError, match="4 error"):
        call_command("import_residents", "tenant_a", str(SAMPLE), stdout=out)
    printed = out.getvalue()
    for row, column in [(8, "生年月日"), (9, "生年月日"), (10, "地区"), (11, "番号")]:
        assert f"row {row} [{column}]" in printed
    assert "12 record(s) read: 8 can be imported, 4 error(s)" in printed
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 0


def test_command_commit_imports_all_or_nothing(sample_areas, staff_a, tmp_path):
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_residents", "tenant_a", str(SAMPLE), "--commit", "--create-areas", "--as", "staff-a",
                     stdout=io.StringIO())
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 0
    corrected = tmp_path / "corrected.csv"
    corrected.write_bytes(corrected_sample())
    out = io.StringIO()
    call_command("import_residents", "tenant_a", str(corrected), "--commit", "--create-areas", "--as", "staff-a",
                 stdout=out)
    assert "9 record(s) read, imported 9 resident(s), 0 errors" in out.getvalue()
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 9
    with tenant_scope("tenant_b"):
        assert Resident.objects.count() == 0


def test_command_commit_needs_a_user_who_may_import(sample_areas, volunteer_a, tmp_path):
    corrected = tmp_path / "corrected.csv"
    corrected.write_bytes(corrected_sample())
    with pytest.raises(CommandError, match="--as"):
        call_command("import_residents", "tenant_a", str(corrected), "--commit")
    with pytest.raises(CommandError, match="may not import"):
        call_command("import_residents", "tenant_a", str(corrected), "--commit", "--as", "volunteer-a")
    with pytest.raises(CommandError, match="no tenant"):
        call_command("import_residents", "nowhere", str(corrected))
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 0


# The page.
def upload(data: bytes, name: str = "residents.csv", content_type: str = "text/csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def test_page_dry_run_shows_the_errors_and_the_rows_and_saves_nothing(client_a, staff_a, sample_areas):
    client_a.sign_in("staff-a")
    assert client_a.get(IMPORT_URL).status_code == HTTPStatus.OK
    response = client_a.post(IMPORT_URL, {"file": upload(sample_bytes()), "action": "check"}, follow=True)
    assert response.status_code == HTTPStatus.OK
    assert response.redirect_chain == [(job_url(last_job()), HTTPStatus.FOUND)]
    report = response.context["report"]
    assert errors_of(report) == [(8, "生年月日"), (9, "生年月日"), (10, "地区"), (11, "番号")]
    html = response.content.decode()
    assert "昭和65年3月3日 does not exist" in html
    assert "髙橋 茂" in html and "山﨑 トミ" in html and "ヤマザキ トミ" in html
    assert "12 rows read: 8 can be imported, 4 errors." in html
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 0
        assert ConsentRecord.objects.count() == 0


def test_page_import_with_errors_is_refused_and_saves_nothing(client_a, staff_a, sample_areas):
    client_a.sign_in("staff-a")
    response = client_a.post(IMPORT_URL, {"file": upload(sample_bytes()), "action": "import", "create_areas": "on"},
                             follow=True)
    html = response.content.decode()
    assert "Nothing was imported" in html
    assert "12 rows read: 0 imported, 3 errors." in html
    assert "昭和65年3月3日 does not exist" in html
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 0
        assert not Area.objects.filter(name="未登録地区").exists()
        job = last_job()
        assert (job.state, job.row_count, job.imported_count, job.error_count) == (ImportJob.State.FAILED, 12, 0, 3)
        assert [(e["line"], e["field"]) for e in job.errors] == [(8, "生年月日"), (9, "生年月日"), (11, "番号")]
        assert bytes(job.data) == b""  # the file is not kept once refused


def test_page_import_of_a_clean_file_creates_the_residents(client_a, staff_a, sample_areas):
    client_a.sign_in("staff-a")
    response = client_a.post(IMPORT_URL, {"file": upload(corrected_sample()), "action": "import",
                                          "create_areas": "on"}, follow=True)
    assert response.redirect_chain == [(job_url(last_job()), HTTPStatus.FOUND)]
    assert "9 rows read: 9 imported, 0 errors. 3 areas created." in " ".join(response.content.decode().split())
    with tenant_scope("tenant_a"):
        assert last_job().state == ImportJob.State.DONE
        assert Resident.objects.count() == 9
        assert Area.objects.filter(name="未登録地区", kind=Area.Kind.DISTRICT).exists()


def test_volunteers_and_officers_get_403_and_anonymous_visitors_the_sign_in_page(client_a, volunteer_a,
                                                                                 sample_areas):
    make_user("tenant_a", "officer-a", User.Role.ASSOCIATION_OFFICER)
    response = client_a.get(IMPORT_URL)
    assert response.status_code == HTTPStatus.FOUND and "/accounts/login/" in response["Location"]
    for username in ("volunteer-a", "officer-a"):
        client_a.sign_in(username)
        assert client_a.get(IMPORT_URL).status_code == HTTPStatus.FORBIDDEN
        response = client_a.post(IMPORT_URL, {"file": upload(corrected_sample()), "action": "import",
                                              "create_areas": "on"})
        assert response.status_code == HTTPStatus.FORBIDDEN
        client_a.post("/accounts/logout/")
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 0


@pytest.mark.parametrize(("file", "says"), [
    (upload(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "photo.png", "image/png"), "Choose a CSV file"),
    (upload(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "photo.csv"), "This is not a CSV text file"),
    (upload(b"\x81\x20\xff\xfe", "broken.csv"), "neither UTF-8 nor Shift_JIS"),
    (upload("氏名,住所\r\n山田,京田辺\r\n".encode("cp932")), "lacks the required columns"),
    (upload(b"x" * (5 * 1024 * 1024 + 1), "huge.csv"), "too large"),
])
def test_a_bad_upload_gets_400_with_a_message_and_saves_nothing(client_a, staff_a, sample_areas,
                                                              file, says):
    client_a.sign_in("staff-a")
    file.seek(0)
    response = client_a.post(IMPORT_URL, {"file": file, "action": "import", "create_areas": "on"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert says in response.content.decode()
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 0


def test_an_upload_without_a_file_gets_400(client_a, staff_a):
    client_a.sign_in("staff-a")
    response = client_a.post(IMPORT_URL, {"action": "check"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "This field is required." in response.content.decode()


# Files of other systems: headers, values and shapes the sample does not have.
OTHER_HEADERS = ["住民番号", "氏名（漢字）", "氏名（カナ）", "性別", "生年月日", "住所", "電話", "携帯",
                 "地区名", "自治会名", "班", "同意の有無", "世帯構成", "備考"]
OTHER_ROWS = [
    ["101", "山田　花子", "ﾔﾏﾀﾞ ﾊﾅｺ", "女", "S13/4/1", "京田辺市大住ヶ丘1-2-3", "(0774)62-1234", "", "大住",
     "大住ヶ丘連合自治会", "3班", "有", "高齢者のみ", "耳が遠い。\n訪問時は\r\n大きめの声で。"],
    ["102", "髙橋 茂", "タカハシ シゲル", "男", "昭和１３年４月１日", "", "０７７４　６２　５６７８", "090 1111 2222",
     "大住", "大住ヶ丘連合自治会", "", "無", "ひとり暮らし", ""],
    ["103", "山﨑 トミ", "", "女", "昭和元年12月30日", "", "0774.65.0001", "", "興戸", "山手東自治会", "1班", "未",
     "日中独居", ""],
    ["104", "小林 正子", "コバヤシ マサコ", "女", "R1.5.1", "", "", "", "興戸", "山手東自治会", "1班", "○", "ひとり親",
     ""],
    ["105", "加藤 勇", "カトウ イサム", "男", "令和元年5月2日", "", "", "", "興戸", "山手東自治会", "1班", "はい",
     "独居", ""],
]


def make_csv(headers: list[str], rows: list[list[str]], *, encoding: str = "utf-8-sig", newline: str = "\r\n",
             trailing_blank_lines: int = 0) -> bytes:
    """A CSV file as Excel writes it: every cell with a comma, a quote or a line break quoted."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(headers)
    writer.writerows(rows)
    return (out.getvalue() + newline * trailing_blank_lines).encode(encoding)


def other_file(**shape) -> bytes:
    return make_csv(OTHER_HEADERS, OTHER_ROWS, **shape)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8", "cp932"])
@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_another_systems_file_imports_in_every_encoding_and_line_ending(sample_areas, staff_a, encoding, newline):
    data = other_file(encoding=encoding, newline=newline, trailing_blank_lines=3)
    with tenant_scope("tenant_a"):
        report = do_import_residents(actor=staff_a, data=data)
        assert report.ok, report.errors
        assert report.row_count == 5  # the trailing blank lines are no records
        residents = {r.external_id: r for r in Resident.objects.select_related("area")}
    assert report.encoding == ("cp932" if encoding == "cp932" else "utf-8")
    yamada, takahashi, yamazaki, kobayashi, kato = (residents[n] for n in ("101", "102", "103", "104", "105"))
    assert (yamada.name, yamada.furigana, yamada.date_of_birth) == ("山田 花子", "ヤマダ ハナコ", date(1938, 4, 1))
    assert yamada.phone == "0774-62-1234"
    assert yamada.visit_notes == "耳が遠い。\n訪問時は\r\n大きめの声で。"  # the cell as written
    assert (yamada.consent, yamada.household) == (Resident.Consent.GIVEN, Resident.Household.ELDERLY_ONLY)
    assert (takahashi.name, takahashi.date_of_birth) == ("髙橋 茂", date(1938, 4, 1))
    assert (takahashi.phone, takahashi.mobile_phone) == ("0774-62-5678", "090-1111-2222")
    assert (takahashi.consent, takahashi.household) == (Resident.Consent.REFUSED, Resident.Household.LIVING_ALONE)
    assert takahashi.area.name == "大住ヶ丘連合自治会"  # no block: the association itself
    assert (yamazaki.name, yamazaki.date_of_birth, yamazaki.phone) == ("山﨑 トミ", date(1926, 12, 30), "0774-65-0001")
    assert (yamazaki.consent, yamazaki.household) == (Resident.Consent.NOT_ANSWERED,
                                                      Resident.Household.ALONE_DAYTIME)
    assert (kobayashi.date_of_birth, kobayashi.consent, kobayashi.household) == (
        date(2019, 5, 1), Resident.Consent.GIVEN, Resident.Household.SINGLE_PARENT)
    assert (kato.date_of_birth, kato.consent) == (date(2019, 5, 2), Resident.Consent.GIVEN)


def test_a_cell_with_line_breaks_keeps_them_and_is_one_row(sample_areas, staff_a):
    with tenant_scope("tenant_a"):
        assert do_import_residents(actor=staff_a, data=other_file()).ok
        assert Resident.objects.get(external_id="101").visit_notes == "耳が遠い。\n訪問時は\r\n大きめの声で。"


def test_errors_name_the_row_as_excel_numbers_it_after_cells_with_line_breaks(sample_areas):
    """Record 101 spans three physical lines; 102 is Excel's row 3 although it starts on
    line 5; a blank row in the middle still counts as a row, as in Excel."""
    rows = [list(row) for row in OTHER_ROWS]
    rows[1][4] = "昭和65年1月1日"  # row 3
    rows[3][12] = "三世代同居"  # row 5 (a blank row 4 is inserted before it)
    data = make_csv(OTHER_HEADERS, [rows[0], rows[1], [""] * len(OTHER_HEADERS), rows[3]])
    physical_lines = re.split(r"\r\n|\n", data.decode("utf-8-sig"))
    assert physical_lines[4].startswith("102,")  # line 5 of the file
    with tenant_scope("tenant_a"):
        report = check_import(data)
    assert errors_of(report) == [(3, "生年月日"), (5, "世帯構成")]
    assert report.row_count == 3


def test_an_unknown_household_is_an_error_naming_the_column_and_value_never_other(sample_areas, staff_a):
    rows = [list(OTHER_ROWS[0])]
    rows[0][12] = "三世代同居"
    with tenant_scope("tenant_a"), translation.override("ja"):
        report = do_import_residents(actor=staff_a, data=make_csv(OTHER_HEADERS, rows))
        assert Resident.objects.count() == 0
    assert errors_of(report) == [(2, "世帯構成")]
    assert "三世代同居" in report.errors[0].message and "「世帯構成」" in report.errors[0].message
    with tenant_scope("tenant_a"), translation.override("en"):
        english = check_import(make_csv(OTHER_HEADERS, rows)).errors[0].message
    assert english.startswith("The value “三世代同居” in the column “世帯構成” is not one the import knows.")


@pytest.mark.parametrize(("header", "field"), [
    ("氏名（漢字）", "name"), ("氏名(漢字)", "name"), ("氏　名", "name"), (" 名前 ", "name"), ("漢字氏名", "name"),
    ("氏名（カナ）", "furigana"), ("ﾌﾘｶﾞﾅ", "furigana"), ("フリガナ", "furigana"), ("カナ氏名", "furigana"),
    ("電話", "phone"), ("電話番号", "phone"), ("自宅電話", "phone"), ("携帯", "mobile"), ("携帯電話", "mobile"),
    ("地区名", "district"), ("【地区】", "district"), ("自治会名", "association"), ("同意の有無", "consent"),
    ("同意", "consent"), ("世帯", "household"), ("世帯構成", "household"), ("生年月日", "birth_date"),
    ("住所", "address"), ("郵便番号", "postal_code"), ("性別", "gender"), ("番号", "number"),
    ("住民番号", "number"), ("個人番号", "number"), ("\ufeff番号", "number"), ("ＩＤ", "number"),
])
def test_headers_are_matched_by_synonyms_ignoring_width_spaces_and_brackets(header, field):
    assert importing._BY_HEADER[importing.header_key(header)] == field


def test_every_synonym_names_one_field_only():
    spellings = [(importing.header_key(s), f.key) for f in importing.FIELDS for s in (f.header, *f.synonyms)]
    assert len({key for key, _field in spellings}) == len(spellings)
    for field in importing.FIELDS:
        if field.values is not None:
            assert set(field.values.values()) <= {code for code, _label in field.choices}


@pytest.mark.parametrize(("written", "consent"), [
    ("有", "given"), ("無", "refused"), ("未", "not_answered"), ("○", "given"), ("〇", "given"), ("×", "refused"),
    ("はい", "given"), ("いいえ", "refused"), ("同意", "given"), ("不同意", "refused"), ("未回答", "not_answered"),
    ("", "not_answered"), (" 有 ", "given"), ("ｘ", "refused"),
])
def test_consent_is_read_in_every_usual_spelling(written, consent):
    assert importing.FIELD_BY_KEY["consent"].values[importing.value_key(written)] == consent


@pytest.mark.parametrize(("written", "household"), [
    ("高齢者のみ", "elderly_only"), ("高齢者のみ世帯", "elderly_only"), ("独居", "living_alone"),
    ("ひとり暮らし", "living_alone"), ("日中独居", "alone_daytime"), ("ひとり親", "single_parent"),
    ("ひとり親世帯", "single_parent"), ("その他", "other"),
])
def test_households_are_read_in_every_usual_spelling(written, household):
    assert importing.FIELD_BY_KEY["household"].values[importing.value_key(written)] == household


@pytest.mark.parametrize(("written", "expected"), [
    ("(0796)22-1234", "0796-22-1234"), ("0796(22)1234", "0796-22-1234"), ("０７７４－６２－５６７８", "0774-62-5678"),
    ("0774 62 5678", "0774-62-5678"), ("０７７４　６２　５６７８", "0774-62-5678"), ("0774.62.5678", "0774-62-5678"),
    ("090-1111-2222", "090-1111-2222"), ("0774625678", "0774625678"), ("（０７９６）２２－１２３４", "0796-22-1234"),
    ("", ""),
])
def test_phone_numbers_are_normalised_by_one_rule(written, expected):
    assert normalize_phone(written) == expected


@pytest.mark.parametrize(("written", "expected"), [
    ("S13/4/1", date(1938, 4, 1)), ("昭和１３年４月１日", date(1938, 4, 1)), ("R1.5.1", date(2019, 5, 1)),
    ("R元.5.1", date(2019, 5, 1)), ("令和元年5月1日", date(2019, 5, 1)), ("平成元年1月8日", date(1989, 1, 8)),
    ("Ｓ１３．４．１", date(1938, 4, 1)), ("昭和 13年 4月 1日", date(1938, 4, 1)),
])
def test_more_japanese_date_styles_are_read(written, expected):
    assert parse_birth_date(written) == expected


def test_the_summary_counts_the_records_read_the_importable_and_the_errors(sample_areas):
    rows = [list(row) for row in OTHER_ROWS]
    rows[2][11] = "たぶん"
    with tenant_scope("tenant_a"):
        report = check_import(make_csv(OTHER_HEADERS, rows, trailing_blank_lines=2))
    assert (report.row_count, len(report.rows), len(report.errors)) == (5, 4, 1)
    assert errors_of(report) == [(4, "同意の有無")]


# The mapping page: columns and values the definitions do not know.
UNKNOWN_HEADERS = ["整理No.", "お名前", "ﾌﾘｶﾞﾅ", "生年月日", "地区名", "町会", "見守り同意", "世帯", "班長"]
UNKNOWN_ROWS = [
    ["201", "松本 ハル", "マツモト ハル", "S9.8.8", "大住", "大住ヶ丘連合自治会", "済", "独居", "田中"],
    ["202", "井上 キク", "イノウエ キク", "昭和12年1月2日", "大住", "大住ヶ丘連合自治会", "未済", "高齢者のみ", ""],
]
# What a person chooses: 整理No. is the number, お名前 the name, 町会 the association, 見守り同意
# the consent; 班長 (the block leader's name) is ignored.
CHOSEN = {"column-0": "number", "column-1": "name", "column-2": "furigana", "column-3": "birth_date",
          "column-4": "district", "column-5": "association", "column-6": "consent", "column-7": "household",
          "column-8": ""}
VALUES = {"value:consent:未済": "not_answered"}  # 済 is known: given


def unknown_file(**shape) -> bytes:
    return make_csv(UNKNOWN_HEADERS, UNKNOWN_ROWS, **shape)


def upload_file(client, data: bytes, action: str = "check", **extra):
    return client.post(IMPORT_URL, {"file": upload(data), "action": action, **extra})


def test_a_file_whose_headers_are_not_known_goes_to_the_mapping_page_with_sample_values(client_a, staff_a,
                                                                                        sample_areas):
    client_a.sign_in("staff-a")
    response = upload_file(client_a, unknown_file())
    job = last_job()
    assert response.status_code == HTTPStatus.FOUND and response["Location"] == job_url(job, "mapping/")
    assert job.columns is None and job.state == ImportJob.State.PENDING
    page = client_a.get(job_url(job, "mapping/"))
    assert page.status_code == HTTPStatus.OK
    rows = page.context["rows"]
    assert [row["header"] for row in rows] == UNKNOWN_HEADERS
    assert rows[8]["samples"] == ["田中"]
    assert rows[1]["samples"] == ["松本 ハル", "井上 キク"]
    # Known headers are chosen already; the others wait for a person.
    assert [row["chosen"] for row in rows] == ["-", "-", "furigana", "birth_date", "district", "-", "-",
                                              "household", "-"]
    # The job page itself sends there until the columns are mapped.
    assert client_a.get(job_url(job))["Location"] == job_url(job, "mapping/")


def test_mapping_asks_about_unknown_values_then_saves_both_for_the_tenant(client_a, staff_a, sample_areas):
    client_a.sign_in("staff-a")
    upload_file(client_a, unknown_file())
    job = last_job()
    # First the columns: the consent column's value 未済 is not known, so it is asked about.
    response = client_a.post(job_url(job, "mapping/"), CHOSEN)
    assert response.status_code == HTTPStatus.OK
    assert [(g["field"].key, [w for w, _name, _chosen in g["values"]]) for g in response.context["value_rows"]] == [
        ("consent", ["未済"])]
    with tenant_scope("tenant_a"):
        assert not ImportMapping.objects.exists() and last_job().columns is None  # nothing saved yet
    response = client_a.post(job_url(job, "mapping/"), {**CHOSEN, **VALUES})
    assert response.status_code == HTTPStatus.FOUND and response["Location"] == job_url(job)
    with tenant_scope("tenant_a"):
        mapping = ImportMapping.objects.get()
        assert mapping.headers == UNKNOWN_HEADERS and mapping.columns == list(CHOSEN.values())
        assert list(ImportValueMapping.objects.values_list("field", "value", "code")) == [
            ("consent", "未済", "not_answered")]
    dry_run = client_a.get(job_url(job))
    assert dry_run.context["report"].ok, dry_run.context["report"].errors
    assert "2 rows read: 2 can be imported, 0 errors." in dry_run.content.decode()
    client_a.post(job_url(job))
    with tenant_scope("tenant_a"):
        assert dict(Resident.objects.values_list("external_id", "consent")) == {"201": "given",
                                                                                 "202": "not_answered"}
        assert last_job().state == ImportJob.State.DONE
    # The next file with the same headers (in another encoding) needs no mapping.
    other = [["203", "木村 ミツ", "", "S10.1.1", "大住", "大住ヶ丘連合自治会", "済", "独居", ""]]
    response = upload_file(client_a, make_csv(UNKNOWN_HEADERS, other, encoding="cp932"), action="import")
    assert response["Location"] == job_url(last_job())
    with tenant_scope("tenant_a"):
        assert Resident.objects.get(external_id="203").consent == Resident.Consent.GIVEN


def test_a_value_left_unmapped_is_an_error_on_its_rows_and_nothing_is_imported(client_a, staff_a, sample_areas):
    client_a.sign_in("staff-a")
    upload_file(client_a, unknown_file())
    job = last_job()
    client_a.post(job_url(job, "mapping/"), {**CHOSEN, "value:consent:未済": ""})
    report = client_a.get(job_url(job)).context["report"]
    assert errors_of(report) == [(3, "見守り同意")]
    assert "未済" in report.errors[0].message
    response = client_a.post(job_url(job), follow=True)
    assert "Nothing was imported" in response.content.decode()
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 0
        assert last_job().state == ImportJob.State.FAILED


@pytest.mark.parametrize(("language", "says"), [("en", "No column is chosen for these required fields: 番号."),
                                                ("ja", "必須の項目に列が選ばれていません：番号")])
def test_a_mapping_without_a_required_field_is_refused_with_a_message_and_saves_nothing(
        tenant_a, staff_a, sample_areas, language, says):
    client = TenantClient(HOST_A, language=language)
    client.sign_in("staff-a")
    upload_file(client, unknown_file())
    job = last_job()
    response = client.post(job_url(job, "mapping/"), {**CHOSEN, **VALUES, "column-0": ""})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert says in response.content.decode()
    response = client.post(job_url(job, "mapping/"), {**CHOSEN, **VALUES, "column-1": "number"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    with tenant_scope("tenant_a"):
        assert not ImportMapping.objects.exists() and not ImportValueMapping.objects.exists()
        assert last_job().columns is None


def test_a_mapping_with_a_field_that_does_not_exist_gets_400(client_a, staff_a, sample_areas):
    client_a.sign_in("staff-a")
    upload_file(client_a, unknown_file())
    job = last_job()
    response = client_a.post(job_url(job, "mapping/"), {**CHOSEN, **VALUES, "column-8": "password"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Choose a field for every column, or ignore it." in response.content.decode()
    response = client_a.post(job_url(job, "mapping/"), {**CHOSEN, "value:consent:未済": "maybe"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Choose one of the values offered." in response.content.decode()
    with tenant_scope("tenant_a"):
        assert not ImportMapping.objects.exists() and not ImportValueMapping.objects.exists()


def test_a_file_that_lacks_required_fields_no_mapping_could_supply_gets_400(client_a, staff_a):
    client_a.sign_in("staff-a")
    response = upload_file(client_a, make_csv(["氏名", "住所", "電話"], [["山田", "京田辺", "0774-62-1234"]]))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "lacks the required columns: 番号, 生年月日, 地区, 自治会" in response.content.decode()
    with tenant_scope("tenant_a"):
        assert not ImportJob.objects.exists()


@pytest.mark.parametrize(("file", "en", "ja"), [
    (upload(b"", "empty.csv"), "The submitted file is empty.", "添付ファイルの中身が空でした。"),
    (upload(b"\r\n\r\n", "blank.csv"), "The file is empty.", "ファイルが空です。"),
    (upload("番号,氏名,生年月日,地区,自治会\r\n\r\n".encode(), "header-only.csv"),
     "The file has no residents below the header row.", "見出し行の下に住民がいません。"),
    (upload(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "list.pdf", "application/pdf"), "Choose a CSV file",
     "CSVファイル（.csv）を選んでください"),
    (upload(b"\x00\x01\x02binary", "binary.csv"), "This is not a CSV text file", "CSVのテキストファイルではありません"),
    (upload(b"x" * (5 * 1024 * 1024 + 1), "huge.csv"), "too large", "大きすぎます"),
])
@pytest.mark.parametrize("language", ["en", "ja"])
def test_bad_uploads_get_400_in_the_persons_language_and_save_nothing(tenant_a, staff_a, file, en, ja, language):
    client = TenantClient(HOST_A, language=language)
    client.sign_in("staff-a")
    file.seek(0)
    response = client.post(IMPORT_URL, {"file": file, "action": "import"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert (en if language == "en" else ja) in response.content.decode()
    with tenant_scope("tenant_a"):
        assert not ImportJob.objects.exists() and Resident.objects.count() == 0


# Tenants and people.
def test_tenant_b_gets_nothing_of_tenant_as_import_jobs_and_mappings(client_a, client_b, staff_a, outsider_b,
                                                                      sample_areas):
    client_a.sign_in("staff-a")
    upload_file(client_a, unknown_file())
    job = last_job()
    client_a.post(job_url(job, "mapping/"), {**CHOSEN, **VALUES})
    client_b.sign_in("outsider-b")
    for page in ("", "mapping/", "status/"):
        assert client_b.get(job_url(job, page)).status_code == HTTPStatus.NOT_FOUND
    assert client_b.post(job_url(job)).status_code == HTTPStatus.NOT_FOUND
    assert client_b.post(job_url(job, "mapping/"), CHOSEN).status_code == HTTPStatus.NOT_FOUND
    # A's saved mapping is A's: the same file in B goes to B's mapping page.
    response = upload_file(client_b, unknown_file())
    with tenant_scope("tenant_b"):
        job_b = ImportJob.objects.get()
        assert job_b.columns is None and not ImportMapping.objects.exists()
        assert not ImportValueMapping.objects.exists()
    assert response["Location"] == job_url(job_b, "mapping/")
    with tenant_scope("tenant_a"):
        assert last_job().state == ImportJob.State.PENDING and Resident.objects.count() == 0


def test_another_staff_member_of_the_same_tenant_gets_404_for_someone_elses_upload(client_a, staff_a, admin_a,
                                                                                   sample_areas):
    client_a.sign_in("staff-a")
    upload_file(client_a, corrected_sample())
    job = last_job()
    other = TenantClient(HOST_A)
    other.sign_in("admin-a")
    for page in ("", "mapping/", "status/"):
        assert other.get(job_url(job, page)).status_code == HTTPStatus.NOT_FOUND
    assert other.post(job_url(job)).status_code == HTTPStatus.NOT_FOUND
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 0


# Large files: a task, its progress, all or nothing, once.
def large_file(count: int, *, bad_row: int | None = None) -> bytes:
    rows = [[str(1000 + n), f"住民 {n}", "", "S20.1.1" if n != bad_row else "S20.2.30", "大住", "大住ヶ丘連合自治会",
             "3班", "有", "独居"] for n in range(count)]
    headers = ["住民番号", "氏名", "フリガナ", "生年月日", "地区名", "自治会名", "班", "同意の有無", "世帯"]
    return make_csv(headers, rows)


def test_a_large_file_is_imported_by_the_task_with_progress_and_only_once(client_a, staff_a, sample_areas,
                                                                          monkeypatch,
                                                                          django_capture_on_commit_callbacks):
    monkeypatch.setattr(importing, "PROGRESS_EVERY", 10)
    progress = []
    real = importing._report_progress

    def recording(job_id):
        store = real(job_id)
        return lambda *args: (progress.append(args), store(*args))

    monkeypatch.setattr(importing, "_report_progress", recording)
    client_a.sign_in("staff-a")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = upload_file(client_a, large_file(importing.SYNC_MAX_ROWS + 50), action="import")
    job = last_job()
    assert response["Location"] == job_url(job)
    # Queued, not yet run: the page shows the progress box, the JSON where it stands.
    assert job.state == ImportJob.State.QUEUED and len(callbacks) == 1
    page = client_a.get(job_url(job))
    assert 'data-testid="import-progress"' in page.content.decode()
    status = client_a.get(job_url(job, "status/")).json()
    assert status == {"state": "queued", "rows": 250, "imported": 0, "errors": 0, "phase": "", "done": 0,
                      "total": 0, "finished": False}
    callbacks[0]()  # the commit: the task runs (eagerly, as a worker would)
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 250
    assert ("checking", 10, 250) in progress and ("creating", 250, 250) in progress
    status = client_a.get(job_url(job, "status/")).json()
    assert (status["state"], status["imported"], status["finished"]) == ("done", 250, True)
    assert "250 rows read: 250 imported, 0 errors." in client_a.get(job_url(job)).content.decode()
    # A redelivered task, or the button pressed again, changes nothing.
    assert run_import_job("tenant_a", job.pk) is None
    assert client_a.post(job_url(job)).status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 250


def test_the_progress_shows_the_tasks_last_count_while_it_runs(client_a, staff_a, sample_areas,
                                                                django_capture_on_commit_callbacks):
    client_a.sign_in("staff-a")
    with django_capture_on_commit_callbacks(execute=False):
        upload_file(client_a, large_file(importing.SYNC_MAX_ROWS + 1), action="import")
    job = last_job()
    with tenant_scope("tenant_a"):
        importing._report_progress(job.pk)("creating", 120, 201)
    status = client_a.get(job_url(job, "status/")).json()
    assert (status["phase"], status["done"], status["total"]) == ("creating", 120, 201)


def test_a_large_file_with_one_bad_row_imports_nothing_and_says_which_row(tenant_a, staff_a, sample_areas):
    client = TenantClient(HOST_A, language="ja")
    client.sign_in("staff-a")
    with tenant_scope("tenant_a"):
        areas = Area.objects.count()
        job = importing.do_create_import_job(actor=staff_a, file_name="large.csv", create_areas=True,
                                             data=large_file(300, bad_row=299))
        ImportJob.objects.filter(pk=job.pk).update(state=ImportJob.State.QUEUED, language="ja")
    assert run_import_job("tenant_a", job.pk) == ImportJob.State.FAILED
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 0 and Area.objects.count() == areas
        job.refresh_from_db()
    assert (job.row_count, job.imported_count, job.error_count) == (300, 0, 1)
    assert job.errors == [{"line": 301, "field": "生年月日", "message": job.errors[0]["message"]}]
    assert "昭和20年" not in job.errors[0]["message"] and "S20.2.30" in job.errors[0]["message"]
    assert "存在しない日付" in job.errors[0]["message"]  # in the language of the person who started it
    assert "300 行を読み込みました" in client.get(job_url(job)).content.decode()


def test_a_job_left_queued_by_a_worker_that_died_is_imported_by_the_next_run(tenant_a, staff_a, sample_areas):
    with tenant_scope("tenant_a"):
        job = importing.do_create_import_job(actor=staff_a, file_name="large.csv", create_areas=False,
                                             data=large_file(5))
        ImportJob.objects.filter(pk=job.pk).update(state=ImportJob.State.QUEUED)
    assert run_import_job("tenant_a", job.pk) == ImportJob.State.DONE
    assert run_import_job("tenant_a", job.pk) is None
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 5


def test_a_task_for_another_tenants_job_id_does_nothing(tenant_a, tenant_b, staff_a, sample_areas):
    with tenant_scope("tenant_a"):
        job = importing.do_create_import_job(actor=staff_a, file_name="large.csv", create_areas=False,
                                             data=large_file(5))
        ImportJob.objects.filter(pk=job.pk).update(state=ImportJob.State.QUEUED)
    assert run_import_job("tenant_b", job.pk) is None
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 0 and ImportJob.objects.get().state == ImportJob.State.QUEUED


def test_the_sweep_imports_a_queued_job_whose_task_was_lost_and_deletes_stale_uploads(
        tenant_a, tenant_b, staff_a, sample_areas, django_capture_on_commit_callbacks):
    """Redis was down when the import was started: its task never came. The sweep, run
    for each tenant, hands it on (the eager task imports it); an upload nobody mapped or
    started for a day is deleted with its file; tenant B's sweep touches nothing of A."""
    from datetime import timedelta

    from django.utils import timezone

    from watch.tasks import sweep_import_jobs

    with tenant_scope("tenant_a"):
        lost = importing.do_create_import_job(actor=staff_a, file_name="large.csv", create_areas=False,
                                              data=large_file(5))
        ImportJob.objects.filter(pk=lost.pk).update(state=ImportJob.State.QUEUED)
        stale = importing.do_create_import_job(actor=staff_a, file_name="old.csv", create_areas=False,
                                               data=large_file(2))
        ImportJob.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(hours=25))
        fresh = importing.do_create_import_job(actor=staff_a, file_name="new.csv", create_areas=False,
                                               data=large_file(2))
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_import_jobs("tenant_b") == 0
    with tenant_scope("tenant_a"):
        assert ImportJob.objects.filter(state=ImportJob.State.QUEUED).count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_import_jobs("tenant_a") == 1
    with tenant_scope("tenant_a"):
        assert ImportJob.objects.get(pk=lost.pk).state == ImportJob.State.DONE
        assert Resident.objects.count() == 5
        assert set(ImportJob.objects.values_list("pk", flat=True)) == {lost.pk, fresh.pk}
