"""The MQTT transport for device signals (the second one, beside the HTTP API).

Devices publish to `mimamori/<tenant schema>/devices/<device id>/signal` (QoS 1) a JSON
object `{"token": "...", "signal": "heartbeat|ok|call|battery", "at": "<ISO time>",
"key": "<idempotency key>"}` ("at" and "key" optional: a press sent again with its key,
after the device saw no acknowledgement, is logged once). `handle_message` authenticates
one message against the tenant's device and records it through `do_record_device_signal`; `Listener` connects to the
broker and feeds it every message. Anything that does not authenticate is dropped with
a log line that names no secret.
"""
import hmac
import json
import logging
import re
import threading
import time
from datetime import datetime, timedelta
from urllib.parse import unquote, urlparse

import paho.mqtt.client as mqtt
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import close_old_connections, connection
from django.utils import timezone

from tenants.accounts.models import hash_token
from tenants.context import tenant_scope

logger = logging.getLogger(__name__)

TOPIC_FILTER = "mimamori/+/devices/+/signal"
# The schema shape of tenants.models.schema_name_validator; ids fit a bigint.
TOPIC_RE = re.compile(r"^mimamori/([a-z][a-z0-9_]{1,40})/devices/([1-9][0-9]{0,17})/signal$")
MAX_PAYLOAD = 2048
MAX_TOKEN = 200
THROTTLE = timedelta(seconds=1)
# A buffered signal older than this is not a sign of life worth recording any more.
MAX_AGE = timedelta(days=7)
DEFAULT_URL = "mqtt://127.0.0.1:1883"
# Waits (seconds) before recording a message again after a failure (about 30 s in all).
RETRY_WAITS = (1, 2, 4, 8, 15)


def handle_message(topic: str, payload: bytes) -> str:
    """Record one device message; return what happened ("recorded" or why it was dropped).

    Fresh database connections around every message: the listener runs for weeks.
    """
    close_old_connections()
    try:
        return _handle(topic, payload)
    finally:
        close_old_connections()


def _handle(topic: str, payload: bytes) -> str:
    from tenants.models import Tenant
    from watch.actions import DeviceSignal, DeviceThrottled, IdempotencyConflict, do_record_device_signal
    from watch.models import Device

    match = TOPIC_RE.match(topic)
    if not match:
        logger.info("mqtt: dropped a message on an unexpected topic %r", topic[:120])
        return "bad_topic"
    schema_name, device_id = match[1], int(match[2])

    message = _parse_payload(payload)
    if message is None:
        logger.info("mqtt: dropped a malformed payload", extra={"schema": schema_name, "device": device_id})
        return "bad_payload"
    token, signal, at, key = message
    if signal not in DeviceSignal.ALL:
        logger.info("mqtt: dropped an unknown signal", extra={"schema": schema_name, "device": device_id})
        return "bad_signal"
    now = timezone.now()
    if at is not None:
        if at < now - MAX_AGE:
            logger.info("mqtt: dropped a stale signal", extra={"schema": schema_name, "device": device_id})
            return "stale"
        # A signal cannot have happened after it arrived: a clock ahead gets receipt time.
        at = min(at, now)

    connection.set_schema_to_public()
    if not Tenant.objects.filter(schema_name=schema_name, is_active=True).exclude(schema_name="public").exists():
        logger.info("mqtt: dropped a signal for an unknown or inactive tenant", extra={"schema": schema_name})
        return "unknown_tenant"

    with tenant_scope(schema_name):
        device = Device.objects.select_related("resident", "resident__area").filter(pk=device_id).first()
        # One log line for both cases, so the log does not tell which device ids exist.
        if device is None:
            logger.info("mqtt: dropped a signal that did not authenticate", extra={"device": device_id})
            return "unknown_device"
        if not hmac.compare_digest(device.token_hash, hash_token(token)):
            logger.info("mqtt: dropped a signal that did not authenticate", extra={"device": device_id})
            return "bad_token"
        if device.revoked_at is not None:
            logger.info("mqtt: dropped a signal from a revoked device", extra={"device": device_id})
            return "revoked_device"
        # Checked here too, so that a flood costs one SELECT a message and no transaction.
        if device.last_signal_at is not None and now - device.last_signal_at < THROTTLE:
            logger.info("mqtt: throttled a device sending faster than once a second", extra={"device": device_id})
            return "throttled"
        try:
            do_record_device_signal(device=device, signal=signal, at=at or now, key=key)
        except IdempotencyConflict:
            logger.info("mqtt: dropped a press whose key was used for the other press", extra={"device": device_id})
            return "key_conflict"
        except DeviceThrottled:
            logger.info("mqtt: throttled a device sending faster than once a second", extra={"device": device_id})
            return "throttled"
        except ValidationError:
            logger.info("mqtt: the signal was refused", extra={"device": device_id})
            return "bad_signal"
    return "recorded"


