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
        ASKED_FOR_HELP = "asked_for_help", _("Said they need help (safety check)")

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


# Asking residents: daily check-ins and safety checks (安否確認) -------------------------

class Answer(models.TextChoices):
    """A resident's answer to a question (a daily check-in or a safety check). A safety
    check offers FINE and NEED_HELP; a daily check-in all three."""

    FINE = "fine", _("Fine / safe")  # 元気 / 無事です
    UNWELL = "unwell", _("A little unwell")  # 少し具合が悪い
    NEED_HELP = "need_help", _("Needs help / please call")  # 電話してほしい / 助けが必要


class SafetyCheck(models.Model):
    """One safety check (安否確認), a drill or a real one: whom (scope), what (question),
    until when (deadline), over which channels; its Ask rows are one per resident."""

    class Kind(models.TextChoices):
        DRILL = "drill", _("Drill")
        REAL = "real", _("Real event")

    class State(models.TextChoices):
        DRAFT = "draft", _("Not started")
        # Started by an earthquake report: waits `send_at` (false alarms), staff may cancel.
        HELD = "held", _("Held before sending")
        OPEN = "open", _("Asking")
        CLOSED = "closed", _("Closed")
        CANCELLED = "cancelled", _("Cancelled")

    class Trigger(models.TextChoices):
        MANUAL = "manual", _("Started by staff")
        QUAKE = "quake", _("Earthquake report")

    title = models.CharField(_("title"), max_length=200)
    question = models.TextField(_("question"), max_length=500)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.DRILL)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.DRAFT)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    # {"areas": [area ids] (empty: the whole tenant), "needs_evacuation_support": bool,
    #  "household": a Resident.Household value, "min_age": int}
    scope = models.JSONField(default=dict, blank=True)
    by_household = models.BooleanField(_("one question per household"), default=False)
    channels = models.JSONField(default=list)  # the reach channels this check may use (watch.reach)
    # After a question goes out on a resident's n-th channel, minutes of silence before the
    # next channel (the last value repeats): e.g. [10, 30, 60].
    silence_minutes = models.JSONField(default=list)
    deadline = models.DateTimeField(_("deadline"))
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    started_at = models.DateTimeField(null=True, blank=True)
    # A real check is started only after a second confirmation: who confirmed, when.
    confirmed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    send_at = models.DateTimeField(null=True, blank=True)  # a held check goes out then
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    closed_at = models.DateTimeField(null=True, blank=True)
    # Set once the deadline's follow-up (visit lists, concerns for a real event) ran.
    followed_up_at = models.DateTimeField(null=True, blank=True)
    quake = models.ForeignKey("QuakeReport", null=True, blank=True, on_delete=models.SET_NULL, related_name="checks")

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["deadline"], condition=Q(state="open"), name="safety_check_open")]

    def __str__(self) -> str:
        return self.title


class Ask(models.Model):
    """One question to one resident (a day's check-in or a safety check's request) and
    its answer. The row is the record and the queue: the dispatcher sends it on
    plan[channel_index] when next_attempt_at comes (a lease on delivering_until, a
    batch_key per provider request), and moves to the next channel after the silence."""

    class Kind(models.TextChoices):
        CHECKIN = "checkin", _("Daily check-in")
        SAFETY = "safety", _("Safety check")

    class State(models.TextChoices):
        QUEUED = "queued", _("Waiting to be sent")
        WAITING = "waiting", _("Sent, waiting for an answer")
        ANSWERED = "answered", _("Answered")
        # Every channel was tried and nobody answered.
        SILENT = "silent", _("No answer on any channel")
        # The record has no channel for this resident (a visit is the way).
        NO_CHANNEL = "no_channel", _("No channel to ask on")
        # Another resident of the household is asked (by_household); their answer counts.
        COVERED = "covered", _("Asked through the household")
        # The check closed (or the day ended) before an answer.
        CLOSED = "closed", _("Closed without an answer")

    OPEN_STATES = (State.QUEUED, State.WAITING, State.COVERED)

    kind = models.CharField(max_length=10, choices=Kind.choices)
    safety_check = models.ForeignKey(SafetyCheck, null=True, blank=True, on_delete=models.CASCADE,
                                     related_name="asks")
    day = models.DateField(null=True, blank=True)  # a check-in's day (tenant time)
    resident = models.ForeignKey(Resident, on_delete=models.CASCADE, related_name="asks")
    area = models.ForeignKey(Area, on_delete=models.PROTECT, related_name="+")  # when asked: the report's area
    household_key = models.CharField(max_length=300, default="")
    plan = models.JSONField(default=list)  # the channels, fixed when the ask is made
    channel_index = models.PositiveSmallIntegerField(default=0)
    state = models.CharField(max_length=12, choices=State.choices, default=State.QUEUED)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivering_until = models.DateTimeField(null=True, blank=True)
    batch_key = models.UUIDField(null=True, blank=True)
    first_sent_at = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    reached = models.BooleanField(default=False)  # a provider accepted a question to them
    answer = models.CharField(max_length=10, choices=Answer.choices, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    answered_via = models.CharField(max_length=20, blank=True)  # a watch Channel value, or "staff"
    answered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    late = models.BooleanField(default=False)  # answered after the deadline: kept, marked
    # The contact the answer was logged as (set when the answer is applied).
    contact = models.ForeignKey("watch.ContactLog", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["safety_check", "resident"], condition=Q(safety_check__isnull=False),
                                    name="ask_once_per_check"),
            models.UniqueConstraint(fields=["resident", "day"], condition=Q(kind="checkin"),
                                    name="checkin_once_a_day"),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(state__in=["queued", "waiting"]), name="ask_due"),
            models.Index(fields=["safety_check", "area"], name="ask_by_check_area"),
            models.Index(fields=["safety_check", "household_key"], name="ask_household"),
            models.Index(fields=["resident", "state"], name="ask_open_by_resident"),
            # Answers recorded but not yet logged as contacts (outreach.answers applies them).
            models.Index(fields=["answered_at"], condition=Q(contact__isnull=True, state="answered"),
                         name="ask_unapplied"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.safety_check_id or self.day} → {self.resident_id}: {self.state}"


