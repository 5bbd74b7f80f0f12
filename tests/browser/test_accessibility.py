"""Issue 10, item 9: every page of the cockpit passes axe-core (no serious or critical
WCAG 2.x A/AA violation) on a phone and on a desktop, in Japanese and in English; a
check-in can be done with the keyboard alone; and the checker itself is not blind.

One data set is built once; each language gets one browser context per person, the
pages are visited in a row, and each is checked at desktop size (1280x800) and again
resized to a phone's (390x844); no screenshots (the journey test keeps those)."""
import json
from datetime import timedelta
from pathlib import Path

import axe_playwright_python
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from outreach.actions import do_add_duty_shift, do_raise_concern
from outreach.policies import do_save_policy
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.browser.conftest import AXE_TAGS, FAILING_IMPACTS, accessibility_problems, off_the_loop
from tests.conftest import HOST_A, HOST_B, PASSWORD, make_user
from tests.watch.conftest import make_resident
from watch import actions
from watch import visits as plans
from watch.areas import do_attach_to_area
from watch.models import Area, Assignment, ContactLog, Visit

pytestmark = pytest.mark.browser

SCREENS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
LANGUAGES = {"ja-JP": "ja", "en-US": "en"}


@pytest.fixture
def town(live_server_url):
    """Tenant A with an area tree, people of every role that has pages, residents (one
    with a concern and a visit planned today), a policy and a shift; tenant B with only
    its administrator (the empty tenant's first steps)."""
    return off_the_loop(_town)


def _town() -> dict:
    admin = make_user("tenant_a", "aki-admin", User.Role.ADMIN)
    staff = make_user("tenant_a", "hanako-staff", User.Role.MUNICIPAL_STAFF)
    volunteer = make_user("tenant_a", "kazuko", User.Role.VOLUNTEER)
    make_user("tenant_b", "bunta-admin", User.Role.ADMIN)
    with tenant_scope("tenant_a"):
        district = actions.do_create_area(name="大住", kind=Area.Kind.DISTRICT)
        association = actions.do_create_area(name="山手東自治会", kind=Area.Kind.ASSOCIATION, parent=district)
        block = actions.do_create_area(name="3班", kind=Area.Kind.BLOCK, parent=association)
        do_attach_to_area(actor=admin, user=staff, area=district)
        hanako = make_resident(block, "山田 花子", furigana="ヤマダ ハナコ", address="京田辺市大住3-3-3",
                               phone="0774-33-4444")
        shigeru = make_resident(block, "髙橋 茂", furigana="タカハシ シゲル", address="京田辺市大住1-1-1")
        for resident in (hanako, shigeru):
            Assignment.objects.create(resident=resident, user=volunteer)
        actions.do_log_contact(actor=staff, resident=shigeru, occurred_at=timezone.now(), channel="phone",
                               outcome="fine", note="お元気でした")
        visit = plans.do_plan_visit(actor=staff, resident=hanako, visitor=volunteer, starts_on=plans.tenant_today())
        concern, _opened = do_raise_concern(resident=hanako, cause="manual", severity="normal",
                                            note="郵便物がたまっている", actor=staff)
        policy = do_save_policy(actor=admin, policy=None, name="大住の見守り", severity="", area=district,
                                repeat_limit=1, is_active=True,
                                steps=[{"targets": ["area_staff"], "users": [], "wait_minutes": 15}])
        now = timezone.now()
        do_add_duty_shift(actor=admin, user=admin, starts_at=now + timedelta(hours=1), ends_at=now + timedelta(hours=9))
    return {"hanako": hanako.pk, "staff": staff.pk, "volunteer": volunteer.pk, "visit": visit.pk,
            "concern": concern.pk, "policy": policy.pk}


