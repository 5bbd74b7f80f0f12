import uuid
from datetime import timedelta
from http import HTTPStatus

from django.utils import timezone

from tenants.context import tenant_scope
from watch.models import ContactLog, Resident, Rhythm
from watch.signals import attention_requested


def contacts_of(resident) -> list[ContactLog]:
    with tenant_scope("tenant_a"):
        return list(ContactLog.objects.filter(resident=resident))


def post_contact(client, **data):
    return client.post("/api/v1/contacts/", data, content_type="application/json")


def test_volunteer_logs_a_check_in_that_moves_the_rhythm(client_a, volunteer_a, hanako, captured_events,
                                                         django_capture_on_commit_callbacks):
    client_a.sign_in("volunteer-a")
    with django_capture_on_commit_callbacks(execute=True):
        response = post_contact(client_a, resident=hanako.pk, channel="visit", outcome="fine", note="お元気でした")
    assert response.status_code == HTTPStatus.CREATED
    [contact] = contacts_of(hanako)
    assert (contact.channel, contact.outcome, contact.logged_by_id) == ("visit", "fine", volunteer_a.pk)
    with tenant_scope("tenant_a"):
        rhythm = Rhythm.objects.get(resident=hanako)
        resident = Resident.objects.get(pk=hanako.pk)
    assert rhythm.alert_at == contact.occurred_at + timedelta(days=7, hours=12)
    assert resident.last_contact_at == contact.occurred_at and resident.last_outcome == "fine"
    assert resident.next_due_at == rhythm.alert_at
    groups = {group for group, event in captured_events if event["type"] == "contact.logged"}
    assert f"tenant_a.user.{volunteer_a.pk}" in groups
    assert f"tenant_a.area.{hanako.area.ancestor_ids[0]}.municipal_staff" in groups
    assert all("山田" not in str(event) for _g, event in captured_events)  # ids, never names


def test_a_retried_submission_creates_one_entry(client_a, volunteer_a, hanako):
    client_a.sign_in("volunteer-a")
    key = str(uuid.uuid4())
    first = post_contact(client_a, resident=hanako.pk, channel="visit", outcome="fine", idempotency_key=key)
    again = post_contact(client_a, resident=hanako.pk, channel="visit", outcome="fine", idempotency_key=key)
    assert (first.status_code, again.status_code) == (HTTPStatus.CREATED, HTTPStatus.OK)
    assert first.json()["id"] == again.json()["id"]
    assert len(contacts_of(hanako)) == 1


def test_an_idempotency_key_reused_for_another_resident_is_a_conflict(client_a, staff_a, hanako, shigeru):
    client_a.sign_in("staff-a")
    key = str(uuid.uuid4())
    post_contact(client_a, resident=hanako.pk, channel="phone", outcome="fine", idempotency_key=key)
    response = post_contact(client_a, resident=shigeru.pk, channel="phone", outcome="fine", idempotency_key=key)
    assert response.status_code == HTTPStatus.CONFLICT
    assert contacts_of(shigeru) == []


def test_a_contact_logged_later_for_the_past_counts_from_when_it_happened(client_a, volunteer_a, hanako):
    client_a.sign_in("volunteer-a")
    when = timezone.now() - timedelta(days=2)
    post_contact(client_a, resident=hanako.pk, channel="visit", outcome="fine", occurred_at=when.isoformat())
    with tenant_scope("tenant_a"):
        assert Rhythm.objects.get(resident=hanako).alert_at == when + timedelta(days=7, hours=12)


def test_no_answer_is_logged_but_does_not_reset_the_clock(client_a, volunteer_a, hanako):
    client_a.sign_in("volunteer-a")
    with tenant_scope("tenant_a"):
        before = Rhythm.objects.get(resident=hanako).alert_at
    post_contact(client_a, resident=hanako.pk, channel="visit", outcome="no_answer")
    assert [c.outcome for c in contacts_of(hanako)] == ["no_answer"]
    with tenant_scope("tenant_a"):
        assert Rhythm.objects.get(resident=hanako).alert_at == before


def test_worried_contact_asks_for_attention(client_a, volunteer_a, hanako):
    calls = []
    attention_requested.connect(lambda **kw: calls.append(kw), weak=False, dispatch_uid="t")
    try:
        client_a.sign_in("volunteer-a")
        post_contact(client_a, resident=hanako.pk, channel="visit", outcome="worried", note="新聞がたまっている")
    finally:
        attention_requested.disconnect(dispatch_uid="t")
    assert [(c["resident_id"], c["cause"]) for c in calls] == [(hanako.pk, "worried_contact")]


