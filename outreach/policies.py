"""Escalation policies and the duty rota: saving them, reading them in words, and the
reach check (which step of a policy would reach nobody, and where).

The reach check asks the rules escalation itself uses: `policy_for` decides which policy
applies where, and `who_a_step_reaches` is the area-level part of `_named_by` (the
people a step names for a resident of an area, whatever the resident's own team)."""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from notifications.delivery import tenant_time_zone
from outreach.actions import (
    DEFAULT_REPEATS,
    DEFAULT_STEPS,
    URGENT_REPEATS,
    URGENT_STEPS,
    do_add_duty_shift,
    policy_for,
    steps_of,
)
from outreach.models import (
    DEFAULT_POLICY_NAME,
    URGENT_POLICY_NAME,
    DutyShift,
    EscalationPolicy,
    EscalationStep,
    Severity,
    Target,
)
from tenants.accounts.models import User
from watch.access import LENSES, area_scope, lens_for, oversees_whole_tenant
from watch.models import Area, AreaMembership, Resident
from watch.visits import parse_week

MAX_STEPS = 10
MAX_REPEATS = 10
MAX_WAIT_MINUTES = 24 * 60
# Targets whose people depend on each resident's own team: the area-level check cannot
# say who they reach, so a step made only of them is not checked.
TEAM_TARGETS = {Target.ASSIGNED_VOLUNTEERS}
# Roles that see every resident of the areas they cover, consent or not: the only people a
# step can be sure to reach for a whole area (volunteers and officers depend on consent).
AREA_WIDE_ROLES = [role for role, lens in LENSES.items() if lens.shared_by is None]
REACH_WINDOW = timedelta(days=7)  # "nobody on duty in the coming week"


def check_can_edit_policies(user) -> None:
    """Those who oversee the whole tenant edit policies and the rota."""
    if not oversees_whole_tenant(user):
        raise PermissionDenied(_("Only those who oversee the whole municipality may change this."))


def check_can_read_policies(user) -> None:
    """…and municipal staff of an area may read them: they answer the concerns the policies
    send them and call whoever is on duty."""
    if not (oversees_whole_tenant(user) or (user.is_active and user.role == User.Role.MUNICIPAL_STAFF)):
        raise PermissionDenied(_("Only municipal staff may see the escalation policies and the duty rota."))


# Who a step reaches ----------------------------------------------------------------------

class Reach:
    """The facts the area-level rule reads, loaded once (a few queries) for any number of
    areas: the active people of the area-wide roles and their areas, who is on duty in
    [starts, ends] (an instant when they are equal, as escalation asks), and the named
    people of the steps asked about."""

    def __init__(self, starts: datetime | None = None, ends: datetime | None = None):
        self.starts = starts or timezone.now()
        self.ends = ends or self.starts
        overlapping = Q(starts_at__lte=self.starts) if self.starts == self.ends else Q(starts_at__lt=self.ends)
        on_duty = DutyShift.objects.filter(overlapping, ends_at__gt=self.starts).values("user_id")
        active = User.objects.filter(is_active=True).order_by("pk")
        self.people = list(active.filter(role__in=AREA_WIDE_ROLES))
        self.on_duty = list(active.filter(pk__in=on_duty))
        self.areas_of: dict[int, set[int]] = {}
        memberships = AreaMembership.objects.filter(user__is_active=True, user__role__in=AREA_WIDE_ROLES)
        for user_id, area_id in memberships.values_list("user_id", "area_id"):
            self.areas_of.setdefault(user_id, set()).add(area_id)
        self._named: dict[tuple, list[User]] = {}
        self._scopes: dict[int, list[str] | None] = {}

    def _sees(self, person: User, area: Area) -> bool:
        """The person sees every resident of `area`, consent or not (watch.access's lens
        and area scope): people who see only those who consented are not counted."""
        lens = lens_for(person)
        if lens is None or lens.shared_by is not None:
            return False
        if person.pk not in self._scopes:
            self._scopes[person.pk] = area_scope(person)
        scope = self._scopes[person.pk]
        return scope is None or any(area.path.startswith(path) for path in scope)

    def named(self, area: Area, target: str, step: dict) -> list[User]:
        """`_named_by` for a resident of `area` with no team of their own: the people a
        target names, before asking whether they may see the resident."""
        above = set(area.ancestor_ids)
        if target == Target.CASE_WORKERS:
            return [p for p in self.people
                    if p.role == User.Role.CASE_WORKER and self.areas_of.get(p.pk, set()) & above]
        if target == Target.AREA_STAFF:
            staff = [p for p in self.people if p.role == User.Role.MUNICIPAL_STAFF]
            attached = [p for p in staff if self.areas_of.get(p.pk, set()) & above]
            if attached:
                return attached
            everywhere = [p for p in staff if p.pk not in self.areas_of]
            return everywhere or [p for p in self.people if p.role == User.Role.ADMIN]
        if target == Target.USER:
            key = tuple(sorted(step.get("users", [])))
            if key not in self._named:
                self._named[key] = list(User.objects.filter(is_active=True, pk__in=key).order_by("pk"))
            return self._named[key]
        if target == Target.ON_DUTY:
            return self.on_duty
        return []  # the resident's own volunteers: no area-level answer

    def reached(self, area: Area, step: dict) -> list[User]:
        """The people the step reaches for any resident of `area`, each once, who may see them."""
        people: dict[int, User] = {}
        for target in step["targets"]:
            for person in self.named(area, target, step):
                people.setdefault(person.pk, person)
        return [person for person in people.values() if self._sees(person, area)]


