from datetime import timedelta
from http import HTTPStatus

from django.utils import timezone

from tenants.context import tenant_scope
from tests.conftest import HOST_B
from watch import actions
from watch.models import ContactLog, Device, Rhythm
from watch.signals import attention_requested


def register(client, resident, **data):
    return client.post(f"/api/v1/residents/{resident.pk}/devices/", {"kind": "button", **data},
                       content_type="application/json")


def test_staff_register_a_device_and_get_its_token_once(client_a, staff_a, hanako):
    client_a.sign_in("staff-a")
    response = register(client_a, hanako, name="玄関ボタン")
    assert response.status_code == HTTPStatus.CREATED
    body = response.json()
    assert body["ping_url"].endswith(f"/ping/{body['token']}")
    with tenant_scope("tenant_a"):
        device = Device.objects.get(pk=body["id"])
        assert body["token"] not in device.token_hash  # only the hash is kept
        assert Rhythm.objects.filter(device=device, interval=timedelta(hours=24)).exists()


def test_volunteer_cannot_register_devices(client_a, volunteer_a, hanako):
    client_a.sign_in("volunteer-a")
    assert register(client_a, hanako).status_code == HTTPStatus.FORBIDDEN


def _device(resident, staff, kind="button"):
    with tenant_scope("tenant_a"):
        return actions.do_register_device(actor=staff, resident=resident, kind=kind)


def test_heartbeat_keeps_the_device_alive_without_a_contact(client_a, staff_a, hanako):
    device, token = _device(hanako, staff_a)
    response = client_a.get(f"/ping/{token}")
    assert (response.status_code, response.content) == (HTTPStatus.OK, b"OK\n")
    with tenant_scope("tenant_a"):
        device.refresh_from_db()
        assert device.last_signal_at is not None
        assert not ContactLog.objects.filter(resident=hanako).exists()
        rhythm = Rhythm.objects.get(device=device)
        assert rhythm.alert_at == device.last_signal_at + timedelta(hours=25)


def test_ok_press_is_a_contact_and_call_press_asks_for_attention(client_a, staff_a, hanako):
    device, token = _device(hanako, staff_a)
    calls = []
    attention_requested.connect(lambda **kw: calls.append(kw["cause"]), weak=False, dispatch_uid="t")
    try:
        assert client_a.post(f"/ping/{token}/ok").status_code == HTTPStatus.OK
        with tenant_scope("tenant_a"):
            Device.objects.filter(pk=device.pk).update(last_signal_at=timezone.now() - timedelta(seconds=2))
        assert client_a.post(f"/ping/{token}/call").status_code == HTTPStatus.OK
    finally:
        attention_requested.disconnect(dispatch_uid="t")
    with tenant_scope("tenant_a"):
        outcomes = list(ContactLog.objects.filter(resident=hanako).order_by("pk").values_list("outcome", flat=True))
    assert outcomes == ["fine", "asked_for_call"]
    assert calls == ["device_call_request"]


def test_wrong_revoked_or_foreign_token_gets_the_same_404(client_a, staff_a, hanako):
    device, token = _device(hanako, staff_a)
    unknown = client_a.get("/ping/not-a-real-token")
    from django.test import Client

    foreign = Client(HTTP_HOST=HOST_B).get(f"/ping/{token}")  # A's device on B's host
    with tenant_scope("tenant_a"):
        actions.do_revoke_device(actor=staff_a, device=device)
    revoked = client_a.get(f"/ping/{token}")
    assert {r.status_code for r in (unknown, foreign, revoked)} == {HTTPStatus.NOT_FOUND}
    assert unknown.content == foreign.content == revoked.content == b"not found\n"
    with tenant_scope("tenant_a"):
        device.refresh_from_db()
        assert device.last_signal_at is None


