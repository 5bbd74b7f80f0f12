"""A resident's answer to a question (a daily check-in or a safety check), from any
channel: the one way it is recorded, and the one way it becomes a contact.

Recording is one conditional UPDATE of the ask (and, for a household's check, of every
ask of the household): the first answer wins, a second use of a link or a second tap
records nothing, an answer after the deadline is kept and marked late. Each recorded
answer is then logged as a contact (`do_apply_answers`, on commit and by the sweep), so
it moves the rhythm, completes a visit and, for "needs help" or "please call", raises the
urgent concern through watch's one rule (watch.actions._apply_contact).
"""
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core import signing
from django.db import connection, transaction
from django.db.models import Case, IntegerField, Q, Value, When
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from notifications.events import publish
from outreach.models import Answer, Ask, SafetyCheck
from tenants.context import absolute_url
from tenants.tasks import enqueue_on_commit
from watch.actions import NOTE_MAX, do_log_contact
from watch.models import Channel, ContactLog, Outcome, Resident

logger = logging.getLogger(__name__)

# How an answer is logged as a contact's outcome, per kind of question.
OUTCOMES = {
    Ask.Kind.SAFETY: {Answer.FINE: Outcome.FINE, Answer.NEED_HELP: Outcome.NEEDS_HELP},
    Ask.Kind.CHECKIN: {Answer.FINE: Outcome.FINE, Answer.UNWELL: Outcome.WORRIED,
                       Answer.NEED_HELP: Outcome.ASKED_FOR_CALL},
}
STAFF = "staff"  # answered_via of an answer recorded by a volunteer, officer or staff member
APPLY_BATCH = 200


# What a tap on an answer button under a question on LINE sends (a postback): the kind of
# question and the answer; the LINE account says who (Resident.line_user_id). The same
# data for every resident, so one multicast carries the question to 500 of them.
POSTBACK = "answer:{kind}:{answer}"
POSTBACK_PATTERN = re.compile(r"^answer:(?P<kind>checkin|safety):(?P<answer>fine|unwell|need_help)$")


def postback_data(kind: str, answer: str) -> str:
    return POSTBACK.format(kind=kind, answer=answer)


def parse_postback(data: str) -> tuple[str, str] | None:
    """(kind, answer) of an answer button's postback, or None if it is not one."""
    match = POSTBACK_PATTERN.match(data or "")
    return (match["kind"], match["answer"]) if match else None


def _signer(schema_name: str | None = None) -> signing.Signer:
    # Per tenant: a token of one tenant's ask means nothing on another's host.
    return signing.Signer(salt=f"mimamori.answer.{schema_name or connection.schema_name}", sep=".")


def answer_token(ask: Ask) -> str:
    """The token of the ask's answer link (SMS, voice call): signed, so nothing is stored."""
    return _signer().sign(str(ask.pk))


def ask_id_for_token(token: str, schema_name: str | None = None) -> int | None:
    """The id of the ask an answer link of the tenant names, or None (no database read)."""
    try:
        return int(_signer(schema_name).unsign(token or ""))
    except (signing.BadSignature, ValueError):
        return None


def ask_for_token(token: str) -> Ask | None:
    """The ask an answer link names, or None for a token that is not one of this tenant's."""
    ask_id = ask_id_for_token(token)
    if ask_id is None or not 0 < ask_id < 2**63:
        return None
    return Ask.objects.select_related("safety_check", "resident").filter(pk=ask_id).first()


def answer_url(ask: Ask) -> str:
    """The answer link as an address outside the app (the tenant's host)."""
    from django.urls import reverse

    return absolute_url(connection.schema_name, reverse("residents:answer", args=[answer_token(ask)]))


def answers_for(ask: Ask) -> list[str]:
    """The answers this question offers."""
    return list(OUTCOMES[ask.kind])


def do_record_answer(ask: Ask, answer: str, via: str, *, actor=None, at: datetime | None = None,
                     contact: ContactLog | None = None) -> bool:
    """Record `answer` to `ask` once. Returns False (and changes nothing) if the ask (or
    its household) was answered already or the answer is not one it offers. `contact`: the
    contact that carried the answer (a device press), so none is logged again."""
    if answer not in OUTCOMES[ask.kind]:
        return False
    at = at or timezone.now()
    deadline = ask.safety_check.deadline if ask.safety_check_id else None
    same = Q(pk=ask.pk)
    if ask.safety_check_id and ask.household_key and ask.safety_check.by_household:
        same = Q(safety_check_id=ask.safety_check_id, household_key=ask.household_key)
    with transaction.atomic():
        count = (Ask.objects.filter(same, answer="")
                 .update(state=Ask.State.ANSWERED, answer=answer, answered_at=at, answered_via=via,
                         answered_by=actor, late=bool(deadline and at > deadline), next_attempt_at=None,
                         delivering_until=None))
        if not count:
            return False
        if contact is not None:
            Ask.objects.filter(pk=ask.pk).update(contact=contact)
        from outreach.tasks import apply_answers

        enqueue_on_commit(apply_answers)
        if ask.safety_check_id:
            progress_changed_on_commit(ask.safety_check_id)
    return True


