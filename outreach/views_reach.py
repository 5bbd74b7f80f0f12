"""Reaching a resident. Staff (and case workers) of a resident they may see: the reach
page (the order of channels, the daily check-in, the LINE link), the printed LINE link
sheet, unlinking. Residents and families: the account-link page LINE's link opens
(/r/line-link/?linkToken=...), where the code from the sheet is typed. Each view parses
its form, calls one action (outreach.reach, outreach.checkins) and answers; bad input
is 400 with the message next to its field."""
from http import HTTPStatus

import segno
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import path
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from outreach import checkins, reach
from outreach.models import DailyCheckin
from watch.access import get_resident_for_user
from watch.actions import check_can_manage_residents
from watch.reach import DEFAULT_ORDER, REACH_CHANNELS, address_of, channels_for


def _managed_resident(request, resident_id):
    """The resident, if the user may see them (404) and manage residents (403)."""
    resident = get_resident_for_user(request.user, resident_id)
    check_can_manage_residents(request.user)
    return resident


class CheckinForm(forms.Form):
    active = forms.BooleanField(label=gettext_lazy("Ask every day"), required=False)
    at = forms.TimeField(label=gettext_lazy("Time of the question"), required=False,
                         widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    wait_minutes = forms.IntegerField(label=gettext_lazy("Minutes to wait before the next channel"), required=False,
                                      min_value=checkins.WAIT_MIN, max_value=checkins.WAIT_MAX, initial=60)
    agreed_on = forms.DateField(label=gettext_lazy("Agreed on"), required=False,
                                widget=forms.DateInput(attrs={"type": "date"}))


def _channels_from_form(post) -> list[str]:
    """The channels in order from the form's `order_<channel>` numbers (blank: not used).
    ValidationError for a number that is not one of the slots, or one given twice."""
    ranked = []
    for index, channel in enumerate(REACH_CHANNELS):
        value = post.get(f"order_{channel}", "").strip()
        if not value:
            continue
        if not (value.isascii() and value.isdigit() and 1 <= int(value) <= len(REACH_CHANNELS)):
            raise ValidationError(_("Choose a number from the list for each channel."))
        ranked.append((int(value), index, channel))
    if len({rank for rank, *_rest in ranked}) != len(ranked):
        raise ValidationError(_("Give each channel its own number."))
    return [channel for *_rank, channel in sorted(ranked)]


def asked_on(resident) -> list[str]:
    """The names of the channels questions go out on, in order (watch.reach.channels_for)."""
    return [REACH_CHANNELS[c] for c in channels_for(resident)]


def _reach_page(request, resident, *, channel_errors=None, checkin_form=None, chosen=None, failed=False):
    order = chosen if chosen is not None else list(resident.reach_channels or DEFAULT_ORDER)
    rows = [{"value": value, "label": label, "address": address_of(resident, value),
             "order": order.index(value) + 1 if value in order else None}
            for value, label in REACH_CHANNELS.items()]
    row = DailyCheckin.objects.filter(resident=resident).first()
    if checkin_form is None:
        checkin_form = CheckinForm(initial={
            "active": row.active, "at": row.at, "wait_minutes": row.wait_minutes, "agreed_on": row.agreed_on,
        } if row else {"wait_minutes": 60})
    return render(request, "outreach/reach/page.html", {
        "resident": resident, "rows": rows, "slots": range(1, len(REACH_CHANNELS) + 1),
        "channel_errors": channel_errors or [], "checkin_form": checkin_form, "checkin": row,
        "effective": asked_on(resident),
        "line_ready": bool(settings.LINE_ADD_FRIEND_URL),
    }, status=HTTPStatus.BAD_REQUEST if failed else HTTPStatus.OK)


@login_required
@require_http_methods(["GET", "POST"])
def reach_page(request, resident_id: int):
    """The resident's channels in order (POST saves them), with the daily check-in and LINE."""
    resident = _managed_resident(request, resident_id)
    if request.method == "GET":
        return _reach_page(request, resident)
    channels = None
    try:
        channels = _channels_from_form(request.POST)
        reach.do_set_reach_channels(actor=request.user, resident=resident, channels=channels)
    except ValidationError as exc:
        return _reach_page(request, resident, channel_errors=exc.messages, chosen=channels, failed=True)
    messages.success(request, _("Saved."))
    return redirect("outreach:reach", resident_id=resident.pk)


@login_required
@require_POST
def save_checkin(request, resident_id: int):
    resident = _managed_resident(request, resident_id)
    form = CheckinForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            checkins.do_set_daily_checkin(actor=request.user, resident=resident, active=data["active"],
                                          at=data["at"], wait_minutes=data["wait_minutes"],
                                          agreed_on=data["agreed_on"])
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, _("Saved."))
            return redirect("outreach:reach", resident_id=resident.pk)
    return _reach_page(request, resident, checkin_form=form, failed=True)


