"""The safety check's report on a known set of answers: response rate by area and by
channel, the median answer time, the time until 80% and 95% answered, who was never
reached, the comparison with earlier drills, and the CSV and Excel exports (only the
residents the viewer may see, no sensitive field)."""
import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from outreach import reports
from outreach.models import Answer, Ask, AskAttempt, SafetyCheck
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, HOST_B, TenantClient, make_user
from tests.watch.conftest import attach, make_resident

MINUTE = timedelta(minutes=1)


def signed_in(username, language="en", host=HOST_A) -> TenantClient:
    client = TenantClient(host, language=language)
    client.sign_in(username)
    return client


def make_started_check(admin, title, started_at, kind=SafetyCheck.Kind.DRILL, state=SafetyCheck.State.CLOSED):
    return SafetyCheck.objects.create(
        title=title, question="ご無事ですか？", kind=kind, state=state, channels=["line", "sms"],
        silence_minutes=[10], deadline=started_at + timedelta(hours=1), created_by=admin, started_by=admin,
        started_at=started_at)


def ask(check, resident, *, answered_after=None, via="", reached=True, answer=Answer.FINE):
    started = check.started_at
    return Ask.objects.create(
        kind=Ask.Kind.SAFETY, safety_check=check, resident=resident, area=resident.area, plan=["line", "sms"],
        state=Ask.State.ANSWERED if answered_after is not None else Ask.State.SILENT, first_sent_at=started,
        reached=reached, answer=answer if answered_after is not None else "",
        answered_at=started + answered_after if answered_after is not None else None, answered_via=via)


@pytest.fixture
def known(admin_a, areas_a):
    """Ten residents, five in 3班 and five in 興戸, asked two hours ago. Nine answered, at
    1, 2, …, 9 minutes (six by LINE, three by SMS); the tenth, in 興戸, was never reached.
    Earlier: a drill a week ago (both asked answered within 3 minutes), a cancelled drill
    and a real event; later: another drill."""
    T0 = timezone.now() - timedelta(hours=2)
    with tenant_scope("tenant_a"):
        residents = [make_resident(areas_a["block" if n < 5 else "kodo"], f"住民 {n:02d}",
                                   health_notes="心不全の既往" if n == 0 else "", care_level="要介護2")
                     for n in range(10)]
        check = make_started_check(admin_a, "12月の訓練", T0)
        asks = []
        for n, resident in enumerate(residents):
            if n < 9:
                asks.append(ask(check, resident, answered_after=(n + 1) * MINUTE, via="line" if n < 6 else "sms",
                                answer=Answer.NEED_HELP if n == 4 else Answer.FINE))
            else:
                asks.append(ask(check, resident, reached=False))
        for n, item in enumerate(asks):
            if n < 7:
                AskAttempt.objects.create(ask=item, channel="line", batch_key="0" * 32, at=T0, ok=True)
            if 6 <= n < 9:
                AskAttempt.objects.create(ask=item, channel="sms", batch_key="1" * 32, at=T0, ok=True)
        earlier = make_started_check(admin_a, "11月の訓練", T0 - timedelta(days=7))
        ask(earlier, residents[0], answered_after=2 * MINUTE, via="line")
        ask(earlier, residents[5], answered_after=3 * MINUTE, via="line")
        cancelled = make_started_check(admin_a, "中止した訓練", T0 - timedelta(days=3),
                                       state=SafetyCheck.State.CANCELLED)
        real = make_started_check(admin_a, "本番の地震", T0 - timedelta(days=2), kind=SafetyCheck.Kind.REAL)
        later = make_started_check(admin_a, "次の訓練", T0 + timedelta(minutes=30), state=SafetyCheck.State.OPEN)
    return {"check": check, "earlier": earlier, "cancelled": cancelled, "real": real, "later": later,
            "residents": residents, "T0": T0}


