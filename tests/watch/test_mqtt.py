"""The MQTT transport: handle_message on its own, then once through a real Mosquitto."""
import json
import logging
import shutil
import socket
import subprocess
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from django.utils import timezone

from tenants.context import tenant_scope
from tenants.models import Tenant
from watch import mqtt as watch_mqtt
from watch.actions import do_create_area, do_create_resident, do_register_device, do_revoke_device
from watch.models import ContactLog, Device, Outcome, Resident, Rhythm
from watch.mqtt import Listener, handle_message, parse_mqtt_url


@pytest.fixture(autouse=True)
def _keep_test_transaction(monkeypatch):
    """close_old_connections would close the test's connection, which is inside the
    test transaction (not autocommit); the listener process needs it, the tests do not."""
    monkeypatch.setattr(watch_mqtt, "close_old_connections", lambda: None)


def make_device(schema_name: str, actor, kind: str = "button") -> tuple[Device, str]:
    with tenant_scope(schema_name):
        area = do_create_area(name=f"area-{uuid.uuid4().hex[:8]}", kind="district")
        resident = do_create_resident(area=area, name="山田 花子")
        return do_register_device(actor=actor, resident=resident, kind=kind)


@pytest.fixture
def device_a(staff_a):
    return make_device("tenant_a", staff_a)


@pytest.fixture
def device_b(outsider_b):
    return make_device("tenant_b", outsider_b)


def topic(schema_name: str, device_id: int) -> str:
    return f"mimamori/{schema_name}/devices/{device_id}/signal"


def payload(token: str, signal: str, **extra) -> bytes:
    return json.dumps({"token": token, "signal": signal, **extra}).encode()


def snapshot() -> dict:
    """Every row a signal could write, in both test tenants."""
    state = {}
    for schema_name in ("tenant_a", "tenant_b"):
        with tenant_scope(schema_name):
            state[schema_name] = (
                list(ContactLog.objects.values_list("pk", flat=True)),
                list(Device.objects.order_by("pk").values_list("pk", "last_signal_at", "battery_low")),
                list(Rhythm.objects.order_by("pk").values_list("pk", "last_contact_at", "alert_at", "state")),
                list(Resident.objects.order_by("pk").values_list("pk", "last_contact_at", "next_due_at")),
            )
    return state


def test_ok_press_records_a_fine_device_contact_and_resets_rhythms(device_a, device_b):
    device, token = device_a
    before = timezone.now()

    assert handle_message(topic("tenant_a", device.pk), payload(token, "ok")) == "recorded"

    with tenant_scope("tenant_a"):
        contact = ContactLog.objects.get()
        assert (contact.resident_id, contact.device_id) == (device.resident_id, device.pk)
        assert (contact.channel, contact.outcome) == ("device", Outcome.FINE)
        rhythms = list(Rhythm.objects.filter(resident_id=device.resident_id))
        assert len(rhythms) == 2  # the resident's "any contact" rhythm and the device's own
        assert all(r.last_contact_at == contact.occurred_at >= before for r in rhythms)
        assert Resident.objects.get(pk=device.resident_id).last_contact_at == contact.occurred_at
    with tenant_scope("tenant_b"):
        assert not ContactLog.objects.exists()


def test_call_records_a_contact_asking_to_be_called(device_a):
    device, token = device_a

    assert handle_message(topic("tenant_a", device.pk), payload(token, "call")) == "recorded"

    with tenant_scope("tenant_a"):
        assert ContactLog.objects.get().outcome == Outcome.ASKED_FOR_CALL


def test_heartbeat_updates_the_device_without_a_contact(device_a):
    device, token = device_a

    assert handle_message(topic("tenant_a", device.pk), payload(token, "heartbeat")) == "recorded"

    with tenant_scope("tenant_a"):
        device.refresh_from_db()
        assert device.last_signal_at is not None
        assert not ContactLog.objects.exists()


def test_signal_time_from_the_device_is_used(device_a):
    device, token = device_a
    at = (timezone.now() - timedelta(hours=2)).replace(microsecond=0)

    assert handle_message(topic("tenant_a", device.pk), payload(token, "ok", at=at.isoformat())) == "recorded"

    with tenant_scope("tenant_a"):
        assert ContactLog.objects.get().occurred_at == at


@pytest.mark.parametrize("case", ["wrong_token", "revoked", "other_tenant", "unknown_schema", "public_schema",
                                  "inactive_tenant", "unknown_device"])
