"""Escalation policies and the weekly duty rota.

Those who oversee the whole tenant edit both; municipal staff attached to an area may
read them (they answer what the policies send them and call whoever is on duty); anyone
else gets 403. Ids of another tenant are missing here: 404."""
from datetime import date, datetime, time, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.dates import WEEKDAYS_ABBR
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from notifications.delivery import tenant_time_zone
from outreach import policies
from outreach.actions import do_add_duty_shift, steps_of
from outreach.models import DutyShift, EscalationPolicy, Severity, Target
from tenants.accounts.models import User
from watch.access import oversees_whole_tenant
from watch.models import Area
from watch.visits import PLAN_YEARS

EXTRA_ROWS = 1  # empty step rows offered below the policy's own


def _ids(values) -> list[int]:
    try:
        return [int(v) for v in values if v != ""]
    except ValueError as exc:
        raise Http404 from exc


@login_required
@require_GET
def policy_list(request):
    policies.check_can_read_policies(request.user)
    views, table = policies.policies_overview()
    return render(request, "outreach/policies.html", {
        "policies": views, "table": table, "severities": [label for _v, label in Severity.choices],
        "can_edit": oversees_whole_tenant(request.user),
    })


def _step_rows(policy: EscalationPolicy | None, post=None) -> list[dict]:
    """The step rows of the form: from the posted form, else from the policy, plus empty ones."""
    if post is not None:
        try:
            count = min(max(int(post.get("rows", 1)), 1), policies.MAX_STEPS)
        except ValueError:
            count = 1
        return [{"number": n, "targets": post.getlist(f"step_{n}_targets"),
                 "users": _ids(post.getlist(f"step_{n}_users")), "wait_minutes": post.get(f"step_{n}_wait", "")}
                for n in range(1, count + 1)]
    steps = steps_of(policy) if policy else []
    rows = [{"number": n, "targets": [t for t in s["targets"] if t != Target.USER], "users": s["users"],
             "wait_minutes": s["wait_minutes"]} for n, s in enumerate(steps, start=1)]
    for n in range(len(rows) + 1, min(len(rows) + EXTRA_ROWS, policies.MAX_STEPS) + 1):
        rows.append({"number": n, "targets": [], "users": [], "wait_minutes": 15})
    return rows