def who_a_step_reaches(area: Area, step: dict, reach: Reach | None = None) -> list[User]:
    """Whom `step` notifies, now, for a resident of `area` who has no team of their own."""
    return (reach or Reach()).reached(area, step)


@dataclass
class Unreached:
    step: int  # 1-based
    label: str
    areas: list[Area]
    everywhere: bool

    def text(self) -> str:
        values = {"step": self.step, "label": self.label}
        if self.everywhere:
            return _("Step %(step)s “%(label)s”: there is nobody it can reach in any area.") % values
        shown = [str(area) for area in self.areas[:5]]
        values["areas"] = pgettext("list of areas", ", ").join(shown)
        if len(self.areas) > len(shown):
            values["more"] = len(self.areas) - len(shown)
            return _("Step %(step)s “%(label)s”: there is nobody it can reach in %(areas)s "
                     "and %(more)s more areas.") % values
        return _("Step %(step)s “%(label)s”: there is nobody it can reach in %(areas)s.") % values


def unreached_steps(steps: list[dict], areas: list[Area], reach: Reach | None = None,
                    names: dict[int, str] | None = None) -> list[Unreached]:
    """Per step, the areas (of `areas`) where it would reach nobody this coming week."""
    if not areas:
        return []
    reach = reach or Reach(timezone.now(), timezone.now() + REACH_WINDOW)
    found = []
    for number, step in enumerate(steps, start=1):
        if set(step["targets"]) <= TEAM_TARGETS:
            continue
        nowhere = [area for area in areas if not reach.reached(area, step)]
        if nowhere:
            found.append(Unreached(number, step_label(step, names or {}), nowhere, len(nowhere) == len(areas)))
    return found


# Policies in words ------------------------------------------------------------------------

def step_label(step: dict, names: dict[int, str]) -> str:
    labels = []
    for target in step["targets"]:
        if target == Target.USER and step.get("users"):
            labels.append(pgettext("list of people", ", ").join(names.get(pk, "?") for pk in step["users"]))
        elif target in Target.values:
            labels.append(str(Target(target).label))
    return pgettext("list of people", ", ").join(labels)


def step_text(step: dict, names: dict[int, str]) -> str:
    values = {"whom": step_label(step, names), "minutes": step["wait_minutes"]}
    if len(step["targets"]) > 1 or len(step.get("users", [])) > 1:
        return _("Notify %(whom)s at once, then wait %(minutes)s min") % values
    return _("Notify %(whom)s, then wait %(minutes)s min") % values


def user_names(steps_lists) -> dict[int, str]:
    ids = {pk for steps in steps_lists for step in steps for pk in step.get("users", [])}
    return {user.pk: str(user) for user in User.objects.filter(pk__in=ids)}


def policy_label(name: str) -> str:
    return _(name) if name in (DEFAULT_POLICY_NAME, URGENT_POLICY_NAME) else name


@dataclass
class PolicyView:
    """One policy as the list page shows it."""
    policy: EscalationPolicy | None
    name: str
    severity: str
    area: Area | None
    steps: list[dict]
    repeat_limit: int
    is_active: bool
    texts: list[str]
    warnings: list[Unreached]

    @property
    def severity_text(self) -> str:
        # A policy for any severity never applies to urgent concerns (policy_for).
        return str(Severity(self.severity).label) if self.severity else _("All but urgent")

    @property
    def area_text(self) -> str:
        if self.area is not None:
            return str(self.area)
        return _("Every area") if self.policy else _("Where no policy applies")