def test_unauthenticated_signals_write_nothing_anywhere(case, device_a, device_b, staff_a):
    device, token = device_a
    schema_name, device_id, outcome = "tenant_a", device.pk, None
    if case == "wrong_token":
        token, outcome = device_b[1], "bad_token"
    elif case == "revoked":
        with tenant_scope("tenant_a"):
            do_revoke_device(actor=staff_a, device=device)
        outcome = "revoked_device"
    elif case == "other_tenant":
        # Tenant A's device id and token, addressed under tenant B (which has devices too).
        schema_name = "tenant_b"
        outcome = "unknown_device" if device.pk != device_b[0].pk else "bad_token"
    elif case == "unknown_schema":
        schema_name, outcome = "tenant_zz", "unknown_tenant"
    elif case == "public_schema":
        schema_name, outcome = "public", "unknown_tenant"
    elif case == "inactive_tenant":
        Tenant.objects.filter(schema_name="tenant_a").update(is_active=False)
        outcome = "unknown_tenant"
    elif case == "unknown_device":
        device_id, outcome = device.pk + 1000, "unknown_device"
    before = snapshot()

    assert handle_message(topic(schema_name, device_id), payload(token, "ok")) == outcome

    assert snapshot() == before


def test_the_token_is_never_logged(device_a, device_b, caplog):
    caplog.set_level(logging.INFO, logger="watch.mqtt")
    device, token = device_a
    handle_message(topic("tenant_a", device.pk), payload(device_b[1], "ok"))
    handle_message(topic("tenant_b", device.pk), payload(token, "ok"))
    handle_message(topic("tenant_a", device.pk), payload(token, "ok"))

    assert len(caplog.records) >= 2
    logged = caplog.text + "".join(str(vars(record)) for record in caplog.records)
    assert token not in logged and device_b[1] not in logged


def test_a_second_signal_within_a_second_is_throttled(device_a):
    device, token = device_a

    assert handle_message(topic("tenant_a", device.pk), payload(token, "ok")) == "recorded"
    assert handle_message(topic("tenant_a", device.pk), payload(token, "call")) == "throttled"

    with tenant_scope("tenant_a"):
        assert ContactLog.objects.get().outcome == Outcome.FINE
        Device.objects.filter(pk=device.pk).update(last_signal_at=timezone.now() - timedelta(seconds=1))
    assert handle_message(topic("tenant_a", device.pk), payload(token, "call")) == "recorded"


@pytest.mark.parametrize(("raw", "outcome"), [
    (b"not json", "bad_payload"),
    (b"\xff\xfe", "bad_payload"),
    (b"[1, 2]", "bad_payload"),
    (b'{"signal": "ok"}', "bad_payload"),
    (b"{}" + b" " * 5000, "bad_payload"),
    (None, "bad_signal"),
])
def test_malformed_payloads_are_dropped(device_a, raw, outcome):
    device, token = device_a
    before = snapshot()

    assert handle_message(topic("tenant_a", device.pk), raw or payload(token, "reboot")) == outcome

    assert snapshot() == before


def test_bad_times_and_topics_are_dropped(device_a):
    device, token = device_a
    before = snapshot()
    old = (timezone.now() - timedelta(days=30)).isoformat()

    assert handle_message(topic("tenant_a", device.pk), payload(token, "ok", at="yesterday")) == "bad_payload"
    assert handle_message(topic("tenant_a", device.pk), payload(token, "ok", at="2025-01-01T09:00")) == "bad_payload"
    assert handle_message(topic("tenant_a", device.pk), payload(token, "ok", at=old)) == "stale"
    assert handle_message(f"mimamori/Tenant-A/devices/{device.pk}/signal", payload(token, "ok")) == "bad_topic"
    assert handle_message("mimamori/tenant_a/devices/abc/signal", payload(token, "ok")) == "bad_topic"
    assert snapshot() == before


def test_a_clock_ahead_gets_the_time_of_receipt(device_a):
    device, token = device_a
    ahead = (timezone.now() + timedelta(days=1)).isoformat()

    assert handle_message(topic("tenant_a", device.pk), payload(token, "ok", at=ahead)) == "recorded"

    with tenant_scope("tenant_a"):
        assert ContactLog.objects.get().occurred_at <= timezone.now()


def test_broker_url_gives_credentials_and_tls():
    assert parse_mqtt_url("mqtts://dev%40ice:p%3Ass@broker.example:8884") == {
        "host": "broker.example", "port": 8884, "tls": True, "username": "dev@ice", "password": "p:ss",
    }
    assert parse_mqtt_url("mqtt://127.0.0.1")["port"] == 1883
    with pytest.raises(ValueError, match="mqtt://"):
        parse_mqtt_url("http://127.0.0.1:1883")


