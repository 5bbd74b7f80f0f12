"""Safety checks started by an earthquake report.

A report (event id, region, JMA intensity) for one of the tenant's regions
(QuakeSettings.regions) at or above its chosen intensity makes a real safety check of the
whole tenant, HELD for `hold_minutes` (false alarms are withdrawn within minutes), and
tells staff at once; staff may call it off during the hold (`do_cancel_held_check`); the
asking sweep starts it when `send_at` comes (`do_start_due_held_checks`). A second report
for the same region within six hours of a report that made a check is an aftershock:
it is recorded and staff are told, and nothing is made or sent on its own. The same
event id twice records nothing new.
"""
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from notifications.actions import do_notify
from outreach.models import QuakeReport, QuakeSettings, SafetyCheck
from tenants.accounts.models import STAFF_ROLES, User
from tenants.wakeups import do_lower_wakeup
from watch.models import Resident
from watch.reach import DEFAULT_ORDER

logger = logging.getLogger(__name__)

# JMA seismic intensity, in order (as reports write it).
JMA_SCALE = ["1", "2", "3", "4", "5-", "5+", "6-", "6+", "7"]
AFTERSHOCK_WINDOW = timedelta(hours=6)
QUAKE_SILENCE = [10, 30, 60]


def check_intensity(value: str) -> str:
    """The intensity as JMA writes it ("5弱" → "5-"), or ValidationError."""
    text = (value or "").strip().translate(str.maketrans("０１２３４５６７８９＋－", "0123456789+-"))
    text = text.replace("弱", "-").replace("強", "+")
    if text not in JMA_SCALE:
        raise ValidationError(_("Not a JMA seismic intensity (1, 2, 3, 4, 5-, 5+, 6-, 6+ or 7): %(value)s")
                              % {"value": value})
    return text


def at_least(intensity: str, minimum: str) -> bool:
    return JMA_SCALE.index(intensity) >= JMA_SCALE.index(minimum if minimum in JMA_SCALE else "5-")


@dataclass
class QuakeResult:
    """What a report did in one tenant: "duplicate", "ignored" (not our region, too
    weak, turned off), "aftershock" or "held" (a check was made, waiting to be sent)."""

    outcome: str
    report: QuakeReport | None = None
    check: SafetyCheck | None = None


def do_receive_quake_report(*, event_id: str, region: str, intensity: str,
                            occurred_at: datetime | None = None) -> QuakeResult:
    """Take one earthquake report for the active tenant (see the module's docstring)."""
    intensity = check_intensity(intensity)
    event_id, region = (event_id or "").strip()[:100], (region or "").strip()[:100]
    if not event_id or not region:
        raise ValidationError(_("An earthquake report needs an event id and a region."))
    now = timezone.now()
    occurred_at = occurred_at or now
    if QuakeReport.objects.filter(event_id=event_id).exists():
        return QuakeResult("duplicate")
    config = QuakeSettings.objects.filter(pk=1).first()
    if (config is None or not config.enabled or region not in (config.regions or [])
            or not at_least(intensity, config.min_intensity)):
        return QuakeResult("ignored")
    try:
        with transaction.atomic():
            earlier = (QuakeReport.objects.filter(region=region, aftershock_of__isnull=True, checks__isnull=False,
                                                  occurred_at__gte=occurred_at - AFTERSHOCK_WINDOW,
                                                  occurred_at__lte=occurred_at)
                       .order_by("-occurred_at").first())
            report = QuakeReport.objects.create(event_id=event_id, occurred_at=occurred_at, region=region,
                                                intensity=intensity, aftershock_of=earlier)
            if earlier is not None:
                _tell_staff(report, None)
                logger.info("quake %s in %s: aftershock of %s, nothing sent", event_id, region, earlier.event_id)
                return QuakeResult("aftershock", report)
            check = _held_check(config, report, now)
            _tell_staff(report, check)
    except IntegrityError:  # the same report, received at the same moment by another process
        return QuakeResult("duplicate")
    logger.info("quake %s in %s (%s): safety check %s held until %s", event_id, region, intensity, check.pk,
                check.send_at)
    return QuakeResult("held", report, check)


