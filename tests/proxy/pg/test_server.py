"""The PostgreSQL listener over real sockets against upstreams that misbehave (no database
needed): one that accepts and closes, one that accepts and says nothing, and clients that
announce huge messages before they are authenticated."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable

import pytest

from proxy.pg import messages as m
from proxy.pg.auth import UpstreamAuth
from proxy.pg.server import PgProxyServer
from tests.proxy.pg.fakegate import FakeGate
from tests.proxy.pg.transcripts import decide

I32 = struct.Struct("!i")


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readexactly(5), 5)
    return head[:1], await asyncio.wait_for(reader.readexactly(I32.unpack_from(head, 1)[0] - 4), 5)


async def log_in(port: int, user: str = "alice", password: str = "pw") -> tuple[bytes, bytes, float]:
    """Log in over a raw socket; returns the first message that is not part of SCRAM (type,
    body), and how long after the proxy's final SCRAM message it came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(m.StartupMessage(m.PROTOCOL_3_0, (("user", user), ("database", "crm"))).serialize())
    auth = UpstreamAuth(user, password)
    loop = asyncio.get_running_loop()
    authenticated = loop.time()
    try:
        while True:
            t, body = await read_message(reader)
            if t != b"R":
                return t, body, loop.time() - authenticated
            req = m.parse_authentication(body)
            reply = auth.respond(req)
            if reply:
                writer.write(reply)
            authenticated = loop.time()
    finally:
        writer.close()


def serve(
    upstream: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    scenario: Callable[[PgProxyServer], Awaitable[None]],
    connect_timeout: float = 0.5,
) -> None:
    async def main() -> None:
        up = await asyncio.start_server(upstream, "127.0.0.1", 0)
        gate = FakeGate(decide)
        gate.add_user("alice", "pw")
        url = f"postgresql://svc:svcpw@127.0.0.1:{up.sockets[0].getsockname()[1]}/crm?sslmode=disable"
        server = await PgProxyServer(gate, "127.0.0.1", 0, url, connect_timeout=connect_timeout).start()
        try:
            await scenario(server)
        finally:
            await server.stop(1.0)
            up.close()

    asyncio.run(main())


def no_stack_traces(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # reads the startup packet and never answers


@pytest.mark.parametrize(
    ("upstream", "reason"),
    [
        (close_at_once, "upstream closed the connection during startup"),
        (say_nothing, "upstream did not answer within 0.5 s"),
    ],
)
def test_an_upstream_that_fails_the_login_gets_the_client_08006_with_the_reason(
    upstream: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def scenario(server: PgProxyServer) -> None:
        t, body, waited = await log_in(server.port)
        assert t == b"E"
        err = m.ErrorResponse.parse(body)
        assert (err.code, err.message) == ("08006", f"maskgate: could not connect to the database: {reason}")
        assert waited < 2.0  # within the connect timeout, not the 30 s authentication timeout

    serve(upstream, scenario)
    no_stack_traces(caplog)


def test_an_unreachable_upstream_is_named_so() -> None:
    async def scenario(server: PgProxyServer) -> None:
        server.upstream = type(server.upstream)("127.0.0.1", 1, "svc", "svcpw", "crm", "disable")
        t, body, _ = await log_in(server.port)
        err = m.ErrorResponse.parse(body)
        assert t == b"E" and err.code == "08006" and "upstream unreachable" in err.message
        assert "127.0.0.1" not in err.message  # the address is for the log

    serve(say_nothing, scenario)


@pytest.mark.parametrize("before", ["startup", "sasl_initial", "sasl_response"])
def test_a_huge_length_header_before_authentication_is_refused_at_once(before: str) -> None:
    """Ten clients announcing 60 MB SASL messages took the proxy from 91 to 696 MB: the header
    alone is refused, the connection closed, nothing of the body read or buffered."""

    async def scenario(server: PgProxyServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        huge = b"p" + I32.pack(60_000_000)
        if before == "startup":
            writer.write(I32.pack(60_000_000) + I32.pack(m.PROTOCOL_3_0))  # an untyped startup packet
        else:
            writer.write(m.StartupMessage(m.PROTOCOL_3_0, (("user", "alice"),)).serialize())
            t, _ = await read_message(reader)
            assert t == b"R"  # AuthenticationSASL
            if before == "sasl_response":
                writer.write(m.SASLInitialResponse("SCRAM-SHA-256", b"n,,n=alice,r=abcdefgh").serialize())
                t, _ = await read_message(reader)
                assert t == b"R"  # AuthenticationSASLContinue
            writer.write(huge)
        writer.write(b"x" * 65536)  # the body starts arriving: none of it is kept
        t, body = await read_message(reader)
        err = m.ErrorResponse.parse(body)
        assert t == b"E" and err.code == "08P01"
        assert "too large" in err.message or "startup packet" in err.message
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed
        await asyncio.sleep(0.05)
        assert not server.connections  # nothing held for it
        writer.close()

    serve(say_nothing, scenario)
