from django.urls import path

from outreach import views, views_answers, views_board, views_policies, views_reach, views_safety, views_voice

app_name = "outreach"

urlpatterns = [
    path("", views.board, name="board"),
    path("events/", views.events_after, name="events"),
    path("concerns/<int:pk>/", views.concern_detail, name="concern"),
    path("concerns/<int:pk>/acknowledge/", views.acknowledge, name="acknowledge"),
    path("concerns/<int:pk>/close/", views.close, name="close"),
    path("residents/<int:resident_id>/raise/", views.raise_concern, name="raise"),
    path("ack/<str:token>/", views.ack_link, name="ack_link"),
    *views_policies.urlpatterns,
    *views_safety.urlpatterns,
    *views_answers.urlpatterns,
    *views_voice.urlpatterns,
    *views_reach.urlpatterns,
    *views_board.urlpatterns,
]
