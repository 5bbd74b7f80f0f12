"""A local fake of the providers' HTTP APIs, and the settings that point the real
client libraries at it.

The fake speaks enough of LINE's push and reply APIs, Twilio's Messages API and a web-push
endpoint; it records every request and can be told to fail, hang or be slow for the
next requests (optionally only on one path).
"""
import base64
import contextlib
import email
import json
import os
import re
import socketserver
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from requests.structures import CaseInsensitiveDict

LINE_TOKEN = "line-test-token"
LINE_SECRET = "line-test-secret"
TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "twilio-test-token"
TWILIO_FROM = "+815012345678"
LINE_USER = "U" + "1234567890abcdef" * 2
TWILIO_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Messages\.json(?:\?|$)")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Recorded:
    method: str
    path: str
    headers: CaseInsensitiveDict
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


@dataclass
class Rule:
    kind: str  # "fail", "hang" or "slow"
    remaining: int
    status: int = 500
    path: str = ""
    seconds: float = 0.0


@dataclass
class FakeProviders:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sms_messages: list[dict] = field(default_factory=list)  # what "Twilio" accepted
    twilio_accounts: dict[str, str] = field(default_factory=lambda: {TWILIO_SID: TWILIO_TOKEN})
    line_tokens: set[str] = field(default_factory=lambda: {LINE_TOKEN})

    def fail(self, count: int, status: int = 500, path: str = "") -> None:
        """The next `count` requests (to paths starting with `path`) answer `status`."""
        self.rules.append(Rule("fail", count, status=status, path=path))

    def hang(self, count: int = 1, path: str = "") -> None:
        """The next `count` requests get no answer until the test ends."""
        self.rules.append(Rule("hang", count, path=path))

    def slow(self, count: int, seconds: float, path: str = "") -> None:
        """The next `count` requests are answered normally after `seconds`."""
        self.rules.append(Rule("slow", count, path=path, seconds=seconds))

    def to(self, prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    def line_replies(self) -> list[tuple[str, str]]:
        """What was answered with LINE's reply API, as (reply token, text)."""
        return [(r.json()["replyToken"], "\n".join(m["text"] for m in r.json()["messages"]))
                for r in self.to("/v2/bot/message/reply")]

    def _rule_for(self, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.remaining > 0 and path.startswith(rule.path):
                    rule.remaining -= 1
                    return rule
        return None


class Handler(BaseHTTPRequestHandler):
    fake: FakeProviders

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _answer(self, status: int, payload) -> None:
        body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _twilio_account(self) -> str | None:
        """The account of a Twilio request whose path and Basic auth name a known one."""
        match = TWILIO_MESSAGES.match(self.path)
        if not match:
            return None
        sid = match["sid"]
        token = self.fake.twilio_accounts.get(sid)
        expected = "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()
        return sid if token and self.headers.get("Authorization") == expected else ""

    def do_GET(self):
        """Twilio's message list (To, From, PageSize), newest first, as its client reads it."""
        with self.fake.lock:
            self.fake.requests.append(Recorded("GET", self.path, CaseInsensitiveDict(self.headers.items()), b""))
        account = self._twilio_account()
        if account is None:
            return self._answer(404, {"message": "not found"})
        if not account:
            return self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
        rule = self.fake._rule_for(self.path)
        if rule and rule.kind == "fail":
            return self._answer(rule.status, {"message": f"fake failure {rule.status}"})
        query = parse_qs(urlsplit(self.path).query)
        with self.fake.lock:
            found = [m for m in reversed(self.fake.sms_messages) if m["account_sid"] == account
                     and m["to"] == query.get("To", [m["to"]])[0] and m["from"] == query.get("From", [m["from"]])[0]]
        size = int(query.get("PageSize", ["50"])[0])
        return self._answer(200, {"messages": found[:size], "next_page_uri": None, "page": 0, "page_size": size,
                                  "start": 0, "end": max(0, min(size, len(found)) - 1), "uri": self.path,
                                  "first_page_uri": self.path, "previous_page_uri": None})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        with self.fake.lock:
            self.fake.requests.append(Recorded("POST", self.path, CaseInsensitiveDict(self.headers.items()), body))
        rule = self.fake._rule_for(self.path)
        if rule and rule.kind == "hang":  # lost on the way: the provider never saw it
            self.fake.release.wait(30)
            return
        if rule and rule.kind == "fail":
            return self._answer(rule.status, {"message": f"fake failure {rule.status}"})
        if self.path in ("/v2/bot/message/push", "/v2/bot/message/reply"):
            if self.headers.get("Authorization") not in {f"Bearer {t}" for t in self.fake.line_tokens}:
                return self._answer(401, {"message": "Authentication failed"})
            if self.path.endswith("/reply") and not json.loads(body or b"{}").get("replyToken"):
                return self._answer(400, {"message": "Invalid reply token"})
            answer = (200, {"sentMessages": [{"id": "4611", "quoteToken": "q"}]})
        elif (account := self._twilio_account()) is not None:
            if not account:
                return self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            with self.fake.lock:
                message = {"sid": f"SM{len(self.fake.sms_messages) + 1:032x}", "status": "queued",
                           "account_sid": account, "to": form.get("To"), "from": form.get("From"),
                           "body": form.get("Body"), "date_created": formatdate(usegmt=True)}
                self.fake.sms_messages.append(message)  # accepted, whenever the answer arrives
            answer = (201, message)
        elif self.path.startswith("/push/"):
            answer = (201, b"")
        else:
            answer = (404, {"message": "not found"})
        if rule and rule.kind == "slow":  # accepted, answered late
            time.sleep(rule.seconds)
        return self._answer(*answer)


@pytest.fixture
def fake_providers(settings):
    """The fake provider server, with every provider's settings pointed at it."""
    fake = FakeProviders()
    handler = type("BoundHandler", (Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
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
    fake.release.set()
    server.shutdown()
    server.server_close()


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
    `refuse(n, code)`: the next n MAIL commands are answered `code`."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list = field(default_factory=list)  # email.message.Message, in the order accepted
    lock: threading.Lock = field(default_factory=threading.Lock)
    rules: list[Rule] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def late(self, count: int, seconds: float) -> None:
        self.rules.append(Rule("slow", count, seconds=seconds, path="DATA"))

    def refuse(self, count: int, code: int = 451) -> None:
        self.rules.append(Rule("fail", count, status=code, path="MAIL"))

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
            elif verb in ("RCPT", "RSET", "NOOP"):
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
