"""An MQTT broker URL, read once for everything that talks to a broker (the verdict publisher,
the stream adapter's trigger): `mqtt://[user:pass@]host[:port]` or `mqtts://...` (TLS)."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True)
class Broker:
    """Where a broker is and how to log in."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> Broker:
        """The parts of a broker URL; ValueError saying the expected form otherwise."""
        try:
            parsed = urlparse(url)
            port = parsed.port
        except ValueError as exc:
            raise ValueError(f"MQTT URL {url!r}: {exc}") from exc
        if parsed.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"MQTT URL {url!r} must look like mqtt://host:1883 or "
                             "mqtts://host:8883")
        tls = parsed.scheme == "mqtts"
        return cls(host=parsed.hostname or "127.0.0.1", port=port or (8883 if tls else 1883),
                   tls=tls, username=unquote(parsed.username) if parsed.username else None,
                   password=unquote(parsed.password) if parsed.password else None)

    def client(self, client_id: str) -> mqtt.Client:
        """A paho client (MQTT 3.1.1, clean session, a unique id from `client_id`) with this
        broker's login and TLS set; not connected yet."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=f"{client_id}-{os.urandom(3).hex()}",
                             protocol=mqtt.MQTTv311, clean_session=True)
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        return client
