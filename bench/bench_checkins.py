"""Daily prompts for 50,000 residents due at the same minute: all created and sent within that minute.

One tenant with 50,000 active residents in 10 districts (80% with a linked LINE account,
20% with a mobile phone only), every one with a daily check-in at the same minute. A real
Celery worker (3 processes) and beat run the product as in production: beat's
per-minute `daily-checkins` entry (config.celery, crontab at the start of each minute)
fans out `outreach.tasks.run_daily_checkins`, which makes the day's asks
(outreach.checkins → outreach.asking.do_create_checkin_asks) and hands them to the
dispatcher, which sends them through notifications.fake_providers in this process (LINE
multicast up to 500 recipients, LINE's rate limits; Twilio Messages for SMS).

Each run sets every check-in to the next minute M (at least 15 s ahead), deletes the
day's check-in asks of the run before, and waits for M. It measures from M until every
ask is reached (a provider accepted its question), polling the database once a second,
and reports when the last ask was created too. Then it counts what the fake showed: a
LINE user or SMS number shown twice is a duplicate, one never shown is missing, and the
429s. A run with any of them counts as infinitely slow. Target: 60 s (within the minute).
"""
import os
import statistics
import time
from collections import Counter
from datetime import timedelta

from bench import harness
from bench.bench_safety_start import LINE_SHARE, line_id, seed
from bench.runner import Metric

RESIDENTS = int(os.environ.get("BENCH_CHECKIN_RESIDENTS", "50000"))  # smaller for a try-out
ROUNDS = int(os.environ.get("BENCH_CHECKIN_ROUNDS", "3"))
SCHEMA = "bench_checkin50k" if RESIDENTS == 50_000 else f"bench_checkin{RESIDENTS}"
WORKERS = 3
TIMEOUT_S = 240.0


def _agree_all(schema: str) -> None:
    """Every resident has a daily check-in (get-or-create)."""
    from django.utils import timezone

    from outreach.models import DailyCheckin
    from tenants.context import tenant_scope
    from watch.models import Resident

    with tenant_scope(schema):
        missing = Resident.objects.exclude(pk__in=DailyCheckin.objects.values("resident_id")).values_list(
            "pk", flat=True)
        rows = [DailyCheckin(resident_id=pk, at="08:00", wait_minutes=60, agreed_on=timezone.localdate())
                for pk in missing.iterator(chunk_size=5000)]
        DailyCheckin.objects.bulk_create(rows, batch_size=5000)


