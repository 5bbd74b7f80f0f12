"""From a "please call me" press or an overdue mark to the first notification handed to the provider.

One tenant with 60 residents who consented to sharing with volunteers, each with their
own volunteer, and each press resident also with a case worker (half on LINE, half on
SMS). The default escalations: an overdue mark (high) notifies the volunteers first; a
press (urgent) the case workers and the area's staff first. A real Celery worker (2
processes) and beat (detect_overdue every 3 s, sweep_escalations every 5 s) run against
the bench database; LINE and Twilio are a local fake HTTP server that records when each
request arrived. Each round sends 60 events, one every 0.5 s, alternating:

- a press: `do_record_device_signal(signal="call")` on the resident's button, timed
  from just before the call;
- an overdue: the resident's rhythm is made due at a known time and beat's
  detect_overdue marks it; timed from the mark (`Rhythm.overdue_since`), and also,
  stricter, from the moment it came due (`alert_at`, which adds the detection pass).

The time measured ends when the fake provider received the first recipient's message
(the case worker's for a press, the volunteer's for an overdue mark). An
event whose message does not arrive counts as the whole wait. Before the rounds, six
presses in pairs warm both worker processes (the first LINE message of a fresh process
imports line-bot-sdk, about 2 s); their times are printed, not counted.
"""
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from django.db import connection

from bench import harness
from bench.runner import Metric

SCHEMA = "bench_esc"
PRESSES = 30
OVERDUES = 30
ROUNDS = 3
GAP_S = 0.5  # between two events
LEAD_S = 3.0  # from the round's setup to its first event
TAIL_S = 20.0  # after the last event, give up on messages not received
WARMUP_GAP_S = 3.0


def _line_id(i: int) -> str:
    return "U" + f"{i + 1:032x}"


def _phone(i: int) -> str:
    return f"+8190{i:08d}"


def _seed() -> None:
    """Get-or-create the tenant, its residents, volunteers, preferences, devices."""
    from notifications.actions import do_set_preferences
    from tenants.accounts.models import User
    from tenants.context import tenant_scope
    from watch.actions import do_create_area, do_create_resident, do_record_consent, do_register_device
    from watch.models import Area, Assignment, Device, Resident

    harness.ensure_tenant(SCHEMA)
    with tenant_scope(SCHEMA):
        if (Resident.objects.count() == PRESSES + OVERDUES and Device.objects.count() == PRESSES
                and Assignment.objects.count() == 2 * PRESSES + OVERDUES):
            return
    harness.drop_tenant(SCHEMA)
    harness.ensure_tenant(SCHEMA)
    started = time.perf_counter()
    with tenant_scope(SCHEMA):
        admin = User.objects.get(username="admin")
        area = do_create_area(name="Bench district", kind=Area.Kind.DISTRICT)
        for i in range(PRESSES + OVERDUES):
            press = i < PRESSES
            resident = do_create_resident(area=area, name=f"{'press' if press else 'overdue'} {i:02d}")
            do_record_consent(actor=admin, resident=resident, status=Resident.Consent.GIVEN,
                              share_with_volunteers=True)
            # The first to be told has the address the rounds watch: a press's case worker, an overdue's volunteer.
            team = [("volunteer", User.Role.VOLUNTEER, i + (500 if press else 0))]
            if press:
                team.append(("caseworker", User.Role.CASE_WORKER, i))
            for name, role, address in team:
                person = User.objects.create_user(username=f"{name}{i:02d}", password=None, role=role,
                                                  display_name=f"{name} {i:02d}")
                if i % 2 == 0:
                    do_set_preferences(user=person, channels=["line"], line_user_id=_line_id(address))
                else:
                    do_set_preferences(user=person, channels=["sms"], phone=_phone(address))
                Assignment.objects.create(resident=resident, user=person)
            if press:
                do_register_device(actor=admin, resident=resident, kind=Device.Kind.BUTTON)
    print(f"(seeded {PRESSES + OVERDUES} residents in {time.perf_counter() - started:.1f} s)", flush=True)


def _reset() -> None:
    """Close what earlier rounds opened and put every rhythm back on the clock (nothing due)."""
    from django.utils import timezone

    from notifications.models import Notification
    from outreach.actions import ESCALATION
    from outreach.models import Concern
    from tenants.context import tenant_scope
    from tenants.wakeups import do_set_wakeup
    from watch.actions import OVERDUE
    from watch.models import Resident, Rhythm

    now = timezone.now()
    with tenant_scope(SCHEMA):
        Concern.objects.filter(state__in=Concern.LIVE_STATES).update(
            state=Concern.State.DISMISSED, closed_at=now, next_step_at=None, timer=uuid.uuid4())
        Notification.objects.filter(state=Notification.State.PENDING).update(
            state=Notification.State.FAILED, failed_at=now)
        far = now + timedelta(days=7, hours=12)
        Rhythm.objects.filter(device=None).update(state=Rhythm.State.OK, overdue_since=None, alert_at=far,
                                                  last_contact_at=None)
        Resident.objects.update(is_overdue=False, next_due_at=far)
        first = Rhythm.objects.filter(state=Rhythm.State.OK).order_by("alert_at").values_list(
            "alert_at", flat=True).first()
        do_set_wakeup(SCHEMA, OVERDUE, first)
        do_set_wakeup(SCHEMA, ESCALATION, None)


