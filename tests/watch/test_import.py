"""The residents' list import: the sample file of shared/data/README.md row by row, the
all-or-nothing import, encodings, tenant isolation, the command and the staff page."""
import io
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

from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import TenantClient, make_user
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
from watch.models import Area, AreaMembership, ConsentRecord, EmergencyContact, Resident, Rhythm

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
    assert "line 2" in number_1_again
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
        "独居,,大住,大住ヶ丘連合自治会,3班,はい,たぶん,,姉,,",
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
                                        "action": "check", "create_areas": "on"})
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
                                          "action": "check"})
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
    for line, column in [(8, "生年月日"), (9, "生年月日"), (10, "地区"), (11, "番号")]:
        assert f"line {line} [{column}]" in printed
    assert "8 of 12 row(s) can be imported" in printed
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
    assert "imported 9 resident(s)" in out.getvalue()
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
    response = client_a.post(IMPORT_URL, {"file": upload(sample_bytes()), "action": "check"})
    assert response.status_code == HTTPStatus.OK
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
    response = client_a.post(IMPORT_URL, {"file": upload(sample_bytes()), "action": "import", "create_areas": "on"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Nothing was imported" in response.content.decode()
    with tenant_scope("tenant_a"):
        assert Resident.objects.count() == 0
        assert not Area.objects.filter(name="未登録地区").exists()


def test_page_import_of_a_clean_file_creates_the_residents(client_a, staff_a, sample_areas):
    client_a.sign_in("staff-a")
    response = client_a.post(IMPORT_URL, {"file": upload(corrected_sample()), "action": "import",
                                          "create_areas": "on"}, follow=True)
    assert response.redirect_chain == [(IMPORT_URL, HTTPStatus.FOUND)]
    assert "Imported 9 residents." in response.content.decode()
    with tenant_scope("tenant_a"):
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
