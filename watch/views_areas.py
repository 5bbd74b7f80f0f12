"""The area tree and each person's page (their role, their areas, what they can see).

The person's page lives here, not in tenants.accounts, because it asks watch what the
person can see (accounts may not import watch)."""
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext, pgettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from tenants.accounts.models import TENANT_ROLES
from watch import areas as area_actions
from watch.access import LENSES, oversees_whole_tenant
from watch.models import Area, AreaMembership


class AreaForm(forms.Form):
    name = forms.CharField(label=pgettext_lazy("of an area", "Name"),
                           max_length=Area._meta.get_field("name").max_length)
    kind = forms.ChoiceField(label=gettext_lazy("Kind"), choices=Area.Kind.choices)
    # An id, looked up by the view: another tenant's or a missing area is 404, not a form error.
    parent = forms.IntegerField(label=gettext_lazy("Parent area"), required=False, widget=forms.Select)

    def __init__(self, *args, parents, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["parent"].widget.choices = [("", _("(top level)"))] + [(a.pk, a.full_name) for a in parents]


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=[(r.value, r.label) for r in TENANT_ROLES])


class MembershipForm(forms.Form):
    action = forms.ChoiceField(choices=[("attach", "attach"), ("detach", "detach")])
    area = forms.IntegerField(label=gettext_lazy("Area"), widget=forms.Select)


