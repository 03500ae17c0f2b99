"""Checked state transitions for sans-IO protocol sessions, and the error an illegal one raises.

Owns the rule that a session's states are an enum and every change of state is checked against
a table, raising `ProtocolViolation` (never an `assert`, which vanishes under `-O`). Knows no
protocol: each session declares its own states and table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Generic, TypeVar

S = TypeVar("S", bound=Enum)
T = TypeVar("T")


class ProtocolViolation(Exception):
    """A peer broke the protocol; the text is for logs, the client gets a short generic error."""


class Transitions(Generic[S]):
    """The states each state may move to. `move(old, new)` returns `new` or raises."""

    __slots__ = ("_allowed",)

    def __init__(self, allowed: Mapping[S, Iterable[S]]) -> None:
        self._allowed = {state: frozenset(targets) for state, targets in allowed.items()}

    def move(self, old: S, new: S) -> S:
        if new not in self._allowed.get(old, ()):
            raise ProtocolViolation(f"illegal transition {old.name} -> {new.name}")
        return new


def required(value: T | None, what: str) -> T:
    """`value`, which the current state guarantees is there. None means the state machine is
    broken: a ProtocolViolation that closes the session, not an assert that -O would remove."""
    if value is None:
        raise ProtocolViolation(f"{what} missing")
    return value
