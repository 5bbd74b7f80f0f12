from http import HTTPStatus

from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import make_user
from tests.watch.conftest import attach, make_resident
from watch import actions
from watch.access import residents_for_user
from watch.models import Assignment


def visible(user) -> set[str]:
    with tenant_scope("tenant_a"):
        return set(residents_for_user(user).values_list("name", flat=True))


def test_volunteer_sees_only_assigned_residents(volunteer_a, hanako, shigeru):
    assert visible(volunteer_a) == {"山田 花子"}


def test_volunteer_cannot_see_an_assigned_resident_without_consent_to_share(volunteer_a, areas_a):
    with tenant_scope("tenant_a"):
        refused = make_resident(areas_a["block"], "田中 一", consent="refused")
        Assignment.objects.create(resident=refused, user=volunteer_a)
    assert "田中 一" not in visible(volunteer_a)


def test_disaster_sharing_shows_people_needing_evacuation_help_without_consent_and_is_logged(
    volunteer_a, staff_a, areas_a
):
    with tenant_scope("tenant_a"):
        refused = make_resident(areas_a["block"], "鈴木 キヨ", consent="not_answered", needs_evacuation_support=True)
        Assignment.objects.create(resident=refused, user=volunteer_a)
    assert "鈴木 キヨ" not in visible(volunteer_a)
    with tenant_scope("tenant_a"):
        sharing = actions.do_start_disaster_sharing(actor=staff_a, reason="震度6弱 避難指示", confirmed=True)
    assert sharing.started_by == staff_a
    assert "鈴木 キヨ" in visible(volunteer_a)
    with tenant_scope("tenant_a"):
        actions.do_end_disaster_sharing(actor=staff_a, confirmed=True)
    assert "鈴木 キヨ" not in visible(volunteer_a)


def test_staff_attached_to_an_area_see_its_subtree_only(staff_a, hanako, shigeru, areas_a):
    assert visible(staff_a) == {"山田 花子", "髙橋 茂"}  # attached to no area: the whole municipality
    attach(staff_a, areas_a["osumi"])
    assert visible(staff_a) == {"山田 花子"}


def test_association_officer_sees_consenting_residents_of_their_association(tenant_a, hanako, shigeru, areas_a):
    officer = make_user("tenant_a", "officer-a", User.Role.ASSOCIATION_OFFICER)
    attach(officer, areas_a["assoc"])
    assert visible(officer) == {"山田 花子"}


def test_volunteer_gets_404_for_an_unassigned_resident_page_and_api(client_a, volunteer_a, hanako, shigeru):
    client_a.sign_in("volunteer-a")
    assert client_a.get(f"/watch/residents/{shigeru.pk}/").status_code == HTTPStatus.NOT_FOUND
    assert client_a.get(f"/api/v1/residents/{shigeru.pk}/").status_code == HTTPStatus.NOT_FOUND
    assert client_a.get(f"/watch/residents/{hanako.pk}/").status_code == HTTPStatus.OK


def test_volunteer_never_sees_sensitive_fields(client_a, volunteer_a, hanako):
    client_a.sign_in("volunteer-a")
    page = client_a.get(f"/watch/residents/{hanako.pk}/").content.decode()
    assert "耳が遠い" in page
    assert "心不全の既往" not in page and "要介護1" not in page
    data = client_a.get(f"/api/v1/residents/{hanako.pk}/").json()
    assert data["name"] == "山田 花子"
    assert "health_notes" not in data and "care_level" not in data


def test_staff_see_sensitive_fields(client_a, staff_a, hanako):
    client_a.sign_in("staff-a")
    page = client_a.get(f"/watch/residents/{hanako.pk}/").content.decode()
    assert "心不全の既往" in page
    assert client_a.get(f"/api/v1/residents/{hanako.pk}/").json()["care_level"] == "要介護1"


def test_outsider_of_b_gets_nothing_of_a(client_b, outsider_b, hanako, resident_b):
    client_b.sign_in("outsider-b")
    listed = client_b.get("/api/v1/residents/").json()["results"]
    assert [r["name"] for r in listed] == ["B市の住民"]
    # Ids are per schema: A's resident id names nothing (or B's own) in B.
    assert "山田 花子" not in client_b.get(f"/api/v1/residents/{hanako.pk}/").content.decode()
    assert "山田 花子" not in client_b.get(f"/watch/residents/{hanako.pk}/").content.decode()
    assert "山田 花子" not in client_b.get("/watch/").content.decode()


def test_overview_lists_overdue_first_for_staff(client_a, staff_a, hanako, shigeru):
    with tenant_scope("tenant_a"):
        from watch.models import Resident

        Resident.objects.filter(pk=shigeru.pk).update(is_overdue=True)
    client_a.sign_in("staff-a")
    page = client_a.get("/watch/").content.decode()
    assert page.index("髙橋 茂") < page.index("山田 花子")
    assert "1 overdue" in page


def test_signed_out_user_is_sent_to_sign_in(client_a, hanako):
    response = client_a.get("/watch/")
    assert response.status_code == HTTPStatus.FOUND
    assert client_a.get("/api/v1/residents/").status_code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN)
