"""Watch-over fixtures: an area tree and residents in tenant A (and one in B)."""
from datetime import timedelta

import pytest

from tenants.context import tenant_scope
from watch import actions
from watch.models import Area, AreaMembership, Assignment, Resident


def make_resident(area, name, *, consent="given", share=True, rhythms=None, **fields) -> Resident:
    resident = actions.do_create_resident(area=area, name=name, rhythms=rhythms, **fields)
    actions.do_record_consent(actor=None, resident=resident, status=consent,
                              share_with_volunteers=share, share_with_association=share)
    return resident


@pytest.fixture
def areas_a(tenant_a):
    """大住 (district) → 大住ヶ丘連合自治会 (association) → 3班 (block), and 興戸 (district)."""
    with tenant_scope("tenant_a"):
        osumi = actions.do_create_area(name="大住", kind=Area.Kind.DISTRICT)
        assoc = actions.do_create_area(name="大住ヶ丘連合自治会", kind=Area.Kind.ASSOCIATION, parent=osumi)
        block = actions.do_create_area(name="3班", kind=Area.Kind.BLOCK, parent=assoc)
        kodo = actions.do_create_area(name="興戸", kind=Area.Kind.DISTRICT)
    return {"osumi": osumi, "assoc": assoc, "block": block, "kodo": kodo}


@pytest.fixture
def hanako(areas_a, volunteer_a):
    """A resident in 3班 assigned to the volunteer, consent given, with sensitive notes."""
    with tenant_scope("tenant_a"):
        resident = make_resident(areas_a["block"], "山田 花子", furigana="ヤマダ ハナコ", care_level="要介護1",
                                 health_notes="心不全の既往", visit_notes="耳が遠い",
                                 rhythms=[{"interval": timedelta(days=7), "grace": timedelta(hours=12)}])
        Assignment.objects.create(resident=resident, user=volunteer_a)
    return resident


@pytest.fixture
def shigeru(areas_a):
    """A resident in 興戸, not assigned to anyone."""
    with tenant_scope("tenant_a"):
        return make_resident(areas_a["kodo"], "髙橋 茂")


@pytest.fixture
def resident_b(tenant_b):
    with tenant_scope("tenant_b"):
        area = actions.do_create_area(name="豊岡", kind=Area.Kind.DISTRICT)
        return make_resident(area, "B市の住民")


def attach(user, area):
    with tenant_scope("tenant_a"):
        AreaMembership.objects.create(user=user, area=area)
