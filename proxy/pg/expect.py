"""The expected-response queue of one PostgreSQL session: what went upstream, and what its answers are for.

Owns the order of the requests the upstream has not finished answering and PostgreSQL's rules
for answering them: which backend message belongs to (or finishes) which request, a
ReadyForQuery finishing everything up to the client's Sync, and the skip-until-Sync rule after
an error in the extended protocol. Each entry says separately what was sent and what to do with
its answer (forward it, hide it, or answer in the server's place), after pgdog's ProtocolState.
Knows nothing of decisions, masking or sockets: an entry carries an opaque payload for the relay.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum, auto
from typing import Generic, TypeVar

from proxy.core.machine import ProtocolViolation
from proxy.pg.messages import ErrorResponse

P = TypeVar("P")


class Sent(Enum):
    """The message that went upstream."""

    # Looked up for every backend message: hash by identity (C code) rather than by Enum's
    # own __hash__, a Python function hashing the member's name.
    __hash__ = object.__hash__

    QUERY = auto()
    FUNCTION_CALL = auto()
    PARSE = auto()
    BIND = auto()
    DESCRIBE_STATEMENT = auto()
    DESCRIBE_PORTAL = auto()
    EXECUTE = auto()
    CLOSE_STATEMENT = auto()
    CLOSE_PORTAL = auto()
    SYNC = auto()

    @property
    def extended(self) -> bool:
        """An extended-protocol message: after its error the server skips until Sync
        (`doing_extended_query_message` in PostgreSQL's postgres.c)."""
        return self not in (Sent.QUERY, Sent.FUNCTION_CALL, Sent.SYNC)


class Answer(Enum):
    """What to do with the upstream's answer."""

    FORWARD = auto()  # the client asked: the answer goes to it (masked as its decision says)
    HIDE = auto()  # the proxy asked for itself (column types before an Execute): read, never shown
    # A failing stand-in went upstream in place of a refused message (or to fail a transaction
    # block): its only answer is an error, which is not the client's. The client gets the
    # entry's `simulated` answer instead, the proxy answering in the server's place.
    SIMULATE = auto()


B = frozenset[bytes]
# The backend messages that finish a request (it leaves the queue) ...
_FINISH: dict[Sent, B] = {
    Sent.PARSE: frozenset({b"1"}),
    Sent.BIND: frozenset({b"2"}),
    Sent.CLOSE_STATEMENT: frozenset({b"3"}),
    Sent.CLOSE_PORTAL: frozenset({b"3"}),
    Sent.DESCRIBE_STATEMENT: frozenset({b"T", b"n"}),
    Sent.DESCRIBE_PORTAL: frozenset({b"T", b"n"}),
    Sent.EXECUTE: frozenset({b"C", b"s", b"I"}),
}
# ... and those that belong to it on the way. A Query, a FunctionCall and a Sync are finished
# only by ReadyForQuery; ErrorResponse, ReadyForQuery and the asynchronous messages
# (ParameterStatus, NoticeResponse, NotificationResponse) are not answers to one request.
_COPY_OUT = frozenset({b"G", b"H", b"W", b"d", b"c"})
_PART: dict[Sent, B] = {
    Sent.QUERY: frozenset({b"T", b"D", b"C", b"I"}) | _COPY_OUT,
    Sent.FUNCTION_CALL: frozenset({b"V"}),
    Sent.DESCRIBE_STATEMENT: frozenset({b"t"}),
    Sent.EXECUTE: frozenset({b"D"}) | _COPY_OUT,
}
_NONE: B = frozenset()
_ANSWERS = {s: (_FINISH.get(s, _NONE), _PART.get(s, _NONE)) for s in Sent}


@dataclass(slots=True, eq=False)
class Expected(Generic[P]):
    """One request the upstream still owes an answer to."""

    sent: Sent
    answer: Answer = Answer.FORWARD
    payload: P | None = None  # the relay's object for it (statement, portal, running query)
    name: str = ""  # the statement or portal name the message named
    simulated: ErrorResponse | None = None  # SIMULATE: what the client is told instead
    # A Query or FunctionCall the relay sent with a Sync entry of its own right behind it: when
    # the server skips the message after an extended-protocol error it skips that
    # ReadyForQuery too, so the Sync entry goes with it.
    paired: bool = False


class ExpectQueue(Generic[P]):
    """The requests in flight, oldest first."""

    __slots__ = ("_q",)

    def __init__(self) -> None:
        self._q: deque[Expected[P]] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def __bool__(self) -> bool:
        return bool(self._q)

    def __iter__(self) -> Iterator[Expected[P]]:
        return iter(self._q)

    @property
    def head(self) -> Expected[P] | None:
        return self._q[0] if self._q else None

    @property
    def synced(self) -> bool:
        """The client's Sync is queued: the upstream will answer with a ReadyForQuery."""
        return any(e.sent is Sent.SYNC for e in self._q)

    def push(self, entry: Expected[P]) -> Expected[P]:
        self._q.append(entry)
        return entry

    def push_front(self, entry: Expected[P]) -> Expected[P]:
        """A request the proxy sends ahead of everything still queued (after a ReadyForQuery)."""
        self._q.appendleft(entry)
        return entry

    def answer(self, mtype: bytes) -> tuple[Expected[P], bool]:
        """The request a backend message answers, and whether it finished it (then it left the
        queue). Not for ErrorResponse, ReadyForQuery or asynchronous messages. Raises
        ProtocolViolation for a message the request at the head cannot be answered with."""
        q = self._q
        if not q:
            raise ProtocolViolation(f"unexpected upstream message {mtype!r}")
        head = q[0]
        if head.answer is not Answer.SIMULATE:  # a stand-in is answered by an error only
            finish, part = _ANSWERS[head.sent]
            if mtype in finish:
                q.popleft()
                return head, True
            if mtype in part:
                return head, False
        raise ProtocolViolation(f"unexpected upstream message {mtype!r} for {head.sent.name}")

    def ready(self) -> tuple[list[Expected[P]], Expected[P] | None]:
        """A ReadyForQuery: everything before the first Sync was skipped by the server (it gets
        no answer now); that Sync is answered. Returns (skipped, the Sync entry); a Sync entry
        of None means no Sync was waiting, which is a protocol violation the caller raises
        after it has accounted for the skipped entries."""
        q = self._q
        skipped: list[Expected[P]] = []
        while q and q[0].sent is not Sent.SYNC:
            skipped.append(q.popleft())
        return skipped, (q.popleft() if q else None)

    def fail(self) -> tuple[Expected[P] | None, list[Expected[P]]]:
        """An ErrorResponse, answering the request at the head (None: nothing was waiting).

        Returns (that request, the requests the server now skips until the client's Sync).
        A stand-in (SIMULATE) leaves the queue; after it, or after any extended-protocol
        message, the server skips until Sync. A Query, FunctionCall or Sync that fails stays:
        its ReadyForQuery still comes.
        """
        head = self.head
        if head is None:
            return None, []
        if head.answer is Answer.SIMULATE:
            self._q.popleft()
            return head, self.skip_to_sync()
        if head.sent.extended:
            return head, self.skip_to_sync()
        return head, []

    def skip_to_sync(self) -> list[Expected[P]]:
        """The server skips everything until the client's Sync: drop those requests.

        The server skips a simple Query or FunctionCall too, ReadyForQuery included, so the
        Sync entry paired with it goes with it. The head itself may be a simple message that
        failed (nothing was skipped before it): its own ReadyForQuery still comes. When no
        Sync is queued, the caller must drop what the client sends until its Sync arrives."""
        q = self._q
        skipped: list[Expected[P]] = []
        while q and q[0].sent is not Sent.SYNC:
            e = q.popleft()
            skipped.append(e)
            if e.paired and len(skipped) > 1 and q and q[0].sent is Sent.SYNC:
                q.popleft()
        return skipped
