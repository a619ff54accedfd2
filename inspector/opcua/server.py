"""The OPC UA server (asyncua), on its own thread and asyncio loop.

Its own loop keeps OPC UA work (encoding, encryption, many subscribed clients, a client that
misbehaves) off the HTTP server's loop; verdicts reach it through `VerdictFeed`, which never
makes the commit thread wait. Only this module and `namespace` import asyncua, and only when
OPC UA is switched on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole

from inspector.opcua.errors import OpcUaStartError
from inspector.opcua.feed import VerdictFeed
from inspector.opcua.namespace import AddressSpace
from inspector.settings import Settings

log = logging.getLogger(__name__)

#: Client connections at once; PLCs and SCADA clients are few, a flood is refused.
MAX_CLIENTS = 64
#: Seconds between refreshes of Node/ModelsLoaded (uploads and deploys change it).
MODELS_REFRESH_S = 5.0


def _digest(password: str) -> bytes:
    return hashlib.sha256(password.encode("utf-8")).digest()


class PasswordUsers:
    """asyncua's user manager: user names with SHA-256 password digests, compared in constant
    time. Every user gets the plain User role (read, browse, subscribe, call); never Admin,
    which could add or delete nodes."""

    def __init__(self, settings: Settings) -> None:
        self._digests = {name: _digest(pw.get_secret_value())
                         for name, pw in settings.opcua_users.items()}
        self._anonymous = settings.opcua_allow_anonymous

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is None and password is None and certificate is None:
            return User(role=UserRole.User, name="anonymous") if self._anonymous else None
        if not username or password is None:
            return None
        expected = self._digests.get(username, b"\0" * 32)
        if hmac.compare_digest(_digest(password), expected) and username in self._digests:
            return User(role=UserRole.User, name=username)
        log.warning("OPC UA login refused for user %r", username[:64])
        return None


class OpcUaServer:
    """Runs the server; `start()` returns once it listens (or raises OpcUaStartError)."""

    def __init__(self, settings: Settings, feed: VerdictFeed, stations: list[str],
                 models: Callable[[], list[str]]) -> None:
        self.settings = settings
        self.feed = feed
        self._stations = stations
        self._models = models
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name="opcua", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def endpoint(self) -> str:
        return self.settings.opcua_endpoint or ""

    def start(self, timeout: float = 60.0) -> None:
        """Blocking: start the thread and wait until the endpoint listens."""
        if not log.isEnabledFor(logging.DEBUG):
            # asyncua logs every request at INFO: a polling SCADA would flood the log.
            logging.getLogger("asyncua").setLevel(logging.WARNING)
        self._thread.start()
        self._ready.result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Blocking: close the endpoint (clients are disconnected) and end the thread."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # loop already gone
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        try:
            server, space = await self._open()
        except Exception as exc:
            self._ready.set_exception(OpcUaStartError(
                f"the OPC UA server could not start on {self.endpoint}: {exc}",
                hint="check opcua_endpoint (is the port free?) and the certificate files"))
            return
        loop = self._loop = asyncio.get_running_loop()
        self._stop, wake = asyncio.Event(), asyncio.Event()
        self.feed.attach(lambda: loop.call_soon_threadsafe(wake.set))
        self._ready.set_result(None)
        pump = asyncio.create_task(self._pump(space, wake))
        try:
            await self._stop.wait()
        finally:
            self.feed.attach(None)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            await server.stop()

    async def _open(self) -> tuple[Server, AddressSpace]:
        s = self.settings
        server = Server(user_manager=PasswordUsers(s))  # type: ignore[arg-type]
        await server.init()
        server.iserver.max_connections = MAX_CLIENTS
        server.set_server_name(f"inspector {s.line} {s.node_id}")
        await server.set_application_uri(f"urn:inspector:{s.line}:{s.node_id}")
        server.set_endpoint(self.endpoint)
        tokens: list[type] = [ua.UserNameIdentityToken] if s.opcua_users else []
        if s.opcua_allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        if s.opcua_certificate is not None and s.opcua_private_key is not None:
            await server.load_certificate(str(s.opcua_certificate))
            await server.load_private_key(str(s.opcua_private_key))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace(f"urn:inspector:{s.line}")
        space = AddressSpace(server, ns)
        await space.build(s.node_id, s.line, self._models())
        for station in self._stations:
            await space.add_station(station)
        await server.start()
        return server, space

    async def _pump(self, space: AddressSpace, wake: asyncio.Event) -> None:
        """Write queued verdicts in commit order; refresh ModelsLoaded now and then."""
        loop = asyncio.get_running_loop()
        next_models = loop.time() + MODELS_REFRESH_S
        while True:
            for update in self.feed.drain():
                try:
                    if not space.has(update.station):
                        await space.add_station(update.station)
                    await space.show(update)
                except Exception:
                    log.exception("OPC UA: verdict %s of station %s not shown",
                                  update.inspection_id, update.station)
            if loop.time() >= next_models:
                next_models = loop.time() + MODELS_REFRESH_S
                try:
                    await space.set_models(self._models())
                except Exception:
                    log.exception("OPC UA: ModelsLoaded not refreshed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(next_models - loop.time(), 0.0))
            wake.clear()
