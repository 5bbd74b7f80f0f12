"""The residents' import in the browser: a file from another system, whose headers and
values need the mapping page, mapped, checked, imported, and its residents on the overview."""
import pytest
from playwright.sync_api import expect

from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, PASSWORD, make_user
from tests.watch.test_import import make_csv
from watch import actions
from watch.models import Area, ImportMapping, ImportValueMapping, Resident

pytestmark = pytest.mark.browser

HEADERS = ["整理No.", "お名前", "氏名（カナ）", "生年月日", "地区名", "町会", "見守り同意", "世帯", "班長"]
ROWS = [
    ["301", "松本　ハル", "ﾏﾂﾓﾄ ﾊﾙ", "S9.8.8", "大住", "大住ヶ丘連合自治会", "済", "高齢者のみ", "田中"],
    ["302", "井上 キク", "イノウエ キク", "昭和１２年１月２日", "大住", "大住ヶ丘連合自治会", "未済", "ひとり暮らし",
     ""],
]


@pytest.fixture
def town(live_server_url):
    make_user("tenant_a", "hanako-staff", User.Role.MUNICIPAL_STAFF)
    with tenant_scope("tenant_a"):
        district = actions.do_create_area(name="大住", kind=Area.Kind.DISTRICT)
        actions.do_create_area(name="大住ヶ丘連合自治会", kind=Area.Kind.ASSOCIATION, parent=district)


def test_staff_map_an_unknown_files_columns_and_values_import_it_and_see_the_residents(browser, live_server_url,
                                                                                     town, tmp_path):
    url = live_server_url(HOST_A)
    csv_file = tmp_path / "名簿_他市システム.csv"
    csv_file.write_bytes(make_csv(HEADERS, ROWS, encoding="utf-8-sig"))  # Excel's "CSV UTF-8"
    page = browser.new_context(locale="ja-JP").new_page()
    page.set_default_timeout(10_000)
    page.goto(url + "/accounts/login/")
    page.get_by_label("ユーザー名").fill("hanako-staff")
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("live")).to_have_class("live on")

    page.goto(url + "/watch/import/")
    page.get_by_test_id("import-file").set_input_files(str(csv_file))
    page.get_by_test_id("check").click()

    # The mapping page: each column with its values; known headers already chosen.
    columns = page.get_by_test_id("mapping-columns")
    expect(columns).to_contain_text("班長")
    expect(columns).to_contain_text("田中")
    expect(page.get_by_test_id("column-2")).to_have_value("furigana")
    expect(page.get_by_test_id("column-0")).to_have_value("-")
    page.get_by_test_id("column-0").select_option("number")
    page.get_by_test_id("column-1").select_option("name")
    page.get_by_test_id("column-5").select_option("association")
    page.get_by_test_id("column-6").select_option("consent")
    page.get_by_test_id("column-8").select_option("")  # ignored
    page.get_by_test_id("save-mapping").click()

    # The consent column's 未済 is asked about (済 is known).
    values = page.get_by_test_id("mapping-values")
    expect(values).to_contain_text("未済")
    expect(page.get_by_test_id("column-6")).to_have_value("consent")
    page.get_by_test_id("value-consent-0").select_option("not_answered")
    page.get_by_test_id("save-mapping").click()

    # The dry run, then the import.
    expect(page.get_by_test_id("import-summary")).to_contain_text("2 行を読み込みました：取り込み可能 2 件、誤り 0 件")
    expect(page.get_by_test_id("import-rows")).to_contain_text("マツモト ハル")
    page.get_by_test_id("import").click()
    expect(page.get_by_test_id("import-summary")).to_contain_text("取り込み 2 件、誤り 0 件")

    page.get_by_test_id("to-overview").click()
    expect(page.locator("main")).to_contain_text("松本 ハル")
    expect(page.locator("main")).to_contain_text("井上 キク")
    with tenant_scope("tenant_a"):
        assert dict(Resident.objects.values_list("external_id", "consent")) == {"301": "given", "302": "not_answered"}
        assert dict(Resident.objects.values_list("external_id", "household")) == {"301": "elderly_only",
                                                                                 "302": "living_alone"}
        assert ImportMapping.objects.get().columns == ["number", "name", "furigana", "birth_date", "district",
                                                       "association", "consent", "household", ""]
        assert ImportValueMapping.objects.count() == 1
    page.context.close()
