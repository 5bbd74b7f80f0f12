"""What a reply on LINE or SMS means, and what the person is told back.

Parse meaning, never substrings (CONVENTIONS 17): 「了解しかねます」 is a refusal and
"not ok" is not "ok". A reply acknowledges only if its whole normalised text is one of
ACKNOWLEDGING_ANSWERS, or if it is the answer button under a notification.
"""
import re
import unicodedata

from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _

NOTIFICATION_KIND = "concern"  # the notifications of a concern's escalation (outreach.actions._notify)
# The whole answers that acknowledge, as `normalise` leaves them. Short and conservative:
# anything else is kept as a message, which costs a tap; a wrong acknowledgement stops an escalation.
ACKNOWLEDGING_ANSWERS = frozenset({
    "了解", "了解です", "了解しました", "りょうかい", "りょうかいです", "りょうかいしました",
    "対応します", "向かいます", "ok", "はい",
})
TRAILING = "。.!、, "  # after NFKC: ！→! ．→. ｡→。 full-width space → space; "?" stays (a question)
CONCERN_KEY = re.compile(r"^concern:(?P<concern>[0-9]{1,18}):")


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "").strip().lower().rstrip(TRAILING)


def is_acknowledgement(text: str) -> bool:
    """True only if the whole reply is one of the acknowledging answers."""
    return normalise(text) in ACKNOWLEDGING_ANSWERS


def concern_id_of(notification) -> int | None:
    """The concern a notification of an escalation is about (its dedupe key names it)."""
    if notification is None or notification.kind != NOTIFICATION_KIND:
        return None
    match = CONCERN_KEY.match(notification.dedupe_key or "")
    return int(match["concern"]) if match else None


class Outcome:
    ACKNOWLEDGED = "acknowledged"
    ALREADY_HANDLED = "already_handled"  # the concern was no longer open: nothing changed
    KEPT = "kept"  # not an acknowledgement: kept on the concern as the person's message
    SEVERAL = "several"  # several concerns await this person: which one is not guessed
    NOTHING = "nothing"  # nothing awaits this person's answer


def answer_text(outcome: str) -> str:
    """What the person is told back, in the tenant's language (a reply has no browser)."""
    with translation.override(settings.LANGUAGE_CODE):
        how = _("To acknowledge, tap “Acknowledge” under the notification, or reply “OK” alone.")
        texts = {
            Outcome.ACKNOWLEDGED: _("Thank you: you are on it. The escalation has stopped."),
            Outcome.ALREADY_HANDLED: _("This concern has already been acknowledged or closed. Nothing changed."),
            Outcome.KEPT: _("Your message was kept on the concern for the team. It does not acknowledge it.")
            + "\n" + how,
            Outcome.SEVERAL: _("Several concerns are waiting for your answer, so this message was not matched to "
                               "one.") + "\n" + _("To acknowledge one, tap “Acknowledge” under its "
                                                 "notification or open its link."),
            Outcome.NOTHING: _("No concern is waiting for your answer at the moment."),
        }
        return texts[outcome]
