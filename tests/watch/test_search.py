"""Finding residents: what a person types (kanji, kana of any kind and width, phone
numbers, addresses) and the filters, on the overview page and in the API, always within
what the person may see (watch.access), and backed by the grams' GIN index."""
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, TenantClient, make_user
from tests.watch.conftest import attach, make_resident
from watch import actions
from watch.access import residents_for_user
from watch.models import Assignment, Resident
from watch.search import normalise, search_residents


@pytest.fixture
def town(areas_a, hanako, shigeru, admin_a):
    """Besides 山田 花子 (3班) and 髙橋 茂 (興戸): a 田中, a 中田 and two more 田中s whose
    kana are written in katakana and in half-width katakana, with phones and addresses."""
    with tenant_scope("tenant_a"):
        block, kodo = areas_a["block"], areas_a["kodo"]
        people = {
            "tanaka": make_resident(block, "田中 一郎", furigana="たなか いちろう", phone="0774-65-4321",
                                    address="京都府京田辺市大住ヶ丘1-2-3"),
            "nakata": make_resident(kodo, "中田 花子", furigana="なかた はなこ", mobile_phone="090-1111-2222",
                                    address="京都府京田辺市興戸犬伏10"),
            "katakana": make_resident(kodo, "田中 二郎", furigana="タナカ ジロウ", consent="refused"),
            "halfwidth": make_resident(kodo, "田仲 三郎", furigana="ﾀﾅｶ ｻﾌﾞﾛｳ", needs_evacuation_support=True),
        }
        Resident.objects.filter(pk=people["nakata"].pk).update(is_overdue=True)
        actions.do_register_device(actor=admin_a, resident=people["tanaka"], kind="button")
    return people


def names(user, query: str) -> set[str]:
    with tenant_scope("tenant_a"):
        return set(search_residents(residents_for_user(user), query).values_list("name", flat=True))


def api_names(client, **params) -> list[str]:
    response = client.get("/api/v1/residents/", params)
    assert response.status_code == HTTPStatus.OK, response.content
    return sorted(r["name"] for r in response.json()["results"])


@pytest.fixture
def staff(client_a, staff_a):
    client_a.sign_in("staff-a")
    return client_a


# Matching -------------------------------------------------------------------------------

def test_a_two_character_surname_finds_it_and_not_the_same_characters_reversed(staff_a, town):
    assert names(staff_a, "田中") == {"田中 一郎", "田中 二郎"}


def test_kana_in_hiragana_finds_katakana_and_half_width_katakana(staff_a, town):
    assert names(staff_a, "たなか") == {"田中 一郎", "田中 二郎", "田仲 三郎"}
    assert names(staff_a, "ﾀﾅｶ") == names(staff_a, "タナカ") == names(staff_a, "たなか")


def test_a_variant_kanji_of_a_name_finds_the_common_form_and_back(staff_a, town, areas_a):
    with tenant_scope("tenant_a"):
        make_resident(areas_a["kodo"], "渡邊 キヨ")
    assert names(staff_a, "高橋") == names(staff_a, "髙橋") == {"髙橋 茂"}
    assert names(staff_a, "渡辺") == {"渡邊 キヨ"}


def test_a_phone_typed_with_hyphens_or_full_width_digits_or_in_part_finds_the_number(staff_a, town):
    for typed in ("0774-65-4321", "０７７４６５４３２１", "0774 65 4321", "65-4321", "4321", "090-1111"):
        found = names(staff_a, typed)
        assert found == ({"中田 花子"} if typed.startswith("090") else {"田中 一郎"}), typed


def test_part_of_an_address_finds_the_resident(staff_a, town):
    assert names(staff_a, "大住ヶ丘1") == {"田中 一郎"}
    assert names(staff_a, "興戸犬伏") == {"中田 花子"}


def test_a_single_kanji_finds_every_name_that_holds_it(staff_a, town):
    assert names(staff_a, "田") == {"田中 一郎", "中田 花子", "田中 二郎", "田仲 三郎", "山田 花子"}


