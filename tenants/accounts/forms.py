import functools
import ipaddress

from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from tenants.accounts import actions
from tenants.accounts.models import TENANT_ROLES, User


@functools.cache
def _trusted_networks(proxies: tuple[str, ...]):
    return [ipaddress.ip_network(cidr, strict=False) for cidr in proxies]


def _address(text: str):
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


def client_address(request) -> str:
    """The client's IP address: the peer's, unless the peer is one of TRUSTED_PROXIES;
    then X-Forwarded-For read from the right, skipping trusted hops (what is left of
    them anyone can write)."""
    peer = _address(request.META.get("REMOTE_ADDR", ""))
    if peer is None:
        return "-"
    trusted = _trusted_networks(tuple(settings.TRUSTED_PROXIES))

    def is_trusted(address) -> bool:
        return any(address in network for network in trusted)

    client = peer
    if is_trusted(peer):
        for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
            address = _address(hop)
            if address is None:
                break  # not written by a proxy of ours: trust nothing further left
            client = address
            if not is_trusted(address):
                break
    return str(client)


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
        username = self.cleaned_data.get("username")
        if not username or not self.cleaned_data.get("password"):
            return self.cleaned_data  # the missing field has its own error; nothing is checked
        address = client_address(self.request)
        if not actions.do_count_sign_in_attempt(username, address):
            self.throttled = True
            raise ValidationError(self.error_messages["throttled"], code="throttled")
        cleaned = super().clean()
        actions.do_record_sign_in_success(username, address)
        return cleaned


class PasswordResetRequestForm(forms.Form):
    email = forms.EmailField(label=_("Email"), max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))


class InvitationForm(forms.Form):
    display_name = forms.CharField(label=_("Name"), max_length=100)
    email = forms.EmailField(label=_("Email"))
    # The least powerful role unless the administrator chooses another.
    role = forms.ChoiceField(label=_("Role"), choices=[(r.value, r.label) for r in TENANT_ROLES],
                             initial=User.Role.VOLUNTEER)


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
