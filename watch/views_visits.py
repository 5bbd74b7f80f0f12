"""Visit coordination pages: planning (search a resident, choose who goes, a day or a
window, why), reassigning and cancelling, weekly plans per visitor and per area, the
printable visit sheet (HTML with a print stylesheet, and PDF) and the page that enters
the outcomes written on it. The rules are in watch.visits."""
import io
from datetime import date, datetime, timedelta
from itertools import groupby

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from tenants.accounts.models import User
from watch import visits as plans
from watch.access import get_resident_for_user, residents_for_user
from watch.actions import do_log_contact, occurred_in_window
from watch.models import Channel, Outcome, Visit
from watch.search import search_residents

SEARCH_LIMIT = 30
# The outcomes a paper sheet offers to tick, in this order.
SHEET_OUTCOMES = (Outcome.FINE, Outcome.NOT_HOME, Outcome.WORRIED, Outcome.NO_ANSWER, Outcome.OTHER)


def _errors_of(exc: ValidationError) -> dict[str, str]:
    """A ValidationError as {field: message} for the template ("form" for the form as a whole)."""
    if hasattr(exc, "error_dict"):
        return {field: " ".join(messages_) for field, messages_ in exc.message_dict.items()}
    return {"form": " ".join(exc.messages)}


def _date(value: str, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValidationError({field: [_("Enter the date as YYYY-MM-DD.")]}) from exc


def _visitor(value: str) -> User | None:
    """The visitor chosen in a form: None for no choice; 404 for an id that is nobody's here."""
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or int(value) >= 2**63:
        raise Http404
    visitor = User.objects.filter(pk=int(value)).first()
    if visitor is None:
        raise Http404
    return visitor


def _week_nav(monday: date) -> dict:
    return {"week": plans.week_label(monday), "monday": monday, "sunday": monday + timedelta(days=6),
            "previous": plans.week_label(monday - timedelta(days=7)),
            "next": plans.week_label(monday + timedelta(days=7))}


def _week_url(name: str, visit: Visit) -> str:
    """The page `name` at the week the visit starts in."""
    return f"{reverse(name)}?week={plans.week_label(visit.starts_on - timedelta(days=visit.starts_on.weekday()))}"


# Planning.
@login_required
@require_http_methods(["GET", "POST"])
def visits(request):
    """Plan a visit: find the resident (search box), choose who goes, when and why; below,
    this week's visits with their reassign and cancel links."""
    plans.check_can_plan_visits(request.user)
    data = request.POST if request.method == "POST" else request.GET
    resident = get_resident_for_user(request.user, data["resident"]) if data.get("resident") else None
    errors, status = {}, 200
    if request.method == "POST":
        if resident is None:
            errors, status = {"resident": _("Choose the resident to visit.")}, 400
        else:
            try:
                visit = plans.do_plan_visit(
                    actor=request.user, resident=resident, visitor=_visitor(data.get("visitor", "")),
                    starts_on=_date(data.get("starts_on", ""), "starts_on"),
                    ends_on=_date(data.get("ends_on", ""), "ends_on"), purpose=data.get("purpose", ""),
                    note=data.get("note", "")[:2000])
            except ValidationError as exc:
                errors, status = _errors_of(exc), 400
            else:
                messages.success(request, _("The visit of %(name)s is planned.") % {"name": resident.name})
                return redirect(_week_url("watch:visits", visit))
    query = request.GET.get("q", "")
    found = residents_for_user(request.user).select_related("area")
    found = (search_residents(found, query) if query.strip() else found.order_by("area__full_name", "address"))
    monday = plans.parse_week(request.GET.get("week"))
    return render(request, "watch/visits.html", {
        "query": query, "found": list(found[:SEARCH_LIMIT]) if resident is None or query else [],
        "resident": resident, "candidates": plans.visitor_candidates(resident) if resident else [],
        "purposes": Visit.Purpose.choices, "errors": errors, "values": data,
        "today": plans.tenant_today().isoformat(),
        "planned": plans.visits_in_week(plans.visits_for_user(request.user), monday), **_week_nav(monday),
    }, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def visit_reassign(request, pk: int):
    """Give a planned visit to someone else (the volunteer is away), in the same or another window."""
    visit = plans.get_visit_for_user(request.user, pk)
    plans.check_can_plan_visits(request.user)
    errors, status = {}, 200
    if request.method == "POST":
        try:
            plans.do_reassign_visit(actor=request.user, visit=visit, visitor=_visitor(request.POST.get("visitor", "")),
                                    starts_on=_date(request.POST.get("starts_on", ""), "starts_on"),
                                    ends_on=_date(request.POST.get("ends_on", ""), "ends_on"))
        except ValidationError as exc:
            errors, status = _errors_of(exc), 400
        else:
            messages.success(request, _("The visit is now %(name)s's.") % {"name": visit.visitor})
            return redirect(_week_url("watch:visits", visit))
    return render(request, "watch/visit_reassign.html", {
        "visit": visit, "candidates": [u for u in plans.visitor_candidates(visit.resident) if u.pk != visit.visitor_id],
        "errors": errors, "values": request.POST,
    }, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def visit_cancel(request, pk: int):
    """Cancel a planned visit: a confirmation page, then the required "I confirm" box."""
    visit = plans.get_visit_for_user(request.user, pk)
    plans.check_can_plan_visits(request.user)
    errors, status = {}, 200
    if request.method == "POST":
        try:
            plans.do_cancel_visit(actor=request.user, visit=visit, confirmed=request.POST.get("confirm") == "yes")
        except ValidationError as exc:
            errors, status = _errors_of(exc), 400
        else:
            messages.success(request, _("The visit is cancelled."))
            return redirect("watch:visits")
    return render(request, "watch/visit_cancel.html", {"visit": visit, "errors": errors}, status=status)


# Weekly plans.
@login_required
@require_GET
def visit_week(request):
    """A week's visits grouped per visitor (?by=visitor, the default) or per area
    (?by=area, areas with their full path); those who do not plan see their own."""
    monday = plans.parse_week(request.GET.get("week"))
    by = "area" if request.GET.get("by") == "area" else "visitor"
    week = list(plans.visits_in_week(plans.visits_for_user(request.user), monday))
    if by == "area":
        key = lambda v: (str(v.resident.area), v.resident.area_id)  # noqa: E731 - a sort key
        week.sort(key=key)
    else:
        key = lambda v: (str(v.visitor), v.visitor_id)  # noqa: E731 - a sort key
        week.sort(key=key)
    groups = [(name, list(rows)) for (name, _id), rows in groupby(week, key=key)]
    return render(request, "watch/visit_week.html", {
        "groups": groups, "by": by, "can_plan": request.user.role in plans.PLANNER_ROLES, **_week_nav(monday),
    })


# The visit sheet.
def _sheet_visitor(request) -> User | None:
    """Whose sheet: one's own, or for those who plan, the visitor chosen (None: not chosen yet)."""
    if request.user.role not in plans.PLANNER_ROLES:
        return request.user
    visitor = _visitor(request.GET.get("visitor", "") or request.POST.get("visitor", ""))
    if visitor is not None and visitor.role not in plans.VISITOR_ROLES:
        raise Http404
    return visitor


def _sheet_context(request) -> dict:
    monday = plans.parse_week(request.GET.get("week") or request.POST.get("week"))
    visitor = _sheet_visitor(request)
    context = {"visitor": visitor, **_week_nav(monday)}
    if visitor is None:
        week = plans.visits_in_week(plans.visits_for_user(request.user), monday)
        ids = week.filter(state__in=[Visit.State.PLANNED, Visit.State.MISSED]).values("visitor_id")
        context["visitors"] = User.objects.filter(pk__in=ids)
        context["rows"] = []
    else:
        context["rows"] = list(plans.sheet_visits(request.user, visitor, monday))
    return context


@login_required
@require_GET
def visit_sheet(request):
    """The printable sheet of a visitor's week (A4, the print stylesheet hides the rest of the page)."""
    context = _sheet_context(request)
    return render(request, "watch/visit_sheet.html", {**context, "outcomes": [o.label for o in SHEET_OUTCOMES]})


@login_required
@require_GET
def visit_sheet_pdf(request):
    context = _sheet_context(request)
    if context["visitor"] is None:
        return redirect(f"{reverse('watch:visit_sheet')}?week={context['week']}")
    pdf = render_sheet_pdf(visitor=context["visitor"], monday=context["monday"], visits=context["rows"],
                           tenant_name=getattr(request.tenant, "name", ""))
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="visits-{context["week"]}-{context["visitor"].pk}.pdf"'
    return response


FONT = "HeiseiKakuGo-W5"


def render_sheet_pdf(*, visitor: User, monday: date, visits: list[Visit], tenant_name: str = "") -> bytes:
    """The visit sheet as an A4 PDF (landscape): one row per visit with the boxes to tick
    the outcome and room for the time and a note. reportlab's built-in Japanese CID font
    needs no font file."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    text = ParagraphStyle("cell", fontName=FONT, fontSize=8.5, leading=11, wordWrap="CJK")
    head = ParagraphStyle("head", parent=text, fontSize=9)
    title = ParagraphStyle("title", fontName=FONT, fontSize=14, leading=18)
    box = "□"

    def cell(value: str, style=text):
        return Paragraph(_escape(value), style)

    header = [cell(label, head) for label in (
        _("Resident"), _("Address"), _("Phone"), _("Purpose and note"), _("Outcome"), _("Time"), _("Note"))]
    rows = [header]
    for visit in visits:
        resident = visit.resident
        phones = " / ".join(p for p in (resident.phone, resident.mobile_phone) if p)
        purpose = visit.get_purpose_display()
        window = _window_text(visit)
        notes = "\n".join(n for n in (f"{purpose}（{window}）", visit.note, resident.visit_notes) if n)
        outcomes = "\n".join(f"{box} {o.label}" for o in SHEET_OUTCOMES)
        rows.append([cell(f"{resident.name}\n{resident.furigana}".strip()),
                     cell(f"{resident.address}\n{resident.area}"), cell(phones), cell(notes), cell(outcomes),
                     cell(" :"), cell("")])
    if len(rows) == 1:
        rows.append([cell(_("No visits are planned for this week.")), "", "", "", "", "", ""])
    buffer = io.BytesIO()
    page = landscape(A4)
    document = SimpleDocTemplate(buffer, pagesize=page, leftMargin=10 * mm, rightMargin=10 * mm, topMargin=10 * mm,
                                 bottomMargin=10 * mm, title=_("Visit sheet"), author=tenant_name)
    widths = [w * mm for w in (38, 58, 30, 62, 28, 18, 43)]
    table = Table(rows, colWidths=widths, repeatRows=1)
    table.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, -1), FONT), ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8ef")), ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("MINROWHEIGHT", (0, 1), (-1, -1), 22 * mm),
    ]))
    heading = _("Visit sheet of %(visitor)s, week of %(monday)s–%(sunday)s") % {
        "visitor": visitor, "monday": date_format(monday, "Y/n/j"),
        "sunday": date_format(monday + timedelta(days=6), "n/j")}
    document.build([Paragraph(_escape(f"{tenant_name}　{heading}".strip()), title), Spacer(1, 4 * mm), table])
    return buffer.getvalue()


def _escape(value: str) -> str:
    """Text for a reportlab Paragraph (its own markup), line breaks kept."""
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")).replace("\n", "<br/>")


def _window_text(visit: Visit) -> str:
    if visit.starts_on == visit.ends_on:
        return date_format(visit.starts_on, "n/j (D)")
    return f"{date_format(visit.starts_on, 'n/j')}–{date_format(visit.ends_on, 'n/j')}"


# Entering the outcomes written on a sheet.
@login_required
@require_http_methods(["GET", "POST"])
def visit_outcomes(request):
    """One form for a sheet's visits: per row an outcome (left empty: not entered), when
    and a note. Every row entered is logged as a contact in one transaction, which
    completes the visit; an invalid row refuses all of them (400), its message next to it."""
    context = _sheet_context(request)
    errors: dict[int, dict[str, str]] = {}
    status = 200
    if request.method == "POST":
        entered = []
        # Each visit once, however often the form sends it.
        for visit_id in dict.fromkeys(request.POST.getlist("visit")):
            visit = plans.get_visit_for_user(request.user, visit_id)
            row_errors, entry = _outcome_row(request.POST, visit)
            if row_errors:
                errors[visit.pk] = row_errors
            elif entry:
                entered.append(entry)
        if not errors and not entered:
            errors[0] = {"": _("Choose an outcome for at least one visit.")}
        if not errors:
            try:
                with transaction.atomic():
                    for visit, outcome, at, note in entered:
                        do_log_contact(actor=request.user, resident=visit.resident, occurred_at=at,
                                       channel=Channel.VISIT, outcome=outcome, note=note)
            except ValidationError as exc:
                errors[0] = {"": " ".join(exc.messages)}
            else:
                messages.success(request, _("%(count)d outcome(s) recorded.") % {"count": len(entered)})
                return redirect(f"{reverse('watch:visit_week')}?week={context['week']}")
        status = 400
    data = request.POST
    entries = [{"visit": v, "outcome": data.get(f"outcome-{v.pk}", ""), "at": data.get(f"at-{v.pk}", ""),
                "note": data.get(f"note-{v.pk}", ""), "errors": list(errors.get(v.pk, {}).values())}
               for v in context["rows"]]
    return render(request, "watch/visit_outcomes.html", {
        **context, "entries": entries, "errors": errors, "form_error": errors.get(0, {}).get(""),
        "outcomes": Outcome.choices,
    }, status=status)


def _outcome_row(data, visit: Visit):
    """(errors, (visit, outcome, when, note) or None for a row left empty)."""
    outcome = data.get(f"outcome-{visit.pk}", "")
    at_text, note = data.get(f"at-{visit.pk}", ""), data.get(f"note-{visit.pk}", "")
    if not outcome:
        return {}, None
    errors = {}
    if visit.state not in (Visit.State.PLANNED, Visit.State.MISSED):
        errors["outcome"] = _("This visit is no longer open: it was done or cancelled.")
    if outcome not in Outcome.values:
        errors["outcome"] = _("Choose one of the outcomes offered.")
    at = None
    try:
        at = datetime.fromisoformat(at_text).replace(tzinfo=plans.tenant_time_zone(), second=0, microsecond=0)
    except ValueError:
        errors["at"] = _("Enter the day and time of the visit.")
    if at is not None and not occurred_in_window(at):
        errors["at"] = _("The time is in the future. Check the date.")
    elif at is not None and not visit.starts_on <= at.date() <= visit.ends_on:
        errors["at"] = _("The visit was planned for %(window)s: enter a time in that window.") % {
            "window": _window_text(visit)}
    if note and not note.strip():
        errors["note"] = _("The note is only spaces: write something or leave it empty.")
    elif len(note) > 2000:
        errors["note"] = _("The note is too long (at most %(max)d characters).") % {"max": 2000}
    return errors, (visit, outcome, at, note.strip())


urlpatterns = [
    path("visits/", visits, name="visits"),
    path("visits/week/", visit_week, name="visit_week"),
    path("visits/<int:pk>/reassign/", visit_reassign, name="visit_reassign"),
    path("visits/<int:pk>/cancel/", visit_cancel, name="visit_cancel"),
    path("visits/sheet/", visit_sheet, name="visit_sheet"),
    path("visits/sheet.pdf", visit_sheet_pdf, name="visit_sheet_pdf"),
    path("visits/outcomes/", visit_outcomes, name="visit_outcomes"),
]