def _contact_channel(ask: Ask) -> str:
    if ask.answered_via in Channel.values:
        return ask.answered_via
    return Channel.OTHER


def _note(ask: Ask) -> str:
    with translation.override(settings.LANGUAGE_CODE):
        label = Answer(ask.answer).label
        if ask.safety_check_id:
            text = _("Safety check “%(title)s”: %(answer)s") % {"title": ask.safety_check.title, "answer": label}
        else:
            text = _("Daily check-in: %(answer)s") % {"answer": label}
        if ask.late:
            text += " " + _("(after the deadline)")
    return text


APPLY_CLAIM = 50  # asks claimed at once: one sort of the backlog per claim, not per answer


def do_apply_answers(limit: int = APPLY_BATCH) -> int:
    """Log recorded answers not yet logged as contacts, "needs help" first. Claimed
    APPLY_CLAIM at a time with SKIP LOCKED, so several workers share the work; one that
    fails is logged and left for the sweep, the others are applied. Returns how many
    were applied."""
    applied = 0
    failed: set[int] = set()
    while applied < limit:
        with transaction.atomic():
            asks = list(Ask.objects.select_for_update(skip_locked=True, of=("self",))
                        .select_related("resident__area", "safety_check", "answered_by")
                        .filter(state=Ask.State.ANSWERED, contact__isnull=True).exclude(pk__in=failed)
                        .order_by(_need_help_first(), "answered_at", "pk")[:min(APPLY_CLAIM, limit - applied)])
            if not asks:
                break
            for ask in asks:
                try:
                    _apply(ask)  # do_log_contact is atomic: a failure leaves the ask unapplied
                except Exception:
                    logger.exception("answer of ask %s not logged as a contact; the sweep tries again", ask.pk)
                    failed.add(ask.pk)
                else:
                    applied += 1
    return applied


def _apply(ask: Ask) -> None:
    outcome = OUTCOMES[ask.kind][ask.answer]
    occurred = min(ask.answered_at, timezone.now())
    contact, _created = do_log_contact(
        actor=ask.answered_by, resident=ask.resident, occurred_at=occurred, channel=_contact_channel(ask),
        outcome=outcome, note=_note(ask))
    Ask.objects.filter(pk=ask.pk).update(contact=contact)


def _need_help_first():
    return Case(When(answer=Answer.NEED_HELP, then=Value(0)), default=Value(1), output_field=IntegerField())


def open_asks_of(resident_id: int) -> list[Ask]:
    """The resident's questions that can still be answered: today's check-in, and every
    open safety check's ask (an answer after the deadline is late, but kept)."""
    return list(Ask.objects.filter(resident_id=resident_id, answer="")
                .filter(Q(kind=Ask.Kind.CHECKIN, state__in=Ask.OPEN_STATES)
                        | Q(kind=Ask.Kind.SAFETY, safety_check__state=SafetyCheck.State.OPEN))
                .select_related("safety_check").order_by("-created_at"))


# The question as a resident reads it -------------------------------------------------

CHECKIN_QUESTION = gettext_lazy("Good morning. How are you?")  # おはようございます。お元気ですか？


def question_text(ask: Ask) -> str:
    """The question `ask` puts to the resident, in the active language (a safety check's
    own question is shown as staff wrote it)."""
    if ask.safety_check_id:
        return ask.safety_check.question
    return str(CHECKIN_QUESTION)


def resident_language(resident: Resident) -> str:
    """The language a resident is asked in: English if their record says so, else Japanese."""
    return "en" if (resident.language or "").lower().startswith("en") else settings.LANGUAGE_CODE


def answer_label(kind: str, answer: str) -> str:
    """An answer as the resident's buttons and replies name it, in the active language."""
    if kind == Ask.Kind.CHECKIN:
        labels = {Answer.FINE: _("I'm fine"), Answer.UNWELL: _("A little unwell"),
                  Answer.NEED_HELP: _("Please call me")}
    else:
        labels = {Answer.FINE: _("I'm safe"), Answer.NEED_HELP: _("I need help")}
    return labels[answer]