def test_an_empty_or_blank_query_finds_everyone(staff_a, town):
    with tenant_scope("tenant_a"):
        everyone = set(residents_for_user(staff_a).values_list("name", flat=True))
    assert len(everyone) == 6
    assert names(staff_a, "") == names(staff_a, " 　\t") == everyone


def test_a_long_query_or_one_with_like_wildcards_or_control_characters_is_safe(staff, staff_a, town):
    assert names(staff_a, "%") == names(staff_a, "_") == names(staff_a, "田%中") == set()
    assert names(staff_a, "田中" * 100) == set()
    assert names(staff_a, "田\x00中") == {"田中 一郎", "田中 二郎"}
    for query in ("%", "_%_", "田中" * 100, "'; DROP TABLE watch_resident; --"):
        assert staff.get("/watch/", {"q": query}).status_code == HTTPStatus.OK
        assert api_names(staff, q=query) == []


def test_normalisation_folds_width_and_kana_and_drops_separators():
    assert normalise("ﾀﾅｶ・ﾊﾅｺ") == normalise("タナカ　ハナコ") == normalise("たなか はなこ") == "たなかはなこ"
    assert normalise("ＡＢＣ１２３") == "abc123"
    assert normalise("髙橋 齋藤") == "高橋斎藤"


def test_the_search_uses_the_grams_gin_index(staff_a, town):
    with tenant_scope("tenant_a"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for query in ("田中", "たなか", "4321"):
            sql, params = search_residents(Resident.objects.all(), query).query.sql_with_params()
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "resident_search_grams" in plan, plan


# Filters --------------------------------------------------------------------------------

def test_each_filter_narrows_the_list_in_the_api(staff, areas_a, town):
    assert api_names(staff, area=areas_a["osumi"].pk) == ["山田 花子", "田中 一郎"]
    assert api_names(staff, area=areas_a["kodo"].pk, q="たなか") == ["田中 二郎", "田仲 三郎"]
    assert api_names(staff, overdue="true") == ["中田 花子"]
    assert "中田 花子" not in api_names(staff, overdue="false")
    assert api_names(staff, consent="refused") == ["田中 二郎"]
    assert api_names(staff, needs_evacuation_support="true") == ["田仲 三郎"]
    assert api_names(staff, has_device="true") == ["田中 一郎"]
    assert "田中 一郎" not in api_names(staff, has_device="false")


def test_no_contact_in_n_days_includes_those_never_contacted(staff, staff_a, town, hanako):
    with tenant_scope("tenant_a"):
        actions.do_log_contact(actor=staff_a, resident=town["tanaka"], occurred_at=timezone.now(),
                               channel="phone", outcome="fine")
        actions.do_log_contact(actor=staff_a, resident=hanako, occurred_at=timezone.now() - timedelta(days=10),
                               channel="visit", outcome="fine")
    found = api_names(staff, no_contact_days=7)
    assert "田中 一郎" not in found
    assert {"山田 花子", "髙橋 茂", "中田 花子"} <= set(found)
    assert "山田 花子" not in api_names(staff, no_contact_days=30)


def test_the_api_counts_every_match_and_pages_them(staff, town):
    body = staff.get("/api/v1/residents/", {"q": "田"}).json()
    assert body["count"] == 5 and len(body["results"]) == 5
    assert {r["area_full_name"] for r in body["results"]} >= {"大住 › 大住ヶ丘連合自治会 › 3班", "興戸"}


@pytest.mark.parametrize(("params", "field"), [
    ({"overdue": "yes"}, "overdue"), ({"consent": "maybe"}, "consent"), ({"no_contact_days": "0"}, "no_contact_days"),
    ({"no_contact_days": "²"}, "no_contact_days"), ({"area": "abc"}, "area"), ({"has_device": "1"}, "has_device"),
    ({"needs_evacuation_support": "TRUE"}, "needs_evacuation_support"), ({"area": "9" * 30}, "area"),
])
def test_a_bad_filter_value_is_a_400_naming_the_field(staff, town, params, field):
    response = staff.get("/api/v1/residents/", params)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert list(response.json()) == [field]


def test_a_bad_filter_value_is_explained_in_japanese_in_the_api_and_next_to_the_field_on_the_page(staff_a, town):
    client = TenantClient(HOST_A, language="ja")
    client.sign_in("staff-a")
    response = client.get("/api/v1/residents/", {"no_contact_days": "0"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "1 以上" in response.json()["no_contact_days"][0]
    page = client.get("/watch/", {"no_contact_days": "0", "q": "田中"})
    assert page.status_code == HTTPStatus.BAD_REQUEST
    html = page.content.decode()
    error_at = html.index('id="id_no_contact_days_error"')
    assert "1 以上" in html[error_at:html.index("</ul>", error_at)]
    assert html.index('for="id_no_contact_days"') < error_at < html.index('name="no_contact_days"')
    assert 'aria-invalid="true"' in html


# Who finds whom -----------------------------------------------------------------------------

def test_an_area_that_is_not_ones_own_is_a_404_on_the_page_and_in_the_api(areas_a, town):
    district_staff = make_user("tenant_a", "district-staff", User.Role.MUNICIPAL_STAFF)
    attach(district_staff, areas_a["kodo"])
    client = TenantClient(HOST_A)
    client.sign_in("district-staff")
    assert client.get("/api/v1/residents/", {"area": areas_a["osumi"].pk}).status_code == HTTPStatus.NOT_FOUND
    assert client.get("/watch/", {"area": areas_a["block"].pk}).status_code == HTTPStatus.NOT_FOUND
    assert client.get("/api/v1/residents/", {"area": areas_a["kodo"].pk}).status_code == HTTPStatus.OK


def test_staff_attached_to_a_district_find_only_residents_of_its_subtree(areas_a, town):
    district_staff = make_user("tenant_a", "district-staff", User.Role.MUNICIPAL_STAFF)
    attach(district_staff, areas_a["osumi"])
    client = TenantClient(HOST_A)
    client.sign_in("district-staff")
    assert api_names(client, q="田") == ["山田 花子", "田中 一郎"]
    page = client.get("/watch/", {"q": "田中"}).content.decode()
    assert "田中 一郎" in page and "田中 二郎" not in page


def test_a_volunteers_search_finds_only_assigned_residents_who_consented_to_sharing(volunteer_a, town):
    with tenant_scope("tenant_a"):
        Assignment.objects.create(resident=town["katakana"], user=volunteer_a)  # consent refused
    client = TenantClient(HOST_A)
    client.sign_in("volunteer-a")
    assert api_names(client, q="田") == ["山田 花子"]
    assert api_names(client, q="たなか") == []
    assert names(volunteer_a, "田中") == set()
    # Consent and devices are parts of the record a volunteer does not see: no filter by them.
    everyone = api_names(client)
    for params in ({"consent": "refused"}, {"consent": "given"}, {"has_device": "true"}, {"has_device": "false"}):
        assert api_names(client, **params) == everyone == ["山田 花子"], params


def test_the_outsider_of_b_finds_nothing_of_a_on_the_page_or_in_the_api(client_b, outsider_b, town, resident_b):
    client_b.sign_in("outsider-b")
    assert api_names(client_b, q="田中") == []
    assert api_names(client_b, q="4321") == []
    assert api_names(client_b, q="") == ["B市の住民"]
    page = client_b.get("/watch/", {"q": "田中"}).content.decode()
    assert "田中" not in page.replace('value="田中"', "")
    b_on_a = TenantClient(HOST_A)
    b_on_a.cookies = client_b.cookies
    assert b_on_a.get("/api/v1/residents/", {"q": "田中"}).status_code in (HTTPStatus.UNAUTHORIZED,
                                                                           HTTPStatus.FORBIDDEN)


# The overview page -------------------------------------------------------------------------

def test_the_page_shows_the_total_and_keeps_the_search_across_pages(monkeypatch, staff_a, town):
    monkeypatch.setattr("watch.views.OVERVIEW_PAGE", 2)
    client = TenantClient(HOST_A, language="ja")
    client.sign_in("staff-a")
    first = client.get("/watch/", {"q": "田", "consent": "given"}).content.decode()
    assert "全 4 人中 1–2 人" in first
    assert 'href="?q=%E7%94%B0&amp;consent=given&amp;page=2"' in first
    second = client.get("/watch/", {"q": "田", "consent": "given", "page": 2}).content.decode()
    assert "全 4 人中 3–4 人" in second
    assert "田中 二郎" not in first + second  # consent refused
    assert 'value="田"' in second and '<option value="given" selected>' in second
    kept = client.get("/watch/", {"area": town["tanaka"].area.parent_id, "page": 1}).content.decode()
    assert f'<option value="{town["tanaka"].area.parent_id}" selected>大住 › 大住ヶ丘連合自治会</option>' in kept


def test_a_page_past_the_last_is_the_last_page_and_a_page_that_is_not_a_number_the_first(monkeypatch, staff, town):
    monkeypatch.setattr("watch.views.OVERVIEW_PAGE", 2)
    assert "5–6 of 6 residents" in staff.get("/watch/", {"page": 99}).content.decode()
    for page in ("abc", "0", "-1", "²", "9" * 30):
        assert "1–2 of 6 residents" in staff.get("/watch/", {"page": page}).content.decode(), page


def test_the_page_shows_areas_with_their_full_path_the_last_outcome_in_words_and_status(staff_a, town, hanako):
    with tenant_scope("tenant_a"):
        actions.do_log_contact(actor=staff_a, resident=hanako, occurred_at=timezone.now(), channel="phone",
                               outcome="no_answer")
        Resident.objects.filter(pk=town["tanaka"].pk).update(status=Resident.Status.PAUSED)
    client = TenantClient(HOST_A, language="ja")
    client.sign_in("staff-a")
    page = client.get("/watch/").content.decode()
    assert "大住 › 大住ヶ丘連合自治会 › 3班" in page
    assert '<option value="{}">大住 › 大住ヶ丘連合自治会</option>'.format(town["tanaka"].area.parent_id) in page
    rows = page[page.index('data-testid="overview"'):page.index("</table>")]
    assert "応答なし" in rows and "no_answer" not in rows
    assert "一時停止" in rows and "paused" not in rows.replace("status-paused", "")
    assert "連絡の記録なし" in rows
    assert "<summary>絞り込み</summary>" in page
    assert '"time_zone": "Asia/Tokyo"' in page  # live updates write times as the page does


def test_a_search_that_finds_nobody_says_so(staff, town):
    page = staff.get("/watch/", {"q": "該当者なし"}).content.decode()
    assert "No resident matches this search." in page


def test_the_search_form_labels_every_field(staff, town):
    page = staff.get("/watch/").content.decode()
    for name in ("q", "area", "overdue", "consent", "needs_evacuation_support", "has_device", "no_contact_days"):
        assert f'<label for="id_{name}">' in page, name
        assert f'id="id_{name}"' in page, name
    assert '<details class="search-more">' in page  # folded while only the text is used
    assert '<details class="search-more" open>' in staff.get("/watch/", {"consent": "given"}).content.decode()


def test_switching_disaster_sharing_off_asks_for_confirmation(staff, staff_a):
    with tenant_scope("tenant_a"):
        actions.do_start_disaster_sharing(actor=staff_a, reason="大雨特別警報", confirmed=True)
    page = staff.get("/watch/").content.decode()
    form = page[page.index('action="/watch/disaster-sharing/"'):]
    form = form[:form.index("</form>")]
    assert 'name="confirm" value="yes" required' in form and 'name="end"' in form


def test_the_page_asks_the_same_few_queries_whatever_the_number_of_rows(staff, areas_a, town):
    def queries(query: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff.get("/watch/", {"q": query, "area": areas_a["osumi"].pk}).status_code == HTTPStatus.OK
        return len(captured.captured_queries)

    one = queries("田中")
    with tenant_scope("tenant_a"):
        for i in range(5):
            make_resident(areas_a["block"], f"田中 {i}")
    assert queries("田中") == one <= 12


def test_the_openapi_schema_documents_the_search_parameters(staff):
    schema = staff.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == HTTPStatus.OK
    text = schema.content.decode()
    for name in ("q", "area", "overdue", "consent", "needs_evacuation_support", "has_device", "no_contact_days"):
        assert f"name: {name}" in text or f'"name": "{name}"' in text, name
