"""Playbooks: protocol tests written as transcripts of events in (`>>`) and commands out (`<<`).

Owns the test helper for any sans-IO session, after mitmproxy's: a playbook feeds each event to
`session.handle` in order and compares everything that came out with what the transcript says,
failing with a readable diff of expected against actual. It is the only part of `proxy/core` a
test imports to drive a session; it has no protocol knowledge (a `render` function may decode
wire bytes for the diff).

    assert (
        Playbook(session)
        >> ClientData(query)
        << SendUpstream(query)
        >> UpstreamData(answer)
        << SendClient(answer)
    )

A playbook may be extended and checked again: only the events added since are fed.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from proxy.core.commands import Command
from proxy.core.events import Event

T = TypeVar("T", bound=Command)


class Handles(Protocol):
    def handle(self, event: Event) -> list[Command]: ...


class Placeholder(Generic[T]):
    """A command not known in advance (one carrying a random nonce): it matches any command of
    its type and afterwards holds the one that came, `placeholder()`."""

    def __init__(self, kind: type[T]) -> None:
        self.kind = kind
        self._value: T | None = None

    def __call__(self) -> T:
        if self._value is None:
            raise LookupError(f"placeholder for {self.kind.__name__} has not matched yet")
        return self._value

    @property
    def matched(self) -> bool:
        return self._value is not None

    def match(self, actual: object) -> bool:
        if not isinstance(actual, self.kind):
            return False
        self._value = actual
        return True

    def __repr__(self) -> str:
        return f"<any {self.kind.__name__}>"


Step = Event | Command | Placeholder[Any]


class Playbook:
    """A transcript of one session: `>> event` feeds it, `<< command` says what must come out."""

    def __init__(self, session: Handles, *, render: Callable[[object], str] = repr) -> None:
        self.session = session
        self.render = render
        self.expected: list[Step] = []
        self.actual: list[Event | Command] = []
        self._fed = 0

    def __rshift__(self, event: Event) -> Playbook:
        self.expected.append(event)
        return self

    def __lshift__(self, command: Command | Placeholder[Any]) -> Playbook:
        self.expected.append(command)
        return self

    def __bool__(self) -> bool:
        for step in self.expected[self._fed :]:
            if isinstance(step, Event):
                self.actual.append(step)
                self.actual.extend(self.session.handle(step))
        self._fed = len(self.expected)
        if len(self.expected) != len(self.actual) or not all(
            _matches(want, got) for want, got in zip(self.expected, self.actual, strict=True)
        ):
            raise AssertionError(self.diff())
        return True

    def diff(self) -> str:
        """Expected against actual, one line per event or command, `-` expected and `+` actual."""
        want = [self._line(s) for s in self.expected]
        got = [self._line(s) for s in self.actual]
        lines = [d for d in difflib.ndiff(want, got) if not d.startswith("?")]
        return "playbook does not match (- expected, + actual):\n" + "\n".join(lines)

    def _line(self, step: object) -> str:
        arrow = ">>" if isinstance(step, Event) else "<<"
        if isinstance(step, Placeholder) and step.matched:
            step = step()  # shown as what it matched, so it does not read as a difference
        return f"{arrow} {self.render(step)}"


def _matches(want: Step, got: Event | Command) -> bool:
    if isinstance(want, Placeholder):
        return want.match(got)
    return type(want) is type(got) and want == got