# Answers written in a message (an SMS reply) ------------------------------------------

# The whole replies that are answers, as outreach.replies.normalise leaves them (full-width
# digits become ASCII, trailing 。！ go). Parse meaning, never substrings: 「元気じゃない」
# is no answer. The digits are those an SMS question offers (sms_choices).
TEXT_ANSWERS = {
    Answer.FINE: ("1", "元気", "元気です", "げんき", "げんきです", "無事", "無事です", "ぶじ", "ぶじです",
                  "fine", "safe"),
    Answer.NEED_HELP: ("2", "助けて", "助けてください", "たすけて", "たすけてください", "電話してほしい",
                       "電話して", "電話してください", "help", "call me"),
    Answer.UNWELL: ("3", "少し具合が悪い", "具合が悪い", "すこし具合が悪い", "unwell"),
}
_TEXT_ANSWER = {text: answer for answer, texts in TEXT_ANSWERS.items() for text in texts}
DIGITS = {Answer.FINE: "1", Answer.NEED_HELP: "2", Answer.UNWELL: "3"}


def parse_text_answer(text: str) -> str | None:
    """The Answer a whole message means, or None."""
    from outreach.replies import normalise

    return _TEXT_ANSWER.get(normalise(text))


def sms_choices(kind: str) -> str:
    """How to answer by replying, for the text of an SMS question: 「1：元気 2：電話してほしい …」."""
    return " ".join(f"{DIGITS[a]}: {answer_label(kind, a)}" for a in sorted(OUTCOMES[kind], key=DIGITS.get))


@dataclass
class MessageResult:
    recorded: list[str] = field(default_factory=list)  # the answers recorded (one per ask answered)
    kinds: list[str] = field(default_factory=list)  # the kind of each question answered
    already: list[Ask] = field(default_factory=list)  # asks answered before
    understood: bool = True
    waiting: bool = True  # any question was waiting for this resident


def do_answer_by_message(resident: Resident, text: str, via: str, *, contact: ContactLog | None = None,
                         answer: str | None = None) -> MessageResult:
    """A resident's message (`text`, or an `answer` already known) answers each of their
    open questions that offers that answer. Nothing is recorded for a message that is not
    one of TEXT_ANSWERS."""
    result = MessageResult()
    answer = answer or parse_text_answer(text)
    asks = open_asks_of(resident.pk)
    result.waiting = bool(asks)
    if answer is None:
        result.understood = False
        if not asks:
            result.already = _answered_recently(resident)
        return result
    for ask in asks:
        if answer in OUTCOMES[ask.kind] and do_record_answer(ask, answer, via, contact=contact):
            result.recorded.append(answer)
            result.kinds.append(ask.kind)
    if not asks:
        result.already = _answered_recently(resident)
    elif not result.recorded and answer not in {a for ask in asks for a in OUTCOMES[ask.kind]}:
        result.understood = False
    return result


def _answered_recently(resident: Resident) -> list[Ask]:
    since = timezone.now() - timezone.timedelta(days=1)
    return list(Ask.objects.filter(resident=resident, answered_at__gte=since).order_by("-answered_at")[:1])


def message_reply(resident: Resident, result: MessageResult) -> str:
    """What the resident is told back, in their language."""
    with translation.override(resident_language(resident)):
        if result.recorded:
            # Named as the first question answered (the newest: a safety check before a check-in) offers it.
            label = answer_label(result.kinds[0], result.recorded[0])
            text = _("Thank you. Your answer “%(answer)s” was received.") % {"answer": label}
            if Answer.NEED_HELP in result.recorded:
                text += " " + _("Someone will contact you soon.")
            return text
        if result.already:
            ask = result.already[0]
            return _("Thank you. Your answer “%(answer)s” was already received.") % {
                "answer": answer_label(ask.kind, ask.answer)}
        if not result.waiting:
            return _("Thank you for your message. No question is waiting for your answer now.")
        return _("Sorry, this answer was not understood. Please reply with the number only: %(choices)s") % {
            "choices": sms_choices(_waiting_kind(resident))}


def _waiting_kind(resident: Resident) -> str:
    asks = open_asks_of(resident.pk)
    return Ask.Kind.CHECKIN if any(a.kind == Ask.Kind.CHECKIN for a in asks) else Ask.Kind.SAFETY


