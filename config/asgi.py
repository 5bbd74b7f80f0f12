"""ASGI entry point: HTTP to Django, websockets through tenant and session resolution."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from notifications.routing import websocket_urlpatterns  # noqa: E402
from tenants.websocket import TenantWebsocketMiddleware  # noqa: E402
from watch.fastping import FastPing  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Device heartbeats are answered at the edge; everything else goes to Django.
        "http": FastPing(django_asgi_app),
        "websocket": TenantWebsocketMiddleware(URLRouter(websocket_urlpatterns)),
    }
)
