from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from tenants.actions import default_domain
from tenants.models import PREFECTURES, Tenant, normalise_host_name


class ProvisionTenantForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    kind = forms.ChoiceField(label=_("Kind"), choices=Tenant.Kind.choices)
    prefecture = forms.ChoiceField(label=_("Prefecture"), choices=[(p, p) for p in PREFECTURES])
    local_government_code = forms.CharField(label=_("Local government code (6 digits)"), max_length=6)
    schema_name = forms.CharField(
        label=_("Short name"), max_length=41,
        help_text=_("Lowercase letters, digits, underscores; used for the schema and the default host."),
    )
    domain = forms.CharField(label=_("Host name"), max_length=253, required=False,
                             help_text=_("Empty: <short name>.%(base)s") % {"base": settings.TENANT_BASE_DOMAIN})
    admin_username = forms.CharField(label=_("First administrator's user name"), max_length=150, initial="admin")
    admin_email = forms.EmailField(label=_("First administrator's email"), required=False)

    def clean_domain(self):
        return normalise_host_name(self.cleaned_data["domain"])

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("schema_name") and not cleaned.get("domain"):
            cleaned["domain"] = default_domain(cleaned["schema_name"])
        return cleaned
