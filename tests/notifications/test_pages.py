"""The notification centre, preferences, unread count, push subscription: each
person sees only their own, and tenant B sees nothing of A."""
from http import HTTPStatus

import pytest

from notifications.actions import get_preference_for_user
from notifications.models import ChannelPreference, Notification
from tenants.context import tenant_scope
from tests.conftest import HOST_A, TenantClient
from tests.notifications.conftest import LINE_USER
from tests.notifications.helpers import notify, reload


@pytest.fixture
def two_notifications(volunteer_a, django_capture_on_commit_callbacks):
    old, _ = notify(django_capture_on_commit_callbacks, volunteer_a, key="old", title="古いお知らせ")
    new, _ = notify(django_capture_on_commit_callbacks, volunteer_a, key="new", title="新しいお知らせ")
    with tenant_scope("tenant_a"):
        Notification.objects.filter(pk=old.pk).update(read_at=old.created_at)
    return old, new


def test_the_centre_lists_newest_first_with_unread_marked(client_a, two_notifications):
    old, new = two_notifications
    client_a.sign_in("volunteer-a")
    html = client_a.get("/notifications/").content.decode()
    assert html.index("新しいお知らせ") < html.index("古いお知らせ")
    assert f'class="card unread" data-notification="{new.pk}"' in html
    assert f'class="card" data-notification="{old.pk}"' in html
    assert client_a.get("/notifications/unread-count/").json() == {"unread": 1}


def test_opening_a_notification_marks_it_read_and_follows_its_link(client_a, two_notifications):
    _old, new = two_notifications
    client_a.sign_in("volunteer-a")
    response = client_a.post(f"/notifications/{new.pk}/read/")
    assert response.status_code == HTTPStatus.FOUND and response["Location"] == "/watch/residents/1/"
    assert reload(new).read_at is not None


def test_mark_all_read(client_a, two_notifications):
    client_a.sign_in("volunteer-a")
    assert client_a.post("/notifications/read-all/").status_code == HTTPStatus.FOUND
    assert client_a.get("/notifications/unread-count/").json() == {"unread": 0}


def test_another_person_of_the_same_tenant_gets_404_for_my_notification(client_a, staff_a, two_notifications):
    _old, new = two_notifications
    client_a.sign_in("staff-a")
    assert client_a.post(f"/notifications/{new.pk}/read/").status_code == HTTPStatus.NOT_FOUND
    assert reload(new).read_at is None
    assert "新しいお知らせ" not in client_a.get("/notifications/").content.decode()
    assert client_a.get("/notifications/unread-count/").json() == {"unread": 0}


def test_a_user_of_tenant_b_never_sees_a_notification_of_a(client_b, outsider_b, two_notifications):
    _old, new = two_notifications
    client_b.sign_in("outsider-b")
    assert client_b.post(f"/notifications/{new.pk}/read/").status_code == HTTPStatus.NOT_FOUND
    assert "お知らせ" not in client_b.get("/notifications/").content.decode()
    assert client_b.get("/notifications/unread-count/").json() == {"unread": 0}
    assert "お知らせ" not in client_b.get("/notifications/failed/").content.decode()
    assert reload(new).read_at is None


def test_a_session_of_tenant_b_is_nothing_on_tenant_a(client_b, outsider_b, two_notifications):
    client_b.sign_in("outsider-b")
    on_a = TenantClient(HOST_A)
    on_a.cookies = client_b.cookies
    for url in ("/notifications/", "/notifications/unread-count/", "/notifications/preferences/",
                "/notifications/failed/"):
        response = on_a.get(url)
        assert response.status_code == HTTPStatus.FOUND and "/accounts/login/" in response["Location"], url


def test_pages_need_a_signed_in_user(client_a, two_notifications):
    assert client_a.get("/notifications/").status_code == HTTPStatus.FOUND
    assert client_a.get("/notifications/unread-count/").status_code == HTTPStatus.FOUND


def test_preferences_are_saved_in_the_chosen_order(client_a, volunteer_a):
    client_a.sign_in("volunteer-a")
    assert client_a.get("/notifications/preferences/").status_code == HTTPStatus.OK
    response = client_a.post("/notifications/preferences/", {
        "order_sms": "1", "order_email": "2", "order_line": "", "order_webpush": "",
        "phone": "090-1234-5678", "line_user_id": LINE_USER, "quiet_start": "22:00", "quiet_end": "07:00",
    })
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        preference = ChannelPreference.objects.get(user=volunteer_a)
    assert preference.channels == ["sms", "email"]
    assert preference.phone == "+819012345678" and preference.line_user_id == LINE_USER
    assert preference.quiet_start.hour == 22 and preference.quiet_end.hour == 7
    html = client_a.get("/notifications/preferences/").content.decode()
    assert 'value="+819012345678"' in html and 'value="22:00"' in html