def test_bad_contact_input_gets_400_with_field_messages_and_saves_nothing(client_a, volunteer_a, hanako):
    client_a.sign_in("volunteer-a")
    future = (timezone.now() + timedelta(minutes=10)).isoformat()
    cases = [
        ({"occurred_at": future}, "occurred_at", "The time is in the future. Check the phone's clock."),
        ({"channel": "pigeon"}, "channel", '"pigeon" is not a valid choice.'),
        ({"outcome": "great"}, "outcome", '"great" is not a valid choice.'),
        ({"note": "あ" * 2001}, "note", "Ensure this field has no more than 2000 characters."),
        ({"note": " \u3000\n "}, "note", "The note is only spaces: write something or leave it empty."),
        ({"idempotency_key": "not-a-uuid"}, "idempotency_key", "Must be a valid UUID."),
    ]
    for override, field, message in cases:
        body = {"resident": hanako.pk, "channel": "visit", "outcome": "fine", **override}
        response = post_contact(client_a, **body)
        assert response.status_code == HTTPStatus.BAD_REQUEST, (field, response.content)
        assert message in response.json()[field]
    assert contacts_of(hanako) == []


def test_a_note_of_only_spaces_is_refused_on_the_resident_page_and_a_note_with_spaces_around_is_trimmed(
        client_a, volunteer_a, hanako):
    from tests.conftest import HOST_A, TenantClient

    client = TenantClient(HOST_A, language="ja")
    client.sign_in("volunteer-a")
    response = client.post(f"/watch/residents/{hanako.pk}/contacts/", {"channel": "visit", "outcome": "fine",
                                                                          "note": "　　"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "メモが空白だけです" in response.content.decode()
    assert contacts_of(hanako) == []
    assert post_contact(client, resident=hanako.pk, channel="visit", outcome="fine",
                        note="  庭にいた \n").status_code == HTTPStatus.CREATED
    assert [c.note for c in contacts_of(hanako)] == ["庭にいた"]


def test_future_time_message_in_japanese(volunteer_a, hanako):
    from tests.conftest import HOST_A, TenantClient

    client = TenantClient(HOST_A, language="ja")
    client.sign_in("volunteer-a")
    future = (timezone.now() + timedelta(minutes=10)).isoformat()
    response = post_contact(client, resident=hanako.pk, channel="visit", outcome="fine", occurred_at=future)
    assert response.json()["occurred_at"] == ["未来の時刻です。携帯電話の時計を確認してください。"]


def test_contact_for_a_resident_the_user_cannot_see_is_404(client_a, volunteer_a, shigeru, client_b, outsider_b,
                                                            hanako):
    client_a.sign_in("volunteer-a")
    assert post_contact(client_a, resident=shigeru.pk, channel="visit", outcome="fine").status_code == 404
    client_b.sign_in("outsider-b")
    assert post_contact(client_b, resident=hanako.pk, channel="visit", outcome="fine").status_code == 404
    assert contacts_of(shigeru) == [] and contacts_of(hanako) == []


def test_timeline_hides_others_notes_from_volunteers(client_a, volunteer_a, staff_a, hanako):
    from tests.conftest import HOST_A, TenantClient

    staff = TenantClient(HOST_A)
    staff.sign_in("staff-a")
    post_contact(staff, resident=hanako.pk, channel="phone", outcome="fine", note="主治医と相談済み")
    client_a.sign_in("volunteer-a")
    timeline = client_a.get(f"/api/v1/residents/{hanako.pk}/contacts/").json()["results"]
    assert [(c["channel"], c["note"]) for c in timeline] == [("phone", "")]
    assert staff.get(f"/api/v1/residents/{hanako.pk}/contacts/").json()["results"][0]["note"] == "主治医と相談済み"


def test_resident_page_form_logs_a_contact(client_a, staff_a, hanako):
    client_a.sign_in("staff-a")
    response = client_a.post(f"/watch/residents/{hanako.pk}/contacts/", {"channel": "phone", "outcome": "fine"})
    assert response.status_code == HTTPStatus.FOUND
    assert [c.channel for c in contacts_of(hanako)] == ["phone"]


def test_api_token_authentication(client_a, volunteer_a, hanako):
    from django.test import Client

    from tests.conftest import HOST_A, PASSWORD

    anonymous = Client(HTTP_HOST=HOST_A)
    token = anonymous.post("/api/v1/auth/token/", {"username": "volunteer-a", "password": PASSWORD},
                           content_type="application/json").json()["token"]
    app = Client(HTTP_HOST=HOST_A, HTTP_AUTHORIZATION=f"Token {token}")
    assert app.get("/api/v1/residents/").json()["results"][0]["name"] == "山田 花子"
    refused = anonymous.post("/api/v1/auth/token/", {"username": "volunteer-a", "password": "x"},
                             content_type="application/json")
    assert refused.status_code == HTTPStatus.BAD_REQUEST
    assert refused.json() == {"non_field_errors": ["ユーザー名またはパスワードが正しくありません。"]}  # Japanese first
    # A token of tenant A means nothing on tenant B.
    from tests.conftest import HOST_B

    assert Client(HTTP_HOST=HOST_B, HTTP_AUTHORIZATION=f"Token {token}").get(
        "/api/v1/residents/").status_code == HTTPStatus.UNAUTHORIZED


def test_openapi_schema_is_served_from_the_tenant_host(client_a, staff_a):
    client_a.sign_in("staff-a")
    response = client_a.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == HTTPStatus.OK
    assert "/api/v1/contacts/" in response.content.decode()