# Integration: a real broker, the listener in a thread, a device publishing through paho.
def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mosquitto_url(tmp_path: Path):
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert broker.poll() is None, broker.stderr.read().decode()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.05)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        broker.terminate()
        broker.wait(timeout=10)


@pytest.fixture
def on_test_database(django_db_setup, django_db_blocker):
    """pytest-django creates the test database only when a selected test asks for db,
    transactional_db or live_server: committed_db selected alone would wipe DATABASE_URL's."""
    from django.db import connection

    test_name = connection.settings_dict["TEST"]["NAME"] or f"test_{connection.settings_dict['NAME']}"
    if connection.settings_dict["NAME"] != test_name:
        pytest.fail("the test database was not set up; select a test using `db` too (e.g. run the whole file)")


def test_a_press_published_through_a_real_broker_is_recorded(on_test_database, committed_db, mosquitto_url):
    from tenants.accounts.models import User
    from tests.conftest import make_user

    staff = make_user("tenant_a", "staff-mqtt", User.Role.MUNICIPAL_STAFF)
    device, token = make_device("tenant_a", staff)
    listener = Listener(mosquitto_url, client_id=f"test-listener-{uuid.uuid4().hex[:8]}")
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    publisher = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    try:
        assert listener.subscribed.wait(10), "the listener did not subscribe"
        host, port = mosquitto_url.removeprefix("mqtt://").split(":")
        publisher.connect(host, int(port))
        publisher.loop_start()
        info = publisher.publish(topic("tenant_a", device.pk), payload(token, "call"), qos=1)
        info.wait_for_publish(timeout=10)

        deadline = time.monotonic() + 10
        with tenant_scope("tenant_a"):
            while not ContactLog.objects.exists():
                assert time.monotonic() < deadline, "the signal never arrived"
                time.sleep(0.05)
            contact = ContactLog.objects.get()
        assert (contact.device_id, contact.outcome) == (device.pk, Outcome.ASKED_FOR_CALL)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        listener.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_an_mqtt_press_redelivered_with_its_key_is_logged_once(device_a):
    """QoS 1 delivers at least once: the device's key makes the second copy change nothing."""
    device, token = device_a
    where = topic("tenant_a", device.pk)
    assert handle_message(where, payload(token, "call", key="m-77")) == "recorded"
    with tenant_scope("tenant_a"):  # the redelivery comes seconds later, past the throttle
        Device.objects.filter(pk=device.pk).update(last_signal_at=timezone.now() - timedelta(seconds=2))
    before = snapshot()
    assert handle_message(where, payload(token, "call", key="m-77")) == "recorded"
    assert handle_message(where, payload(token, "ok", key="m-77")) == "key_conflict"
    assert handle_message(where, payload(token, "ok", key="no spaces")) == "bad_payload"
    assert handle_message(where, payload(token, "ok", key=7)) == "bad_payload"
    assert snapshot() == before
    with tenant_scope("tenant_a"):
        assert list(ContactLog.objects.values_list("outcome", flat=True)) == ["asked_for_call"]


def test_a_message_that_cannot_be_recorded_is_tried_again_and_acknowledged_only_once_recorded(monkeypatch):
    """The database is down for the first two tries: the third records it, then it is
    acknowledged; down for good, it is never acknowledged (the broker keeps it)."""
    from types import SimpleNamespace

    from django.db import OperationalError

    from watch import mqtt as module

    acked, tries = [], []
    client = SimpleNamespace(ack=lambda mid, qos: acked.append((mid, qos)))
    message = SimpleNamespace(topic="mimamori/tenant_a/devices/1/signal", payload=b"{}", mid=7, qos=1)
    monkeypatch.setattr(module.time, "sleep", lambda seconds: tries.append(("wait", seconds)))

    def down_twice(topic, payload):
        tries.append("try")
        if tries.count("try") <= 2:
            raise OperationalError("the database is unreachable")
        return "recorded"

    monkeypatch.setattr(module, "handle_message", down_twice)
    listener = Listener("mqtt://127.0.0.1:1")
    listener._on_message(client, None, message)
    assert acked == [(7, 1)] and tries == ["try", ("wait", 1), "try", ("wait", 2), "try"]

    acked.clear()
    monkeypatch.setattr(module, "handle_message", lambda topic, payload: (_ for _ in ()).throw(OperationalError()))
    listener._on_message(client, None, message)
    assert acked == []
