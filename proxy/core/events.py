"""Events a protocol session receives: one frozen dataclass per thing that can happen to it.

Owns the vocabulary between the asyncio driver and any sans-IO session (PostgreSQL today, MySQL
next). Events are plain data, so a test can store an exchange as a list and replay it; nothing
here knows a wire format, a socket or a timer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event; `session.handle(event)` answers with a list of commands."""


@dataclass(frozen=True, slots=True)
class ClientData(Event):
    """Bytes arrived from the client."""

    data: bytes


@dataclass(frozen=True, slots=True)
class UpstreamData(Event):
    """Bytes arrived from the upstream server."""

    data: bytes


@dataclass(frozen=True, slots=True)
class UpstreamConnected(Event):
    """The connection asked for with `OpenUpstream` is open (and the database prepared)."""


@dataclass(frozen=True, slots=True)
class UpstreamFailed(Event):
    """The upstream connection could not be opened or logged in to in time.

    `reason` is what went wrong in the driver's own words ("upstream did not answer within
    10 s"), fit for the client; `detail` (address, exception text) is for logs only."""

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class UpstreamClosed(Event):
    """The upstream server closed its connection."""


@dataclass(frozen=True, slots=True)
class ClientClosed(Event):
    """The client closed its connection."""


@dataclass(frozen=True, slots=True)
class TlsEstablished(Event):
    """The client connection finished the TLS handshake asked for with `StartTLS`."""


@dataclass(frozen=True, slots=True)
class UpstreamTlsEstablished(Event):
    """The upstream connection finished the TLS handshake asked for with `StartUpstreamTLS`."""


@dataclass(frozen=True, slots=True)
class AuthTimeout(Event):
    """The time allowed for logging in ran out."""


@dataclass(frozen=True, slots=True)
class IdleTimeout(Event):
    """The session sat idle (nothing in flight) for longer than allowed."""


@dataclass(frozen=True, slots=True)
class Shutdown(Event):
    """The proxy is stopping: close now, telling the client why."""


@dataclass(frozen=True, slots=True)
class DatabaseNotReady(Event):
    """The Gate could not get ready for the session's database (its schema is not loaded yet:
    the upstream is down or slow); the session is refused with a transient error."""

    database: str


@dataclass(frozen=True, slots=True)
class DrainTimeout(Event):
    """The upstream of a draining session (see `Drain`) did not finish in time: close now."""