def _delete_checkin_asks() -> None:
    """The previous run's asks, in two statements (Django's delete collects 50,000 rows first)."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM outreach_askattempt WHERE ask_id IN (SELECT id FROM outreach_ask WHERE kind = %s)",
                       ["checkin"])
        cursor.execute("DELETE FROM outreach_ask WHERE kind = %s", ["checkin"])


def _next_minute(lead_seconds: float = 15.0):
    """The start of the first minute at least `lead_seconds` from now."""
    from django.utils import timezone

    soon = timezone.now() + timedelta(seconds=lead_seconds)
    return soon.replace(second=0, microsecond=0) + timedelta(minutes=1)


def run() -> list[Metric]:
    from django.utils import timezone

    from config.celery import app
    from notifications import fake_providers
    from notifications.delivery import tenant_time_zone
    from outreach.models import Ask, DailyCheckin
    from tenants.context import tenant_scope

    seed(SCHEMA, RESIDENTS)
    _agree_all(SCHEMA)
    line_users = {line_id(i) for i in range(RESIDENTS) if i % LINE_SHARE != LINE_SHARE - 1}
    numbers = {f"+8190{i:08d}" for i in range(RESIDENTS) if i % LINE_SHARE == LINE_SHARE - 1}
    fake, server = fake_providers.serve()
    fake.record_bodies = False
    env = {"LINE_API_BASE": fake.url, "LINE_CHANNEL_ACCESS_TOKEN": fake_providers.LINE_TOKEN,
           "LINE_CHANNEL_SECRET": fake_providers.LINE_SECRET, "TWILIO_API_BASE": fake.url,
           "TWILIO_ACCOUNT_SID": fake_providers.TWILIO_SID, "TWILIO_AUTH_TOKEN": fake_providers.TWILIO_TOKEN,
           "TWILIO_FROM_NUMBER": fake_providers.TWILIO_FROM}
    times, created_times, line_times = [], [], []
    app.control.purge()
    try:
        with harness.environ(**env), harness.celery_processes(concurrency=WORKERS, beat=True) as celery:
            for round_ in range(ROUNDS):
                minute = _next_minute()
                with tenant_scope(SCHEMA):
                    tz = tenant_time_zone()
                    _delete_checkin_asks()
                    DailyCheckin.objects.update(at=minute.astimezone(tz).time(), active=True)
                active = app.control.inspect().active() or {}
                busy = {name: [t["name"] for t in tasks] for name, tasks in active.items() if tasks}
                if busy:
                    print(f"(worker busy before round {round_ + 1}: {busy})", flush=True)
                with fake.lock:
                    fake.line_delivered.clear()
                    fake.sms_messages.clear()
                    fake.counts.clear()
                    fake.rate_limited = 0
                cpu = celery["worker"].cpu_seconds()
                time.sleep(max(0.0, (minute - timezone.now()).total_seconds()))
                started = time.perf_counter()
                made = reached = line_reached = 0
                made_at = last = line_last = started
                line_total = len(line_users)
                with tenant_scope(SCHEMA):
                    while time.perf_counter() - started < TIMEOUT_S:
                        asks = Ask.objects.filter(kind=Ask.Kind.CHECKIN)
                        now_made, now_reached = asks.count(), asks.filter(reached=True).count()
                        if now_made != made:
                            made, made_at = now_made, time.perf_counter()
                        if now_reached != reached:
                            reached, last = now_reached, time.perf_counter()
                        if line_reached < line_total:
                            now_line = asks.filter(reached=True, plan__0="line").count()
                            if now_line != line_reached:
                                line_reached, line_last = now_line, time.perf_counter()
                        if reached == RESIDENTS:
                            break
                        time.sleep(1.0)
                    states = dict(Counter(Ask.objects.filter(kind=Ask.Kind.CHECKIN).values_list("state", flat=True)))
                seconds = last - started if reached == RESIDENTS else float("inf")
                tally = fake.tally(line_users, numbers)
                print(f"round {round_ + 1} (due {minute:%H:%M} UTC): {made} asks made by {made_at - started:.1f} s, "
                      f"{reached} of {RESIDENTS} reached in {seconds:.1f} s after the minute began (the LINE ones by "
                      f"{line_last - started:.1f} s) (worker CPU {celery['worker'].cpu_seconds() - cpu:.0f} s); "
                      f"{tally['words']}; asks {states}", flush=True)
                if not tally["clean"]:
                    print("!! duplicates, residents never shown, or 429s: the run does not count", flush=True)
                    seconds = float("inf")
                times.append(seconds)
                created_times.append(made_at - started if made == RESIDENTS else float("inf"))
                line_times.append(line_last - started if line_reached == line_total else float("inf"))
            errors = celery["worker"].error_lines()
            if errors:
                print("!! worker errors:\n" + "\n".join(errors[:20]), flush=True)
    finally:
        fake_providers.stop(fake, server)
        app.control.purge()
    print(f"median: all sent {statistics.median(times):.1f} s, all created {statistics.median(created_times):.1f} s "
          "after the minute began", flush=True)
    return [
        Metric.from_runs(f"{RESIDENTS:,} daily prompts due at one minute: all sent", times, "s", 60.0, "lower"),
        Metric.from_runs(f"{RESIDENTS:,} daily prompts due at one minute: all created", created_times, "s", 60.0,
                         "lower"),
        Metric.from_runs(f"{RESIDENTS:,} daily prompts due at one minute: the LINE ones (80%) sent", line_times, "s",
                         60.0, "lower"),
    ]
