"""A local fake of the providers' HTTP APIs: what the tests, the benchmarks and the demo
point the real client libraries (line-bot-sdk, twilio, pywebpush) at.

It speaks enough of:
- LINE's Messaging API: push, multicast (up to 500 recipients), reply, issuing a link
  token, the account-link dialog (which, like LINE, sends the `accountLink` event to the
  tenant's webhook, signed with the channel secret), `X-Line-Retry-Key` (a repeat is
  answered 409 and shows nothing twice) and LINE's rate limits (429 above push 2,000 and
  multicast 200 requests a second);
- Twilio's Messages API (create, list) and Calls API (create; the TwiML the call would
  play is fetched, so a test can see the `<Gather>`);
- a web-push endpoint (/push/...).

It records every request and can be told to fail, hang or be slow for the next
requests (optionally only on one path). `python3.11 manage.py fake_providers` runs it
on its own for the demo.
"""
import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests
from requests.structures import CaseInsensitiveDict

# The fake's own credentials: nothing real is behind them.
LINE_TOKEN = "line-test-token"  # noqa: S105
LINE_SECRET = "line-test-secret"  # noqa: S105
TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "twilio-test-token"  # noqa: S105
TWILIO_FROM = "+815012345678"
LINE_USER = "U" + "1234567890abcdef" * 2
TWILIO_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Messages\.json(?:\?|$)")
TWILIO_CALLS = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Calls\.json(?:\?|$)")
LINK_TOKEN = re.compile(r"^/v2/bot/user/(?P<user>U[0-9a-f]{32})/linkToken$")
# LINE's limits (requests a second, per channel): https://developers.line.biz/en/reference/messaging-api/#rate-limits
RATE_LIMITS = {"/v2/bot/message/push": 2000, "/v2/bot/message/multicast": 200}
MULTICAST_MAX = 500


