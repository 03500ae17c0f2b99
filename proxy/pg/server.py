"""The PostgreSQL listener: the only module of proxy/pg that owns sockets, TLS and timers.

Owns accepting clients, opening the per-client upstream connection (with the SSLRequest
dance when the upstream URL asks for TLS), carrying out the commands of `PgSession`, cancel-key
mapping, flow control between the two sides, timeouts and graceful shutdown. All protocol
decisions live in the session; this module only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from proxy.core.commands import Close, Command, OpenUpstream, SendClient, SendUpstream, StartTLS
from proxy.core.events import (
    AuthTimeout,
    ClientClosed,
    ClientData,
    Event,
    IdleTimeout,
    Shutdown,
    TlsEstablished,
    UpstreamClosed,
    UpstreamConnected,
    UpstreamData,
    UpstreamFailed,
)
from proxy.gate import Gate
from proxy.pg import errors
from proxy.pg import messages as m
from proxy.pg.context import SessionConfig
from proxy.pg.framing import DEFAULT_MAX_MESSAGE
from proxy.pg.login import ForwardCancel, RegisterCancelKey
from proxy.pg.session import PgSession

log = logging.getLogger("maskgate.pg")


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int
    user: str
    password: str
    database: str
    sslmode: str = "prefer"

    @classmethod
    def from_url(cls, url: str) -> Upstream:
        u = urlsplit(url)
        if u.scheme not in ("postgresql", "postgres"):
            raise ValueError("upstream URL must start with postgresql://")
        if not u.username:
            raise ValueError("upstream URL needs a user (the service account)")
        q = parse_qs(u.query)
        sslmode = q.get("sslmode", ["prefer"])[0]
        if sslmode not in ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"):
            raise ValueError(f"unknown sslmode {sslmode!r}")
        return cls(
            host=u.hostname or "127.0.0.1",
            port=u.port or 5432,
            user=unquote(u.username),
            password=unquote(u.password or ""),
            database=unquote(u.path.lstrip("/")) or unquote(u.username),
            sslmode=sslmode,
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.sslmode == "disable":
            return None
        ctx = ssl.create_default_context()
        if self.sslmode not in ("verify-ca", "verify-full"):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.sslmode == "verify-ca":
            ctx.check_hostname = False
        return ctx


def tls_context(tls: ssl.SSLContext | dict[str, str] | None) -> ssl.SSLContext | None:
    """Server-side TLS from a context or a `{cert, key}` mapping (the config file's shape)."""
    if tls is None or isinstance(tls, ssl.SSLContext):
        return tls
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls["cert"], tls["key"])
    return ctx


class _UpstreamLink(asyncio.Protocol):
    """An upstream connection that may first have to answer the one-byte SSLRequest reply."""

    def __init__(self) -> None:
        self.ssl_answer: asyncio.Future[bytes] | None = None

    def _ssl_reply(self, data: bytes) -> bool:
        if self.ssl_answer is None or self.ssl_answer.done():
            return False
        if len(data) != 1:  # a server must answer an SSLRequest with exactly one byte
            self.ssl_answer.set_exception(ConnectionError("bad SSLRequest answer"))
        else:
            self.ssl_answer.set_result(data)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ssl_answer is not None and not self.ssl_answer.done():
            self.ssl_answer.set_exception(ConnectionError("upstream closed during TLS negotiation"))


class _UpstreamProtocol(_UpstreamLink):
    def __init__(self, conn: _Connection) -> None:
        super().__init__()
        self.conn = conn

    def data_received(self, data: bytes) -> None:
        if not self._ssl_reply(data):
            self.conn.feed(UpstreamData(data))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.conn.upstream_lost()

    def pause_writing(self) -> None:
        self.conn.pause_client()

    def resume_writing(self) -> None:
        self.conn.resume_client()