def test_signals_faster_than_once_a_second_are_throttled(client_a, staff_a, hanako):
    _device_obj, token = _device(hanako, staff_a)
    assert client_a.get(f"/ping/{token}").status_code == HTTPStatus.OK
    assert client_a.post(f"/ping/{token}/ok").status_code == HTTPStatus.TOO_MANY_REQUESTS
    with tenant_scope("tenant_a"):
        assert not ContactLog.objects.filter(resident=hanako).exists()


def test_unknown_signal_is_404(client_a, staff_a, hanako):
    _device_obj, token = _device(hanako, staff_a)
    assert client_a.get(f"/ping/{token}/explode").status_code == HTTPStatus.NOT_FOUND


def test_get_or_head_of_an_ok_call_or_battery_signal_answers_405_and_records_nothing(client_a, staff_a, hanako):
    device, token = _device(hanako, staff_a)
    calls = []
    attention_requested.connect(lambda **kw: calls.append(kw["cause"]), weak=False, dispatch_uid="t")
    try:
        for signal in ("ok", "call", "battery"):
            for method in (client_a.get, client_a.head):
                response = method(f"/ping/{token}/{signal}")
                assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
                assert response["Allow"] == "POST"
    finally:
        attention_requested.disconnect(dispatch_uid="t")
    assert calls == []
    with tenant_scope("tenant_a"):
        device.refresh_from_db()
        assert device.last_signal_at is None
        assert not ContactLog.objects.filter(resident=hanako).exists()


def test_get_head_and_post_of_the_ping_url_and_of_heartbeat_stay_heartbeats(client_a, staff_a, hanako):
    device, token = _device(hanako, staff_a)
    for method in ("get", "head", "post"):
        for path in (f"/ping/{token}", f"/ping/{token}/heartbeat"):
            with tenant_scope("tenant_a"):
                Device.objects.filter(pk=device.pk).update(last_signal_at=None)
            assert getattr(client_a, method)(path).status_code == HTTPStatus.OK, (method, path)
            with tenant_scope("tenant_a"):
                assert Device.objects.get(pk=device.pk).last_signal_at is not None
    with tenant_scope("tenant_a"):
        assert not ContactLog.objects.filter(resident=hanako).exists()


def test_a_press_signal_posted_to_another_tenants_host_gets_404(client_b, staff_a, hanako):
    _device_obj, token = _device(hanako, staff_a)
    assert client_b.post(f"/ping/{token}/call").status_code == HTTPStatus.NOT_FOUND
    with tenant_scope("tenant_a"):
        assert not ContactLog.objects.filter(resident=hanako).exists()


# Idempotency keys: a device that got no answer (or a 5xx) sends its press again.
def _press(client, token, signal="ok", key=None, via="header"):
    if key is None:
        return client.post(f"/ping/{token}/{signal}")
    if via == "query":
        return client.post(f"/ping/{token}/{signal}?key={key}")
    return client.post(f"/ping/{token}/{signal}", HTTP_IDEMPOTENCY_KEY=key)


def _later(device):
    """As if the retry came seconds later (past the one-a-second throttle)."""
    with tenant_scope("tenant_a"):
        Device.objects.filter(pk=device.pk).update(last_signal_at=timezone.now() - timedelta(seconds=2))


def _presses(resident):
    with tenant_scope("tenant_a"):
        return list(ContactLog.objects.filter(resident=resident).order_by("pk").values_list("outcome", flat=True))


def test_a_press_sent_again_with_its_key_is_answered_ok_and_logged_once(client_a, staff_a, hanako):
    device, token = _device(hanako, staff_a)
    calls = []
    attention_requested.connect(lambda **kw: calls.append(kw["cause"]), weak=False, dispatch_uid="t")
    try:
        assert _press(client_a, token, "call", key="press-0001").status_code == HTTPStatus.OK
        _later(device)
        assert _press(client_a, token, "call", key="press-0001").status_code == HTTPStatus.OK
        # At once, too (the first try may still be in flight): OK, not "too many signals".
        assert _press(client_a, token, "call", key="press-0001", via="query").status_code == HTTPStatus.OK
    finally:
        attention_requested.disconnect(dispatch_uid="t")
    assert _presses(hanako) == ["asked_for_call"]
    assert calls == ["device_call_request"]


