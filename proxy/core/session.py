"""The phases of every protocol session, the events each phase accepts, the handlers that only close.

Owns what the PostgreSQL and MySQL sessions have in common at their outer level: logging in,
relaying, draining (the client is gone while statements still run upstream) and closed; the
checked transitions between them; and the events that end a session the same way whatever the
protocol, each closing it with the protocol's own error. Knows no wire format: a session passes
its errors and its logger in, and keeps its own `handle`, framing and layers.
"""

from __future__ import annotations

import logging
from enum import Enum, auto
from typing import Any, ClassVar, Protocol

from .events import (
    AuthTimeout,
    ClientClosed,
    ClientData,
    DatabaseNotReady,
    DrainTimeout,
    Event,
    IdleTimeout,
    Shutdown,
    UpstreamClosed,
    UpstreamData,
    UpstreamFailed,
)
from .machine import Transitions


class Phase(Enum):
    __hash__ = object.__hash__  # looked up for every event: identity hash, not Enum's name hash

    LOGIN = auto()  # the login layer has the connection
    RELAY = auto()  # logged in: the relay layer has it
    # The client is gone (closed its socket, sent Terminate, or maskgate shuts down) while
    # statements still run upstream: the relay reads how they end, for their audit records, and
    # shows no one; the session closes when nothing is in flight (or at DrainTimeout).
    DRAINING = auto()
    CLOSED = auto()


PHASES = Transitions(
    {
        Phase.LOGIN: {Phase.RELAY, Phase.CLOSED},
        Phase.RELAY: {Phase.DRAINING, Phase.CLOSED},
        Phase.DRAINING: {Phase.CLOSED},
    }
)

_ALWAYS: frozenset[type[Event]] = frozenset(
    {ClientData, UpstreamData, UpstreamFailed, UpstreamClosed, ClientClosed}
    | {AuthTimeout, IdleTimeout, Shutdown}
)


def accepts(*login_only: type[Event]) -> dict[Phase, frozenset[type[Event]]]:
    """The events each phase accepts, given those only the login takes (its own sub-states
    check them further); another event is a protocol violation."""
    return {
        Phase.LOGIN: _ALWAYS | {*login_only, DatabaseNotReady},
        Phase.RELAY: _ALWAYS,
        Phase.DRAINING: _ALWAYS | {DrainTimeout},
    }


class ClosingErrors(Protocol):
    """The error constructors of a protocol's `errors` module that the closing handlers send."""

    def auth_timeout(self) -> Any: ...
    def idle_timeout(self) -> Any: ...
    def database_not_ready(self, database: str) -> Any: ...


class ClosingHandlers:
    """The event handlers that only close the session, telling the client in its protocol's
    words (a session class sets `errors` and `log`, and has `phase`, `ctx` and `session_id`)."""

    errors: ClassVar[ClosingErrors]
    log: ClassVar[logging.Logger]
    phase: Phase
    ctx: Any  # the protocol's Context: its close(reason, error) is what is used here

    @property
    def session_id(self) -> str:
        return str(self.ctx.session_id)

    def _on_auth_timeout(self, event: AuthTimeout) -> None:
        if self.phase is Phase.LOGIN:
            self.ctx.close("authentication timeout", self.errors.auth_timeout())

    def _on_idle_timeout(self, event: IdleTimeout) -> None:
        if self.phase is not Phase.DRAINING:
            self.ctx.close("idle timeout", self.errors.idle_timeout())

    def _on_database_not_ready(self, event: DatabaseNotReady) -> None:
        # Transient: the client retries, instead of being refused real tables as unknown.
        self.log.info(
            "session %s: database %r not ready (schema not loaded)", self.session_id, event.database
        )
        self.ctx.close("database not ready", self.errors.database_not_ready(event.database))

    def _on_drain_timeout(self, event: DrainTimeout) -> None:
        self.ctx.close("drain timeout")
