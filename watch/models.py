"""Who is watched over and every sign of life.

Residents (見守り対象者) live in areas (district → residents' association → block);
every contact, from any channel, is a ContactLog row; each resident has one or more
rhythms whose alert time (last contact + interval + grace) drives overdue detection.
"""
import re
import unicodedata
from datetime import timedelta

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Area(models.Model):
    class Kind(models.TextChoices):
        DISTRICT = "district", _("District")
        ASSOCIATION = "association", _("Residents' association")
        BLOCK = "block", _("Block")

    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    # Materialised path of ids, "/3/17/42/": a subtree is one indexed prefix match.
    path = models.CharField(max_length=255, editable=False, db_index=True)
    # The names from the root down, "大住 › 山手東自治会 › 3班": how an area is shown everywhere.
    # Kept in step with `path` by watch.areas.
    full_name = models.CharField(_("area"), max_length=500, editable=False, default="")

    SEPARATOR = " › "

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["parent", "name"], name="area_unique_name_per_parent"),
            models.UniqueConstraint(fields=["name"], condition=Q(parent=None), name="area_unique_root_name"),
        ]

    def __str__(self) -> str:
        return self.full_name or self.name

    @staticmethod
    def name_key(name: str) -> str:
        """How area names are compared (the tree's siblings, an import's columns): ignoring
        width and spacing, so that ３班 is 3班; names are kept as written."""
        return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", name).strip())

    @property
    def ancestor_ids(self) -> list[int]:
        return [int(part) for part in self.path.strip("/").split("/") if part]


