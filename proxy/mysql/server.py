"""The MySQL listener: the driver's MySQL parts, and the only module of proxy/mysql with sockets.

Owns what the protocol-neutral driver (`proxy/core/driver.py`) cannot know about MySQL: the
upstream URL, building a `MySqlSession` per client and sending its greeting as soon as the
client connects (in MySQL the server speaks first), the error packet a client gets when its
session fails, the connection ids of greetings, and maskgate's RSA key for
caching_sha2_password. All protocol decisions live in the session; this module only moves bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.core.driver import Connection, Listener
from proxy.mysql import auth, errors
from proxy.mysql.catalog import connect_args
from proxy.mysql.context import DEFAULT_MAX_PACKET, ServerFacts, SessionConfig
from proxy.mysql.session import MySqlSession
from proxy.services.gate import Gate

log = logging.getLogger("maskgate.mysql")


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int
    user: str
    password: str
    database: str
    # TLS as the schema loader's PyMySQL reads the same URL: any ssl_* parameter turns it on
    # (required); ssl_ca verifies the certificate, ssl_verify_identity its host name too.
    ssl_ca: str | None = None
    ssl_cert: str | None = None
    ssl_key: str | None = None
    ssl_verify_cert: bool | None = None
    ssl_verify_identity: bool = False

    @property
    def tls(self) -> bool:
        return (
            any(v is not None for v in (self.ssl_ca, self.ssl_cert, self.ssl_key, self.ssl_verify_cert))
            or self.ssl_verify_identity
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.ssl_ca)
        verify = self.ssl_verify_cert if self.ssl_verify_cert is not None else self.ssl_ca is not None
        ctx.check_hostname = verify and self.ssl_verify_identity
        ctx.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
        if self.ssl_cert:
            ctx.load_cert_chain(self.ssl_cert, self.ssl_key)
        return ctx

    @classmethod
    def from_url(cls, url: str) -> Upstream:
        args = connect_args(url)  # the loader's reading of the URL: one reading for both
        flag = args.get("ssl_verify_cert")
        if not args["user"]:
            raise ValueError("upstream URL needs a user (the service account)")
        return cls(
            host=args["host"],
            port=args["port"],
            user=args["user"],
            password=args["password"],
            database=args.get("database", ""),
            ssl_ca=args.get("ssl_ca"),
            ssl_cert=args.get("ssl_cert"),
            ssl_key=args.get("ssl_key"),
            ssl_verify_cert=flag if isinstance(flag, bool) else None,
            ssl_verify_identity=bool(args.get("ssl_verify_identity", False)),
        )


class _MySqlConnection(Connection):
    listener: MySqlProxyServer

    def make_session(self, client_addr: str) -> MySqlSession:
        srv = self.listener
        return MySqlSession(
            srv.gate,
            SessionConfig(
                upstream_user=srv.upstream.user,
                upstream_password=srv.upstream.password,
                schema_key=srv.upstream.database,
                default_database=srv.upstream.database,
                tls_available=srv.tls is not None,
                max_packet=srv.max_packet,
                client_addr=client_addr,
                database_roles=srv.database_roles,
                server=srv.server,
                connection_id=next(srv.connection_ids),
                upstream_tls=srv.upstream.tls,
            ),
            rsa=srv.rsa,
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # The server speaks first: the greeting goes out before any event.
        self.run(self.session.greeting())  # type: ignore[attr-defined]

    def internal_error(self) -> bytes:
        from proxy.mysql import packets as p

        # Numbered after the last packet the client got, so its driver reads the error.
        seq = self.session.ctx.cseq if isinstance(self.session, MySqlSession) else 1
        return p.frame(errors.internal_error().serialize(), seq)[0]


class MySqlProxyServer(Listener):
    """The MySQL side of maskgate: `await start()`, `await stop()`; `port` after start."""

    protocol = "mysql"

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
        max_packet: int = DEFAULT_MAX_PACKET,
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
        self.max_packet = max_packet
        # What the greeting tells clients of the server; updated from every upstream greeting.
        self.server = ServerFacts()
        self.connection_ids = itertools.count(1)
        self.rsa = auth.RSA_KEY
        self.upstream_tls = self.upstream.ssl_context()
        self.upstream_tls_hostname = self.upstream.host if self.upstream.ssl_verify_identity else None

    def connection(self) -> _MySqlConnection:
        return _MySqlConnection(self)

    @property
    def upstream_address(self) -> str:
        return f"{self.upstream.host}:{self.upstream.port}"

    async def start(self) -> MySqlProxyServer:
        await self._learn_server()
        await super().start()
        return self

    async def _learn_server(self) -> None:
        """Read the upstream's greeting once, so the first clients see its version and
        capabilities; a server that is down now is learnt from the first session's greeting."""
        from proxy.mysql import packets as p

        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream.host, self.upstream.port), self.connect_timeout
            )
        except (TimeoutError, OSError) as e:
            log.warning("mysql upstream %s not reachable at start: %s", self.upstream_address, e)
            return
        try:
            head = await asyncio.wait_for(reader.readexactly(4), self.connect_timeout)
            body = await asyncio.wait_for(
                reader.readexactly(int.from_bytes(head[:3], "little")), self.connect_timeout
            )
            g = p.HandshakeV10.parse(body)
            self.server.version, self.server.capabilities, self.server.charset = (
                g.server_version,
                g.capabilities,
                g.charset,
            )
        except (TimeoutError, OSError, asyncio.IncompleteReadError, p.PacketError) as e:
            log.warning("mysql upstream %s greeting not read: %s", self.upstream_address, e)
        finally:
            writer.close()

    async def connect_upstream(self, factory: Callable[[], asyncio.Protocol]) -> asyncio.Transport:
        loop = asyncio.get_running_loop()
        up = self.upstream

        async def connect() -> asyncio.Transport:
            transport, _ = await loop.create_connection(factory, up.host, up.port)
            return transport

        return await asyncio.wait_for(connect(), self.connect_timeout)


async def serve_mysql(
    gate: Gate,
    listen_host: str,
    listen_port: int,
    upstream_url: str,
    tls: ssl.SSLContext | dict[str, str] | None = None,
    **options: Any,
) -> MySqlProxyServer:
    """Start the MySQL listener; `await server.stop()` to shut it down gracefully."""
    return await MySqlProxyServer(gate, listen_host, listen_port, upstream_url, tls=tls, **options).start()
