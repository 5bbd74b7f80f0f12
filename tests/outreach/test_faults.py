"""Escalation under faults, with a real Celery worker subprocess on the test database.

Every case ends with the same check, counted from the database and the delivery log:
each step of the concern ran once (one "notified" event per step), each of its people
has exactly one notification for it, every notification was delivered with exactly one
successful attempt (failed attempts are logged too), nothing is left pending, and the
fake provider accepted one message per notification.

The workers run with the product's own timers shortened through its environment
settings: a 2 s broker visibility timeout (a message held by a dead worker is
redelivered when the next worker starts) and an 8 s delivery lease (also the delivery
task's hard time limit, with room for a loaded machine: the provider clients are
imported before the pool forks, see config/celery.py). The periodic sweeps that beat would send are sent by the test
itself through the same broker, so that waits are short and bounded.
"""
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from notifications.models import DeliveryAttempt, Notification
from outreach.actions import ESCALATION, do_raise_concern
from outreach.models import AckLink, Concern, ConcernEvent, EscalationPolicy, EscalationStep, Target
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tenants.models import Tenant, Wakeup
from tenants.wakeups import do_lower_wakeup
from tests.conftest import make_user
from tests.notifications.conftest import (
    LINE_TOKEN,
    TWILIO_FROM,
    TWILIO_SID,
    TWILIO_TOKEN,
    FakeProviders,
    Handler,
    serve_fake_smtp,
)
from tests.notifications.helpers import set_channels
from tests.watch.conftest import make_resident
from watch.actions import do_create_area
from watch.models import Area, Assignment

LINE_PATH = "/v2/bot/message/push"
SMS_PATH = f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
BASE_DIR = Path(django_settings.BASE_DIR)
PYTHON = str(BASE_DIR / ".venv" / "bin" / "python")
if not Path(PYTHON).exists():
    PYTHON = sys.executable
WORKER_READY_S = 30.0
OUTCOME_S = 30.0
# The provider pause in the workers of the tests that reach it (30 s in production).
PAUSE_S = 5


def line_id(n: int) -> str:
    return "U" + f"{n:032x}"


# The fake providers, shared by the module: the worker is started with their address.
class AnsweringHandler(Handler):
    """The fake of tests/notifications, logging what it answered, (path, LINE retry key
    or None, status); a hung request is never answered. Like LINE, it answers 409 to a
    push whose retry key it already accepted, and does not show that message again."""

    def _answer(self, status, payload):
        key = self.headers.get("X-Line-Retry-Key")
        with self.fake.lock:
            if self.path == LINE_PATH and status == 200 and (LINE_PATH, key, 200) in self.fake.answered:
                status, payload = 409, {"message": "The retry key is already accepted"}
            self.fake.answered.append((self.path, key, status))
        super()._answer(status, payload)


