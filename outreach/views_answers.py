"""Answers: the answer link a resident opens from an SMS or a call (no sign-in), and the
answer a volunteer, officer or staff member records after a visit or a call.

The link page shows the organisation's name and the question only: whoever holds the
SMS can open it, so it names nobody. GET never records (link previews open links);
the buttons POST, with a CSRF token like every form.
"""
from http import HTTPStatus

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from outreach import answers
from outreach.models import Answer, Ask
from watch.access import residents_for_user
from watch.models import Channel

TEMPLATES = "outreach/answers/"


def _tenant_name(request) -> str:
    tenant = getattr(request, "tenant", None) or getattr(connection, "tenant", None)
    return getattr(tenant, "name", "")


def _language(request, ask: Ask) -> str:
    """The resident's language, unless the person at the screen chose one with the switch."""
    chosen = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
    if chosen in dict(settings.LANGUAGES):
        return chosen
    return answers.resident_language(ask.resident)


def _not_found(request):
    return render(request, TEMPLATES + "link_not_found.html", {"tenant_name": _tenant_name(request)},
                  status=HTTPStatus.NOT_FOUND)


@require_http_methods(["GET", "POST"])
def answer_link(request, token: str):
    """/r/a/<token>/: the question and its answers as big buttons; POST records the tapped
    one and answers 303 to this page, which then says what was received (once: a second
    use says what was recorded; after the deadline it is kept, late). The plain POST is
    usually answered by outreach.edge, in front of Django, with the same rows and reply."""
    ask = answers.ask_for_token(token)
    if ask is None:
        return _not_found(request)
    with translation.override(_language(request, ask)):
        context = {"tenant_name": _tenant_name(request), "ask": ask, "question": answers.question_text(ask),
                   "choices": [(a, answers.answer_label(ask.kind, a)) for a in answers.answers_for(ask)]}
        status = HTTPStatus.OK
        if request.method == "POST":
            answer = request.POST.get("answer", "")
            if answer not in answers.answers_for(ask):
                context["error"] = _("Please choose one of the answers below.")
                status = HTTPStatus.BAD_REQUEST
            elif answers.do_record_answer(ask, answer, via=Channel.LINK):
                # Post/redirect/get, as the edge answers (outreach.edge): the page then says what was received.
                response = redirect(request.path)
                response.status_code = HTTPStatus.SEE_OTHER
                return response
            else:
                ask.refresh_from_db()
                context["used_again"] = True
        if ask.answer:
            context.update(answered=True, answer_label=answers.answer_label(ask.kind, ask.answer),
                           late=ask.late, need_help=ask.answer == Answer.NEED_HELP)
        response = render(request, TEMPLATES + "link.html", context, status=status)
    # Never cached by a shared proxy: the page says what this resident answered. Its referrer
    # policy is the site's (same-origin): the token is never sent to another site, and the
    # buttons' POST carries this page's Origin (under no-referrer a browser sends
    # "Origin: null", which the CSRF check refuses).
    response["Cache-Control"] = "private, no-store"
    return response


def asks_for_user(user):
    """The questions about residents `user` may see (watch.access, the one rule)."""
    return Ask.objects.filter(resident__in=residents_for_user(user).values("pk"))


def get_ask_for_user(user, pk) -> Ask:
    from django.http import Http404

    try:
        return (asks_for_user(user).select_related("safety_check", "resident", "answered_by")
                .get(pk=int(pk)))
    except (Ask.DoesNotExist, TypeError, ValueError, OverflowError):
        raise Http404 from None


@login_required
@require_http_methods(["GET", "POST"])
def record_answer(request, pk: int):
    """A person who may see the resident records their answer after a visit or a call."""
    ask = get_ask_for_user(request.user, pk)
    choices = [(a, answers.answer_label(ask.kind, a)) for a in answers.answers_for(ask)]
    channels = [(c, Channel(c).label) for c in answers.STAFF_CHANNELS]
    target = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = ""
    context = {"ask": ask, "question": answers.question_text(ask), "choices": choices, "channels": channels,
               "next": target, "form": request.POST}
    if request.method == "POST":
        try:
            recorded = answers.do_record_answer_for_resident(
                actor=request.user, ask=ask, answer=request.POST.get("answer", ""),
                channel=request.POST.get("channel", ""), note=request.POST.get("note", ""))
        except answers.AnswerRefused as refused:
            context["error"] = refused.message
            return render(request, TEMPLATES + "record.html", context, status=HTTPStatus.BAD_REQUEST)
        if recorded:
            messages.success(request, _("The answer was recorded."))
        else:
            ask.refresh_from_db()
            messages.info(request, _("This question was already answered: %(answer)s.")
                          % {"answer": answers.answer_label(ask.kind, ask.answer)})
        return redirect(target) if target else redirect("watch:resident", ask.resident_id)
    return render(request, TEMPLATES + "record.html", context)


# Staff pages, under /outreach/ (outreach.urls).
urlpatterns = [
    path("safety/asks/<int:pk>/answer/", record_answer, name="record_answer"),
]
# Pages for residents and their families (no sign-in), under /r/ (outreach.urls_residents).
resident_urlpatterns = [
    path("a/<str:token>/", answer_link, name="answer"),
]