def test_preferences_refuse_a_bad_phone_number_with_400_and_a_message(client_a, volunteer_a):
    client_a.sign_in("volunteer-a")
    response = client_a.post("/notifications/preferences/", {"channels": ["sms"], "phone": "12345"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Enter the phone number in international form, e.g. +819012345678." in response.content.decode()
    with tenant_scope("tenant_a"):
        assert not ChannelPreference.objects.filter(user=volunteer_a).exists()


def test_preferences_refuse_an_unknown_channel(client_a, volunteer_a):
    client_a.sign_in("volunteer-a")
    response = client_a.post("/notifications/preferences/", {"channels": ["email", "fax"]})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Unknown channel: fax." in response.content.decode()


@pytest.mark.parametrize(("fields", "message"), [
    ({"quiet_start": "22:00"}, "Give both the start and the end of quiet hours, or neither."),
    ({"quiet_start": "07:00", "quiet_end": "07:00"}, "Quiet hours must start and end at different times."),
    ({"quiet_start": "25:00", "quiet_end": "07:00"}, "Enter a time like 22:00."),
    ({"channels": ["line"]}, "Enter your LINE user ID to receive LINE messages."),
    ({"line_user_id": "someone"}, "A LINE user ID is U followed by 32 characters 0-9 and a-f."),
    ({"channels": ["webpush"]}, "Turn on push notifications on this phone first."),
])
def test_preferences_refuse_inconsistent_input(client_a, volunteer_a, fields, message):
    client_a.sign_in("volunteer-a")
    response = client_a.post("/notifications/preferences/", {"channels": ["email"], **fields})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert message in response.content.decode()


def test_a_line_id_linked_to_another_person_is_refused(client_a, volunteer_a, staff_a):
    from tests.notifications.helpers import set_channels

    set_channels(staff_a, ["line"], line_user_id=LINE_USER)
    client_a.sign_in("volunteer-a")
    response = client_a.post("/notifications/preferences/", {"channels": ["line"], "line_user_id": LINE_USER})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "This LINE user ID is linked to another person." in response.content.decode()


def test_preferences_errors_are_in_japanese_on_the_japanese_page(tenant_a, volunteer_a):
    client = TenantClient(HOST_A, language="ja")
    client.sign_in("volunteer-a")
    response = client.post("/notifications/preferences/", {"channels": ["sms"], "phone": "12345"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "電話番号は国際形式で入力してください（例: +819012345678）。" in response.content.decode()


def test_a_phone_subscribes_to_web_push(client_a, volunteer_a, push_receiver):
    client_a.sign_in("volunteer-a")
    page = client_a.get("/notifications/preferences/").content.decode()
    assert 'data-testid="push"' in page
    response = client_a.post("/notifications/webpush/subscription/", {"subscription": push_receiver.subscription},
                             content_type="application/json")
    assert response.status_code == HTTPStatus.OK
    with tenant_scope("tenant_a"):
        preference = get_preference_for_user(volunteer_a)
    assert preference.webpush_subscription == push_receiver.subscription
    assert preference.channels == ["webpush", "email"]
    client_a.post("/notifications/webpush/subscription/", {"subscription": None}, content_type="application/json")
    with tenant_scope("tenant_a"):
        preference = get_preference_for_user(volunteer_a)
    assert preference.webpush_subscription is None and preference.channels == ["email"]


def test_a_push_endpoint_outside_the_push_services_is_refused(client_a, volunteer_a, fake_providers):
    client_a.sign_in("volunteer-a")
    for endpoint in ("http://10.0.0.1/internal", "https://evil.example/push", "file:///etc/passwd"):
        response = client_a.post("/notifications/webpush/subscription/", {
            "subscription": {"endpoint": endpoint, "keys": {"p256dh": "x", "auth": "y"}}},
            content_type="application/json")
        assert response.status_code == HTTPStatus.BAD_REQUEST
    assert client_a.post("/notifications/webpush/subscription/", b"not json",
                         content_type="application/json").status_code == HTTPStatus.BAD_REQUEST
    with tenant_scope("tenant_a"):
        assert not ChannelPreference.objects.filter(user=volunteer_a, webpush_subscription__isnull=False).exists()


def test_the_service_worker_is_served_as_javascript(client_a):
    response = client_a.get("/notifications/sw.js")
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"].startswith("application/javascript")
    assert b"showNotification" in response.content
