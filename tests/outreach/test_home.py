"""The home page by role: what staff, case workers and officers see of the residents
their lens shows, the volunteer's redirect, the first steps of an empty tenant, its
fixed number of queries, and the import's CSV template."""
from datetime import datetime, time, timedelta
from http import HTTPStatus
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from outreach.models import Concern, Severity
from tenants.accounts.models import User
from tenants.context import forget_cached_hosts, tenant_scope
from tenants.models import Tenant
from tests.conftest import HOST_A, HOST_B, TenantClient, make_user
from tests.watch.conftest import areas_a, attach, hanako, make_resident, resident_b, shigeru  # noqa: F401
from watch.importing import FIELD_KEYS, check_import, read_table, suggest_columns
from watch.models import Assignment, ContactLog, Resident, Visit

FIRST_STEP_URLS = ("watch:areas", "watch:add_resident", "watch:import_residents", "watch:import_template",
                   "accounts:users")


def signed_in(username: str, language: str = "en", host: str = HOST_A) -> TenantClient:
    client = TenantClient(host, language=language)
    client.sign_in(username)
    return client


def overdue(resident: Resident, days: float) -> None:
    Resident.objects.filter(pk=resident.pk).update(is_overdue=True,
                                                   next_due_at=timezone.now() - timedelta(days=days))


def concern(resident: Resident, *, cause=Concern.Cause.MANUAL, severity=Severity.NORMAL, state=Concern.State.OPEN,
            days_ago: float = 0, note: str = "") -> Concern:
    made = Concern.objects.create(resident=resident, cause=cause, severity=severity, state=state, note=note)
    Concern.objects.filter(pk=made.pk).update(opened_at=timezone.now() - timedelta(days=days_ago))
    return made


def visit(resident: Resident, visitor: User, starts_on, ends_on=None, state=Visit.State.PLANNED) -> Visit:
    ends_on = ends_on or starts_on
    return Visit.objects.create(resident=resident, visitor=visitor, starts_on=starts_on, ends_on=ends_on,
                                due_at=datetime.combine(ends_on + timedelta(days=1), time.min, tzinfo=ZoneInfo("UTC")),
                                state=state)


def contact(resident: Resident, *, ago: timedelta, note: str = "", by: User | None = None) -> ContactLog:
    return ContactLog.objects.create(resident=resident, occurred_at=timezone.now() - ago, channel="visit",
                                     outcome="fine", note=note, logged_by=by)


def tenant_today() -> "datetime.date":
    return timezone.now().astimezone(ZoneInfo(Tenant.objects.get(schema_name="tenant_a").time_zone)).date()


@pytest.fixture
def district_staff(areas_a):  # noqa: F811 - the fixture imported above
    staff = make_user("tenant_a", "osumi-staff", User.Role.MUNICIPAL_STAFF)
    attach(staff, areas_a["osumi"])
    return staff


def test_staff_see_who_is_overdue_longest_first_with_links_and_full_area_paths(
        hanako, shigeru, areas_a, district_staff):  # noqa: F811
    with tenant_scope("tenant_a"):
        later = make_resident(areas_a["block"], "佐藤 一郎")
        overdue(later, days=1)
        overdue(hanako, days=3)
        overdue(shigeru, days=5)  # in 興戸: not this person's district
    page = signed_in("osumi-staff").get("/").content.decode()
    assert '<span class="count" data-testid="overdue-count">2</span>' in page
    assert page.index("山田 花子") < page.index("佐藤 一郎")
    assert f'href="{reverse("watch:resident", args=[hanako.pk])}"' in page
    assert "大住 › 大住ヶ丘連合自治会 › 3班" in page
    assert "髙橋 茂" not in page


def test_open_concerns_are_counted_by_state_and_age_and_the_urgent_come_first(hanako, shigeru, areas_a, staff_a):  # noqa: F811
    with tenant_scope("tenant_a"):
        third = make_resident(areas_a["block"], "佐藤 一郎")
        oldest = concern(hanako, days_ago=10)
        acknowledged = concern(shigeru, state=Concern.State.ACKNOWLEDGED, days_ago=3)
        urgent = concern(third, cause=Concern.Cause.DEVICE_CALL_REQUEST, severity=Severity.URGENT, days_ago=0.1)
        concern(hanako, cause=Concern.Cause.OVERDUE, state=Concern.State.RESOLVED, days_ago=20)
    page = signed_in("staff-a", language="ja").get("/").content.decode()
    counts = {key: page.split(f'data-count="{key}">', 1)[1].split("<", 1)[0]
              for key in ("open", "acknowledged", "urgent", "today", "week", "older")}
    assert counts == {"open": "2", "acknowledged": "1", "urgent": "1", "today": "1", "week": "1", "older": "1"}
    assert '<span class="count" data-testid="concern-count">3</span>' in page
    rows = [page.index(f'data-concern="{c.pk}"') for c in (urgent, oldest, acknowledged)]
    assert rows == sorted(rows), "urgent first, then the oldest"
    assert page.count('<span data-field="state">未対応</span>') == 2
    assert page.count('<span data-field="state">対応中</span>') == 1
    assert "開く" not in page


