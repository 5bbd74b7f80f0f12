"""The electronic circular board (電子回覧板): officers' and staff's pages under /outreach/
(posting, the list, a notice's tallies, the printable copy), and the households' page
under /r/ reached by the receipt's signed link (outreach.board)."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from outreach import board
from outreach.models import Notice

OPTION_FIELDS = [f"option_{i}" for i in range(1, board.MAX_OPTIONS + 1)]


def _require_poster(user) -> None:
    if not board.can_post_notices(user):
        raise PermissionDenied(_("Only association officers and staff use the circular board."))


@login_required
@require_GET
def notices(request):
    _require_poster(request.user)
    listed = (board.notices_for_user(request.user).select_related("author").prefetch_related("areas")[:200])
    return render(request, "outreach/board/list.html", {"notices": listed})


def _form_context(request, form=None, errors=None):
    form = form or {}
    return {"areas": board.postable_areas(request.user), "form": form, "errors": errors or {},
            "translations": [(code, name, form.get(f"title_{code}", ""), form.get(f"body_{code}", ""))
                             for code, name in board.LANGUAGES.items()],
            "options": [(name, form.get(name, "")) for name in OPTION_FIELDS], "replies": Notice.Reply.choices,
            "max_bytes": f"{board.attachment_limit() / 1024 / 1024:g}"}


@login_required
@require_http_methods(["GET", "POST"])
def notice_new(request):
    _require_poster(request.user)
    if request.method == "GET":
        return render(request, "outreach/board/new.html", _form_context(request))
    data = request.POST
    uploads = [board.Upload(name=f.name, size=f.size, read=f.read) for f in request.FILES.getlist("attachments")]
    try:
        notice = board.do_post_notice(
            request.user, title=data.get("title", ""), body=data.get("body", ""), area_ids=data.getlist("areas"),
            translations={code: {"title": data.get(f"title_{code}", ""), "body": data.get(f"body_{code}", "")}
                          for code in board.LANGUAGES},
            reply=data.get("reply", ""), options=[data.get(name, "") for name in OPTION_FIELDS],
            answer_by=data.get("answer_by", ""), uploads=uploads)
    except ValidationError as exc:
        form = {key: data.get(key, "") for key in data if key != "csrfmiddlewaretoken"}
        form["areas"] = data.getlist("areas")
        return render(request, "outreach/board/new.html", _form_context(request, form, exc.message_dict), status=400)
    return redirect("outreach:notice", pk=notice.pk)


@login_required
@require_GET
def notice_detail(request, pk: int):
    _require_poster(request.user)
    notice = board.get_notice_for_user(request.user, pk)
    return render(request, "outreach/board/detail.html", _detail_context(request, notice))


def _detail_context(request, notice, error: str = "") -> dict:
    return {"notice": notice, "areas": notice.areas.all(), "attachments": notice.attachments.defer("data"),
            "tallies": board.tallies(notice, request.user), "error": error,
            "unread": board.unread_households(notice, request.user)[:1000], "choices": board.choices_of(notice),
            "deadline": board.answer_deadline(notice), "open": board.answers_open(notice)}


@login_required
@require_http_methods(["POST"])
def notice_reply_slip(request, pk: int, receipt_id: int):
    """Record a household's reply slip handed back on paper."""
    _require_poster(request.user)
    notice = board.get_notice_for_user(request.user, pk)
    receipt = board.get_receipt_for_user(request.user, notice, receipt_id)
    try:
        board.do_record_reply_slip(receipt, request.user, request.POST.get("response", ""))
    except board.NoticeRefused as refused:
        return render(request, "outreach/board/detail.html", _detail_context(request, notice, refused.message),
                      status=400)
    messages.success(request, _("The reply slip of %(name)s was recorded.") % {"name": receipt.resident.name})
    return redirect("outreach:notice", pk=notice.pk)


@login_required
@require_GET
def notice_print(request, pk: int):
    """One page per household on paper, each with a tear-off reply slip: named for those
    the viewer may see, without a name for the others; one page without a name if none."""
    _require_poster(request.user)
    notice = board.get_notice_for_user(request.user, pk)
    sheets = []
    receipts = list(board.paper_households(notice, request.user)[:2000])
    receipts += [None] * min(board.unnamed_paper_households(notice, request.user), 2000)
    for receipt in receipts or [None]:
        language = receipt.language if receipt else "ja"
        title, body = board.content_for(notice, language)
        sheets.append({"receipt": receipt, "title": title, "body": body, "language": language})
    return render(request, "outreach/board/print.html", {
        "notice": notice, "sheets": sheets, "choices": board.choices_of(notice),
        "attachments": notice.attachments.defer("data")})


@login_required
@require_GET
def notice_attachment(request, pk: int, attachment_id: int):
    _require_poster(request.user)
    notice = board.get_notice_for_user(request.user, pk)
    return _attachment(notice, attachment_id)


def _attachment(notice, attachment_id) -> HttpResponse:
    attachment = notice.attachments.filter(pk=attachment_id).first()
    if attachment is None:
        raise Http404
    response = HttpResponse(bytes(attachment.data), content_type=attachment.content_type)
    disposition = "inline" if attachment.content_type.startswith("image/") else "attachment"
    from urllib.parse import quote

    response["Content-Disposition"] = f"{disposition}; filename*=UTF-8''{quote(attachment.name)}"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response


# Households ---------------------------------------------------------------------------

def _receipt_or_404(token: str):
    receipt = board.receipt_for_token(token)
    if receipt is None:
        raise Http404
    return receipt


@require_http_methods(["GET", "POST"])
def resident_notice(request, token: str):
    """The household's copy: opening it marks it read (a sign of life); the form answers."""
    receipt = _receipt_or_404(token)
    with translation.override(board.page_language(receipt)):
        status, message = 200, ""
        if request.method == "POST":
            try:
                board.do_answer_notice(receipt, request.POST.get("response", ""))
                message = _("Thank you, your answer was recorded.")
            except board.NoticeRefused as refused:
                status, message = 400, refused.message
        else:
            board.do_read_notice(receipt)
        title, body = board.content_for(receipt.notice, receipt.language)
        response = render(request, "outreach/board/read.html", {
            "receipt": receipt, "notice": receipt.notice, "title": title, "body": body, "token": token,
            "attachments": receipt.notice.attachments.defer("data"), "choices": board.choices_of(receipt.notice),
            "open": board.answers_open(receipt.notice), "message": message, "page_language": translation.get_language(),
        }, status=status)
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
def resident_attachment(request, token: str, attachment_id: int):
    return _attachment(_receipt_or_404(token).notice, attachment_id)


# Staff pages, under /outreach/ (outreach.urls).
urlpatterns = [
    path("notices/", notices, name="notices"),
    path("notices/new/", notice_new, name="notice_new"),
    path("notices/<int:pk>/", notice_detail, name="notice"),
    path("notices/<int:pk>/print/", notice_print, name="notice_print"),
    path("notices/<int:pk>/slips/<int:receipt_id>/", notice_reply_slip, name="notice_reply_slip"),
    path("notices/<int:pk>/files/<int:attachment_id>/", notice_attachment, name="notice_attachment"),
]
# Pages for residents and their families (no sign-in), under /r/ (outreach.urls_residents).
resident_urlpatterns = [
    path("n/<str:token>/", resident_notice, name="notice"),
    path("n/<str:token>/files/<int:attachment_id>/", resident_attachment, name="notice_attachment"),
]