class AreaMembership(models.Model):
    """Staff, case workers and association officers attached to an area see its subtree."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="area_memberships")
    area = models.ForeignKey(Area, on_delete=models.CASCADE, related_name="memberships")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "area"], name="area_membership_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} @ {self.area_id}"


class Resident(models.Model):
    class Gender(models.TextChoices):
        FEMALE = "female", _("Female")
        MALE = "male", _("Male")
        OTHER = "other", _("Other")
        UNKNOWN = "unknown", _("Not recorded")

    class Household(models.TextChoices):
        LIVING_ALONE = "living_alone", _("Living alone")
        ELDERLY_ONLY = "elderly_only", _("Elderly-only household")
        ALONE_DAYTIME = "alone_daytime", _("Alone in the daytime")
        SINGLE_PARENT = "single_parent", _("Single-parent household")
        OTHER = "other", _("Other")

    class Risk(models.TextChoices):
        LOW = "low", _("Low")
        MEDIUM = "medium", _("Medium")
        HIGH = "high", _("High")

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        PAUSED = "paused", _("Paused")
        ENDED = "ended", _("Ended")

    class EndReason(models.TextChoices):
        MOVED = "moved", _("Moved away")
        HOSPITAL = "hospital", _("In hospital")
        CARE = "care", _("In a care home")
        DECEASED = "deceased", _("Deceased")
        OTHER = "other", _("Other")

    class Consent(models.TextChoices):
        GIVEN = "given", _("Given")
        REFUSED = "refused", _("Refused")
        NOT_ANSWERED = "not_answered", _("Not answered")
        WITHDRAWN = "withdrawn", _("Withdrawn")

    external_id = models.CharField(_("municipal number"), max_length=40, blank=True)
    name = models.CharField(_("name"), max_length=100)
    furigana = models.CharField(_("furigana"), max_length=100, blank=True)
    gender = models.CharField(_("gender"), max_length=10, choices=Gender.choices, default=Gender.UNKNOWN)
    date_of_birth = models.DateField(_("date of birth"), null=True, blank=True)
    postal_code = models.CharField(_("postal code"), max_length=8, blank=True)
    address = models.CharField(_("address"), max_length=200, blank=True)
    area = models.ForeignKey(Area, on_delete=models.PROTECT, related_name="residents", verbose_name=_("area"))
    phone = models.CharField(_("phone"), max_length=20, blank=True)
    mobile_phone = models.CharField(_("mobile phone"), max_length=20, blank=True)
    # The household's email (the resident's, or a family member's): the circular board
    # sends notices there when no one of the household has LINE (outreach.board).
    email = models.EmailField(_("email"), blank=True)
    household = models.CharField(_("household"), max_length=20, choices=Household.choices,
                                 default=Household.LIVING_ALONE)
    needs_evacuation_support = models.BooleanField(_("needs help to evacuate"), default=False)
    risk = models.CharField(_("risk"), max_length=10, choices=Risk.choices, default=Risk.MEDIUM)
    visit_notes = models.TextField(_("notes for visitors"), blank=True, max_length=2000)

    # Sensitive (要配慮個人情報): never shown to volunteers or association officers.
    care_level = models.CharField(_("care level"), max_length=20, blank=True)
    health_notes = models.TextField(_("health and case notes"), blank=True, max_length=5000)

    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.ACTIVE)
    paused_reason = models.CharField(_("reason for pause"), max_length=200, blank=True)
    paused_until = models.DateField(_("paused until"), null=True, blank=True)
    end_reason = models.CharField(_("reason for ending"), max_length=20, choices=EndReason.choices, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    # Current consent, kept in step with the latest ConsentRecord (for list filters).
    consent = models.CharField(_("consent"), max_length=20, choices=Consent.choices, default=Consent.NOT_ANSWERED)
    consent_share_with_volunteers = models.BooleanField(default=False)
    consent_share_with_association = models.BooleanField(default=False)

    # Kept in step by the contact and overdue actions, for the overview's one query.
    last_contact_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=20, blank=True)
    next_due_at = models.DateTimeField(null=True, blank=True)
    is_overdue = models.BooleanField(default=False)

    # Reaching the resident (watch.reach): a LINE account linked by the account-link flow,
    # the channels to try in order (empty: LINE, SMS, voice, as far as the record has
    # them), and the language of notices and questions.
    line_user_id = models.CharField(_("LINE account"), max_length=64, blank=True, editable=False)
    line_linked_at = models.DateTimeField(null=True, blank=True, editable=False)
    reach_channels = models.JSONField(_("channels, in order"), default=list, blank=True)
    language = models.CharField(_("language"), max_length=10, default="ja")
    # Residents at one address are one household (watch.reach.household_key; kept in step by save()).
    household_key = models.CharField(max_length=300, editable=False, default="", db_index=True)

    # What a search box finds, normalised by watch.search (kept in step by save()).
    search_text = models.TextField(editable=False, default="")
    search_grams = ArrayField(models.CharField(max_length=3), editable=False, default=list)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["furigana", "name"]
        constraints = [
            models.UniqueConstraint(fields=["line_user_id"], condition=~Q(line_user_id=""),
                                    name="resident_unique_line_user"),
            models.UniqueConstraint(fields=["external_id"], condition=~Q(external_id=""),
                                    name="resident_unique_external_id",
                                    violation_error_message=_("Another resident already has this municipal number.")),
        ]
        indexes = [
            models.Index(fields=["area", "-is_overdue", "next_due_at"], name="resident_overview"),
            # pg_trgm does not use its index for 1-2 character Japanese patterns: these grams do.
            GinIndex(fields=["search_grams"], name="resident_search_grams"),
            # The look-alike check when someone is added (same name or kana and date of birth).
            models.Index(fields=["date_of_birth"], name="resident_date_of_birth"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, update_fields=None, **kwargs):
        from watch.reach import HOUSEHOLD_FIELDS, household_key
        from watch.search import SOURCE_FIELDS, resident_search_fields

        if update_fields is None or set(update_fields) & set(SOURCE_FIELDS):
            self.search_text, self.search_grams = resident_search_fields(self)
            if update_fields is not None:
                update_fields = {*update_fields, "search_text", "search_grams"}
        if update_fields is None or set(update_fields) & set(HOUSEHOLD_FIELDS):
            self.household_key = household_key(self)
            if update_fields is not None:
                update_fields = {*update_fields, "household_key"}
        super().save(*args, update_fields=update_fields, **kwargs)

    @property
    def last_outcome_label(self) -> str:
        """The last contact's outcome in the page's language ("" before any contact)."""
        return Outcome(self.last_outcome).label if self.last_outcome in Outcome.values else ""


class EmergencyContact(models.Model):
    resident = models.ForeignKey(Resident, on_delete=models.CASCADE, related_name="emergency_contacts")
    name = models.CharField(_("name"), max_length=100)
    relation = models.CharField(_("relation"), max_length=50, blank=True)
    phone = models.CharField(_("phone"), max_length=20, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.relation})"


class ConsentRecord(models.Model):
    """Each consent given, refused or withdrawn, with who recorded it; the latest is current."""

    resident = models.ForeignKey(Resident, on_delete=models.CASCADE, related_name="consent_records")
    status = models.CharField(_("consent"), max_length=20, choices=Resident.Consent.choices)
    purpose = models.CharField(_("purpose"), max_length=200, default="見守り活動（平常時）")
    share_with_volunteers = models.BooleanField(_("volunteers may see the basic record"), default=False)
    share_with_association = models.BooleanField(_("the residents' association may see the basic record"),
                                                 default=False)
    decided_on = models.DateField(_("date"), null=True, blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)
    note = models.CharField(_("note"), max_length=500, blank=True)

    class Meta:
        ordering = ["-recorded_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.resident_id}: {self.status}"


class DisasterSharing(models.Model):
    """The disaster exception (災害対策基本法): while on, people who need help to evacuate
    are shown to volunteers and officers of their area without consent. Every switch is
    a row: who, when, why."""

    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField(auto_now_add=True)
    reason = models.CharField(_("reason"), max_length=300)
    ended_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="+")
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [models.UniqueConstraint(fields=["ended_at"], condition=Q(ended_at=None),
                                               name="one_disaster_sharing_open")]

    def __str__(self) -> str:
        return self.reason


class Assignment(models.Model):
    """A volunteer or case worker on a resident's team."""

    resident = models.ForeignKey(Resident, on_delete=models.CASCADE, related_name="assignments")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    since = models.DateField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["resident", "user"], name="assignment_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} → {self.resident_id}"


