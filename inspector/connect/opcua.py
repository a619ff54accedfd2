"""`opcua:<node id>`: a variable changing on a PLC (or on inspector's own OPC UA server) takes
the next frame.

An asyncua client (the `opcua` extra) on its own thread and event loop subscribes to the node.
The value the subscription delivers first is where counting starts, never a trigger; the same
after every reconnect. Then, by the node's data type:
- Boolean (a part-present signal): each false->true edge takes a frame.
- an integer (a counter such as inspector's `Stations/<s>/FrameRequests`): a rise by k takes k
  frames, so counts the subscription reported together are not lost (at most `max_pending`
  at once); a fall is a reset to 0, after which the new value counts.
- String: a change to a non-empty value takes a frame with that value as its part id (one the
  server would refuse gets a made-up id, with a warning); a change to "" takes none.
Any other type is refused.

Connecting: an endpoint that cannot be reached, or that goes away, is retried with waits
doubling up to `max_backoff_s`, logged once per outage, at start as later: on a line the edge
box often boots before the PLC. Changes made while disconnected are missed. A refusal by the
server before the first subscription (login, unknown namespace or node, unusable type) stops
the adapter with that error: it is a setup mistake that retrying cannot mend; once it has
worked, a refusal after a reconnect (a PLC program being changed) is retried like an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from asyncua import Client, Node, ua

from inspector.connect.client import ConnectError
from inspector.connect.triggers import Counters, EventTrigger, line_part_id

log = logging.getLogger(__name__)

#: `ns=2;s=...`, `ns=2;i=...` (also g= Guid, b= base64), `nsu=<namespace URI>;s=...`, `i=2258`.
NODE_RE = re.compile(r"(?:ns=(?P<ns>\d{1,5});|nsu=(?P<nsu>[^;\x00-\x1f]{1,512});)?"
                     r"(?P<kind>[isgb])=(?P<id>[^\x00-\x1f]{1,4096})", re.DOTALL)
#: Milliseconds between the server's notifications; changes within one arrive together.
PUBLISH_MS = 50
#: Changes the server keeps for one notification: a burst of them arrives one by one.
QUEUE_SIZE = 100
#: Seconds one request (connect, read, subscribe) may take before the try counts as failed.
REQUEST_TIMEOUT_S = 10.0

_INTEGERS = frozenset({ua.VariantType.SByte, ua.VariantType.Byte, ua.VariantType.Int16,
                       ua.VariantType.UInt16, ua.VariantType.Int32, ua.VariantType.UInt32,
                       ua.VariantType.Int64, ua.VariantType.UInt64})
#: Status codes with which a server refuses the setup, rather than being away.
_REFUSALS = frozenset({
    ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadIdentityTokenRejected,
    ua.StatusCodes.BadIdentityTokenInvalid, ua.StatusCodes.BadNodeIdUnknown,
    ua.StatusCodes.BadNodeIdInvalid, ua.StatusCodes.BadAttributeIdInvalid,
    ua.StatusCodes.BadSecurityPolicyRejected, ua.StatusCodes.BadNotReadable})


class RefusedError(Exception):
    """The server refused the setup (not merely away)."""


@dataclass(frozen=True)
class NodeSpec:
    """A node id as given: `namespace` is an index, or a URI resolved after connecting."""

    text: str
    namespace: int | str
    node: ua.NodeId  # with namespace index 0 while `namespace` is a URI


def parse_node(text: str) -> NodeSpec:
    """`ns=2;s=Stations/s1/FrameRequests` and the like -> NodeSpec; ValueError saying how."""
    m = NODE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"opcua:{text[:200]!r} is no node id: use ns=<index>;s=<name>, "
                         "ns=<index>;i=<number> or nsu=<namespace URI>;s=<name> (e.g. "
                         "opcua:nsu=urn:inspector:line1;s=Stations/s1/FrameRequests)")
    try:
        node = ua.NodeId.from_string(f"{m['kind']}={m['id']}")
    except ua.UaStringParsingError as exc:
        raise ValueError(f"opcua:{text[:200]!r}: the identifier after {m['kind']}= is not "
                         "valid (i= takes a number, g= a GUID, b= base64)") from exc
    if m["kind"] == "i" and not 0 <= int(m["id"]) < 2**32:
        raise ValueError(f"opcua:{text[:200]!r}: a numeric identifier is at most {2**32 - 1}")
    namespace: int | str = m["nsu"] if m["nsu"] is not None else int(m["ns"] or 0)
    if isinstance(namespace, int) and namespace > 65535:
        raise ValueError(f"opcua:{text[:200]!r}: a namespace index is at most 65535")
    return NodeSpec(text, namespace, node)


@dataclass(frozen=True)
class OpcUaLogin:
    """Where the trigger connects and as whom (no user: anonymous). Never shows the password."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme != "opc.tcp" or not parts.hostname or "@" in parts.netloc:
            raise ValueError("--opcua-url must look like opc.tcp://host:4840/path, without a "
                             "user or password in it (use --opcua-user and "
                             "INSPECTOR_OPCUA_PASSWORD)")
        try:
            parts.port  # noqa: B018 (raises on a port out of range)
        except ValueError as exc:
            raise ValueError(f"--opcua-url {self.url!r}: {exc}") from exc
        if self.user is not None and self.password is None:
            raise ValueError(f"--opcua-user {self.user!r} needs a password: set "
                             "INSPECTOR_OPCUA_PASSWORD (or --opcua-password)")
        if self.password is not None and self.user is None:
            raise ValueError("an OPC UA password needs --opcua-user")

    def client(self) -> Client:
        client = Client(self.url, timeout=REQUEST_TIMEOUT_S)
        if self.user is not None and self.password is not None:
            client.set_user(self.user)
            client.set_password(self.password)
        return client


