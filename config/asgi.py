"""ASGI entry point: HTTP to Django, websockets through tenant and session resolution."""
import os

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)


class DjangoHandler(ASGIHandler):
    """Django's whole request cycle, error pages included, in one call on its sync thread.

    Every view and middleware here is synchronous. Django's async path would run them on
    that thread but render the error page of an exception (a 404 of an unknown URL, a 403)
    on another one (sync_to_async(thread_sensitive=False)), whose database connection has
    no tenant and is never closed: a signed-in person's 404 page, whose menu reads the
    tenant's tables, became a 500. One hop onto the thread also saves the chain's others."""

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


django_asgi_app = DjangoHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config.http import BodyLimit, SecurityHeaders  # noqa: E402
from notifications.routing import websocket_urlpatterns  # noqa: E402
from outreach.edge import AnswerEdge  # noqa: E402
from outreach.routing import websocket_urlpatterns as outreach_websocket_urlpatterns  # noqa: E402
from tenants.websocket import TenantWebsocketMiddleware  # noqa: E402
from watch.edge import Edge  # noqa: E402

# Device heartbeats and volunteers' check-ins are answered at the edge (watch/edge.py);
# every answer, the edge's and Django's, passes the same guards (config/http.py).
edge = Edge(django_asgi_app)
# Residents' answer-link POSTs too (outreach/edge.py), in front of the same edge and its pool.
answer_edge = AnswerEdge(edge)
application = ProtocolTypeRouter(
    {
        "http": SecurityHeaders(BodyLimit(answer_edge)),
        "websocket": TenantWebsocketMiddleware(URLRouter([*websocket_urlpatterns, *outreach_websocket_urlpatterns])),
    }
)
