"""People: a person's page (role, areas, what they can see), invitations refused for an
address in use, and deactivations (of a person, of a tenant) that ask for confirmation."""
from http import HTTPStatus

import pytest
from django.core import mail

from tenants.accounts.models import Invitation, User
from tenants.context import tenant_scope
from tenants.models import Tenant
from tests.conftest import HOST_A, TenantClient, make_user
from tests.watch import conftest as watch_fixtures
from tests.watch.conftest import attach, make_resident
from watch.access import residents_for_user
from watch.models import AreaMembership

# The area tree and residents of tests/watch (a conftest there, not here).
areas_a, hanako, shigeru = watch_fixtures.areas_a, watch_fixtures.hanako, watch_fixtures.shigeru


def signed_in(username: str, language: str = "en") -> TenantClient:
    client = TenantClient(HOST_A, language=language)
    client.sign_in(username)
    return client


def reach_of(client, person) -> str:
    body = client.get(f"/watch/people/{person.pk}/").content.decode()
    return body.split('data-testid="reach">')[1].split("</ul>")[0]


@pytest.fixture
def officer_a(tenant_a):
    return make_user("tenant_a", "officer-a", User.Role.ASSOCIATION_OFFICER, email="officer-a@example.jp")


# What a person can see, in words.
def test_the_person_page_says_in_japanese_whom_each_role_can_see_and_how_many(
        admin_a, staff_a, volunteer_a, officer_a, areas_a, hanako, shigeru):
    attach(officer_a, areas_a["assoc"])
    with tenant_scope("tenant_a"):
        make_resident(areas_a["block"], "鈴木 一郎", consent="refused", share=False)
        counts = {user.username: residents_for_user(user).count() for user in (admin_a, officer_a, volunteer_a)}
    assert counts == {"admin-a": 3, "officer-a": 1, "volunteer-a": 1}
    admin = signed_in("admin-a", language="ja")
    assert "テスト市A全体の 3 人" in reach_of(admin, admin_a)
    assert "健康・ケースの記録を見られます。" in reach_of(admin, admin_a)
    officer = reach_of(admin, officer_a)
    assert "大住 › 大住ヶ丘連合自治会の 1 人" in officer
    assert "情報の共有に同意した対象者だけが含まれます。" in officer and "健康・ケースの記録は見られません。" in officer
    assert "担当の 1 人" in reach_of(admin, volunteer_a)
    assert "テスト市A全体の 3 人" in reach_of(admin, staff_a)


def test_the_person_page_in_english_counts_a_case_workers_areas_and_assignments(admin_a, areas_a, hanako, shigeru):
    worker = make_user("tenant_a", "worker-a", User.Role.CASE_WORKER)
    attach(worker, areas_a["kodo"])
    with tenant_scope("tenant_a"):
        hanako.assignments.create(user=worker)
    assert "2 residents in 興戸 or assigned to them" in reach_of(signed_in("admin-a"), worker)


def test_a_person_sees_their_own_page_but_not_anyone_elses(volunteer_a, staff_a, areas_a, hanako):
    volunteer = signed_in("volunteer-a")
    assert "1 resident assigned to them" in reach_of(volunteer, volunteer_a)
    assert volunteer.get(f"/watch/people/{staff_a.pk}/").status_code == HTTPStatus.FORBIDDEN
    attach(staff_a, areas_a["kodo"])
    staff = signed_in("staff-a")
    assert staff.get(f"/watch/people/{volunteer_a.pk}/").status_code == HTTPStatus.FORBIDDEN


def test_the_administrator_of_b_gets_404_for_a_person_of_a(client_b, outsider_b, volunteer_a, staff_a):
    client_b.sign_in("outsider-b")
    person = max(volunteer_a.pk, staff_a.pk, outsider_b.pk) + 1
    for method, path, data in (("get", f"/watch/people/{person}/", None),
                               ("post", f"/watch/people/{person}/role/", {"role": "volunteer"}),
                               ("post", f"/watch/people/{person}/areas/", {"action": "attach", "area": 1})):
        assert getattr(client_b, method)(path, data).status_code == HTTPStatus.NOT_FOUND


