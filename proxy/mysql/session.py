"""A MySQL session, sans-IO: one client and one upstream behind one `handle(event)`.

Owns the session's phase (logging in, relaying, draining, closed), which events each phase
accepts, the packet framing of both directions, handing each side's packets to the layer of the
current phase (`login.py`, then `relay.py`), and turning any protocol violation into an error
packet and a `Close` of this connection only. It never touches a socket: the driver in
`proxy/mysql/server.py` carries its commands out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
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
    UpstreamTlsEstablished,
)
from proxy.core.machine import ProtocolViolation
from proxy.core.session import PHASES, ClosingHandlers, Phase, accepts
from proxy.mysql import auth, errors
from proxy.mysql import packets as p
from proxy.mysql.context import MAX_PREAUTH_PACKET, Context, SessionConfig
from proxy.mysql.login import Login
from proxy.mysql.relay import Relay
from proxy.services.gate import Gate

log = logging.getLogger("maskgate.mysql")

SSL_REQUEST_LENGTH = (32).to_bytes(3, "little")  # an SSLRequest's payload is 32 bytes


_ACCEPTS = accepts(UpstreamConnected, TlsEstablished, UpstreamTlsEstablished)


class MySqlSession(ClosingHandlers):
    """One client connection. `handle(event)` returns the commands it leads to; the greeting
    (the protocol's first packet is the server's) is in the first call's answer."""

    errors = errors  # the closing handlers' words
    log = log

    def __init__(
        self,
        gate: Gate,
        config: SessionConfig,
        *,
        rsa: auth.RsaKey,
        session_id: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx = Context(gate, config, session_id=session_id, clock=clock)
        self._cf = p.Framer(min(MAX_PREAUTH_PACKET, config.max_packet))
        self._uf = p.Framer(config.max_packet)
        self._pre_tls = b""  # the start of what may be an SSLRequest
        self._tls_pending = b""  # what came after the SSLRequest: the TLS handshake's first bytes
        self.login = Login(self.ctx, self._cf, rsa, self._take_tls_pending)
        self.relay: Relay | None = None
        self.phase = Phase.LOGIN
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
            UpstreamTlsEstablished: self._on_upstream_tls,
        }
        self.login.greet()

    def _take_tls_pending(self) -> bytes:
        pending, self._tls_pending = self._tls_pending, b""
        return pending

    @property
    def relaying(self) -> bool:
        return self.phase is Phase.RELAY

    @property
    def idle(self) -> bool:
        return self.relay is not None and self.phase is Phase.RELAY and self.relay.idle

    def greeting(self) -> list[Command]:
        """The commands queued before any event: maskgate's greeting."""
        self.ctx.flush_client()
        return self.ctx.out.flush()

    def handle(self, event: Event) -> list[Command]:
        if self.phase is Phase.CLOSED:
            return []
        ctx = self.ctx
        gone = self.phase is Phase.DRAINING
        try:
            if type(event) not in _ACCEPTS[self.phase]:
                raise ProtocolViolation(f"{type(event).__name__} in {self.phase.name}")
            self._handlers[type(event)](event)
        except ProtocolViolation as e:
            log.info("session %s: protocol violation: %s", ctx.session_id, e)
            ctx.close(f"protocol violation: {e}", errors.protocol_violation())
        ctx.flush_client()
        if gone:
            ctx.out.to_client.clear()
        relay = self.relay
        if self.phase is Phase.DRAINING and relay is not None and not relay.executing:
            ctx.close("drained")
        if ctx.out.closed:
            if relay is not None:
                relay.finish()
            self.phase = PHASES.move(self.phase, Phase.CLOSED)
        return ctx.out.flush()

    # ------------------------------------------------------------------ bytes

    def _on_client_data(self, event: ClientData) -> None:
        if self.phase is Phase.DRAINING:
            return
        data = event.data
        if (
            self.relay is None
            and self.login.awaits_handshake
            and not self.login.tls
            and self.ctx.cfg.tls_available
        ):
            # A client asking for TLS sends its SSLRequest and its ClientHello back to back: the
            # request is split off here, whatever follows it belongs to the TLS layer.
            data = self._pre_tls + data
            self._pre_tls = b""
            if len(data) < 4:
                self._pre_tls = data
                return
            if data[:3] == SSL_REQUEST_LENGTH:
                if len(data) < 4 + 32:
                    self._pre_tls = data
                    return
                data, rest = data[: 4 + 32], data[4 + 32 :]
                self._tls_pending = rest
        try:
            packets = self._cf.feed(data)
            for seq, payload in packets:
                if self.ctx.out.closed:
                    return
                if self.relay is not None:
                    self.relay.client_packet(seq, payload)
                else:
                    self.login.client_packet(seq, payload)
            if self._tls_pending and not self.login.awaits_tls:
                raise p.PacketError("data after a handshake packet")
        except p.PacketError as e:
            log.info("session %s: client protocol violation: %s", self.session_id, e)
            self.ctx.close(f"client protocol violation: {e}", errors.protocol_violation(str(e)))

    def _on_upstream_data(self, event: UpstreamData) -> None:
        try:
            packets = self._uf.feed(event.data)
            if self.relay is not None:
                self.relay.upstream_packets(packets)
                return
            for k, (seq, payload) in enumerate(packets):
                if self.ctx.out.closed:
                    return
                if self.relay is not None:
                    # The login ended within this read: the rest is the relay's.
                    self.relay.upstream_packets(packets[k:])
                    return
                self.login.upstream_packet(seq, payload)
                if self.login.done and not self.ctx.out.closed:
                    self.relay = Relay(self.ctx, assume_role=self.login.assumed_role)
                    self.phase = PHASES.move(self.phase, Phase.RELAY)
        except (p.PacketError, ProtocolViolation) as e:
            self._upstream_violation(e)

    def _upstream_violation(self, e: Exception) -> None:
        log.warning("session %s: upstream protocol violation: %s", self.session_id, e)
        self.ctx.close(
            f"upstream protocol violation: {e}", errors.protocol_violation("upstream protocol error")
        )

    # ------------------------------------------------------------------ other events

    def _on_upstream_connected(self, event: UpstreamConnected) -> None:
        # The server's greeting may have come early: it is read now, and may be broken.
        try:
            self.login.upstream_connected()
        except p.PacketError as e:
            self._upstream_violation(e)

    def _on_upstream_tls(self, event: UpstreamTlsEstablished) -> None:
        self.login.upstream_tls_established()

    def _on_tls_established(self, event: TlsEstablished) -> None:
        self.login.tls_established()

    def _on_upstream_failed(self, event: UpstreamFailed) -> None:
        if self.phase is Phase.DRAINING:
            self.ctx.close(f"upstream failed: {event.reason}")
        else:
            self.ctx.upstream_failed(event.reason, detail=event.detail)

    def _on_upstream_closed(self, event: UpstreamClosed) -> None:
        if self.phase is Phase.DRAINING:
            self.ctx.close("upstream closed")
        elif self.phase is Phase.RELAY:
            self.ctx.close("upstream closed", errors.upstream_failed("the database closed the connection"))
        else:
            self.ctx.upstream_failed("upstream closed the connection during startup")

    def _on_client_closed(self, event: ClientClosed) -> None:
        if self.phase is Phase.DRAINING:
            return
        if self.phase is Phase.RELAY and self.relay is not None and self.relay.executing:
            self.ctx.out.command(Drain())
            self.phase = PHASES.move(self.phase, Phase.DRAINING)
            return
        self.ctx.close("client closed")

    def _on_shutdown(self, event: Shutdown) -> None:
        if self.phase is Phase.DRAINING:
            return
        if self.phase is Phase.RELAY and self.relay is not None and self.relay.executing:
            # The grace period is over: the client is told (an error ends its result where it
            # stands), and what still runs upstream is read to its end for its audit record.
            self.ctx.send(errors.shutting_down().serialize())
            self.ctx.out.command(Drain())
            self.phase = PHASES.move(self.phase, Phase.DRAINING)
            return
        self.ctx.close("shutdown", errors.shutting_down())