def _policy_form(request, policy: EscalationPolicy | None, *, values=None, rows=None, errors=None, status=200):
    if values is None:
        values = {"name": policy.name if policy else "", "severity": policy.severity if policy else "",
                  "area": policy.area_id if policy else None,
                  "repeat_limit": policy.repeat_limit if policy else 1,
                  "is_active": policy.is_active if policy else True}
    errors = errors or {}
    for row in rows:
        row["errors"] = errors.get(f"step_{row['number']}", [])
    return render(request, "outreach/policy_form.html", {
        "policy": policy, "values": values, "rows": rows, "errors": errors,
        "severities": Severity.choices, "areas": Area.objects.order_by("path"),
        "targets": [(v, label) for v, label in Target.choices if v != Target.USER],
        "people": User.objects.filter(is_active=True).exclude(role=User.Role.OPERATOR).order_by("display_name", "pk"),
        "max_steps": policies.MAX_STEPS,
    }, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def policy_edit(request, pk: int | None = None):
    policies.check_can_edit_policies(request.user)
    policy = get_object_or_404(EscalationPolicy.objects.select_related("area"), pk=pk) if pk else None
    if request.method == "GET":
        return _policy_form(request, policy, rows=_step_rows(policy))
    post = request.POST
    rows = _step_rows(policy, post)
    area_id = post.get("area", "")
    area = get_object_or_404(Area, pk=_ids([area_id])[0]) if area_id else None
    people = {u.pk: u for u in User.objects.filter(pk__in={pk for row in rows for pk in row["users"]})}
    if any(pk not in people for row in rows for pk in row["users"]):
        raise Http404
    values = {"name": post.get("name", ""), "severity": post.get("severity", ""), "area": area.pk if area else None,
              "repeat_limit": post.get("repeat_limit", ""), "is_active": bool(post.get("is_active"))}
    if "add_step" in post:  # no JS needed: the same form with one more empty row, nothing saved
        if len(rows) < policies.MAX_STEPS:
            rows.append({"number": len(rows) + 1, "targets": [], "users": [], "wait_minutes": 15})
        return _policy_form(request, policy, values=values, rows=rows)
    try:
        saved = policies.do_save_policy(
            actor=request.user, policy=policy, name=values["name"], severity=values["severity"], area=area,
            repeat_limit=values["repeat_limit"], is_active=values["is_active"],
            confirm_deactivate=bool(post.get("confirm_deactivate")),
            steps=[{"targets": row["targets"], "users": [people[pk] for pk in row["users"]],
                    "wait_minutes": row["wait_minutes"]} for row in rows])
    except ValidationError as exc:
        return _policy_form(request, policy, values=values, rows=rows, errors=exc.message_dict, status=400)
    messages.success(request, _("The policy “%(name)s” was saved.") % {"name": saved.name})
    for warning in policies.warnings_for(saved) if saved.is_active else []:
        messages.warning(request, warning.text())
    return redirect("outreach:policies")


# The rota ---------------------------------------------------------------------------------

def _day_text(moment: datetime) -> str:
    return _("%(month)d/%(day)d (%(weekday)s)") % {"month": moment.month, "day": moment.day,
                                                    "weekday": WEEKDAYS_ABBR[moment.weekday()]}


def _time_text(moment: datetime) -> str:
    return f"{moment.hour}:{moment.minute:02d}"


def _moment_on(moment: datetime, day: date, tz) -> str:
    """A time as read on `day`'s line: "18:00", "翌9:00", or with its own date."""
    local = moment.astimezone(tz)
    if local.date() == day:
        return _time_text(local)
    if local.date() == day + timedelta(days=1):
        return _("next day %(time)s") % {"time": _time_text(local)}
    return _("%(day)s %(time)s") % {"day": _day_text(local), "time": _time_text(local)}


def gap_texts(found, tz) -> list[str]:
    texts = []
    for starts, ends in found:
        local = starts.astimezone(tz)
        start = _("%(day)s %(time)s") % {"day": _day_text(local), "time": _time_text(local)}
        texts.append(_("%(start)s–%(end)s: nobody is on duty") % {"start": start,
                                                                  "end": _moment_on(ends, local.date(), tz)})
    return texts


def _week_param(monday: date) -> str:
    year, week, _day = monday.isocalendar()
    return f"{year}-W{week:02d}"


def _rota(request, *, monday: date | None = None, values=None, errors=None, status=200):
    tz = tenant_time_zone()
    monday = monday or policies.week_start(request.GET.get("week"), tz)
    starts, ends = policies.week_bounds(monday, tz)
    shifts = list(policies.shifts_between(starts, ends))
    days = []
    for offset in range(7):
        day = monday + timedelta(days=offset)
        day_starts = datetime.combine(day, time(0), tzinfo=tz)
        day_ends = day_starts + timedelta(days=1)
        days.append({"date": day, "label": _day_text(day_starts), "shifts": [
            {"shift": s, "starts": _moment_on(s.starts_at, day, tz), "ends": _moment_on(s.ends_at, day, tz)}
            for s in shifts if s.starts_at < day_ends and s.ends_at > day_starts]})
    return render(request, "outreach/rota.html", {
        "days": days, "gaps": gap_texts(policies.gaps(shifts, starts, ends), tz),
        "week": _week_param(monday), "previous": _week_param(monday - timedelta(days=7)),
        "next": _week_param(monday + timedelta(days=7)), "monday": monday, "sunday": monday + timedelta(days=6),
        "people": policies.people_for_duty(), "can_edit": oversees_whole_tenant(request.user),
        "values": values or {"day": monday.isoformat(), "starts": "09:00", "ends": "17:00"}, "errors": errors or {},
        "time_zone": str(tz),
    }, status=status)


def _clock(value: str) -> time:
    return datetime.strptime(value, "%H:%M").time()


def _parse(value: str, parse, field: str, message: str, errors: dict):
    try:
        return parse(value)
    except ValueError:
        errors[field] = [message]
        return None


@login_required
@require_http_methods(["GET", "POST"])
def rota(request):
    """The week's shifts per day and its gaps; POST adds a shift."""
    if request.method == "GET":
        policies.check_can_read_policies(request.user)
        return _rota(request)
    policies.check_can_edit_policies(request.user)
    post = request.POST
    errors: dict[str, list[str]] = {}
    person_id = _ids([post.get("user", "")])
    person = get_object_or_404(User, pk=person_id[0]) if person_id else None
    if person is None:
        errors["user"] = [_("Choose who is on duty.")]
    values = {"user": person.pk if person else None, "day": post.get("day", ""), "starts": post.get("starts", ""),
              "ends": post.get("ends", ""), "next_day": bool(post.get("next_day"))}
    day = _parse(values["day"], date.fromisoformat, "day", _("Give the day as a date."), errors)
    if day is not None and day.year not in PLAN_YEARS:
        errors["day"], day = [_("Give a day between %(first)d and %(last)d.") % {
            "first": PLAN_YEARS[0], "last": PLAN_YEARS[-1]}], None
    start = _parse(values["starts"], _clock, "starts_at", _("Give the start as a time (18:00)."), errors)
    end = _parse(values["ends"], _clock, "ends_at", _("Give the end as a time (9:00)."), errors)
    tz = tenant_time_zone()
    monday = day - timedelta(days=day.weekday()) if day else None
    if not errors:
        starts_at, ends_at = policies.shift_times(day, start, end, values["next_day"], tz)
        try:
            do_add_duty_shift(actor=request.user, user=person, starts_at=starts_at, ends_at=ends_at)
        except ValidationError as exc:
            errors = exc.message_dict
    if errors:
        return _rota(request, monday=monday, values=values, errors=errors, status=400)
    messages.success(request, _("The shift was added."))
    return redirect(f"{reverse('outreach:rota')}?week={_week_param(monday)}")


@login_required
@require_http_methods(["GET", "POST"])
def rota_remove(request, pk: int):
    """A confirmation page, then the shift is removed."""
    policies.check_can_edit_policies(request.user)
    shift = get_object_or_404(DutyShift.objects.select_related("user"), pk=pk)
    tz = tenant_time_zone()
    local = shift.starts_at.astimezone(tz)
    monday = local.date() - timedelta(days=local.weekday())
    context = {"shift": shift, "week": _week_param(monday),
               "when": f"{_moment_on(shift.starts_at, date.min, tz)}–{_moment_on(shift.ends_at, local.date(), tz)}"}
    if request.method == "POST":
        try:
            policies.do_remove_duty_shift(actor=request.user, shift=shift, confirmed=bool(request.POST.get("confirm")))
        except ValidationError as exc:
            return render(request, "outreach/rota_remove.html", {**context, "errors": exc.message_dict}, status=400)
        messages.success(request, _("The shift was removed."))
        return redirect(f"{reverse('outreach:rota')}?week={context['week']}")
    return render(request, "outreach/rota_remove.html", context)


@login_required
@require_POST
def rota_copy(request):
    """Copy last week's shifts into the week shown."""
    policies.check_can_edit_policies(request.user)
    monday = policies.week_start(request.POST.get("week"), tenant_time_zone())
    copied = policies.do_copy_previous_week(actor=request.user, monday=monday)
    messages.success(request, ngettext("%(count)d shift was copied from the previous week.",
                                       "%(count)d shifts were copied from the previous week.", copied)
                     % {"count": copied})
    return redirect(f"{reverse('outreach:rota')}?week={_week_param(monday)}")


urlpatterns = [
    path("policies/", policy_list, name="policies"),
    path("policies/new/", policy_edit, name="policy_new"),
    path("policies/<int:pk>/", policy_edit, name="policy_edit"),
    path("rota/", rota, name="rota"),
    path("rota/copy/", rota_copy, name="rota_copy"),
    path("rota/<int:pk>/remove/", rota_remove, name="rota_remove"),
]