class _Connection(asyncio.Protocol):
    """One client connection and its upstream; carries out the session's commands."""

    def __init__(self, server: PgProxyServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.closed = False
        self.session: PgSession
        self.cancel_key: tuple[int, bytes] | None = None
        self._auth_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -------------------------------------------------------------- client transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not a subclass of asyncio.Transport, only duck-typed like one.
        self.client = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        srv = self.server
        self.session = PgSession(
            srv.gate,
            SessionConfig(
                upstream_user=srv.upstream.user,
                upstream_password=srv.upstream.password,
                default_database=srv.upstream.database,
                tls_available=srv.tls is not None,
                max_message=srv.max_message,
                client_addr=addr,
            ),
        )
        srv.connections.add(self)
        srv.gate.connection_opened("postgres")
        self._auth_timer = self.loop.call_later(srv.auth_timeout, self._auth_timeout)
        transport.set_write_buffer_limits(high=256 * 1024)

    def data_received(self, data: bytes) -> None:
        if self.server.idle_timeout:
            self._reset_idle()
        self.feed(ClientData(data))

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.feed(ClientClosed())
        self._teardown()

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

    # -------------------------------------------------------------- commands

    def feed(self, event: Event) -> None:
        """Feed one event to the session and carry out its commands. A bug in the session must
        cost only this connection: it is closed with a generic FATAL error, never left hanging
        half-way and never shown a Python exception."""
        try:
            cmds = self.session.handle(event)
        except Exception:
            log.exception("session %s: internal error, closing the connection", self.session.session_id)
            if self.client is not None and not self.client.is_closing():
                self.client.write(
                    errors.error(
                        "XX000", "internal error; the connection is closed", severity="FATAL"
                    ).serialize()
                )
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
                self._spawn(self._open_upstream(c.database, c.upstream))
            elif isinstance(c, StartTLS):
                self._spawn(self._start_tls())
            elif isinstance(c, RegisterCancelKey):
                self.cancel_key = (c.pid, c.secret)
                self.server.cancel_keys[self.cancel_key] = (c.upstream_pid, c.upstream_secret)
            elif isinstance(c, ForwardCancel):
                self._spawn(self.server.forward_cancel(c.pid, c.secret))
            elif isinstance(c, Close):
                log.debug("session %s closing: %s", self.session.session_id, c.reason)
                self._close()

    def _spawn(self, coro: Any) -> None:
        t = self.loop.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _start_tls(self) -> None:
        assert self.client is not None and self.server.tls is not None
        try:
            new = await self.loop.start_tls(self.client, self, self.server.tls, server_side=True)
        except (OSError, ssl.SSLError, ConnectionError) as e:
            log.info("session %s: TLS handshake failed: %s", self.session.session_id, e)
            self._close()
            return
        if new is None:
            self._close()
            return
        self.client = new
        self.feed(TlsEstablished())

    async def _open_upstream(self, database: str, upstream: str) -> None:
        up = self.server.upstream
        # The schema of a database no session used yet is loaded off the loop, while we connect.
        prepare = asyncio.ensure_future(asyncio.to_thread(self.server.gate.prepare, database, upstream))
        try:
            self.upstream = await self.server.connect_upstream(lambda: _UpstreamProtocol(self))
        except (TimeoutError, OSError, ConnectionError, ssl.SSLError) as e:
            if not self.closed:
                self.feed(UpstreamFailed(f"{up.host}:{up.port}: {e}"))
            return
        if self.closed:
            self.upstream.close()
            return
        self.upstream.set_write_buffer_limits(high=256 * 1024)
        try:
            await prepare
        except Exception:  # the gate fails closed on its own; a preparation error is only logged
            log.exception("session %s: preparing database %r failed", self.session.session_id, database)
        if self.closed:
            self.upstream.close()
            return
        self.feed(UpstreamConnected())

    def upstream_lost(self) -> None:
        if not self.closed and self.upstream is not None:
            self.feed(UpstreamClosed())

    # -------------------------------------------------------------- timers and teardown

    def _auth_timeout(self) -> None:
        self.feed(AuthTimeout())

    def _reset_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = self.loop.call_later(self.server.idle_timeout or 0, self._on_idle)

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
        if self.cancel_key is not None:
            self.server.cancel_keys.pop(self.cancel_key, None)
            self.cancel_key = None
        if self in self.server.connections:
            self.server.connections.discard(self)
            self.server.gate.connection_closed("postgres")
            if self.upstream is not None:
                self.upstream.close()
            if not self.server.connections:
                self.server.drained.set()


class PgProxyServer:
    """The PostgreSQL side of maskgate: `await start()`, `await stop()`; `port` after start."""

    def __init__(
        self,
        gate: Gate,
        listen_host: str,
        listen_port: int,
        upstream_url: str,
        *,
        tls: ssl.SSLContext | dict[str, str] | None = None,
        auth_timeout: float = 30.0,
        idle_timeout: float | None = None,
        connect_timeout: float = 10.0,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        self.gate = gate
        self.listen_host = listen_host
        self.port = listen_port
        self.upstream = Upstream.from_url(upstream_url)
        self.tls = tls_context(tls)
        self.auth_timeout = auth_timeout
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.max_message = max_message
        self.connections: set[_Connection] = set()
        self.cancel_keys: dict[tuple[int, bytes], tuple[int, bytes]] = {}
        self.drained = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._upstream_ssl = self.upstream.ssl_context()

    async def start(self) -> PgProxyServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self.listen_host, self.port)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        log.info(
            "postgres listener on %s:%d -> %s:%d",
            self.listen_host,
            self.port,
            self.upstream.host,
            self.upstream.port,
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
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def connect_upstream(self, factory: Any) -> asyncio.Transport:
        """A TCP (and, per sslmode, TLS) connection to the upstream, ready for the startup packet."""
        loop = asyncio.get_running_loop()
        up = self.upstream

        async def connect() -> asyncio.Transport:
            transport, proto = await loop.create_connection(factory, up.host, up.port)
            if self._upstream_ssl is None:
                return transport
            proto.ssl_answer = loop.create_future()
            transport.write(m.SSLRequest().serialize())
            answer = await proto.ssl_answer
            if answer == b"S":
                new = await loop.start_tls(
                    transport,
                    proto,
                    self._upstream_ssl,
                    server_hostname=up.host if up.sslmode == "verify-full" else None,
                )
                assert new is not None
                return new
            if up.sslmode in ("require", "verify-ca", "verify-full"):
                transport.close()
                raise ConnectionError("upstream does not support TLS")
            return transport

        return await asyncio.wait_for(connect(), self.connect_timeout)

    async def forward_cancel(self, pid: int, secret: bytes) -> None:
        """Map a proxy-issued cancel key to the upstream backend's and cancel there."""
        target = self.cancel_keys.get((pid, secret))
        if target is None:
            return  # unknown keys are ignored silently, as PostgreSQL does
        try:
            transport = await self.connect_upstream(_UpstreamLink)
        except (TimeoutError, OSError, ConnectionError, ssl.SSLError) as e:
            log.info("cancel forward failed: %s", e)
            return
        transport.write(m.CancelRequest(target[0], target[1]).serialize())
        await asyncio.sleep(0)
        transport.close()


async def serve_postgres(
    gate: Gate,
    listen_host: str,
    listen_port: int,
    upstream_url: str,
    tls: ssl.SSLContext | dict[str, str] | None = None,
    **options: Any,
) -> PgProxyServer:
    """Start the PostgreSQL listener; `await server.stop()` to shut it down gracefully."""
    return await PgProxyServer(gate, listen_host, listen_port, upstream_url, tls=tls, **options).start()
