"""The area tree page: add, rename, move (residents follow), delete when empty."""
from http import HTTPStatus

import pytest

from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, TenantClient, make_user
from tests.watch.conftest import attach, make_resident
from watch.access import residents_for_user
from watch.actions import do_create_area
from watch.models import Area, AreaMembership


@pytest.fixture
def admin_client(client_a, admin_a):
    client_a.sign_in("admin-a")
    return client_a


def names() -> dict[int, tuple[str, str, str]]:
    with tenant_scope("tenant_a"):
        return {a.pk: (a.name, a.full_name, a.path) for a in Area.objects.all()}


def test_the_tree_shows_full_paths_kinds_residents_of_each_subtree_and_people_attached(
        admin_client, areas_a, hanako, shigeru, staff_a):
    attach(staff_a, areas_a["assoc"])
    response = admin_client.get("/watch/areas/")
    assert response.status_code == HTTPStatus.OK
    body = response.content.decode()
    assert "<title>Areas" in body
    assert "大住 › 大住ヶ丘連合自治会 › 3班" in body
    rows = {pk: body.split(f'data-area="{pk}"')[1].split("</tr>")[0] for pk in (a.pk for a in areas_a.values())}
    assert "District" in rows[areas_a["osumi"].pk] and "1 resident<" in rows[areas_a["osumi"].pk]
    assert "1 resident<" in rows[areas_a["block"].pk]
    assert "1 resident<" in rows[areas_a["kodo"].pk]
    assert "staff-a" in rows[areas_a["assoc"].pk] and "staff-a" not in rows[areas_a["osumi"].pk]
    assert f'href="/watch/people/{staff_a.pk}/"' in rows[areas_a["assoc"].pk]


def test_admin_adds_an_area_under_a_parent(admin_client, areas_a):
    response = admin_client.post("/watch/areas/", {"name": " 4班 ", "kind": "block", "parent": areas_a["assoc"].pk})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        added = Area.objects.get(name="4班")
    assert added.full_name == "大住 › 大住ヶ丘連合自治会 › 4班"
    assert added.path == f"{areas_a['assoc'].path}{added.pk}/"
    assert "大住 › 大住ヶ丘連合自治会 › 4班 was added." in admin_client.get("/watch/areas/").content.decode()


@pytest.mark.parametrize("data, field, message", [
    ({"name": "", "kind": "block"}, "name", "This field is required."),
    ({"name": "   ", "kind": "block"}, "name", "This field is required."),
    ({"name": "3班", "kind": "block", "parent": "assoc"}, "name",
     "There is already an area named 3班 under 大住 › 大住ヶ丘連合自治会."),
    ({"name": "興戸", "kind": "district"}, "name", "There is already a top-level area named 興戸."),
    # The same name in full-width digits or with other spacing is the same area.
    ({"name": "３班", "kind": "block", "parent": "assoc"}, "name",
     "There is already an area named ３班 under 大住 › 大住ヶ丘連合自治会."),
    ({"name": "5班", "kind": "street"}, "kind", "Select a valid choice. street is not one of the available choices."),
])
def test_adding_an_area_with_bad_input_gets_400_with_the_message_next_to_the_field(admin_client, areas_a, data,
                                                                                    field, message):
    before = names()
    if "parent" in data:
        data = {**data, "parent": areas_a[data["parent"]].pk}
    response = admin_client.post("/watch/areas/", data)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    body = response.content.decode()
    field_group = body.split(f'for="id_{field}"')[1].split("</div>")[0]
    assert message in field_group
    assert names() == before


def test_a_duplicate_name_is_refused_in_japanese(client_a, admin_a, areas_a):
    client = TenantClient(HOST_A, language="ja")
    client.sign_in("admin-a")
    response = client.post("/watch/areas/", {"name": "3班", "kind": "block", "parent": areas_a["assoc"].pk})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "大住 › 大住ヶ丘連合自治会には、3班という地域がすでにあります。" in response.content.decode()


def test_renaming_an_area_renames_the_full_names_of_its_whole_subtree(admin_client, areas_a):
    response = admin_client.post(f"/watch/areas/{areas_a['assoc'].pk}/",
                                 {"name": "山手東自治会", "kind": "association", "parent": areas_a["osumi"].pk})
    assert response.status_code == HTTPStatus.FOUND
    after = names()
    assert after[areas_a["assoc"].pk][1] == "大住 › 山手東自治会"
    assert after[areas_a["block"].pk][1] == "大住 › 山手東自治会 › 3班"
    assert after[areas_a["block"].pk][2] == areas_a["block"].path
    assert "大住 › 山手東自治会 › 3班" in admin_client.get("/watch/areas/").content.decode()


