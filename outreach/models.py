"""What happens when someone needs more: concerns and their escalation.

A concern is raised by a person, a device ("please call me"), overdue detection or a
drill; one open concern per resident and cause. The escalation policy in force is
copied onto the concern when it opens; the concern's own columns (step, round,
next_step_at, timer) are the escalation's whole state, so the database alone can
resume any escalation whose timer was lost.
"""
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext, gettext_noop, ngettext, pgettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from watch.models import Area, Resident


class Severity(models.TextChoices):
    LOW = "low", _("Low")
    NORMAL = "normal", _("Normal")
    HIGH = "high", _("High")
    URGENT = "urgent", _("Urgent")


class Target(models.TextChoices):
    ASSIGNED_VOLUNTEERS = "assigned_volunteers", _("The resident's volunteers")
    CASE_WORKERS = "case_workers", _("The resident's case workers")
    AREA_STAFF = "area_staff", _("Staff of the resident's area")
    USER = "user", _("A named person")
    ON_DUTY = "on_duty", _("Whoever is on duty")


# The names of the built-in policies, stored untranslated and shown in the reader's language.
DEFAULT_POLICY_NAME = gettext_noop("Default escalation")
URGENT_POLICY_NAME = gettext_noop("Urgent escalation")


def target_labels(step: dict) -> list[str]:
    return [str(Target(target).label) for target in step.get("targets", []) if target in Target.values]


# Who a step could not reach, as in "Step 2: no case worker could be notified".
NOBODY_TO_NOTIFY = {
    Target.ASSIGNED_VOLUNTEERS: pgettext_lazy("nobody to notify", "volunteer"),
    Target.CASE_WORKERS: pgettext_lazy("nobody to notify", "case worker"),
    Target.AREA_STAFF: pgettext_lazy("nobody to notify", "area staff"),
    Target.USER: pgettext_lazy("nobody to notify", "named person"),
    Target.ON_DUTY: pgettext_lazy("nobody to notify", "person on duty"),
}


class EscalationPolicy(models.Model):
    """Chosen by severity and area: the most specific area wins, then an exact severity."""

    name = models.CharField(_("name"), max_length=100)
    severity = models.CharField(_("severity"), max_length=10, choices=Severity.choices, blank=True,
                                help_text=_("Empty: any severity."))
    area = models.ForeignKey(Area, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                             help_text=_("Empty: every area."))
    repeat_limit = models.PositiveSmallIntegerField(_("repeat the steps"), default=1)
    is_active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name


class EscalationStep(models.Model):
    """One target of a policy's step; the rows of one `order` are one step, whose people
    are notified together."""

    policy = models.ForeignKey(EscalationPolicy, on_delete=models.CASCADE, related_name="steps")
    order = models.PositiveSmallIntegerField()
    target = models.CharField(_("notify"), max_length=30, choices=Target.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="+")
    wait_minutes = models.PositiveIntegerField(_("then wait (minutes)"), default=15)

    class Meta:
        ordering = ["order", "pk"]

    def __str__(self) -> str:
        return f"{self.order}: {self.target}"


