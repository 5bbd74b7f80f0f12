"""Who may see which residents, and which of their parts: the one definition.

Each role has a `Lens` (below). Everything that tells a person about a resident asks
it: the querysets of pages, the API and exports (`residents_for_user`), single checks
(`can_see_resident`, `get_resident_for_user`: the same 404 for "missing" and "not
yours"), the live-event audience (`resident_audience`), escalation recipients and
notification texts (`can_see_resident`, `can_see_notes`), and the edge's fast path
(`passes_filters` on facts it reads in SQL). A lens is rendered twice, as a Q for lists
and in Python for one resident's facts; tests/watch/test_access.py runs both on every
combination and compares them.
"""
from dataclasses import dataclass

from django.db.models import Q, QuerySet
from django.http import Http404

from notifications.events import to_area, to_user
from tenants.accounts.models import User
from watch.models import Area, Assignment, DisasterSharing, Resident

# Live-event group of those who see every resident of the tenant.
ALL_AREAS = "areas.all"
VOLUNTEERS = "consent_share_with_volunteers"
ASSOCIATION = "consent_share_with_association"
SENSITIVE_FIELDS = ("care_level", "health_notes")


@dataclass(frozen=True)
class Lens:
    """How one role sees residents. Reach: the whole tenant, the subtrees of the areas
    the person is attached to, and/or the residents on their team. Then two filters:
    the consent flag that must allow sharing (None: no consent needed; the disaster
    exception overrides it for people who need help to evacuate), and ended residents
    hidden. `sensitive`: health and case notes and the notes of contacts and concerns
    (要配慮個人情報)."""

    whole_tenant: bool = False
    areas: bool = False
    whole_tenant_without_areas: bool = False
    assigned: bool = False
    shared_by: str | None = None
    hides_ended: bool = False
    sensitive: bool = False


LENSES: dict[str, Lens] = {
    User.Role.ADMIN: Lens(whole_tenant=True, sensitive=True),
    # Staff attached to no area oversee the whole municipality.
    User.Role.MUNICIPAL_STAFF: Lens(areas=True, whole_tenant_without_areas=True, sensitive=True),
    User.Role.CASE_WORKER: Lens(areas=True, assigned=True, sensitive=True),
    User.Role.VOLUNTEER: Lens(assigned=True, shared_by=VOLUNTEERS, hides_ended=True),
    User.Role.ASSOCIATION_OFFICER: Lens(areas=True, shared_by=ASSOCIATION, hides_ended=True),
}


def lens_for(user) -> Lens | None:
    """The user's lens; None for anyone who sees no resident (operators, the inactive)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    return LENSES.get(user.role)


def can_see_sensitive(user) -> bool:
    """Health, disability and case notes, and the notes of contacts and concerns."""
    lens = lens_for(user)
    return bool(lens and lens.sensitive)


can_see_notes = can_see_sensitive


def note_visible_to(user, author_id: int | None) -> bool:
    """A note of a contact or a concern: those who see sensitive data, and its own author."""
    return can_see_notes(user) or (author_id is not None and author_id == getattr(user, "pk", None))


def disaster_sharing_active() -> bool:
    return DisasterSharing.objects.filter(ended_at=None).exists()


def area_paths_for_user(user) -> list[str]:
    return list(Area.objects.filter(memberships__user=user).values_list("path", flat=True))


def _in_subtrees(paths: list[str], field: str = "area__path") -> Q:
    q = Q(pk__in=[])
    for path in paths:
        q |= Q(**{f"{field}__startswith": path})
    return q


def shared_q(flag: str, disaster: bool) -> Q:
    """The consent filter as SQL: consent given with sharing allowed by `flag`; during the
    disaster exception, also everyone who needs help to evacuate."""
    q = Q(consent=Resident.Consent.GIVEN, **{flag: True})
    return q | Q(needs_evacuation_support=True) if disaster else q


def is_shared(resident, flag: str, disaster: bool) -> bool:
    """`shared_q` on one resident's facts (a Resident, or any object with its fields)."""
    given = resident.consent == Resident.Consent.GIVEN and bool(getattr(resident, flag))
    return given or (disaster and bool(resident.needs_evacuation_support))