def test_todays_planned_visits_follow_the_tenants_time_zone(hanako, staff_a, volunteer_a, tenant_a):  # noqa: F811
    # At any moment Kiritimati (UTC+14) is a day or two ahead of Pago Pago (UTC-11).
    kiritimati_today = timezone.now().astimezone(ZoneInfo("Pacific/Kiritimati")).date()
    with tenant_scope("tenant_a"):
        visit(hanako, volunteer_a, kiritimati_today)
        visit(hanako, volunteer_a, kiritimati_today - timedelta(days=3), kiritimati_today + timedelta(days=1))
        visit(hanako, volunteer_a, kiritimati_today, state=Visit.State.DONE)
    client = signed_in("staff-a")
    Tenant.objects.filter(pk=tenant_a.pk).update(time_zone="Pacific/Kiritimati")
    forget_cached_hosts()  # the tenant is cached with its host
    page = client.get("/").content.decode()
    assert '<span class="count" data-testid="visit-count">2</span>' in page
    assert "by volunteer-a" in page
    Tenant.objects.filter(pk=tenant_a.pk).update(time_zone="Pacific/Pago_Pago")
    forget_cached_hosts()
    page = client.get("/").content.decode()
    assert '<span class="count" data-testid="visit-count">1</span>' in page  # only the window of several days


def test_contacts_of_the_last_seven_days_are_counted_per_day_in_the_persons_areas(
        hanako, shigeru, district_staff, volunteer_a):  # noqa: F811
    with tenant_scope("tenant_a"):
        contact(hanako, ago=timedelta(minutes=5), note="玄関先で元気に挨拶", by=volunteer_a)
        contact(hanako, ago=timedelta(days=2))
        contact(hanako, ago=timedelta(days=9))  # before the week
        contact(shigeru, ago=timedelta(minutes=1), note="興戸の記録")  # another district
    page = signed_in("osumi-staff").get("/").content.decode()
    assert '<span class="count" data-testid="contact-total">2</span>' in page
    tz = ZoneInfo("Asia/Tokyo")
    for ago in (timedelta(minutes=5), timedelta(days=2)):
        day = (timezone.now() - ago).astimezone(tz).date()
        assert f'data-day="{day.isoformat()}">1<' in page or f'data-day="{day.isoformat()}">2<' in page
    assert page.count("data-day=") == 7
    assert "玄関先で元気に挨拶" in page  # staff read the notes
    assert "興戸の記録" not in page and "髙橋 茂" not in page


def test_an_association_officer_sees_their_residents_but_no_notes(hanako, areas_a, volunteer_a):  # noqa: F811
    officer = make_user("tenant_a", "officer-a", User.Role.ASSOCIATION_OFFICER)
    attach(officer, areas_a["assoc"])
    with tenant_scope("tenant_a"):
        contact(hanako, ago=timedelta(hours=1), note="認知症の進行が心配", by=volunteer_a)
        overdue(hanako, days=1)
    page = signed_in("officer-a").get("/").content.decode()
    assert "山田 花子" in page
    assert "認知症の進行が心配" not in page
    assert "心不全の既往" not in page


def test_a_case_worker_sees_the_residents_on_their_team(hanako, shigeru):  # noqa: F811
    case_worker = make_user("tenant_a", "cw-a", User.Role.CASE_WORKER)
    with tenant_scope("tenant_a"):
        Assignment.objects.create(resident=shigeru, user=case_worker)
        overdue(shigeru, days=1)
        overdue(hanako, days=2)
    page = signed_in("cw-a").get("/").content.decode()
    assert "髙橋 茂" in page and "山田 花子" not in page


def test_a_volunteer_is_sent_to_their_own_list(hanako, volunteer_a):  # noqa: F811
    response = signed_in("volunteer-a").get("/")
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == reverse("watch:my_residents")


def test_tenant_b_sees_nothing_of_tenant_a_on_the_home_page(hanako, resident_b, outsider_b, volunteer_a):  # noqa: F811
    with tenant_scope("tenant_a"):
        overdue(hanako, days=2)
        concern(hanako, severity=Severity.URGENT)
        contact(hanako, ago=timedelta(hours=1), note="A市の記録")
        visit(hanako, volunteer_a, tenant_today())
    at_home = signed_in("outsider-b", host=HOST_B)
    page = at_home.get("/").content.decode()
    assert "山田 花子" not in page and "A市の記録" not in page
    assert '<span class="count" data-testid="overdue-count">0</span>' in page
    # B's cookie on A's host is nobody's there.
    on_a = TenantClient(HOST_A)
    on_a.cookies = at_home.cookies
    response = on_a.get("/")
    assert response.status_code == HTTPStatus.FOUND and response["Location"].startswith("/accounts/login/")