# Areas of a person.
def test_the_administrator_attaches_an_officer_who_then_sees_the_residents_and_their_pages_reload(
        admin_a, officer_a, areas_a, hanako, captured_events, django_capture_on_commit_callbacks):
    admin = signed_in("admin-a")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(f"/watch/people/{officer_a.pk}/areas/", {"action": "attach",
                                                                       "area": areas_a["osumi"].pk})
    assert response.status_code == HTTPStatus.FOUND
    assert (f"tenant_a.user.{officer_a.pk}", {"type": "session.ended"}) in captured_events
    page = admin.get(f"/watch/people/{officer_a.pk}/").content.decode()
    assert "officer-a was attached to 大住." in page and "1 resident in 大住" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(f"/watch/people/{officer_a.pk}/areas/", {"action": "detach",
                                                                       "area": areas_a["osumi"].pk})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        assert not residents_for_user(officer_a).exists()
    assert "No area yet, so no resident." in reach_of(admin, officer_a)


def test_a_volunteer_cannot_be_attached_and_a_missing_area_is_404(admin_a, volunteer_a, officer_a, areas_a):
    admin = signed_in("admin-a")
    response = admin.post(f"/watch/people/{volunteer_a.pk}/areas/", {"action": "attach", "area": areas_a["osumi"].pk})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Only municipal staff, case workers and association officers can be attached" in response.content.decode()
    missing = max(a.pk for a in areas_a.values()) + 100
    response = admin.post(f"/watch/people/{officer_a.pk}/areas/", {"action": "attach", "area": missing})
    assert response.status_code == HTTPStatus.NOT_FOUND
    response = admin.post(f"/watch/people/{officer_a.pk}/areas/", {"action": "adopt", "area": areas_a["osumi"].pk})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    with tenant_scope("tenant_a"):
        assert not AreaMembership.objects.exists()


# Roles.
def test_a_new_role_applies_at_once_and_a_role_not_seeing_by_area_loses_its_areas(
        admin_a, staff_a, areas_a, hanako, captured_events, django_capture_on_commit_callbacks):
    attach(staff_a, areas_a["assoc"])
    staff = signed_in("staff-a")
    admin = signed_in("admin-a")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(f"/watch/people/{staff_a.pk}/role/", {"role": "volunteer"}, follow=True)
    assert response.status_code == HTTPStatus.OK
    page = response.content.decode()
    assert "staff-a is now Volunteer and was signed out" in page
    assert "A Volunteer sees no residents by area, so staff-a was detached from 大住 › 大住ヶ丘連合自治会." in page
    assert "0 residents assigned to them" in page
    with tenant_scope("tenant_a"):
        assert User.objects.get(pk=staff_a.pk).role == User.Role.VOLUNTEER
        assert not AreaMembership.objects.filter(user=staff_a).exists()
    assert staff.get("/watch/").status_code == HTTPStatus.FOUND  # signed out
    assert (f"tenant_a.user.{staff_a.pk}", {"type": "session.ended"}) in captured_events


def test_a_role_changed_by_the_action_itself_closes_the_persons_open_pages(
        admin_a, staff_a, captured_events, django_capture_on_commit_callbacks):
    """A shell or a command changes roles without the person page: the live connections
    of the old role end all the same."""
    from tenants.accounts.actions import do_change_role

    with django_capture_on_commit_callbacks(execute=True), tenant_scope("tenant_a"):
        assert do_change_role(actor=admin_a, user=staff_a, role=User.Role.CASE_WORKER)
    assert captured_events == [(f"tenant_a.user.{staff_a.pk}", {"type": "session.ended"})]


def test_a_role_that_sees_by_area_keeps_its_areas(admin_a, staff_a, areas_a):
    attach(staff_a, areas_a["assoc"])
    response = signed_in("admin-a").post(f"/watch/people/{staff_a.pk}/role/", {"role": "case_worker"})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        assert list(AreaMembership.objects.filter(user=staff_a).values_list("area_id", flat=True)) == [
            areas_a["assoc"].pk]


