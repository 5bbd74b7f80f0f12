"""Resident search over 100,000 residents: the overview's queries for kanji, kana and phone queries.

One tenant with 100 blocks in 5 districts (5 x 4 associations x 5 blocks) and 100,000
residents with generated Japanese names (the commonest surnames by frequency, so
「田中」 or 「鈴木」 match 1-2 % each, and a long tail), furigana in katakana (some in hiragana or half-width),
addresses of 京田辺市 and phone numbers; their search columns are computed by
watch.search.resident_search_fields and the rows inserted with COPY. Timed: what the
overview page runs for a search (watch.views.overview_page: the totals and the first
page of 100 rows, evaluated), as a municipal staff member who sees the whole tenant and
as one attached to one district; also the whole page through django.test.Client, for
information. Prints EXPLAIN (ANALYZE) of the queries of one search (no planner setting
changed). Seeded data is kept between runs (get-or-create by schema name).
"""
import random
import time

from django.db import connection

from bench import harness
from bench.runner import Metric

SCHEMA = "bench_search"
SEED = "seed v3"  # in the tenant's name: a seed of another version is replaced
DISTRICTS = ["大住", "田辺", "興戸", "三山木", "普賢寺"]
ASSOCIATIONS, BLOCKS = 4, 5
RESIDENTS = 100_000
REPEATS = 40  # searches of each kind, per run
RUNS = 3
STAFF, DISTRICT_STAFF = "bench-staff", "bench-district-staff"

