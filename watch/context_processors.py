"""What every page of a tenant shows, whatever app renders it."""
import functools

from watch.models import DisasterSharing


def disaster_sharing(request) -> dict:
    """While disaster sharing is on, every signed-in page of the tenant says so (a banner);
    and the main menu's links the person may use (`navigation`, given here because this
    is the processor settings name)."""
    tenant = getattr(request, "tenant", None)
    if tenant is None or tenant.schema_name == "public" or not request.user.is_authenticated:
        return {}
    return {"disaster_sharing": DisasterSharing.objects.filter(ended_at=None).select_related("started_by").first(),
            **navigation(request)}


def navigation(request) -> dict:
    """Which links of the main menu the person may use (base.html shows only those)."""
    from tenants.accounts.models import STAFF_ROLES, User
    from watch.access import oversees_whole_tenant

    user = request.user
    role = getattr(user, "role", None)
    return {"nav": {
        "plans_visits": role in {User.Role.ADMIN, User.Role.MUNICIPAL_STAFF, User.Role.CASE_WORKER},
        "manages_residents": role in {User.Role.ADMIN, User.Role.MUNICIPAL_STAFF, User.Role.CASE_WORKER},
        # A callable: the template asks (one query for staff) only when it draws the menu.
        "oversees_tenant": functools.partial(oversees_whole_tenant, user),
        "runs_escalation": role in STAFF_ROLES,
    }}
