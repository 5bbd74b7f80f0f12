"""Outreach's links of the main menu, each asked of the rule that guards its pages."""
from outreach.board import can_post_notices
from outreach.safety import can_run_checks


def navigation(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or getattr(getattr(request, "tenant", None), "schema_name",
                                                            "public") == "public":
        return {}
    return {"outreach_nav": {"runs_checks": can_run_checks(user), "posts_notices": can_post_notices(user)}}
