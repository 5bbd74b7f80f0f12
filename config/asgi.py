"""ASGI entry point: HTTP to Django, websockets through tenant and session resolution."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config.http import BodyLimit, SecurityHeaders  # noqa: E402
from notifications.routing import websocket_urlpatterns  # noqa: E402
from tenants.websocket import TenantWebsocketMiddleware  # noqa: E402
from watch.edge import Edge  # noqa: E402

# Device heartbeats and volunteers' check-ins are answered at the edge (watch/edge.py);
# every answer, the edge's and Django's, passes the same guards (config/http.py).
edge = Edge(django_asgi_app)
application = ProtocolTypeRouter(
    {
        "http": SecurityHeaders(BodyLimit(edge)),
        "websocket": TenantWebsocketMiddleware(URLRouter(websocket_urlpatterns)),
    }
)