def policies_overview() -> tuple[list[PolicyView], list[dict]]:
    """Every policy (the built-in defaults too) in words with its reach warnings, and which
    one applies to each area and severity (decided by `policy_for`)."""
    areas = list(Area.objects.order_by("path"))
    policies = list(EscalationPolicy.objects.select_related("area").prefetch_related("steps")
                    .order_by("-is_active", "area__path", "severity", "name"))
    custom = [(p, steps_of(p)) for p in policies]
    names = user_names([steps for _p, steps in custom])
    # Areas with the same policy-bearing ancestors get the same policy: ask once per group.
    policy_areas = {p.area_id for p in policies if p.area_id and p.is_active}
    decided: dict[tuple, dict[str, str]] = {}
    table, applies_to = [], {}
    for area in areas:
        key = tuple(pk for pk in area.ancestor_ids if pk in policy_areas)
        if key not in decided:
            decided[key] = {sev: policy_for(Resident(area=area), sev)[0] for sev in Severity.values}
        table.append({"area": area, "cells": [policy_label(decided[key][sev]) for sev in Severity.values]})
        for name in set(decided[key].values()):
            applies_to.setdefault(name, []).append(area)
    reach = Reach(timezone.now(), timezone.now() + REACH_WINDOW)
    views = []
    for name, severity, steps, repeats in ((URGENT_POLICY_NAME, Severity.URGENT, URGENT_STEPS, URGENT_REPEATS),
                                           (DEFAULT_POLICY_NAME, "", DEFAULT_STEPS, DEFAULT_REPEATS)):
        views.append(PolicyView(None, policy_label(name), severity, None, steps, repeats, True,
                                [step_text(s, names) for s in steps],
                                unreached_steps(steps, applies_to.get(name, []), reach, names)))
    for policy, steps in custom:
        scope = [a for a in areas if policy.area is None or a.path.startswith(policy.area.path)]
        views.append(PolicyView(policy, policy.name, policy.severity, policy.area, steps, policy.repeat_limit,
                                policy.is_active, [step_text(s, names) for s in steps],
                                unreached_steps(steps, scope, reach, names) if policy.is_active else []))
    return views, table


def warnings_for(policy: EscalationPolicy) -> list[Unreached]:
    steps = steps_of(policy)
    scope = Area.objects.all() if policy.area is None else Area.objects.filter(path__startswith=policy.area.path)
    return unreached_steps(steps, list(scope), names=user_names([steps]))


# Saving a policy --------------------------------------------------------------------------

def do_save_policy(*, actor: User, policy: EscalationPolicy | None, name: str, severity: str, area: Area | None,
                   repeat_limit, is_active: bool, steps: list[dict], confirm_deactivate: bool = False
                   ) -> EscalationPolicy:
    """Create or replace a policy and its steps, all or nothing. `steps`: dicts of
    targets, users (User objects, the named people) and wait_minutes, in order; a step
    with no target and nobody named is left out. Deactivating needs `confirm_deactivate`."""
    check_can_edit_policies(actor)
    errors: dict[str, list[str]] = {}
    name = name.strip()
    if not name:
        errors["name"] = [_("Give the policy a name.")]
    elif len(name) > EscalationPolicy._meta.get_field("name").max_length:
        errors["name"] = [_("The name is too long (at most 100 characters).")]
    elif name in (DEFAULT_POLICY_NAME, URGENT_POLICY_NAME, _(DEFAULT_POLICY_NAME), _(URGENT_POLICY_NAME)) or (
            EscalationPolicy.objects.filter(name=name).exclude(pk=getattr(policy, "pk", None)).exists()):
        errors["name"] = [_("Another policy has this name; choose another.")]
    if severity not in ("", *Severity.values):
        errors["severity"] = [_("Choose one of the severities offered.")]
    try:
        repeat_limit = int(repeat_limit)
    except (TypeError, ValueError):
        repeat_limit = 0
    if not 1 <= repeat_limit <= MAX_REPEATS:
        errors["repeat_limit"] = [_("Run the steps between 1 and %(max)d times.") % {"max": MAX_REPEATS}]
    if is_active and not errors.get("severity") and EscalationPolicy.objects.filter(
            is_active=True, severity=severity, area=area).exclude(pk=getattr(policy, "pk", None)).exists():
        errors["area"] = [_("Another active policy is already for this area and severity: edit that one.")]
    if policy is not None and policy.is_active and not is_active and not confirm_deactivate:
        errors["confirm_deactivate"] = [_("Tick the box to confirm that this policy stops applying.")]
    kept = []
    for number, step in enumerate(steps, start=1):
        targets = [t for t in step["targets"] if t != Target.USER]
        if step["users"]:
            targets.append(Target.USER)
        if not targets:
            continue
        key = f"step_{number}"
        if any(t not in Target.values for t in targets):
            errors.setdefault(key, []).append(_("Choose whom to notify from the list."))
        if any(not user.is_active for user in step["users"]):
            errors.setdefault(key, []).append(_("A named person is no longer active: choose someone else."))
        try:
            wait = int(step["wait_minutes"])
        except (TypeError, ValueError):
            wait = -1
        if not 0 <= wait <= MAX_WAIT_MINUTES:
            errors.setdefault(key, []).append(
                _("Wait between 0 and %(max)d minutes.") % {"max": MAX_WAIT_MINUTES})
        kept.append({"targets": targets, "users": step["users"], "wait_minutes": wait})
    if not kept:
        errors["steps"] = [_("A policy needs at least one step: choose whom it notifies.")]
    elif len(kept) > MAX_STEPS:
        errors["steps"] = [_("A policy has at most %(max)d steps.") % {"max": MAX_STEPS}]
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        policy = policy or EscalationPolicy()
        policy.name, policy.severity, policy.area = name, severity, area
        policy.repeat_limit, policy.is_active = repeat_limit, is_active
        policy.save()
        policy.steps.all().delete()
        rows = []
        for order, step in enumerate(kept, start=1):
            for target in step["targets"]:
                for user in step["users"] if target == Target.USER else [None]:
                    rows.append(EscalationStep(policy=policy, order=order, target=target, user=user,
                                               wait_minutes=step["wait_minutes"]))
        EscalationStep.objects.bulk_create(rows)
    return policy


