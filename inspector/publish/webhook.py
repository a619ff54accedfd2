"""Webhook delivery: POST the verdict JSON, signed with HMAC-SHA256.

Headers: `X-Inspector-Event: verdict`, `X-Inspector-Id: <inspection id>`,
`X-Inspector-Timestamp: <unix seconds>`, `X-Inspector-Signature: sha256=<hex>` where the
signature covers `<timestamp>.<body>`. Receivers check it with `verify_signature` (or the same
three lines in their language) and should refuse timestamps older than a few minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx

from inspector.publish.delivery import Outcome
from inspector.publish.messages import webhook_destination
from inspector.store.outbox import PendingEvent

#: Status codes that retrying cannot fix: the receiver is gone or refuses the payload.
_PERMANENT = {400, 401, 403, 404, 405, 410, 413, 415, 422}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` over `<timestamp>.<body>`."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str, timestamp: str, body: bytes, signature: str, max_age_s: float = 300.0
) -> bool:
    """Check a delivery's signature and freshness (for receivers and tests)."""
    try:
        age = abs(time.time() - float(timestamp))
    except ValueError:
        return False
    return age <= max_age_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookDestination:
    """One webhook receiver."""

    def __init__(self, name: str, url: str, secret: str, timeout_s: float = 10.0) -> None:
        self.name = webhook_destination(name)
        self.url = url
        self._secret = secret
        self._timeout_s = timeout_s
        self._client: httpx.Client | None = None

    def start(self) -> None:
        self._client = httpx.Client(timeout=self._timeout_s, follow_redirects=False)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()

    def deliver(self, events: list[PendingEvent]) -> list[Outcome]:
        """POST each event in order; stop at the first transport failure (the rest wait)."""
        if self._client is None:
            self.start()
        assert self._client is not None
        outcomes: list[Outcome] = []
        for i, e in enumerate(events):
            body = e.payload.encode("utf-8")
            ts = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "X-Inspector-Event": "verdict",
                "X-Inspector-Id": e.inspection_id,
                "X-Inspector-Timestamp": ts,
                "X-Inspector-Signature": sign(self._secret, ts, body),
            }
            try:
                resp = self._client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                msg = f"{type(exc).__name__}: {exc}"
                outcomes += [Outcome(x.id, False, msg) for x in events[i:]]
                break
            if resp.is_success:
                outcomes.append(Outcome(e.id, True, None))
            else:
                outcomes.append(Outcome(e.id, False, f"HTTP {resp.status_code} from {self.url}",
                                        retryable=resp.status_code not in _PERMANENT))
        return outcomes