def frames_for(vtype: ua.VariantType, before: Any, now: Any) -> tuple[int, str | None]:
    """Frames a change from `before` to `now` takes, and the part id it names."""
    if vtype == ua.VariantType.Boolean:
        return int(now is True and before is not True), None
    if vtype in _INTEGERS:
        return (now - before if now >= before else now), None  # a fall: reset to 0
    text = str(now).strip()
    if not text or now == before:
        return 0, None
    return 1, line_part_id(text, "OPC UA part id")


class OpcUaTrigger(EventTrigger):
    """Subscribes to one node; its changes request frames (see the module's docstring)."""

    def __init__(self, node: str, login: OpcUaLogin, *, max_backoff_s: float = 30.0) -> None:
        super().__init__()
        self.spec = parse_node(node)
        self.login = login
        self.max_backoff_s = max_backoff_s
        self.subscribed = threading.Event()
        self.value: Any = None  # the node's last value seen, for logs and tests
        self._vtype = ua.VariantType.Null
        self._baseline = True  # the next notification is a subscription's first
        self._worked = False  # subscribed at least once
        self._down_since: float | None = None
        self._closed = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()  # binds to the trigger's loop on first use
        self._thread = threading.Thread(target=self._run, name="opcua-trigger", daemon=True)

    def start(self, stop: threading.Event, counters: Counters) -> None:
        """Connect in the background; reconnects until `close`."""
        super().start(stop, counters)
        if not log.isEnabledFor(logging.DEBUG):
            # asyncua logs every request at INFO and each lost connection with a traceback:
            # the trigger logs an outage once instead.
            logging.getLogger("asyncua").setLevel(logging.CRITICAL)
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just ended
                self._loop.call_soon_threadsafe(self._wake.set)
        if self._thread.is_alive():
            self._thread.join(REQUEST_TIMEOUT_S * 2)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        """Runs `_connect` until `close`, which also cuts short a connect that hangs."""
        self._loop = asyncio.get_running_loop()
        work = asyncio.create_task(self._connect())
        closed = asyncio.create_task(self._wake.wait())
        await asyncio.wait({work, closed}, return_when=asyncio.FIRST_COMPLETED)
        for task in (work, closed):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _connect(self) -> None:
        """Connect, subscribe and watch; after a loss, again with a growing wait."""
        delay = 1.0
        while not self._closed.is_set():
            try:
                await self._session()
            except RefusedError as exc:
                if not self._worked:  # the adapter stops and shows it
                    self.fail(ConnectError(f"OPC UA {self.login.url}: {exc}"))
                    return
                self._down(exc)
            except Exception as exc:  # unreachable, lost, timed out: all retried alike
                self._down(f"not connected ({str(exc) or type(exc).__name__})")
            if self.subscribed.is_set():
                delay = 1.0  # it worked for a while: this is a new outage
            self.subscribed.clear()
            await self._pause(delay)
            delay = min(delay * 2, self.max_backoff_s)

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less when closed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _session(self) -> None:
        """One connection: subscribe, then watch the connection until closed or lost."""
        client = self.login.client()
        try:
            await self._login(client)
            node = await self._node(client)
            self._baseline = True
            sub = await client.create_subscription(PUBLISH_MS, self)
            await sub.subscribe_data_change(node, queuesize=QUEUE_SIZE)
            self._up()
            while not self._closed.is_set():
                await client.check_connection()
                await self._pause(1.0)
        finally:
            await _quietly_disconnect(client)

    async def _login(self, client: Client) -> None:
        try:
            await client.connect()
        except ua.UaStatusCodeError as exc:
            if exc.code in _REFUSALS:
                raise RefusedError(f"login as {self.login.user or 'anonymous'} refused ({exc}); "
                                   "check --opcua-user and INSPECTOR_OPCUA_PASSWORD") from exc
            raise

    async def _node(self, client: Client) -> Node:
        """The node to watch, its namespace resolved, and its type checked."""
        node_id = self.spec.node
        ns = self.spec.namespace
        if isinstance(ns, str):
            try:
                ns = await client.get_namespace_index(ns)
            except ValueError as exc:
                raise RefusedError(f"the server has no namespace {ns!r}") from exc
        node = client.get_node(ua.NodeId(node_id.Identifier, ua.Int16(ns), node_id.NodeIdType))
        try:
            vtype = await node.read_data_type_as_variant_type()
        except ua.UaStatusCodeError as exc:
            if exc.code in _REFUSALS:
                raise RefusedError(f"no variable {self.spec.text!r} to watch ({exc})") from exc
            raise
        except ua.UaError as exc:  # a structure or another type without a built-in kind
            raise RefusedError(f"{self.spec.text!r} is not a Boolean, integer or String "
                               "variable") from exc
        if vtype != ua.VariantType.Boolean and vtype != ua.VariantType.String \
                and vtype not in _INTEGERS:
            raise RefusedError(f"{self.spec.text!r} is a {vtype.name}: the opcua trigger "
                               "watches a Boolean, an integer counter or a String")
        self._vtype = vtype
        return node

    def _up(self) -> None:
        self._worked = True
        self.subscribed.set()
        if self._down_since is not None:
            log.info("OPC UA %s: connected again after %.0f s; watching %s", self.login.url,
                     time.monotonic() - self._down_since, self.spec.text)
            self._down_since = None
        else:
            log.info("OPC UA %s: watching %s (%s)", self.login.url, self.spec.text,
                     self._vtype.name)

    def _down(self, why: object) -> None:
        """Logs an outage once; the next subscription logs its end."""
        if self._down_since is None and not self._closed.is_set():
            self._down_since = time.monotonic()
            log.warning("OPC UA %s: %s; retrying (changes meanwhile are missed)",
                        self.login.url, why)

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        """asyncua's callback, on this trigger's loop: one change of the node."""
        if val is None:
            return  # a bad-quality value: neither a trigger nor a new baseline
        before, self.value = self.value, val
        if self._baseline:
            self._baseline = False
            return
        frames, part = frames_for(self._vtype, before, val)
        if frames > self.max_pending:
            log.warning("OPC UA %s rose by %d at once; taking the next %d frames",
                        self.spec.text, frames, self.max_pending)
            frames = self.max_pending
        now = time.monotonic()
        for _ in range(frames):
            self.request(now, part)

    def status_change_notification(self, status: Any) -> None:
        """asyncua's callback when the subscription itself fails: the connection check in
        `_session` notices the loss and reconnects."""


async def _quietly_disconnect(client: Client) -> None:
    """Close the session if the connection still lets us; a lost one needs nothing more."""
    with contextlib.suppress(OSError, TimeoutError, ua.UaError):
        await asyncio.wait_for(client.disconnect(), REQUEST_TIMEOUT_S)
