"""The area tree and who is attached where: every change to them.

An area's `path` ("/1/5/9/") decides who sees its residents (watch.access matches
subtrees by prefix) and its `full_name` ("大住 › 山手東自治会 › 3班") is how it is shown;
both are kept in step here, for the whole subtree, in the transaction that renames or
moves it. Residents follow their area without being touched.

Memberships decide what a person sees and which live groups their pages join, so every
change to someone's memberships or role ends their live connections: their open pages
reload and join the groups of what they may see now.
"""
import logging
from collections import Counter, defaultdict

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.http import Http404
from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext

from notifications.events import send_event_on_commit, to_user
from notifications.receivers import SESSION_ENDED
from tenants.accounts.actions import do_change_role
from tenants.accounts.models import User
from watch.access import LENSES, area_scope, areas_for_user, lens_for, oversees_whole_tenant, residents_for_user
from watch.models import Area, AreaMembership, Resident

logger = logging.getLogger(__name__)


def check_can_manage_areas(actor: User | None) -> None:
    """The tree and its memberships change who sees whom: only those who oversee the whole
    tenant change them (actor None: the platform's own commands)."""
    if actor is not None and not oversees_whole_tenant(actor):
        raise PermissionDenied(_("Only those who oversee the whole tenant can attach people to areas."))


def get_area_for_user(user: User, area_id) -> Area:
    """An area of this tenant that `user` may manage (any, for those who oversee the whole
    tenant), or 404 alike for missing ones."""
    check_can_manage_areas(user)
    try:
        return Area.objects.get(pk=int(area_id))
    except (Area.DoesNotExist, ValueError, TypeError, OverflowError) as exc:
        raise Http404 from exc


def get_person_for_user(user: User, person_id: int) -> User:
    """A person of this tenant whose page `user` may open: their own, or anyone's for
    those who manage areas; 404 alike for missing ones."""
    if user.pk != person_id:
        check_can_manage_areas(user)
    try:
        return User.objects.exclude(role=User.Role.OPERATOR).get(pk=person_id)
    except User.DoesNotExist as exc:
        raise Http404 from exc


# The tree.
def _full_name(parent: Area | None, name: str) -> str:
    return f"{parent.full_name}{Area.SEPARATOR}{name}" if parent else name


def _check_area(area: Area) -> None:
    """The model's own field rules, then a name not yet used under the same parent."""
    area.full_clean(exclude=["parent", "path", "full_name"], validate_unique=False, validate_constraints=False)
    key = Area.name_key(area.name)
    siblings = Area.objects.filter(parent=area.parent).exclude(pk=area.pk).values_list("name", flat=True)
    if any(Area.name_key(name) == key for name in siblings):
        raise ValidationError({"name": [_duplicate_message(area)]})


def _duplicate_message(area: Area) -> str:
    if area.parent is None:
        return _("There is already a top-level area named %(name)s.") % {"name": area.name}
    return _("There is already an area named %(name)s under %(parent)s.") % {
        "name": area.name, "parent": area.parent.full_name}


def _save_unique(area: Area, **kwargs) -> None:
    """Save; a name taken at the same moment by another request is refused like a duplicate."""
    try:
        with transaction.atomic():
            area.save(**kwargs)
    except IntegrityError as exc:
        raise ValidationError({"name": [_duplicate_message(area)]}) from exc


def do_create_area(*, name: str, kind: str, parent: Area | None = None, actor: User | None = None) -> Area:
    """Add an area under `parent` (None: a top-level one); a duplicate name under the same
    parent is refused on "name"."""
    check_can_manage_areas(actor)
    with transaction.atomic():
        if parent is not None:
            # Its current path: the parent may just have been moved.
            parent = Area.objects.select_for_update().get(pk=parent.pk)
        name = name.strip()
        area = Area(name=name, kind=kind, parent=parent, path="", full_name=_full_name(parent, name))
        _check_area(area)
        _save_unique(area)
        area.path = f"{parent.path if parent else '/'}{area.pk}/"
        area.save(update_fields=["path"])
    if actor is not None:
        logger.info("user %s created area %s", actor.pk, area.pk)
    return area


