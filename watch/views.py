"""Web pages of watch-over and the device ping URL."""
from datetime import date

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, Window
from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseNotFound
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from tenants.accounts.models import User, hash_token
from watch import actions, records
from watch.access import (
    can_see_sensitive,
    get_resident_for_user,
    oversees_whole_tenant,
    residents_for_user,
)
from watch.models import Channel, ContactLog, Device, Outcome, Resident
from watch.search import filter_residents

OVERVIEW_PAGE = 100
# Apps to the right add parts to the resident page: functions (request, resident) -> HTML.
resident_panels: list = []
MANAGER_ROLES = {User.Role.ADMIN, User.Role.MUNICIPAL_STAFF, User.Role.CASE_WORKER}


@login_required
def overview(request):
    """Residents of the user's areas found by the search box and filters (watch.search),
    overdue first, then by next due time; a filter value that is not valid is a 400 with
    its message next to the field."""
    if request.user.role == User.Role.VOLUNTEER:
        return my_residents(request)
    page, search, overdue = overview_page(request.user, request.GET)
    response = render(request, "watch/overview.html", {
        "page": page, "search": search.offer_areas(), "overdue_count": overdue,
        "labels": live_labels(),
        "can_manage": request.user.role in MANAGER_ROLES,
        "can_switch_disaster_sharing": oversees_whole_tenant(request.user),
    })
    if search.errors:
        response.status_code = 400
    return response