class Channel(models.TextChoices):
    VISIT = "visit", _("Visit")
    PHONE = "phone", _("Phone")
    LINE = "line", _("LINE")
    DEVICE = "device", _("Device")
    SMS = "sms", _("SMS")
    VOICE = "voice", _("Automated call")
    LINK = "link", _("Answer link")
    NOTICE_READ = "notice_read", _("Notice read")
    EVENT = "event", _("Event attendance")
    OTHER = "other", _("Other")


class Outcome(models.TextChoices):
    FINE = "fine", _("Fine")
    WORRIED = "worried", _("Worried")
    NO_ANSWER = "no_answer", _("No answer")
    NOT_HOME = "not_home", _("Not at home")
    IN_HOSPITAL = "in_hospital", _("In hospital")
    ASKED_FOR_CALL = "asked_for_call", _("Asked to be called")
    # The resident's own answer to a safety check: they need help (安否確認「助けが必要」).
    NEEDS_HELP = "needs_help", _("Needs help")
    OTHER = "other", _("Other")


# Outcomes that show the person is alive and reachable: they reset the rhythm.
SIGN_OF_LIFE = {Outcome.FINE, Outcome.WORRIED, Outcome.IN_HOSPITAL, Outcome.ASKED_FOR_CALL, Outcome.NEEDS_HELP,
                Outcome.OTHER}
# Outcomes that ask for attention now (they raise concerns), and of those the urgent ones:
# the resident asked to be called, or said they need help, whoever logged it.
ATTENTION_OUTCOMES = {Outcome.WORRIED, Outcome.ASKED_FOR_CALL, Outcome.NEEDS_HELP}
URGENT_OUTCOMES = {Outcome.ASKED_FOR_CALL, Outcome.NEEDS_HELP}


class Device(models.Model):
    class Kind(models.TextChoices):
        BUTTON = "button", _("Button")
        SPEAKER = "speaker", _("Watch-over speaker")
        MOTION = "motion", _("Motion sensor")

    resident = models.ForeignKey(Resident, on_delete=models.CASCADE, related_name="devices")
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    name = models.CharField(_("name"), max_length=100, blank=True)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_signal_at = models.DateTimeField(null=True, blank=True)
    battery_low = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["resident", "name"], condition=Q(revoked_at=None) & ~Q(name=""),
                                    name="device_unique_name_per_resident"),
        ]

    def __str__(self) -> str:
        return self.name or self.get_kind_display()


