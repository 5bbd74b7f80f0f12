from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
    # Every test host name (tenant-a.mimamori.test, ...) goes to the live server on 127.0.0.1.
    "--host-resolver-rules=MAP * 127.0.0.1",
]


@pytest.fixture(scope="module")
def browser():
    """Per module: Playwright's sync API keeps an event loop running on the main thread,
    which later (non-browser) tests must not inherit."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    import os

    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own database
    # calls are still synchronous and on this thread only.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            yield browser
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


def off_the_loop(fn, *args):
    """fn(*args) on a thread of its own, its database connection closed after: actions
    publish live events through async_to_sync, which cannot run on this thread while
    Playwright's event loop does."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def run():
        try:
            return fn(*args)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def new_phone(browser):
    """A phone-sized page, Japanese first like the people using it; close its context."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="ja-JP", is_mobile=True,
                                  has_touch=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    return page


@pytest.fixture
def phone(browser):
    page = new_phone(browser)
    yield page
    page.context.close()


SCREENSHOTS = Path(__file__).resolve().parents[2] / ".data" / "screenshots"
# axe-core impacts that fail a page (JIS X 8341-3 level AA is the aim; minor and moderate
# findings are printed, not failed).
FAILING_IMPACTS = {"serious", "critical"}
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def accessibility_problems(page) -> list[str]:
    """axe-core (bundled with axe-playwright-python) run inside the page: its serious and
    critical violations, each as "rule: target (help)"."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"resultTypes": ["violations"], "runOnly": {"type": "tag", "values": AXE_TAGS}})
    return [f"{violation['id']}: {', '.join(str(node['target']) for node in violation['nodes'])} "
            f"({violation['help']})"
            for violation in results.response["violations"] if violation["impact"] in FAILING_IMPACTS]


class Journey:
    """Steps of one browser test: each `step` keeps a screenshot under .data/screenshots/
    <test>/ and runs axe-core on the page as it is then, failing on serious or critical
    violations."""

    def __init__(self, name: str):
        self.folder = SCREENSHOTS / name
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.count = 0

    def step(self, page, name: str, *, axe: bool = True) -> None:
        self.count += 1
        page.screenshot(path=str(self.folder / f"{self.count:02d}-{name}.png"), full_page=True)
        if axe:
            problems = accessibility_problems(page)
            assert not problems, f"step {self.count} ({name}) at {page.url}:\n" + "\n".join(problems)


@pytest.fixture
def journey(request):
    return Journey(request.node.name)