def passes_filters(lens: Lens, resident, disaster: bool) -> bool:
    """The lens's filters (consent, ended) on one resident's facts; reach is not checked."""
    if lens.hides_ended and resident.status == Resident.Status.ENDED:
        return False
    return lens.shared_by is None or is_shared(resident, lens.shared_by, disaster)


def area_scope(user) -> list[str] | None:
    """The paths of the subtrees `user` looks after, or None for the whole tenant (its
    administrator, and staff attached to no area); [] for no area at all."""
    lens = lens_for(user)
    if lens is None:
        return []
    if lens.whole_tenant:
        return None
    paths = area_paths_for_user(user) if lens.areas else []
    if lens.whole_tenant_without_areas and not paths:
        return None
    return paths


def oversees_whole_tenant(user) -> bool:
    """The tenant's administrator and staff attached to no area: they may switch what
    applies to everyone (disaster sharing)."""
    return lens_for(user) is not None and area_scope(user) is None


def residents_for_user(user) -> QuerySet[Resident]:
    """Every resident `user` may see, by role, area, assignment and consent."""
    residents = Resident.objects.all()
    lens = lens_for(user)
    if lens is None:
        return residents.none()
    scope = area_scope(user)
    if scope is not None:
        reach = _in_subtrees(scope)
        if lens.assigned:
            reach |= Q(pk__in=Assignment.objects.filter(user=user).values("resident_id"))
        residents = residents.filter(reach)
    if lens.shared_by:
        residents = residents.filter(shared_q(lens.shared_by, disaster_sharing_active()))
    if lens.hides_ended:
        residents = residents.exclude(status=Resident.Status.ENDED)
    return residents


def can_see_resident(user, resident) -> bool:
    return residents_for_user(user).filter(pk=resident.pk).exists()


def get_resident_for_user(user, resident_id) -> Resident:
    try:
        return residents_for_user(user).select_related("area").get(pk=int(resident_id))
    except (Resident.DoesNotExist, ValueError, TypeError, OverflowError) as exc:
        raise Http404 from exc


def notifications_about_visible_residents(user, notifications):
    """Of `notifications`, those about no resident or about one the user may see."""
    return notifications.filter(Q(subject_resident__isnull=True)
                                | Q(subject_resident__in=residents_for_user(user).values("pk")))


def areas_for_user(user) -> QuerySet[Area]:
    scope = area_scope(user)
    return Area.objects.all() if scope is None else Area.objects.filter(_in_subtrees(scope, field="path"))


# Live events -------------------------------------------------------------------------
# A connection joins the groups of its user's lens; an event about a resident goes to
# the groups whose lens passes for that resident. Events carry ids and states, never
# names or notes.

def area_group(area_id: int, role: str) -> str:
    return f"{to_area(area_id)}.{role}"


def area_audiences(user) -> list[str]:
    """The area groups a user's live connection joins (registered with notifications)."""
    lens = lens_for(user)
    if lens is None:
        return []
    scope = area_scope(user)
    if scope is None:
        return [ALL_AREAS]
    if not lens.areas:
        return []
    area_ids = Area.objects.filter(memberships__user=user).values_list("pk", flat=True)
    return [area_group(pk, user.role) for pk in area_ids]


def audience_for(resident, area_ids: list[int], team: list[tuple[int, str]], disaster: bool) -> list[str]:
    """The groups of everyone who may see `resident` (its facts), given the ids of its
    area and the areas above, and its team as (user id, role) of active users."""
    audience = [ALL_AREAS]
    for role, lens in LENSES.items():
        if lens.areas and passes_filters(lens, resident, disaster):
            audience += [area_group(pk, role) for pk in area_ids]
    for user_id, role in team:
        lens = LENSES.get(role)
        if lens and lens.assigned and passes_filters(lens, resident, disaster):
            audience.append(to_user(user_id))
    return audience


def resident_audience(resident: Resident) -> list[str]:
    team = list(Assignment.objects.filter(resident=resident, user__is_active=True)
                .values_list("user_id", "user__role"))
    return audience_for(resident, resident.area.ancestor_ids, team, disaster_sharing_active())
