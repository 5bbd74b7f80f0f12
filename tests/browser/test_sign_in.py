"""A person signs in to a tenant in a browser, switches the language and signs out."""
import pytest
from playwright.sync_api import expect

from tenants.accounts.models import User
from tests.conftest import HOST_A, PASSWORD, make_user

pytestmark = pytest.mark.browser


def test_sign_in_switch_language_and_sign_out_on_a_phone(live_server_url, phone):
    make_user("tenant_a", "hanako", User.Role.VOLUNTEER)
    page = phone
    page.goto(live_server_url(HOST_A) + "/")

    expect(page.locator("h1")).to_have_text("サインイン")
    page.get_by_label("ユーザー名").fill("hanako")
    page.get_by_label("パスワード").fill("wrong password")
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_text("ユーザー名またはパスワードが正しくありません。")).to_be_visible()

    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_test_id("sign-in").click()
    # A volunteer's home is their list.
    expect(page.locator("h1")).to_have_text("担当の方々")
    expect(page.get_by_test_id("who")).to_contain_text("見守りボランティア")
    # The live connection (websocket, authenticated by the session) is up.
    expect(page.get_by_test_id("live")).to_have_class("live on")

    page.get_by_role("button", name="English").click()
    expect(page.locator("h1")).to_have_text("My residents")
    expect(page.get_by_test_id("who")).to_contain_text("Volunteer")

    page.get_by_test_id("sign-out").click()
    expect(page.locator("h1")).to_have_text("Sign in")
    page.goto(live_server_url(HOST_A) + "/")
    expect(page).to_have_url(live_server_url(HOST_A) + "/accounts/login/?next=/")
