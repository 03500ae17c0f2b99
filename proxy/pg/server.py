"""The PostgreSQL listener: the driver's PostgreSQL parts, and the only module of proxy/pg with sockets.

Owns what the protocol-neutral driver (`proxy/core/driver.py`) cannot know about PostgreSQL:
the upstream URL, the SSLRequest exchange before an upstream TLS handshake, building a
`PgSession` per client, the FATAL error a client gets when its session fails, and cancel keys
(the client's key maps to the upstream backend's; a CancelRequest is forwarded on a connection
of its own). All protocol decisions live in the session; this module only moves bytes.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from proxy.core.commands import Command
from proxy.core.driver import Connection, Listener, UpstreamProtocol
from proxy.pg import errors
from proxy.pg import messages as m
from proxy.pg.context import SessionConfig
from proxy.pg.framing import DEFAULT_MAX_MESSAGE
from proxy.pg.login import ForwardCancel, RegisterCancelKey
from proxy.pg.session import PgSession
from proxy.services.gate import Gate

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


class _SslAnswer(asyncio.Protocol):
    """An upstream connection that may first have to read the one-byte SSLRequest reply."""

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


class _PgUpstream(_SslAnswer, UpstreamProtocol):
    def __init__(self, conn: Connection) -> None:
        _SslAnswer.__init__(self)
        UpstreamProtocol.__init__(self, conn)

    def data_received(self, data: bytes) -> None:
        if not self._ssl_reply(data):
            UpstreamProtocol.data_received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        _SslAnswer.connection_lost(self, exc)
        UpstreamProtocol.connection_lost(self, exc)


class _PgConnection(Connection):
    listener: PgProxyServer

    def __init__(self, listener: PgProxyServer) -> None:
        super().__init__(listener)
        self.cancel_key: tuple[int, bytes] | None = None

    def make_session(self, client_addr: str) -> PgSession:
        srv = self.listener
        return PgSession(
            srv.gate,
            SessionConfig(
                upstream_user=srv.upstream.user,
                upstream_password=srv.upstream.password,
                default_database=srv.upstream.database,
                tls_available=srv.tls is not None,
                max_message=srv.max_message,
                client_addr=client_addr,
                database_roles=srv.database_roles,
            ),
        )

    def internal_error(self) -> bytes:
        return errors.error("XX000", "internal error; the connection is closed", severity="FATAL").serialize()

    def upstream_protocol(self) -> _PgUpstream:
        return _PgUpstream(self)

    def run_other(self, cmd: Command) -> None:
        if isinstance(cmd, RegisterCancelKey):
            self.cancel_key = (cmd.pid, cmd.secret)
            self.listener.cancel_keys[self.cancel_key] = (cmd.upstream_pid, cmd.upstream_secret)
        elif isinstance(cmd, ForwardCancel):
            self.spawn(self.listener.forward_cancel(cmd.pid, cmd.secret))
        else:
            super().run_other(cmd)

    def on_teardown(self) -> None:
        if self.cancel_key is not None:
            self.listener.cancel_keys.pop(self.cancel_key, None)
            self.cancel_key = None


class PgProxyServer(Listener):
    """The PostgreSQL side of maskgate: `await start()`, `await stop()`; `port` after start."""

    protocol = "postgres"

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
        database_roles: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            gate,
            listen_host,
            listen_port,
            tls=tls,
            auth_timeout=auth_timeout,
            idle_timeout=idle_timeout,
            connect_timeout=connect_timeout,
            database_roles=database_roles,
        )
        self.upstream = Upstream.from_url(upstream_url)
        self.max_message = max_message
        self.cancel_keys: dict[tuple[int, bytes], tuple[int, bytes]] = {}
        self._upstream_ssl = self.upstream.ssl_context()

    def connection(self) -> _PgConnection:
        return _PgConnection(self)

    @property
    def upstream_address(self) -> str:
        return f"{self.upstream.host}:{self.upstream.port}"

    async def connect_upstream(self, factory: Callable[[], asyncio.Protocol]) -> asyncio.Transport:
        """A TCP (and, per sslmode, TLS) connection to the upstream, ready for the startup packet."""
        loop = asyncio.get_running_loop()
        up = self.upstream

        async def connect() -> asyncio.Transport:
            transport, proto = await loop.create_connection(factory, up.host, up.port)
            if self._upstream_ssl is None:
                return transport
            if not isinstance(proto, _SslAnswer):
                raise ConnectionError("upstream protocol cannot negotiate TLS")
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
                if new is None:
                    raise ConnectionError("upstream TLS handshake did not complete")
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
            transport = await self.connect_upstream(_SslAnswer)
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