@pytest.fixture
def kodo_staff(areas_a):
    staff = make_user("tenant_a", "staff-kodo", User.Role.MUNICIPAL_STAFF)
    attach(staff, areas_a["kodo"])
    return staff


def test_report_figures_on_a_known_set_of_answers(known, admin_a):
    with tenant_scope("tenant_a"):
        figures = reports.report(known["check"], admin_a)
    assert figures["totals"]["total"] == 10 and figures["totals"]["answered"] == 9
    assert figures["totals"]["need_help"] == 1 and figures["totals"]["safe"] == 8
    assert figures["median"] == 5 * MINUTE
    assert figures["t80"] == 8 * MINUTE  # the 8th of 10 answers
    assert figures["t95"] is None and figures["t95_text"] == "not reached"  # 10 needed, 9 came
    assert figures["median_text"] == "5 min 0 s"
    assert [(a["area"], a["total"], a["answered"], a["rate"]) for a in figures["areas"]] == [
        ("大住 › 大住ヶ丘連合自治会 › 3班", 5, 5, 1.0), ("興戸", 5, 4, 0.8)]
    assert [(c["via"], c["reached"], c["answered"], c["rate"]) for c in figures["channels"]] == [
        ("line", 7, 6, round(6 / 7, 4)), ("sms", 3, 3, 1.0)]
    assert [a.resident.name for a in figures["never_reached"]] == ["住民 09"]


def test_the_report_page_shows_the_figures_and_earlier_drills_on_one_chart(known, admin_a):
    page = signed_in("admin-a", language="ja").get(f"/outreach/safety/{known['check'].pk}/report/").content.decode()
    assert 'data-testid="median">5分0秒<' in page and 'data-testid="t80">8分0秒<' in page
    assert 'data-testid="t95">未達<' in page and 'data-testid="rate">90%<' in page
    assert "80%回答まで" in page and "95%回答まで" in page
    legend = page.split('data-testid="legend"')[1].split("</ul>")[0]
    assert "12月の訓練" in legend and "11月の訓練" in legend
    for other in ("中止した訓練", "本番の地震", "次の訓練"):
        assert other not in page
    assert page.count('<polyline class="curve') == 2  # this check and the one earlier drill
    assert "住民 09" in page.split('data-testid="never-reached"')[1]


def test_earlier_drills_are_the_drills_started_before_this_one(known):
    with tenant_scope("tenant_a"):
        assert reports.earlier_drills(known["check"]) == [known["earlier"]]
        assert reports.earlier_drills(known["later"]) == [known["check"], known["earlier"]]
        assert reports.earlier_drills(known["earlier"]) == []


def test_a_viewer_limited_to_one_district_gets_its_figures_only(known, kodo_staff):
    with tenant_scope("tenant_a"):
        figures = reports.report(known["check"], kodo_staff)
    assert (figures["totals"]["total"], figures["totals"]["answered"]) == (5, 4)
    assert figures["t80"] == 9 * MINUTE  # 4 of 5 answered: the 4th answer, at 9 minutes
    assert [a["area"] for a in figures["areas"]] == ["興戸"]
    rows = list(csv.reader(io.StringIO(
        signed_in("staff-kodo").get(f"/outreach/safety/{known['check'].pk}/report.csv").content.decode("utf-8-sig"))))
    assert [row[1] for row in rows[1:]] == ["住民 05", "住民 06", "住民 07", "住民 08", "住民 09"]