def pages_of_the_administrator(town) -> list[tuple[str, str]]:
    hanako, volunteer = town["hanako"], town["volunteer"]
    return [
        ("home (staff)", "/"),
        ("overview with search", "/watch/?q=山田"),
        ("resident", f"/watch/residents/{hanako}/"),
        ("resident add form", "/watch/residents/new/"),
        ("resident edit form", f"/watch/residents/{hanako}/edit/"),
        ("resident history", f"/watch/residents/{hanako}/history/"),
        ("area tree", "/watch/areas/"),
        ("person", f"/watch/people/{town['staff']}/"),
        ("users", "/accounts/users/"),
        ("policies", "/outreach/policies/"),
        ("policy edit", f"/outreach/policies/{town['policy']}/"),
        ("rota", "/outreach/rota/"),
        ("visits plan", f"/watch/visits/?resident={hanako}"),
        ("visits week", "/watch/visits/week/"),
        ("visits week by area", "/watch/visits/week/?by=area"),
        ("visit sheet", f"/watch/visits/sheet/?visitor={volunteer}"),
        ("visit outcomes", f"/watch/visits/outcomes/?visitor={volunteer}"),
        ("concerns board", "/outreach/"),
        ("concern", f"/outreach/concerns/{town['concern']}/"),
        ("notification centre", "/notifications/"),
        ("import", "/watch/import/"),
        ("safety checks", "/outreach/safety/"),
        ("new safety check", "/outreach/safety/new/"),
        ("reaching a resident", f"/outreach/residents/{hanako}/reach/"),
        ("notices", "/outreach/notices/"),
        ("new notice", "/outreach/notices/new/"),
    ]


def sign_in(page, url: str, username: str) -> None:
    page.goto(url + "/accounts/login/")
    page.locator("[name=username]").fill(username)
    page.locator("[name=password]").fill(PASSWORD)
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("who")).to_be_visible()


AXE_SCRIPT = Path(axe_playwright_python.__file__).with_name("axe.min.js")
AXE_RUN = f"""axe.run({{resultTypes: ["violations"], runOnly: {{type: "tag", values: {json.dumps(AXE_TAGS)}}}}})
           .then(results => results.violations.filter(v => {json.dumps(sorted(FAILING_IMPACTS))}.includes(v.impact))
           .map(v => `${{v.id}}: ${{v.nodes.map(n => JSON.stringify(n.target)).join(", ")}} (${{v.help}})`))"""


class Checker:
    """Visits pages and collects their problems as "combination · page: violation".

    The same axe-core and rules as tests/browser/conftest.py's `accessibility_problems`,
    loaded by each page as an init script instead of sent over (570 kB) with every check."""

    def __init__(self):
        self.problems: list[str] = []
        self.checked = 0

    def context(self, browser, **kwargs):
        context = browser.new_context(**kwargs)
        context.add_init_script(path=str(AXE_SCRIPT))
        page = context.new_page()
        page.set_default_timeout(10_000)
        return page

    def check(self, page, language: str, name: str) -> None:
        """The page as it is, on a desktop and on a phone (the same page resized: the HTML
        does not depend on the screen, and a second request would double the time)."""
        for screen, size in SCREENS.items():
            page.set_viewport_size(size)
            self.checked += 1
            self.problems.extend(f"{screen}/{language} · {name} ({page.url}): {problem}"
                                 for problem in page.evaluate(AXE_RUN))
        page.set_viewport_size(SCREENS["desktop"])

    def visit(self, page, url: str, language: str, name: str, status: int = 200) -> None:
        response = page.goto(url)
        if response.status != status:  # listed with the rest, so that every page is still checked
            self.problems.append(f"{language} · {name} ({url}): answered {response.status}, not {status}")
        self.check(page, language, name)


