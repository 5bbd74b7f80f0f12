"""Posting a circular-board notice to 20,000 residents (16,000 households) and sending it by LINE.

One tenant with 20,000 active residents in 20 blocks: 8,000 of them in households of two
(same address), the rest alone; the first member of two in three households has a linked
LINE account. Each run times `outreach.board.do_post_notice` by the administrator (the
households found, one receipt each inserted in bulk, the commit; the send task is not
run) and then `do_send_notice` against the local fake LINE server (multicasts of up to
500 per language, each batch marked sent). It checks one receipt per household and that
every LINE household was shown the notice once, then deletes the notice (not timed).
"""
import statistics
import time

from bench import harness
from bench.runner import Metric

SCHEMA = "bench_board20k"
RESIDENTS = 20_000
PAIRS = 4_000  # households of two: 8,000 residents
BLOCKS = 20
ROUNDS = 3


def seed(schema: str) -> None:
    from tenants.context import tenant_scope
    from watch.actions import do_create_area
    from watch.models import Area, Resident
    from watch.reach import household_key

    if not harness.tenant_to_seed(schema, lambda: Resident.objects.count() == RESIDENTS):
        return
    started = time.perf_counter()
    with tenant_scope(schema):
        district = do_create_area(name="大住", kind=Area.Kind.DISTRICT)
        blocks = [do_create_area(name=f"{i + 1}班", kind=Area.Kind.BLOCK, parent=district) for i in range(BLOCKS)]
        batch = []
        for i in range(RESIDENTS):
            household = i // 2 if i < 2 * PAIRS else i - PAIRS
            first = i >= 2 * PAIRS or i % 2 == 0
            resident = Resident(
                name=f"住民{i}", area=blocks[household % BLOCKS], status=Resident.Status.ACTIVE,
                consent=Resident.Consent.GIVEN, address=f"大住{household}番地" if i < 2 * PAIRS else "",
                line_user_id=f"U{i + 1:032x}" if first and household % 3 != 2 else "")
            resident.household_key = household_key(resident)
            batch.append(resident)
            if len(batch) == 5000:
                Resident.objects.bulk_create(batch)
                batch = []
        Resident.objects.bulk_create(batch)
    print(f"(seeded {RESIDENTS} residents in {schema} in {time.perf_counter() - started:.1f} s)", flush=True)


def run() -> list[Metric]:
    from django.test.utils import override_settings

    from notifications import fake_providers
    from outreach import board
    from outreach.models import Notice, NoticeReceipt
    from tenants.accounts.models import User
    from tenants.context import tenant_scope
    from watch.models import Area, Resident

    seed(SCHEMA)
    fake, server = fake_providers.serve()
    fake.record_bodies = True
    posts, sends = [], []
    try:
        with override_settings(LINE_API_BASE=fake.url, LINE_CHANNEL_ACCESS_TOKEN=fake_providers.LINE_TOKEN,
                               LINE_CHANNEL_SECRET=fake_providers.LINE_SECRET), tenant_scope(SCHEMA):
            admin = User.objects.get(username="admin")
            district = Area.objects.get(kind=Area.Kind.DISTRICT)
            households = RESIDENTS - PAIRS
            line_users = set(Resident.objects.exclude(line_user_id="").values_list("line_user_id", flat=True))
            for round_ in range(ROUNDS):
                fake.line_delivered.clear()
                started = time.perf_counter()
                notice = board.do_post_notice(admin, title="防災訓練のお知らせ", body="11月に訓練を行います。" * 20,
                                              area_ids=[district.pk], reply="attendance",
                                              translations={"en": {"title": "Drill", "body": "In November."}})
                posted = time.perf_counter() - started
                started = time.perf_counter()
                result = board.do_send_notice(notice.pk)
                sent = time.perf_counter() - started
                receipts = NoticeReceipt.objects.filter(notice=notice).count()
                shown = {}
                for user, _message in fake.line_delivered:
                    shown[user] = shown.get(user, 0) + 1
                ok = (receipts == households and set(shown) == line_users and set(shown.values()) == {1}
                      and result["sent"] == len(line_users))
                print(f"round {round_ + 1}: posted in {posted:.2f} s ({receipts} receipts for {households} "
                      f"households), sent in {sent:.2f} s ({result['sent']} by LINE in "
                      f"{len(fake.to('/v2/bot/message/multicast'))} multicasts so far)", flush=True)
                if not ok:
                    print("!! not one receipt per household, or a LINE household not shown it exactly once",
                          flush=True)
                    posted = sent = float("inf")
                posts.append(posted)
                sends.append(sent)
                Notice.objects.filter(pk=notice.pk).delete()
    finally:
        fake_providers.stop(fake, server)
    print(f"median post {statistics.median(posts):.2f} s, send {statistics.median(sends):.2f} s", flush=True)
    return [Metric.from_runs("post a notice to 20,000 residents (16,000 receipts)", posts, "s", None, "lower"),
            Metric.from_runs("send it to the 10,667 LINE households (multicast)", sends, "s", None, "lower")]
