"""The home page (/), by role.

Staff, case workers and association officers see, for the residents their lens shows
(watch.access.residents_for_user, nothing else): who is overdue now, the live concerns
(urgent first, then the oldest), today's planned visits and the contacts of the last
seven days. Volunteers go to their own list. The administrator of a tenant with no
resident yet gets the first steps instead.

The page lives in outreach because it shows concerns (outreach) next to residents and
visits (watch), and apps import only leftward. Its number of queries does not grow with
the number of residents, concerns, visits or contacts (tests/outreach/test_home.py).
"""
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Case, Count, IntegerField, Q, Value, When
from django.db.models.functions import TruncDate
from django.shortcuts import redirect, render
from django.utils import timezone

from outreach.models import Concern, Severity
from tenants.accounts.models import Invitation, User
from watch.access import residents_for_user
from watch.models import Area, ContactLog, Visit

OVERDUE_SHOWN = 10
CONCERNS_SHOWN = 15
VISITS_SHOWN = 20
CONTACTS_SHOWN = 5
DAYS = 7  # "this week": today and the six days before, in the tenant's time zone

# What an area is shown with (str(area): its full path), fetched alongside the rows.
AREA_FIELDS = ("area__name", "area__full_name")

@login_required
def home(request):
    if request.user.role == User.Role.VOLUNTEER:
        return redirect("watch:my_residents")
    tz = ZoneInfo(request.tenant.time_zone or settings.TIME_ZONE)
    now = timezone.now()
    visible = residents_for_user(request.user)  # evaluates the lens once; a subquery below
    if request.user.is_tenant_admin and not visible.exists():
        return render(request, "outreach/home.html", {"first_steps": first_steps()})
    with timezone.override(tz):
        return render(request, "outreach/home.html", {
            **overdue_now(visible), **live_concerns(visible, now), **visits_today(visible, now.astimezone(tz).date()),
            **contacts_this_week(visible, now, tz),
        })


def first_steps() -> list[dict]:
    """What a new tenant's administrator does first, each step with whether it is done."""
    return [
        {"key": "areas", "done": Area.objects.exists()},
        {"key": "residents", "done": False},  # shown only while there is no resident
        {"key": "people", "done": User.objects.exclude(role=User.Role.OPERATOR).count() > 1
         or Invitation.objects.exists()},
    ]


def overdue_now(visible) -> dict:
    """The overdue residents, those overdue longest first."""
    overdue = visible.filter(is_overdue=True)
    return {
        "overdue_count": overdue.count(),
        "overdue": overdue.select_related("area").only("name", "next_due_at", "last_contact_at", "last_outcome",
                                                         *AREA_FIELDS).order_by("next_due_at", "pk")[:OVERDUE_SHOWN],
    }


def live_concerns(visible, now) -> dict:
    """Live concerns: counts by state and age, and the first ones, urgent first, then oldest."""
    concerns = Concern.objects.filter(resident__in=visible, state__in=Concern.LIVE_STATES)
    day_ago, week_ago = now - timedelta(days=1), now - timedelta(days=7)
    counts = concerns.aggregate(
        total=Count("pk"),
        open=Count("pk", filter=Q(state=Concern.State.OPEN)),
        acknowledged=Count("pk", filter=Q(state=Concern.State.ACKNOWLEDGED)),
        urgent=Count("pk", filter=Q(severity=Severity.URGENT)),
        today=Count("pk", filter=Q(opened_at__gt=day_ago)),
        week=Count("pk", filter=Q(opened_at__lte=day_ago, opened_at__gt=week_ago)),
        older=Count("pk", filter=Q(opened_at__lte=week_ago)),
    )
    shown = list(concerns.select_related("resident__area")
                 .only("cause", "severity", "state", "opened_at", "resident__name",
                       *(f"resident__{field}" for field in AREA_FIELDS))
                 .annotate(urgent_first=Case(When(severity=Severity.URGENT, then=Value(0)), default=Value(1),
                                             output_field=IntegerField()))
                 .order_by("urgent_first", "opened_at", "pk")[:CONCERNS_SHOWN])
    return {"concern_counts": counts, "concerns": shown, "state_words": dict(Concern.State.choices)}


def visits_today(visible, today) -> dict:
    """Planned visits whose window includes today."""
    visits = Visit.objects.filter(resident__in=visible, state=Visit.State.PLANNED,
                                  starts_on__lte=today, ends_on__gte=today)
    return {
        "today": today, "visit_count": visits.count(),
        "visits": visits.select_related("resident__area", "visitor")
        .only("resident", "starts_on", "ends_on", "purpose", "resident__name", "visitor__display_name",
              "visitor__username", *(f"resident__{field}" for field in AREA_FIELDS))
        .order_by("resident__area__path", "pk")[:VISITS_SHOWN],
    }


def contacts_this_week(visible, now, tz) -> dict:
    """Contacts of the last DAYS days (from midnight, tenant's time): per day, and the latest."""
    today = now.astimezone(tz).date()
    first_day = today - timedelta(days=DAYS - 1)
    contacts = ContactLog.objects.filter(resident__in=visible,
                                         occurred_at__gte=datetime.combine(first_day, time.min, tzinfo=tz))
    per_day = dict(contacts_per_day(contacts, tz))
    days = [{"day": day, "count": per_day.get(day, 0)} for day in (first_day + timedelta(days=i) for i in range(DAYS))]
    return {
        "contacts": contacts, "contact_days": days[::-1], "contact_total": sum(d["count"] for d in days),
        "latest_contacts": contacts.select_related("resident__area", "logged_by")
        .only("resident", "occurred_at", "channel", "outcome", "note", "logged_by", "resident__name",
              "logged_by__display_name", "logged_by__username", *(f"resident__{field}" for field in AREA_FIELDS))
        .order_by("-occurred_at", "-pk")[:CONTACTS_SHOWN],
    }


def contacts_per_day(contacts, tz):
    """(day in `tz`, count) of `contacts`; COUNT(*) lets an index on the time answer alone."""
    return (contacts.annotate(day=TruncDate("occurred_at", tzinfo=tz)).order_by()
            .values_list("day").annotate(n=Count("*")))
