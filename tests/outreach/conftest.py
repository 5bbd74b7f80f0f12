import pytest

from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import make_user
from tests.watch.conftest import areas_a, attach, hanako, resident_b, shigeru  # noqa: F401 - shared fixtures


@pytest.fixture
def team(hanako, volunteer_a, areas_a):  # noqa: F811 - the fixtures imported above
    """The volunteer is on 花子's team; a case worker is assigned; staff oversee the district."""
    from watch.models import Assignment

    case_worker = make_user("tenant_a", "cw-a", User.Role.CASE_WORKER)
    staff = make_user("tenant_a", "area-staff", User.Role.MUNICIPAL_STAFF)
    attach(staff, areas_a["osumi"])
    with tenant_scope("tenant_a"):
        Assignment.objects.create(resident=hanako, user=case_worker)
    return {"volunteer": volunteer_a, "case_worker": case_worker, "staff": staff}