@pytest.fixture(scope="module")
def fake():
    fake = FakeProviders()
    fake.answered = []
    handler = type("BoundHandler", (AnsweringHandler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    fake.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def provider(fake):
    """The module's fake, emptied for this test."""
    fake.release.set()  # anything a previous test left hanging
    fake.reset()
    with fake.lock:
        fake.answered.clear()
    fake.release = threading.Event()
    return fake


# The worker subprocesses.
def database_url() -> str:
    """The test database (its name is only known after setup) as a DATABASE_URL."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or ""
    netloc = f"{auth}@" if auth else ""
    if host.startswith("/"):
        return f"postgresql://{netloc}/{db['NAME']}?host={quote(host)}"
    return f"postgresql://{netloc}{host}{':' + str(db['PORT']) if db['PORT'] else ''}/{db['NAME']}"


def worker_env(fake: FakeProviders) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings", DJANGO_DEBUG="0", LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
        DATABASE_URL=database_url(), REDIS_URL=django_settings.REDIS_URL,
        CELERY_BROKER_URL=django_settings.CELERY_BROKER_URL, DJANGO_SECRET_KEY=django_settings.SECRET_KEY,
        CELERY_TASK_ALWAYS_EAGER="0", CELERY_VISIBILITY_TIMEOUT="2",
        LINE_API_BASE=fake.url, LINE_CHANNEL_ACCESS_TOKEN=LINE_TOKEN, LINE_CHANNEL_SECRET="line-test-secret",
        TWILIO_API_BASE=fake.url, TWILIO_ACCOUNT_SID=TWILIO_SID, TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        TWILIO_FROM_NUMBER=TWILIO_FROM,
        NOTIFICATION_RETRY_DELAYS="1,1,1", NOTIFICATION_PROVIDER_TIMEOUT="2", NOTIFICATION_LEASE_SECONDS="8",
    )
    env.pop("DATABASE_TEST_NAME", None)
    return env


class Worker:
    def __init__(self, proc: subprocess.Popen, name: str, log: Path):
        self.proc, self.name, self.log = proc, name, log

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once (they share a process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """At the end of a test: no warm shutdown needed (the next test starts afresh)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


@pytest.fixture
def workers(committed_db, provider, settings, tmp_path):
    """Start real Celery workers on the test database and Redis; all are stopped after
    the test (before committed_db empties the tables). The test process publishes to
    the same broker instead of running tasks eagerly."""
    from config.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = False
    broker = redis.Redis.from_url(django_settings.REDIS_URL)
    broker.delete("celery", "urgent", "unacked", "unacked_index")  # nothing left over from earlier tests
    started: list[Worker] = []

    def start(concurrency: int = 1, queues: str = "celery,urgent", **env: str) -> Worker:
        """`env`: settings of this worker's own (the fake SMTP server's address, timeouts)."""
        name = f"faults-{uuid.uuid4().hex[:8]}@localhost"
        log = tmp_path / f"{name.split('@')[0]}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [PYTHON, "-m", "celery", "-A", "config.celery:app", "worker", "-l", "WARNING",
                 "--concurrency", str(concurrency), "-P", "prefork", "-n", name, "--without-mingle",
                 "--without-gossip", "-Q", queues],
                cwd=BASE_DIR, env={**worker_env(provider), **env}, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        worker = Worker(proc, name, log)
        started.append(worker)
        deadline = time.monotonic() + WORKER_READY_S
        while not app.control.ping(destination=[name], timeout=0.3):
            assert proc.poll() is None, f"the worker exited with {proc.returncode}:\n{worker.log_tail()}"
            assert time.monotonic() < deadline, f"the worker did not start:\n{worker.log_tail()}"
        return worker

    yield start
    for worker in started:
        worker.stop()


def sweep() -> None:
    """What beat sends every 5 s: run the escalation steps that are due."""
    from outreach.tasks import sweep_escalations

    sweep_escalations.apply_async(expires=10)


def sweep_deliveries() -> None:
    """What beat sends every minute: re-drive notifications whose message was lost."""
    from tenants.tasks import fan_out

    fan_out.apply_async(("notifications.tasks.sweep_deliveries",), expires=50)


def wait_until(predicate, what: str, timeout: float = OUTCOME_S, every=None, workers_=()):
    """Poll until predicate() is true; call every() about once a second meanwhile."""
    deadline = time.monotonic() + timeout
    last_tick = 0.0
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.name}\n{w.log_tail()}" for w in workers_)
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")
        if every is not None and time.monotonic() - last_tick >= 1.0:
            every()
            last_tick = time.monotonic()
        time.sleep(0.1)


# Data.
@pytest.fixture
def team(committed_db):
    """A resident of tenant A with two volunteers (LINE) and a case worker (SMS)."""
    with tenant_scope("tenant_a"):
        area = do_create_area(name="大住", kind=Area.Kind.DISTRICT)
        resident = make_resident(area, "山田 花子")
    volunteers = [make_user("tenant_a", f"volunteer-{n}", User.Role.VOLUNTEER) for n in (1, 2)]
    case_worker = make_user("tenant_a", "case-worker", User.Role.CASE_WORKER)
    for n, volunteer in enumerate(volunteers, start=1):
        set_channels(volunteer, ["line"], line_user_id=line_id(n))
    set_channels(case_worker, ["sms"], phone="+819012345678")
    with tenant_scope("tenant_a"):
        Assignment.objects.create(resident=resident, user=volunteers[0])
        Assignment.objects.create(resident=resident, user=case_worker)
    return {"resident": resident, "volunteers": volunteers, "case_worker": case_worker}


