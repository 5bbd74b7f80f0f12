from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from tenants.accounts import actions
from tenants.accounts.forms import (
    AcceptInvitationForm,
    InvitationForm,
    PasswordResetRequestForm,
    SignInForm,
    client_address,
)
from tenants.accounts.models import Invitation, User


class SignInView(auth_views.LoginView):
    form_class = SignInForm
    redirect_authenticated_user = True

    def form_valid(self, form):
        response = super().form_valid(form)
        # Binds the session to this schema; AccountMiddleware refuses it anywhere else.
        self.request.session["schema"] = self.request.tenant.schema_name
        return response

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.throttled:
            response.status_code = 429
        return response


class SignOutView(auth_views.LogoutView):
    def post(self, request, *args, **kwargs):
        actions.do_sign_out(request)
        return HttpResponseRedirect(self.get_success_url())


class PasswordChangeView(auth_views.PasswordChangeView):
    success_url = reverse_lazy("accounts:password_change_done")

    def form_valid(self, form):
        response = super().form_valid(form)
        actions.do_record_password_change(form.user)
        return response


class PasswordResetView(auth_views.PasswordResetView):
    """Asks for a reset link. The link is built from the tenant's own domain and mailed
    by a task (actions.do_request_password_reset); requests are limited per email and
    per client address."""

    form_class = PasswordResetRequestForm
    success_url = reverse_lazy("accounts:password_reset_done")

    def form_valid(self, form):
        email = form.cleaned_data["email"]
        if not actions.do_count_password_reset_request(email, client_address(self.request)):
            form.add_error(None, _("Too many password reset requests. Please wait an hour and try again."))
            return self.render_to_response(self.get_context_data(form=form), status=429)
        actions.do_request_password_reset(email)
        return HttpResponseRedirect(self.get_success_url())

    def form_invalid(self, form):
        return self.render_to_response(self.get_context_data(form=form), status=400)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    success_url = reverse_lazy("accounts:password_reset_complete")

    def form_valid(self, form):
        response = super().form_valid(form)
        actions.do_record_password_change(form.user)
        return response


def _require_admin(request):
    if not request.user.is_tenant_admin:
        raise PermissionDenied


def get_user_for_admin(actor: User, user_id: int) -> User:
    """A user of this tenant that `actor` may manage, or 404."""
    if not actor.is_tenant_admin:
        raise PermissionDenied
    return get_object_or_404(User.objects.exclude(role=User.Role.OPERATOR), pk=user_id)


def _users_page(request, form, *, status: int = 200, refused_user: int | None = None):
    """The users page; `refused_user`: the person whose deactivation was not confirmed."""
    return render(
        request, "accounts/users.html",
        {
            # Areas by their full names (watch's memberships, reached by relation: no import).
            "users": User.objects.exclude(role=User.Role.OPERATOR).prefetch_related("area_memberships__area"),
            "invitations": Invitation.objects.filter(accepted_at=None, revoked_at=None),
            "form": form,
            "refused_user": refused_user,
        },
        status=status,
    )


@login_required
def user_list(request):
    _require_admin(request)
    form = InvitationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            actions.do_invite_user(
                actor=request.user, **form.cleaned_data,
                accept_url_for=lambda token: request.build_absolute_uri(
                    reverse("accounts:accept_invitation", args=[token])
                ),
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("The invitation was sent to %(email)s.") % form.cleaned_data)
            return redirect("accounts:users")
    return _users_page(request, form, status=400 if request.method == "POST" else 200)


@login_required
@require_POST
def set_user_active(request, user_id: int, active: bool):
    user = get_user_for_admin(request.user, user_id)
    if not active and request.POST.get("confirm") != "yes":
        return _users_page(request, InvitationForm(), status=400, refused_user=user.pk)
    try:
        actions.do_set_user_active(actor=request.user, user=user, active=active)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("accounts:users")
    if active:
        messages.success(request, _("%(name)s can sign in again.") % {"name": user})
    else:
        messages.success(request, _("%(name)s was deactivated and signed out.") % {"name": user})
    return redirect("accounts:users")


@login_required
@require_POST
def revoke_invitation(request, invitation_id: int):
    _require_admin(request)
    invitation = get_object_or_404(Invitation, pk=invitation_id)
    actions.do_revoke_invitation(actor=request.user, invitation=invitation)
    messages.success(request, _("The invitation was revoked."))
    return redirect("accounts:users")


def accept_invitation(request, token: str):
    invitation = actions.get_usable_invitation(token)
    if invitation is None:
        return render(request, "accounts/invitation_invalid.html", status=404)
    form = AcceptInvitationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            actions.do_accept_invitation(
                token=token, username=form.cleaned_data["username"], password=form.cleaned_data["password1"]
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("Your account is ready. Please sign in."))
            return redirect("accounts:login")
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/accept_invitation.html", {"form": form, "invitation": invitation}, status=status)