def residents_at_address(channel: str, address: str) -> list[Resident]:
    """The residents (not ended) whose record reaches them at `address` on `channel`
    (watch.reach.address_of: an SMS number in E.164, a LINE account)."""
    from watch.reach import address_of

    residents = Resident.objects.exclude(status=Resident.Status.ENDED)
    if channel == Channel.LINE:
        return list(residents.filter(line_user_id=address)) if address else []
    if channel != Channel.SMS or not address:
        return []
    digits = re.sub(r"\D", "", address)
    if len(digits) < 8:
        return []
    # The record keeps the number as written (090-1234-5678): match its last 8 digits, then
    # compare the whole number as address_of reads it.
    from django.db.models import F, Func
    from django.db.models import Value as V

    stripped = Func(F("mobile_phone"), V(r"\D"), V(""), V("g"), function="regexp_replace")
    candidates = residents.annotate(mobile_digits=stripped).filter(mobile_digits__endswith=digits[-8:])
    return [r for r in candidates if address_of(r, Channel.SMS) == address]


# Answers recorded by a person after a visit or a call ---------------------------------

STAFF_CHANNELS = (Channel.VISIT, Channel.PHONE)


class AnswerRefused(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def check_answer(ask: Ask, answer: str) -> None:
    """Raises AnswerRefused (with a message) for an answer the question does not offer."""
    if answer not in OUTCOMES[ask.kind]:
        raise AnswerRefused(_("Choose one of the answers offered."))


def do_record_answer_for_resident(*, actor, ask: Ask, answer: str, channel: str, note: str = "") -> bool:
    """A volunteer, officer or staff member records the resident's answer after a visit
    or a call: the answer (via STAFF, by `actor`) and one contact on that channel, in one
    transaction. Returns False, changing nothing, if the question was answered already.
    The caller has checked that `actor` may see the resident."""
    check_answer(ask, answer)
    if channel not in STAFF_CHANNELS:
        raise AnswerRefused(_("Say whether you visited or phoned."))
    from watch.notes import note_problems

    if problems := note_problems(note, NOTE_MAX):
        raise AnswerRefused(" ".join(str(p) for p in problems))
    with transaction.atomic():
        if not do_record_answer(ask, answer, STAFF, actor=actor):
            return False
        ask.refresh_from_db()
        text = _note(ask) + (f"\n{note.strip()}" if note.strip() else "")
        contact, _created = do_log_contact(actor=actor, resident=ask.resident, occurred_at=ask.answered_at,
                                           channel=channel, outcome=OUTCOMES[ask.kind][answer], note=text)
        Ask.objects.filter(pk=ask.pk).update(contact=contact)
    return True


# Live progress: a cheap "changed" per check, coalesced at the source --------------------

PROGRESS_EVENT = "safety.changed"
# At most one "changed" per check and process in this time. An answer whose event is
# coalesced away is within this time after one that went out; the viewer's next but one
# snapshot (a second after the first) includes it (outreach.consumers).
PUBLISH_GAP_S = 0.25
_last_published: dict[tuple[str, int], float] = {}
_publish_lock = threading.Lock()


def progress_audience(check_id: int) -> str:
    """The live-event audience of a check's progress (notifications.events.group_name adds the schema)."""
    return f"safety.{int(check_id)}"


def progress_changed_on_commit(check_id: int) -> None:
    """Tell the check's live viewers, once the transaction commits, that its figures
    changed (they fetch the figures themselves, each as far as they may see)."""
    schema = connection.schema_name
    transaction.on_commit(lambda: publish_progress_changed(schema, check_id))


def progress_changed_is_due(schema_name: str, check_id: int) -> bool:
    """True (and counted as sent) unless a "changed" of this check went out from this
    process less than PUBLISH_GAP_S ago."""
    key = (schema_name, int(check_id))
    now = time.monotonic()
    with _publish_lock:
        if now - _last_published.get(key, -1e9) < PUBLISH_GAP_S:
            return False
        _last_published[key] = now
        if len(_last_published) > 10_000:
            _last_published.clear()
    return True


def progress_changed_event(check_id: int) -> dict:
    return {"type": PROGRESS_EVENT, "check": int(check_id)}


def publish_progress_changed(schema_name: str, check_id: int, *, force: bool = False) -> bool:
    """Publish "changed" now unless one went out for this check less than PUBLISH_GAP_S
    ago (or `force`). Call it when a check's figures change otherwise (closed, cancelled)."""
    if not (progress_changed_is_due(schema_name, check_id) or force):
        return False
    publish(schema_name, [progress_audience(check_id)], progress_changed_event(check_id))
    return True