def test_presses_with_different_keys_or_none_are_each_logged(client_a, staff_a, hanako):
    device, token = _device(hanako, staff_a)
    assert _press(client_a, token, key="a1").status_code == HTTPStatus.OK
    _later(device)
    assert _press(client_a, token, key="a2", via="query").status_code == HTTPStatus.OK
    _later(device)
    assert _press(client_a, token).status_code == HTTPStatus.OK
    assert _presses(hanako) == ["fine", "fine", "fine"]


def test_the_same_key_on_another_device_is_that_devices_own(client_a, staff_a, hanako, shigeru):
    _first, first_token = _device(hanako, staff_a)
    _second, second_token = _device(shigeru, staff_a)
    assert _press(client_a, first_token, key="1").status_code == HTTPStatus.OK
    assert _press(client_a, second_token, key="1").status_code == HTTPStatus.OK
    assert (_presses(hanako), _presses(shigeru)) == (["fine"], ["fine"])


def test_a_key_used_for_the_other_press_is_a_conflict_and_logs_nothing(client_a, staff_a, hanako):
    device, token = _device(hanako, staff_a)
    assert _press(client_a, token, "ok", key="k-1").status_code == HTTPStatus.OK
    _later(device)
    response = _press(client_a, token, "call", key="k-1")
    assert (response.status_code, response.content) == (
        HTTPStatus.CONFLICT, b"this idempotency key was already used for another signal\n")
    assert _presses(hanako) == ["fine"]


def test_a_malformed_key_is_a_400_with_a_message_in_japanese_and_english(staff_a, hanako):
    from tests.conftest import HOST_A, TenantClient

    device, token = _device(hanako, staff_a)
    for language, message in (("en", "The idempotency key must be 1 to 64 letters, digits or . _ : -\n"),
                              ("ja", "冪等キーは半角英数字と . _ : - の1〜64文字で指定してください\n")):
        client = TenantClient(HOST_A, language=language)
        for bad in ("x" * 65, "bad key", "鍵"):
            response = client.post(f"/ping/{token}/ok", HTTP_IDEMPOTENCY_KEY=bad)
            assert (response.status_code, response.content.decode()) == (HTTPStatus.BAD_REQUEST, message)
        assert client.post(f"/ping/{token}/ok?key=").status_code == HTTPStatus.BAD_REQUEST
    with tenant_scope("tenant_a"):
        device.refresh_from_db()
        assert device.last_signal_at is None
    assert _presses(hanako) == []


def test_a_keyed_press_on_another_tenants_host_gets_404_and_logs_nothing(client_b, staff_a, hanako):
    _device_obj, token = _device(hanako, staff_a)
    assert _press(client_b, token, "call", key="k-1").status_code == HTTPStatus.NOT_FOUND
    assert _presses(hanako) == []



def test_the_api_refuses_a_duplicate_active_device_name_with_a_message_on_the_name(client_a, staff_a, hanako):
    client_a.sign_in("staff-a")
    assert register(client_a, hanako, name="玄関").status_code == HTTPStatus.CREATED
    response = register(client_a, hanako, name="玄関")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == {"name": ["This resident already has an active device of this name."]}
    with tenant_scope("tenant_a"):
        assert Device.objects.filter(resident=hanako).count() == 1
        first = Device.objects.get(resident=hanako)
        actions.do_revoke_device(actor=staff_a, device=first)
    assert register(client_a, hanako, name="玄関").status_code == HTTPStatus.CREATED  # a revoked name is free


def test_a_revoked_device_never_goes_overdue(staff_a, hanako):
    device, _token = _device(hanako, staff_a)
    with tenant_scope("tenant_a"):
        actions.do_revoke_device(actor=staff_a, device=device)
        # The device's own rhythm was due in 25 hours; the person's is a week away.
        assert actions.do_mark_overdue(timezone.now() + timedelta(hours=30)) == []
        assert not Rhythm.objects.filter(device=device).exists()
