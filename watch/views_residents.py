"""Pages that edit a resident's record: add, edit, move, pause and end; rhythms,
emergency contacts and devices (register, print the label, re-issue the address,
revoke); the history. Each parses its form, calls one action (watch.records or
watch.actions) and answers; bad input is 400 with the message next to its field."""
from datetime import timedelta

import segno
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from watch import actions, records
from watch.access import areas_for_user, get_resident_for_user
from watch.models import Channel, Device, EmergencyContact, Resident, Rhythm

HISTORY_PAGE = 50
UNITS = (("hours", gettext_lazy("hours")), ("days", gettext_lazy("days")))
PAPERS = (("a6", gettext_lazy("A6 label")), ("a4", gettext_lazy("A4 sheet")))


# Forms ---------------------------------------------------------------------------------
def area_choices(actor) -> list[tuple[str, str]]:
    return [("", "—"), *((str(a.pk), a.full_name or a.name) for a in areas_for_user(actor))]


class ResidentForm(forms.Form):
    """Every field of the record `actor` may see; with the area when adding."""

    def __init__(self, *args, actor, adding: bool = False, look_alikes: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if adding:
            self.fields["area"] = forms.ChoiceField(label=Resident._meta.get_field("area").verbose_name,
                                                    choices=area_choices(actor))
        for name in records.editable_fields(actor):
            extra = {"strip": False} if name in records.NOTE_FIELDS else {}
            if name == "date_of_birth":
                extra["widget"] = forms.DateInput(attrs={"type": "date"})
            self.fields[name] = Resident._meta.get_field(name).formfield(**extra)
        if look_alikes:
            self.fields["register_anyway"] = forms.BooleanField(
                required=False, label=_("This is another person: register anyway"))


class MoveForm(forms.Form):
    def __init__(self, *args, actor, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["area"] = forms.ChoiceField(label=_("Move to"), choices=area_choices(actor))


class PauseForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason for the pause"), max_length=200, strip=False,
                             help_text=gettext_lazy("For example: in hospital, staying with family."))
    until = forms.DateField(label=gettext_lazy("Paused until (optional)"), required=False,
                            widget=forms.DateInput(attrs={"type": "date"}),
                            help_text=gettext_lazy("Watch-over resumes by itself the day after."))


class EndForm(forms.Form):
    reason = forms.ChoiceField(label=gettext_lazy("Reason for ending"),
                               choices=[("", "—"), *Resident.EndReason.choices])
    confirm = forms.BooleanField(label=gettext_lazy("I confirm that watch-over of this person ends."))


def _duration_field(label, minimum):
    return forms.IntegerField(label=label, min_value=minimum, max_value=8784)


class RhythmForm(forms.Form):
    channel = forms.ChoiceField(label=gettext_lazy("Way of contact"), required=False,
                                choices=[("", gettext_lazy("Any contact")), *Channel.choices])
    interval = _duration_field(gettext_lazy("Every"), 1)
    interval_unit = forms.ChoiceField(label=gettext_lazy("Unit"), choices=UNITS, initial="days")
    grace = _duration_field(gettext_lazy("Grace before it counts as overdue"), 0)
    grace_unit = forms.ChoiceField(label=gettext_lazy("Unit of the grace"), choices=UNITS, initial="hours")

    @staticmethod
    def initial_for(rhythm: Rhythm | None) -> dict:
        if rhythm is None:
            return {"channel": "", "interval": 7, "interval_unit": "days", "grace": 12, "grace_unit": "hours"}
        initial = {"channel": rhythm.channel}
        for name in ("interval", "grace"):
            seconds = int(getattr(rhythm, name).total_seconds())
            days = seconds and seconds % 86400 == 0
            initial[name] = seconds // 86400 if days else seconds // 3600
            initial[f"{name}_unit"] = "days" if days else "hours"
        return initial

    def durations(self) -> dict:
        data = self.cleaned_data
        return {name: timedelta(**{data[f"{name}_unit"]: data[name]}) for name in ("interval", "grace")}


class EmergencyContactForm(forms.Form):
    name = EmergencyContact._meta.get_field("name").formfield()
    relation = EmergencyContact._meta.get_field("relation").formfield(
        help_text=gettext_lazy("For example: daughter, neighbour, care manager."))
    phone = EmergencyContact._meta.get_field("phone").formfield(widget=forms.TextInput(attrs={"type": "tel"}))


class ConfirmForm(forms.Form):
    confirm = forms.BooleanField(label=gettext_lazy("I confirm"))


class DeviceForm(forms.Form):
    kind = forms.ChoiceField(label=gettext_lazy("Kind of device"), choices=[("", "—"), *Device.Kind.choices])
    name = forms.CharField(label=gettext_lazy("Name (where it is, e.g. by the front door)"), max_length=100,
                           required=False)
    paper = forms.ChoiceField(label=gettext_lazy("Print the label on"), choices=PAPERS, initial="a6",
                              widget=forms.RadioSelect)


class ReissueForm(forms.Form):
    confirm = forms.BooleanField(label=gettext_lazy("I confirm that the old address stops working."))
    paper = forms.ChoiceField(label=gettext_lazy("Print the label on"), choices=PAPERS, initial="a6",
                              widget=forms.RadioSelect)


# Helpers ---------------------------------------------------------------------------------
def _managed_resident(request, pk):
    """The resident, if the user may see them (404) and manage residents (403)."""
    resident = get_resident_for_user(request.user, pk)
    actions.check_can_manage_residents(request.user)
    return resident


def _refused(form, exc: ValidationError) -> None:
    """The action's messages next to the form's fields (others above the form)."""
    for field, errors in (exc.message_dict.items() if hasattr(exc, "error_dict") else [(None, exc.messages)]):
        form.add_error(field if field in form.fields else None, errors)


def _page(request, template: str, context: dict, *, failed: bool = False):
    return render(request, template, context, status=400 if failed else 200)


def _back(resident, message: str, request):
    messages.success(request, message)
    return redirect("watch:resident", pk=resident.pk)


# Residents -----------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def add_resident(request):
    actions.check_can_manage_residents(request.user)
    look_alikes, others = [], 0
    if request.method == "POST":
        area = records.get_area_for_user(request.user, request.POST["area"]) if request.POST.get("area") else None
        data = request.POST
        form = ResidentForm(data, actor=request.user, adding=True, look_alikes="register_anyway" in data)
        if form.is_valid():
            fields = {k: v for k, v in form.cleaned_data.items() if k not in ("area", "register_anyway")}
            try:
                fields = records.clean_record_fields(fields)
                look_alikes, others = records.find_look_alikes(
                    request.user, name=fields["name"], furigana=fields.get("furigana", ""),
                    date_of_birth=fields.get("date_of_birth"))
                if (look_alikes or others) and not form.cleaned_data.get("register_anyway"):
                    form = ResidentForm(data, actor=request.user, adding=True, look_alikes=True)
                    form.is_valid()
                    form.add_error("register_anyway", _("Check the records above. If this is another person, "
                                                        "tick the box and save again."))
                else:
                    resident = actions.do_create_resident(actor=request.user, area=area, **fields)
                    return _back(resident, _("Registered."), request)
            except ValidationError as exc:
                _refused(form, exc)
        return _page(request, "watch/resident_form.html", {
            "form": form, "adding": True, "look_alikes": look_alikes, "others": others}, failed=True)
    form = ResidentForm(actor=request.user, adding=True)
    return _page(request, "watch/resident_form.html", {"form": form, "adding": True})


@login_required
@require_http_methods(["GET", "POST"])
def edit_resident(request, pk: int):
    resident = _managed_resident(request, pk)
    if request.method == "POST":
        form = ResidentForm(request.POST, actor=request.user)
        if form.is_valid():
            try:
                records.do_update_resident(actor=request.user, resident=resident, fields=form.cleaned_data)
                return _back(resident, _("Saved."), request)
            except ValidationError as exc:
                _refused(form, exc)
        resident.refresh_from_db()
        return _page(request, "watch/resident_form.html", {"form": form, "resident": resident}, failed=True)
    form = ResidentForm(actor=request.user, initial={name: getattr(resident, name)
                                                     for name in records.editable_fields(request.user)})
    return _page(request, "watch/resident_form.html", {"form": form, "resident": resident})


@login_required
@require_http_methods(["GET", "POST"])
def move_resident(request, pk: int):
    resident = _managed_resident(request, pk)
    form = MoveForm(request.POST or None, actor=request.user)
    if request.method == "POST":
        area = records.get_area_for_user(request.user, request.POST["area"]) if request.POST.get("area") else None
        if form.is_valid():
            try:
                records.do_move_resident(actor=request.user, resident=resident, area=area)
                return _back(resident, _("Moved."), request)
            except ValidationError as exc:
                _refused(form, exc)
    return _page(request, "watch/resident_move.html", {"form": form, "resident": resident},
                 failed=request.method == "POST")


@login_required
@require_http_methods(["GET", "POST"])
def pause_resident(request, pk: int):
    resident = _managed_resident(request, pk)
    form = PauseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            actions.do_set_resident_status(actor=request.user, resident=resident, status=Resident.Status.PAUSED,
                                           reason=form.cleaned_data["reason"],
                                           until=form.cleaned_data["until"])
            return _back(resident, _("Watch-over is paused."), request)
        except ValidationError as exc:
            _refused(form, exc)
    return _page(request, "watch/resident_pause.html", {"form": form, "resident": resident},
                 failed=request.method == "POST")


@login_required
@require_http_methods(["GET", "POST"])
def end_resident(request, pk: int):
    """Ending watch-over: a page that asks for the reason and a confirmation."""
    resident = _managed_resident(request, pk)
    form = EndForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            actions.do_set_resident_status(actor=request.user, resident=resident, status=Resident.Status.ENDED,
                                           reason=form.cleaned_data["reason"])
            return _back(resident, _("Watch-over has ended."), request)
        except ValidationError as exc:
            _refused(form, exc)
    return _page(request, "watch/resident_end.html", {"form": form, "resident": resident},
                 failed=request.method == "POST")


@login_required
def resident_history(request, pk: int):
    resident = get_resident_for_user(request.user, pk)
    page = Paginator(resident.changes.select_related("actor"), HISTORY_PAGE).get_page(request.GET.get("page"))
    return render(request, "watch/resident_history.html", {
        "resident": resident, "page": page, "history": records.describe_history(page, request.user)})


# Rhythms ------------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def add_rhythm(request, pk: int):
    resident = _managed_resident(request, pk)
    form = RhythmForm(request.POST or None, initial=RhythmForm.initial_for(None))
    if request.method == "POST" and form.is_valid():
        try:
            records.do_add_rhythm(actor=request.user, resident=resident, channel=form.cleaned_data["channel"],
                                  **form.durations())
            return _back(resident, _("Saved."), request)
        except ValidationError as exc:
            _refused(form, exc)
    return _page(request, "watch/resident_rhythm.html", {"form": form, "resident": resident},
                 failed=request.method == "POST")


@login_required
@require_http_methods(["GET", "POST"])
def edit_rhythm(request, pk: int, rhythm_id: int):
    resident = _managed_resident(request, pk)
    rhythm = records.get_rhythm_for_resident(resident, rhythm_id)
    form = RhythmForm(request.POST or None, initial=RhythmForm.initial_for(rhythm))
    if request.method == "POST" and form.is_valid():
        try:
            records.do_change_rhythm(actor=request.user, rhythm=rhythm, channel=form.cleaned_data["channel"],
                                     **form.durations())
            return _back(resident, _("Saved."), request)
        except ValidationError as exc:
            _refused(form, exc)
    return _page(request, "watch/resident_rhythm.html", {
        "form": form, "resident": resident, "rhythm": rhythm, "remove_form": ConfirmForm()},
        failed=request.method == "POST")


@login_required
@require_http_methods(["POST"])
def remove_rhythm(request, pk: int, rhythm_id: int):
    resident = _managed_resident(request, pk)
    rhythm = records.get_rhythm_for_resident(resident, rhythm_id)
    remove_form = ConfirmForm(request.POST)
    if remove_form.is_valid():
        records.do_remove_rhythm(actor=request.user, rhythm=rhythm)
        return _back(resident, _("Removed."), request)
    return _page(request, "watch/resident_rhythm.html", {
        "form": RhythmForm(initial=RhythmForm.initial_for(rhythm)), "resident": resident, "rhythm": rhythm,
        "remove_form": remove_form}, failed=True)


# Emergency contacts ----------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def add_emergency_contact(request, pk: int):
    resident = _managed_resident(request, pk)
    form = EmergencyContactForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            cleaned = records.clean_contact_fields(**form.cleaned_data)
            actions.do_add_emergency_contact(actor=request.user, resident=resident, **cleaned)
            return _back(resident, _("Saved."), request)
        except ValidationError as exc:
            _refused(form, exc)
    return _page(request, "watch/resident_emergency_contact.html", {"form": form, "resident": resident},
                 failed=request.method == "POST")


@login_required
@require_http_methods(["GET", "POST"])
def edit_emergency_contact(request, pk: int, contact_id: int):
    resident = _managed_resident(request, pk)
    contact = records.get_emergency_contact_for_resident(resident, contact_id)
    form = EmergencyContactForm(request.POST or None, initial=records.contact_spec(contact))
    if request.method == "POST" and form.is_valid():
        try:
            records.do_change_emergency_contact(actor=request.user, contact=contact, **form.cleaned_data)
            return _back(resident, _("Saved."), request)
        except ValidationError as exc:
            _refused(form, exc)
    return _page(request, "watch/resident_emergency_contact.html", {
        "form": form, "resident": resident, "contact": contact, "remove_form": ConfirmForm()},
        failed=request.method == "POST")


@login_required
@require_http_methods(["POST"])
def remove_emergency_contact(request, pk: int, contact_id: int):
    resident = _managed_resident(request, pk)
    contact = records.get_emergency_contact_for_resident(resident, contact_id)
    remove_form = ConfirmForm(request.POST)
    if remove_form.is_valid():
        records.do_remove_emergency_contact(actor=request.user, contact=contact)
        return _back(resident, _("Removed."), request)
    return _page(request, "watch/resident_emergency_contact.html", {
        "form": EmergencyContactForm(initial=records.contact_spec(contact)), "resident": resident,
        "contact": contact, "remove_form": remove_form}, failed=True)


# Devices ------------------------------------------------------------------------------
def _label(request, resident, device, token: str, paper: str):
    """The printable label: only now, while the token is known (only its hash is kept)."""
    url = request.build_absolute_uri(reverse("device_ping", kwargs={"token": token}))
    qr = segno.make(url, error="m").svg_inline(scale=1, unit="mm", border=4, svgclass="qr",
                                               title=_("QR code of the ping address"))
    qr = qr.replace("<svg ", '<svg role="img" ', 1)
    response = render(request, "watch/device_label.html", {
        "resident": resident, "device": device, "ping_url": url, "qr": qr, "paper": paper})
    response["Cache-Control"] = "no-store"  # the address is a credential
    return response


@login_required
@require_http_methods(["GET", "POST"])
def register_device(request, pk: int):
    resident = _managed_resident(request, pk)
    form = DeviceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            device, token = actions.do_register_device(actor=request.user, resident=resident,
                                                       kind=form.cleaned_data["kind"], name=form.cleaned_data["name"])
            return _label(request, resident, device, token, form.cleaned_data["paper"])
        except ValidationError as exc:
            _refused(form, exc)
    return _page(request, "watch/device_form.html", {"form": form, "resident": resident},
                 failed=request.method == "POST")


@login_required
@require_http_methods(["GET", "POST"])
def reissue_device(request, pk: int, device_id: int):
    """A new address (and label) for a device; the old address stops working."""
    resident = _managed_resident(request, pk)
    device = records.get_device_for_resident(resident, device_id)
    form = ReissueForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        token = records.do_reissue_device_token(actor=request.user, device=device, confirmed=True)
        return _label(request, resident, device, token, form.cleaned_data["paper"])
    return _page(request, "watch/device_reissue.html", {"form": form, "resident": resident, "device": device},
                 failed=request.method == "POST")


@login_required
@require_http_methods(["GET", "POST"])
def revoke_device(request, pk: int, device_id: int):
    resident = _managed_resident(request, pk)
    device = records.get_device_for_resident(resident, device_id)
    form = ConfirmForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        actions.do_revoke_device(actor=request.user, device=device)
        return _back(resident, _("The device is revoked: its address no longer works."), request)
    return _page(request, "watch/device_revoke.html", {"form": form, "resident": resident, "device": device},
                 failed=request.method == "POST")


urlpatterns = [
    path("residents/new/", add_resident, name="add_resident"),
    path("residents/<int:pk>/edit/", edit_resident, name="edit_resident"),
    path("residents/<int:pk>/move/", move_resident, name="move_resident"),
    path("residents/<int:pk>/pause/", pause_resident, name="pause_resident"),
    path("residents/<int:pk>/end/", end_resident, name="end_resident"),
    path("residents/<int:pk>/history/", resident_history, name="resident_history"),
    path("residents/<int:pk>/rhythms/new/", add_rhythm, name="add_rhythm"),
    path("residents/<int:pk>/rhythms/<int:rhythm_id>/", edit_rhythm, name="edit_rhythm"),
    path("residents/<int:pk>/rhythms/<int:rhythm_id>/remove/", remove_rhythm, name="remove_rhythm"),
    path("residents/<int:pk>/emergency-contacts/new/", add_emergency_contact, name="add_emergency_contact"),
    path("residents/<int:pk>/emergency-contacts/<int:contact_id>/", edit_emergency_contact,
         name="edit_emergency_contact"),
    path("residents/<int:pk>/emergency-contacts/<int:contact_id>/remove/", remove_emergency_contact,
         name="remove_emergency_contact"),
    path("residents/<int:pk>/devices/new/", register_device, name="register_device"),
    path("residents/<int:pk>/devices/<int:device_id>/reissue/", reissue_device, name="reissue_device"),
    path("residents/<int:pk>/devices/<int:device_id>/revoke/", revoke_device, name="revoke_device"),
]