def do_change_area(*, actor: User | None, area: Area, name: str, kind: str, parent: Area | None) -> Area:
    """Rename `area`, change its kind or move it under `parent` (None: top level), with the
    paths and full names of its whole subtree. Never under itself or one of its own areas."""
    check_can_manage_areas(actor)
    with transaction.atomic():
        # Locked, then read afresh: a concurrent move of the parent under this area (a
        # loop) waits for this one and then sees the new paths.
        area = Area.objects.select_for_update().get(pk=area.pk)
        if parent is not None:
            parent = Area.objects.select_for_update().get(pk=parent.pk)
            if parent.path.startswith(area.path):
                raise ValidationError({"parent": [
                    _("An area cannot be moved under itself or under one of the areas it contains.")]})
        subtree = list(Area.objects.select_for_update().filter(path__startswith=area.path).order_by("path"))
        root = next(node for node in subtree if node.pk == area.pk)
        root.name, root.kind, root.parent = name.strip(), kind, parent
        _check_area(root)
        old_prefix, new_prefix = root.path, f"{parent.path if parent else '/'}{root.pk}/"
        full_names = {}
        # Sorted by path: every parent comes before its children.
        for node in subtree:
            node.path = new_prefix + node.path[len(old_prefix):]
            node.full_name = (_full_name(parent, node.name) if node is root
                              else f"{full_names[node.parent_id]}{Area.SEPARATOR}{node.name}")
            full_names[node.pk] = node.full_name
        _save_unique(root, update_fields=["name", "kind", "parent", "path", "full_name"])
        Area.objects.bulk_update([node for node in subtree if node is not root], ["path", "full_name"])
        if old_prefix != new_prefix:
            # Those attached above the old place stop seeing these residents, those above
            # the new one start: their open pages reload.
            above = set(Area(path=old_prefix).ancestor_ids[:-1]) ^ set(Area(path=new_prefix).ancestor_ids[:-1])
            _access_changed(*AreaMembership.objects.filter(area_id__in=above)
                            .values_list("user_id", flat=True).distinct())
    logger.info("user %s changed area %s (moved: %s)", getattr(actor, "pk", None), root.pk,
                old_prefix != new_prefix)
    return root


def deletion_blockers(area: Area) -> list[str]:
    """Why `area` cannot be deleted, in words; [] when it can."""
    residents = Resident.objects.filter(area__path__startswith=area.path).count()
    attached = AreaMembership.objects.filter(area__path__startswith=area.path).count()
    blockers = []
    if residents:
        blockers.append(ngettext(
            "%(count)s resident is still in this area or an area under it: move them first.",
            "%(count)s residents are still in this area or areas under it: move them first.",
            residents) % {"count": residents})
    if attached:
        blockers.append(ngettext(
            "%(count)s person is still attached to this area or an area under it: detach them first.",
            "%(count)s people are still attached to this area or areas under it: detach them first.",
            attached) % {"count": attached})
    if others := _other_references(area):
        blockers.append(ngettext(
            "%(count)s setting of another part (such as an escalation policy) still names this area or an area "
            "under it: change it first.",
            "%(count)s settings of other parts (such as escalation policies) still name this area or areas "
            "under it: change them first.", others) % {"count": others})
    return blockers


def _other_references(area: Area) -> int:
    """Rows of other apps' models (which watch may not import) that name an area of the
    subtree: a deletion would take them with it, unseen."""
    count = 0
    relations = [field for field in Area._meta.get_fields(include_hidden=True)  # related_name="+" too
                 if (field.one_to_many or field.one_to_one) and field.auto_created and not field.concrete]
    for relation in relations:
        if relation.related_model in (Area, AreaMembership, Resident):
            continue
        count += relation.related_model._base_manager.filter(
            **{f"{relation.field.name}__path__startswith": area.path}).count()
    return count


def do_delete_area(*, actor: User | None, area: Area) -> None:
    """Delete `area` and the areas under it, only if none of them holds a resident (of any
    status: their records keep their area) and nobody is attached to any of them."""
    check_can_manage_areas(actor)
    with transaction.atomic():
        area = Area.objects.select_for_update().get(pk=area.pk)
        subtree = list(Area.objects.select_for_update().filter(path__startswith=area.path).order_by("-path"))
        if blockers := deletion_blockers(area):
            raise ValidationError(blockers)
        for node in subtree:  # children first: an area protects its parent
            node.delete()
    logger.info("user %s deleted area %s and %d under it", getattr(actor, "pk", None), area.pk, len(subtree) - 1)


def area_tree_for_user(user: User) -> list[Area]:
    """The areas `user` may look at, in tree order, each with `resident_count` (residents
    of its subtree that `user` may see) and `people` (memberships with their user)."""
    areas = list(areas_for_user(user))
    counts = Counter()
    by_path = residents_for_user(user).order_by().values_list("area__path").annotate(n=Count("pk"))
    for path, count in by_path:
        for area_id in Area(path=path).ancestor_ids:
            counts[area_id] += count
    people = defaultdict(list)
    memberships = AreaMembership.objects.filter(area__in=[a.pk for a in areas]).select_related("user")
    for membership in memberships.order_by("user__display_name", "user__username"):
        people[membership.area_id].append(membership.user)
    for area in areas:
        area.resident_count = counts[area.pk]
        area.depth = len(area.ancestor_ids) - 1
        area.people = people[area.pk]
    return areas