def policy(*steps: tuple[str, int]) -> None:
    """The tenant's only escalation policy: (target, wait_minutes) per step, run once."""
    with tenant_scope("tenant_a"):
        p = EscalationPolicy.objects.create(name="faults", repeat_limit=1)
        for order, (target, wait) in enumerate(steps, start=1):
            EscalationStep.objects.create(policy=p, order=order, target=target, wait_minutes=wait)


def raise_concern(resident) -> Concern:
    """Raise a concern as a worried contact would; its first step is enqueued on commit."""
    with tenant_scope("tenant_a"):
        concern, opened = do_raise_concern(resident=resident, cause=Concern.Cause.WORRIED_CONTACT)
    assert opened
    return concern


def concern_state(concern_id: int) -> Concern:
    with tenant_scope("tenant_a"):
        return Concern.objects.get(pk=concern_id)


def escalation_done(concern_id: int) -> bool:
    """Every step ran (the escalation ran out of steps) and every notification was handled."""
    with tenant_scope("tenant_a"):
        exhausted = ConcernEvent.objects.filter(concern_id=concern_id, kind=ConcernEvent.Kind.EXHAUSTED).exists()
        pending = Notification.objects.filter(state=Notification.State.PENDING).exists()
    return exhausted and not pending


def delivery_log() -> dict[str, list[tuple[str, int, bool, bool]]]:
    """dedupe_key/recipient → [(channel, attempt, ok, finished)] in the order written."""
    with tenant_scope("tenant_a"):
        log = {f"{n.dedupe_key}/{n.recipient_id}": [] for n in Notification.objects.all()}
        for a in DeliveryAttempt.objects.select_related("notification").order_by("pk"):
            log[f"{a.notification.dedupe_key}/{a.notification.recipient_id}"].append(
                (a.channel, a.attempt, a.ok, a.finished_at is not None))
    return log


def assert_each_step_notified_once(concern_id: int, expected: dict[int, list[User]], fake: FakeProviders) -> None:
    """expected: step number (1-based) → the people that step notifies."""
    with tenant_scope("tenant_a"):
        notified = list(ConcernEvent.objects.filter(concern_id=concern_id, kind=ConcernEvent.Kind.NOTIFIED)
                        .values_list("data", flat=True))
        concern = Concern.objects.get(pk=concern_id)
        notifications = list(Notification.objects.select_related("recipient").order_by("pk"))
        attempts = {n.pk: list(DeliveryAttempt.objects.filter(notification=n).order_by("pk")) for n in notifications}
        events = list(ConcernEvent.objects.filter(concern_id=concern_id).values_list("kind", flat=True))
    # Each step ran once, for the people expected.
    assert sorted((d["round"], d["step"]) for d in notified) == [(1, s) for s in sorted(expected)], events
    assert {d["step"]: sorted(d["recipients"]) for d in notified} == {
        s: sorted(u.pk for u in people) for s, people in expected.items()}
    assert events.count(ConcernEvent.Kind.EXHAUSTED) == 1 and concern.next_step_at is None
    # One notification per step and person, nothing more.
    keys = sorted((n.dedupe_key, n.recipient_id) for n in notifications)
    assert keys == sorted((f"concern:{concern_id}:high:round:0:step:{s - 1}", u.pk)
                          for s, people in expected.items() for u in people)
    # Each delivered once, counted from the delivery log; nothing pending.
    for n in notifications:
        log = attempts[n.pk]
        assert n.state == Notification.State.DELIVERED, (n.dedupe_key, n.state, log)
        assert [a.ok for a in log].count(True) == 1, [(a.channel, a.attempt, a.ok, a.error) for a in log]
        assert log[-1].ok and log[-1].channel == n.delivered_via
    # The provider accepted one message per notification: one 200 per LINE retry key (the
    # key is fixed per notification; a repeat is answered 409), one 201 per SMS notification.
    line_ok = [key for path, key, status in fake.answered if path == LINE_PATH and 200 <= status < 300]
    sms_ok = [status for path, _key, status in fake.answered if path == SMS_PATH and 200 <= status < 300]
    line_keys = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"mimamori:tenant_a:{n.pk}"))  # LINE's retry key
                 for n in notifications if n.delivered_via == "line"]
    assert sorted(line_ok) == sorted(line_keys)
    assert len(sms_ok) == len([n for n in notifications if n.delivered_via == "sms"])