def _people():
    """[(kind, resident_id, device or None, rhythm_id or None, address)] in resident order."""
    from tenants.context import tenant_scope
    from watch.models import Device, Resident, Rhythm

    with tenant_scope(SCHEMA):
        devices = {d.resident_id: d for d in Device.objects.select_related("resident__area")}
        rhythms = dict(Rhythm.objects.filter(device=None).values_list("resident_id", "pk"))
        people = []
        for i, resident_id in enumerate(Resident.objects.order_by("pk").values_list("pk", flat=True)):
            address = _line_id(i) if i % 2 == 0 else _phone(i)
            if resident_id in devices:
                people.append(("press", resident_id, devices[resident_id], None, address))
            else:
                people.append(("overdue", resident_id, None, rhythms[resident_id], address))
    return people


def _press(device) -> float:
    from tenants.context import tenant_scope
    from watch.actions import do_record_device_signal

    started = time.time()
    with tenant_scope(SCHEMA):
        do_record_device_signal(device=device, signal="call")
    return started


def _first_after(fake, address: str, since: float) -> list[float]:
    return sorted(r.at for r in list(fake.requests) if r.address == address and r.at >= since)


def _warm_up(fake, people, problems: list[str]) -> None:
    """Pairs of presses at once, so that each of the worker's two processes sends on LINE
    and on SMS once before the measured rounds."""
    presses = [p for p in people if p[0] == "press"]
    pairs = [(presses[0], presses[2]), (presses[1], presses[3]), (presses[4], presses[6])]
    sent = []
    for pair in pairs:
        for _kind, _rid, device, _rh, address in pair:
            sent.append((address, _press(device)))
        time.sleep(WARMUP_GAP_S)
    deadline = time.time() + 30
    while time.time() < deadline and not all(_first_after(fake, a, t) for a, t in sent):
        time.sleep(0.1)
    times = [(_first_after(fake, a, t) or [float("nan")])[0] - t for a, t in sent]
    print(f"  warm-up presses, LINE LINE, SMS SMS, LINE LINE (not counted): {', '.join(f'{t:.2f}' for t in times)} s",
          flush=True)
    if any(t != t for t in times):
        problems.append("warm-up: a message never arrived")


def _round(number: int, fake, people, problems: list[str], celery) -> dict[str, list[float]]:
    from tenants.context import tenant_scope
    from tenants.wakeups import do_lower_wakeup
    from watch.actions import OVERDUE
    from watch.models import Resident, Rhythm

    _reset()
    cpu_before = (time.monotonic(), harness._machine_busy_seconds(),
                  celery["worker"].cpu_seconds() + celery["beat"].cpu_seconds())
    presses = [p for p in people if p[0] == "press"]
    overdues = [p for p in people if p[0] == "overdue"]
    order = [e for pair in zip(presses, overdues, strict=True) for e in pair]
    round_start = time.time()
    first = round_start + LEAD_S
    due = {}
    with tenant_scope(SCHEMA):
        for j, (kind, resident_id, _device, rhythm_id, _address) in enumerate(order):
            if kind == "overdue":
                when = first + j * GAP_S
                at = datetime.fromtimestamp(when, UTC)
                Rhythm.objects.filter(pk=rhythm_id).update(alert_at=at)
                Resident.objects.filter(pk=resident_id).update(next_due_at=at)
                due[resident_id] = when
        do_lower_wakeup(SCHEMA, OVERDUE, datetime.fromtimestamp(min(due.values()), UTC))
    pressed = {}
    for j, (kind, resident_id, device, _rhythm_id, _address) in enumerate(order):
        if kind == "press":
            time.sleep(max(0.0, first + j * GAP_S - time.time()))
            pressed[resident_id] = _press(device)
    deadline = first + len(order) * GAP_S + TAIL_S
    while time.time() < deadline and not all(_first_after(fake, p[4], round_start) for p in order):
        time.sleep(0.2)
    wall, busy, product = (a - b for a, b in zip(
        (time.monotonic(), harness._machine_busy_seconds(),
         celery["worker"].cpu_seconds() + celery["beat"].cpu_seconds()), cpu_before, strict=True))
    with tenant_scope(SCHEMA):
        marked = {rid: since.timestamp() for rid, since in
                  Rhythm.objects.filter(device=None, overdue_since__isnull=False)
                  .values_list("resident_id", "overdue_since")}
    connection.close()

    out = {"all": [], "press": [], "overdue_mark": [], "overdue_due": []}
    missing = duplicates = 0
    for kind, resident_id, _device, _rhythm_id, address in order:
        received = _first_after(fake, address, round_start)
        duplicates += max(0, len(received) - 1)
        if not received:
            missing += 1
        got = received[0] if received else None
        if kind == "press":
            value = got - pressed[resident_id] if got else TAIL_S
            out["press"].append(value)
        else:
            start = marked.get(resident_id)
            if start is None and got is not None:
                problems.append(f"round {number}: resident {resident_id} notified but not marked overdue")
            value = got - start if got and start else TAIL_S
            out["overdue_mark"].append(value)
            out["overdue_due"].append(got - due[resident_id] if got else TAIL_S)
        out["all"].append(value)
    if missing:
        problems.append(f"round {number}: {missing} of {len(order)} events had no message within {TAIL_S:.0f} s")
    if duplicates:
        problems.append(f"round {number}: {duplicates} messages beyond the first per event")
    pct = {k: harness.percentiles(v) for k, v in out.items()}
    slowest = sorted(zip(out["all"], order, strict=True), key=lambda x: -x[0])[:3]
    for value, (kind, resident_id, *_rest) in slowest:
        start = pressed.get(resident_id) or marked.get(resident_id) or due[resident_id]
        stages = ", ".join(f"{name} +{at - start:.2f}" for name, at in _stages(resident_id, round_start))
        print(f"    slow {kind} {value:.2f} s: {stages}", flush=True)
    print(f"  round {number}: {len(order) - missing}/{len(order)} first messages; "
          f"all p50 {pct['all']['p50']:.2f} p99 {pct['all']['p99']:.2f} max {pct['all']['max']:.2f} s; "
          f"press p50 {pct['press']['p50']:.2f} p99 {pct['press']['p99']:.2f}; "
          f"overdue from mark p50 {pct['overdue_mark']['p50']:.2f} p99 {pct['overdue_mark']['p99']:.2f}; "
          f"overdue from due p50 {pct['overdue_due']['p50']:.2f} p99 {pct['overdue_due']['p99']:.2f} s; "
          f"CPU in cores: worker+beat {product / wall:.2f}, everything else {(busy - product) / wall:.2f} "
          f"(of {os.cpu_count()})", flush=True)
    return out


