"""Isolation proven route by route.

Every URL pattern of both URL confs, every operation of the OpenAPI schema and every
websocket route is tried as each persona who must get nothing of tenant A's resident:
nobody signed in; tenant B's administrator, with the session cookie and API token of B
sent to A's host, and on B's own host with A's ids; and A's volunteer, association
officer and municipal staff member who look after someone else. Parameters are filled
with the real ids of A's objects.

EXPECTED is the one table of answers. A route, method or persona it does not decide
fails the test, naming it, so every route added later must be decided here.

Routes whose parameter is a credential (a device's ping token, an acknowledgement link,
an invitation, a password-reset link) are not guarded by who is signed in: holding the
token is the permission. There the question is whether A's real token works on B's
host (it must not), and a token that is not one of A's gets the same answer on A's
host as a missing object.
"""
import json
import secrets
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from tenants.accounts.models import Invitation, User, hash_token
from tenants.context import tenant_scope
from tests.conftest import HOST_A, HOST_B, PASSWORD, PUBLIC_HOST, TenantClient, make_user, websocket
from tests.watch.conftest import areas_a, attach, hanako  # noqa: F401 - shared fixtures

ANON, B_ON_A, B_ON_B = "anonymous", "b_on_a", "b_on_b"
VOLUNTEER, OFFICER, STAFF = "volunteer", "officer", "staff"
PERSONAS = (ANON, B_ON_A, B_ON_B, VOLUNTEER, OFFICER, STAFF)
USERNAMES = {B_ON_A: "outsider-b", B_ON_B: "outsider-b", VOLUNTEER: "volunteer-elsewhere",
             OFFICER: "officer-elsewhere", STAFF: "staff-elsewhere"}

LOGIN = "redirect to sign-in"  # 302 to /accounts/login/ on the same host
REFUSED = "refused"  # websocket: not accepted (closed 4401)
SILENT = "silent"  # websocket: accepted, and no event about A's resident arrives


def everyone(answer, **personas) -> dict:
    return {**dict.fromkeys(PERSONAS, answer), **personas}


def signed_in(answer, **personas) -> dict:
    """A page behind sign-in: nobody signed in on this host goes to the sign-in page
    (B's cookie on A's host is nobody's)."""
    return everyone(answer, **{ANON: LOGIN, B_ON_A: LOGIN, **personas})


def api(answer, **personas) -> dict:
    """An API operation: no credentials, or B's token on A's host, get 401."""
    return everyone(answer, **{ANON: 401, B_ON_A: 401, **personas})