# (surname, kana, weight): the commonest surnames, roughly by frequency.
SURNAMES = [
    ("佐藤", "サトウ", 19), ("鈴木", "スズキ", 18), ("高橋", "タカハシ", 14), ("田中", "タナカ", 13),
    ("伊藤", "イトウ", 11), ("渡辺", "ワタナベ", 11), ("山本", "ヤマモト", 11), ("中村", "ナカムラ", 10),
    ("小林", "コバヤシ", 10), ("加藤", "カトウ", 9), ("吉田", "ヨシダ", 8), ("山田", "ヤマダ", 8),
    ("佐々木", "ササキ", 7), ("山口", "ヤマグチ", 6), ("松本", "マツモト", 6), ("井上", "イノウエ", 6),
    ("木村", "キムラ", 6), ("林", "ハヤシ", 5), ("斎藤", "サイトウ", 5), ("清水", "シミズ", 5),
    ("山崎", "ヤマザキ", 4), ("森", "モリ", 4), ("池田", "イケダ", 4), ("橋本", "ハシモト", 4),
    ("阿部", "アベ", 4), ("石川", "イシカワ", 4), ("山下", "ヤマシタ", 4), ("中島", "ナカジマ", 4),
    ("石井", "イシイ", 3), ("小川", "オガワ", 3), ("前田", "マエダ", 3), ("岡田", "オカダ", 3),
    ("長谷川", "ハセガワ", 3), ("藤田", "フジタ", 3), ("後藤", "ゴトウ", 3), ("近藤", "コンドウ", 3),
    ("村上", "ムラカミ", 3), ("遠藤", "エンドウ", 3), ("青木", "アオキ", 3), ("坂本", "サカモト", 3),
    ("中田", "ナカタ", 2), ("西村", "ニシムラ", 2), ("福田", "フクダ", 2), ("太田", "オオタ", 2),
    ("三浦", "ミウラ", 2), ("藤井", "フジイ", 2), ("岡本", "オカモト", 2), ("松田", "マツダ", 2),
    ("中川", "ナカガワ", 2), ("中野", "ナカノ", 2), ("原田", "ハラダ", 2), ("小野", "オノ", 2),
    ("田村", "タムラ", 2), ("竹内", "タケウチ", 2), ("金子", "カネコ", 2), ("和田", "ワダ", 2),
    ("中山", "ナカヤマ", 2), ("石田", "イシダ", 2), ("上田", "ウエダ", 2), ("森田", "モリタ", 2),
    ("原", "ハラ", 2), ("柴田", "シバタ", 2), ("酒井", "サカイ", 2), ("工藤", "クドウ", 2),
    ("横山", "ヨコヤマ", 2), ("宮崎", "ミヤザキ", 2), ("宮本", "ミヤモト", 2), ("内田", "ウチダ", 2),
    ("高木", "タカギ", 2), ("安藤", "アンドウ", 2), ("谷口", "タニグチ", 1), ("大野", "オオノ", 1),
    ("丸山", "マルヤマ", 1), ("今井", "イマイ", 1), ("高田", "タカダ", 1), ("藤原", "フジワラ", 1),
    ("河野", "コウノ", 1), ("小島", "コジマ", 1), ("村田", "ムラタ", 1), ("武田", "タケダ", 1),
    ("上野", "ウエノ", 1), ("杉山", "スギヤマ", 1), ("増田", "マスダ", 1), ("平野", "ヒラノ", 1),
    ("大塚", "オオツカ", 1), ("千葉", "チバ", 1), ("久保", "クボ", 1), ("松井", "マツイ", 1),
    ("小山", "コヤマ", 1), ("岩崎", "イワサキ", 1), ("桜井", "サクライ", 1), ("野口", "ノグチ", 1),
    ("松尾", "マツオ", 1), ("野村", "ノムラ", 1), ("木下", "キノシタ", 1), ("菊地", "キクチ", 1),
    ("佐野", "サノ", 1), ("大西", "オオニシ", 1), ("杉本", "スギモト", 1), ("新井", "アライ", 1),
    ("田辺", "タナベ", 1), ("髙橋", "タカハシ", 1), ("渡邊", "ワタナベ", 1), ("齋藤", "サイトウ", 1),
]
# The long tail (60 % of people): surnames of two common parts, 「北沢」, 「石田」, 「中川」.
TAIL_FIRST = [("上", "ウエ"), ("下", "シモ"), ("大", "オオ"), ("小", "コ"), ("北", "キタ"), ("南", "ミナミ"),
              ("西", "ニシ"), ("東", "ヒガシ"), ("石", "イシ"), ("松", "マツ"), ("竹", "タケ"), ("梅", "ウメ"),
              ("杉", "スギ"), ("荒", "アラ"), ("早", "ハヤ"), ("金", "カネ"), ("宮", "ミヤ"), ("浅", "アサ"),
              ("黒", "クロ"), ("白", "シラ"), ("青", "アオ"), ("永", "ナガ"), ("福", "フク"), ("岩", "イワ"),
              ("水", "ミズ"), ("柳", "ヤナギ"), ("中", "ナカ"), ("野", "ノ"), ("吉", "ヨシ"), ("藤", "フジ")]
TAIL_SECOND = [("川", "カワ"), ("沢", "サワ"), ("野", "ノ"), ("原", "ハラ"), ("谷", "タニ"), ("島", "シマ"),
               ("井", "イ"), ("尾", "オ"), ("口", "グチ"), ("岡", "オカ"), ("崎", "サキ"), ("村", "ムラ"),
               ("本", "モト"), ("瀬", "セ"), ("浦", "ウラ"), ("森", "モリ"), ("橋", "ハシ"), ("田", "タ"),
               ("塚", "ツカ"), ("山", "ヤマ")]