def _add_errors(form, exc: ValidationError) -> None:
    """The action's messages next to their fields (on the form when the field is not one of it)."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def _parent_of(user, form) -> Area | None:
    parent_id = form.cleaned_data.get("parent")
    return area_actions.get_area_for_user(user, parent_id) if parent_id is not None else None


# The tree.
@login_required
@require_http_methods(["GET", "POST"])
def areas(request):
    """Every area the person may look at, with its residents and people; those who oversee
    the whole tenant add areas here."""
    manages = oversees_whole_tenant(request.user)
    if request.method == "POST":
        area_actions.check_can_manage_areas(request.user)
    tree = area_actions.area_tree_for_user(request.user)
    form = AreaForm(request.POST or None, parents=tree)
    if request.method == "POST" and form.is_valid():
        parent = _parent_of(request.user, form)
        try:
            area = area_actions.do_create_area(actor=request.user, name=form.cleaned_data["name"],
                                               kind=form.cleaned_data["kind"], parent=parent)
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, _("%(area)s was added.") % {"area": area.full_name})
            return redirect("watch:areas")
    status = 400 if request.method == "POST" else 200
    return render(request, "watch/areas.html", {"tree": tree, "form": form, "manages": manages}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def area(request, pk: int):
    """Rename an area, change its kind or move it under another parent."""
    area = area_actions.get_area_for_user(request.user, pk)
    # Not under itself or its own areas (the action refuses those too).
    parents = Area.objects.exclude(path__startswith=area.path)
    initial = {"name": area.name, "kind": area.kind, "parent": area.parent_id}
    form = AreaForm(request.POST or None, initial=initial, parents=parents)
    if request.method == "POST" and form.is_valid():
        parent = _parent_of(request.user, form)
        try:
            area = area_actions.do_change_area(actor=request.user, area=area, name=form.cleaned_data["name"],
                                               kind=form.cleaned_data["kind"], parent=parent)
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, _("%(area)s was saved.") % {"area": area.full_name})
            return redirect("watch:areas")
    status = 400 if request.method == "POST" else 200
    return render(request, "watch/area_form.html", {"area": area, "form": form}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def area_delete(request, pk: int):
    """Ask for confirmation, then delete an empty area (and the empty areas under it)."""
    area = area_actions.get_area_for_user(request.user, pk)
    below = Area.objects.filter(path__startswith=area.path).exclude(pk=area.pk)
    blockers = area_actions.deletion_blockers(area)
    errors = []
    if request.method == "POST":
        if request.POST.get("confirm") != "yes":
            errors = [_("Tick the box to confirm.")]
        else:
            try:
                area_actions.do_delete_area(actor=request.user, area=area)
            except ValidationError as exc:
                errors = exc.messages
            else:
                messages.success(request, _("%(area)s was deleted.") % {"area": area.full_name})
                return redirect("watch:areas")
    return render(request, "watch/area_delete.html",
                  {"area": area, "below": below, "blockers": blockers, "errors": errors},
                  status=400 if errors else 200)


# People.
def _person_page(request, person, *, role_form=None, membership_form=None, status: int = 200):
    memberships = AreaMembership.objects.filter(user=person).select_related("area").order_by("area__path")
    attached = {m.area_id for m in memberships}
    membership_form = membership_form or MembershipForm(initial={"action": "attach"})
    membership_form.fields["area"].widget.choices = [
        (a.pk, a.full_name) for a in Area.objects.all() if a.pk not in attached]
    return render(request, "watch/person.html", {
        "person": person,
        "reach": area_actions.describe_reach(person, request.tenant.name),
        "memberships": memberships,
        "sees_by_area": LENSES[person.role].areas,
        "detach_widens": len(memberships) == 1 and area_actions.widens_to_whole_tenant(person, list(attached)),
        "manages": oversees_whole_tenant(request.user),
        "role_form": role_form or RoleForm(initial={"role": person.role}),
        "membership_form": membership_form,
    }, status=status)


@login_required
@require_http_methods(["GET"])
def person(request, user_id: int):
    """A person's role and areas, and what they can see, in words: for those who manage
    areas (administrators change the role), and for the person themselves."""
    return _person_page(request, area_actions.get_person_for_user(request.user, user_id))


@login_required
@require_POST
def person_role(request, user_id: int):
    person = area_actions.get_person_for_user(request.user, user_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            changed, removed = area_actions.do_change_person_role(actor=request.user, person=person,
                                                                  role=form.cleaned_data["role"])
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            if not changed:
                messages.info(request, _("%(name)s already has this role.") % {"name": person})
                return redirect("watch:person", user_id=person.pk)
            messages.success(request, _("%(name)s is now %(role)s and was signed out, so that the new role applies "
                                        "at once.") % {"name": person, "role": person.get_role_display()})
            if removed:
                messages.info(request, _("A %(role)s sees no residents by area, so %(name)s was detached from "
                                         "%(areas)s.") % {"role": person.get_role_display(), "name": person,
                                                          "areas": pgettext("list of areas", ", ").join(removed)})
            if person.pk == request.user.pk:
                return redirect("accounts:login")
            return redirect("watch:person", user_id=person.pk)
    person.refresh_from_db()
    return _person_page(request, person, role_form=form, status=400)


@login_required
@require_POST
def person_areas(request, user_id: int):
    """Attach the person to an area, or detach them from one."""
    person = area_actions.get_person_for_user(request.user, user_id)
    area_actions.check_can_manage_areas(request.user)
    form = MembershipForm(request.POST)
    if form.is_valid():
        area = area_actions.get_area_for_user(request.user, form.cleaned_data["area"])
        try:
            if form.cleaned_data["action"] == "attach":
                area_actions.do_attach_to_area(actor=request.user, user=person, area=area)
                messages.success(request, _("%(name)s was attached to %(area)s.") % {
                    "name": person, "area": area.full_name})
            else:
                area_actions.do_detach_from_area(actor=request.user, user=person, area=area,
                                                 widening_confirmed=request.POST.get("confirm") == "yes")
                messages.success(request, _("%(name)s was detached from %(area)s.") % {
                    "name": person, "area": area.full_name})
        except ValidationError as exc:
            _add_errors(form, exc)
            for message in exc.message_dict.get("confirm", []):  # asked at the detach button
                messages.error(request, message)
        else:
            return redirect("watch:person", user_id=person.pk)
    return _person_page(request, person, membership_form=form, status=400)


urlpatterns = [
    path("areas/", areas, name="areas"),
    path("areas/<int:pk>/", area, name="area"),
    path("areas/<int:pk>/delete/", area_delete, name="area_delete"),
    path("people/<int:user_id>/", person, name="person"),
    path("people/<int:user_id>/role/", person_role, name="person_role"),
    path("people/<int:user_id>/areas/", person_areas, name="person_areas"),
]
