"""Playbooks of the composed session: phases, the events each accepts, timeouts and closing."""

from __future__ import annotations

import pytest

from proxy.core.commands import Close
from proxy.core.events import (
    AuthTimeout,
    ClientClosed,
    ClientData,
    DatabaseNotReady,
    IdleTimeout,
    Shutdown,
    TlsEstablished,
    UpstreamClosed,
    UpstreamConnected,
    UpstreamData,
    UpstreamFailed,
)
from proxy.core.playbook import Placeholder
from proxy.pg import messages as m
from proxy.pg.session import PgSession, Phase
from tests.proxy.pg.fakegate import FakeGate
from tests.proxy.pg.transcripts import (
    CFG,
    VIOLATION,
    from_client,
    from_upstream,
    login,
    playbook,
    to_client,
    to_upstream,
)


def fatal(code: str, message: str) -> m.ErrorResponse:
    return m.ErrorResponse((("S", "FATAL"), ("V", "FATAL"), ("C", code), ("M", f"maskgate: {message}")))


def violation(message: str) -> m.ErrorResponse:
    return m.ErrorResponse((("S", "FATAL"), ("V", "FATAL"), ("C", "08P01"), ("M", f"maskgate: {message}")))


def fresh() -> PgSession:
    return PgSession(FakeGate(), CFG, session_id="t")


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"Q\x00\x00\x00\x09SELECT", VIOLATION),  # missing terminator
        (b"?\x00\x00\x00\x04", VIOLATION),  # unknown type
        # The framer's refusals say what was wrong.
        (b"Q\x7f\xff\xff\xff", violation("message too large (2147483647 bytes, limit 67108864)")),
        (b"p\x00\x00\x00\x05x", VIOLATION),  # password message after login
        # A second startup packet after login: answered at once, not read as a 7 KB message.
        (
            m.StartupMessage(m.PROTOCOL_3_0, (("user", "alice"),)).serialize(),
            violation("untyped packet where a typed message belongs"),
        ),
        (m.SSLRequest().serialize(), violation("untyped packet where a typed message belongs")),
    ],
)
def test_malformed_message_closes_with_08p01(raw: bytes, error: m.ErrorResponse) -> None:
    s, _, pb = login()
    close = Placeholder(Close)
    assert pb >> ClientData(raw) << to_client(error) << close
    assert close().reason.startswith("client protocol violation: ") and s.phase is Phase.CLOSED
    # A closed session answers nothing more.
    assert pb >> from_client(m.Query("SELECT 1")) >> from_upstream(m.ReadyForQuery(b"I")) >> Shutdown()


def test_auth_timeout_only_during_login() -> None:
    s = fresh()
    assert (
        playbook(s)
        >> from_client(m.StartupMessage(m.PROTOCOL_3_0, (("user", "alice"),)))
        << to_client(m.AuthenticationSASL(("SCRAM-SHA-256",)))
        >> AuthTimeout()
        << to_client(fatal("08P01", "authentication timed out"))
        << Close("authentication timeout")
    )
    s2, _, pb = login()
    assert pb >> AuthTimeout()  # logged in: nothing happens
    assert s2.idle and s2.relaying


def test_shutdown_and_idle_timeout() -> None:
    s, _, pb = login()
    bye = fatal("57P01", "terminating connection: proxy is shutting down")
    assert pb >> Shutdown() << to_client(bye) << Close("shutdown")
    assert not s.relaying and s.phase is Phase.CLOSED
    _, _, pb2 = login()
    idle = fatal("57P05", "terminating connection due to idle timeout")
    assert pb2 >> IdleTimeout() << to_client(idle) << Close("idle timeout")


def test_idle_means_nothing_in_flight_and_no_transaction() -> None:
    s, _, pb = login()
    assert pb >> from_client(m.Query("BEGIN")) << to_upstream(m.Query("BEGIN"))
    assert not s.idle  # a statement in flight
    answer = (m.CommandComplete("BEGIN"), m.ReadyForQuery(b"T"))
    assert pb >> from_upstream(*answer) << to_client(*answer)
    assert not s.idle  # a transaction open
    assert not fresh().idle  # not logged in


@pytest.mark.parametrize(
    ("relaying", "error", "reason"),
    [
        (True, fatal("57P01", "the database closed the connection"), "upstream closed"),
        # During login the client is told why, in the proxy's words.
        (
            False,
            fatal(
                "08006", "could not connect to the database: upstream closed the connection during startup"
            ),
            "upstream failed: upstream closed the connection during startup",
        ),
    ],
)
def test_upstream_closed(relaying: bool, error: m.ErrorResponse, reason: str) -> None:
    s = login()[0] if relaying else fresh()
    assert playbook(s) >> UpstreamClosed() << to_client(error) << Close(reason)


def test_upstream_failed_and_client_closed() -> None:
    s = fresh()
    assert (
        playbook(s)
        >> UpstreamFailed("upstream unreachable: Connection refused", "127.0.0.1:5432: refused")
        << to_client(
            fatal("08006", "could not connect to the database: upstream unreachable: Connection refused")
        )
        << Close("upstream failed: upstream unreachable: Connection refused")
    )
    assert playbook(fresh()) >> ClientClosed() << Close("client closed")


def test_a_database_not_ready_is_refused_as_starting_up() -> None:
    """While its schema is not loaded, a session is told to retry (57P03), never refused a
    real table as unknown."""
    assert (
        playbook(fresh())
        >> DatabaseNotReady("crm")
        << to_client(
            fatal(
                "57P03",
                'the database system is starting up: the schema of database "crm" is not loaded yet',
            )
        )
        << Close("database not ready")
    )


@pytest.mark.parametrize("event", [UpstreamConnected(), TlsEstablished()])
def test_an_event_the_phase_does_not_accept_is_a_violation(event: object) -> None:
    _, _, pb = login()
    close = Placeholder(Close)
    assert pb >> event << to_client(VIOLATION) << close  # type: ignore[operator]
    assert close().reason == f"protocol violation: {type(event).__name__} in RELAY"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (UpstreamConnected(), "protocol violation: illegal transition STARTUP -> UPSTREAM_AUTH"),
        (TlsEstablished(), "protocol violation: illegal transition STARTUP -> STARTUP"),
        (
            UpstreamData(b"R\x00\x00\x00\x08\x00\x00\x00\x00"),
            "upstream protocol violation: upstream sent b'R' in STARTUP",
        ),
    ],
)
def test_a_login_event_out_of_turn_is_a_violation(event: object, reason: str) -> None:
    s = fresh()
    error = VIOLATION if reason.startswith("protocol") else fatal("08P01", "upstream protocol error")
    assert playbook(s) >> event << to_client(error) << Close(reason)  # type: ignore[operator]