def test_every_cockpit_page_has_no_serious_or_critical_violation_on_phone_and_desktop_in_both_languages(
    browser, live_server_url, town
):
    url_a, url_b = live_server_url(HOST_A), live_server_url(HOST_B)
    checker = Checker()
    for locale, language in LANGUAGES.items():
        signed_out = checker.context(browser, locale=locale, viewport=SCREENS["desktop"])
        checker.visit(signed_out, url_a + "/accounts/login/", language, "login")
        assert signed_out.locator("html").get_attribute("lang") == language
        signed_out.context.close()

        admin = checker.context(browser, locale=locale, viewport=SCREENS["desktop"])
        sign_in(admin, url_a, "aki-admin")
        for name, path in pages_of_the_administrator(town):
            checker.visit(admin, url_a + path, language, name)
        checker.visit(admin, url_a + "/watch/residents/999999/", language, "404 (missing resident)", status=404)
        checker.visit(admin, url_a + "/no-such-page/", language, "404 (no such page)", status=404)
        # A form refused: the messages next to the fields.
        checker.visit(admin, url_a + "/watch/residents/new/", language, "resident add form")
        admin.locator("main form [type=submit]").click()
        expect(admin.locator("main .errorlist").first).to_be_visible()
        checker.check(admin, language, "resident add form with errors")
        # The device label exists only as the answer of registering a device.
        checker.visit(admin, url_a + f"/watch/residents/{town['hanako']}/devices/new/", language, "device form")
        admin.locator("#id_kind").select_option(index=1)
        admin.locator("#id_name").fill(f"玄関 {language}")
        admin.locator("main form [type=submit]").click()
        expect(admin.get_by_test_id("label-qr").locator("svg")).to_be_visible()
        checker.check(admin, language, "device label")
        # Tenant B's administrator: an empty tenant (cookies are per host: same context).
        sign_in(admin, url_b, "bunta-admin")
        expect(admin.get_by_test_id("first-steps")).to_be_visible()
        checker.check(admin, language, "home (empty tenant)")
        admin.context.close()

        volunteer = checker.context(browser, locale=locale, viewport=SCREENS["desktop"])
        sign_in(volunteer, url_a, "kazuko")
        checker.visit(volunteer, url_a + "/watch/my/", language, "my residents")
        expect(volunteer.get_by_test_id("my-visits")).to_contain_text("山田 花子")
        checker.visit(volunteer, url_a + "/watch/visits/week/", language, "my visits this week")
        checker.visit(volunteer, url_a + "/watch/visits/", language, "403 (volunteers do not plan visits)",
                      status=403)
        volunteer.context.close()
    assert not checker.problems, f"{len(checker.problems)} problem(s):\n" + "\n".join(checker.problems)
    assert checker.checked == 4 * (len(pages_of_the_administrator(town)) + 11)


def contacts_of(resident_id: int) -> list[tuple[str, str]]:
    with tenant_scope("tenant_a"):
        return list(ContactLog.objects.filter(resident_id=resident_id).values_list("logged_by__username", "outcome"))


def test_a_volunteer_checks_in_with_the_keyboard_alone(phone, live_server_url, town):
    url = live_server_url(HOST_A)
    sign_in(phone, url, "kazuko")
    phone.goto(url + "/watch/my/")
    button = phone.get_by_test_id(f"fine-{town['hanako']}")
    expect(button).to_be_visible()
    for _tab in range(60):
        phone.keyboard.press("Tab")
        if button.evaluate("element => element === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the check-in button")
    phone.keyboard.press("Enter")
    expect(phone.get_by_test_id(f"checkin-status-{town['hanako']}")).to_have_text("記録しました")
    assert contacts_of(town["hanako"]) == [("kazuko", "fine")]
    # The visit planned today is done by it.
    with tenant_scope("tenant_a"):
        assert Visit.objects.get(pk=town["visit"]).state == Visit.State.DONE


def test_the_checker_finds_an_input_without_a_label(browser):
    page = browser.new_page()
    page.set_content('<!DOCTYPE html><html lang="en"><head><title>A form</title></head><body><main>'
                     '<h1>A form</h1><input type="text" name="nameless"></main></body></html>')
    problems = accessibility_problems(page)
    page.close()
    assert any(problem.startswith("label:") for problem in problems), problems