def test_moving_an_area_moves_its_residents_to_those_attached_to_the_new_parent(
        admin_client, areas_a, hanako, captured_events, django_capture_on_commit_callbacks):
    old_officer = make_user("tenant_a", "officer-osumi", User.Role.ASSOCIATION_OFFICER)
    new_officer = make_user("tenant_a", "officer-kodo", User.Role.ASSOCIATION_OFFICER)
    attach(old_officer, areas_a["osumi"])
    attach(new_officer, areas_a["kodo"])
    with tenant_scope("tenant_a"):
        assert list(residents_for_user(old_officer)) == [hanako]
        assert not residents_for_user(new_officer).exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/watch/areas/{areas_a['assoc'].pk}/", {
            "name": "大住ヶ丘連合自治会", "kind": "association", "parent": areas_a["kodo"].pk})
    assert response.status_code == HTTPStatus.FOUND
    # Both officers' open pages reload: one stops seeing the residents, the other starts.
    assert {group for group, event in captured_events if event == {"type": "session.ended"}} == {
        f"tenant_a.user.{old_officer.pk}", f"tenant_a.user.{new_officer.pk}"}
    after = names()
    assert after[areas_a["block"].pk][1:] == (
        "興戸 › 大住ヶ丘連合自治会 › 3班", f"{areas_a['kodo'].path}{areas_a['assoc'].pk}/{areas_a['block'].pk}/")
    with tenant_scope("tenant_a"):
        assert list(residents_for_user(new_officer)) == [hanako]
        assert not residents_for_user(old_officer).exists()
    pages = {}
    for officer in ("officer-osumi", "officer-kodo"):
        client = TenantClient(HOST_A)
        client.sign_in(officer)
        pages[officer] = client.get("/watch/").content.decode()
    assert "山田 花子" in pages["officer-kodo"] and "興戸 › 大住ヶ丘連合自治会 › 3班" in pages["officer-kodo"]
    assert "山田 花子" not in pages["officer-osumi"]


def test_an_area_moved_to_the_top_level_gets_a_root_path(admin_client, areas_a):
    response = admin_client.post(f"/watch/areas/{areas_a['assoc'].pk}/",
                                 {"name": "大住ヶ丘連合自治会", "kind": "association", "parent": ""})
    assert response.status_code == HTTPStatus.FOUND
    assert names()[areas_a["block"].pk][1:] == (
        "大住ヶ丘連合自治会 › 3班", f"/{areas_a['assoc'].pk}/{areas_a['block'].pk}/")


@pytest.mark.parametrize("new_parent", ["assoc", "block"])
def test_an_area_cannot_be_moved_under_itself_or_its_own_descendant(admin_client, areas_a, new_parent):
    before = names()
    response = admin_client.post(f"/watch/areas/{areas_a['assoc'].pk}/",
                                 {"name": "改名", "kind": "association", "parent": areas_a[new_parent].pk})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    field_group = response.content.decode().split('for="id_parent"')[1].split("</div>")[0]
    assert "An area cannot be moved under itself or under one of the areas it contains." in field_group
    assert names() == before