def test_choosing_the_same_role_changes_nothing_and_signs_nobody_out(admin_a, staff_a):
    staff = signed_in("staff-a")
    response = signed_in("admin-a").post(f"/watch/people/{staff_a.pk}/role/", {"role": "municipal_staff"},
                                         follow=True)
    assert "staff-a already has this role." in response.content.decode()
    assert staff.get("/watch/").status_code == HTTPStatus.OK


def test_a_role_that_is_not_a_role_gets_400_next_to_the_field_and_nothing_changes(admin_a, staff_a):
    response = signed_in("admin-a").post(f"/watch/people/{staff_a.pk}/role/", {"role": "operator"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    field = response.content.decode().split('for="id_role"')[1].split("</div>")[0]
    assert "Select a valid choice. operator is not one of the available choices." in field
    with tenant_scope("tenant_a"):
        assert User.objects.get(pk=staff_a.pk).role == User.Role.MUNICIPAL_STAFF


def test_the_last_active_administrator_cannot_demote_themselves_in_japanese(admin_a):
    with tenant_scope("tenant_a"):  # the administrator made when the tenant was provisioned
        User.objects.filter(role=User.Role.ADMIN).exclude(pk=admin_a.pk).update(is_active=False)
    admin = signed_in("admin-a", language="ja")
    response = admin.post(f"/watch/people/{admin_a.pk}/role/", {"role": "municipal_staff"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    field = response.content.decode().split('for="id_role"')[1].split("</div>")[0]
    assert "有効な管理者が1人は必要です。先にほかの人を管理者にしてください。" in field
    with tenant_scope("tenant_a"):
        assert User.objects.get(pk=admin_a.pk).role == User.Role.ADMIN
    assert admin.get("/accounts/users/").status_code == HTTPStatus.OK  # still signed in


def test_an_administrator_with_another_active_one_may_step_down(admin_a):
    make_user("tenant_a", "admin-2", User.Role.ADMIN)
    response = signed_in("admin-a").post(f"/watch/people/{admin_a.pk}/role/", {"role": "municipal_staff"})
    assert response.status_code == HTTPStatus.FOUND and response["Location"] == "/accounts/login/"
    with tenant_scope("tenant_a"):
        assert User.objects.get(pk=admin_a.pk).role == User.Role.MUNICIPAL_STAFF


def test_only_an_administrator_changes_roles(admin_a, staff_a, volunteer_a):
    # Staff attached to no area oversee the whole tenant and manage areas, not roles.
    staff = signed_in("staff-a")
    assert staff.get(f"/watch/people/{volunteer_a.pk}/").status_code == HTTPStatus.OK
    assert "Change the role" not in staff.get(f"/watch/people/{volunteer_a.pk}/").content.decode()
    assert staff.post(f"/watch/people/{volunteer_a.pk}/role/", {"role": "admin"}).status_code == HTTPStatus.FORBIDDEN
    assert signed_in("volunteer-a").post(f"/watch/people/{volunteer_a.pk}/role/",
                                         {"role": "admin"}).status_code == HTTPStatus.FORBIDDEN
    with tenant_scope("tenant_a"):
        assert User.objects.get(pk=volunteer_a.pk).role == User.Role.VOLUNTEER


# The users list.
def test_the_users_list_links_each_person_to_their_page_with_their_areas(admin_a, staff_a, areas_a):
    attach(staff_a, areas_a["block"])
    attach(staff_a, areas_a["kodo"])
    body = signed_in("admin-a").get("/accounts/users/").content.decode()
    row = body.split(f'data-testid="user-{staff_a.pk}"')[1].split("</tr>")[0]
    assert f'href="/watch/people/{staff_a.pk}/"' in row
    assert "大住 › 大住ヶ丘連合自治会 › 3班" in row and "興戸" in row


# Invitations.
def test_an_invitation_offers_the_volunteer_role_first(admin_a):
    body = signed_in("admin-a").get("/accounts/users/").content.decode()
    assert '<option value="volunteer" selected>' in body


@pytest.mark.parametrize("email, message", [
    ("STAFF-A@Example.JP", "staff-a already uses this address."),
    ("waiting@example.jp", "An invitation to this address is waiting to be accepted"),
])
def test_an_invitation_to_an_address_in_use_is_refused_next_to_the_email_field(admin_a, staff_a, email, message,
                                                                                 django_capture_on_commit_callbacks):
    admin = signed_in("admin-a")
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.post("/accounts/users/", {"display_name": "待機", "email": "Waiting@example.jp",
                                               "role": "volunteer"}).status_code == HTTPStatus.FOUND
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post("/accounts/users/", {"display_name": "新人", "email": email, "role": "volunteer"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    field = response.content.decode().split('for="id_email"')[1].split("</div>")[0]
    assert message in field
    with tenant_scope("tenant_a"):
        assert Invitation.objects.count() == 1
    assert mail.outbox == []


def test_an_address_of_a_deactivated_person_or_a_revoked_invitation_can_be_invited_again(admin_a, staff_a):
    admin = signed_in("admin-a")
    admin.post("/accounts/users/", {"display_name": "X", "email": "x@example.jp", "role": "volunteer"})
    with tenant_scope("tenant_a"):
        invitation = Invitation.objects.get()
        User.objects.filter(pk=staff_a.pk).update(is_active=False)
    admin.post(f"/accounts/invitations/{invitation.pk}/revoke/")
    for email in ("x@example.jp", "staff-a@example.jp"):
        response = admin.post("/accounts/users/", {"display_name": "X", "email": email, "role": "volunteer"})
        assert response.status_code == HTTPStatus.FOUND, email


# Confirmations.
def test_deactivating_a_person_without_confirming_is_refused_and_they_stay_active(admin_a, volunteer_a):
    admin = signed_in("admin-a")
    page = admin.get("/accounts/users/").content.decode()
    assert 'name="confirm" value="yes" required' in page
    response = admin.post(f"/accounts/users/{volunteer_a.pk}/deactivate/")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    row = response.content.decode().split(f'data-testid="user-{volunteer_a.pk}"')[1].split("</tr>")[0]
    assert "<details class=\"confirm-action\" open>" in row and "Tick the box to confirm." in row
    with tenant_scope("tenant_a"):
        assert User.objects.get(pk=volunteer_a.pk).is_active
    response = admin.post(f"/accounts/users/{volunteer_a.pk}/deactivate/", {"confirm": "yes"})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        assert not User.objects.get(pk=volunteer_a.pk).is_active


def test_deactivating_a_tenant_without_confirming_is_refused_in_japanese(public_client, operator, tenant_a):
    public_client.sign_in("operator")
    japanese = TenantClient(public_client.host, language="ja")
    japanese.cookies = public_client.cookies
    response = japanese.post(f"/tenants/{tenant_a.pk}/deactivate/")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "確認のチェックを入れてください。" in response.content.decode()
    assert Tenant.objects.get(pk=tenant_a.pk).is_active
    response = japanese.post(f"/tenants/{tenant_a.pk}/deactivate/", {"confirm": "yes"})
    assert response.status_code == HTTPStatus.FOUND
    assert not Tenant.objects.get(pk=tenant_a.pk).is_active
    japanese.post(f"/tenants/{tenant_a.pk}/reactivate/")
    assert Tenant.objects.get(pk=tenant_a.pk).is_active


def test_detaching_staff_from_their_last_area_asks_first_because_they_then_see_the_whole_tenant(
        admin_a, staff_a, areas_a, hanako):
    attach(staff_a, areas_a["kodo"])  # 興戸: not where 山田 花子 lives
    admin = signed_in("admin-a")
    page = admin.get(f"/watch/people/{staff_a.pk}/").content.decode()
    assert "will see every resident of the tenant, health and case notes included." in page
    response = admin.post(f"/watch/people/{staff_a.pk}/areas/", {"action": "detach", "area": areas_a["kodo"].pk})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Tick the box to confirm." in response.content.decode()
    with tenant_scope("tenant_a"):
        assert AreaMembership.objects.filter(user=staff_a).exists()
        assert not residents_for_user(staff_a).filter(pk=hanako.pk).exists()
    response = admin.post(f"/watch/people/{staff_a.pk}/areas/", {"action": "detach", "area": areas_a["kodo"].pk,
                                                                   "confirm": "yes"})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        assert residents_for_user(staff_a).filter(pk=hanako.pk).exists()
