"""The asyncio driver with a toy protocol over loopback sockets: commands carried out, the
upstream opened while the gate prepares, a failing session closed with its last words, timers
and graceful stop."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable

from proxy.core.commands import Close, Command, OpenUpstream, SendClient, SendUpstream
from proxy.core.driver import Connection, Listener
from proxy.core.events import (
    AuthTimeout,
    ClientData,
    DatabaseNotReady,
    Event,
    Shutdown,
    UpstreamConnected,
    UpstreamData,
)


class Toy:
    """`open` opens the upstream; other client bytes go upstream, upstream bytes come back."""

    def __init__(self) -> None:
        self.session_id = "toy"
        self.connected = False
        self.idle = True

    @property
    def relaying(self) -> bool:
        return self.connected

    def handle(self, event: Event) -> list[Command]:
        if isinstance(event, ClientData):
            if event.data == b"open":
                return [OpenUpstream("crm", "shop")]
            if event.data == b"boom":
                raise RuntimeError("a bug in the session")
            if event.data == b"busy":
                self.idle = False
                return []
            return [SendUpstream(event.data)]
        if isinstance(event, UpstreamConnected):
            self.connected = True
            return [SendClient(b"connected;")]
        if isinstance(event, UpstreamData):
            return [SendClient(event.data)]
        if isinstance(event, DatabaseNotReady):
            return [SendClient(b"not ready;"), Close("not ready")]
        if isinstance(event, AuthTimeout) and not self.connected:
            return [SendClient(b"too slow;"), Close("auth")]
        if isinstance(event, Shutdown):
            return [SendClient(b"bye;"), Close("shutdown")]
        return []


class Gate:
    def __init__(self) -> None:
        self.prepared: list[tuple[str, str]] = []
        self.opened = self.closed = 0
        self.ready: concurrent.futures.Future[bool] | None = None  # None: ready now

    def prepare(self, database: str, upstream: str = "postgres") -> concurrent.futures.Future[bool] | None:
        self.prepared.append((upstream, database))
        return self.ready

    def connection_opened(self, protocol: str) -> None:
        self.opened += 1

    def connection_closed(self, protocol: str) -> None:
        self.closed += 1


class ToyConnection(Connection):
    def make_session(self, client_addr: str) -> Toy:
        return Toy()

    def internal_error(self) -> bytes:
        return b"internal error;"


class ToyListener(Listener):
    protocol = "toy"

    def __init__(self, gate: Gate, upstream_port: int, auth_timeout: float = 5.0) -> None:
        super().__init__(
            gate,  # type: ignore[arg-type]
            "127.0.0.1",
            0,
            tls=None,
            auth_timeout=auth_timeout,
            idle_timeout=None,
            connect_timeout=5.0,
        )
        self.upstream_port = upstream_port

    def connection(self) -> ToyConnection:
        return ToyConnection(self)

    @property
    def upstream_address(self) -> str:
        return f"127.0.0.1:{self.upstream_port}"

    async def connect_upstream(self, factory: Callable[[], asyncio.Protocol]) -> asyncio.Transport:
        transport, _ = await asyncio.get_running_loop().create_connection(
            factory, "127.0.0.1", self.upstream_port
        )
        return transport


async def echo_server() -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(b"echo:" + data)
        writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 5)


def run(scenario: Callable[[ToyListener, Gate], object], auth_timeout: float = 5.0) -> None:
    async def main() -> None:
        upstream = await echo_server()
        gate = Gate()
        listener = await ToyListener(gate, upstream.sockets[0].getsockname()[1], auth_timeout).start()
        try:
            await scenario(listener, gate)  # type: ignore[misc]
        finally:
            await listener.stop(1.0)
            upstream.close()

    asyncio.run(main())


def test_commands_are_carried_out_and_the_gate_prepares_the_database() -> None:
    async def scenario(listener: ToyListener, gate: Gate) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"open")
        assert await asyncio.wait_for(reader.readexactly(10), 5) == b"connected;"
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(10), 5) == b"echo:hello"
        assert gate.prepared == [("shop", "crm")] and gate.opened == 1
        await listener.stop(1.0)  # idle: shut down at once, with the session's last words
        assert await read_until_closed(reader) == b"bye;"
        assert gate.closed == 1 and listener.drained.is_set() and not listener.connections

    run(scenario)


def test_a_failing_session_costs_only_its_connection() -> None:
    async def scenario(listener: ToyListener, gate: Gate) -> None:
        r1, w1 = await asyncio.open_connection("127.0.0.1", listener.port)
        r2, w2 = await asyncio.open_connection("127.0.0.1", listener.port)
        w1.write(b"boom")
        assert await read_until_closed(r1) == b"internal error;"
        w2.write(b"open")
        assert await asyncio.wait_for(r2.readexactly(10), 5) == b"connected;"

    run(scenario)


def test_the_login_timer_reaches_the_session() -> None:
    async def scenario(listener: ToyListener, gate: Gate) -> None:
        reader, _ = await asyncio.open_connection("127.0.0.1", listener.port)
        assert await read_until_closed(reader) == b"too slow;"

    run(scenario, auth_timeout=0.05)


def test_stop_waits_for_a_busy_session_then_closes_it() -> None:
    async def scenario(listener: ToyListener, gate: Gate) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"open")
        assert await asyncio.wait_for(reader.readexactly(10), 5) == b"connected;"
        writer.write(b"busy")
        await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        await listener.stop(0.3)
        assert asyncio.get_running_loop().time() - started >= 0.25  # it waited for the session
        assert await read_until_closed(reader) == b"bye;"

    run(scenario)


def test_a_database_not_ready_in_time_is_told_so_and_the_load_is_not_cancelled() -> None:
    """The gate's load is shared by every session of the database: a session that stops
    waiting (after the connect timeout) must leave it running for the others."""

    async def scenario(listener: ToyListener, gate: Gate) -> None:
        listener.connect_timeout = 0.2
        gate.ready = concurrent.futures.Future()  # a load that never ends
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"open")
        assert await read_until_closed(reader) == b"not ready;"
        assert not gate.ready.cancelled()
        failed: concurrent.futures.Future[bool] = concurrent.futures.Future()
        failed.set_result(False)  # a load that failed
        gate.ready = failed
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"open")
        assert await read_until_closed(reader) == b"not ready;"

    run(scenario)
