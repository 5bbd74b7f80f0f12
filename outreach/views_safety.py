"""Staff pages of safety checks (安否確認): the list, a new check, the confirmation step,
live progress, closing and cancelling, the follow-up visit lists, the report and its
exports. Only those who run checks (outreach.safety.can_run_checks) see them: anyone
else gets 403; a check of another tenant, or none, is 404. Each page counts and names
only the residents its viewer may see."""
import math
import re
from datetime import datetime, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from notifications.delivery import tenant_time_zone
from outreach import reports, safety
from outreach.models import SafetyCheck
from tenants.accounts.models import User
from watch.access import areas_for_user
from watch.models import Resident
from watch.reach import REACH_CHANNELS

TEMPLATES = "outreach/safety/"
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"  # <input type="datetime-local">


def _check(request, pk) -> SafetyCheck:
    safety.check_can_run_checks(request.user)
    return safety.get_check_for_user(request.user, pk)


def parse_local(value: str | None) -> datetime | None:
    """A datetime-local value in the tenant's time zone, or None if it is not one."""
    try:
        return datetime.strptime((value or "").strip()[:16], LOCAL_FORMAT).replace(tzinfo=tenant_time_zone())
    except ValueError:
        return None


def parse_minutes(value: str | None) -> list[str]:
    """「10, 30, 60」 (ASCII or full-width commas, spaces) as its parts; checked by the action."""
    return [part for part in re.split(r"[\s,、，]+", (value or "").strip()) if part]


def _states(check: SafetyCheck) -> dict:
    return {"open": check.state == SafetyCheck.State.OPEN,
            "startable": check.state in (SafetyCheck.State.DRAFT, SafetyCheck.State.HELD),
            "cancellable": check.state in (SafetyCheck.State.DRAFT, SafetyCheck.State.HELD, SafetyCheck.State.OPEN),
            "started": check.started_at is not None}


@login_required
@require_GET
def check_list(request):
    safety.check_can_run_checks(request.user)
    checks = list(safety.checks_for_user(request.user).select_related("started_by", "created_by")[:200])
    rows = [{"check": check, "progress": safety.progress(check, request.user) if check.started_at else None}
            for check in checks]
    return render(request, TEMPLATES + "list.html", {"rows": rows})


def _form_values(post=None) -> dict:
    if post is None:
        deadline = timezone.now().astimezone(tenant_time_zone()) + timedelta(minutes=90)
        return {"title": "", "question": safety.default_question(), "kind": SafetyCheck.Kind.DRILL, "scope": "all",
                "areas": [], "needs_evacuation_support": False, "household": "", "min_age": "",
                "by_household": False, "channels": list(REACH_CHANNELS),
                "silence_minutes": ", ".join(str(m) for m in safety.DEFAULT_SILENCE_MINUTES),
                "deadline": deadline.replace(second=0, microsecond=0).strftime(LOCAL_FORMAT)}
    return {"title": post.get("title", ""), "question": post.get("question", ""), "kind": post.get("kind", ""),
            "scope": "areas" if post.get("scope") == "areas" else "all",
            "areas": [a for a in post.getlist("areas") if a], "needs_evacuation_support": bool(
                post.get("needs_evacuation_support")), "household": post.get("household", ""),
            "min_age": post.get("min_age", ""), "by_household": post.get("by_household") == "1",
            "channels": post.getlist("channels"), "silence_minutes": post.get("silence_minutes", ""),
            "deadline": post.get("deadline", "")}


@login_required
@require_http_methods(["GET", "POST"])
def check_new(request):
    safety.check_can_run_checks(request.user)
    errors: dict = {}
    status = 200
    if request.method == "GET":
        values = _form_values()
    else:
        values = _form_values(request.POST)
        scope = {"scope": values["scope"], "areas": values["areas"] if values["scope"] == "areas" else [],
                 "needs_evacuation_support": values["needs_evacuation_support"], "household": values["household"],
                 "min_age": values["min_age"]}
        try:
            check = safety.do_create_check(
                request.user, values["title"], values["question"], values["kind"], scope, values["by_household"],
                values["channels"], parse_minutes(values["silence_minutes"]), parse_local(values["deadline"]))
        except ValidationError as exc:
            errors, status = exc.message_dict, 400
        else:
            return redirect("outreach:safety_start", check.pk)
    return render(request, TEMPLATES + "form.html", {
        "values": values, "errors": errors, "areas": areas_for_user(request.user).order_by("path"),
        "area_ids": {str(a) for a in values["areas"]}, "kinds": SafetyCheck.Kind.choices,
        "households": Resident.Household.choices, "channels": list(REACH_CHANNELS.items()),
    }, status=status)


def _scope_words(check: SafetyCheck) -> list[str]:
    """The scope in words, for the confirmation step and the pages."""
    from watch.models import Area

    scope = check.scope or {}
    words = []
    names = list(Area.objects.filter(pk__in=scope.get("areas") or []).order_by("path")
                 .values_list("full_name", flat=True))
    words.append(", ".join(names) if names else _("The whole municipality (the residents you may see)"))
    if scope.get("needs_evacuation_support"):
        words.append(_("Only those who need help to evacuate"))
    if scope.get("household") in Resident.Household.values:
        words.append(str(Resident.Household(scope["household"]).label))
    if scope.get("min_age"):
        words.append(_("Aged %(age)d or over") % {"age": int(scope["min_age"])})
    return words


def _context(check: SafetyCheck, request, **extra) -> dict:
    return {"check": check, "scope_words": _scope_words(check), "can_manage": safety.can_manage_check(
        request.user, check), "channel_labels": [str(REACH_CHANNELS[c]) for c in check.channels if c in REACH_CHANNELS],
        **_states(check), **extra}


