"""Checked transitions: an illegal one raises ProtocolViolation, never an assert."""

from __future__ import annotations

from enum import Enum, auto

import pytest

from proxy.core.machine import ProtocolViolation, Transitions, required


class Door(Enum):
    OPEN = auto()
    CLOSED = auto()
    LOCKED = auto()


DOOR = Transitions({Door.OPEN: {Door.CLOSED}, Door.CLOSED: {Door.OPEN, Door.LOCKED}})


def test_a_legal_transition_returns_the_new_state() -> None:
    assert DOOR.move(Door.OPEN, Door.CLOSED) is Door.CLOSED
    assert DOOR.move(Door.CLOSED, Door.LOCKED) is Door.LOCKED


@pytest.mark.parametrize(
    ("old", "new"), [(Door.OPEN, Door.LOCKED), (Door.OPEN, Door.OPEN), (Door.LOCKED, Door.OPEN)]
)
def test_an_illegal_transition_is_a_protocol_violation(old: Door, new: Door) -> None:
    with pytest.raises(ProtocolViolation, match=f"illegal transition {old.name} -> {new.name}"):
        DOOR.move(old, new)


def test_required_turns_a_missing_value_into_a_protocol_violation() -> None:
    assert required(0, "count") == 0
    with pytest.raises(ProtocolViolation, match="portal missing"):
        required(None, "portal")