def _parse_payload(payload: bytes) -> tuple[str, str, datetime | None, str | None] | None:
    """(token, signal, at, key) or None when the payload is not the expected JSON object."""
    from watch.actions import check_device_key

    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    token, signal, at, key = data.get("token"), data.get("signal"), data.get("at"), data.get("key")
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN or not isinstance(signal, str):
        return None
    try:
        check_device_key(key if key is None or isinstance(key, str) else "")
    except ValidationError:
        return None
    if at is None:
        return token, signal, None, key
    if not isinstance(at, str):
        return None
    try:
        parsed = datetime.fromisoformat(at)
    except ValueError:
        return None
    if timezone.is_naive(parsed):
        return None
    return token, signal, parsed, key


def get_mqtt_url() -> str:
    return settings.MQTT_URL or DEFAULT_URL


def parse_mqtt_url(url: str) -> dict:
    """Host, port, TLS and credentials from mqtt://user:password@host:port (mqtts:// for TLS)."""
    parsed = urlparse(url)
    if parsed.scheme not in {"mqtt", "mqtts"}:
        raise ValueError(f"MQTT_URL must be an mqtt:// or mqtts:// URL, not {parsed.scheme}://")
    tls = parsed.scheme == "mqtts"
    return {
        "host": parsed.hostname or "127.0.0.1",
        "port": parsed.port or (8883 if tls else 1883),
        "tls": tls,
        "username": unquote(parsed.username) if parsed.username else None,
        "password": unquote(parsed.password) if parsed.password else None,
    }


class Listener:
    """Subscribes to every tenant's device topics and handles each message in turn.

    `run()` blocks until `stop()` is called from another thread (paho's locks are not
    safe to take in a signal handler that interrupted its loop); paho reconnects on its
    own after a lost connection and `on_connect` subscribes again. The session is persistent (clean_session=False
    with a fixed client id), so the broker keeps QoS 1 messages while the listener is
    restarting; run one listener per client id.
    """

    def __init__(self, url: str | None = None, client_id: str = "mimamori-listener"):
        self.config = parse_mqtt_url(url or get_mqtt_url())
        self.subscribed = threading.Event()
        self._stopping = False
        # manual_ack: a message is acknowledged only once it is recorded (or dropped for
        # good), so a signal that arrived while the database was down is not lost.
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False, manual_ack=True)
        if self.config["username"]:
            self.client.username_pw_set(self.config["username"], self.config["password"])
        if self.config["tls"]:
            self.client.tls_set()
        self.client.enable_logger(logging.getLogger("watch.mqtt.paho"))  # else paho prints errors to stderr
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def run(self) -> None:
        host, port = self.config["host"], self.config["port"]
        logger.info("mqtt: connecting to %s:%s", host, port)
        if self._stopping:
            return
        try:
            self.client.connect_async(host, port, keepalive=60)
            # retry_first_connection: a broker that is not up yet is waited for, not fatal.
            self.client.loop_forever(retry_first_connection=True)
        finally:
            # This thread's database connection; the listener may run in a worker thread.
            connection.close()
            logger.info("mqtt: listener stopped")

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            logger.warning("mqtt: connection refused: %s", reason_code)
            return
        logger.info("mqtt: connected, subscribing to %s", TOPIC_FILTER)
        client.subscribe(TOPIC_FILTER, qos=1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.subscribed.clear()
        if not self._stopping:
            logger.warning("mqtt: disconnected (%s), reconnecting", reason_code)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(code.is_failure for code in reason_codes):
            logger.error("mqtt: subscription to %s refused", TOPIC_FILTER)
            return
        self.subscribed.set()

    def _on_message(self, client, userdata, msg):
        """Record the message, then acknowledge it. If it cannot be recorded (the database
        is down), try again with a growing wait for about RETRY_FOR; still failing, it is
        left unacknowledged, and the broker delivers it again when the listener next
        connects (the session is persistent; a press carries its key, so it logs once).
        An exception escaping a callback would stop paho's loop: none does."""
        for wait in [*RETRY_WAITS, None]:
            try:
                handle_message(msg.topic, msg.payload)
            except Exception:
                if wait is None:
                    logger.exception("mqtt: could not record a message on %s; left for redelivery", msg.topic[:120])
                    return
                logger.warning("mqtt: could not record a message on %s; again in %s s", msg.topic[:120], wait)
                time.sleep(wait)
            else:
                client.ack(msg.mid, msg.qos)
                return