# The cases.
def test_a_worker_killed_inside_a_step_leaves_nothing_and_the_next_worker_runs_it_once(team, workers, provider):
    """The worker is SIGKILLed inside the step's transaction (its people's notifications
    written, not committed); the next worker runs the step once, then the next step."""
    policy((Target.ASSIGNED_VOLUNTEERS, 0), (Target.CASE_WORKERS, 0))
    volunteer, case_worker = team["volunteers"][0], team["case_worker"]
    concern = raise_concern(team["resident"])  # no worker yet: the step waits in Redis

    # Hold the tenant's escalation wakeup row: the step blocks on it at its very end.
    db = connection.settings_dict
    lock = psycopg.connect(dbname=db["NAME"], user=db["USER"] or None, password=db["PASSWORD"] or None,
                           host=db["HOST"] or None, port=db["PORT"] or None)
    blocked_pid = None
    try:
        wakeup, tenant = Wakeup._meta.db_table, Tenant._meta.db_table
        lock.execute(
            f'SELECT w.id FROM public."{wakeup}" w JOIN public."{tenant}" t ON t.id = w.tenant_id '  # noqa: S608
            "WHERE t.schema_name = 'tenant_a' AND w.purpose = %s FOR UPDATE OF w", [ESCALATION]).fetchone()
        first = workers()

        def step_blocked():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                               "AND wait_event_type = 'Lock' AND query ILIKE %s", [f"%{Wakeup._meta.db_table}%"])
                row = cursor.fetchone()
            return row[0] if row else None

        blocked_pid = wait_until(step_blocked, "the step to reach the wakeup lock", workers_=[first])
        with tenant_scope("tenant_a"):
            assert not AckLink.objects.exists()  # written by the step, not visible: not committed
        first.kill()
    finally:
        lock.rollback()
        lock.close()

    def backend_gone():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [blocked_pid])
            return cursor.fetchone()[0] == 0

    wait_until(backend_gone, "the dead worker's transaction to end", timeout=10)
    with tenant_scope("tenant_a"):
        assert not Notification.objects.exists()
        assert not ConcernEvent.objects.filter(kind=ConcernEvent.Kind.NOTIFIED).exists()
        assert Concern.objects.get(pk=concern.pk).step_index == 0

    second = workers()  # also redelivers the dead worker's message (visibility timeout)
    wait_until(lambda: escalation_done(concern.pk), "the escalation to finish", every=sweep, workers_=[second])
    assert_each_step_notified_once(concern.pk, {1: [volunteer], 2: [case_worker]}, provider)
    assert len(provider.to(LINE_PATH)) == 1 and len(provider.to(SMS_PATH)) == 1


