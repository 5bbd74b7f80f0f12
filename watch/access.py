"""What each person may see of the residents. Every lookup of a resident named by user
input goes through `get_resident_for_user`, which gives the same 404 for "missing" and
"not yours"."""
from django.db.models import Q, QuerySet
from django.http import Http404

from tenants.accounts.models import User
from watch.models import Area, DisasterSharing, Resident

SENSITIVE_ROLES = {User.Role.ADMIN, User.Role.MUNICIPAL_STAFF, User.Role.CASE_WORKER}
SENSITIVE_FIELDS = ("care_level", "health_notes")


def can_see_sensitive(user) -> bool:
    """Health, disability and case notes (要配慮個人情報): never volunteers or officers."""
    return user.is_active and user.role in SENSITIVE_ROLES


def disaster_sharing_active() -> bool:
    return DisasterSharing.objects.filter(ended_at=None).exists()


def area_paths_for_user(user) -> list[str]:
    return list(Area.objects.filter(memberships__user=user).values_list("path", flat=True))


def _in_subtrees(paths: list[str], field: str = "area__path") -> Q:
    q = Q(pk__in=[])
    for path in paths:
        q |= Q(**{f"{field}__startswith": path})
    return q


def residents_for_user(user) -> QuerySet[Resident]:
    """Every resident `user` may see, by role, area, assignment and consent."""
    residents = Resident.objects.all()
    if not user.is_active or user.role == User.Role.OPERATOR:
        return residents.none()
    role = user.role
    if role == User.Role.ADMIN:
        return residents
    paths = area_paths_for_user(user)
    if role == User.Role.MUNICIPAL_STAFF:
        # Staff attached to no area oversee the whole municipality.
        return residents.filter(_in_subtrees(paths)) if paths else residents
    if role == User.Role.CASE_WORKER:
        return residents.filter(_in_subtrees(paths) | Q(assignments__user=user)).distinct()
    disaster = disaster_sharing_active()
    if role == User.Role.VOLUNTEER:
        shared = Q(consent_share_with_volunteers=True, consent=Resident.Consent.GIVEN)
        if disaster:
            shared |= Q(needs_evacuation_support=True)
        return residents.filter(shared, assignments__user=user).exclude(status=Resident.Status.ENDED)
    if role == User.Role.ASSOCIATION_OFFICER:
        shared = Q(consent_share_with_association=True, consent=Resident.Consent.GIVEN)
        if disaster:
            shared |= Q(needs_evacuation_support=True)
        return residents.filter(shared, _in_subtrees(paths)).exclude(status=Resident.Status.ENDED)
    return residents.none()


def get_resident_for_user(user, resident_id) -> Resident:
    try:
        return residents_for_user(user).select_related("area").get(pk=int(resident_id))
    except (Resident.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404 from exc


def area_scope(user) -> list[str] | None:
    """The paths of the subtrees `user` looks after, or None for the whole tenant (its
    administrator, and staff attached to no area)."""
    if user.role == User.Role.ADMIN:
        return None
    paths = area_paths_for_user(user)
    if user.role == User.Role.MUNICIPAL_STAFF and not paths:
        return None
    return paths


def areas_for_user(user) -> QuerySet[Area]:
    scope = area_scope(user)
    return Area.objects.all() if scope is None else Area.objects.filter(_in_subtrees(scope, field="path"))