# The one table: route → method → persona → expected answer (a status, a set of
# statuses, LOGIN, or for websockets REFUSED / SILENT). Tenant routes are named as in
# reverse(); "public/…" are the routes of the public (operator's) host, tried there with
# each persona's cookie; "ws/…" are websocket routes.
EXPECTED: dict[str, dict[str, dict]] = {
    # The volunteer's home is their own list.
    "home": {"GET": signed_in(200, volunteer=302), "POST": signed_in(200, volunteer=302)},
    # Signed in on this host: straight on to the home page.
    "accounts:login": {"GET": everyone(302, anonymous=200, b_on_a=200),
                       "POST": everyone(302, anonymous=200, b_on_a=200),
                       "PUT": everyone(302, anonymous=200, b_on_a=200)},
    "accounts:logout": {"GET": everyone(405), "POST": everyone(302)},
    "accounts:password_change": {"GET": signed_in(200), "POST": signed_in(200), "PUT": signed_in(200)},
    "accounts:password_change_done": {"GET": signed_in(200), "POST": signed_in(405)},
    # Anyone may ask for a link; the answer never tells whether the address is known.
    "accounts:password_reset": {"GET": everyone(200), "POST": everyone(302), "PUT": everyone(400)},
    "accounts:password_reset_done": {"GET": everyone(200), "POST": everyone(405)},
    "accounts:password_reset_confirm": {"GET": everyone(200), "POST": everyone(200), "PUT": everyone(200)},
    "accounts:password_reset_complete": {"GET": everyone(200), "POST": everyone(405)},
    "accounts:users": {"GET": signed_in(403, b_on_b=200), "POST": signed_in(403, b_on_b=400)},
    "accounts:deactivate_user": {"GET": signed_in(405), "POST": signed_in(403, b_on_b=404)},
    "accounts:reactivate_user": {"GET": signed_in(405), "POST": signed_in(403, b_on_b=404)},
    "accounts:revoke_invitation": {"GET": signed_in(405), "POST": signed_in(403, b_on_b=404)},
    "accounts:accept_invitation": {"GET": everyone(404), "POST": everyone(404)},
    "watch:overview": {"GET": signed_in(200), "POST": signed_in(200)},
    "watch:my_residents": {"GET": signed_in(200), "POST": signed_in(200)},
    "watch:my_residents_worker": {"GET": everyone(200), "POST": everyone(405)},
    "watch:resident": {"GET": signed_in(404), "POST": signed_in(404)},
    "watch:log_contact": {"GET": signed_in(405), "POST": signed_in(404)},
    "watch:change_team": {"GET": signed_in(405), "POST": signed_in(404)},
    "watch:record_consent": {"GET": signed_in(405), "POST": signed_in(404)},
    "watch:set_status": {"GET": signed_in(405), "POST": signed_in(404)},
    # Only those who oversee the whole tenant; B's administrator at home is asked to confirm.
    "watch:disaster_sharing": {"GET": signed_in(405), "POST": signed_in(403, b_on_b=400)},
    "watch:import_residents": {"GET": signed_in(403, b_on_b=200, staff=200),
                               "POST": signed_in(403, b_on_b=400, staff=400)},
    # An uploaded file is its uploader's alone: others who may import get 404 like a missing one.
    "watch:import_job": {"GET": signed_in(403, b_on_b=404, staff=404), "POST": signed_in(403, b_on_b=404, staff=404)},
    "watch:import_mapping": {"GET": signed_in(403, b_on_b=404, staff=404),
                             "POST": signed_in(403, b_on_b=404, staff=404)},
    "watch:import_status": {"GET": signed_in(403, b_on_b=404, staff=404), "POST": signed_in(405)},
    "outreach:board": {"GET": signed_in(200), "POST": signed_in(200)},
    "outreach:events": {"GET": signed_in(200), "POST": signed_in(200)},
    "outreach:concern": {"GET": signed_in(404), "POST": signed_in(404)},
    "outreach:acknowledge": {"GET": signed_in(405), "POST": signed_in(404)},
    "outreach:close": {"GET": signed_in(405), "POST": signed_in(404)},
    "outreach:raise": {"GET": signed_in(404), "POST": signed_in(404)},
    # GET only shows a button (link previews must not acknowledge); POST checks the token.
    "outreach:ack_link": {"GET": everyone(200), "POST": everyone(404)},
    "notifications:centre": {"GET": signed_in(200), "POST": signed_in(405)},
    "notifications:mark_read": {"GET": signed_in(405), "POST": signed_in(404)},
    "notifications:mark_all_read": {"GET": signed_in(405), "POST": signed_in(302)},
    "notifications:unread_count": {"GET": signed_in(200), "POST": signed_in(405)},
    "notifications:preferences": {"GET": signed_in(200), "POST": signed_in(302)},
    "notifications:webpush_subscription": {"GET": signed_in(405), "POST": signed_in(200)},
    "notifications:service_worker": {"GET": everyone(200), "POST": everyone(405)},
    "notifications:failed": {"GET": signed_in(403, b_on_b=200, staff=200), "POST": signed_in(405)},
    # Webhooks: unsigned requests are refused whoever sends them.
    "notifications:line_webhook": {"GET": everyone(405), "POST": everyone(400)},
    "notifications:sms_webhook": {"GET": everyone(405), "POST": everyone(403)},
    "notifications:providers": {"GET": signed_in(403, b_on_b=200), "POST": signed_in(403, b_on_b=302)},
    "api:api_token": {"GET": everyone(405), "POST": everyone(200, anonymous=400, b_on_a=400)},
    "api:api_areas": {"GET": api(200), "POST": api(405)},
    # Asked with ?area=<A's 大住>: an area that is not one's own is a 404, like a missing one.
    "api:api_residents": {"GET": api(404), "POST": api(405)},
    "api:api_resident": {"GET": api(404), "POST": api(405)},
    "api:api_resident_contacts": {"GET": api(404), "POST": api(405)},
    "api:api_device_register": {"GET": api(405), "POST": api(404)},
    "api:api_device_revoke": {"GET": api(405), "POST": api(404)},
    "api:api_contacts": {"GET": api(405), "POST": api(404)},
    # The schema is public, but a token that is not one of A's is refused even here.
    "api_schema": {"GET": everyone(200, b_on_a=401), "POST": everyone(405, b_on_a=401)},
    "device_ping": {"GET": everyone(404), "POST": everyone(404)},
    # A signal needs POST (a link preview's GET must not raise a concern).
    "device_signal": {"GET": everyone(405), "POST": everyone(404)},
    "set_language": {"GET": everyone(302), "POST": everyone(302)},
    # The operator's host: nobody of a tenant is signed in there.
    "public/console": {"GET": everyone(LOGIN), "POST": everyone(LOGIN)},
    "public/deactivate_tenant": {"GET": everyone(LOGIN), "POST": everyone(LOGIN)},
    "public/reactivate_tenant": {"GET": everyone(LOGIN), "POST": everyone(LOGIN)},
    "public/accounts:login": {"GET": everyone(200), "POST": everyone(200), "PUT": everyone(200)},
    "public/accounts:logout": {"GET": everyone(405), "POST": everyone(302)},
    "public/accounts:password_change": {"GET": everyone(LOGIN), "POST": everyone(LOGIN), "PUT": everyone(LOGIN)},
    "public/accounts:password_change_done": {"GET": everyone(LOGIN), "POST": everyone(LOGIN)},
    "public/set_language": {"GET": everyone(302), "POST": everyone(302)},
    "ws/ws/events/": {"WS": everyone(SILENT, anonymous=REFUSED, b_on_a=REFUSED)},
    # -- issue 10: people and areas (H1) --
    # Anyone signed in sees the areas they may look at; only those who oversee the whole
    # tenant change them (B's administrator names a parent that is not B's: 404).
    "watch:areas": {"GET": signed_in(200), "POST": signed_in(403, b_on_b=404)},
    "watch:area": {"GET": signed_in(403, b_on_b=404), "POST": signed_in(403, b_on_b=404)},
    "watch:area_delete": {"GET": signed_in(403, b_on_b=404), "POST": signed_in(403, b_on_b=404)},
    "watch:person": {"GET": signed_in(403, b_on_b=404), "POST": signed_in(405)},
    "watch:person_role": {"GET": signed_in(405), "POST": signed_in(403, b_on_b=404)},
    "watch:person_areas": {"GET": signed_in(405), "POST": signed_in(403, b_on_b=404)},
    # -- issue 10: residents (H2) --
    # Adding: only those who manage residents; an area id they do not look after is 404 like a missing one.
    "watch:add_resident": {"GET": signed_in(403, b_on_b=200, staff=200), "POST": signed_in(403, b_on_b=404, staff=404)},
    "watch:edit_resident": {"GET": signed_in(404), "POST": signed_in(404)},
    "watch:move_resident": {"GET": signed_in(404), "POST": signed_in(404)},
    "watch:pause_resident": {"GET": signed_in(404), "POST": signed_in(404)},
    "watch:end_resident": {"GET": signed_in(404), "POST": signed_in(404)},
    "watch:resident_history": {"GET": signed_in(404), "POST": signed_in(404)},
    "watch:add_rhythm": {"GET": signed_in(404), "POST": signed_in(404)},
    "watch:edit_rhythm": {"GET": signed_in(404), "POST": signed_in(404)},
    "watch:remove_rhythm": {"GET": signed_in(405), "POST": signed_in(404)},
    "watch:add_emergency_contact": {"GET": signed_in(404), "POST": signed_in(404)},
    "watch:edit_emergency_contact": {"GET": signed_in(404), "POST": signed_in(404)},
    "watch:remove_emergency_contact": {"GET": signed_in(405), "POST": signed_in(404)},
    "watch:register_device": {"GET": signed_in(404), "POST": signed_in(404)},
    "watch:reissue_device": {"GET": signed_in(404), "POST": signed_in(404)},
    "watch:revoke_device": {"GET": signed_in(404), "POST": signed_in(404)},
    # -- issue 10: search (H3) --
    # -- issue 10: policies and rota (H4) --
    # Read by municipal staff (staff elsewhere too), changed only by those who oversee the whole tenant.
    "outreach:policies": {"GET": signed_in(403, b_on_b=200, staff=200), "POST": signed_in(405)},
    "outreach:policy_new": {"GET": signed_in(403, b_on_b=200), "POST": signed_in(403, b_on_b=404)},
    "outreach:policy_edit": {"GET": signed_in(403, b_on_b=404), "POST": signed_in(403, b_on_b=404)},
    "outreach:rota": {"GET": signed_in(403, b_on_b=200, staff=200), "POST": signed_in(403, b_on_b=404)},
    "outreach:rota_copy": {"GET": signed_in(405), "POST": signed_in(403, b_on_b=302)},
    "outreach:rota_remove": {"GET": signed_in(403, b_on_b=404), "POST": signed_in(403, b_on_b=404)},
    # -- issue 10: visits (H5) --
    # Planning is for staff and case workers; others' visits are 404 like missing ones. The PDF
    # sheet of those who plan asks first whose sheet it is (a redirect to the HTML sheet).
    "watch:visits": {"GET": signed_in(403, b_on_b=200, staff=200), "POST": signed_in(403, b_on_b=404, staff=404)},
    "watch:visit_week": {"GET": signed_in(200), "POST": signed_in(405)},
    "watch:visit_reassign": {"GET": signed_in(404), "POST": signed_in(404)},
    "watch:visit_cancel": {"GET": signed_in(404), "POST": signed_in(404)},
    "watch:visit_sheet": {"GET": signed_in(200), "POST": signed_in(405)},
    "watch:visit_sheet_pdf": {"GET": signed_in(200, b_on_b=302, staff=302), "POST": signed_in(405)},
    "watch:visit_outcomes": {"GET": signed_in(200), "POST": signed_in(404)},
    # -- issue 10: home and pages (H6/H7) --
    # The import's CSV template (headers and a made-up example): for those who may import.
    "watch:import_template": {"GET": signed_in(403, b_on_b=200, staff=200), "POST": signed_in(405)},
    # -- issue 11: safety checks --
    # Only staff and administrators; staff elsewhere see A's check (and in it none of A's
    # residents of 大住) but may not start, close or cancel it; B's ids are 404 at home.
    "outreach:safety_checks": {"GET": signed_in(403, b_on_b=200, staff=200), "POST": signed_in(405)},
    # An area that is not one's own is refused with a message, like any bad field.
    "outreach:safety_new": {"GET": signed_in(403, b_on_b=200, staff=200),
                            "POST": signed_in(403, b_on_b=400, staff=400)},
    **{f"outreach:{name}": {"GET": signed_in(403, b_on_b=404, staff=200), "POST": signed_in(405)} for name in (
        "safety_check", "safety_progress", "safety_follow_up", "safety_report", "safety_export_csv",
        "safety_export_xlsx")},
    "outreach:safety_start": {"GET": signed_in(403, b_on_b=404, staff=200), "POST": signed_in(403, b_on_b=404)},
    "outreach:safety_close": {"GET": signed_in(405), "POST": signed_in(403, b_on_b=404)},
    "outreach:safety_cancel": {"GET": signed_in(405), "POST": signed_in(403, b_on_b=404)},
    # -- issue 11: answers, voice, reach, notices --
    # Recording an answer after a visit or call: only those who see the resident (none of these).
    "outreach:record_answer": {"GET": signed_in(404), "POST": signed_in(404)},
    # Residents' pages take a token, never a session: a made-up token on A's host and A's
    # real one on B's host are alike unknown.
    "residents:answer": {"GET": everyone(404), "POST": everyone(404)},
    # Twilio's signature is checked before anything else.
    "residents:voice": {"GET": everyone(403), "POST": everyone(403)},
    "residents:voice_answer": {"GET": everyone(405), "POST": everyone(403)},
    # The resident is looked up (404) before the role is asked.
    "outreach:reach": {"GET": signed_in(404), "POST": signed_in(404)},
    **{f"outreach:{name}": {"GET": signed_in(405), "POST": signed_in(404)} for name in (
        "reach_checkin", "line_code", "line_unlink")},
    # Without LINE's link token the page has nothing to link.
    "residents:line_link": {"GET": everyone(400), "POST": everyone(400)},
    # The board: volunteers are refused before anything is looked up; an empty post names no area.
    "outreach:notices": {"GET": signed_in(403, b_on_b=200, officer=200, staff=200), "POST": signed_in(405)},
    "outreach:notice_new": {"GET": signed_in(403, b_on_b=200, officer=200, staff=200),
                            "POST": signed_in(403, b_on_b=400, officer=400, staff=400)},
    **{f"outreach:{name}": {"GET": signed_in(403, b_on_b=404, officer=404, staff=404), "POST": signed_in(405)}
       for name in ("notice", "notice_print", "notice_attachment")},
    "outreach:notice_reply_slip": {"GET": signed_in(405), "POST": signed_in(403, b_on_b=404, officer=404, staff=404)},
    "residents:notice": {"GET": everyone(404), "POST": everyone(404)},
    "residents:notice_attachment": {"GET": everyone(404), "POST": everyone(405)},
}

