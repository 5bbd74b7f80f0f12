"""Visit sheet PDF: GET /watch/visits/sheet.pdf for a volunteer with 50 visits in a week (target < 2 s).

One tenant with one block, 50 residents (name, furigana, address, two phone numbers,
notes for visitors) assigned to one volunteer, and 50 visits of this week planned for
that volunteer by a case worker. The case worker requests the volunteer's sheet as a
PDF through django.test.Client in-process (A4 landscape, reportlab with the built-in
Japanese CID font); the time is the server's whole handling of the request, the PDF
included. Seeded data is kept between runs (get-or-create by schema name); the visits'
window is moved to the current week before measuring.
"""
import time

from django.db import connection

from bench import harness
from bench.runner import Metric

SCHEMA = "bench_visit_sheet"
VISITS = 50
REQUESTS = 5
RUNS = 3
WORKER, VOLUNTEER = "bench-case-worker", "bench-volunteer"
SEED = "seed v1"


def _seed() -> dict:
    from datetime import timedelta

    from tenants.accounts.models import User
    from tenants.context import tenant_scope
    from watch.actions import do_create_area, do_create_resident, do_record_consent
    from watch.models import Area, AreaMembership, Assignment, Resident, Visit
    from watch.visits import tenant_today, window_end

    def complete():
        return Visit.objects.count() == VISITS and User.objects.filter(username=VOLUNTEER).exists()

    if harness.tenant_to_seed(SCHEMA, complete, name=f"{SCHEMA} {SEED}"):
        with tenant_scope(SCHEMA):
            worker = User.objects.create_user(username=WORKER, password=None, role=User.Role.CASE_WORKER,
                                              display_name="ケースワーカー 田中")
            volunteer = User.objects.create_user(username=VOLUNTEER, password=None, role=User.Role.VOLUNTEER,
                                                 display_name="協力員 佐藤 和子")
            district = do_create_area(name="大住", kind=Area.Kind.DISTRICT)
            block = do_create_area(name="3班", kind=Area.Kind.BLOCK,
                                   parent=do_create_area(name="大住ヶ丘連合自治会", kind=Area.Kind.ASSOCIATION,
                                                         parent=district))
            AreaMembership.objects.create(user=worker, area=district)
            today = tenant_today()
            for i in range(VISITS):
                resident = do_create_resident(
                    area=block, name=f"山田 花子{i:02d}", furigana=f"やまだ はなこ{i:02d}",
                    address=f"京都府京田辺市大住ヶ丘{i // 10 + 1}丁目{i % 10 + 1}-{i + 3}",
                    phone=f"0774-65-{4000 + i}", mobile_phone=f"090-1234-{5000 + i}",
                    visit_notes="耳が遠いので、インターホンの後にノックしてください。")
                do_record_consent(actor=None, resident=resident, status=Resident.Consent.GIVEN,
                                  share_with_volunteers=True)
                Assignment.objects.create(resident=resident, user=volunteer)
                day = today + timedelta(days=i % 5)
                Visit.objects.create(resident=resident, visitor=volunteer, starts_on=day, ends_on=day,
                                     due_at=window_end(day), planned_by=worker,
                                     note="先月の転倒の後、様子を見てください。" if i % 3 == 0 else "")
        print(f"(seeded {SCHEMA}: {VISITS} residents and visits)", flush=True)
    with tenant_scope(SCHEMA):
        today = tenant_today()
        monday = today - timedelta(days=today.weekday())
        for n, visit in enumerate(Visit.objects.order_by("pk")):
            day = monday + timedelta(days=n % 5)
            Visit.objects.filter(pk=visit.pk).update(starts_on=day, ends_on=day, due_at=window_end(day),
                                                     state=Visit.State.PLANNED)
        return {"visitor": User.objects.get(username=VOLUNTEER).pk}


def _get(client, url: str) -> float:
    start = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - start
    if response.status_code != 200 or not response.content.startswith(b"%PDF-"):
        raise RuntimeError(f"GET {url} answered {response.status_code} {response.content[:80]!r}")
    return elapsed


def run() -> list[Metric]:
    seeded = _seed()
    print(f"(product: {harness.product_revision()})", flush=True)
    client = harness.signed_in_client(SCHEMA, WORKER)
    url = f"/watch/visits/sheet.pdf?visitor={seeded['visitor']}"
    first = _get(client, url)  # the font, templates, translations, the host cache
    print(f"  first request (cold): {first:.3f} s", flush=True)
    medians = []
    for i in range(RUNS):
        timings = sorted(_get(client, url) for _n in range(REQUESTS))
        medians.append(timings[len(timings) // 2])
        print(f"  run {i + 1}: {REQUESTS} PDFs of {VISITS} visits, median {medians[-1]:.3f} s, "
              f"max {timings[-1]:.3f} s", flush=True)
    connection.set_schema_to_public()
    return [Metric.from_runs("visit_sheet_pdf_50_visits_s", medians, "s", target=2, better="lower"),
            Metric.from_runs("visit_sheet_pdf_cold_s", [first], "s", target=None, better="lower")]
