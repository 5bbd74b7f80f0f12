from notifications.events import to_area
from tenants.accounts.models import User
from watch.models import Area

# Those who oversee every area: administrators and municipal staff attached to no area.
ALL_AREAS = "areas.all"


def area_audiences(user) -> list[str]:
    """The area groups a user's live connection joins: the areas they oversee."""
    if user.role in (User.Role.VOLUNTEER, User.Role.OPERATOR):
        return []
    area_ids = list(Area.objects.filter(memberships__user=user).values_list("pk", flat=True))
    if user.role == User.Role.ADMIN or (user.role == User.Role.MUNICIPAL_STAFF and not area_ids):
        return [ALL_AREAS]
    return [to_area(pk) for pk in area_ids]
