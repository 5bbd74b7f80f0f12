"""The electronic circular board (電子回覧板): posting notices to areas, one receipt per
household, delivery by LINE (multicast) or on paper, reading on the web by a signed link,
attendance and votes, and the tallies an officer sees.

Who may post where is one rule (`postable_areas`): staff to the areas they oversee,
association officers to the areas they are attached to (watch.access.areas_for_user).
Reading a notice is a sign of life: the first read of a receipt logs one contact
(channel "notice read") through watch's one contact action.
"""
import hashlib
import logging
import os
import re
import smtplib
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from notifications import credentials
from notifications.delivery import line_multicast, message_id, tenant_time_zone, timeout_seconds
from notifications.mail import OutcomeUnknown
from outreach.models import Notice, NoticeAttachment, NoticeReceipt
from tenants.accounts.models import User
from tenants.context import absolute_url, primary_domain
from tenants.tasks import enqueue_on_commit
from watch.access import area_scope, areas_for_user, residents_for_user
from watch.actions import do_log_contact
from watch.models import Area, Channel, Outcome, Resident

logger = logging.getLogger(__name__)

POSTER_ROLES = (User.Role.ADMIN, User.Role.MUNICIPAL_STAFF, User.Role.ASSOCIATION_OFFICER)
# Languages a notice can be translated into (besides Japanese), as the form offers them.
LANGUAGES = {"en": "English", "zh": "中文", "ko": "한국어", "vi": "Tiếng Việt", "pt": "Português"}
ATTACHMENT_MAX_BYTES = 5 * 1024 * 1024  # settings.NOTICE_ATTACHMENT_MAX_BYTES overrides it
MAX_ATTACHMENTS = 5
MIN_OPTIONS, MAX_OPTIONS = 2, 5
OPTION_MAX_LENGTH = 100
LINE_BATCH = 500  # LINE's multicast limit
LINE_TEXT_LIMIT = 5000
LINE_LABEL_LIMIT = 20
SEND_RETRY_SECONDS = 30
SEND_ATTEMPTS = 5
LINE_GIVE_UP = timedelta(hours=20)  # LINE forgets a retry key after 24 hours
SENT_BY_TASK = ("line", "email")  # the receipts the send task delivers (the others are on paper)
YES, NO = "yes", "no"
ATTENDANCE = {YES: gettext_lazy("I will attend"), NO: gettext_lazy("I will not attend")}
# What a tap under a notice on LINE sends: the same for every household, so one multicast
# carries it; the LINE account says who (NoticeReceipt.line_user_id).
POSTBACK_PATTERN = re.compile(r"^notice:(?P<id>\d{1,18}):(?P<what>open|answer:(?P<choice>[a-z0-9]{1,4}))$")
READ_CONTACT = uuid.UUID("7b0f5a56-3f1e-4f59-9a51-6d1f0c2a9e11")  # namespace of reads' idempotency keys
# The first bytes of each kind of attachment accepted: what a file is, not what it says it is.
SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


