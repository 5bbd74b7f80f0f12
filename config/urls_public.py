"""URLs of the public host: the platform operator's sign-in and console only."""
from django.urls import include, path

from tenants import views
from tenants.accounts.urls import sign_in_patterns

urlpatterns = [
    path("", views.console, name="console"),
    path("tenants/<int:tenant_id>/deactivate/", views.set_tenant_active, {"active": False}, name="deactivate_tenant"),
    path("tenants/<int:tenant_id>/reactivate/", views.set_tenant_active, {"active": True}, name="reactivate_tenant"),
    path("accounts/", include((sign_in_patterns, "accounts"))),
    path("i18n/", include("django.conf.urls.i18n")),
]
handler500 = "config.outage.server_error"