def line_signature(secret: str, body: bytes) -> str:
    """The X-Line-Signature LINE puts on a webhook request."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


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
    calls: list[dict] = field(default_factory=list)  # calls "Twilio" placed
    twilio_accounts: dict[str, str] = field(default_factory=lambda: {TWILIO_SID: TWILIO_TOKEN})
    line_tokens: set[str] = field(default_factory=lambda: {LINE_TOKEN})
    line_secret: str = LINE_SECRET
    # What LINE showed each user: (user id, message dict), once per accepted request.
    line_delivered: list[tuple[str, dict]] = field(default_factory=list)
    retry_keys: dict[str, dict] = field(default_factory=dict)  # X-Line-Retry-Key → the first answer
    link_tokens: dict[str, str] = field(default_factory=dict)  # link token → LINE user id
    # Where the account-link dialog sends the accountLink event (the tenant's LINE webhook).
    line_webhook_url: str = ""
    line_webhook_host: str = ""  # its Host header (a tenant's host name served on 127.0.0.1)
    record_bodies: bool = True  # off in benchmarks: counts only
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rate_limited: int = 0
    _window: dict[str, tuple[int, int]] = field(default_factory=dict)

    def fail(self, count: int, status: int = 500, path: str = "") -> None:
        """The next `count` requests (to paths starting with `path`) answer `status`."""
        self.rules.append(Rule("fail", count, status=status, path=path))

    def hang(self, count: int = 1, path: str = "") -> None:
        """The next `count` requests get no answer until the server stops."""
        self.rules.append(Rule("hang", count, path=path))

    def slow(self, count: int, seconds: float, path: str = "") -> None:
        """The next `count` requests are answered normally after `seconds`."""
        self.rules.append(Rule("slow", count, path=path, seconds=seconds))

    def to(self, prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    def line_replies(self) -> list[tuple[str, str]]:
        """What was answered with LINE's reply API, as (reply token, text)."""
        return [(r.json()["replyToken"], "\n".join(m.get("text", "") for m in r.json()["messages"]))
                for r in self.to("/v2/bot/message/reply")]

    def shown_to(self, line_user_id: str) -> list[dict]:
        """The messages LINE showed this user (push and multicast, never twice for a retry)."""
        with self.lock:
            return [message for user, message in self.line_delivered if user == line_user_id]

    def reset(self) -> None:
        """Forget everything received and every rule, as if just started (a module's shared
        fake between tests: LINE's retry keys too, since ids start again in each test)."""
        with self.lock:
            for recorded in (self.requests, self.rules, self.sms_messages, self.calls, self.line_delivered):
                recorded.clear()
            for remembered in (self.retry_keys, self.link_tokens, self.counts, self._window):
                remembered.clear()
            self.rate_limited = 0

    def tally(self, line_users: set[str], numbers: set[str]) -> dict:
        """What reached whom, for a benchmark that expects every LINE user in `line_users` and
        every number in `numbers` to be shown a question once: who was shown, who twice, who never."""
        from collections import Counter

        with self.lock:
            shown = Counter(user for user, _message in self.line_delivered)
            texted = Counter(m["to"] for m in self.sms_messages)
            counts, limited = dict(self.counts), self.rate_limited
        twice = sum(n - 1 for n in [*shown.values(), *texted.values()] if n > 1)
        never = len(line_users - set(shown)) + len(numbers - set(texted))
        words = (f"LINE showed {len(shown)} users in {counts.get('/v2/bot/message/multicast', 0)} multicasts, "
                 f"SMS to {len(texted)} numbers; duplicates {twice}, never shown {never}, 429s {limited}")
        return {"shown": shown, "texted": texted, "counts": counts, "limited": limited, "twice": twice,
                "never": never, "clean": not (twice or never or limited), "words": words}

    def summary(self, last: int = 50) -> dict:
        """What the fake received, for a person trying the demo: counts, the latest SMS and
        calls, and the latest LINE messages per user."""
        with self.lock:
            line = [{"to": user, "text": message.get("text", message.get("altText", ""))}
                    for user, message in self.line_delivered[-last:]]
            return {"requests": dict(self.counts), "rate_limited": self.rate_limited,
                    "sms": [{k: m[k] for k in ("to", "body", "date_created")} for m in self.sms_messages[-last:]],
                    "calls": [{k: c[k] for k in ("to", "url", "date_created")} for c in self.calls[-last:]],
                    "line": line}

    def _rule_for(self, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.remaining > 0 and path.startswith(rule.path):
                    rule.remaining -= 1
                    return rule
        return None

    def _over_limit(self, path: str) -> bool:
        limit = RATE_LIMITS.get(path)
        if limit is None:
            return False
        second = int(time.monotonic())
        with self.lock:
            start, count = self._window.get(path, (second, 0))
            count = count + 1 if start == second else 1
            self._window[path] = (second, count)
            if count > limit:
                self.rate_limited += 1
                return True
        return False


class Handler(BaseHTTPRequestHandler):
    fake: FakeProviders
    protocol_version = "HTTP/1.1"  # keep-alive: the clients' pools reuse connections

    def log_message(self, format, *args):  # keep output quiet
        pass

    def _answer(self, status: int, payload, content_type: str = "application/json") -> None:
        body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self, method: str, body: bytes) -> None:
        with self.fake.lock:
            self.fake.counts[urlsplit(self.path).path] += 1
            if self.fake.record_bodies:
                self.fake.requests.append(Recorded(method, self.path, CaseInsensitiveDict(self.headers.items()), body))

    def _twilio_account(self, pattern=TWILIO_MESSAGES) -> str | None:
        """The account of a Twilio request whose path and Basic auth name a known one."""
        match = pattern.match(self.path)
        if not match:
            return None
        sid = match["sid"]
        token = self.fake.twilio_accounts.get(sid)
        expected = "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()
        return sid if token and self.headers.get("Authorization") == expected else ""

    def _line_authorised(self) -> bool:
        return self.headers.get("Authorization") in {f"Bearer {t}" for t in self.fake.line_tokens}

    def do_GET(self):
        self._record("GET", b"")
        path = urlsplit(self.path).path
        if path == "/dialog/bot/accountLink":
            return self._account_link_dialog()
        if path == "/_fake/":  # for a person reading it in the browser: Japanese as it is, indented
            body = json.dumps(self.fake.summary(), ensure_ascii=False, indent=1).encode()
            return self._answer(200, body, "application/json; charset=utf-8")
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

    def _account_link_dialog(self):
        """The user agreed in LINE's dialog: LINE sends the accountLink event with the nonce
        to the webhook, then shows the user a page."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        with self.fake.lock:
            user = self.fake.link_tokens.pop(query.get("linkToken", ""), None)
        result = "ok" if user and query.get("nonce") else "failed"
        if self.fake.line_webhook_url:
            send_line_events(self.fake.line_webhook_url, [{
                "type": "accountLink", "mode": "active", "timestamp": int(time.time() * 1000),
                "source": {"type": "user", "userId": user or LINE_USER},
                "webhookEventId": uuid.uuid4().hex.upper()[:26], "deliveryContext": {"isRedelivery": False},
                "replyToken": uuid.uuid4().hex, "link": {"result": result, "nonce": query.get("nonce", "")},
            }], secret=self.fake.line_secret, host=self.fake.line_webhook_host or None)
        return self._answer(200 if result == "ok" else 400, f"account link: {result}".encode(), "text/plain")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self._record("POST", body)
        path = urlsplit(self.path).path
        rule = self.fake._rule_for(self.path)
        if rule and rule.kind == "hang":  # lost on the way: the provider never saw it
            self.fake.release.wait(30)
            self.close_connection = True
            return
        if rule and rule.kind == "fail":
            return self._answer(rule.status, {"message": f"fake failure {rule.status}"})
        if path.startswith("/v2/bot/"):
            answer = self._line(path, body)
        elif (account := self._twilio_account()) is not None:
            answer = self._twilio_message(account, body)
        elif (account := self._twilio_account(TWILIO_CALLS)) is not None:
            answer = self._twilio_call(account, body)
        elif path.startswith("/push/"):
            answer = (201, b"")
        else:
            answer = (404, {"message": "not found"})
        if rule and rule.kind == "slow":  # accepted, answered late
            time.sleep(rule.seconds)
        return self._answer(*answer)

    def _line(self, path: str, body: bytes):
        if not self._line_authorised():
            return 401, {"message": "Authentication failed"}
        if (match := LINK_TOKEN.match(path)) is not None:
            token = uuid.uuid4().hex
            with self.fake.lock:
                self.fake.link_tokens[token] = match["user"]
            return 200, {"linkToken": token}
        if path not in ("/v2/bot/message/push", "/v2/bot/message/multicast", "/v2/bot/message/reply"):
            return 404, {"message": "not found"}
        if self.fake._over_limit(path):
            return 429, {"message": "The API rate limit has been exceeded. Try again later."}
        request = json.loads(body or b"{}")
        if path.endswith("/reply") and not request.get("replyToken"):
            return 400, {"message": "Invalid reply token"}
        if path.endswith("/multicast") and not 0 < len(request.get("to") or []) <= MULTICAST_MAX:
            return 400, {"message": "The request body has 1 error(s)", "details": [{"property": "to"}]}
        key = self.headers.get("X-Line-Retry-Key")
        with self.fake.lock:
            if key and key in self.fake.retry_keys:  # accepted before: shown once
                return 409, {"message": "The retry key is already accepted",
                             "sentMessages": self.fake.retry_keys[key].get("sentMessages", [])}
            answer = {"sentMessages": [{"id": "4611", "quoteToken": "q"}]} if not path.endswith("multicast") else {}
            if key:
                self.fake.retry_keys[key] = answer
            recipients = request.get("to")
            recipients = recipients if isinstance(recipients, list) else [recipients] if recipients else []
            for user in recipients:
                for message in request.get("messages", []):
                    self.fake.line_delivered.append((user, message))
        return 200, answer

    def _twilio_message(self, account: str, body: bytes):
        if not account:
            return 401, {"code": 20003, "message": "Authenticate", "status": 401}
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        with self.fake.lock:
            message = {"sid": f"SM{len(self.fake.sms_messages) + 1:032x}", "status": "queued",
                       "account_sid": account, "to": form.get("To"), "from": form.get("From"),
                       "body": form.get("Body"), "date_created": formatdate(usegmt=True)}
            self.fake.sms_messages.append(message)  # accepted, whenever the answer arrives
        return 201, message

    def _twilio_call(self, account: str, body: bytes):
        if not account:
            return 401, {"code": 20003, "message": "Authenticate", "status": 401}
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        with self.fake.lock:
            call = {"sid": f"CA{len(self.fake.calls) + 1:032x}", "status": "queued", "account_sid": account,
                    "to": form.get("To"), "from": form.get("From"), "url": form.get("Url"),
                    "twiml": form.get("Twiml"), "date_created": formatdate(usegmt=True)}
            self.fake.calls.append(call)
        return 201, call


def serve(host: str = "127.0.0.1", port: int = 0) -> tuple[FakeProviders, ThreadingHTTPServer]:
    """Start the fake in a thread; its address is `fake.url`. Stop with `stop(fake, server)`."""
    fake = FakeProviders()
    handler = type("BoundHandler", (Handler,), {"fake": fake})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.request_queue_size = 1024
    # A short poll: stop() waits for the loop to notice (0.5 s by default, at the end of every test).
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    fake.url = f"http://{host}:{server.server_address[1]}"
    return fake, server


def stop(fake: FakeProviders, server: ThreadingHTTPServer) -> None:
    fake.release.set()
    server.shutdown()
    server.server_close()


def send_line_events(webhook_url: str, events: list[dict], *, secret: str = LINE_SECRET,
                     host: str | None = None) -> int:
    """POST events to a LINE webhook as LINE does (signed body); returns the HTTP status."""
    body = json.dumps({"destination": "U" + "0" * 32, "events": events}, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "X-Line-Signature": line_signature(secret, body)}
    if host:
        headers["Host"] = host
    return requests.post(webhook_url, data=body, headers=headers, timeout=10).status_code


def line_event(kind: str, user_id: str, **fields) -> dict:
    """One webhook event as LINE writes it: "message" (text=...), "postback" (data=...),
    "follow", "unfollow"."""
    event = {"type": kind, "mode": "active", "timestamp": int(time.time() * 1000),
             "source": {"type": "user", "userId": user_id}, "webhookEventId": uuid.uuid4().hex.upper()[:26],
             "deliveryContext": {"isRedelivery": False}, "replyToken": uuid.uuid4().hex}
    if kind == "message":
        event["message"] = {"type": "text", "id": str(int(time.time() * 1e6)), "text": fields["text"],
                            "quoteToken": "q"}
    elif kind == "postback":
        event["postback"] = {"data": fields["data"]}
    elif kind == "unfollow":
        del event["replyToken"]  # LINE gives no reply token for an unfollow
    return event