def test_the_administrator_of_a_new_tenant_gets_the_first_steps_with_links(admin_a):
    missing = []
    for name in FIRST_STEP_URLS:
        try:
            reverse(name)
        except NoReverseMatch:
            missing.append(name)
    if missing:
        pytest.skip(f"the first steps link to pages not built yet: {', '.join(missing)}")
    page = signed_in("admin-a", language="ja").get("/").content.decode()
    assert 'data-testid="first-steps"' in page
    for name in FIRST_STEP_URLS:
        assert f'href="{reverse(name)}"' in page, name
    assert "期限超過" not in page  # no empty dashboard


def test_staff_of_a_tenant_without_residents_see_the_empty_dashboard_not_the_first_steps(staff_a):
    page = signed_in("staff-a").get("/").content.decode()
    assert 'data-testid="first-steps"' not in page
    assert "Nobody is overdue." in page and "No open concerns." in page


def _fill(areas, volunteer, officer, start: int, count: int) -> None:
    """`count` overdue residents in 3班, each with a live concern, a visit today and two
    contacts this week (in bulk: the page's cost is the question, not the actions')."""
    today, now = tenant_today(), timezone.now()
    residents = Resident.objects.bulk_create(
        Resident(area=areas["block"], name=f"住民 {i:03d}", consent=Resident.Consent.GIVEN,
                 consent_share_with_association=True, is_overdue=True, next_due_at=now - timedelta(days=1 + i))
        for i in range(start, start + count))
    Concern.objects.bulk_create(
        Concern(resident=r, cause=Concern.Cause.MANUAL, severity=Severity.URGENT if i % 3 == 0 else Severity.NORMAL,
                state=Concern.State.ACKNOWLEDGED if i % 2 else Concern.State.OPEN)
        for i, r in enumerate(residents, start))
    Visit.objects.bulk_create(
        Visit(resident=r, visitor=volunteer, starts_on=today, ends_on=today, due_at=now + timedelta(days=1))
        for r in residents)
    ContactLog.objects.bulk_create(
        ContactLog(resident=r, occurred_at=now - ago, channel="visit", outcome="fine", note="記録",
                   logged_by=officer if i % 2 else volunteer)
        for i, r in enumerate(residents, start) for ago in (timedelta(hours=i), timedelta(days=i % 6, hours=1)))


def _queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/").status_code == HTTPStatus.OK
    return len(captured.captured_queries)


# The request's search path, session, user and disaster banner; the page's own eight
# (overdue count and list, concern counts and list, visit count and list, contacts per
# day and the latest); for the administrator whether any resident exists (the first
# steps), for staff of a district their areas, asked by the lens and by the navigation.
HOME_QUERIES = {"admin-a": 13, "osumi-staff": 14}


@pytest.mark.parametrize("username", HOME_QUERIES)
def test_the_staff_home_page_makes_the_same_number_of_queries_for_3_or_40_residents(
        username, areas_a, admin_a, district_staff, volunteer_a):  # noqa: F811
    officer = make_user("tenant_a", "officer-a", User.Role.ASSOCIATION_OFFICER)
    with tenant_scope("tenant_a"):
        _fill(areas_a, volunteer_a, officer, 0, 3)
    client = signed_in(username)
    client.get("/")  # the host cache, as in production
    few = _queries(client)
    with tenant_scope("tenant_a"):
        _fill(areas_a, volunteer_a, officer, 3, 37)
    client.get("/")  # the host cache again (it is kept 10 s)
    many = _queries(client)
    page = client.get("/").content.decode()
    assert '<span class="count" data-testid="overdue-count">40</span>' in page
    assert '<span class="count" data-testid="visit-count">40</span>' in page
    assert (few, many) == (HOME_QUERIES[username], HOME_QUERIES[username])


def test_the_csv_template_names_every_field_and_the_import_accepts_it(admin_a):
    response = signed_in("admin-a").get(reverse("watch:import_template"))
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    data = response.content
    assert data.startswith("\ufeff".encode())  # Excel opens UTF-8 only with the BOM
    table = read_table(data)
    assert table.encoding == "utf-8"
    columns = suggest_columns(table)
    assert None not in columns, dict(zip(table.headers, columns, strict=True))
    assert sorted(columns) == sorted(FIELD_KEYS)
    with tenant_scope("tenant_a"):
        report = check_import(data, create_areas=True, actor=admin_a)
    assert report.ok, report.errors
    assert [planned.name for planned in report.rows] == ["見守 太郎"]


def test_volunteers_may_not_download_the_csv_template(volunteer_a):
    assert signed_in("volunteer-a").get(reverse("watch:import_template")).status_code == HTTPStatus.FORBIDDEN
