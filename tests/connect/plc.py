"""A PLC stand-in: a small real asyncua OPC UA server with a part-present signal, a part
counter, a part-id string and a temperature, on its own thread and loop; tests change its
variables, stop it and start it again on the same port."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole

from tests.server.harness import free_port

NAMESPACE = "urn:test:plc"
USER, PASSWORD = "camera", "camera-password-1"
#: name -> (type, value at every start)
VARIABLES: dict[str, tuple[ua.VariantType, Any]] = {
    "PartPresent": (ua.VariantType.Boolean, False),
    "PartCount": (ua.VariantType.Int32, 0),
    "PartId": (ua.VariantType.String, ""),
    "Temperature": (ua.VariantType.Double, 21.5),
}


class _Users:
    """One user with a password; anonymous and anyone else refused."""

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username == USER and password == PASSWORD:
            return User(role=UserRole.User, name=username)
        return None


class Plc:
    """`url` serves Objects/Line with VARIABLES as `ns=<NAMESPACE>;s=<name>` while started."""

    def __init__(self, initial: dict[str, Any] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"opc.tcp://127.0.0.1:{self.port}/plc"
        self.initial = {name: value for name, (_, value) in VARIABLES.items()} | (initial or {})
        self.ns = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._done: asyncio.Event | None = None

    def start(self) -> Plc:
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(ready),),
                                        daemon=True)
        self._thread.start()
        ready.result(30)
        return self

    async def _main(self, ready: concurrent.futures.Future[None]) -> None:
        server = Server(user_manager=_Users())  # type: ignore[arg-type]
        await server.init()
        server.set_endpoint(self.url)
        server.set_identity_tokens([ua.UserNameIdentityToken])
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.ns = await server.register_namespace(NAMESPACE)
        line = await server.nodes.objects.add_object(ua.NodeId("Line", self.ns), "Line")
        for name, (vtype, _) in VARIABLES.items():
            await line.add_variable(ua.NodeId(name, self.ns), name,
                                    ua.Variant(self.initial[name], vtype))
        await server.start()
        self._server, self._loop = server, asyncio.get_running_loop()
        self._done = asyncio.Event()
        ready.set_result(None)
        await self._done.wait()
        await server.stop()

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self._loop is not None, "the PLC is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def set(self, name: str, value: Any) -> None:
        """Write a variable, as the PLC program would."""
        assert self._server is not None
        self._call(self._server.write_attribute_value(
            ua.NodeId(name, self.ns), ua.DataValue(ua.Variant(value, VARIABLES[name][0]))))

    def stop(self) -> None:
        """Close the endpoint; connected clients lose their session."""
        if self._loop is not None and self._done is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._done.set)
            self._thread.join(30)
            self._loop = self._server = None

    def __enter__(self) -> Plc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