@login_required
@require_POST
def issue_line_code(request, resident_id: int):
    """A new one-time code and its printable sheet: shown only now (only its hash is kept)."""
    resident = _managed_resident(request, resident_id)
    if not settings.LINE_ADD_FRIEND_URL:
        return _reach_page(request, resident, channel_errors=[
            _("The LINE official account's add-friend address is not set up, so no sheet can be printed.")],
            failed=True)
    row, code = reach.do_issue_link_code(actor=request.user, resident=resident)
    qr = segno.make(settings.LINE_ADD_FRIEND_URL, error="m").svg_inline(
        scale=1, unit="mm", border=4, svgclass="qr", title=_("QR code to add the LINE official account"))
    qr = qr.replace("<svg ", '<svg role="img" ', 1)
    response = render(request, "outreach/reach/line_sheet.html", {
        "resident": resident, "code": reach.format_code(code), "expires_at": row.expires_at, "qr": qr,
        "add_friend_url": settings.LINE_ADD_FRIEND_URL, "tenant_name": getattr(request.tenant, "name", ""),
        "sheet_language": resident.language if resident.language in dict(settings.LANGUAGES) else "ja",
    })
    response["Cache-Control"] = "no-store"  # the code is a credential until used
    return response


@login_required
@require_POST
def unlink_line(request, resident_id: int):
    resident = _managed_resident(request, resident_id)
    if reach.do_unlink_line(actor=request.user, resident=resident):
        messages.success(request, _("The LINE account is no longer connected."))
    else:
        messages.info(request, _("No LINE account was connected."))
    return redirect("outreach:reach", resident_id=resident.pk)


# For residents and families ------------------------------------------------------------

@require_http_methods(["GET", "POST"])
def line_link(request):
    """LINE's link to us after adding the official account: type the code from the sheet;
    a right code goes on to LINE's account-link dialog."""
    link_token = (request.POST.get("linkToken") if request.method == "POST" else None) or request.GET.get(
        "linkToken", "")
    context = {"link_token": link_token, "tenant_name": getattr(request.tenant, "name", "")}
    try:
        reach.check_link_token(link_token)
    except ValidationError as exc:
        context["fatal"] = exc.messages[0]
        return _no_store(render(request, "outreach/reach/line_link.html", context, status=HTTPStatus.BAD_REQUEST))
    if request.method == "GET":
        return _no_store(render(request, "outreach/reach/line_link.html", context))
    try:
        start = reach.do_start_link(link_token=link_token, code=request.POST.get("code", ""))
    except ValidationError as exc:
        context.update(error=exc.messages[0], code=request.POST.get("code", "")[:20])
        status = HTTPStatus.TOO_MANY_REQUESTS if exc.code == "throttled" else HTTPStatus.BAD_REQUEST
        return _no_store(render(request, "outreach/reach/line_link.html", context, status=status))
    return _no_store(redirect(start.dialog_url))


def _no_store(response):
    response["Cache-Control"] = "no-store"
    return response


urlpatterns = [
    path("residents/<int:resident_id>/reach/", reach_page, name="reach"),
    path("residents/<int:resident_id>/reach/checkin/", save_checkin, name="reach_checkin"),
    path("residents/<int:resident_id>/reach/line-code/", issue_line_code, name="line_code"),
    path("residents/<int:resident_id>/reach/line-unlink/", unlink_line, name="line_unlink"),
]
resident_urlpatterns = [
    path("line-link/", line_link, name="line_link"),
]


def resident_panel(request, resident) -> str:
    """"How to reach" on a resident's page (registered with watch.views.resident_panels):
    the channels questions go out on, and the link to change them, for those who may."""
    try:
        check_can_manage_residents(request.user)
    except PermissionDenied:
        return ""
    return render_to_string("outreach/reach/resident_panel.html", {
        "resident": resident, "effective": asked_on(resident),
        "checkin": DailyCheckin.objects.filter(resident=resident, active=True).first()}, request=request)