GIVEN = [
    ("花子", "ハナコ"), ("幸子", "サチコ"), ("和子", "カズコ"), ("節子", "セツコ"), ("洋子", "ヨウコ"),
    ("美智子", "ミチコ"), ("京子", "キョウコ"), ("久子", "ヒサコ"), ("静子", "シズコ"), ("文子", "フミコ"),
    ("キヨ", "キヨ"), ("ハル", "ハル"), ("トメ", "トメ"), ("千代", "チヨ"), ("恵子", "ケイコ"),
    ("清", "キヨシ"), ("茂", "シゲル"), ("勇", "イサム"), ("博", "ヒロシ"), ("実", "ミノル"),
    ("進", "ススム"), ("正雄", "マサオ"), ("一郎", "イチロウ"), ("弘", "ヒロシ"), ("武", "タケシ"),
    ("三郎", "サブロウ"), ("昭", "アキラ"), ("修", "オサム"), ("勝", "マサル"), ("稔", "ミノル"),
    ("健一", "ケンイチ"), ("和夫", "カズオ"), ("正", "タダシ"), ("隆", "タカシ"), ("明", "アキラ"),
]
TOWNS = ["大住ヶ丘", "大住", "田辺", "田辺中央", "興戸", "三山木", "河原", "草内", "東", "松井ヶ丘", "薪",
         "普賢寺", "高船", "多々羅", "宮津", "水取", "天王", "打田", "同志社山手", "花住坂"]
HOUSEHOLDS = ["living_alone"] * 6 + ["elderly_only"] * 3 + ["alone_daytime", "other"]

_HIRAGANA = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}
_HALF = str.maketrans(
    "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンッャュョー",
    "ｱｲｳｴｵｶｷｸｹｺｻｼｽｾｿﾀﾁﾂﾃﾄﾅﾆﾇﾈﾉﾊﾋﾌﾍﾎﾏﾐﾑﾒﾓﾔﾕﾖﾗﾘﾙﾚﾛﾜｦﾝｯｬｭｮｰ")
_VOICED = str.maketrans({"ガ": "ｶﾞ", "ギ": "ｷﾞ", "グ": "ｸﾞ", "ゲ": "ｹﾞ", "ゴ": "ｺﾞ", "ザ": "ｻﾞ", "ジ": "ｼﾞ",
                         "ズ": "ｽﾞ", "ゼ": "ｾﾞ", "ゾ": "ｿﾞ", "ダ": "ﾀﾞ", "ヂ": "ﾁﾞ", "ヅ": "ﾂﾞ", "デ": "ﾃﾞ",
                         "ド": "ﾄﾞ", "バ": "ﾊﾞ", "ビ": "ﾋﾞ", "ブ": "ﾌﾞ", "ベ": "ﾍﾞ", "ボ": "ﾎﾞ", "パ": "ﾊﾟ",
                         "ピ": "ﾋﾟ", "プ": "ﾌﾟ", "ペ": "ﾍﾟ", "ポ": "ﾎﾟ"})

# The queries timed: 2-character kanji (surnames and a place), 2-character kana, 4 digits.
QUERIES = {
    "kanji": ["田中", "鈴木", "中村", "山田", "大住"],
    "kana": ["たな", "すず", "さと", "やま", "ﾊﾅ"],
    "phone": ["4321", "1234", "6543", "0987", "5555"],
}


def _kana(katakana: str, rng: random.Random) -> str:
    """Furigana as offices write it: mostly katakana, some hiragana, a few half-width."""
    roll = rng.random()
    if roll < 0.15:
        return katakana.translate(_HIRAGANA)
    if roll < 0.20:
        return katakana.translate(_VOICED).translate(_HALF)
    return katakana


