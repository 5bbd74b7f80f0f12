"""Safety checks (安否確認), drill or real: who may run and see them, whom a check asks,
and its progress. The one definition each: the pages, the live updates, the report and
the exports all ask these.

A check asks the active residents its starter may see (watch.access), narrowed by its
scope: areas (each with its subtree), "needs help to evacuate", a household type, an
age from. Progress counts only the asks of residents the viewer may see.
"""
from datetime import date

from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from outreach.models import Answer, Ask, SafetyCheck
from tenants.accounts.models import STAFF_ROLES
from watch.access import residents_for_user
from watch.models import Area, Resident


def can_run_checks(user) -> bool:
    """Municipal staff and administrators start, close and cancel safety checks."""
    return bool(user and user.is_authenticated and user.is_active and user.role in STAFF_ROLES)


def checks_for_user(user) -> QuerySet[SafetyCheck]:
    """The checks a person may see: staff see every check of the tenant (each shows them
    only the residents they may see); nobody else sees the list."""
    if not can_run_checks(user):
        return SafetyCheck.objects.none()
    return SafetyCheck.objects.all()


def get_check_for_user(user, check_id) -> SafetyCheck:
    """The check, or 404 alike for missing and not theirs."""
    try:
        return checks_for_user(user).get(pk=int(check_id))
    except (SafetyCheck.DoesNotExist, TypeError, ValueError, OverflowError):
        raise Http404 from None


def residents_in_scope(user, scope: dict, today: date | None = None) -> QuerySet[Resident]:
    """The active residents `user` may see that the scope names (see SafetyCheck.scope)."""
    residents = residents_for_user(user).filter(status=Resident.Status.ACTIVE)
    area_ids = [int(a) for a in scope.get("areas") or []]
    if area_ids:
        paths = list(Area.objects.filter(pk__in=area_ids).values_list("path", flat=True))
        subtree = Q(pk__in=[])
        for path in paths:
            subtree |= Q(area__path__startswith=path)
        residents = residents.filter(subtree)
    if scope.get("needs_evacuation_support"):
        residents = residents.filter(needs_evacuation_support=True)
    if scope.get("household"):
        residents = residents.filter(household=scope["household"])
    if scope.get("min_age"):
        today = today or timezone.localdate()
        years = int(scope["min_age"])
        try:
            born_by = today.replace(year=today.year - years)
        except ValueError:  # 29 February
            born_by = today.replace(year=today.year - years, day=28)
        residents = residents.filter(date_of_birth__lte=born_by)
    return residents


def asks_seen_by(user, check: SafetyCheck) -> QuerySet[Ask]:
    """The check's asks about residents `user` may see."""
    return Ask.objects.filter(safety_check=check, resident__in=residents_for_user(user).values("pk"))


def progress(check: SafetyCheck, user) -> dict:
    """What the progress page shows and every live update sends: totals and per area
    (of the residents the viewer may see), as plain numbers."""
    rows = (asks_seen_by(user, check).values("area_id")
            .annotate(total=Count("pk"),
                      answered=Count("pk", filter=Q(state=Ask.State.ANSWERED)),
                      safe=Count("pk", filter=Q(state=Ask.State.ANSWERED, answer=Answer.FINE)),
                      need_help=Count("pk", filter=Q(state=Ask.State.ANSWERED, answer=Answer.NEED_HELP)),
                      late=Count("pk", filter=Q(state=Ask.State.ANSWERED, late=True))))
    names = dict(Area.objects.filter(pk__in=[r["area_id"] for r in rows]).values_list("pk", "full_name"))
    areas = sorted(({**row, "area": names.get(row["area_id"], ""), "silent": row["total"] - row["answered"]}
                    for row in rows), key=lambda r: r["area"])
    totals = {key: sum(r[key] for r in areas) for key in ("total", "answered", "safe", "need_help", "late", "silent")}
    totals["answered_share"] = round(totals["answered"] / totals["total"], 4) if totals["total"] else 0.0
    return {"check": check.pk, "state": check.state, "totals": totals, "areas": areas,
            "at": timezone.now().isoformat()}