# The duty rota ----------------------------------------------------------------------------

def people_for_duty():
    """Who may be put on duty: active people who see whole areas and so can act on any
    concern there (volunteers and officers see only those who consented)."""
    return User.objects.filter(is_active=True, role__in=AREA_WIDE_ROLES).order_by("display_name", "pk")


def week_start(value: str | None, tz) -> date:
    """The Monday of an ISO week "2026-W49" (this week when absent, unreadable or out of
    range), as visit plans read it."""
    return parse_week(value, timezone.now().astimezone(tz).date())


def week_bounds(monday: date, tz) -> tuple[datetime, datetime]:
    """Monday 00:00 to the next Monday 00:00, in the tenant's time zone."""
    return (datetime.combine(monday, time(0), tzinfo=tz),
            datetime.combine(monday + timedelta(days=7), time(0), tzinfo=tz))


def shifts_between(starts: datetime, ends: datetime):
    return DutyShift.objects.filter(starts_at__lt=ends, ends_at__gt=starts).select_related("user").order_by(
        "starts_at", "pk")


def gaps(shifts, starts: datetime, ends: datetime) -> list[tuple[datetime, datetime]]:
    """The periods of [starts, ends) when nobody is on duty."""
    found, cursor = [], starts
    for shift in sorted(shifts, key=lambda s: s.starts_at):
        if shift.starts_at > cursor:
            found.append((cursor, min(shift.starts_at, ends)))
        cursor = max(cursor, shift.ends_at)
        if cursor >= ends:
            break
    if cursor < ends:
        found.append((cursor, ends))
    return [(a, b) for a, b in found if a < b]


def shift_times(day: date, start: time, end: time, ends_next_day: bool, tz) -> tuple[datetime, datetime]:
    starts_at = datetime.combine(day, start, tzinfo=tz)
    ends_at = datetime.combine(day + timedelta(days=1) if ends_next_day else day, end, tzinfo=tz)
    return starts_at, ends_at


def do_remove_duty_shift(*, actor: User, shift: DutyShift, confirmed: bool) -> None:
    check_can_edit_policies(actor)
    if not confirmed:
        raise ValidationError({"confirm": [_("Tick the box to confirm that this shift is removed.")]})
    shift.delete()


def do_copy_previous_week(*, actor: User, monday: date) -> int:
    """Copy the shifts that start in the week before `monday` into its week, seven days
    later by the tenant's clock; a copy that would overlap the same person's shift is left
    out. Returns how many were copied."""
    check_can_edit_policies(actor)
    tz = tenant_time_zone()
    starts, ends = week_bounds(monday - timedelta(days=7), tz)
    copied = 0
    with transaction.atomic():
        for shift in DutyShift.objects.filter(starts_at__gte=starts, starts_at__lt=ends).select_related("user"):
            local_start, local_end = shift.starts_at.astimezone(tz), shift.ends_at.astimezone(tz)
            moved = [datetime.combine(t.date() + timedelta(days=7), t.timetz().replace(tzinfo=None), tzinfo=tz)
                     for t in (local_start, local_end)]
            try:
                with transaction.atomic():
                    do_add_duty_shift(actor=actor, user=shift.user, starts_at=moved[0], ends_at=moved[1])
            except ValidationError:
                continue
            copied += 1
    return copied
