"""URLs of a tenant's hosts."""
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from outreach.views_home import home
from tenants.accounts.urls import tenant_patterns
from watch.urls import api_urlpatterns, ping_urlpatterns

urlpatterns = [
    path("", home, name="home"),
    path("accounts/", include((tenant_patterns, "accounts"))),
    path("watch/", include("watch.urls")),
    path("outreach/", include("outreach.urls")),
    path("r/", include("outreach.urls_residents")),
    path("notifications/", include("notifications.urls")),
    path("api/v1/", include((api_urlpatterns, "api"))),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    *ping_urlpatterns,
    path("i18n/", include("django.conf.urls.i18n")),
]
handler404 = "config.api.not_found"
handler500 = "config.outage.server_error"