class ContactLog(models.Model):
    """One contact with a resident, from any channel; the record every list is built from."""

    resident = models.ForeignKey(Resident, on_delete=models.CASCADE, related_name="contacts")
    occurred_at = models.DateTimeField(_("when"))
    logged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    channel = models.CharField(_("channel"), max_length=20, choices=Channel.choices)
    outcome = models.CharField(_("outcome"), max_length=20, choices=Outcome.choices)
    note = models.TextField(_("note"), blank=True, max_length=2000)
    # Client-generated: a retried submission returns the original entry.
    idempotency_key = models.UUIDField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at", "-pk"]
        indexes = [
            models.Index(fields=["resident", "-occurred_at"], name="contact_timeline"),
            # "Contacts this week" of a whole tenant or district (the home page).
            models.Index(fields=["occurred_at", "resident"], name="contact_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.resident_id} {self.channel} {self.outcome} {self.occurred_at:%Y-%m-%d %H:%M}"


class Rhythm(models.Model):
    """An expected rhythm of contact: "a visit every 7 days", "any contact every 3 days",
    "the device every 24 hours". A contact on the channel (or any, if channel is empty)
    moves alert_at; detection marks the rhythm overdue once alert_at has passed."""

    class State(models.TextChoices):
        OK = "ok", _("On time")
        OVERDUE = "overdue", _("Overdue")
        # The resident's watch-over is paused or ended: the rhythm is off the clock.
        PAUSED = "paused", _("Paused")

    resident = models.ForeignKey(Resident, on_delete=models.CASCADE, related_name="rhythms")
    channel = models.CharField(_("channel"), max_length=20, choices=Channel.choices, blank=True)
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.CASCADE, related_name="rhythms")
    interval = models.DurationField(_("every"), default=timedelta(days=7))
    grace = models.DurationField(_("grace"), default=timedelta(hours=12))
    last_contact_at = models.DateTimeField(null=True, blank=True)
    alert_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OK)
    overdue_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # Detection reads only rhythms that are due: its cost follows the overdue count.
            models.Index(fields=["alert_at"], condition=Q(state="ok"), name="rhythm_due"),
        ]

    def __str__(self) -> str:
        return f"{self.resident_id} {self.channel or 'any'} every {self.interval}"

    # A rhythm with no channel is satisfied by a contact on any channel.
    ANY_CHANNEL = ""

    @staticmethod
    def alert_time(last_contact, interval, grace):
        """The alert-time formula: when a rhythm last satisfied at `last_contact` is overdue."""
        return last_contact + interval + grace

    # The same formula in SQL, for the edge's statements: {last} a timestamp expression,
    # {rhythm} the rhythm table's alias. tests/watch/test_edge.py compares the two.
    ALERT_TIME_SQL = '({last}) + {rhythm}."interval" + {rhythm}.grace'


class ImportMapping(models.Model):
    """How the columns of a residents' list with these headers map to fields, chosen by
    a person once per tenant and used for the next file with the same headers."""

    signature = models.CharField(max_length=64, unique=True)  # of the headers as compared (watch.importing)
    headers = models.JSONField()  # as written in the file
    columns = models.JSONField()  # per column: a field key of watch.importing.FIELDS, or "" to ignore it
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return ",".join(self.headers)


class ImportValueMapping(models.Model):
    """A value a tenant's files write that the import's own definitions do not know
    (e.g. 済 in a consent column), and what it means there."""

    field = models.CharField(max_length=30)  # a field key of watch.importing.FIELDS
    value = models.CharField(max_length=100)  # as compared (watch.importing.value_key)
    code = models.CharField(max_length=30)  # the choice stored
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["field", "value"], name="import_value_mapping_unique")]

    def __str__(self) -> str:
        return f"{self.field}: {self.value} → {self.code}"


class ImportJob(models.Model):
    """An uploaded residents' list, from upload through mapping to its import. The file
    is kept only until it is imported or refused."""

    class State(models.TextChoices):
        PENDING = "pending", _("Not imported yet")
        QUEUED = "queued", _("Importing")
        DONE = "done", _("Imported")
        FAILED = "failed", _("Refused: nothing imported")

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="import_jobs")
    created_at = models.DateTimeField(auto_now_add=True)
    file_name = models.CharField(max_length=200)
    data = models.BinaryField()
    encoding = models.CharField(max_length=20)
    create_areas = models.BooleanField(default=False)
    columns = models.JSONField(null=True)  # per column a field key or ""; None until mapped
    language = models.CharField(max_length=10, default="ja")  # of the person who started it, for its messages
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    row_count = models.PositiveIntegerField(default=0)  # records read
    imported_count = models.PositiveIntegerField(default=0)
    created_area_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list)  # [{"line" (the Excel row), "field" (the header), "message"}]
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.state})"