# Which of A's objects fills each parameter of a route (names of `a`, built below).
ROUTE_ARGS: dict[str, dict[str, str]] = {
    "accounts:password_reset_confirm": {"uidb64": "reset_uid", "token": "reset_token"},
    "accounts:deactivate_user": {"user_id": "user"},
    "accounts:reactivate_user": {"user_id": "user"},
    "accounts:revoke_invitation": {"invitation_id": "invitation"},
    "accounts:accept_invitation": {"token": "invitation_token"},
    "watch:resident": {"pk": "resident"},
    "watch:log_contact": {"pk": "resident"},
    "watch:change_team": {"pk": "resident"},
    "watch:record_consent": {"pk": "resident"},
    "watch:set_status": {"pk": "resident"},
    "watch:import_job": {"pk": "import_job"},
    "watch:import_mapping": {"pk": "import_job"},
    "watch:import_status": {"pk": "import_job"},
    "outreach:concern": {"pk": "concern"},
    "outreach:acknowledge": {"pk": "concern"},
    "outreach:close": {"pk": "concern"},
    "outreach:raise": {"resident_id": "resident"},
    "outreach:ack_link": {"token": "ack_token"},
    "notifications:mark_read": {"pk": "notification"},
    "api:api_resident": {"pk": "resident"},
    "api:api_resident_contacts": {"pk": "resident"},
    "api:api_device_register": {"pk": "resident"},
    "api:api_device_revoke": {"pk": "device"},
    "device_ping": {"token": "device_token"},
    "device_signal": {"token": "device_token", "signal": "signal"},
    "public/deactivate_tenant": {"tenant_id": "tenant"},
    "public/reactivate_tenant": {"tenant_id": "tenant"},
    # -- issue 10: people and areas (H1) --
    "watch:area": {"pk": "empty_area"},
    "watch:area_delete": {"pk": "empty_area"},
    "watch:person": {"user_id": "user"},
    "watch:person_role": {"user_id": "user"},
    "watch:person_areas": {"user_id": "user"},
    # -- issue 10: residents (H2) --
    **{f"watch:{name}": {"pk": "resident"} for name in (
        "edit_resident", "move_resident", "pause_resident", "end_resident", "resident_history", "add_rhythm",
        "add_emergency_contact", "register_device")},
    "watch:edit_rhythm": {"pk": "resident", "rhythm_id": "rhythm"},
    "watch:remove_rhythm": {"pk": "resident", "rhythm_id": "rhythm"},
    "watch:edit_emergency_contact": {"pk": "resident", "contact_id": "emergency_contact"},
    "watch:remove_emergency_contact": {"pk": "resident", "contact_id": "emergency_contact"},
    "watch:reissue_device": {"pk": "resident", "device_id": "device"},
    "watch:revoke_device": {"pk": "resident", "device_id": "device"},
    # -- issue 10: search (H3) --
    # -- issue 10: policies and rota (H4) --
    "outreach:policy_edit": {"pk": "policy"},
    "outreach:rota_remove": {"pk": "shift"},
    # -- issue 10: visits (H5) --
    "watch:visit_reassign": {"pk": "visit"},
    "watch:visit_cancel": {"pk": "visit"},
    # -- issue 10: home and pages (H6/H7) --
    # -- issue 11: safety checks --
    **{f"outreach:{name}": {"pk": "safety_check"} for name in (
        "safety_check", "safety_progress", "safety_start", "safety_close", "safety_cancel", "safety_follow_up",
        "safety_report", "safety_export_csv", "safety_export_xlsx")},
    # -- issue 11: answers, voice, reach, notices --
    "outreach:record_answer": {"pk": "ask"},
    "residents:answer": {"token": "answer_token"},
    "residents:voice": {"token": "answer_token"},
    "residents:voice_answer": {"token": "answer_token"},
    **{f"outreach:{name}": {"resident_id": "resident"} for name in ("reach", "reach_checkin", "line_code",
                                                                     "line_unlink")},
    **{f"outreach:{name}": {"pk": "notice"} for name in ("notice", "notice_print")},
    "outreach:notice_attachment": {"pk": "notice", "attachment_id": "notice_attachment"},
    "outreach:notice_reply_slip": {"pk": "notice", "receipt_id": "notice_receipt"},
    "residents:notice": {"token": "notice_token"},
    "residents:notice_attachment": {"token": "notice_token", "attachment_id": "notice_attachment"},
}
CREDENTIALS = {"reset_token", "invitation_token", "ack_token", "device_token", "answer_token", "notice_token"}

