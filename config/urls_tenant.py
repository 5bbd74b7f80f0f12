"""URLs of a tenant's hosts."""
from django.urls import include, path

from tenants.accounts import views as account_views
from tenants.accounts.urls import tenant_patterns

urlpatterns = [
    path("", account_views.home, name="home"),
    path("accounts/", include((tenant_patterns, "accounts"))),
    path("i18n/", include("django.conf.urls.i18n")),
]