def test_a_worker_killed_while_the_provider_has_the_message_delivers_it_once_after_restart(team, workers,
                                                                                          provider):
    """SIGKILL while the LINE request is in flight: the attempt stays in the log, unfinished;
    the next worker sends again with the same retry key (LINE shows it once) and succeeds."""
    policy((Target.ASSIGNED_VOLUNTEERS, 0))
    volunteer = team["volunteers"][0]
    provider.hang(1, path=LINE_PATH)
    first = workers()
    concern = raise_concern(team["resident"])
    wait_until(lambda: provider.to(LINE_PATH), "the LINE request", workers_=[first])
    first.kill()
    with tenant_scope("tenant_a"):
        notification = Notification.objects.get()
    assert delivery_log() == {f"{notification.dedupe_key}/{volunteer.pk}": [("line", 1, False, False)]}

    def lease_expired():
        with tenant_scope("tenant_a"):
            return Notification.objects.filter(pk=notification.pk, delivering_until__lt=timezone.now()).exists()

    # The dead worker's lease (8 s here) must run out before anyone may deliver it again.
    wait_until(lease_expired, "the dead worker's lease to expire", timeout=15)
    second = workers()
    wait_until(lambda: escalation_done(concern.pk), "the delivery", workers_=[second])
    assert delivery_log() == {f"{notification.dedupe_key}/{volunteer.pk}": [("line", 1, False, False),
                                                                           ("line", 2, True, True)]}
    assert_each_step_notified_once(concern.pk, {1: [volunteer]}, provider)
    sent = provider.to(LINE_PATH)
    assert len(sent) == 2 and sent[0].headers["X-Line-Retry-Key"] == sent[1].headers["X-Line-Retry-Key"]


def test_the_same_step_task_delivered_twice_through_the_broker_runs_once(team, workers, provider):
    """Two copies of the step's task (same timer) taken by two worker processes at once,
    then two more copies of its delivery task: one step, one message."""
    policy((Target.ASSIGNED_VOLUNTEERS, 0))
    volunteer = team["volunteers"][0]
    from notifications.tasks import deliver
    from outreach.tasks import advance_escalation

    concern = raise_concern(team["resident"])  # the first copy, enqueued on commit
    advance_escalation.delay("tenant_a", concern.pk, str(concern_state(concern.pk).timer))  # the second
    broker = redis.Redis.from_url(django_settings.REDIS_URL)
    assert broker.llen("celery") == 2
    worker = workers(concurrency=2)
    wait_until(lambda: escalation_done(concern.pk), "the escalation", workers_=[worker])
    with tenant_scope("tenant_a"):
        notification = Notification.objects.get()
    deliver.delay("tenant_a", notification.pk)
    deliver.delay("tenant_a", notification.pk)

    def drained():
        return broker.llen("celery") == 0 and broker.hlen("unacked") == 0

    wait_until(drained, "the duplicate tasks to be consumed", workers_=[worker])
    assert_each_step_notified_once(concern.pk, {1: [volunteer]}, provider)
    assert delivery_log() == {f"{notification.dedupe_key}/{volunteer.pk}": [("line", 1, True, True)]}
    assert len(provider.to(LINE_PATH)) == 1


def test_redis_flushed_between_steps_loses_nothing_and_the_sweeps_run_the_rest_once(team, workers, provider):
    """FLUSHDB after the first step committed, while one of its delivery messages was still
    queued: the delivery sweep re-drives that notification and the escalation sweep runs
    the second step, each once."""
    policy((Target.ASSIGNED_VOLUNTEERS, 1), (Target.CASE_WORKERS, 1))
    first_volunteer, second_volunteer = team["volunteers"]
    with tenant_scope("tenant_a"):
        Assignment.objects.create(resident=team["resident"], user=second_volunteer)
    case_worker = team["case_worker"]
    provider.slow(1, seconds=1.0, path=LINE_PATH)  # the worker is busy with one delivery...
    broker = redis.Redis.from_url(django_settings.REDIS_URL)
    worker = workers()
    concern = raise_concern(team["resident"])
    wait_until(lambda: provider.to(LINE_PATH), "the first LINE request", workers_=[worker])
    assert broker.llen("celery") == 1  # ...while the other waits in Redis
    broker.flushdb()

    # The first delivery finishes; the second's message is gone.
    def first_delivered():
        with tenant_scope("tenant_a"):
            return Notification.objects.filter(state=Notification.State.DELIVERED).count() == 1

    wait_until(first_delivered, "the delivery in progress to finish", workers_=[worker])
    time.sleep(1.5)
    with tenant_scope("tenant_a"):
        assert Notification.objects.filter(state=Notification.State.PENDING, attempts=None).count() == 1
    assert len(provider.to(LINE_PATH)) == 1

    # Time passes: the step's minute of waiting, and the delivery sweep's grace (20 s).
    with tenant_scope("tenant_a"):
        past = timezone.now() - timedelta(seconds=1)
        Concern.objects.filter(pk=concern.pk).update(next_step_at=past)
        Notification.objects.filter(state=Notification.State.PENDING).update(
            next_attempt_at=past - timedelta(minutes=1))
        do_lower_wakeup("tenant_a", ESCALATION, past)
    connection.set_schema_to_public()

    def both_sweeps():
        sweep()
        sweep_deliveries()

    wait_until(lambda: escalation_done(concern.pk), "the rest of the escalation", every=both_sweeps,
               workers_=[worker])
    time.sleep(1.5)  # sweeps sent meanwhile have run: they must have found nothing more to do
    assert_each_step_notified_once(
        concern.pk, {1: [first_volunteer, second_volunteer], 2: [case_worker]}, provider)
    assert len(provider.to(LINE_PATH)) == 2 and len(provider.to(SMS_PATH)) == 1