def overview_page(user, params) -> tuple:
    """(page of rows, ResidentFilter, number overdue) of the overview. The totals come
    with the rows, as window counts: the matching rows are read once, not once more for
    a count (a 2-character name can match thousands). Also what bench/bench_search.py times."""
    residents, search = filter_residents(user, params)
    rows = residents.select_related("area").order_by("-is_overdue", "next_due_at", "pk").only(
        "pk", "name", "furigana", "area__name", "area__full_name", "last_contact_at", "last_outcome",
        "next_due_at", "is_overdue", "status",
    ).annotate(found=Window(Count("pk")), found_overdue=Window(Count("pk", filter=Q(is_overdue=True))))
    number = params.get("page", "")
    number = int(number) if number.isascii() and number.isdigit() and 0 < int(number) < 10**6 else 1
    objects = list(rows[(number - 1) * OVERVIEW_PAGE:number * OVERVIEW_PAGE])
    if objects:
        total, overdue = objects[0].found, objects[0].found_overdue
    else:  # nothing found, or past the last page: counted, and the last page shown (as get_page does)
        summary = residents.aggregate(total=Count("pk"), overdue=Count("pk", filter=Q(is_overdue=True)))
        total, overdue = summary["total"], summary["overdue"]
        if total and number > 1:
            number = -(-total // OVERVIEW_PAGE)
            objects = list(rows[(number - 1) * OVERVIEW_PAGE:number * OVERVIEW_PAGE])
        else:
            number = 1
    return Page(objects, number, CountedPaginator(objects, OVERVIEW_PAGE, total)), search, overdue


class CountedPaginator(Paginator):
    """A paginator told its total (counted with the rows of its one page)."""

    def __init__(self, object_list, per_page, count: int):
        super().__init__(object_list, per_page)
        self.known_count = count

    @property
    def count(self) -> int:
        return self.known_count


def live_labels() -> dict:
    """Texts the live-update script needs, in the page's language."""
    return {
        # Times in the zone the server renders them in (the tenant's), not the browser's.
        "time_zone": timezone.get_current_timezone_name(),
        "overdue": _("Overdue"),
        "outcomes": {value: str(label) for value, label in Outcome.choices},
        "queued": _("%(count)s check-in(s) not sent yet: they are kept on this phone and sent when the network "
                    "is back."),
        "rejected": _("A check-in was refused by the server: %(reason)s"),
        "saved": _("Saved."),
    }


@login_required
def my_residents(request):
    """The volunteer's phone page: today's and late visits first (by block, then address,
    each with its map link and phone numbers), then the rest of their residents by due
    time; one-tap check-in, which completes the visit (watch.visits)."""
    from watch.visits import tenant_today, visits_to_do

    today = tenant_today()
    to_visit: dict[int, dict] = {}
    for visit in visits_to_do(request.user, today):
        card = to_visit.setdefault(visit.resident_id, {"resident": visit.resident, "visits": []})
        visit.late = visit.state == visit.State.MISSED or visit.ends_on < today
        card["visits"].append(visit)
        card["late"] = card.get("late") or visit.late
    residents = (residents_for_user(request.user).filter(assignments__user=request.user)
                 .exclude(pk__in=list(to_visit)).select_related("area").order_by("-is_overdue", "next_due_at", "pk"))
    labels = {**live_labels(), "user": request.user.pk, "worker": reverse("watch:my_residents_worker"),
              "scope": reverse("watch:my_residents"),
              "offline": _("No network. This list is as of %(time)s; check-ins are kept on this phone and sent "
                           "when the network is back.") % {"time": date_format(timezone.localtime(), "n/j H:i")},
              "recorded": _("Recorded."),
              "sending": _("Sending…"),
              "kept": _("Kept on this phone: it is sent when the network is back.")}
    return render(request, "watch/my_residents.html", {
        "visits": list(to_visit.values()), "residents": residents, "channels": Channel.choices,
        "outcomes": Outcome.choices, "labels": labels,
    })


@require_GET
def my_residents_worker(request):
    """The service worker that keeps "my residents" usable offline; served under
    /watch/my/ so that its scope is that page."""
    response = render(request, "watch/sw.js", {"page_url": reverse("watch:my_residents"),
                                               "static_url": settings.STATIC_URL},
                      content_type="application/javascript")
    response["Cache-Control"] = "no-cache"
    return response


RESIDENT_HISTORY = 10  # latest changes on the resident's page; the rest on its history page


@login_required
def resident_detail(request, pk: int):
    resident = get_resident_for_user(request.user, pk)
    contacts = Paginator(
        ContactLog.objects.filter(resident=resident).select_related("logged_by", "device"), 50
    ).get_page(request.GET.get("page"))
    sensitive = can_see_sensitive(request.user)
    can_manage = request.user.role in MANAGER_ROLES
    team = list(resident.assignments.select_related("user"))
    return render(request, "watch/resident.html", {
        "resident": resident, "contacts": contacts, "sensitive": sensitive,
        "rhythms": resident.rhythms.select_related("device").order_by("device_id", "pk"),
        "devices": resident.devices.order_by("revoked_at", "pk") if sensitive else [],
        "team": team,
        "emergency_contacts": resident.emergency_contacts.order_by("pk"),
        "consents": resident.consent_records.select_related("recorded_by")[:5] if sensitive else [],
        "channels": Channel.choices, "outcomes": Outcome.choices,
        "can_manage": can_manage,
        "candidates": User.objects.filter(is_active=True, role__in=[User.Role.VOLUNTEER, User.Role.CASE_WORKER])
        .exclude(pk__in=[a.user_id for a in team]) if can_manage else [],
        "consent_states": Resident.Consent.choices,
        "history": records.describe_history(resident.changes.select_related("actor")[:RESIDENT_HISTORY],
                                            request.user),
        # Set by _refused: the refused form's messages, shown next to its fields.
        "form_errors": getattr(request, "form_errors", {}),
        "panels": [mark_safe(panel(request, resident)) for panel in resident_panels],  # noqa: S308 - our templates
    })


@login_required
@require_http_methods(["POST"])
def log_contact(request, pk: int):
    """The resident page's form (without JavaScript): one contact, then back to the page."""
    resident = get_resident_for_user(request.user, pk)
    try:
        actions.do_log_contact(
            actor=request.user, resident=resident, occurred_at=timezone.now(),
            channel=request.POST.get("channel", ""), outcome=request.POST.get("outcome", ""),
            note=request.POST.get("note", ""),
        )
    except ValidationError as exc:
        return _refused(request, exc, resident_detail, pk=pk)
    messages.success(request, _("Saved."))
    return redirect("watch:resident", pk=pk)


def _refused(request, exc: ValidationError, page, **kwargs):
    """Bad form input: the page again, with the messages, as 400; nothing was saved.
    On the resident's page the messages go next to the fields of the form that was sent
    (`form_errors[url name][field]`); elsewhere above the page."""
    errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
    if page is resident_detail:
        request.form_errors = {request.resolver_match.url_name: errors}
    else:
        for field_errors in errors.values():
            for error in field_errors:
                messages.error(request, error)
    response = page(request, **kwargs)
    response.status_code = 400
    return response


@login_required
@require_http_methods(["POST"])
def change_team(request, pk: int):
    """Add or remove a volunteer or case worker on the resident's team."""
    resident = get_resident_for_user(request.user, pk)
    actions.check_can_manage_residents(request.user)
    member = User.objects.filter(pk=request.POST.get("user") or 0, is_active=True).first()
    try:
        if member is None:
            raise ValidationError({"user": [_("Choose a volunteer or case worker.")]})
        if request.POST.get("remove"):
            actions.do_unassign(actor=request.user, resident=resident, user=member)
        else:
            actions.do_assign(actor=request.user, resident=resident, user=member)
    except ValidationError as exc:
        return _refused(request, exc, resident_detail, pk=pk)
    return redirect("watch:resident", pk=pk)


@login_required
@require_http_methods(["POST"])
def record_consent(request, pk: int):
    resident = get_resident_for_user(request.user, pk)
    actions.check_can_manage_residents(request.user)
    try:
        actions.do_record_consent(
            actor=request.user, resident=resident, status=request.POST.get("status", ""),
            share_with_volunteers=bool(request.POST.get("share_with_volunteers")),
            share_with_association=bool(request.POST.get("share_with_association")),
            note=request.POST.get("note", "")[:500],
        )
    except ValidationError as exc:
        return _refused(request, exc, resident_detail, pk=pk)
    messages.success(request, _("Saved."))
    return redirect("watch:resident", pk=pk)


@login_required
@require_http_methods(["POST"])
def set_status(request, pk: int):
    resident = get_resident_for_user(request.user, pk)
    actions.check_can_manage_residents(request.user)
    try:
        try:
            until = date.fromisoformat(request.POST["until"]) if request.POST.get("until") else None
        except ValueError as exc:
            raise ValidationError({"until": [_("Enter the date as YYYY-MM-DD.")]}) from exc
        status = request.POST.get("status", "")
        records.check_status_confirmed(status, bool(request.POST.get("confirm")))
        actions.do_set_resident_status(actor=request.user, resident=resident, status=status,
                                       reason=request.POST.get("reason", "")[:200], until=until)
    except ValidationError as exc:
        return _refused(request, exc, resident_detail, pk=pk)
    messages.success(request, _("Saved."))
    return redirect("watch:resident", pk=pk)


@login_required
@require_http_methods(["POST"])
def disaster_sharing(request):
    """Switch the disaster exception on (with a reason) or off; every switch is logged."""
    try:
        if request.POST.get("end"):
            actions.do_end_disaster_sharing(actor=request.user, confirmed=request.POST.get("confirm") == "yes")
        else:
            actions.do_start_disaster_sharing(actor=request.user, reason=request.POST.get("reason", "")[:300],
                                              confirmed=request.POST.get("confirm") == "yes")
    except ValidationError as exc:
        return _refused(request, exc, overview)
    return redirect("watch:overview")


NOT_FOUND = "not found\n"


@csrf_exempt
@require_http_methods(["GET", "POST", "HEAD"])
def device_ping(request, token: str, signal: str = actions.DeviceSignal.HEARTBEAT):
    """Dead-man's-switch style: GET, HEAD or POST /ping/<token>[/heartbeat] is a heartbeat;
    the signals a person's press or the device's report makes ("ok", "call", "battery")
    need POST, so that a link preview's GET or HEAD records nothing (405). A wrong or
    revoked token gets the same 404 as an unknown one; more than one signal a second gets 429.

    A press may carry an idempotency key (`Idempotency-Key` header or `?key=`): sent again
    with the same key after a failure, it is answered OK and logged once."""
    if signal not in actions.DeviceSignal.ALL:
        return HttpResponseNotFound(NOT_FOUND, content_type="text/plain")
    if signal != actions.DeviceSignal.HEARTBEAT and request.method != "POST":
        return HttpResponseNotAllowed(["POST"], _("this signal needs POST\n"), content_type="text/plain")
    key = request.headers.get("Idempotency-Key", request.GET.get("key"))
    try:
        actions.check_device_key(key)
    except ValidationError as error:
        return HttpResponse(f"{error.message_dict['key'][0]}\n", status=400, content_type="text/plain")
    device = (Device.objects.select_related("resident__area")
              .filter(token_hash=hash_token(token), revoked_at=None).first())
    if device is None:
        return HttpResponseNotFound(NOT_FOUND, content_type="text/plain")
    try:
        actions.do_record_device_signal(device=device, signal=signal, key=key)
    except actions.DeviceThrottled:
        return HttpResponse(_("too many signals; at most one a second\n"), status=429, content_type="text/plain")
    except actions.IdempotencyConflict:
        return HttpResponse(_("this idempotency key was already used for another signal\n"), status=409,
                            content_type="text/plain")
    return HttpResponse("OK\n", content_type="text/plain")