def _stages(resident_id: int, since: float) -> list[tuple[str, float]]:
    """When the event's concern opened, its first step ran and the delivery attempt started."""
    from notifications.models import DeliveryAttempt
    from outreach.models import Concern, ConcernEvent
    from tenants.context import tenant_scope

    with tenant_scope(SCHEMA):
        concern = (Concern.objects.filter(resident_id=resident_id, opened_at__gte=datetime.fromtimestamp(since, UTC))
                   .order_by("pk").first())
        if concern is None:
            return []
        stages = [("opened", concern.opened_at.timestamp())]
        step = ConcernEvent.objects.filter(concern=concern, kind=ConcernEvent.Kind.NOTIFIED).order_by("pk").first()
        if step:
            stages.append(("step", step.created_at.timestamp()))
        attempt = (DeliveryAttempt.objects.filter(notification__dedupe_key__startswith=f"concern:{concern.pk}:")
                   .order_by("pk").first())
        if attempt:
            stages.append(("attempt", attempt.started_at.timestamp()))
    return stages


def run() -> list[Metric]:
    _seed()
    _reset()
    print(f"(product: {harness.product_revision()})", flush=True)
    people = _people()
    connection.close()
    problems: list[str] = []
    results = []
    with harness.fake_provider_server() as fake, harness.environ(**fake.env()), \
            harness.celery_processes(concurrency=2, beat=True) as celery:
        time.sleep(3.5)  # beat's first detect_overdue tick
        _warm_up(fake, people, problems)
        for number in range(1, ROUNDS + 1):
            results.append(_round(number, fake, people, problems, celery))
            time.sleep(2.0)
        for product in (celery["worker"], celery["beat"]):
            lines = product.error_lines()
            if lines:
                problems.append(f"{product.name} log: {len(lines)} error line(s), first: {lines[0][:400]}")
    _reset()
    for problem in problems:
        print(f"!! {problem}", flush=True)

    def per_round(key: str, q: str) -> list[float]:
        return [harness.percentiles(r[key])[q] for r in results]

    print(f"(median over rounds: press p99 {statistics.median(per_round('press', 'p99')):.2f} s, overdue from mark "
          f"p99 {statistics.median(per_round('overdue_mark', 'p99')):.2f} s)", flush=True)
    return [
        Metric.from_runs("first_notification_p99_s", per_round("all", "p99"), "s", target=5, better="lower"),
        Metric.from_runs("first_notification_p50_s", per_round("all", "p50"), "s", target=None, better="lower"),
        Metric.from_runs("first_notification_from_due_p99_s",
                         [harness.percentiles(r["press"] + r["overdue_due"])["p99"] for r in results], "s",
                         target=None, better="lower"),
    ]