def test_the_csv_export_is_utf8_with_a_bom_and_carries_no_sensitive_field(known, admin_a):
    response = signed_in("admin-a", language="ja").get(f"/outreach/safety/{known['check'].pk}/report.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    assert response.content.startswith(b"\xef\xbb\xbf")
    text = response.content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["地域", "対象者", "状態"]
    assert len(rows) == 11
    first = rows[1]
    assert first[0] == "大住 › 大住ヶ丘連合自治会 › 3班" and first[1] == "住民 00"
    assert first[3] == "元気・無事" and first[4] == "LINE" and first[7] == "はい"
    assert rows[-1][1] == "住民 09" and rows[-1][7] == "いいえ"
    assert "心不全" not in text and "要介護" not in text
    assert "\r\n" in text


def test_the_excel_export_has_a_summary_and_one_row_per_resident(known, admin_a):
    from openpyxl import load_workbook

    response = signed_in("admin-a", language="ja").get(f"/outreach/safety/{known['check'].pk}/report.xlsx")
    assert response.status_code == 200 and "spreadsheetml" in response["Content-Type"]
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["概要", "対象者"]
    summary = {row[0]: row[1] for row in book["概要"].iter_rows(values_only=True) if row and row[0]}
    assert summary["安否確認"] == "12月の訓練" and summary["問いかけ数"] == 10 and summary["回答あり"] == 9
    assert summary["回答までの時間の中央値（秒）"] == 300 and summary["80%回答までの時間（秒）"] == 480
    assert summary["95%回答までの時間（秒）"] in (None, "")
    assert summary["興戸"] == 5  # the area table: asked
    people = list(book["対象者"].iter_rows(values_only=True))
    assert len(people) == 11 and people[1][1] == "住民 00"
    cells = " ".join(str(v) for row in people for v in row if v is not None)
    assert "心不全" not in cells and "要介護" not in cells


def test_another_tenant_gets_404_for_the_report_and_exports(known, outsider_b):
    client = signed_in("outsider-b", host=HOST_B)
    for page in ("report/", "report.csv", "report.xlsx"):
        response = client.get(f"/outreach/safety/{known['check'].pk}/{page}")
        assert response.status_code == 404 and "住民" not in response.content.decode("utf-8", "replace"), page


def test_the_curve_steps_up_with_each_answer(known, admin_a):
    with tenant_scope("tenant_a"):
        points = reports.curve(known["check"], admin_a)
    assert points[0] == (0.0, 0.0) and points[1] == (1.0, 0.1) and points[-1] == (9.0, 0.9)
    drawn = reports.chart([{"label": "x", "points": points, "current": True}])
    assert drawn["x_max"] == 10 and drawn["series"][0]["svg"].startswith("48.0,")


def test_a_name_that_looks_like_a_formula_stays_text_in_both_exports(known, admin_a):
    from openpyxl import load_workbook

    with tenant_scope("tenant_a"):
        resident = known["residents"][0]
        resident.name = '=HYPERLINK("http://example.com","住民")'
        resident.save(update_fields=["name"])
    client = signed_in("admin-a")
    text = client.get(f"/outreach/safety/{known['check'].pk}/report.csv").content.decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(text)))[1][1] == "'" + resident.name
    book = load_workbook(io.BytesIO(client.get(f"/outreach/safety/{known['check'].pk}/report.xlsx").content))
    cell = book.worksheets[1]["B2"]
    assert cell.value == "'" + resident.name and cell.data_type == "s"


def test_the_demo_drill_is_made_once_and_is_compared_with_the_next_drill(admin_a, areas_a):
    from outreach.demo import DEMO_TITLE, do_load_demo_drill

    with tenant_scope("tenant_a"):
        for n in range(12):
            make_resident(areas_a["block"], f"デモ {n}", mobile_phone=f"090-0000-{n:04d}")
        demo = do_load_demo_drill()
        assert do_load_demo_drill() is None
        assert demo.asks.count() == 12 and demo.asks.filter(state=Ask.State.ANSWERED).count() == 10
        now = make_started_check(admin_a, "今回の訓練", timezone.now() - timedelta(minutes=30))
        series = reports.comparison(now, admin_a)["series"]
    assert [s["label"].split(" (")[0] for s in series] == ["今回の訓練", DEMO_TITLE]
    assert series[1]["share"] == round(10 / 12, 4)