class ResidentChange(models.Model):
    """One change to a resident's record, for its history: who, when, what.
    `changes` maps a field name to [before, after] as stored (choice codes, ISO dates);
    the history page turns them into words and hides sensitive fields from those who
    may not see them (watch.access.SENSITIVE_FIELDS)."""

    class Kind(models.TextChoices):
        CREATED = "created", _("Registered")
        UPDATED = "updated", _("Record edited")
        MOVED = "moved", _("Moved to another area")
        STATUS = "status", _("Watch-over paused, resumed or ended")
        CONSENT = "consent", _("Consent recorded")
        RHYTHM = "rhythm", _("Rhythm of contact changed")
        DEVICE = "device", _("Device registered or revoked")
        EMERGENCY_CONTACT = "emergency_contact", _("Emergency contacts changed")
        TEAM = "team", _("Team changed")
        IMPORTED = "imported", _("Imported from a residents' list")

    resident = models.ForeignKey(Resident, on_delete=models.CASCADE, related_name="changes")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    changes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["resident", "-at"], name="resident_change_history")]

    def __str__(self) -> str:
        return f"{self.resident_id} {self.kind} {self.at:%Y-%m-%d %H:%M}"


class Visit(models.Model):
    """A planned visit: whom, who, a day or a window of days, why. Logging the contact
    completes it; a visit still planned when its window ends is missed, and counts as a
    missed sign of life (watch.visits)."""

    class Purpose(models.TextChoices):
        REGULAR = "regular", _("Regular watch-over visit")
        FOLLOW_UP = "follow_up", _("Follow-up of a concern")
        FIRST = "first", _("First visit")
        DELIVERY = "delivery", _("Delivering a notice or goods")
        OTHER = "other", _("Other")

    class State(models.TextChoices):
        PLANNED = "planned", _("Planned")
        DONE = "done", _("Done")
        MISSED = "missed", _("Not done in time")
        CANCELLED = "cancelled", _("Cancelled")

    resident = models.ForeignKey(Resident, on_delete=models.CASCADE, related_name="visits",
                                 verbose_name=_("resident"))
    visitor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="visits",
                                verbose_name=_("visitor"))
    starts_on = models.DateField(_("from"))
    ends_on = models.DateField(_("until"))
    # The end of the window (ends_on's midnight in the tenant's time zone): the sweep's clock.
    due_at = models.DateTimeField(editable=False)
    purpose = models.CharField(_("purpose"), max_length=20, choices=Purpose.choices, default=Purpose.REGULAR)
    note = models.CharField(_("note for the visitor"), max_length=500, blank=True)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.PLANNED)
    contact = models.ForeignKey(ContactLog, null=True, blank=True, on_delete=models.SET_NULL, related_name="visits")
    planned_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)  # done, missed or cancelled

    class Meta:
        ordering = ["starts_on", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(ends_on__gte=models.F("starts_on")), name="visit_window_ordered"),
        ]
        indexes = [
            models.Index(fields=["visitor", "starts_on"], name="visit_by_visitor"),
            models.Index(fields=["resident", "starts_on"], name="visit_by_resident"),
            # The missed-visit sweep reads only planned visits whose window has ended.
            models.Index(fields=["due_at"], condition=Q(state="planned"), name="visit_due"),
        ]

    def __str__(self) -> str:
        return f"{self.resident_id} by {self.visitor_id} {self.starts_on}–{self.ends_on}"


class LineLinkCode(models.Model):
    """A one-time code printed for a resident (with the QR code of the tenant's LINE
    official account) that a volunteer brings: typed on the account-link page, it ties
    the LINE account that asked to this resident (watch.reach)."""

    resident = models.ForeignKey(Resident, on_delete=models.CASCADE, related_name="line_link_codes")
    code_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.resident_id} code until {self.expires_at:%Y-%m-%d}"


class LineLinkNonce(models.Model):
    """The nonce of one account-link attempt (LINE's link token, then our nonce): the
    `accountLink` event that brings it back names the resident."""

    nonce = models.CharField(max_length=64, unique=True)
    resident = models.ForeignKey(Resident, on_delete=models.CASCADE, related_name="+")
    code = models.ForeignKey(LineLinkCode, on_delete=models.CASCADE, related_name="nonces")
    line_user_id = models.CharField(max_length=64)  # who asked for the link token
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"nonce for {self.resident_id}"
