"""Starting a safety check for 50,000 residents in one tenant: every ask created and handed to the queue.

One tenant with 50,000 active residents in 10 districts (80% with a linked LINE account,
20% with a mobile phone only). Each run creates a drill over LINE, SMS and voice for the
whole tenant (not timed) and times `outreach.safety.do_start_check` by an administrator:
the residents in scope (watch.access), each one's plan (watch.reach.channels_for), the
50,000 asks inserted (COPY), the commit, and the dispatcher tasks handed to the Celery
broker (Redis) after it. The time ends when the call returns; the run then checks that
every resident has exactly one ask and that the broker holds the dispatcher's tasks,
and deletes the check (not timed). No worker runs: nothing is sent.
"""
import statistics
import time
from datetime import timedelta

from bench import harness
from bench.runner import Metric

SCHEMA = "bench_ask50k"
RESIDENTS = 50_000
AREAS = 10
ROUNDS = 3
LINE_SHARE = 5  # every 5th resident has SMS only


def line_id(i: int) -> str:
    return "U" + f"{i + 1:032x}"


def seed(schema: str, count: int) -> None:
    """Get-or-create `count` residents in `schema` (bulk; the dispatcher reads only the record)."""
    from tenants.context import tenant_scope
    from watch.models import Area, Resident

    if not harness.tenant_to_seed(schema, lambda: Resident.objects.count() == count):
        return
    started = time.perf_counter()
    with tenant_scope(schema):
        areas = [Area.objects.create(name=f"地区{i}", kind=Area.Kind.DISTRICT) for i in range(AREAS)]
        batch = []
        for i in range(count):
            sms = i % LINE_SHARE == LINE_SHARE - 1
            batch.append(Resident(name=f"住民{i}", area=areas[i % AREAS], status=Resident.Status.ACTIVE,
                                  consent=Resident.Consent.GIVEN, line_user_id="" if sms else line_id(i),
                                  mobile_phone=f"090{i:08d}" if sms else ""))
            if len(batch) == 5000:
                Resident.objects.bulk_create(batch)
                batch = []
        Resident.objects.bulk_create(batch)
    print(f"(seeded {count} residents in {schema} in {time.perf_counter() - started:.1f} s)", flush=True)


def new_check(schema: str):
    from django.utils import timezone

    from outreach.models import SafetyCheck
    from tenants.context import tenant_scope

    with tenant_scope(schema):
        return SafetyCheck.objects.create(
            title="ベンチ訓練", question="安否確認の訓練です。ご無事ですか？", kind=SafetyCheck.Kind.DRILL,
            channels=["line", "sms", "voice"], silence_minutes=[10, 30, 60],
            deadline=timezone.now() + timedelta(hours=6))


def broker_length() -> int:
    from config.celery import app

    with app.connection_for_write() as conn:
        return conn.default_channel.client.llen("celery")


def run() -> list[Metric]:
    from config.celery import app
    from outreach.models import Ask, SafetyCheck
    from outreach.safety import do_start_check
    from tenants.accounts.models import User
    from tenants.context import tenant_scope

    seed(SCHEMA, RESIDENTS)
    app.control.purge()
    times = []
    for round_ in range(ROUNDS):
        check = new_check(SCHEMA)
        with tenant_scope(SCHEMA):
            admin = User.objects.get(username="admin")
            queued = broker_length()
            started = time.perf_counter()
            asked = do_start_check(admin, check)
            seconds = time.perf_counter() - started
            made = Ask.objects.filter(safety_check=check).count()
            people = Ask.objects.filter(safety_check=check).values("resident_id").distinct().count()
            states = dict(Ask.objects.filter(safety_check=check).values_list("state").annotate(
                n=__import__("django.db.models", fromlist=["Count"]).Count("pk")))
            handed = broker_length() - queued
            print(f"round {round_ + 1}: start took {seconds:.2f} s; {asked} asked, {made} asks for {people} "
                  f"residents {states}; {handed} dispatcher task(s) on the broker", flush=True)
            if made != RESIDENTS or people != RESIDENTS or handed < 1:
                print("!! not every resident was asked once, or nothing was handed to the queue", flush=True)
                seconds = float("inf")
            times.append(seconds)
            SafetyCheck.objects.filter(pk=check.pk).delete()
        app.control.purge()
    print(f"median {statistics.median(times):.2f} s", flush=True)
    return [Metric.from_runs("start 50,000-resident check", times, "s", 10.0, "lower")]
