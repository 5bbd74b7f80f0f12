"""The platform operator's console on the public host: tenants, never their people."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from tenants import actions
from tenants.accounts.models import User
from tenants.forms import ProvisionTenantForm
from tenants.models import Tenant


def _require_operator(request):
    if request.user.role != User.Role.OPERATOR:
        raise PermissionDenied


@login_required
def console(request):
    _require_operator(request)
    form = ProvisionTenantForm(request.POST or None)
    provisioned = None
    if request.method == "POST" and form.is_valid():
        try:
            provisioned = actions.do_provision_tenant(**form.cleaned_data)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            form = ProvisionTenantForm()
    status = 400 if request.method == "POST" and provisioned is None else 200
    return _console_page(request, form, provisioned=provisioned, status=status)


def _console_page(request, form, *, provisioned=None, status: int = 200, refused_tenant: int | None = None):
    """The console; `refused_tenant`: the tenant whose deactivation was not confirmed."""
    tenants = Tenant.objects.exclude(schema_name="public").prefetch_related("domains")
    return render(request, "tenants/console.html",
                  {"form": form, "tenants": tenants, "provisioned": provisioned, "refused_tenant": refused_tenant},
                  status=status)


@login_required
@require_POST
def set_tenant_active(request, tenant_id: int, active: bool):
    _require_operator(request)
    tenant = get_object_or_404(Tenant.objects.exclude(schema_name="public"), pk=tenant_id)
    if not active and request.POST.get("confirm") != "yes":
        return _console_page(request, ProvisionTenantForm(), status=400, refused_tenant=tenant.pk)
    if active:
        actions.do_reactivate_tenant(tenant)
        messages.success(request, _("%(name)s is active again.") % {"name": tenant.name})
    else:
        actions.do_deactivate_tenant(tenant)
        messages.success(request, _("%(name)s was deactivated.") % {"name": tenant.name})
    return redirect("console")
