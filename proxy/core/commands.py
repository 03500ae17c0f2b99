"""Commands a protocol session gives its driver, and the outbox a session gathers them in.

Owns what a sans-IO session may ask of the outside world (send bytes to either side, upgrade the
client to TLS, open the upstream connection, let the upstream drain after the client went, close)
and the order they are carried out in. A protocol may add commands of its own (PostgreSQL's
cancel keys) by subclassing `Command`.
Nothing here knows a wire format or touches a socket.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Command:
    """Base of every command."""


@dataclass(frozen=True, slots=True)
class SendClient(Command):
    data: bytes


@dataclass(frozen=True, slots=True)
class SendUpstream(Command):
    data: bytes


@dataclass(frozen=True, slots=True)
class StartTLS(Command):
    """Upgrade the client connection to TLS, then deliver `TlsEstablished`.

    `pending`: for protocols whose client starts the handshake without waiting for an answer
    (MySQL), the bytes read after the request, which are the handshake's first; the driver then
    terminates TLS itself (proxy/core/tls.py). None: the client waits for an answer first."""

    pending: bytes | None = None


@dataclass(frozen=True, slots=True)
class StartUpstreamTLS(Command):
    """Upgrade the upstream connection to TLS (a protocol that negotiates it in-band, as MySQL
    does after the server's greeting), then deliver `UpstreamTlsEstablished`; a failed
    handshake is delivered as `UpstreamFailed`."""


@dataclass(frozen=True, slots=True)
class OpenUpstream(Command):
    """Open the upstream connection for `database`; the driver prepares the gate for
    (`upstream`, `database`) meanwhile, then delivers `UpstreamConnected` or `UpstreamFailed`.
    `upstream` is the configuration's name for the server (its section in the config file)."""

    database: str
    upstream: str


@dataclass(frozen=True, slots=True)
class Drain(Command):
    """The client is gone (or done, or being shut out) while statements are still running
    upstream: close the client connection (after what was sent to it), keep the upstream open so
    the session learns how they end, and deliver `DrainTimeout` if it has not closed by then."""


@dataclass(frozen=True, slots=True)
class Close(Command):
    """Close both connections after sending what came before. `reason` is for logs."""

    reason: str


class Outbox:
    """What one event makes a session do, gathered so each side gets one write.

    Bytes for the upstream go first, then bytes for the client, then the other commands in the
    order they were given, then the `Close`: whatever a session does after closing is dropped,
    so nothing can follow the `Close` and the client's last words (a FATAL error) stay last.
    """

    __slots__ = ("_last_words", "_pending_close", "closed", "commands", "to_client", "to_upstream")

    def __init__(self) -> None:
        # Public lists: the relay hot path appends to `to_client` directly and may take back
        # what it appended (an answer it hides), where a method call per chunk would cost.
        self.to_client: list[bytes | memoryview] = []
        self.to_upstream: list[bytes | memoryview] = []
        self.commands: list[Command] = []
        self.closed = False
        self._last_words = b""
        self._pending_close: Close | None = None

    def client(self, data: bytes | memoryview) -> None:
        if not self.closed:
            self.to_client.append(data)

    def upstream(self, data: bytes | memoryview) -> None:
        if not self.closed:
            self.to_upstream.append(data)

    def command(self, cmd: Command) -> None:
        if not self.closed:
            self.commands.append(cmd)

    def close(self, reason: str, last_words: bytes = b"") -> None:
        """Close the session (the first call wins): `last_words` go to the client last."""
        if not self.closed:
            self.closed = True
            self._pending_close = Close(reason)
            self._last_words = last_words

    def flush(self) -> list[Command]:
        out: list[Command] = []
        if self.to_upstream:
            out.append(SendUpstream(b"".join(self.to_upstream)))
            self.to_upstream.clear()
        if self._last_words:
            self.to_client.append(self._last_words)
            self._last_words = b""
        if self.to_client:
            out.append(SendClient(b"".join(self.to_client)))
            self.to_client.clear()
        out.extend(self.commands)
        self.commands.clear()
        if self._pending_close is not None:
            out.append(self._pending_close)
            self._pending_close = None
        return out