def _residents(blocks: list, rng: random.Random):
    """Unsaved Resident objects with realistic fields and their search columns."""
    from datetime import date, timedelta

    from django.utils import timezone

    from watch.models import Resident
    from watch.search import resident_search_fields

    surnames, weights = [s[:2] for s in SURNAMES], [s[2] for s in SURNAMES]
    now = timezone.now()
    for i in range(RESIDENTS):
        if rng.random() < 0.6:
            (first, first_kana), (second, second_kana) = rng.choice(TAIL_FIRST), rng.choice(TAIL_SECOND)
            surname, surname_kana = first + second, first_kana + second_kana
        else:
            surname, surname_kana = rng.choices(surnames, weights)[0]
        given, given_kana = rng.choice(GIVEN)
        block = blocks[i % len(blocks)]
        last = None if rng.random() < 0.05 else now - timedelta(hours=rng.uniform(1, 24 * 20))
        consent = rng.choices(["given", "not_answered", "refused", "withdrawn"], [80, 12, 6, 2])[0]
        resident = Resident(
            area_id=block.pk, external_id=f"26211{i:08d}", name=f"{surname} {given}",
            furigana=_kana(f"{surname_kana} {given_kana}", rng), gender=rng.choice(["female", "male"]),
            date_of_birth=date(1925, 1, 1) + timedelta(days=rng.randrange(365 * 30)),
            postal_code=f"610-03{rng.randrange(100):02d}",
            address=f"京都府京田辺市{rng.choice(TOWNS)}{rng.randrange(1, 30)}-{rng.randrange(1, 40)}",
            phone=f"0774-{rng.randrange(10, 99)}-{rng.randrange(10000):04d}" if rng.random() < 0.8 else "",
            mobile_phone=f"090-{rng.randrange(10000):04d}-{rng.randrange(10000):04d}" if rng.random() < 0.4 else "",
            household=rng.choice(HOUSEHOLDS), needs_evacuation_support=rng.random() < 0.3,
            consent=consent, consent_share_with_volunteers=consent == "given",
            consent_share_with_association=consent == "given",
            last_contact_at=last, last_outcome="" if last is None else rng.choice(["fine"] * 9 + ["no_answer"]),
            next_due_at=(last or now) + timedelta(days=7, hours=12), created_at=now, updated_at=now,
        )
        resident.is_overdue = resident.next_due_at <= now
        resident.search_text, resident.search_grams = resident_search_fields(resident)
        yield resident


def _copy_residents(blocks: list) -> None:
    from watch.models import Resident

    fields = [f for f in Resident._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with connection.cursor() as cursor, cursor.copy(f"COPY watch_resident ({columns}) FROM STDIN") as copy:
        for resident in _residents(blocks, random.Random(20261202)):
            copy.write_row([getattr(resident, f.attname) for f in fields])


def _seed() -> dict:
    from tenants.accounts.models import User
    from tenants.context import tenant_scope
    from watch.actions import do_create_area
    from watch.models import Area, AreaMembership, Resident

    def complete():
        return Resident.objects.count() == RESIDENTS and User.objects.filter(username=DISTRICT_STAFF).exists()

    if harness.tenant_to_seed(SCHEMA, complete, name=f"{SCHEMA} {SEED}"):
        started = time.perf_counter()
        with tenant_scope(SCHEMA):
            blocks = []
            for d, district_name in enumerate(DISTRICTS):
                district = do_create_area(name=district_name, kind=Area.Kind.DISTRICT)
                for a in range(ASSOCIATIONS):
                    association = do_create_area(name=f"{district_name}第{a + 1}自治会", kind=Area.Kind.ASSOCIATION,
                                                 parent=district)
                    blocks += [do_create_area(name=f"{b + 1}班", kind=Area.Kind.BLOCK, parent=association)
                               for b in range(BLOCKS)]
                if d == 0:
                    first = district
            _copy_residents(blocks)
            User.objects.create_user(username=STAFF, password=None, role=User.Role.MUNICIPAL_STAFF,
                                     display_name="Bench staff")
            district_staff = User.objects.create_user(username=DISTRICT_STAFF, password=None,
                                                      role=User.Role.MUNICIPAL_STAFF, display_name="Bench district")
            AreaMembership.objects.create(user=district_staff, area=first)
            with connection.cursor() as cursor:
                for table in ("watch_resident", "watch_area", "watch_areamembership"):
                    cursor.execute(f'VACUUM (ANALYZE) "{SCHEMA}"."{table}"')
        print(f"(seeded {SCHEMA}: {RESIDENTS} residents in {time.perf_counter() - started:.1f} s)", flush=True)
    with tenant_scope(SCHEMA):
        return {"staff": User.objects.get(username=STAFF), "district_staff": User.objects.get(username=DISTRICT_STAFF)}


def _page(user, query: str) -> tuple[float, int]:
    """The overview's queries for `query`, evaluated: (milliseconds, total found)."""
    from django.http import QueryDict

    from watch.views import overview_page

    params = QueryDict(mutable=True)
    params["q"] = query
    start = time.perf_counter()
    page, _search, _overdue = overview_page(user, params)
    len(page.object_list)
    return (time.perf_counter() - start) * 1000, page.paginator.count


def _explain(user, query: str) -> None:
    """EXPLAIN (ANALYZE) of the very statements the page ran on residents for `query`."""
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        _page(user, query)
    statements = [q["sql"] for q in captured.captured_queries if "watch_resident" in q["sql"]]
    for sql in statements:
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            plan = "\n".join(f"    {row[0]}" for row in cursor.fetchall())
        print(f"  EXPLAIN ANALYZE for q={query!r} as {user.username}:\n    {sql[:160]}…\n{plan}", flush=True)


def _full_page_ms(users: dict) -> dict[str, float]:
    """The whole GET /watch/?q=… (middleware, template) through django.test.Client, p95 ms."""
    from urllib.parse import urlencode

    from django.test import Client

    from tenants.context import tenant_scope

    results = {}
    for label, user in users.items():
        client = Client(HTTP_HOST=harness.tenant_domain(SCHEMA))
        with tenant_scope(SCHEMA):
            client.force_login(user)
            session = client.session
            session["schema"] = SCHEMA
            session.save()
        connection.set_schema_to_public()
        timings = []
        for query in [q for qs in QUERIES.values() for q in qs] * 2:
            start = time.perf_counter()
            response = client.get("/watch/?" + urlencode({"q": query}))
            timings.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"GET /watch/?q={query} answered {response.status_code}")
        results[label] = harness.percentiles(timings)["p95"]
    return results