def test_a_provider_failing_twice_then_accepting_logs_two_failures_and_one_delivery(team, workers, provider):
    policy((Target.ASSIGNED_VOLUNTEERS, 0))
    volunteer = team["volunteers"][0]
    provider.fail(2, status=500, path=LINE_PATH)
    worker = workers()
    concern = raise_concern(team["resident"])
    wait_until(lambda: escalation_done(concern.pk), "the delivery after two failures", workers_=[worker])
    with tenant_scope("tenant_a"):
        notification = Notification.objects.get()
    assert delivery_log() == {f"{notification.dedupe_key}/{volunteer.pk}": [
        ("line", 1, False, True), ("line", 2, False, True), ("line", 3, True, True)]}
    assert [status for path, _k, status in provider.answered if path == LINE_PATH] == [500, 500, 200]
    assert_each_step_notified_once(concern.pk, {1: [volunteer]}, provider)


def test_an_sms_accepted_by_twilio_but_answered_too_late_is_sent_once(team, workers, provider):
    """Twilio accepts the message but answers after the client's timeout (2 s here): the
    attempt is logged as failed. Twilio's API takes no idempotency key, so before sending
    again the next attempt looks for the message among the number's recent ones, finds
    it and sends nothing. (A worker killed while Twilio holds the request leaves an
    unfinished attempt, which is looked up the same way.)"""
    policy((Target.CASE_WORKERS, 0))
    case_worker = team["case_worker"]
    provider.slow(1, seconds=3.0, path=SMS_PATH)  # accepted, answered after the timeout
    worker = workers()
    concern = raise_concern(team["resident"])
    wait_until(lambda: escalation_done(concern.pk), "the delivery", workers_=[worker])
    wait_until(lambda: [s for p, _k, s in provider.answered if p == SMS_PATH] == [201],
               "Twilio to answer the request", timeout=10)
    with tenant_scope("tenant_a"):
        notification = Notification.objects.get()
        second = DeliveryAttempt.objects.get(notification=notification, attempt=2)
    assert delivery_log() == {f"{notification.dedupe_key}/{case_worker.pk}": [("sms", 1, False, True),
                                                                             ("sms", 2, True, True)]}
    [message] = provider.sms_messages  # one SMS reached the person
    assert second.provider_answer.startswith(f"already accepted: sid={message['sid']}")
    assert [r.method for r in provider.to(f"/2010-04-01/Accounts/{TWILIO_SID}/")] == ["POST", "GET"]
    assert_each_step_notified_once(concern.pk, {1: [case_worker]}, provider)


# Email and urgent fallback: people notified directly, email through the product's SMTP
# backend to a fake SMTP server that records every message at the end of DATA.
@pytest.fixture
def smtp():
    yield from serve_fake_smtp()


def smtp_env(fake, **timeouts: str) -> dict[str, str]:
    return {"EMAIL_BACKEND": "notifications.mail.EmailBackend", "EMAIL_HOST": fake.host,
            "EMAIL_PORT": str(fake.port), **timeouts}


