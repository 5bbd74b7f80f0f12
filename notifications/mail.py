"""Django's SMTP backend, able to tell "refused" from "maybe accepted"; and the development
backend that keeps each email as a readable file.

SMTP has no idempotency: once the whole message has been sent (the end of DATA), a
timeout or a dropped connection may hide a server that accepted it. This backend
waits longer for that one answer (NOTIFICATION_EMAIL_DATA_TIMEOUT, servers check the
message before they answer) and raises `OutcomeUnknown` when it never comes, so the
caller does not send the same email again.
"""
import functools
import re
import smtplib
from pathlib import Path

from django.conf import settings
from django.core.mail.backends import smtp
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone


class OutcomeUnknown(smtplib.SMTPException):
    """The message was sent to the server, its answer was not received."""


class _DataTimeoutMixin:
    """smtplib's data(), with its own timeout for the answer to the end of data and a
    note that the message was sent (smtplib turns a timeout into SMTPServerDisconnected)."""

    def __init__(self, *args, data_timeout: float, **kwargs):
        self.data_timeout = data_timeout
        self.message_sent = False
        super().__init__(*args, **kwargs)

    def data(self, msg):
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        if isinstance(msg, str):
            msg = smtplib._fix_eols(msg).encode("ascii")
        payload = smtplib._quote_periods(msg)
        if payload[-2:] != smtplib.bCRLF:
            payload += smtplib.bCRLF
        self.send(payload + b"." + smtplib.bCRLF)
        self.message_sent = True
        self.sock.settimeout(max(self.data_timeout, self.timeout or 0))
        return self.getreply()


class _SMTP(_DataTimeoutMixin, smtplib.SMTP):
    pass


class _SMTPSSL(_DataTimeoutMixin, smtplib.SMTP_SSL):
    pass


class EmailBackend(smtp.EmailBackend):
    def __init__(self, *args, data_timeout: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.data_timeout = settings.NOTIFICATION_EMAIL_DATA_TIMEOUT if data_timeout is None else data_timeout

    @property
    def connection_class(self):
        return functools.partial(_SMTPSSL if self.use_ssl else _SMTP, data_timeout=self.data_timeout)

    def _send(self, email_message):
        try:
            return super()._send(email_message)
        except smtplib.SMTPResponseException:
            raise  # the server answered: accepted or refused is known
        except (OSError, smtplib.SMTPException) as exc:
            if getattr(self.connection, "message_sent", False):
                raise OutcomeUnknown(f"{type(exc).__name__}: {exc}") from exc
            raise


class DevelopmentFileBackend(BaseEmailBackend):
    """Development without an SMTP server: each email becomes one readable text file in
    EMAIL_FILE_PATH (.data/mail/), named by time and recipient, with its headers and
    body as written (Django's own file backend stores encoded MIME, unreadable for
    Japanese subjects)."""

    def send_messages(self, email_messages) -> int:
        folder = Path(settings.EMAIL_FILE_PATH)
        folder.mkdir(parents=True, exist_ok=True)
        for message in email_messages:
            stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S-%f")
            to = re.sub(r"[^A-Za-z0-9@._-]", "_", (message.to or ["nobody"])[0])[:60]
            lines = [f"From: {message.from_email}", f"To: {', '.join(message.to)}",
                     *([f"Cc: {', '.join(message.cc)}"] if message.cc else []),
                     f"Date: {timezone.localtime():%Y-%m-%d %H:%M:%S %Z}", f"Subject: {message.subject}",
                     "", message.body]
            lines += [f"\n--- {mimetype} ---\n{content}" for content, mimetype in getattr(message, "alternatives", [])
                      if mimetype != "text/html"]
            (folder / f"{stamp}-{to}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return len(email_messages)
