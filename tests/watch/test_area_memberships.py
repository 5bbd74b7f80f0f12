"""Area memberships and emergency contacts change through actions only (watch.actions)."""
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import translation

from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import make_user
from tests.watch.conftest import attach
from watch.access import residents_for_user
from watch.actions import do_add_emergency_contact, do_attach_to_area, do_detach_from_area
from watch.models import AreaMembership, EmergencyContact


@pytest.fixture
def officer_a(tenant_a):
    return make_user("tenant_a", "officer-a", User.Role.ASSOCIATION_OFFICER)


def test_an_officer_attached_to_an_association_sees_its_residents_until_detached(admin_a, officer_a, areas_a,
                                                                                   hanako):
    with tenant_scope("tenant_a"):
        assert not residents_for_user(officer_a).exists()
        do_attach_to_area(actor=admin_a, user=officer_a, area=areas_a["assoc"])
        do_attach_to_area(actor=admin_a, user=officer_a, area=areas_a["assoc"])
        assert AreaMembership.objects.filter(user=officer_a).count() == 1
        assert list(residents_for_user(officer_a)) == [hanako]
        assert do_detach_from_area(actor=admin_a, user=officer_a, area=areas_a["assoc"]) is True
        assert do_detach_from_area(actor=admin_a, user=officer_a, area=areas_a["assoc"]) is False
        assert not residents_for_user(officer_a).exists()


def test_a_volunteer_cannot_be_attached_to_an_area_in_japanese_and_english(admin_a, volunteer_a, areas_a):
    with tenant_scope("tenant_a"):
        with translation.override("ja"), pytest.raises(ValidationError) as ja:
            do_attach_to_area(actor=admin_a, user=volunteer_a, area=areas_a["osumi"])
        with translation.override("en"), pytest.raises(ValidationError) as en:
            do_attach_to_area(actor=admin_a, user=volunteer_a, area=areas_a["osumi"])
        assert not AreaMembership.objects.exists()
    assert ja.value.message_dict["user"] == ["地区に割り当てられるのは、職員・相談員・自治会役員だけです。"]
    assert en.value.message_dict["user"] == [
        "Only municipal staff, case workers and association officers can be attached to an area."]


def test_staff_attached_to_an_area_cannot_attach_others(staff_a, officer_a, areas_a):
    attach(staff_a, areas_a["osumi"])
    with tenant_scope("tenant_a"):
        with pytest.raises(PermissionDenied):
            do_attach_to_area(actor=staff_a, user=officer_a, area=areas_a["assoc"])
        with pytest.raises(PermissionDenied):
            do_detach_from_area(actor=staff_a, user=staff_a, area=areas_a["osumi"])
        assert list(AreaMembership.objects.values_list("user__username", flat=True)) == ["staff-a"]


def test_an_attachment_in_one_tenant_is_not_in_another(admin_a, officer_a, areas_a, outsider_b, resident_b):
    with tenant_scope("tenant_a"):
        do_attach_to_area(actor=None, user=officer_a, area=areas_a["assoc"])
    with tenant_scope("tenant_b"):
        assert not AreaMembership.objects.exists()


def test_an_emergency_contact_too_long_is_refused_and_nothing_saved(admin_a, hanako):
    with tenant_scope("tenant_a"), translation.override("en"), pytest.raises(ValidationError) as refused:
        do_add_emergency_contact(actor=admin_a, resident=hanako, name="山田 一郎", phone="0" * 21)
    assert "phone" in refused.value.message_dict
    with tenant_scope("tenant_a"):
        assert not EmergencyContact.objects.exists()
        contact = do_add_emergency_contact(actor=admin_a, resident=hanako, name="山田 一郎", relation="長男",
                                           phone="090-1234-5678")
        assert list(hanako.emergency_contacts.values_list("name", "relation", "phone")) == [
            ("山田 一郎", "長男", "090-1234-5678")]
    assert contact.pk


def test_a_volunteer_cannot_add_an_emergency_contact(volunteer_a, hanako):
    with tenant_scope("tenant_a"):
        with pytest.raises(PermissionDenied):
            do_add_emergency_contact(actor=volunteer_a, resident=hanako, name="山田 一郎")
        assert not EmergencyContact.objects.exists()
