"""Device heartbeats answered at the edge (watch.fastping), through the real ASGI server."""
import urllib.error
import urllib.request
from datetime import timedelta

from django.utils import timezone

from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, HOST_B, make_user
from tests.watch.conftest import make_resident
from watch import actions
from watch.models import ContactLog, Device, Resident, Rhythm


def ping(url: str, method: str = "GET") -> tuple[int, bytes]:
    host, path = url.split("/", 3)[2], "/" + url.split("/", 3)[3]
    request = urllib.request.Request(f"http://127.0.0.1:{host.split(':')[1]}{path}", method=method,
                                     headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback test server
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def setup_device(kind="button"):
    staff = make_user("tenant_a", "staff-ping", User.Role.MUNICIPAL_STAFF)
    with tenant_scope("tenant_a"):
        area = actions.do_create_area(name="大住", kind="district")
        resident = make_resident(area, "山田 花子")
        device, token = actions.do_register_device(actor=staff, resident=resident, kind=kind)
    return staff, resident, device, token


def test_heartbeat_is_committed_before_the_reply_and_moves_only_the_device_rhythm(live_server_url):
    _staff, resident, device, token = setup_device()
    with tenant_scope("tenant_a"):
        due_before = Resident.objects.get(pk=resident.pk).next_due_at
    assert ping(live_server_url(HOST_A) + f"/ping/{token}") == (200, b"OK\n")
    with tenant_scope("tenant_a"):
        device.refresh_from_db()
        rhythm = Rhythm.objects.get(device=device)
        assert device.last_signal_at is not None
        assert rhythm.alert_at == rhythm.last_contact_at + timedelta(hours=25)
        assert Resident.objects.get(pk=resident.pk).next_due_at == due_before  # the person's clock is theirs
        assert not ContactLog.objects.exists()


def test_unknown_revoked_and_foreign_tokens_get_404_and_fast_repeats_429(live_server_url):
    staff, _resident, device, token = setup_device()
    a, b = live_server_url(HOST_A), live_server_url(HOST_B)
    assert ping(a + "/ping/" + "x" * 32) == (404, b"not found\n")
    assert ping(b + f"/ping/{token}") == (404, b"not found\n")
    assert ping(live_server_url("nowhere.mimamori.test") + f"/ping/{token}")[0] == 404
    assert ping(a + f"/ping/{token}", "POST")[0] == 200
    assert ping(a + f"/ping/{token}")[0] == 429
    with tenant_scope("tenant_a"):
        actions.do_revoke_device(actor=staff, device=device)
        Device.objects.filter(pk=device.pk).update(last_signal_at=timezone.now() - timedelta(seconds=5))
    assert ping(a + f"/ping/{token}") == (404, b"not found\n")


def test_heartbeat_of_an_overdue_device_clears_the_overdue_mark(live_server_url):
    _staff, resident, device, token = setup_device()
    with tenant_scope("tenant_a"):
        Rhythm.objects.filter(device=device).update(alert_at=timezone.now() - timedelta(minutes=1))
        actions.do_mark_overdue()
        assert Resident.objects.get(pk=resident.pk).is_overdue
    assert ping(live_server_url(HOST_A) + f"/ping/{token}")[0] == 200
    with tenant_scope("tenant_a"):
        assert Rhythm.objects.get(device=device).state == "ok"
        assert not Resident.objects.get(pk=resident.pk).is_overdue


def test_motion_sensor_heartbeat_goes_through_the_full_rules_as_a_sign_of_life(live_server_url):
    _staff, resident, _device, token = setup_device(kind="motion")
    with tenant_scope("tenant_a"):
        Rhythm.objects.filter(resident=resident, device=None).update(channel="device")
    assert ping(live_server_url(HOST_A) + f"/ping/{token}")[0] == 200
    with tenant_scope("tenant_a"):
        person = Rhythm.objects.get(resident=resident, device=None)
        assert person.last_contact_at is not None  # the motion reset the person's own rhythm


def test_other_signals_still_work_through_django(live_server_url):
    _staff, _resident, _device, token = setup_device()
    assert ping(live_server_url(HOST_A) + f"/ping/{token}/call", "POST")[0] == 200
    with tenant_scope("tenant_a"):
        assert list(ContactLog.objects.values_list("outcome", flat=True)) == ["asked_for_call"]
