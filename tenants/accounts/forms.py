from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from tenants.accounts import actions
from tenants.accounts.models import TENANT_ROLES, User


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "-")


class SignInForm(AuthenticationForm):
    """Django's sign-in form, refusing attempts while failures are throttled.

    Every failure shows the same message, whether the name is unknown, the account is
    deactivated or the password is wrong.
    """

    error_messages = {
        "invalid_login": _("The user name or password is incorrect."),
        "inactive": _("The user name or password is incorrect."),
        "throttled": _("Too many failed sign-in attempts. Please wait 15 minutes and try again."),
    }
    throttled = False

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        address = client_address(self.request)
        if not actions.check_login_allowed(username, address):
            self.throttled = True
            raise ValidationError(self.error_messages["throttled"], code="throttled")
        try:
            cleaned = super().clean()
        except ValidationError:
            actions.do_record_login_failure(username, address)
            raise
        actions.do_clear_login_failures(username)
        return cleaned


class InvitationForm(forms.Form):
    display_name = forms.CharField(label=_("Name"), max_length=100)
    email = forms.EmailField(label=_("Email"))
    role = forms.ChoiceField(label=_("Role"), choices=[(r.value, r.label) for r in TENANT_ROLES])


class AcceptInvitationForm(forms.Form):
    username = forms.RegexField(
        label=_("User name"), max_length=150, regex=r"^[\w.@+-]+\Z",
        error_messages={"invalid": _("Use letters, digits and @ . + - _ only.")},
    )
    password1 = forms.CharField(label=_("Password"), widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(label=_("Password (again)"), widget=forms.PasswordInput, strip=False)

    def clean(self):
        cleaned = super().clean()
        p1, p2 = cleaned.get("password1"), cleaned.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", _("The two passwords do not match."))
        elif p1:
            try:
                password_validation.validate_password(p1, User(username=cleaned.get("username") or ""))
            except ValidationError as exc:
                self.add_error("password1", exc)
        return cleaned
