"""The automated call (Twilio): the TwiML a call fetches, and the key the resident pressed.

Only Twilio calls these: every request must carry a valid X-Twilio-Signature of this
tenant's Twilio account (403 otherwise, before anything is read), and the address names
the ask by its answer token (outreach.answers: signed per tenant, so another tenant's
token is a 404 here). A call counts as answered only when a key that is an answer was
pressed: no key, or another key, records nothing.
"""
import logging

from django.http import Http404, HttpResponse, HttpResponseForbidden
from django.urls import path, reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from notifications import credentials
from outreach import answers
from outreach.models import Ask
from watch.models import Channel

logger = logging.getLogger(__name__)

VOICES = {"ja": "ja-JP", "en": "en-US"}
GATHER_SECONDS = 8


def _signed_by_twilio(request) -> bool:
    from twilio.request_validator import RequestValidator

    creds = credentials.current()
    signature = request.headers.get("X-Twilio-Signature", "")
    params = request.POST if request.method == "POST" else {}
    return bool(creds.twilio_auth_token and signature
                and RequestValidator(creds.twilio_auth_token).validate(request.build_absolute_uri(), params, signature)
                and request.POST.get("AccountSid", creds.twilio_account_sid) == creds.twilio_account_sid)


def _refused():
    logger.warning("voice request refused: not signed by this tenant's Twilio account")
    return HttpResponseForbidden(_("This request is not signed by this organisation's Twilio account."))


def _ask_or_404(token: str) -> Ask:
    ask = answers.ask_for_token(token)
    if ask is None:
        raise Http404
    return ask


def _twiml(response) -> HttpResponse:
    return HttpResponse(str(response), content_type="text/xml; charset=utf-8")


def _keys(ask: Ask) -> dict[str, str]:
    """The key of each answer the question offers ("1" → fine)."""
    return {answers.DIGITS[answer]: answer for answer in answers.answers_for(ask)}


def _instructions(ask: Ask) -> str:
    """「元気なら 1 を、助けが必要なら 2 を押してください」, from the question's answers."""
    keys = sorted(_keys(ask).items())
    if ask.kind == Ask.Kind.SAFETY:
        return _("If you are safe, press 1. If you need help, press 2.")
    return " ".join(_("For “%(answer)s”, press %(key)s.") % {"answer": answers.answer_label(ask.kind, a), "key": k}
                    for k, a in keys)


def _ask_again(ask: Ask, token: str, say_first: str = ""):
    from twilio.twiml.voice_response import VoiceResponse

    voice = VOICES.get(translation.get_language(), VOICES["ja"])
    response = VoiceResponse()
    if say_first:
        response.say(say_first, language=voice)
    gather = response.gather(num_digits=1, action=reverse("residents:voice_answer", args=[token]), method="POST",
                             timeout=GATHER_SECONDS)
    if not say_first:
        gather.say(answers.question_text(ask), language=voice)
    gather.say(_instructions(ask), language=voice)
    # No key within the time: nothing is recorded; the silence moves the question on.
    response.say(_("No key was pressed. Goodbye."), language=voice)
    response.hangup()
    return response


@csrf_exempt
@require_http_methods(["GET", "POST"])
def voice_question(request, token: str):
    """/r/voice/<token>/: the TwiML the call plays: the question and a one-key <Gather>."""
    if not _signed_by_twilio(request):
        return _refused()
    ask = _ask_or_404(token)
    with translation.override(answers.resident_language(ask.resident)):
        return _twiml(_ask_again(ask, token))


@csrf_exempt
@require_http_methods(["POST"])
def voice_answer(request, token: str):
    """/r/voice/<token>/answer/: the key pressed (Twilio's Digits). 1/2 (/3) record the
    answer once; another key says so and asks again; no key records nothing."""
    from twilio.twiml.voice_response import VoiceResponse

    if not _signed_by_twilio(request):
        return _refused()
    ask = _ask_or_404(token)
    digits = request.POST.get("Digits", "")
    with translation.override(answers.resident_language(ask.resident)):
        voice = VOICES.get(translation.get_language(), VOICES["ja"])
        answer = _keys(ask).get(digits) if len(digits) == 1 else None
        if answer is None:
            if not digits:
                response = VoiceResponse()
                response.say(_("No key was pressed. Goodbye."), language=voice)
                response.hangup()
                return _twiml(response)
            return _twiml(_ask_again(ask, token, say_first=_("That key is not one of the answers.")))
        recorded = answers.do_record_answer(ask, answer, via=Channel.VOICE)
        response = VoiceResponse()
        label = answers.answer_label(ask.kind, answer)
        if recorded:
            response.say(_("Thank you. Your answer “%(answer)s” was received.") % {"answer": label}, language=voice)
        else:
            response.say(_("Thank you. An answer was already received."), language=voice)
        response.hangup()
        logger.info("ask %s: voice key %s (%s)", ask.pk, digits, "recorded" if recorded else "already answered")
        return _twiml(response)


# Staff pages, under /outreach/ (outreach.urls).
urlpatterns = []
# Pages for residents and their families (no sign-in), under /r/ (outreach.urls_residents).
resident_urlpatterns = [
    path("voice/<str:token>/", voice_question, name="voice"),
    path("voice/<str:token>/answer/", voice_answer, name="voice_answer"),
]