class NoticeRefused(Exception):
    """An answer the notice does not take (closed, or not one of its choices): `message`
    says why, in the reader's language."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# Who may post, and see ----------------------------------------------------------------

def can_post_notices(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.role in POSTER_ROLES)


def postable_areas(user) -> QuerySet[Area]:
    """The areas `user` may post a notice to (and everything below them)."""
    return areas_for_user(user) if can_post_notices(user) else Area.objects.none()


def notices_for_user(user) -> QuerySet[Notice]:
    """The notices `user` sees on the board: their own, and those sent to an area they may
    post to, or to an area above one (a notice to the whole district reaches their blocks)."""
    if not can_post_notices(user):
        return Notice.objects.none()
    scope = area_scope(user)
    if scope is None:
        return Notice.objects.all()
    above = {int(part) for path in scope for part in path.strip("/").split("/") if part}
    reach = Q(areas__in=postable_areas(user)) | Q(areas__in=above)
    return Notice.objects.filter(pk__in=Notice.objects.filter(reach | Q(author=user)).values("pk"))


def get_notice_for_user(user, pk) -> Notice:
    try:
        return notices_for_user(user).select_related("author").get(pk=int(pk))
    except (Notice.DoesNotExist, ValueError, TypeError, OverflowError) as exc:
        raise Http404 from exc


# Posting ---------------------------------------------------------------------------

@dataclass
class Upload:
    """An attachment as received: its name, its size and a way to read it."""

    name: str
    size: int
    read: object  # () -> bytes
    content_type: str = ""
    data: bytes = field(default=b"", repr=False)


def attachment_limit() -> int:
    return int(getattr(settings, "NOTICE_ATTACHMENT_MAX_BYTES", ATTACHMENT_MAX_BYTES))


def sniff(data: bytes) -> str | None:
    for signature, content_type in SIGNATURES:
        if data.startswith(signature):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def clean_file_name(name: str) -> str:
    name = os.path.basename((name or "").replace("\\", "/")).strip()
    name = re.sub(r"[\x00-\x1f\x7f\"]", "", name)
    return name[-200:] or "attachment"


def check_notice_input(author, *, title: str, body: str, translations: dict | None, area_ids, reply: str,
                       options, answer_by: date | str | None, uploads: list[Upload]) -> dict:
    """Validate and authorise a notice; returns the cleaned values or raises ValidationError
    with a message per field. Reads the uploads (after their sizes are checked)."""
    errors: dict[str, list[str]] = {}

    def refuse(name, message):
        errors.setdefault(name, []).append(message)

    title, body = (title or "").strip(), (body or "").strip()
    if not title:
        refuse("title", _("Give the notice a title."))
    elif len(title) > Notice._meta.get_field("title").max_length:
        refuse("title", _("The title is too long (at most 200 characters)."))
    if not body:
        refuse("body", _("Write the text of the notice."))
    elif len(body) > Notice._meta.get_field("body").max_length:
        refuse("body", _("The text is too long (at most 10,000 characters)."))

    cleaned_translations = {}
    for code, text in (translations or {}).items():
        t_title, t_body = (text.get("title") or "").strip(), (text.get("body") or "").strip()
        if not (t_title or t_body):
            continue
        if code not in LANGUAGES:
            refuse("translations", _("Translations are possible into: %(languages)s.")
                   % {"languages": ", ".join(LANGUAGES.values())})
        elif not (t_title and t_body) or len(t_title) > 200 or len(t_body) > 10_000:
            refuse("translations", _("A translation needs both a title (at most 200 characters) and a text "
                                     "(%(language)s).") % {"language": LANGUAGES[code]})
        else:
            cleaned_translations[code] = {"title": t_title, "body": t_body}

    ids = set()
    for value in area_ids or []:
        try:
            ids.add(int(value))
        except (TypeError, ValueError):
            refuse("areas", _("Choose the areas from the list."))
    areas = list(postable_areas(author).filter(pk__in=ids)) if ids else []
    if not can_post_notices(author):
        refuse("areas", _("You cannot post notices."))
    elif not ids:
        refuse("areas", _("Choose at least one area the notice goes to."))
    elif len(areas) != len(ids):
        refuse("areas", _("You can post only to the areas you look after; at least one chosen area is not one "
                          "of them."))

    cleaned_options: list[str] = []
    if reply not in Notice.Reply.values:
        refuse("reply", _("Choose what to ask the households."))
    elif reply == Notice.Reply.VOTE:
        cleaned_options = [o.strip() for o in options or [] if o and o.strip()]
        if not MIN_OPTIONS <= len(cleaned_options) <= MAX_OPTIONS:
            refuse("options", _("A vote needs 2 to 5 choices."))
        elif len(set(cleaned_options)) != len(cleaned_options):
            refuse("options", _("Each choice of the vote must be different."))
        elif any(len(o) > OPTION_MAX_LENGTH for o in cleaned_options):
            refuse("options", _("A choice is too long (at most 100 characters)."))

    deadline = None
    if isinstance(answer_by, str) and answer_by.strip():
        try:
            deadline = date.fromisoformat(answer_by.strip())
        except ValueError:
            refuse("answer_by", _("Enter the answer-by date as a date (2026-12-24)."))
    elif isinstance(answer_by, date):
        deadline = answer_by
    if deadline is not None and deadline < timezone.now().astimezone(tenant_time_zone()).date():
        refuse("answer_by", _("The answer-by date has passed already."))
    if deadline is not None and not reply:
        deadline = None  # nothing to answer

    if len(uploads) > MAX_ATTACHMENTS:
        refuse("attachments", _("At most 5 attachments."))
    limit = attachment_limit()
    for upload in uploads:
        if upload.size > limit:
            refuse("attachments", _("“%(name)s” is too big: attachments may be at most %(size)s MB.")
                   % {"name": clean_file_name(upload.name), "size": f"{limit / 1024 / 1024:g}"})
    if "attachments" not in errors:
        for upload in uploads:
            upload.data = upload.read()
            upload.content_type = sniff(upload.data) or ""
            if len(upload.data) > limit:
                refuse("attachments", _("“%(name)s” is too big: attachments may be at most %(size)s MB.")
                       % {"name": clean_file_name(upload.name), "size": f"{limit / 1024 / 1024:g}"})
            elif not upload.content_type:
                refuse("attachments", _("“%(name)s” is not a PDF or an image (PNG, JPEG, GIF, WebP).")
                       % {"name": clean_file_name(upload.name)})
    if errors:
        raise ValidationError(errors)
    return {"title": title, "body": body, "translations": cleaned_translations, "areas": areas, "reply": reply,
            "options": cleaned_options, "answer_by": deadline, "uploads": uploads}


def do_post_notice(author, *, title: str, body: str, area_ids, translations: dict | None = None, reply: str = "",
                   options=None, answer_by=None, uploads: list[Upload] | None = None) -> Notice:
    """Post and publish a notice, or raise ValidationError and save nothing."""
    values = check_notice_input(author, title=title, body=body, translations=translations, area_ids=area_ids,
                                reply=reply, options=options, answer_by=answer_by, uploads=uploads or [])
    with transaction.atomic():
        notice = Notice.objects.create(author=author, title=values["title"], body=values["body"],
                                       translations=values["translations"], reply=values["reply"],
                                       options=values["options"], answer_by=values["answer_by"])
        notice.areas.set(values["areas"])
        NoticeAttachment.objects.bulk_create([
            NoticeAttachment(notice=notice, name=clean_file_name(u.name), content_type=u.content_type,
                             data=u.data, size=len(u.data)) for u in values["uploads"]])
        do_publish_notice(notice)
    return notice


def language_for(notice: Notice, language: str) -> str:
    """The language a reader of `language` gets the notice in: theirs if it was translated."""
    return language if language != "ja" and language in (notice.translations or {}) else "ja"


def content_for(notice: Notice, language: str) -> tuple[str, str]:
    """(title, text) of the notice in `language` (Japanese if it has no such translation)."""
    text = (notice.translations or {}).get(language_for(notice, language))
    return (text["title"], text["body"]) if text else (notice.title, notice.body)


def households_of(notice: Notice) -> list[NoticeReceipt]:
    """One unsaved receipt per household of the active residents in the notice's areas:
    on the household's first resident by id (a resident with no household key is a
    household alone); by LINE to its first member with a linked account, else by email to
    its first member with an address, else on paper."""
    paths = list(notice.areas.values_list("path", flat=True))
    within = Q(pk__in=[])
    for path in paths:
        within |= Q(area__path__startswith=path)
    rows = (Resident.objects.filter(within, status=Resident.Status.ACTIVE).order_by("pk")
            .values_list("pk", "area_id", "household_key", "line_user_id", "email", "language"))
    receipts: dict[str, NoticeReceipt] = {}
    for pk, area_id, key, line_user_id, email, language in rows:
        household = key or f"resident:{pk}"
        receipt = receipts.get(household)
        if receipt is None:
            receipt = receipts[household] = NoticeReceipt(
                notice=notice, resident_id=pk, area_id=area_id, household_key=key,
                language=language_for(notice, language))
        if line_user_id and not receipt.line_user_id:
            receipt.line_user_id, receipt.language = line_user_id, language_for(notice, language)
        if email and not receipt.email and not receipt.line_user_id:
            receipt.email, receipt.language = email, language_for(notice, language)
    for receipt in receipts.values():
        if receipt.line_user_id:
            receipt.email = ""
        receipt.sent_via = "line" if receipt.line_user_id else "email" if receipt.email else "paper"
    return list(receipts.values())


def do_publish_notice(notice: Notice) -> int:
    """Create the households' receipts (in bulk) and, after commit, send the LINE and email
    ones. Publishing twice changes nothing. Returns the number of receipts created."""
    with transaction.atomic():
        if not Notice.objects.filter(pk=notice.pk, published_at=None).update(published_at=timezone.now()):
            return 0
        receipts = households_of(notice)
        NoticeReceipt.objects.bulk_create(receipts, batch_size=2000, ignore_conflicts=True)
        if any(r.sent_via in SENT_BY_TASK for r in receipts):
            from outreach.tasks import send_notice

            enqueue_on_commit(send_notice, notice.pk)
    notice.refresh_from_db(fields=["published_at"])
    return len(receipts)


# Delivery by LINE -----------------------------------------------------------------------

def batch_retry_key(notice: Notice, language: str, receipt_ids: list[int]) -> str:
    """The retry key of one multicast: fixed by the batch's receipts, so sending the same
    batch again (a task run twice, an answer lost) shows it to nobody twice."""
    digest = hashlib.sha256(",".join(map(str, receipt_ids)).encode()).hexdigest()
    return str(uuid.uuid5(uuid.NAMESPACE_URL,
                          f"mimamori:{connection.schema_name}:notice:{notice.pk}:{language}:{digest}"))


def line_messages(notice: Notice, language: str) -> list:
    """The LINE message of the notice, the same for every household of one language: the
    text, and buttons to open it (which answers with the household's own link) and to answer."""
    from linebot.v3.messaging import PostbackAction, QuickReply, QuickReplyItem, TextMessage

    title, body = content_for(notice, language)
    with translation.override(language if language in dict(settings.LANGUAGES) else "en"):
        head = _("Circular board") + f": {title}"
        tail = _("Tap “Read the notice” to read it with its attachments and mark it read.")
        items = [(_("Read the notice"), f"notice:{notice.pk}:open")]
        for value, label in choices_of(notice):
            items.append((label, f"notice:{notice.pk}:answer:{value}"))
    room = LINE_TEXT_LIMIT - len(head) - len(tail) - 4
    text = f"{head}\n\n{body if len(body) <= room else body[: room - 1] + '…'}\n\n{tail}"
    return [TextMessage(text=text, quick_reply=QuickReply(items=[
        QuickReplyItem(action=PostbackAction(label=label[:LINE_LABEL_LIMIT], display_text=label[:300], data=data))
        for label, data in items]))]


def do_send_notice(notice_id: int) -> dict:
    """Send the notice's LINE receipts not yet sent, up to 500 a multicast per language;
    each batch is marked sent when LINE took it. A refusal puts its batch on paper; a
    transient failure stops the run (`retry`: run again later). Without LINE set up for
    the tenant, every LINE receipt goes on paper. Then the email receipts (_send_emails)."""
    notice = Notice.objects.filter(pk=notice_id).first()
    result = {"sent": 0, "paper": 0, "retry": False}
    if notice is None:
        return result
    _send_line(notice, result)
    if not result["retry"]:
        _send_emails(notice, result)
    return result


def _send_line(notice: Notice, result: dict) -> None:
    pending = NoticeReceipt.objects.filter(notice=notice, sent_via="line", sent_at=None)
    if not pending.exists():
        return
    if not credentials.current().line_ready:
        result["paper"] += pending.update(sent_via="paper")
        return
    for language in list(pending.order_by().values_list("language", flat=True).distinct()):
        while True:
            batch = list(pending.filter(language=language).order_by("pk")
                         .values_list("pk", "line_user_id")[:LINE_BATCH])
            if not batch:
                break
            ids = [pk for pk, _user in batch]
            to = list(dict.fromkeys(user for _pk, user in batch))
            answer = line_multicast(to, line_messages(notice, language),
                                    retry_key=batch_retry_key(notice, language, ids))
            if answer.ok:
                result["sent"] += NoticeReceipt.objects.filter(pk__in=ids, sent_at=None).update(sent_at=timezone.now())
            elif answer.transient:
                logger.warning("notice %s: LINE multicast failed (%s); retried later", notice.pk, answer.error)
                result["retry"] = True
                return
            else:
                logger.warning("notice %s: LINE refused a multicast (%s); on paper", notice.pk, answer.error)
                result["paper"] += NoticeReceipt.objects.filter(pk__in=ids).update(sent_via="paper")


# Delivery by email ----------------------------------------------------------------------

def email_message(receipt: NoticeReceipt, smtp=None, *, sender: str, domain: str | None) -> EmailMessage:
    """The notice as an email to the household, in its language, with its own link (to the
    attachments, the answer and the read receipt), from `sender`. Its Message-ID is fixed per
    receipt, so a copy sent twice (SMTP has no idempotency) shows once in the household's
    mail program."""
    notice = receipt.notice
    title, body = content_for(notice, receipt.language)
    with translation.override(page_language(receipt)):
        subject = _("Circular board") + f": {title}"
        tail = _("Open this link to read it with its attachments and to answer; the office then sees you have "
                 "read it: %(url)s") % {"url": notice_url(receipt)}
    return EmailMessage(subject=subject, body=f"{title}\n\n{body}\n\n{tail}\n", from_email=sender,
                        to=[receipt.email], connection=smtp,
                        headers={"Message-ID": message_id(f"notice-{notice.pk}-{receipt.pk}", domain)})


def _send_emails(notice: Notice, result: dict) -> None:
    """Each email receipt not yet sent, over one SMTP connection, marked sent as it goes.
    An address the server refuses puts that household on paper; a failure of the server
    stops the run (`retry`)."""
    pending = list(NoticeReceipt.objects.filter(notice=notice, sent_via="email", sent_at=None)
                   .select_related("notice").order_by("pk"))
    if not pending:
        return
    sender, domain = credentials.current().email_from, primary_domain(connection.schema_name)
    try:
        with get_connection(timeout=timeout_seconds()) as smtp:
            for receipt in pending:
                try:
                    email_message(receipt, smtp, sender=sender, domain=domain).send()
                except OutcomeUnknown:  # the server has it, its answer was lost: never sent again
                    logger.warning("notice %s: no answer to the email of receipt %s; taken as sent", notice.pk,
                                   receipt.pk)
                except smtplib.SMTPRecipientsRefused:
                    logger.warning("notice %s: the address of receipt %s was refused; on paper", notice.pk, receipt.pk)
                    result["paper"] += NoticeReceipt.objects.filter(pk=receipt.pk).update(sent_via="paper")
                    continue
                result["sent"] += NoticeReceipt.objects.filter(pk=receipt.pk, sent_at=None).update(
                    sent_at=timezone.now())
    except (smtplib.SMTPException, OSError) as exc:
        logger.warning("notice %s: email failed (%s); retried later", notice.pk, exc)
        result["retry"] = True


def do_put_on_paper(notice_id: int) -> int:
    """The LINE and email receipts never sent go on paper (after the last attempt)."""
    return NoticeReceipt.objects.filter(notice_id=notice_id, sent_via__in=SENT_BY_TASK, sent_at=None).update(
        sent_via="paper")


def notices_waiting_to_send(older_than: timedelta = timedelta(minutes=5)) -> list[int]:
    """Notices published a while ago with LINE or email receipts not yet sent: their send task was
    lost (a broker down at commit) or is waiting to retry. The sweep sends them again; a
    batch LINE took already answers 409 and is shown to nobody twice. LINE keeps a retry
    key for 24 hours only: after LINE_GIVE_UP, what is still waiting goes on paper."""
    now = timezone.now()
    stale = NoticeReceipt.objects.filter(sent_via__in=SENT_BY_TASK, sent_at=None,
                                         notice__published_at__lt=now - LINE_GIVE_UP)
    if stale.update(sent_via="paper"):
        logger.warning("LINE and email receipts waiting for %s put on paper", LINE_GIVE_UP)
    return list(NoticeReceipt.objects.filter(sent_via__in=SENT_BY_TASK, sent_at=None,
                                             notice__published_at__lt=now - older_than)
                .order_by("notice_id").values_list("notice_id", flat=True).distinct()[:100])


# Reading and answering ----------------------------------------------------------------

def _signer() -> signing.Signer:
    # Per tenant: one tenant's notice link means nothing on another's host.
    return signing.Signer(salt=f"mimamori.notice.{connection.schema_name}", sep=".")


def receipt_token(receipt: NoticeReceipt) -> str:
    return _signer().sign(str(receipt.pk))


def receipt_for_token(token: str) -> NoticeReceipt | None:
    """The receipt a notice link names, or None for a token that is not one of this tenant's."""
    try:
        receipt_id = int(_signer().unsign(token or ""))
    except (signing.BadSignature, ValueError):
        return None
    return (NoticeReceipt.objects.select_related("notice", "resident", "area")
            .filter(pk=receipt_id, notice__published_at__isnull=False).first())


def notice_url(receipt: NoticeReceipt) -> str:
    return absolute_url(connection.schema_name, reverse("residents:notice", args=[receipt_token(receipt)]))


def page_language(receipt: NoticeReceipt) -> str:
    """The language of a reader's page around the notice (the interface has ja and en)."""
    return receipt.language if receipt.language in dict(settings.LANGUAGES) else "en"


def do_read_notice(receipt: NoticeReceipt, via: str = "web", at: datetime | None = None, actor=None) -> bool:
    """Mark the receipt read (the first read's time is kept) and, the first time, log a
    contact for its resident: reading is a sign of life. `actor`: who recorded a reply
    slip handed back on paper. Returns True for the first read."""
    at = at or timezone.now()
    with transaction.atomic():
        if not NoticeReceipt.objects.filter(pk=receipt.pk, read_at=None).update(read_at=at, read_via=via):
            return False
        with translation.override(settings.LANGUAGE_CODE):
            note = _("Read the notice “%(title)s”") % {"title": receipt.notice.title}
        do_log_contact(actor=actor, resident=receipt.resident, occurred_at=at, channel=Channel.NOTICE_READ,
                       outcome=Outcome.FINE, note=note[:2000],
                       idempotency_key=uuid.uuid5(READ_CONTACT, f"{connection.schema_name}:{receipt.pk}"))
    receipt.read_at, receipt.read_via = at, via
    return True


def choices_of(notice: Notice) -> list[tuple[str, str]]:
    """(value, label) of the answers a notice takes: yes/no for attendance, the vote's
    choices (value: their number from 1), nothing otherwise."""
    if notice.reply == Notice.Reply.ATTENDANCE:
        return [(value, str(label)) for value, label in ATTENDANCE.items()]
    if notice.reply == Notice.Reply.VOTE:
        return [(str(i), option) for i, option in enumerate(notice.options, start=1)]
    return []


def answer_deadline(notice: Notice) -> datetime | None:
    """The end of the answer-by day in the tenant's time zone."""
    if notice.answer_by is None:
        return None
    return datetime.combine(notice.answer_by + timedelta(days=1), time.min, tzinfo=tenant_time_zone())


def answers_open(notice: Notice, at: datetime | None = None) -> bool:
    deadline = answer_deadline(notice)
    return bool(notice.reply) and (deadline is None or (at or timezone.now()) < deadline)


def do_answer_notice(receipt: NoticeReceipt, response: str, at: datetime | None = None, via: str = "web",
                     actor=None) -> None:
    """Record the household's answer; the last one before the answer-by date counts.
    Raises NoticeRefused (nothing changes) after that date or for an answer not offered.
    An answer marks the notice read too."""
    notice, at = receipt.notice, at or timezone.now()
    if not notice.reply:
        raise NoticeRefused(_("This notice asks for no answer."))
    if not answers_open(notice, at):
        raise NoticeRefused(_("Thank you. Answers to this notice were taken until %(date)s; it is too late "
                              "to answer now.") % {"date": notice.answer_by.strftime("%Y-%m-%d")})
    if response not in dict(choices_of(notice)):
        raise NoticeRefused(_("Choose one of the answers."))
    with transaction.atomic():
        do_read_notice(receipt, via=via, at=at, actor=actor)
        NoticeReceipt.objects.filter(pk=receipt.pk).update(response=response, responded_at=at)
    receipt.response, receipt.responded_at = response, at


def get_receipt_for_user(user, notice: Notice, receipt_id) -> NoticeReceipt:
    """A receipt of the notice whose resident `user` may see (404 alike otherwise)."""
    try:
        return (receipts_seen_by(notice, user).filter(resident__in=residents_for_user(user))
                .select_related("notice", "resident", "area").get(pk=int(receipt_id)))
    except (NoticeReceipt.DoesNotExist, ValueError, TypeError, OverflowError) as exc:
        raise Http404 from exc


def do_record_reply_slip(receipt: NoticeReceipt, actor, response: str = "") -> None:
    """A reply slip handed back on paper, recorded by an officer or staff member: the
    household read it (a sign of life, logged as theirs) and, if it says so, answered."""
    with transaction.atomic():
        do_read_notice(receipt, via="paper", actor=actor)
        if response:
            do_answer_notice(receipt, response, via="paper", actor=actor)


def parse_postback(data: str) -> tuple[int, str | None] | None:
    """(notice id, answer or None for "open") of a tap under a notice on LINE, or None."""
    match = POSTBACK_PATTERN.match(data or "")
    return (int(match["id"]), match["choice"]) if match else None


def do_receive_line_postback(line_user_id: str, data: str, at: datetime | None = None) -> str | None:
    """A tap under a notice on LINE: marks the household's receipt read (via LINE), records
    the answer if it was one, and returns the reply to send (with the household's own link),
    or None if the tap is not about a notice of this LINE account (nothing changes)."""
    parsed = parse_postback(data)
    if parsed is None or not line_user_id:
        return None
    notice_id, choice = parsed
    receipt = (NoticeReceipt.objects.select_related("notice", "resident")
               .filter(notice_id=notice_id, line_user_id=line_user_id).first())
    if receipt is None:
        return None
    with translation.override(page_language(receipt)):
        if choice is None:
            do_read_notice(receipt, via="line", at=at)
            return _("Thank you for reading. The notice and its attachments: %(url)s") % {"url": notice_url(receipt)}
        do_read_notice(receipt, via="line", at=at)
        try:
            do_answer_notice(receipt, choice, at=at, via="line")
        except NoticeRefused as refused:
            return refused.message
        label = dict(choices_of(receipt.notice))[choice]
        return _("Thank you, your answer “%(answer)s” was recorded.") % {"answer": label}


# What an officer sees -----------------------------------------------------------------

def receipts_seen_by(notice: Notice, user) -> QuerySet[NoticeReceipt]:
    """The notice's receipts in the areas `user` looks after (tallies count only these)."""
    receipts = NoticeReceipt.objects.filter(notice=notice)
    scope = area_scope(user)
    return receipts if scope is None else receipts.filter(area__in=areas_for_user(user))


def tallies(notice: Notice, user) -> dict:
    """Read and answer counts of the households `user` looks after, overall and per area."""
    receipts = receipts_seen_by(notice, user)
    rows = (receipts.order_by().values("area_id", "area__full_name", "area__path")
            .annotate(households=Count("pk"), read=Count("pk", filter=Q(read_at__isnull=False)),
                      paper=Count("pk", filter=Q(sent_via="paper")))
            .order_by("area__path"))
    per_area = [{"area_id": r["area_id"], "area": r["area__full_name"], "households": r["households"],
                 "read": r["read"], "unread": r["households"] - r["read"], "paper": r["paper"],
                 "share": _share(r["read"], r["households"])} for r in rows]
    households = sum(r["households"] for r in per_area)
    read = sum(r["read"] for r in per_area)
    counts = dict(receipts.exclude(response="").order_by().values_list("response").annotate(n=Count("pk")))
    answers = [{"value": value, "label": label, "count": counts.get(value, 0)} for value, label in choices_of(notice)]
    return {"households": households, "read": read, "unread": households - read, "share": _share(read, households),
            "per_area": per_area, "answers": answers, "answered": sum(a["count"] for a in answers)}


def _share(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0


def unread_households(notice: Notice, user) -> QuerySet[NoticeReceipt]:
    """The receipts not read yet, of residents `user` may see (watch.access), by area."""
    return (receipts_seen_by(notice, user).filter(read_at=None, resident__in=residents_for_user(user))
            .select_related("resident", "area").order_by("area__path", "resident__furigana", "pk"))


def unnamed_paper_households(notice: Notice, user) -> int:
    """How many households on paper in the areas `user` looks after they may not name
    (no consent to share with them): they get copies without a name."""
    return (receipts_seen_by(notice, user).filter(sent_via="paper")
            .exclude(resident__in=residents_for_user(user)).count())


def paper_households(notice: Notice, user) -> QuerySet[NoticeReceipt]:
    """The receipts that go on paper, of residents `user` may see: the print's reply slips."""
    return (receipts_seen_by(notice, user).filter(sent_via="paper", resident__in=residents_for_user(user))
            .select_related("resident", "area").order_by("area__path", "resident__furigana", "pk"))