class AskAttempt(models.Model):
    """One question handed to a provider for one ask: the log that says who was reached
    on which channel (a multicast is one provider request for many asks: same batch_key)."""

    ask = models.ForeignKey(Ask, on_delete=models.CASCADE, related_name="attempts")
    channel = models.CharField(max_length=20)
    batch_key = models.UUIDField()
    at = models.DateTimeField()
    ok = models.BooleanField(default=False)
    provider_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["ask", "channel"], name="ask_attempt_by_ask")]

    def __str__(self) -> str:
        return f"{self.ask_id} {self.channel} {'ok' if self.ok else 'failed'}"


class DailyCheckin(models.Model):
    """A resident agreed to be asked every day at `at` (tenant time) 「おはようございます。
    お元気ですか？」; with no answer after `wait_minutes` the next channel is tried."""

    resident = models.OneToOneField(Resident, on_delete=models.CASCADE, related_name="daily_checkin")
    at = models.TimeField(_("time of the question"))
    wait_minutes = models.PositiveSmallIntegerField(_("minutes to wait before the next channel"), default=60)
    active = models.BooleanField(default=True)
    agreed_on = models.DateField(_("agreed on"), null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["at"], condition=Q(active=True), name="checkin_due")]

    def __str__(self) -> str:
        return f"{self.resident_id} at {self.at:%H:%M}"


class QuakeSettings(models.Model):
    """Whether an earthquake report starts a safety check for this tenant (pk 1)."""

    enabled = models.BooleanField(_("start a safety check on an earthquake report"), default=False)
    # JMA seismic intensity as written: "3", "4", "5-", "5+", "6-", "6+", "7".
    min_intensity = models.CharField(_("from intensity"), max_length=2, default="5-")
    regions = models.JSONField(default=list, blank=True)  # names of the tenant's regions as reports write them
    hold_minutes = models.PositiveSmallIntegerField(_("hold before sending (minutes)"), default=3)
    deadline_hours = models.PositiveSmallIntegerField(_("answer within (hours)"), default=6)
    channels = models.JSONField(default=list, blank=True)
    question = models.TextField(_("question"), max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return "quake settings"


class QuakeReport(models.Model):
    """An earthquake report received for this tenant; a second one for the same region
    within six hours of a check is an aftershock: staff decide, nothing is sent."""

    event_id = models.CharField(max_length=100, unique=True)
    occurred_at = models.DateTimeField()
    region = models.CharField(max_length=100)
    intensity = models.CharField(max_length=2)
    received_at = models.DateTimeField(auto_now_add=True)
    aftershock_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-occurred_at"]

    def __str__(self) -> str:
        return f"{self.region} {self.intensity} {self.occurred_at:%Y-%m-%d %H:%M}"


# The electronic circular board (電子回覧板) ----------------------------------------------

class Notice(models.Model):
    """A notice posted to areas by an officer or staff; households read it on the web,
    by LINE, or on paper; each household's receipt says whether and when."""

    class Reply(models.TextChoices):
        NOTHING = "", _("Nothing")
        ATTENDANCE = "attendance", _("Attendance")
        VOTE = "vote", _("A simple vote")

    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("text"), max_length=10_000)
    # Other languages, as the author wrote them: {"en": {"title": ..., "body": ...}}.
    translations = models.JSONField(default=dict, blank=True)
    areas = models.ManyToManyField(Area, related_name="notices", verbose_name=_("areas"))
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    reply = models.CharField(_("ask households for"), max_length=12, choices=Reply.choices, blank=True)
    options = models.JSONField(default=list, blank=True)  # a vote's choices
    answer_by = models.DateField(_("answer by"), null=True, blank=True)

    class Meta:
        ordering = ["-published_at", "-created_at", "-pk"]

    def __str__(self) -> str:
        return self.title


class NoticeAttachment(models.Model):
    notice = models.ForeignKey(Notice, on_delete=models.CASCADE, related_name="attachments")
    name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    data = models.BinaryField()
    size = models.PositiveIntegerField()

    def __str__(self) -> str:
        return self.name


class NoticeReceipt(models.Model):
    """One household's copy of a notice: how it was sent, whether it was read, its answer."""

    notice = models.ForeignKey(Notice, on_delete=models.CASCADE, related_name="receipts")
    resident = models.ForeignKey(Resident, on_delete=models.CASCADE, related_name="notice_receipts")  # the household's
    area = models.ForeignKey(Area, on_delete=models.PROTECT, related_name="+")
    household_key = models.CharField(max_length=300, default="")
    # Where and in which language it went, fixed when published: the household's first
    # linked LINE account, else its first email ("" for paper), and the notice's language
    # for it (outreach.board).
    line_user_id = models.CharField(max_length=64, blank=True)
    email = models.EmailField(blank=True)
    language = models.CharField(max_length=10, default="ja")
    sent_via = models.CharField(max_length=20, blank=True)  # line / email / paper / web
    sent_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    read_via = models.CharField(max_length=20, blank=True)
    response = models.CharField(max_length=100, blank=True)  # attendance yes/no, or the vote's choice
    responded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [models.UniqueConstraint(fields=["notice", "resident"], name="notice_receipt_once")]
        indexes = [models.Index(fields=["notice", "area"], name="notice_receipt_by_area")]

    def __str__(self) -> str:
        return f"{self.notice_id} → {self.resident_id}"