# Memberships and roles.
def _access_changed(*user_ids: int) -> None:
    if user_ids:
        send_event_on_commit(connection.schema_name, SESSION_ENDED, [to_user(pk) for pk in user_ids])


def do_attach_to_area(*, actor: User | None, user: User, area: Area) -> AreaMembership:
    """Attach `user` to `area` (idempotent). Only roles that see by area can be attached."""
    check_can_manage_areas(actor)
    lens = LENSES.get(user.role)
    if lens is None or not lens.areas:
        raise ValidationError({"user": [_("Only municipal staff, case workers and association officers can be "
                                          "attached to an area.")]})
    with transaction.atomic():
        membership, created = AreaMembership.objects.get_or_create(user=user, area=area)
        if created:
            _access_changed(user.pk)
    return membership


def widens_to_whole_tenant(user: User, area_ids: list[int]) -> bool:
    """Whether detaching `user` from `area_ids`, all their areas, lets them see the whole
    tenant (municipal staff attached to no area oversee it: watch.access.LENSES)."""
    lens = LENSES.get(user.role)
    return bool(lens and lens.whole_tenant_without_areas and area_ids)


def do_detach_from_area(*, actor: User | None, user: User, area: Area, widening_confirmed: bool = False) -> bool:
    """Undo do_attach_to_area; False when `user` was not attached. Detaching staff from
    their last area widens what they see to the whole tenant, health notes included: only
    once confirmed."""
    check_can_manage_areas(actor)
    with transaction.atomic():
        memberships = AreaMembership.objects.select_for_update().filter(user=user)
        area_ids = list(memberships.values_list("area_id", flat=True))
        if area_ids == [area.pk] and widens_to_whole_tenant(user, area_ids) and not widening_confirmed:
            raise ValidationError({"confirm": [_(
                "Without an area, %(name)s will see every resident of the tenant, health and case notes "
                "included. Tick the box to confirm.") % {"name": user}]})
        detached = memberships.filter(area=area).delete()[0] > 0
        if detached:
            _access_changed(user.pk)
    return detached


def do_change_person_role(*, actor: User, person: User, role: str) -> tuple[bool, list[str]]:
    """Give `person` another role (tenants.accounts.actions.do_change_role: administrators
    only, never leaving the tenant without an active administrator; their sessions end).
    A role that does not see by area loses its memberships. Returns whether the role
    changed and the full names of the areas removed."""
    with transaction.atomic():
        changed = do_change_role(actor=actor, user=person, role=role)
        removed = []
        if changed and not LENSES[role].areas:
            memberships = AreaMembership.objects.filter(user=person).select_related("area").order_by("area__path")
            removed = [membership.area.full_name for membership in memberships]
            memberships.delete()
    return changed, removed


def describe_reach(person: User, tenant_name: str) -> list[str]:
    """What `person` may see, in words: who and how many (watch.access.residents_for_user),
    then whether consent limits it and whether health notes are included."""
    lens = lens_for(person)
    if lens is None:
        return [_("Deactivated: sees no resident.")]
    count = residents_for_user(person).count()
    scope = area_scope(person)
    names = pgettext("list of areas", ", ").join(
        Area.objects.filter(memberships__user=person).order_by("path").values_list("full_name", flat=True))
    if scope is None:
        reach = ngettext("%(count)s resident in the whole of %(tenant)s",
                         "%(count)s residents in the whole of %(tenant)s", count)
    elif names and lens.assigned:
        reach = ngettext("%(count)s resident in %(areas)s or assigned to them",
                         "%(count)s residents in %(areas)s or assigned to them", count)
    elif names:
        reach = ngettext("%(count)s resident in %(areas)s", "%(count)s residents in %(areas)s", count)
    elif lens.assigned:
        reach = ngettext("%(count)s resident assigned to them", "%(count)s residents assigned to them", count)
    else:
        reach = _("No area yet, so no resident.")
    lines = [reach % {"count": count, "tenant": tenant_name, "areas": names}]
    if lens.shared_by:
        lines.append(_("Only residents who agreed to share their information are included."))
    lines.append(_("Sees health and case notes.") if lens.sensitive else _("Does not see health and case notes."))
    return lines
