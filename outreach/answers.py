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
from datetime import datetime

from django.conf import settings
from django.core import signing
from django.db import connection, transaction
from django.db.models import Case, IntegerField, Q, Value, When
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from outreach.models import Answer, Ask, SafetyCheck
from tenants.context import absolute_url
from tenants.tasks import enqueue_on_commit
from watch.actions import do_log_contact
from watch.models import Channel, ContactLog, Outcome

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


def _signer() -> signing.Signer:
    # Per tenant: a token of one tenant's ask means nothing on another's host.
    return signing.Signer(salt=f"mimamori.answer.{connection.schema_name}", sep=".")


def answer_token(ask: Ask) -> str:
    """The token of the ask's answer link (SMS, voice call): signed, so nothing is stored."""
    return _signer().sign(str(ask.pk))


def ask_for_token(token: str) -> Ask | None:
    """The ask an answer link names, or None for a token that is not one of this tenant's."""
    try:
        ask_id = int(_signer().unsign(token or ""))
    except (signing.BadSignature, ValueError):
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


def do_apply_answers(limit: int = APPLY_BATCH) -> int:
    """Log recorded answers not yet logged as contacts, "needs help" first; each in its
    own transaction, claimed with SKIP LOCKED so several workers share the work. Returns
    how many were applied."""
    applied = 0
    while applied < limit:
        with transaction.atomic():
            ask = (Ask.objects.select_for_update(skip_locked=True, of=("self",))
                   .select_related("resident__area", "safety_check", "answered_by")
                   .filter(state=Ask.State.ANSWERED, contact__isnull=True)
                   .order_by(_need_help_first(), "answered_at", "pk").first())
            if ask is None:
                break
            outcome = OUTCOMES[ask.kind][ask.answer]
            occurred = min(ask.answered_at, timezone.now())
            contact, _created = do_log_contact(
                actor=ask.answered_by, resident=ask.resident, occurred_at=occurred, channel=_contact_channel(ask),
                outcome=outcome, note=_note(ask))
            Ask.objects.filter(pk=ask.pk).update(contact=contact)
        applied += 1
    return applied


def _need_help_first():
    return Case(When(answer=Answer.NEED_HELP, then=Value(0)), default=Value(1), output_field=IntegerField())


def open_asks_of(resident_id: int) -> list[Ask]:
    """The resident's questions that can still be answered: today's check-in, and every
    open safety check's ask (an answer after the deadline is late, but kept)."""
    return list(Ask.objects.filter(resident_id=resident_id, answer="")
                .filter(Q(kind=Ask.Kind.CHECKIN, state__in=Ask.OPEN_STATES)
                        | Q(kind=Ask.Kind.SAFETY, safety_check__state=SafetyCheck.State.OPEN))
                .select_related("safety_check").order_by("-created_at"))
