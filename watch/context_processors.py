"""What every page of a tenant shows, whatever app renders it."""
from watch.models import DisasterSharing


def disaster_sharing(request) -> dict:
    """While disaster sharing is on, every signed-in page of the tenant says so (a banner)."""
    tenant = getattr(request, "tenant", None)
    if tenant is None or tenant.schema_name == "public" or not request.user.is_authenticated:
        return {}
    return {"disaster_sharing": DisasterSharing.objects.filter(ended_at=None).select_related("started_by").first()}
