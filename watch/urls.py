from django.urls import path

from watch import api, views, views_areas, views_residents, views_visits
from watch.views_import import import_urlpatterns

app_name = "watch"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("my/", views.my_residents, name="my_residents"),
    path("my/sw.js", views.my_residents_worker, name="my_residents_worker"),
    path("residents/<int:pk>/", views.resident_detail, name="resident"),
    path("residents/<int:pk>/contacts/", views.log_contact, name="log_contact"),
    path("residents/<int:pk>/team/", views.change_team, name="change_team"),
    path("residents/<int:pk>/consent/", views.record_consent, name="record_consent"),
    path("residents/<int:pk>/status/", views.set_status, name="set_status"),
    path("disaster-sharing/", views.disaster_sharing, name="disaster_sharing"),
    *import_urlpatterns,
    *views_areas.urlpatterns,
    *views_residents.urlpatterns,
    *views_visits.urlpatterns,
]

api_urlpatterns = [
    path("auth/token/", api.ObtainTokenView.as_view(), name="api_token"),
    path("areas/", api.AreaList.as_view(), name="api_areas"),
    path("residents/", api.ResidentList.as_view(), name="api_residents"),
    path("residents/<int:pk>/", api.ResidentDetail.as_view(), name="api_resident"),
    path("residents/<int:pk>/contacts/", api.ResidentContacts.as_view(), name="api_resident_contacts"),
    path("residents/<int:pk>/devices/", api.DeviceRegister.as_view(), name="api_device_register"),
    path("devices/<int:pk>/revoke/", api.DeviceRevoke.as_view(), name="api_device_revoke"),
    path("contacts/", api.ContactCreate.as_view(), name="api_contacts"),
]

ping_urlpatterns = [
    path("ping/<str:token>", views.device_ping, name="device_ping"),
    path("ping/<str:token>/<str:signal>", views.device_ping, name="device_signal"),
]
