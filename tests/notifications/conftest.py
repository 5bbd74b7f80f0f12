"""A local fake of the providers' HTTP APIs, and the settings that point the real
client libraries at it.

The fake itself is notifications.fake_providers (the benchmarks and the demo use it too).
"""
import base64
import contextlib
import email
import json
import os
import socketserver
import threading
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notifications.fake_providers import (  # noqa: F401 - the tests import them from here
    LINE_SECRET,
    LINE_TOKEN,
    LINE_USER,
    TWILIO_FROM,
    TWILIO_SID,
    TWILIO_TOKEN,
    FakeProviders,
    Handler,
    Recorded,
    Rule,
    serve,
    stop,
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def fake_providers(settings):
    """The fake provider server, with every provider's settings pointed at it."""
    fake, server = serve()
    vapid_key = ec.generate_private_key(ec.SECP256R1())
    settings.LINE_API_BASE = fake.url
    settings.LINE_CHANNEL_ACCESS_TOKEN = LINE_TOKEN
    settings.LINE_CHANNEL_SECRET = LINE_SECRET
    settings.TWILIO_API_BASE = fake.url
    settings.TWILIO_ACCOUNT_SID = TWILIO_SID
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.TWILIO_FROM_NUMBER = TWILIO_FROM
    settings.VAPID_PRIVATE_KEY = b64url(vapid_key.private_numbers().private_value.to_bytes(32, "big"))
    settings.VAPID_PUBLIC_KEY = b64url(vapid_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))
    settings.VAPID_SUBJECT = "mailto:ops@mimamori.test"
    settings.WEBPUSH_ENDPOINT_PATTERN = r"^http://127\.0\.0\.1:\d+/push/"
    settings.NOTIFICATION_RETRY_DELAYS = [0, 0, 0]
    settings.NOTIFICATION_PROVIDER_TIMEOUT = 2
    fake.vapid_public_key = vapid_key.public_key()
    yield fake
    stop(fake, server)


@dataclass
class PushReceiver:
    """A browser's side of a push subscription: its keys, to decrypt what arrives."""

    subscription: dict
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    def decrypt(self, body: bytes) -> dict:
        import http_ece

        return json.loads(http_ece.decrypt(body, private_key=self.private_key, auth_secret=self.auth,
                                           version="aes128gcm"))


@pytest.fixture
def push_receiver(fake_providers):
    key = ec.generate_private_key(ec.SECP256R1())
    auth = os.urandom(16)
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    subscription = {"endpoint": f"{fake_providers.url}/push/phone-1", "keys": {"p256dh": b64url(public),
                                                                                "auth": b64url(auth)}}
    return PushReceiver(subscription, key, auth)



# A fake SMTP server ---------------------------------------------------------------
@dataclass
class FakeSMTP:
    """A small SMTP server (socketserver, a thread per connection) that records every
    message it accepted, at the end of DATA, before it answers. `late(n, seconds)`: the
    next n messages are answered 250 only after `seconds` (accepted, answered late);
    `refuse(n, code, command)`: the next n MAIL (or RCPT) commands are answered `code`."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list = field(default_factory=list)  # email.message.Message, in the order accepted
    lock: threading.Lock = field(default_factory=threading.Lock)
    rules: list[Rule] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def late(self, count: int, seconds: float) -> None:
        self.rules.append(Rule("slow", count, seconds=seconds, path="DATA"))

    def refuse(self, count: int, code: int = 451, command: str = "MAIL") -> None:
        """The next `count` `command`s (MAIL: the whole message; RCPT: its recipient) get `code`."""
        self.rules.append(Rule("fail", count, status=code, path=command))

    def _rule_for(self, command: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.remaining > 0 and rule.path == command:
                    rule.remaining -= 1
                    return rule
        return None

    def message_ids(self) -> list[str]:
        with self.lock:
            return [m["Message-ID"] for m in self.messages]


class SMTPHandler(socketserver.StreamRequestHandler):
    fake: FakeSMTP

    def reply(self, line: str) -> None:
        with contextlib.suppress(OSError):  # the client may have given up
            self.wfile.write(line.encode() + b"\r\n")
            self.wfile.flush()

    def handle(self):
        self.reply("220 fake-smtp ESMTP")
        while line := self.rfile.readline():
            command = line.decode("ascii", "replace").strip()
            verb = command.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 fake-smtp")
            elif verb == "MAIL":
                rule = self.fake._rule_for("MAIL")
                self.reply(f"{rule.status} try again later" if rule else "250 OK")
            elif verb == "RCPT":
                rule = self.fake._rule_for("RCPT")
                self.reply(f"{rule.status} no such user" if rule else "250 OK")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    lines.append(data[1:] if data.startswith(b"..") else data)
                message = email.message_from_bytes(b"".join(lines))
                with self.fake.lock:
                    self.fake.messages.append(message)  # accepted, whenever the answer arrives
                rule = self.fake._rule_for("DATA")
                if rule:
                    self.fake.release.wait(rule.seconds)
                self.reply("250 OK queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


def serve_fake_smtp():
    """Run a FakeSMTP until the generator is closed (the body of a fixture)."""
    fake = FakeSMTP()
    handler = type("BoundSMTPHandler", (SMTPHandler,), {"fake": fake})
    server = socketserver.ThreadingTCPServer((fake.host, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.port = server.server_address[1]
    yield fake
    fake.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_smtp():
    """The fake SMTP server; point EMAIL_HOST/EMAIL_PORT at (fake.host, fake.port)."""
    yield from serve_fake_smtp()


@pytest.fixture
def smtp_settings(fake_smtp, settings):
    """The product's SMTP backend pointed at the fake SMTP server."""
    settings.EMAIL_BACKEND = "notifications.mail.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = fake_smtp.host, fake_smtp.port
    return fake_smtp
