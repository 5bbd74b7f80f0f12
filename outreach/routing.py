from django.urls import path

from outreach.consumers import SafetyProgressConsumer

websocket_urlpatterns = [
    path("ws/safety/<int:check_id>/", SafetyProgressConsumer.as_asgi()),
]