def notify_now(user, key: str, urgent: bool = False) -> Notification:
    """do_notify as an escalation step would; its delivery is enqueued on commit."""
    from notifications.actions import do_notify

    with tenant_scope("tenant_a"):
        notification, created = do_notify(recipient=user, kind="concern.escalated", title="見守りが遅れています",
                                          body="確認をお願いします。", dedupe_key=key, urgent=urgent)
    assert created
    return notification


def message_id(notification: Notification) -> str:
    key = uuid.uuid5(uuid.NAMESPACE_URL, f"mimamori:tenant_a:{notification.pk}")
    with tenant_scope("tenant_a"):
        from tenants.context import primary_domain

        return f"<{key}@{primary_domain('tenant_a')}>"


def settled(ids) -> bool:
    with tenant_scope("tenant_a"):
        return not Notification.objects.filter(pk__in=ids, state=Notification.State.PENDING).exists()


def states(ids) -> list[str]:
    with tenant_scope("tenant_a"):
        return list(Notification.objects.filter(pk__in=ids).values_list("state", flat=True))


def test_a_mail_server_answering_after_the_timeout_gets_each_email_once_and_none_is_marked_failed(
    committed_db, workers, provider, smtp
):
    """Each of 8 emails is accepted at the end of DATA and answered after the client's wait
    (2 s here): every attempt's outcome is unknown, none is sent again (there is no other
    channel), and the notifications are unconfirmed, not failed. After three such silences
    in a worker process the mail server is paused there (notifications.delivery.Breaker,
    5 s here): the emails left wait for the pause, once each, rather than hold the worker."""
    people = [make_user("tenant_a", f"mail-{n}", User.Role.VOLUNTEER, email=f"mail-{n}@example.jp")
              for n in range(8)]
    smtp.late(100, seconds=5.0)
    worker = workers(concurrency=2, **smtp_env(smtp, NOTIFICATION_EMAIL_DATA_TIMEOUT="2",
                                               NOTIFICATION_PROVIDER_PAUSE=str(PAUSE_S)))
    started = time.monotonic()
    notifications = [notify_now(person, f"mail-late:{person.pk}") for person in people]
    ids = [n.pk for n in notifications]
    wait_until(lambda: settled(ids), "every email to be settled", workers_=[worker],
               timeout=OUTCOME_S + PAUSE_S)
    settle_s = time.monotonic() - started
    sweep_deliveries()  # what beat sends: nothing is due any more
    time.sleep(3)  # past the retry waits (1 s here): a repeat would have arrived
    received = smtp.message_ids()
    assert sorted(received) == sorted(message_id(n) for n in notifications)  # each exactly once
    assert states(ids) == [Notification.State.UNCONFIRMED] * 8
    log = delivery_log()
    assert all(attempts == [("email", 1, False, True)] for attempts in log.values()), log
    with tenant_scope("tenant_a"):
        assert DeliveryAttempt.objects.filter(unknown=True).count() == 8
    duplicated = len(received) - len(set(received))
    print(f"FAULT TABLE | smtp accepts, answers after the client's timeout (8 emails) | lost 0 | "
          f"duplicated {duplicated} | failed 0 | all settled (unconfirmed) after {settle_s:.1f} s")


