"""100,000 residents reached through the fake LINE and SMS servers (80% LINE, 20% SMS), no duplicate, no 429.

One tenant with 100,000 active residents in 10 districts: 80,000 with a linked LINE
account, 20,000 with a mobile phone only (every 5th resident). The providers are
notifications.fake_providers in this process (LINE multicast up to 500 recipients with
X-Line-Retry-Key and LINE's rate limits, answering 429 above them; Twilio Messages);
a real Celery worker (3 processes) and beat run the product's dispatcher
(outreach.asking) against the bench database and Redis. Each run starts a drill over
LINE and SMS for the whole tenant (`do_start_check`, as staff do) and measures from
just before the start until every ask is reached (a provider accepted its question),
polling the database once a second. Then it counts what the fake showed: per LINE user
and per SMS number, anything shown twice is a duplicate; anyone never shown is missing;
and the 429s the fake answered. Between runs the check is deleted.
"""
import os
import statistics
import time
from collections import Counter

from bench import harness
from bench.bench_safety_start import LINE_SHARE, line_id, new_check, seed
from bench.runner import Metric

RESIDENTS = int(os.environ.get("BENCH_ASK_RESIDENTS", "100000"))  # smaller for a try-out
ROUNDS = int(os.environ.get("BENCH_ASK_ROUNDS", "3"))
SCHEMA = "bench_ask100k" if RESIDENTS == 100_000 else f"bench_ask{RESIDENTS}"
WORKERS = 3
TIMEOUT_S = 300.0


def run() -> list[Metric]:
    from config.celery import app
    from notifications import fake_providers
    from outreach.models import Ask, SafetyCheck
    from outreach.safety import do_start_check
    from tenants.accounts.models import User
    from tenants.context import tenant_scope

    seed(SCHEMA, RESIDENTS)
    line_users = {line_id(i) for i in range(RESIDENTS) if i % LINE_SHARE != LINE_SHARE - 1}
    numbers = {f"+8190{i:08d}" for i in range(RESIDENTS) if i % LINE_SHARE == LINE_SHARE - 1}
    fake, server = fake_providers.serve()
    fake.record_bodies = False
    env = {"LINE_API_BASE": fake.url, "LINE_CHANNEL_ACCESS_TOKEN": fake_providers.LINE_TOKEN,
           "LINE_CHANNEL_SECRET": fake_providers.LINE_SECRET, "TWILIO_API_BASE": fake.url,
           "TWILIO_ACCOUNT_SID": fake_providers.TWILIO_SID, "TWILIO_AUTH_TOKEN": fake_providers.TWILIO_TOKEN,
           "TWILIO_FROM_NUMBER": fake_providers.TWILIO_FROM}
    times, duplicates, throttled, missing = [], [], [], []
    app.control.purge()
    try:
        with harness.environ(**env), harness.celery_processes(concurrency=WORKERS, beat=True) as celery:
            for round_ in range(ROUNDS):
                with fake.lock:
                    fake.line_delivered.clear()
                    fake.sms_messages.clear()
                    fake.counts.clear()
                    fake.rate_limited = 0
                check = new_check(SCHEMA)
                with tenant_scope(SCHEMA):
                    SafetyCheck.objects.filter(pk=check.pk).update(channels=["line", "sms"])
                    check.refresh_from_db()
                    admin = User.objects.get(username="admin")
                    cpu = celery["worker"].cpu_seconds()
                    started = time.perf_counter()
                    do_start_check(admin, check)
                    reached, last = 0, started
                    marks = {}  # share reached → seconds
                    while time.perf_counter() - started < TIMEOUT_S:
                        now_reached = Ask.objects.filter(safety_check=check, reached=True).count()
                        if now_reached != reached:
                            reached, last = now_reached, time.perf_counter()
                            for share in (0.5, 0.8, 0.95):
                                if reached >= share * RESIDENTS:
                                    marks.setdefault(share, round(last - started, 1))
                        if reached == RESIDENTS:
                            break
                        time.sleep(1.0)
                    seconds = last - started if reached == RESIDENTS else float("inf")
                    states = dict(Counter(Ask.objects.filter(safety_check=check).values_list("state", flat=True)))
                tally = fake.tally(line_users, numbers)
                print(f"round {round_ + 1}: {reached} of {RESIDENTS} reached in {seconds:.1f} s "
                      f"(worker CPU {celery['worker'].cpu_seconds() - cpu:.0f} s); {tally['words']}; asks {states}; "
                      f"seconds to 50/80/95%: {marks}", flush=True)
                if not tally["clean"]:
                    print("!! duplicates, residents never shown, or 429s: the run does not count", flush=True)
                    seconds = float("inf")
                times.append(seconds)
                duplicates.append(tally["twice"])
                throttled.append(tally["limited"])
                missing.append(tally["never"])
                with tenant_scope(SCHEMA):
                    SafetyCheck.objects.filter(pk=check.pk).update(state=SafetyCheck.State.CLOSED)
                    SafetyCheck.objects.filter(pk=check.pk).delete()
            errors = celery["worker"].error_lines()
            if errors:
                print("!! worker errors:\n" + "\n".join(line[:300] for line in errors[:10]), flush=True)
    finally:
        fake_providers.stop(fake, server)
        app.control.purge()
    print(f"median {statistics.median(times):.1f} s; duplicates {duplicates}; 429s {throttled}; never {missing}",
          flush=True)
    # A run with a duplicate, a resident never shown or a 429 counts as infinitely slow.
    return [Metric.from_runs(f"reach {RESIDENTS:,} residents (80% LINE, 20% SMS)", times, "s", 300.0, "lower")]