def _held_check(config: QuakeSettings, report: QuakeReport, now: datetime) -> SafetyCheck:
    from outreach.safety import default_question

    send_at = now + timedelta(minutes=config.hold_minutes)
    with translation.override(settings.LANGUAGE_CODE):
        title = _("Earthquake %(region)s intensity %(intensity)s") % {"region": report.region,
                                                                     "intensity": report.intensity}
    check = SafetyCheck.objects.create(
        title=title[:200], question=config.question or default_question(), kind=SafetyCheck.Kind.REAL,
        state=SafetyCheck.State.HELD, trigger=SafetyCheck.Trigger.QUAKE, scope={}, by_household=False,
        channels=config.channels or list(DEFAULT_ORDER), silence_minutes=list(QUAKE_SILENCE),
        deadline=send_at + timedelta(hours=config.deadline_hours), send_at=send_at, quake=report)
    from outreach.asking import ASKING

    do_lower_wakeup(connection.schema_name, ASKING, send_at)
    return check


def _check_url(check: SafetyCheck | None) -> str:
    if check is None:
        return ""
    try:
        return reverse("outreach:safety_check", args=[check.pk])
    except NoReverseMatch:
        return ""


def _tell_staff(report: QuakeReport, check: SafetyCheck | None) -> None:
    """An urgent notification to every active staff member (ids and place only)."""
    values = {"region": report.region, "intensity": report.intensity}
    for user in User.objects.filter(role__in=STAFF_ROLES, is_active=True).order_by("pk"):
        with translation.override(settings.LANGUAGE_CODE):
            if check is None:
                title = _("Aftershock in %(region)s (intensity %(intensity)s): nothing was sent") % values
                body = _("A safety check for this region is already under way. Decide whether to ask again.")
            else:
                title = _("Earthquake in %(region)s (intensity %(intensity)s): safety check held") % values
                body = _("A real safety check of every resident goes out at %(time)s unless you cancel it.") % {
                    "time": timezone.localtime(check.send_at).strftime("%H:%M")}
        do_notify(recipient=user, kind="outreach.quake", title=title, body=body, url=_check_url(check), urgent=True,
                  dedupe_key=f"quake:{report.pk}")


def do_cancel_held_check(actor, check: SafetyCheck) -> SafetyCheck:
    """Call off a check held after an earthquake report, before it goes out."""
    from outreach.safety import _stop, can_run_checks

    if not can_run_checks(actor):
        raise PermissionDenied
    if check.state != SafetyCheck.State.HELD:
        raise ValidationError(_("This safety check is not held any more: it was sent or ended."))
    return _stop(actor, check, SafetyCheck.State.CANCELLED, (SafetyCheck.State.HELD,))


def do_start_due_held_checks(now: datetime | None = None) -> list[int]:
    """Start every held check whose `send_at` has come: it opens and asks every active
    resident of the tenant (an earthquake check's scope is the whole tenant; nobody's view
    narrows it). Returns the ids started."""
    from outreach.asking import do_create_asks

    now = now or timezone.now()
    started = []
    for check in SafetyCheck.objects.filter(state=SafetyCheck.State.HELD, send_at__lte=now).order_by("send_at"):
        with transaction.atomic():
            if not SafetyCheck.objects.filter(pk=check.pk, state=SafetyCheck.State.HELD).update(
                    state=SafetyCheck.State.OPEN, started_at=now):
                continue  # cancelled or started by someone else meanwhile
            check.refresh_from_db()
            asked = do_create_asks(check, Resident.objects.filter(status=Resident.Status.ACTIVE))
        logger.info("held safety check %s started: %s asked", check.pk, asked)
        started.append(check.pk)
    return started
