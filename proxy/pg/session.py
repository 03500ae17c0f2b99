"""A PostgreSQL session, sans-IO: one client and one upstream behind one `handle(event)`.

Owns the session's phase (logging in, relaying, closed), which events each phase accepts, the
framing of both directions, handing each side's messages to the layer of the current phase
(`login.py`, then `relay.py`), and turning any protocol violation into a FATAL 08P01 and a
`Close`. It never touches a socket: events go in (`proxy/core/events.py`) and commands come out
(`proxy/core/commands.py`, plus the cancel-key commands of `login.py`); the driver in
`proxy/pg/server.py` carries them out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from proxy.core.commands import Command, Drain
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
)
from proxy.core.machine import ProtocolViolation
from proxy.core.session import PHASES, ClosingHandlers, Phase, accepts
from proxy.pg import errors
from proxy.pg import messages as m
from proxy.pg.context import Context, SessionConfig
from proxy.pg.framing import MAX_PREAUTH_MESSAGE, Framer, FramingError
from proxy.pg.login import ForwardCancel, Login
from proxy.pg.relay import Relay
from proxy.services.gate import Gate

log = logging.getLogger("maskgate.pg")

Frames = Iterator[tuple[bytes, int, int]]
FrameHandler = Callable[[bytes, memoryview, Frames], None]


# The login layer checks its own sub-states: UpstreamConnected only while connecting,
# TlsEstablished only in a handshake.
_ACCEPTS = accepts(UpstreamConnected, TlsEstablished)


class PgSession(ClosingHandlers):
    """One client connection. `handle(event)` returns the commands it leads to."""

    errors = errors  # the closing handlers' words
    log = log

    def __init__(
        self,
        gate: Gate,
        config: SessionConfig,
        *,
        session_id: str = "",
        clock: Callable[[], float] = time.monotonic,
        cancel_key: tuple[int, bytes] | None = None,
    ) -> None:
        self.ctx = Context(gate, config, session_id=session_id, clock=clock)
        # Until the login is done the client gets the small pre-authentication limit; the
        # configured one (large DataRows, COPY chunks) only once it is someone.
        self._cf = Framer(startup=True, max_message=min(MAX_PREAUTH_MESSAGE, config.max_message))
        self._uf = Framer(max_message=config.max_message)
        self.login = Login(self.ctx, self._cf, cancel_key)
        self.relay: Relay | None = None
        self.phase = Phase.LOGIN
        # The layer of the current phase, bound (mitmproxy's way: a state is the bound handler).
        self._client_frames: FrameHandler = self.login.client_frames
        self._upstream_frames: FrameHandler = self._login_upstream_frames
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            ClientData: self._on_client_data,
            UpstreamData: self._on_upstream_data,
            UpstreamConnected: self._on_upstream_connected,
            UpstreamFailed: self._on_upstream_failed,
            UpstreamClosed: self._on_upstream_closed,
            ClientClosed: self._on_client_closed,
            TlsEstablished: self._on_tls_established,
            AuthTimeout: self._on_auth_timeout,
            IdleTimeout: self._on_idle_timeout,
            Shutdown: self._on_shutdown,
            DrainTimeout: self._on_drain_timeout,
            DatabaseNotReady: self._on_database_not_ready,
        }

    @property
    def relaying(self) -> bool:
        """Logged in and not closed: statements may be in flight."""
        return self.phase is Phase.RELAY

    @property
    def idle(self) -> bool:
        """Nothing in flight: a graceful shutdown or the idle timeout may close this session now."""
        return self.relay is not None and self.phase is Phase.RELAY and self.relay.idle

    def handle(self, event: Event) -> list[Command]:
        if self.phase is Phase.CLOSED:
            return []
        ctx = self.ctx
        gone = self.phase is Phase.DRAINING  # nothing more reaches the client
        try:
            if type(event) not in _ACCEPTS[self.phase]:
                raise ProtocolViolation(f"{type(event).__name__} in {self.phase.name}")
            self._handlers[type(event)](event)
        except ProtocolViolation as e:
            log.info("session %s: protocol violation: %s", ctx.session_id, e)
            ctx.close(f"protocol violation: {e}", errors.protocol_violation())
        relay = self.relay
        if self.phase is Phase.RELAY and relay is not None and relay.terminated and not ctx.out.closed:
            self._drain(cancel=False)  # Terminate after statements the server still answers
        if gone:
            ctx.out.to_client.clear()
        if self.phase is Phase.DRAINING and relay is not None and not relay.executing:
            ctx.close("drained")
        if ctx.out.closed:
            if relay is not None:
                relay.finish()  # what never ended still gets its end record
            self.phase = PHASES.move(self.phase, Phase.CLOSED)
        return ctx.out.flush()

    def _drain(self, *, cancel: bool) -> None:
        """Statements still run upstream and the client will not read their answers: keep the
        upstream until they end, so their end records say how. With `cancel`, ask the server to
        cancel what runs and terminate after it (the client did not ask for what follows)."""
        relay = self.relay
        assert relay is not None
        out = self.ctx.out
        if cancel:
            relay.cancel_sent = True
            out.command(ForwardCancel(*self.login.cancel_key))
            out.upstream(m.Terminate().serialize())
        out.command(Drain())
        self.phase = PHASES.move(self.phase, Phase.DRAINING)

    # ------------------------------------------------------------------ bytes

    def _on_client_data(self, event: ClientData) -> None:
        if self.phase is Phase.DRAINING:
            return  # after Terminate: nothing more is read from it
        try:
            buf, frames = self._cf.feed(event.data)
            self._client_frames(buf, memoryview(buf), frames)
        except FramingError as e:
            # The framer's own words (too large, untyped packet) are ours and say what was wrong.
            log.info("session %s: client protocol violation: %s", self.session_id, e)
            self.ctx.close(f"client protocol violation: {e}", errors.protocol_violation(str(e)))
        except (m.MessageError, ProtocolViolation) as e:
            log.info("session %s: client protocol violation: %s", self.session_id, e)
            self.ctx.close(f"client protocol violation: {e}", errors.protocol_violation())

    def _on_upstream_data(self, event: UpstreamData) -> None:
        try:
            buf, frames = self._uf.feed(event.data)
            self._upstream_frames(buf, memoryview(buf), frames)
        except (FramingError, m.MessageError, ProtocolViolation) as e:
            log.warning("session %s: upstream protocol violation: %s", self.session_id, e)
            self.ctx.close(
                f"upstream protocol violation: {e}", errors.protocol_violation("upstream protocol error")
            )

    def _login_upstream_frames(self, buf: bytes, mv: memoryview, frames: Frames) -> None:
        self.login.upstream_frames(buf, mv, frames)
        if self.login.done and not self.ctx.out.closed:
            # The login's last message was the upstream's ReadyForQuery: whatever came after it
            # in the same read is the relay's.
            relay = self.relay = Relay(self.ctx)
            relay.upstream_framer = self._uf
            self._uf.pause_rows = True  # only the relay resumes a paused framer
            self._cf.max_message = self.ctx.cfg.max_message
            self.phase = PHASES.move(self.phase, Phase.RELAY)
            self._client_frames = relay.client_frames
            self._upstream_frames = relay.upstream_frames
            relay.upstream_frames(buf, mv, frames)

    # ------------------------------------------------------------------ other events

    def _on_upstream_connected(self, event: UpstreamConnected) -> None:
        self.login.upstream_connected()

    def _on_tls_established(self, event: TlsEstablished) -> None:
        self.login.tls_established()

    def _on_upstream_failed(self, event: UpstreamFailed) -> None:
        if self.phase is Phase.DRAINING:
            self.ctx.close(f"upstream failed: {event.reason}")
        else:
            self.ctx.upstream_failed(event.reason, detail=event.detail, tell=True)

    def _on_upstream_closed(self, event: UpstreamClosed) -> None:
        if self.phase is Phase.DRAINING:
            self.ctx.close("upstream closed")  # the client is gone: nothing to tell it
        elif self.phase is Phase.RELAY:
            err = errors.error("57P01", "the database closed the connection", severity="FATAL")
            self.ctx.close("upstream closed", err)
        else:
            self.ctx.upstream_failed("upstream closed the connection during startup", tell=True)

    def _on_client_closed(self, event: ClientClosed) -> None:
        if self.phase is Phase.DRAINING:
            return
        if self.phase is Phase.RELAY and self.relay is not None and self.relay.executing:
            # The client closed its socket mid-statement: cancel what runs, record it cancelled.
            self._drain(cancel=True)
            return
        self.ctx.close("client closed")

    def _on_shutdown(self, event: Shutdown) -> None:
        if self.phase is Phase.DRAINING:
            return
        if self.phase is Phase.RELAY and self.relay is not None and self.relay.executing:
            # The grace period is over: the client is told, what still runs is cancelled and
            # recorded so (the database may finish it before the cancel arrives; then it says so).
            self.ctx.out.client(errors.shutting_down().serialize())
            self._drain(cancel=True)
            return
        self.ctx.close("shutdown", errors.shutting_down())
