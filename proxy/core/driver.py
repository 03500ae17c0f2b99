"""The asyncio driver of sans-IO protocol sessions: the code that owns sockets, TLS and timers.

Owns accepting clients, feeding each session its events (`session.handle(event)`) and carrying
out the commands it returns (writes, the client's TLS upgrade, opening the upstream while the
Gate prepares the database, draining the upstream after the client went, closing), flow control
between the two sides, the login, idle and drain timers, and graceful shutdown. Knows no wire
format: a protocol subclasses `Listener` and `Connection` to say how to build its session, how to
reach its upstream, what a client is told when the session itself fails, and to carry out
commands of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ClassVar, Protocol, Self

from proxy.core.commands import (
    Close,
    Command,
    Drain,
    OpenUpstream,
    SendClient,
    SendUpstream,
    StartTLS,
    StartUpstreamTLS,
)
from proxy.core.events import (
    AuthTimeout,
    ClientClosed,
    ClientData,
    DatabaseNotReady,
    DrainTimeout,
    Event,
    IdleTimeout,
    Shutdown,
    TlsEstablished,
    UpstreamClosed,
    UpstreamConnected,
    UpstreamData,
    UpstreamFailed,
    UpstreamTlsEstablished,
)
from proxy.core.tls import TlsServerTransport
from proxy.services.gate import Gate

log = logging.getLogger("maskgate.driver")

WRITE_BUFFER_HIGH = 256 * 1024  # pause the other side's reads when a side has this much unsent
# How long a draining session (client gone, statements still running upstream) may wait for the
# database to say how they ended, before the upstream is closed too.
DRAIN_TIMEOUT = 5.0


class Session(Protocol):
    """What the driver needs of a sans-IO session."""

    @property
    def session_id(self) -> str: ...

    @property
    def idle(self) -> bool:
        """Nothing in flight: the idle timeout and a graceful shutdown may close it now."""
        ...

    @property
    def relaying(self) -> bool:
        """Logged in and open: statements may be in flight, so a shutdown waits for `idle`."""
        ...

    def handle(self, event: Event) -> list[Command]: ...


class UpstreamProtocol(asyncio.Protocol):
    """The upstream side of one connection: bytes in become `UpstreamData` events."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def data_received(self, data: bytes) -> None:
        self.conn.feed(UpstreamData(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.upstream_lost()

    def pause_writing(self) -> None:
        self.conn.pause_client()

    def resume_writing(self) -> None:
        self.conn.resume_client()


class Connection(asyncio.Protocol, ABC):
    """One client connection and its upstream; carries out the session's commands."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.closed = False
        self.draining = False  # the client is closed; the upstream is kept until the session closes
        self.session: Session
        self._auth_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._drain_timer: asyncio.TimerHandle | None = None
        self._login_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Bytes decrypted while the TLS upgrade is still being completed: None when no upgrade is
        # under way. The TLS layer hands over application data (a startup packet sent right
        # behind the client's Finished) before `start_tls` returns; the session must see it only
        # after TlsEstablished, and answers must go out on the encrypted transport.
        self._held: list[bytes] | None = None
        # Client TLS run by the driver itself (`StartTLS(pending=…)`), else None.
        self._tls: TlsServerTransport | None = None

    # -------------------------------------------------------------- what a protocol supplies

    @abstractmethod
    def make_session(self, client_addr: str) -> Session: ...

    @abstractmethod
    def internal_error(self) -> bytes:
        """The client's last words when the session itself fails: a generic FATAL error in the
        protocol's own format, never a Python exception text."""

    def upstream_protocol(self) -> UpstreamProtocol:
        return UpstreamProtocol(self)

    def run_other(self, cmd: Command) -> None:
        """A command of the protocol's own (the base driver knows only the shared ones)."""
        raise TypeError(f"unknown command {cmd!r}")

    def on_teardown(self) -> None:
        """Release what the protocol registered for this connection."""

    # -------------------------------------------------------------- client transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not a subclass of asyncio.Transport, only duck-typed like one.
        self.client = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        lst = self.listener
        self.session = self.make_session(addr)
        lst.connections.add(self)
        lst.gate.connection_opened(lst.protocol)
        self._auth_timer = self.loop.call_later(lst.auth_timeout, self.feed, AuthTimeout())
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)

    def data_received(self, data: bytes) -> None:
        if self._tls is not None:
            self._tls.feed(data)  # plaintext comes back through `_client_data`
            return
        self._client_data(data)

    def _client_data(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
            return
        if self.listener.idle_timeout:
            self._reset_idle()
        self.feed(ClientData(data))

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed and not self.draining:
            self.feed(ClientClosed())
        if self.closed or not self.draining:
            self._teardown()
        # else the session drains the upstream: `Close` or `DrainTimeout` ends it.

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and not self.upstream.is_closing():
            self.upstream.resume_reading()

    def pause_client(self) -> None:
        if self.client is not None:
            self.client.pause_reading()

    def resume_client(self) -> None:
        if self.client is not None and not self.client.is_closing():
            self.client.resume_reading()

    # -------------------------------------------------------------- events and commands

    def feed(self, event: Event) -> None:
        """Feed one event to the session and carry out its commands. A bug in the session must
        cost only this connection: it is closed with a generic FATAL error, never left hanging
        half-way and never shown a Python exception."""
        try:
            cmds = self.session.handle(event)
        except Exception:
            log.exception("session %s: internal error, closing the connection", self.session.session_id)
            if self.client is not None and not self.client.is_closing():
                self.client.write(self.internal_error())
            self._close()
            return
        self.run(cmds)

    def run(self, cmds: list[Command]) -> None:
        for c in cmds:
            if isinstance(c, SendClient):
                if self.client is not None and not self.client.is_closing():
                    self.client.write(c.data)
            elif isinstance(c, SendUpstream):
                if self.upstream is not None and not self.upstream.is_closing():
                    self.upstream.write(c.data)
            elif isinstance(c, OpenUpstream):
                self.spawn(self._open_upstream(c.database, c.upstream))
            elif isinstance(c, StartTLS):
                if c.pending is None:
                    self.spawn(self._start_tls())
                else:
                    self._start_tls_inband(c.pending)
            elif isinstance(c, StartUpstreamTLS):
                self.spawn(self._start_upstream_tls())
            elif isinstance(c, Drain):
                self._drain()
            elif isinstance(c, Close):
                log.debug("session %s closing: %s", self.session.session_id, c.reason)
                self._close()
            else:
                self.run_other(c)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        t = self.loop.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _start_tls(self) -> None:
        tls = self.listener.tls
        if self.client is None or tls is None:  # the session asked for TLS it was not offered
            self._close()
            return
        self._held = []
        try:
            new = await self.loop.start_tls(self.client, self, tls, server_side=True)
        except (OSError, ssl.SSLError, ConnectionError) as e:
            log.info("session %s: TLS handshake failed: %s", self.session.session_id, e)
            self._close()
            return
        if new is None:
            self._close()
            return
        self.client = new
        held, self._held = self._held, None
        self.feed(TlsEstablished())
        for data in held or ():
            if self.closed:
                break
            self.data_received(data)

    def _start_tls_inband(self, pending: bytes) -> None:
        """TLS for a client that did not wait for an answer to its request (MySQL): the bytes
        read after the request start the handshake, so the driver runs TLS itself."""
        tls = self.listener.tls
        raw = self.client
        if raw is None or tls is None or self._tls is not None:
            self._close()
            return

        def established() -> None:
            self.client = wrapper  # type: ignore[assignment]
            self.feed(TlsEstablished())

        def failed(e: Exception) -> None:
            log.info("session %s: TLS handshake failed: %s", self.session.session_id, e)
            self._close()

        wrapper = TlsServerTransport(
            raw, tls, on_handshake=established, on_data=self._client_data, on_error=failed
        )
        self._tls = wrapper
        if pending:
            wrapper.feed(pending)

    async def _start_upstream_tls(self) -> None:
        lst = self.listener
        ctx = lst.upstream_tls
        up = self.upstream
        if up is None or ctx is None:
            self.feed(UpstreamFailed("upstream TLS is not configured"))
            return
        try:
            new = await asyncio.wait_for(
                self.loop.start_tls(up, up.get_protocol(), ctx, server_hostname=lst.upstream_tls_hostname),
                lst.connect_timeout,
            )
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as e:
            if not self.closed:
                self.feed(UpstreamFailed("upstream TLS handshake failed", f"{lst.upstream_address}: {e!r}"))
            return
        if new is None or self.closed:
            return
        self.upstream = new
        self.feed(UpstreamTlsEstablished())

    async def _open_upstream(self, database: str, upstream: str) -> None:
        lst = self.listener
        # The schema of a database no session used yet is loaded on the gate's own threads while
        # we connect; `ready` is None when it is loaded already.
        ready = lst.gate.prepare(database, upstream=upstream)
        try:
            self.upstream = await lst.connect_upstream(self.upstream_protocol)
        except (TimeoutError, OSError, ConnectionError, ssl.SSLError) as e:
            if not self.closed:
                self.feed(UpstreamFailed(self._failure_reason(e), f"{lst.upstream_address}: {e!r}"))
            return
        if self.closed:
            self.upstream.close()
            return
        self.upstream.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        if ready is not None and not await self._ready(ready, database):
            if not self.closed:
                self.feed(DatabaseNotReady(database))
            return
        if self.closed:
            self.upstream.close()
            return
        self.feed(UpstreamConnected())
        if not self.closed:
            # The upstream accepted the connection; it must also answer the login in time (a
            # server that accepts and says nothing would otherwise hold the client until the
            # authentication timeout, with no reason given).
            self._login_timer = self.loop.call_later(lst.connect_timeout, self._login_overdue)

    async def _ready(self, ready: concurrent.futures.Future[bool], database: str) -> bool:
        """Wait, at most the connect timeout, for the gate to be ready for `database`."""
        try:
            # Shielded: the load is shared with other sessions; giving up must not cancel it.
            return bool(
                await asyncio.wait_for(
                    asyncio.shield(asyncio.wrap_future(ready)), self.listener.connect_timeout
                )
            )
        except TimeoutError:
            log.warning("session %s: database %r not ready in time", self.session.session_id, database)
        except Exception as e:  # the gate fails closed on its own; this is only logged, without a stack
            log.warning("session %s: preparing database %r failed: %r", self.session.session_id, database, e)
        return False

    def _failure_reason(self, e: BaseException) -> str:
        """What went wrong connecting upstream, in words the client may read (no address)."""
        if isinstance(e, TimeoutError):
            return f"upstream did not answer within {self.listener.connect_timeout:g} s"
        if isinstance(e, ssl.SSLError):
            return "upstream TLS handshake failed"
        if type(e) is ConnectionError and e.args:
            return str(e.args[0])  # the listener's own words ("upstream does not support TLS")
        if isinstance(e, OSError) and e.errno:
            # The errno's own words: asyncio's strerror carries the address, which is the log's.
            return f"upstream unreachable: {os.strerror(e.errno)}"
        return "upstream unreachable"

    def _login_overdue(self) -> None:
        self._login_timer = None
        if not self.closed and not self.draining and not self.session.relaying:
            t = self.listener.connect_timeout
            self.feed(
                UpstreamFailed(f"upstream did not answer within {t:g} s", self.listener.upstream_address)
            )

    def _drain(self) -> None:
        if self.draining or self.closed:
            return
        self.draining = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self.client is not None and not self.client.is_closing():
            self.client.close()  # after what was written to it
        if self.upstream is not None and not self.upstream.is_closing():
            self.upstream.resume_reading()  # the client's full buffer no longer holds it back
        self._drain_timer = self.loop.call_later(self.listener.drain_timeout, self.feed, DrainTimeout())

    def upstream_lost(self) -> None:
        if not self.closed and self.upstream is not None:
            self.feed(UpstreamClosed())

    # -------------------------------------------------------------- timers and teardown

    def _reset_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = self.loop.call_later(self.listener.idle_timeout or 0, self._on_idle)

    def _on_idle(self) -> None:
        # Only an idle session (nothing in flight) times out; a long query is not idleness.
        if self.session.idle:
            self.feed(IdleTimeout())
        else:
            self._reset_idle()

    def shutdown(self) -> None:
        self.feed(Shutdown())

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.client is not None:
            self.client.close()
        if self.upstream is not None:
            self.upstream.close()
        self._teardown()

    def _teardown(self) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        self.on_teardown()
        lst = self.listener
        if self in lst.connections:
            lst.connections.discard(self)
            lst.gate.connection_closed(lst.protocol)
            if self.upstream is not None:
                self.upstream.close()
            if not lst.connections:
                lst.drained.set()


def tls_context(tls: ssl.SSLContext | Mapping[str, str] | None) -> ssl.SSLContext | None:
    """Server-side TLS from a context or a `{cert, key}` mapping (the config file's shape)."""
    if tls is None or isinstance(tls, ssl.SSLContext):
        return tls
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls["cert"], tls["key"])
    return ctx


class Listener(ABC):
    """A protocol's listener: `await start()`, `await stop()`; `port` after start."""

    protocol: ClassVar[str]  # the bounded `protocol` label of metrics and records
    # TLS towards the upstream for protocols that negotiate it in-band (`StartUpstreamTLS`), and
    # the host name its certificate must name (None: not checked).
    upstream_tls: ssl.SSLContext | None = None
    upstream_tls_hostname: str | None = None
    # `workers: N` (proxy/workers.py): every worker listens on the same port and the kernel
    # spreads connections among them. Off for one process, so a second maskgate on the same
    # port still fails with "address in use".
    reuse_port: bool = False

    def __init__(
        self,
        gate: Gate,
        listen_host: str,
        listen_port: int,
        *,
        tls: ssl.SSLContext | Mapping[str, str] | None,
        auth_timeout: float,
        idle_timeout: float | None,
        connect_timeout: float,
        database_roles: Mapping[str, str] | None = None,
    ) -> None:
        self.gate = gate
        self.listen_host = listen_host
        self.port = listen_port
        self.tls = tls_context(tls)
        self.auth_timeout = auth_timeout
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        # Passwords of the database roles sessions log in as (policy roles' `database_role`).
        self.database_roles = tuple(sorted((database_roles or {}).items()))
        self.connections: set[Connection] = set()
        self.drained = asyncio.Event()
        self.drain_timeout = DRAIN_TIMEOUT
        self._server: asyncio.Server | None = None

    @abstractmethod
    def connection(self) -> Connection:
        """A new client connection's protocol object."""

    @abstractmethod
    async def connect_upstream(self, factory: Callable[[], asyncio.Protocol]) -> asyncio.Transport:
        """A connection to the upstream, ready for the session's first bytes (TLS as configured);
        raises OSError, ConnectionError, ssl.SSLError or TimeoutError."""

    @property
    @abstractmethod
    def upstream_address(self) -> str:
        """host:port of the upstream, for logs."""

    async def start(self) -> Self:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.connection, self.listen_host, self.port, reuse_port=self.reuse_port or None
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        log.info(
            "%s listener on %s:%d -> %s", self.protocol, self.listen_host, self.port, self.upstream_address
        )
        return self

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting; let sessions finish what is in flight for up to `timeout`, then close."""
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connections and loop.time() < deadline:
            for c in list(self.connections):
                if c.session.idle or not c.session.relaying:
                    c.shutdown()
            if self.connections:
                await asyncio.sleep(0.05)
        for c in list(self.connections):
            c.shutdown()
        # Sessions whose statements were still running cancel them and wait (up to
        # drain_timeout) for the database to say how they ended, so that is recorded too.
        if self.connections:
            self.drained.clear()
            if self.connections:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.drained.wait(), self.drain_timeout + 1.0)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