def test_a_worker_killed_while_the_mail_server_has_the_email_does_not_send_it_again(
    committed_db, workers, provider, smtp
):
    """SIGKILL while the server holds its answer to the end of DATA: the next worker finds
    the unfinished attempt, records it unknown and sends the email to nobody again."""
    person = make_user("tenant_a", "mail-killed", User.Role.VOLUNTEER, email="mail-killed@example.jp")
    smtp.late(100, seconds=60.0)
    env = smtp_env(smtp, NOTIFICATION_EMAIL_DATA_TIMEOUT="30")
    first = workers(**env)
    notification = notify_now(person, "mail-killed")
    wait_until(lambda: smtp.messages, "the mail server to have the email", workers_=[first])
    first.kill()
    killed_at = time.monotonic()
    assert delivery_log() == {f"mail-killed/{person.pk}": [("email", 1, False, False)]}

    def lease_expired():
        with tenant_scope("tenant_a"):
            return Notification.objects.filter(pk=notification.pk, delivering_until__lt=timezone.now()).exists()

    wait_until(lease_expired, "the dead worker's lease to expire", timeout=15)
    second = workers(**env)  # also takes the dead worker's message again (visibility timeout)
    wait_until(lambda: settled([notification.pk]), "the notification to be settled", every=sweep_deliveries,
               workers_=[second])
    recovery_s = time.monotonic() - killed_at
    time.sleep(2)
    assert smtp.message_ids() == [message_id(notification)]
    assert states([notification.pk]) == [Notification.State.UNCONFIRMED]
    with tenant_scope("tenant_a"):
        [attempt] = DeliveryAttempt.objects.filter(notification=notification)
    assert attempt.unknown and attempt.finished_at is None and attempt.error.startswith("unknown: ")
    print(f"FAULT TABLE | worker SIGKILLed while the mail server has the email | lost 0 | "
          f"duplicated {len(smtp.messages) - 1} | settled {recovery_s:.1f} s after the kill (lease 8 s)")


def test_an_urgent_notification_passes_a_hung_line_api_within_30_s_and_others_do_not_hold_it_up(
    committed_db, workers, provider, smtp
):
    """LINE never answers. Four non-urgent notifications to LINE users occupy the ordinary
    worker (one process, the usual 10 s timeout and 10/30/90 s waits); an urgent one to a
    person with [line, email] goes to the urgent worker, gives LINE the urgent timeout
    (5 s) once, and is emailed at once."""
    provider.hang(100, path=LINE_PATH)
    others = [make_user("tenant_a", f"line-{n}", User.Role.VOLUNTEER) for n in range(4)]
    for n, other in enumerate(others, start=10):
        set_channels(other, ["line"], line_user_id=line_id(n))
    volunteer = make_user("tenant_a", "urgent-volunteer", User.Role.VOLUNTEER, email="urgent@example.jp")
    set_channels(volunteer, ["line", "email"], line_user_id=line_id(1))
    env = smtp_env(smtp, NOTIFICATION_PROVIDER_TIMEOUT="10", NOTIFICATION_URGENT_TIMEOUT="5",
                   NOTIFICATION_RETRY_DELAYS="10,30,90", NOTIFICATION_LEASE_SECONDS="30")
    ordinary = workers(queues="celery", **env)
    urgent_worker = workers(queues="urgent", **env)
    for other in others:
        notify_now(other, f"ordinary:{other.pk}")
    wait_until(lambda: provider.to(LINE_PATH), "the ordinary worker to hang on LINE", workers_=[ordinary])
    started = time.monotonic()
    notification = notify_now(volunteer, "urgent", urgent=True)
    wait_until(lambda: smtp.messages, "the urgent email", workers_=[ordinary, urgent_worker])
    arrival_s = time.monotonic() - started
    wait_until(lambda: settled([notification.pk]), "the urgent notification to be delivered", timeout=10)
    assert arrival_s < 30
    assert smtp.message_ids() == [message_id(notification)]
    key = str(uuid.uuid5(uuid.NAMESPACE_URL, f"mimamori:tenant_a:{notification.pk}"))
    pushes = [r for r in provider.to(LINE_PATH) if r.headers["X-Line-Retry-Key"] == key]
    assert len(pushes) <= 1
    with tenant_scope("tenant_a"):
        delivered = Notification.objects.get(pk=notification.pk)
        line_attempt = DeliveryAttempt.objects.get(notification=notification, channel="line")
    assert delivered.state == Notification.State.DELIVERED and delivered.delivered_via == "email"
    assert line_attempt.unknown and (line_attempt.finished_at - line_attempt.started_at).total_seconds() < 7
    print(f"FAULT TABLE | LINE API hangs, urgent notification to [line, email] | lost 0 | duplicated 0 | "
          f"email arrived {arrival_s:.1f} s after notify (LINE pushes for its key: {len(pushes)}; "
          f"4 ordinary LINE deliveries hanging meanwhile)")
