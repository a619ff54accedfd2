"""What every camera adapter shares: posting one frame to the server's `POST /v1/inspect`.

A frame is sent until the server answers something final. Connection errors, timeouts, 5xx
and the "try again later" answers (408, 429, 499, 503 with Retry-After) are retried with a
doubling delay up to a cap; any other 4xx is final (the frame is refused and not sent again);
401/403/404 are about the setup (key, role, station), not the frame, so they stop the adapter
instead of refusing every frame that follows.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

#: Answers that mean "try again later": the frame is sent again.
RETRY_STATUS = frozenset({408, 429, 499})
#: Answers about the setup (key, role, station), not the frame: stop the adapter.
FATAL_STATUS = frozenset({401, 403, 404})


class ConnectError(Exception):
    """An adapter cannot run as configured (bad key, unknown station, bad argument)."""


class ServerRefusedError(ConnectError):
    """The server answered 401, 403 or 404: the key, its role or the station is wrong."""


@dataclass(frozen=True)
class Answer:
    """The server's final answer to one frame: 200 with the verdict, or a 4xx refusal."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def summary(self) -> str:
        """The verdict, or the refusal's message: what a log line says about the frame."""
        if self.ok and isinstance(self.body, dict):
            return str(self.body.get("verdict"))
        return error_message(self.body)


class InspectClient:
    """Posts frames of one station to a server, retrying until it answers or `stop` is set."""

    def __init__(self, url: str, key: str, station: str, *, timeout_s: float = 30.0,
                 max_backoff_s: float = 30.0, client: httpx.Client | None = None) -> None:
        self.endpoint = f"{url.rstrip('/')}/v1/inspect"
        self.key = key
        self.station = station
        self.max_backoff_s = max_backoff_s
        self.client = client or httpx.Client(timeout=timeout_s)

    def send(self, data: bytes, media_type: str, part_id: str | None, label: str,
             stop: threading.Event, *, idempotency_key: str | None = None) -> Answer | None:
        """POST until the server answers something final; None when stopped first.
        ServerRefusedError on 401/403/404. `label` names the frame in log lines. Every try
        carries the same `idempotency_key`: a frame whose answer was lost (a timeout after
        the server recorded it) gets its first verdict back, not a second record."""
        params = {"station": self.station}
        if part_id is not None:
            params["part_id"] = part_id
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": media_type}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        delay = 0.5
        while not stop.is_set():
            wait = min(delay, self.max_backoff_s)
            try:
                r = self.client.post(self.endpoint, params=params, content=data, headers=headers)
            except httpx.TransportError as exc:
                log.warning("%s: server unreachable (%s); retrying in %.1f s", label, exc, wait)
            else:
                if r.status_code in FATAL_STATUS:
                    raise ServerRefusedError(f"the server refused {label} with {r.status_code}: "
                                       f"{error_message(_json(r))}")
                if r.status_code < 500 and r.status_code not in RETRY_STATUS:
                    return Answer(r.status_code, _json(r))
                after = r.headers.get("retry-after", "")
                if after.isdigit():
                    wait = min(float(after), self.max_backoff_s)
                log.warning("%s: server answered %d (%s); retrying in %.1f s", label,
                            r.status_code, error_message(_json(r)), wait)
            stop.wait(wait)
            delay *= 2
        return None

    def close(self) -> None:
        self.client.close()


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return {"error": {"status": r.status_code, "message": r.text[:500]}}


def error_message(body: Any) -> str:
    """The message of the server's JSON error body (or a short repr of anything else)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))
    return str(body)[:200]


def answer_message(r: httpx.Response) -> str:
    """The message of a server's answer (its JSON error, or the start of its text)."""
    return error_message(_json(r))