@login_required
@require_http_methods(["GET", "POST"])
def check_start(request, pk: int):
    """The second step: says how many residents will be asked; a real event also asks
    for a confirmation."""
    check = _check(request, pk)
    if request.method == "POST" or check.state in (SafetyCheck.State.DRAFT, SafetyCheck.State.HELD):
        safety.check_can_manage_check(request.user, check)
    errors, status = {}, 200
    if request.method == "POST":
        try:
            asked = safety.do_start_check(request.user, check, confirmed=request.POST.get("confirm") == "1")
        except ValidationError as exc:
            errors, status = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}, 400
        else:
            messages.success(request, _("The safety check started: %(count)d residents are being asked.")
                             % {"count": asked})
            return redirect("outreach:safety_check", check.pk)
    count = safety.residents_in_scope(request.user, check.scope).count() if _states(check)["startable"] else None
    return render(request, TEMPLATES + "start.html", _context(check, request, count=count, errors=errors),
                  status=status)


def _detail(request, check: SafetyCheck, status: int = 200):
    figures = safety.progress(check, request.user)
    points = reports.curve(check, request.user)
    until_deadline = (check.deadline - check.started_at).total_seconds() / 60 if check.started_at else 0
    drawn = reports.chart([{"label": check.title, "points": points, "current": True}],
                          at_least=max(10.0, math.ceil(until_deadline)))
    return render(request, TEMPLATES + "detail.html", _context(
        check, request, progress=figures, totals=figures["totals"], chart=drawn,
        live={"check": check.pk, "started_at": check.started_at.isoformat() if check.started_at else None,
              "points": points, "x_max": drawn["x_max"], "chart": reports.CHART,
              "url": reverse("outreach:safety_progress", args=[check.pk])}), status=status)


@login_required
@require_GET
def check_detail(request, pk: int):
    """Live progress: the figures, the bar, per area, and the answer-rate curve."""
    return _detail(request, _check(request, pk))


@login_required
@require_GET
def check_progress(request, pk: int):
    """The same figures as a live update, for a page catching up after a reconnect."""
    check = _check(request, pk)
    return JsonResponse({"type": "safety.progress", **safety.progress(check, request.user)})


def _stop(request, pk: int, action, done: str):
    check = _check(request, pk)
    safety.check_can_manage_check(request.user, check)
    if request.POST.get("confirm") != "1":
        messages.error(request, _("Tick the box to confirm: nothing was changed."))
        return _detail(request, check, status=400)
    try:
        action(request.user, check)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return _detail(request, check, status=400)
    messages.success(request, done)
    return redirect("outreach:safety_check", check.pk)


@login_required
@require_POST
def check_close(request, pk: int):
    return _stop(request, pk, safety.do_close_check,
                 _("The safety check was closed. The residents without an answer get follow-up visits."))


@login_required
@require_POST
def check_cancel(request, pk: int):
    return _stop(request, pk, safety.do_cancel_check, _("The safety check was cancelled: nothing more is sent."))


@login_required
@require_GET
def follow_up(request, pk: int):
    """The visit lists of the follow-up, one per visitor, by block; printable. ?visitor=
    shows one visitor's list alone (to print and hand over)."""
    check = _check(request, pk)
    rows = safety.follow_up_rows(check, request.user)
    groups: dict = {}
    for row in rows:
        visitor = row["visit"].visitor if row["visit"] else None
        groups.setdefault(visitor.pk if visitor else None, {"visitor": visitor, "rows": []})["rows"].append(row)
    chosen = request.GET.get("visitor", "")
    if chosen:
        groups = {key: group for key, group in groups.items() if str(key) == chosen}
    ordered = sorted(groups.values(), key=lambda g: (g["visitor"] is None, str(g["visitor"] or "")))
    return render(request, TEMPLATES + "follow_up.html", _context(
        check, request, groups=ordered, chosen=chosen, count=len(rows),
        visitors=User.objects.filter(pk__in=[k for k in groups if k]).order_by("display_name")))


@login_required
@require_GET
def report(request, pk: int):
    check = _check(request, pk)
    figures = reports.report(check, request.user)
    return render(request, TEMPLATES + "report.html", _context(
        check, request, report=figures, totals=figures["totals"], comparison=reports.comparison(check, request.user)))


def _download(content: bytes, content_type: str, name: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def export_csv(request, pk: int):
    check = _check(request, pk)
    return _download(reports.export_csv(check, request.user), "text/csv; charset=utf-8",
                     f"safety-check-{check.pk}.csv")


@login_required
@require_GET
def export_xlsx(request, pk: int):
    check = _check(request, pk)
    return _download(reports.export_xlsx(check, request.user),
                     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                     f"safety-check-{check.pk}.xlsx")


# Staff pages, under /outreach/ (outreach.urls).
urlpatterns = [
    path("safety/", check_list, name="safety_checks"),
    path("safety/new/", check_new, name="safety_new"),
    path("safety/<int:pk>/", check_detail, name="safety_check"),
    path("safety/<int:pk>/progress/", check_progress, name="safety_progress"),
    path("safety/<int:pk>/start/", check_start, name="safety_start"),
    path("safety/<int:pk>/close/", check_close, name="safety_close"),
    path("safety/<int:pk>/cancel/", check_cancel, name="safety_cancel"),
    path("safety/<int:pk>/follow-up/", follow_up, name="safety_follow_up"),
    path("safety/<int:pk>/report/", report, name="safety_report"),
    path("safety/<int:pk>/report.csv", export_csv, name="safety_export_csv"),
    path("safety/<int:pk>/report.xlsx", export_xlsx, name="safety_export_xlsx"),
]
# Pages for residents and their families (no sign-in), under /r/ (outreach.urls_residents).
resident_urlpatterns = []