def test_renaming_to_a_sibling_name_is_refused_and_nothing_changes(admin_client, areas_a):
    before = names()
    response = admin_client.post(f"/watch/areas/{areas_a['kodo'].pk}/", {"name": "大住", "kind": "district"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "There is already a top-level area named 大住." in response.content.decode()
    assert names() == before


def test_an_area_id_that_is_not_of_this_tenant_is_404_in_every_form(client_b, outsider_b, areas_a, tenant_b):
    with tenant_scope("tenant_b"):
        own = do_create_area(name="豊岡", kind=Area.Kind.DISTRICT)
    missing = max(a.pk for a in areas_a.values()) + 100
    client_b.sign_in("outsider-b")
    assert client_b.get(f"/watch/areas/{missing}/").status_code == HTTPStatus.NOT_FOUND
    assert client_b.post(f"/watch/areas/{missing}/delete/", {"confirm": "yes"}).status_code == HTTPStatus.NOT_FOUND
    assert client_b.post("/watch/areas/", {"name": "x", "kind": "block",
                                           "parent": missing}).status_code == HTTPStatus.NOT_FOUND
    assert client_b.post(f"/watch/areas/{own.pk}/", {"name": "豊岡", "kind": "district",
                                                     "parent": missing}).status_code == HTTPStatus.NOT_FOUND
    with tenant_scope("tenant_b"):
        assert list(Area.objects.values_list("full_name", "path")) == [("豊岡", own.path)]
    assert names() == {a.pk: (a.name, a.full_name, a.path) for a in areas_a.values()}


def test_staff_attached_to_an_area_see_their_subtree_and_cannot_manage_the_tree(client_a, staff_a, areas_a, hanako):
    attach(staff_a, areas_a["assoc"])
    client_a.sign_in("staff-a")
    response = client_a.get("/watch/areas/")
    assert response.status_code == HTTPStatus.OK
    body = response.content.decode()
    assert "大住 › 大住ヶ丘連合自治会 › 3班" in body and "興戸" not in body
    assert "Add an area" not in body
    before = names()
    assert client_a.post("/watch/areas/", {"name": "x", "kind": "block"}).status_code == HTTPStatus.FORBIDDEN
    assert client_a.get(f"/watch/areas/{areas_a['block'].pk}/").status_code == HTTPStatus.FORBIDDEN
    assert client_a.post(f"/watch/areas/{areas_a['block'].pk}/", {"name": "x", "kind": "block"}
                         ).status_code == HTTPStatus.FORBIDDEN
    assert client_a.post(f"/watch/areas/{areas_a['kodo'].pk}/delete/", {"confirm": "yes"}
                         ).status_code == HTTPStatus.FORBIDDEN
    assert names() == before


def test_a_volunteer_sees_no_area(client_a, volunteer_a, areas_a, hanako):
    client_a.sign_in("volunteer-a")
    body = client_a.get("/watch/areas/").content.decode()
    assert "You are not attached to any area." in body and "大住" not in body.split("<h1>")[1]


def test_deleting_an_area_asks_for_confirmation_then_deletes_it_with_its_empty_areas(admin_client, areas_a):
    with tenant_scope("tenant_a"):
        street = do_create_area(name="北区", kind=Area.Kind.BLOCK, parent=areas_a["kodo"])
    page = admin_client.get(f"/watch/areas/{areas_a['kodo'].pk}/delete/")
    assert page.status_code == HTTPStatus.OK
    assert "興戸 › 北区" in page.content.decode() and 'name="confirm"' in page.content.decode()
    response = admin_client.post(f"/watch/areas/{areas_a['kodo'].pk}/delete/")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Tick the box to confirm." in response.content.decode()
    assert street.pk in names()
    response = admin_client.post(f"/watch/areas/{areas_a['kodo'].pk}/delete/", {"confirm": "yes"})
    assert response.status_code == HTTPStatus.FOUND
    assert areas_a["kodo"].pk not in names() and street.pk not in names()


def test_an_area_holding_a_resident_or_a_person_is_not_deleted(admin_client, areas_a, hanako, staff_a):
    with tenant_scope("tenant_a"):
        hanako.status = "ended"
        hanako.save(update_fields=["status"])
    attach(staff_a, areas_a["kodo"])
    before = names()
    response = admin_client.post(f"/watch/areas/{areas_a['osumi'].pk}/delete/", {"confirm": "yes"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "1 resident is still in this area or an area under it: move them first." in response.content.decode()
    response = admin_client.post(f"/watch/areas/{areas_a['kodo'].pk}/delete/", {"confirm": "yes"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "1 person is still attached to this area or an area under it: detach them first." in (
        response.content.decode())
    assert names() == before
    with tenant_scope("tenant_a"):
        assert AreaMembership.objects.filter(user=staff_a).exists()


def test_a_resident_added_to_a_moved_area_is_seen_by_the_new_parents_officer(admin_a, areas_a):
    officer = make_user("tenant_a", "officer-kodo", User.Role.ASSOCIATION_OFFICER)
    attach(officer, areas_a["kodo"])
    from watch.areas import do_change_area

    with tenant_scope("tenant_a"):
        do_change_area(actor=admin_a, area=areas_a["block"], name="3班", kind="block", parent=areas_a["kodo"])
        resident = make_resident(Area.objects.get(pk=areas_a["block"].pk), "新しい 住民")
        assert list(residents_for_user(officer)) == [resident]


def test_an_area_named_by_an_escalation_policy_is_not_deleted_with_it(admin_client, areas_a):
    from outreach.models import EscalationPolicy

    with tenant_scope("tenant_a"):
        policy = EscalationPolicy.objects.create(name="興戸の手順", area=areas_a["kodo"])
    page = admin_client.get(f"/watch/areas/{areas_a['kodo'].pk}/delete/").content.decode()
    assert "1 setting of another part (such as an escalation policy) still names this area" in page
    assert 'name="confirm"' not in page
    response = admin_client.post(f"/watch/areas/{areas_a['kodo'].pk}/delete/", {"confirm": "yes"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    with tenant_scope("tenant_a"):
        assert EscalationPolicy.objects.filter(pk=policy.pk, area=areas_a["kodo"]).exists()