def run() -> list[Metric]:
    from tenants.context import tenant_scope

    users = _seed()
    print(f"(product: {harness.product_revision()})", flush=True)
    per_kind: dict[str, list[float]] = {f"{kind}_{who}": [] for kind in QUERIES for who in users}
    p50_runs: dict[str, list[float]] = {key: [] for key in per_kind}
    with tenant_scope(SCHEMA):
        for who, user in users.items():
            for query in QUERIES["kanji"]:
                _ms, found = _page(user, query)  # warm the caches
                print(f"  {who}: q={query!r} finds {found}", flush=True)
            for kind in ("kana", "phone"):
                print(f"  {who}: " + ", ".join(f"q={q!r} finds {_page(user, q)[1]}" for q in QUERIES[kind]),
                      flush=True)
        for i in range(RUNS):
            for who, user in users.items():
                for kind, queries in QUERIES.items():
                    timings = [_page(user, query)[0] for _ in range(REPEATS // len(queries)) for query in queries]
                    pct = harness.percentiles(timings)
                    per_kind[f"{kind}_{who}"].append(pct["p95"])
                    p50_runs[f"{kind}_{who}"].append(pct["p50"])
                    print(f"  run {i + 1} {who:<15} {kind:<6} p50 {pct['p50']:.1f} p95 {pct['p95']:.1f} "
                          f"max {pct['max']:.1f} ms", flush=True)
        _explain(users["staff"], "田中")
        _explain(users["district_staff"], "4321")
    page_p95 = _full_page_ms(users)
    print("  whole page GET /watch/?q=… p95: " + ", ".join(f"{who} {ms:.1f} ms" for who, ms in page_p95.items()),
          flush=True)
    connection.set_schema_to_public()
    metrics = []
    for key, runs in per_kind.items():
        metrics.append(Metric.from_runs(f"search_{key}_p95_ms", runs, "ms", target=50, better="lower"))
        metrics.append(Metric.from_runs(f"search_{key}_p50_ms", p50_runs[key], "ms", target=None, better="lower"))
    return metrics