class DutyShift(models.Model):
    """Who is on duty when (nights, weekends)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="duty_shifts")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()

    class Meta:
        ordering = ["starts_at"]
        indexes = [models.Index(fields=["starts_at", "ends_at"])]

    def __str__(self) -> str:
        return f"{self.user_id} {self.starts_at:%Y-%m-%d %H:%M}–{self.ends_at:%H:%M}"


class Concern(models.Model):
    class Cause(models.TextChoices):
        MANUAL = "manual", _("Raised by a person")
        WORRIED_CONTACT = "worried_contact", _("Worrying contact")
        DEVICE_CALL_REQUEST = "device_call_request", _("“Please call me” pressed")
        OVERDUE = "overdue", _("No contact for too long")
        DRILL_NO_RESPONSE = "drill_no_response", _("No answer in a safety check")
        MISSED_VISIT = "missed_visit", _("A planned visit was not done")

    class State(models.TextChoices):
        OPEN = "open", _("Open")
        ACKNOWLEDGED = "acknowledged", _("Acknowledged")
        RESOLVED = "resolved", _("Resolved")
        DISMISSED = "dismissed", _("Dismissed")

    LIVE_STATES = (State.OPEN, State.ACKNOWLEDGED)

    resident = models.ForeignKey(Resident, on_delete=models.CASCADE, related_name="concerns")
    cause = models.CharField(_("cause"), max_length=30, choices=Cause.choices)
    severity = models.CharField(_("severity"), max_length=10, choices=Severity.choices, default=Severity.HIGH)
    state = models.CharField(_("state"), max_length=15, choices=State.choices, default=State.OPEN)
    note = models.TextField(_("note"), blank=True, max_length=2000)
    opened_at = models.DateTimeField(auto_now_add=True)
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")

    # The escalation: the policy's steps as they were when the concern opened, and where it is.
    policy_name = models.CharField(max_length=100, blank=True)
    steps = models.JSONField(default=list)
    repeat_limit = models.PositiveSmallIntegerField(default=1)
    step_index = models.PositiveSmallIntegerField(default=0)
    round = models.PositiveSmallIntegerField(default=0)
    next_step_at = models.DateTimeField(null=True, blank=True)
    # The run a scheduled task must carry to act; every step changes it, so a stale or
    # duplicated task does nothing.
    timer = models.UUIDField(default=uuid.uuid4)
    # Every step so far reached nobody (the administrators were told): shown on the board.
    reached_nobody = models.BooleanField(default=False)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(fields=["resident", "cause"], condition=Q(state__in=["open", "acknowledged"]),
                                    name="one_live_concern_per_resident_and_cause"),
        ]
        indexes = [models.Index(fields=["next_step_at"], condition=Q(state="open"), name="concern_escalation_due")]

    def __str__(self) -> str:
        return f"{self.resident_id} {self.cause} {self.state}"

    @property
    def policy_label(self) -> str:
        if self.policy_name in (DEFAULT_POLICY_NAME, URGENT_POLICY_NAME):
            return gettext(self.policy_name)
        return self.policy_name

    def step_texts(self) -> list[str]:
        """The copied steps in words, in the reader's language."""
        texts = []
        for step in self.steps:
            labels = target_labels(step)
            values = {"whom": pgettext("list of people", ", ").join(labels), "minutes": step.get("wait_minutes", 0)}
            if len(labels) > 1:
                texts.append(gettext("Notify %(whom)s at once, then wait %(minutes)s min") % values)
            else:
                texts.append(gettext("Notify %(whom)s, then wait %(minutes)s min") % values)
        return texts

    def repeat_text(self) -> str:
        if self.repeat_limit <= 1:
            return ""
        return ngettext("The steps run %(count)d time.", "The steps run %(count)d times.",
                        self.repeat_limit) % {"count": self.repeat_limit}


class ConcernEvent(models.Model):
    """The concern's timeline, and the ids live clients resume from after a reconnect."""

    class Kind(models.TextChoices):
        OPENED = "opened", _("Opened")
        SIGNAL = "signal", _("Another signal")
        NOTIFIED = "notified", _("Notified")
        EXHAUSTED = "exhausted", _("Escalation ran out of steps")
        ACKNOWLEDGED = "acknowledged", _("Acknowledged")
        RESOLVED = "resolved", _("Resolved")
        DISMISSED = "dismissed", _("Dismissed")
        REFUSED = "refused", _("Refused acknowledgement")
        # A reply that did not acknowledge, kept as that person's message.
        MESSAGE = "message", _("Message")
        # A step whose recipients were nobody: passed over at once, with the reason.
        SKIPPED = "skipped", _("Step skipped")
        # No step reached anyone: the tenant's administrators were told instead.
        UNREACHED = "unreached", _("Nobody could be notified")

    concern = models.ForeignKey(Concern, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    note = models.TextField(blank=True, max_length=2000)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.concern_id} {self.kind}"

    def summary(self) -> str:
        """What an escalation entry says, in the reader's language ("" for other kinds)."""
        if self.kind == self.Kind.SKIPPED:
            whom = pgettext("nobody to notify, list", " or ").join(
                str(NOBODY_TO_NOTIFY[target]) for target in self.data.get("targets", []) if target in NOBODY_TO_NOTIFY)
            return gettext("Step %(step)s: no %(whom)s could be notified") % {"step": self.data.get("step"),
                                                                             "whom": whom}
        if self.kind == self.Kind.UNREACHED:
            count = len(self.data.get("recipients", []))
            if not count:
                return gettext("No step reached anyone, and the tenant has no active administrator.")
            return ngettext("No step reached anyone: %(count)d administrator was notified instead.",
                            "No step reached anyone: %(count)d administrators were notified instead.",
                            count) % {"count": count}
        return ""


class AckLink(models.Model):
    """A one-time acknowledgement link for one person and one concern; only its hash is kept."""

    concern = models.ForeignKey(Concern, on_delete=models.CASCADE, related_name="ack_links")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.concern_id} → {self.user_id}"
