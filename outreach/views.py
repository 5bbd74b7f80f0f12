"""Concerns: the board, a concern's page, raising one, acknowledging from anywhere."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Case, IntegerField, Value, When
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from outreach import actions
from outreach.models import Concern, ConcernEvent, Severity
from watch.access import get_resident_for_user, residents_for_user

REPLAY_LIMIT = 500


def concerns_for_user(user):
    return Concern.objects.filter(resident__in=residents_for_user(user)).select_related("resident__area")


def get_concern_for_user(user, pk) -> Concern:
    return get_object_or_404(concerns_for_user(user), pk=pk)


@login_required
def board(request):
    """Live concerns of the residents the user may see, urgent first, then open before
    acknowledged, newest first; recently closed below."""
    concerns = concerns_for_user(request.user)
    live = (concerns.filter(state__in=Concern.LIVE_STATES)
            .annotate(urgent_first=Case(When(severity=Severity.URGENT, then=Value(0)), default=Value(1),
                                        output_field=IntegerField()))
            .order_by("urgent_first", "state", "-opened_at"))
    closed = concerns.exclude(state__in=Concern.LIVE_STATES).order_by("-closed_at")[:20]
    last_event = ConcernEvent.objects.filter(concern__in=concerns).order_by("-pk").values_list("pk", flat=True).first()
    template = "outreach/board_rows.html" if request.GET.get("rows") else "outreach/board.html"
    return render(request, template, {"live": live, "closed": closed, "last_event": last_event or 0})


@login_required
def events_after(request):
    """Live events the client missed while disconnected: those after the last id it saw."""
    try:
        after = int(request.GET.get("after", "0"))
    except ValueError:
        return JsonResponse({"error": _("`after` must be an event id.")}, status=400)
    events = (ConcernEvent.objects.filter(pk__gt=after, concern__in=concerns_for_user(request.user))
              .select_related("concern").order_by("pk")[:REPLAY_LIMIT])
    return JsonResponse({"events": [actions.live_payload(e) for e in events]})


@login_required
def concern_detail(request, pk: int):
    return _concern_page(request, get_concern_for_user(request.user, pk))


def _concern_page(request, concern, *, errors=None, form=None, status=200):
    # Whoever may see the concern may see the resident's basic record, phones included.
    resident = concern.resident
    phones = [(label, number, tel_href(number)) for label, number in
              ((_("Phone"), resident.phone), (_("Mobile phone"), resident.mobile_phone)) if number]
    return render(request, "outreach/concern.html", {
        "concern": concern, "events": concern.events.select_related("actor"), "phones": phones,
        "errors": errors or {}, "form": form or {},
    }, status=status)


def tel_href(number: str) -> str:
    """A tel: link of the digits (and a leading +) of a number as written (０７７４－６２…)."""
    digits = "".join(str(int(c)) if c.isdigit() else "" for c in number)
    return f"tel:{'+' if number.strip().startswith(('+', '＋')) else ''}{digits}"


@login_required
@require_http_methods(["POST"])
def acknowledge(request, pk: int):
    concern = get_concern_for_user(request.user, pk)
    if not actions.do_acknowledge_concern(concern=concern, actor=request.user, note=request.POST.get("note", "")):
        messages.info(request, _("This concern was already acknowledged or closed."))
    return redirect("outreach:concern", pk=pk)


@login_required
@require_http_methods(["POST"])
def close(request, pk: int):
    """Resolve or dismiss. Dismissing stops the escalation as if nothing was wrong: it
    needs the person's explicit confirmation (a checkbox, so it works without JS)."""
    concern = get_concern_for_user(request.user, pk)
    state = request.POST.get("state", "")
    try:
        if state == Concern.State.DISMISSED and not request.POST.get("confirm"):
            raise ValidationError({"confirm": [_("Tick the box to confirm that this concern needs nothing more.")]})
        actions.do_close_concern(concern=concern, actor=request.user, state=state, note=request.POST.get("note", ""))
    except ValidationError as exc:
        return _concern_page(request, concern, errors={"form": state, **exc.message_dict}, form=request.POST,
                             status=400)
    return redirect("outreach:concern", pk=pk)


@login_required
@require_http_methods(["GET", "POST"])
def raise_concern(request, resident_id: int):
    """A person raises a concern ("newspapers piling up, no answer")."""
    resident = get_resident_for_user(request.user, resident_id)
    if request.method == "POST":
        try:
            concern, _opened = actions.do_raise_concern(
                resident=resident, cause=Concern.Cause.MANUAL, severity=request.POST.get("severity", ""),
                note=request.POST.get("note", ""), actor=request.user)
        except ValidationError as exc:
            for errors in exc.message_dict.values():
                for error in errors:
                    messages.error(request, error)
            response = render(request, "outreach/raise.html", {"resident": resident, "severities": Severity.choices})
            response.status_code = 400
            return response
        return redirect("outreach:concern", pk=concern.pk)
    return render(request, "outreach/raise.html", {"resident": resident, "severities": Severity.choices})


@require_http_methods(["GET", "POST"])
def ack_link(request, token: str):
    """The link in an email, LINE or SMS message. GET only shows a button (link previews
    must not acknowledge); POST acknowledges, once, as the link's own person."""
    if request.method == "GET":
        return render(request, "outreach/ack_link.html", {"token": token})
    try:
        concern, acknowledged = actions.do_acknowledge_by_link(token)
    except actions.AckRefused:
        return render(request, "outreach/ack_link.html", {"refused": True}, status=404)
    # Someone else was first: say who and when, never a thank-you for nothing.
    return render(request, "outreach/ack_link.html", {"done": acknowledged, "taken": not acknowledged,
                                                      "concern": concern})


def resident_panel(request, resident) -> str:
    """The concerns part of a resident's page (registered with watch.views.resident_panels)."""
    from django.template.loader import render_to_string

    concerns = Concern.objects.filter(resident=resident).prefetch_related("events__actor")[:10]
    return render_to_string("outreach/resident_panel.html", {"resident": resident, "concerns": concerns},
                            request=request)