# Valid input, so that scope is the only reason to refuse (a persona's own credentials
# for the token endpoint: B's do not work on A's host).
BODIES = {
    "accounts:password_reset": lambda a, persona: {"email": a.user.email},
    "watch:log_contact": lambda a, persona: {"channel": "phone", "outcome": "fine", "note": "元気"},
    "watch:change_team": lambda a, persona: {"user": a.user.pk, "action": "remove"},
    "watch:record_consent": lambda a, persona: {"status": "withdrawn"},
    "watch:set_status": lambda a, persona: {"status": "paused", "reason": "入院"},
    "watch:disaster_sharing": lambda a, persona: {"reason": "訓練"},
    "outreach:close": lambda a, persona: {"state": "resolved"},
    "outreach:raise": lambda a, persona: {"cause": "manual", "note": "気になる"},
    "notifications:preferences": lambda a, persona: {"channels": ["email"]},
    "api:api_token": lambda a, persona: (
        {"username": USERNAMES[persona], "password": PASSWORD} if persona in USERNAMES else {}),
    "api:api_contacts": lambda a, persona: {"resident": a.resident.pk, "channel": "phone", "outcome": "fine"},
    "api:api_device_register": lambda a, persona: {"kind": "button", "name": "玄関", "interval_hours": 24},
    # -- issue 10: people and areas (H1) --
    "watch:areas": lambda a, persona: {"name": "4班", "kind": "block", "parent": a.areas["assoc"].pk},
    "watch:area": lambda a, persona: {"name": "空き班", "kind": "block", "parent": a.areas["osumi"].pk},
    "watch:area_delete": lambda a, persona: {"confirm": "yes"},
    "watch:person_role": lambda a, persona: {"role": "case_worker"},
    "watch:person_areas": lambda a, persona: {"action": "attach", "area": a.areas["kodo"].pk},
    "accounts:deactivate_user": lambda a, persona: {"confirm": "yes"},
    "public/deactivate_tenant": lambda a, persona: {"confirm": "yes"},
    # -- issue 10: residents (H2) --
    "watch:add_resident": lambda a, persona: {"area": a.areas["osumi"].pk, "name": "新しい 対象者"},
    "watch:edit_resident": lambda a, persona: {"name": "山田 花子", "gender": "female", "household": "living_alone",
                                               "risk": "medium"},
    "watch:move_resident": lambda a, persona: {"area": a.areas["kodo"].pk},
    "watch:pause_resident": lambda a, persona: {"reason": "入院"},
    "watch:end_resident": lambda a, persona: {"reason": "moved", "confirm": "on"},
    **{f"watch:{name}": lambda a, persona: {"channel": "", "interval": 3, "interval_unit": "days", "grace": 12,
                                            "grace_unit": "hours"} for name in ("add_rhythm", "edit_rhythm")},
    **{f"watch:{name}": lambda a, persona: {"name": "山田 一郎", "relation": "長男", "phone": "090-1111-2222"}
       for name in ("add_emergency_contact", "edit_emergency_contact")},
    **{f"watch:{name}": lambda a, persona: {"confirm": "on"}
       for name in ("remove_rhythm", "remove_emergency_contact", "revoke_device")},
    "watch:register_device": lambda a, persona: {"kind": "button", "name": "居間", "paper": "a6"},
    "watch:reissue_device": lambda a, persona: {"confirm": "on", "paper": "a6"},
    # -- issue 10: search (H3) --
    # -- issue 10: policies and rota (H4) --
    "outreach:policy_new": lambda a, persona: {"name": "手順", "area": a.areas["block"].pk, "rows": 1,
                                               "step_1_targets": ["area_staff"], "step_1_wait": 10, "repeat_limit": 1},
    "outreach:policy_edit": lambda a, persona: {"name": "手順", "rows": 1, "step_1_targets": ["area_staff"],
                                                "step_1_wait": 10, "repeat_limit": 1, "is_active": 1},
    "outreach:rota": lambda a, persona: {"user": a.user.pk, "day": "2026-12-08", "starts": "09:00", "ends": "17:00"},
    "outreach:rota_remove": lambda a, persona: {"confirm": 1},
    # -- issue 10: visits (H5) --
    "watch:visits": lambda a, persona: {"resident": a.resident.pk, "visitor": a.visit_visitor, "purpose": "regular",
                                        "starts_on": timezone.localdate().isoformat()},
    "watch:visit_reassign": lambda a, persona: {"visitor": a.visit_visitor},
    "watch:visit_cancel": lambda a, persona: {"confirm": "yes"},
    "watch:visit_outcomes": lambda a, persona: {
        "visit": a.visit.pk, f"outcome-{a.visit.pk}": "fine", f"note-{a.visit.pk}": "",
        f"at-{a.visit.pk}": timezone.localtime().strftime("%Y-%m-%dT00:01")},
    # -- issue 10: home and pages (H6/H7) --
    # -- issue 11: safety checks --
    "outreach:safety_new": lambda a, persona: {
        "title": "訓練", "kind": "drill", "question": "ご無事ですか？", "scope": "areas",
        "areas": [a.areas["osumi"].pk], "channels": ["line"], "silence_minutes": "10", "deadline": timezone.localtime(
            timezone.now() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")},
    **{f"outreach:{name}": lambda a, persona: {"confirm": "1"} for name in (
        "safety_start", "safety_close", "safety_cancel")},
}
JSON_BODIES = {"notifications:webpush_subscription"}  # posted by scripts as JSON
QUERIES = {"api:api_residents": lambda a: {"area": a.areas["osumi"].pk}}
SESSION_ENDING = {"accounts:logout"}  # signed in afresh for each check


def parameters(pattern) -> set[str]:
    return set(pattern.pattern.regex.groupindex)


def walk(patterns, prefix="", namespace="", params=frozenset()):
    """(key, route, parameters, URLPattern) of every pattern, recursively through include()."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), inner, params | parameters(pattern))
        elif isinstance(pattern, URLPattern):
            route = prefix + str(pattern.pattern)
            key = f"{namespace}{pattern.name}" if pattern.name else route
            yield key, route, params | parameters(pattern), pattern


def url_routes():
    """(key, urlconf, route, parameters, URLPattern) of both URL confs."""
    for urlconf, key_prefix in ((settings.ROOT_URLCONF, ""), (settings.PUBLIC_SCHEMA_URLCONF, "public/")):
        for key, route, params, pattern in walk(get_resolver(urlconf).url_patterns):
            yield key_prefix + key, urlconf, route, params, pattern


def methods_of(pattern: URLPattern) -> list[str]:
    """GET and POST for every route, and whatever else a class-based view defines."""
    view_class = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
    extra = {m.upper() for m in getattr(view_class, "http_method_names", [])
             if m not in ("get", "post", "head", "options", "trace") and hasattr(view_class, m)}
    return ["GET", "POST", *sorted(extra)]


def openapi_operations() -> list[tuple[str, str]]:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator(urlconf=settings.ROOT_URLCONF).get_schema(request=None, public=True)
    return [(method.upper(), path) for path, item in schema["paths"].items() for method in item
            if method in ("get", "post", "put", "patch", "delete")]


def operation_key(path: str) -> str:
    """The route (as keyed in EXPECTED) that serves an OpenAPI path."""
    concrete = path
    while "{" in concrete:
        start = concrete.index("{")
        concrete = concrete[:start] + "1" + concrete[concrete.index("}", start) + 1:]
    match = resolve(concrete, urlconf=settings.ROOT_URLCONF)
    return f"{match.namespace}:{match.url_name}" if match.namespace else match.url_name


def secrets_of(a) -> dict[str, str]:
    """Personal fields of A's objects that no persona here may ever receive."""
    r = a.resident
    values = {
        "resident name": r.name, "furigana": r.furigana, "address": r.address, "phone": r.phone,
        "care level": r.care_level, "health notes": r.health_notes, "visit notes": r.visit_notes,
        "concern note": a.concern.note, "contact note": a.contact_note,
        "notification title": a.notification.title, "notification body": a.notification.body,
        "user's email": a.user.email,
    }
    return {field: value for field, value in values.items() if value}


def leaks(body: bytes, secret_values: dict[str, str]) -> list[str]:
    text = body.decode("utf-8", "replace")
    return [field for field, value in secret_values.items()
            if value in text or json.dumps(value)[1:-1] in text]


def matches(expected, response) -> bool:
    if expected == LOGIN:
        return response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    if isinstance(expected, (set, frozenset, tuple)):
        return response.status_code in expected
    return response.status_code == expected


def shown(response) -> str:
    where = f" → {response['Location']}" if response.has_header("Location") else ""
    return f"{response.status_code}{where}"


@pytest.fixture
def world(tenant_a, tenant_b, areas_a, hanako, admin_a, volunteer_a, outsider_b, settings):  # noqa: F811
    """A's resident (assigned to volunteer-a, in 3班 of 大住) with a concern, a contact,
    a failed notification, a device, an invitation and an acknowledgement link; the
    personas of A are attached to 興戸, elsewhere."""
    from notifications import actions as notify
    from notifications.models import Notification
    from outreach.actions import do_raise_concern
    from outreach.models import AckLink
    from watch import actions as watch_actions
    from watch.models import ImportJob

    # Hundreds of sign-ins, token and reset requests from one address.
    settings.LOGIN_FAILURE_LIMIT = settings.PASSWORD_RESET_LIMIT = settings.PASSWORD_RESET_ADDRESS_LIMIT = 10_000
    with tenant_scope("tenant_a"):
        hanako.address, hanako.phone = "京都府京田辺市大住ヶ丘1-2-3", "0774-65-4321"
        hanako.save(update_fields=["address", "phone"])
        for persona, role in ((VOLUNTEER, User.Role.VOLUNTEER), (OFFICER, User.Role.ASSOCIATION_OFFICER),
                              (STAFF, User.Role.MUNICIPAL_STAFF)):
            user = make_user("tenant_a", USERNAMES[persona], role, email=f"{USERNAMES[persona]}@example.jp")
            if persona != VOLUNTEER:
                attach(user, areas_a["kodo"])
        contact_note = "認知症の進行が心配、娘さんに連絡済み"
        watch_actions.do_log_contact(actor=volunteer_a, resident=hanako, occurred_at=timezone.now(),
                                     channel="visit", outcome="worried", note=contact_note)
        concern, _opened = do_raise_concern(resident=hanako, cause="manual", note="夜間に徘徊、要受診",
                                            actor=admin_a)
        notification, _created = notify.do_notify(
            recipient=volunteer_a, kind="concern.opened", title="山田 花子さんに気がかり",
            body="山田 花子さん（大住ヶ丘1-2-3）に連絡してください", dedupe_key="matrix",
            subject_resident=hanako.pk)
        Notification.objects.filter(pk=notification.pk).update(state=Notification.State.FAILED,
                                                               failed_at=timezone.now())
        device, device_token = watch_actions.do_register_device(actor=admin_a, resident=hanako, kind="button")
        invitation_token, ack_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        invitation = Invitation.objects.create(
            email="new-volunteer@example.jp", display_name="新しい協力員", role=User.Role.VOLUNTEER,
            token_hash=hash_token(invitation_token), invited_by=admin_a,
            expires_at=timezone.now() + timedelta(days=1))
        AckLink.objects.create(concern=concern, user=volunteer_a, token_hash=hash_token(ack_token),
                               expires_at=timezone.now() + timedelta(days=1))
        user = volunteer_a
        while user.pk == outsider_b.pk:  # B's administrator must not find a user of that id at home
            name = f"volunteer-{secrets.token_hex(3)}"
            user = make_user("tenant_a", name, User.Role.VOLUNTEER, email=f"{name}@example.jp")
        reset_uid, reset_token = urlsafe_base64_encode(force_bytes(user.pk)), default_token_generator.make_token(user)
        import_job = ImportJob.objects.create(created_by=admin_a, file_name="名簿.csv", encoding="utf-8",
                                              data=f"番号,氏名\r\n1,{hanako.name}\r\n".encode(), row_count=1)
        extra = {}  # objects of issue 10's routes, each section its own
        # -- issue 10: people and areas (H1) --
        extra["empty_area"] = watch_actions.do_create_area(name="空き班", kind="block", parent=areas_a["kodo"])
        # -- issue 10: residents (H2) --
        extra["rhythm"] = hanako.rhythms.get(device=None)
        extra["emergency_contact"] = watch_actions.do_add_emergency_contact(
            actor=admin_a, resident=hanako, name="山田 一郎", relation="長男", phone="090-1111-2222")
        # -- issue 10: search (H3) --
        # -- issue 10: policies and rota (H4) --
        from outreach.models import DutyShift, EscalationPolicy, EscalationStep

        extra["policy"] = EscalationPolicy.objects.create(name="A市の手順")
        EscalationStep.objects.create(policy=extra["policy"], order=1, target="area_staff")
        extra["shift"] = DutyShift.objects.create(user=admin_a, starts_at=timezone.now(),
                                                  ends_at=timezone.now() + timedelta(hours=8))
        # -- issue 10: visits (H5) --
        from watch.visits import do_plan_visit

        extra["visit"] = do_plan_visit(actor=admin_a, resident=hanako, visitor=volunteer_a,
                                       starts_on=timezone.localdate(), note="玄関の鍵は隣の佐藤さん")
        extra["visit_visitor"] = volunteer_a.pk
        # -- issue 10: home and pages (H6/H7) --
        # -- issue 11: safety checks --
        from outreach.models import Ask
        from outreach.safety import do_create_check, do_start_check

        extra["safety_check"] = do_create_check(
            admin_a, "12月の訓練", "ご無事ですか？", "drill", {"areas": [areas_a["osumi"].pk]}, False, ["line", "sms"],
            [10, 30], timezone.now() + timedelta(hours=2))
        do_start_check(admin_a, extra["safety_check"])
        Ask.objects.filter(safety_check=extra["safety_check"]).update(reached=False)  # on the report's list
        # -- issue 11: answers, voice, reach, notices --
        from outreach import board
        from outreach.answers import answer_token
        from outreach.models import NoticeReceipt

        extra["ask"] = Ask.objects.filter(safety_check=extra["safety_check"]).order_by("pk").first()
        extra["answer_token"] = answer_token(extra["ask"])
        notice = board.do_post_notice(admin_a, title="回覧", body="本文", area_ids=[areas_a["block"].pk],
                                      reply="attendance", uploads=[board.Upload("a.pdf", 9, lambda: b"%PDF-1.4\n")])
        extra["notice"] = notice
        extra["notice_attachment"] = notice.attachments.get()
        extra["notice_receipt"] = receipt = NoticeReceipt.objects.get(notice=notice, resident=hanako)
        extra["notice_token"] = board.receipt_token(receipt)
    return SimpleNamespace(
        tenant=tenant_a.pk, areas=areas_a, resident=hanako, concern=concern, notification=notification,
        device=device, user=user, invitation=invitation, contact_note=contact_note, signal="ok",
        device_token=device_token, invitation_token=invitation_token, ack_token=ack_token,
        reset_uid=reset_uid, reset_token=reset_token, import_job=import_job, **extra,
    )


def value_of(a, name: str, real: bool):
    value = getattr(a, name)
    if name in CREDENTIALS and not real:
        return secrets.token_urlsafe(len(value) * 3 // 4)  # the shape of A's token, not A's token
    return getattr(value, "pk", value)


class Personas:
    """Signed-in clients of each persona, for A's, B's and the public host."""

    def __init__(self):
        self.sessions: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        for persona, username in USERNAMES.items():
            if persona == B_ON_B:  # the same person as B on A: one session, one live token
                continue
            self.sessions[persona] = self.sign_in(persona)
            token = TenantClient(self.home(persona)).post(
                "/api/v1/auth/token/", {"username": username, "password": PASSWORD}, content_type="application/json")
            assert token.status_code == 200, token.content
            self.tokens[persona] = token.json()["token"]
        self.sessions[B_ON_B], self.tokens[B_ON_B] = self.sessions[B_ON_A], self.tokens[B_ON_A]

    @staticmethod
    def home(persona: str) -> str:
        return HOST_B if persona in (B_ON_A, B_ON_B) else HOST_A

    def sign_in(self, persona: str) -> str:
        client = TenantClient(self.home(persona))
        client.sign_in(USERNAMES[persona])
        return client.cookies[settings.SESSION_COOKIE_NAME].value

    def client(self, persona: str, public: bool, *, fresh: bool = False) -> TenantClient:
        """The persona's client: on the public host, on B's host (B on B), or on A's;
        with the persona's session cookie and, for B on A, also B's API token."""
        host = PUBLIC_HOST if public else HOST_B if persona == B_ON_B else HOST_A
        extra = {"HTTP_AUTHORIZATION": f"Token {self.tokens[persona]}"} if persona == B_ON_A else {}
        client = TenantClient(host, **extra)
        if persona != ANON:
            client.cookies[settings.SESSION_COOKIE_NAME] = self.sign_in(persona) if fresh else self.sessions[persona]
        return client

    def took_token(self, key: str, persona: str, response) -> None:
        """A new token ends the person's earlier one: keep the new one."""
        if key == "api:api_token" and response.status_code == 200:
            for same in (B_ON_A, B_ON_B) if persona in (B_ON_A, B_ON_B) else (persona,):
                self.tokens[same] = response.json()["token"]

    def api_client(self, persona: str) -> TenantClient:
        """Token authentication only (the OpenAPI operations' own scheme)."""
        host = HOST_B if persona == B_ON_B else HOST_A
        extra = {"HTTP_AUTHORIZATION": f"Token {self.tokens[persona]}"} if persona != ANON else {}
        return TenantClient(host, **extra)


def send(client, method: str, url: str, key: str, a, persona: str, *, as_json: bool = False):
    body = BODIES.get(key, lambda a, persona: {})(a, persona)
    if method == "GET":
        return client.get(url, QUERIES.get(key, lambda a: {})(a))
    if method == "POST" and not (as_json or key in JSON_BODIES):
        return client.post(url, body)
    return client.generic(method, url, json.dumps(body), content_type="application/json")


def decide(checks: list, problems: list, missing: list, label: str, key: str, method: str, persona: str,
           response, secret_values) -> None:
    expected = EXPECTED.get(key, {}).get(method, {}).get(persona, missing)
    checks.append(label)
    if expected is missing:
        missing.append(f"{label}: no entry in EXPECTED (answered {shown(response)})")
    elif not matches(expected, response):
        problems.append(f"{label}: expected {expected}, got {shown(response)}")
    if found := leaks(response.content, secret_values):
        problems.append(f"{label}: the answer ({response.status_code}) contains {', '.join(found)}")


def test_every_route_operation_and_websocket_answers_each_persona_as_the_table_says(
    world, admin_a, run_async, django_capture_on_commit_callbacks
):
    a = world
    secret_values = secrets_of(a)
    personas = Personas()
    checks, problems, missing = [], [], []

    # The check can fail: someone who may see the resident does get these fields.
    admin = TenantClient(HOST_A)
    admin.sign_in("admin-a")
    shown_to_admin = leaks(admin.get(f"/watch/residents/{a.resident.pk}/").content, secret_values)
    assert {"resident name", "health notes", "address"} <= set(shown_to_admin), shown_to_admin
    assert "notification title" in leaks(admin.get("/notifications/failed/").content, secret_values)

    routes = list(url_routes())
    for key, urlconf, route, params, pattern in routes:
        public = key.startswith("public/")
        args = ROUTE_ARGS.get(key, {})
        if params - set(args):
            missing.append(f"{key} ({route}): no ROUTE_ARGS entry for {sorted(params - set(args))}")
            continue
        for method in methods_of(pattern):
            for persona in PERSONAS:
                kwargs = {name: value_of(a, attr, real=persona == B_ON_B) for name, attr in args.items()}
                url = reverse(key.removeprefix("public/"), urlconf=urlconf, kwargs=kwargs or None)
                client = personas.client(persona, public, fresh=key.removeprefix("public/") in SESSION_ENDING)
                response = send(client, method, url, key, a, persona)
                personas.took_token(key, persona, response)
                decide(checks, problems, missing, f"{key} {method} {url} as {persona}", key, method, persona,
                       response, secret_values)

    operations = openapi_operations()
    api_routes = {key for key, _conf, route, *_ in routes if route.startswith("api/v1/") and key != "api_schema"}
    operation_routes = set()
    for method, path in operations:
        key = operation_key(path)
        operation_routes.add(key)
        args = ROUTE_ARGS.get(key, {})
        for persona in PERSONAS:
            kwargs = {name: value_of(a, attr, real=persona == B_ON_B) for name, attr in args.items()}
            url = reverse(key, urlconf=settings.ROOT_URLCONF, kwargs=kwargs or None)
            response = send(personas.api_client(persona), method, url, key, a, persona, as_json=True)
            personas.took_token(key, persona, response)
            decide(checks, problems, missing, f"operation {method} {path} as {persona}", key, method, persona,
                   response, secret_values)
    undocumented = api_routes - operation_routes
    assert not undocumented, f"API routes missing from the OpenAPI schema: {sorted(undocumented)}"

    ws_routes = websocket_checks(a, personas, run_async, django_capture_on_commit_callbacks, checks, problems,
                                 missing)

    print(f"\nisolation matrix: {len(routes)} routes, {len(operations)} operations, {ws_routes} websocket routes, "
          f"{len(PERSONAS)} personas, {len(checks)} checks")
    stale = set(EXPECTED) - {key for key, *_ in routes} - {f"ws/{r}" for r in ws_route_patterns()}
    assert not (missing or problems), "\n".join(
        ["routes the table does not decide:", *missing, "answers that differ from the table:", *problems])
    assert not stale, f"EXPECTED names routes that no longer exist: {sorted(stale)}"


def ws_route_patterns() -> list[str]:
    from notifications.routing import websocket_urlpatterns

    return [str(route.pattern) for route in websocket_urlpatterns]


def websocket_checks(a, personas, run_async, capture, checks, problems, missing) -> int:
    """Each persona opens each websocket route; an event about A's resident is published
    to its audience; the assigned volunteer gets it, the personas must not."""
    from channels.db import database_sync_to_async

    from notifications.events import send_event_on_commit
    from watch.access import resident_audience
    from watch.actions import resident_event

    assigned = TenantClient(HOST_A)
    assigned.sign_in("volunteer-a")
    assigned_session = assigned.cookies[settings.SESSION_COOKIE_NAME].value

    def publish():
        with capture(execute=True), tenant_scope("tenant_a"):
            send_event_on_commit("tenant_a", resident_event(a.resident, "resident.contact"),
                                 resident_audience(a.resident))

    async def scenario(path):
        import contextlib

        opened = {}
        async with contextlib.AsyncExitStack() as stack:
            for persona in PERSONAS:
                host = HOST_B if persona == B_ON_B else HOST_A
                opened[persona] = await stack.enter_async_context(
                    websocket(host, personas.sessions.get(persona), path=path))
            ok, _code, control = await stack.enter_async_context(websocket(HOST_A, assigned_session, path=path))
            assert ok, "the assigned volunteer's connection was refused"
            await control.receive_json_from()
            for connected, _code, communicator in opened.values():
                if connected:
                    await communicator.receive_json_from()  # hello
            await database_sync_to_async(publish)()
            assert (await control.receive_json_from(timeout=5))["resident"] == a.resident.pk
            answers = {}
            for persona, (connected, code, communicator) in opened.items():
                if not connected:
                    answers[persona] = (REFUSED, code)
                elif await communicator.receive_nothing(timeout=0.2):
                    answers[persona] = (SILENT, None)
                else:
                    answers[persona] = (await communicator.receive_output(), None)
            return answers

    routes = ws_route_patterns()
    for route in routes:
        key = f"ws/{route}"
        for persona, (answer, code) in run_async(scenario, "/" + route).items():
            label = f"websocket {route} as {persona}"
            checks.append(label)
            expected = EXPECTED.get(key, {}).get("WS", {}).get(persona)
            if expected is None:
                missing.append(f"{label}: no entry in EXPECTED (answered {answer})")
            elif expected != answer:
                problems.append(f"{label}: expected {expected}, got {answer} (close code {code})")
    return len(routes)
