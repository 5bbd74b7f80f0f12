"""Fixtures of other folders that the platform-wide tests here use."""
from tests.browser.conftest import browser  # noqa: F401
from tests.watch.conftest import areas_a, hanako, resident_b  # noqa: F401
