"""Table tests of the expected-response queue, driven with plain message codes (as pgdog does).

Entries are written as short codes: `Q` Query, `F` FunctionCall, `P` Parse, `B` Bind, `Ds`/`Dp`
Describe of a statement/portal, `E` Execute, `Cs`/`Cp` Close, `S` Sync. A suffix `+` marks a
simple message paired with its own Sync, `!` a hidden answer (HIDE), `~` a failing stand-in
(SIMULATE).
"""

from __future__ import annotations

import pytest

from proxy.core.machine import ProtocolViolation
from proxy.pg import errors
from proxy.pg.expect import Answer, Expected, ExpectQueue, Sent

CODES = {
    "Q": Sent.QUERY,
    "F": Sent.FUNCTION_CALL,
    "P": Sent.PARSE,
    "B": Sent.BIND,
    "Ds": Sent.DESCRIBE_STATEMENT,
    "Dp": Sent.DESCRIBE_PORTAL,
    "E": Sent.EXECUTE,
    "Cs": Sent.CLOSE_STATEMENT,
    "Cp": Sent.CLOSE_PORTAL,
    "S": Sent.SYNC,
}
REFUSAL = errors.insufficient_privilege("refused")


def entry(code: str, payload: str = "") -> Expected[str]:
    paired = "+" in code
    answer = Answer.HIDE if "!" in code else Answer.SIMULATE if "~" in code else Answer.FORWARD
    sent = CODES[code.rstrip("+!~")]
    return Expected(
        sent,
        answer,
        payload=payload or code,
        paired=paired,
        simulated=REFUSAL if answer is Answer.SIMULATE else None,
    )


def queue(codes: str) -> ExpectQueue[str]:
    q: ExpectQueue[str] = ExpectQueue()
    for i, code in enumerate(codes.split()):
        q.push(entry(code, f"{code}#{i}"))
    return q


def names(entries: object) -> list[str]:
    return [e.payload for e in entries]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- answer()

FINISHES, BELONGS, VIOLATES = "finishes", "belongs", "violation"


@pytest.mark.parametrize(
    ("head", "message", "outcome"),
    [
        ("P", b"1", FINISHES),
        ("P", b"2", VIOLATES),
        ("B", b"2", FINISHES),
        ("B", b"1", VIOLATES),
        ("Cs", b"3", FINISHES),
        ("Cp", b"3", FINISHES),
        ("Ds", b"t", BELONGS),  # ParameterDescription comes first
        ("Ds", b"T", FINISHES),
        ("Ds", b"n", FINISHES),
        ("Dp", b"t", VIOLATES),  # a portal has no parameters to describe
        ("Dp", b"T", FINISHES),
        ("Dp!", b"n", FINISHES),
        ("E", b"D", BELONGS),
        ("E", b"H", BELONGS),
        ("E", b"d", BELONGS),
        ("E", b"C", FINISHES),
        ("E", b"s", FINISHES),  # PortalSuspended: the row count was reached
        ("E", b"I", FINISHES),
        ("E", b"T", VIOLATES),
        ("Q+", b"T", BELONGS),
        ("Q+", b"C", BELONGS),  # a Query ends at its ReadyForQuery, not at a CommandComplete
        ("Q+", b"I", BELONGS),
        ("Q+", b"G", BELONGS),
        ("Q+", b"1", VIOLATES),
        ("F+", b"V", BELONGS),
        ("F+", b"T", VIOLATES),
        ("S", b"C", VIOLATES),
        ("Q~", b"T", VIOLATES),  # a stand-in is answered by an error, nothing else
        ("Ds~", b"t", VIOLATES),
        ("Q~", b"C", VIOLATES),
    ],
)
def test_what_answers_the_head(head: str, message: bytes, outcome: str) -> None:
    q = queue(f"{head} S")
    if outcome == VIOLATES:
        with pytest.raises(ProtocolViolation):
            q.answer(message)
        return
    e, finished = q.answer(message)
    assert e.payload == f"{head}#0"
    assert finished is (outcome == FINISHES)
    assert len(q) == (1 if finished else 2)


def test_nothing_expected_is_a_violation() -> None:
    with pytest.raises(ProtocolViolation):
        queue("").answer(b"1")


@pytest.mark.parametrize(
    ("sent", "answers", "trace"),
    [
        # A pipelined extended batch, answered in order.
        ("P B Dp E S", b"12TDDC", "P#0 B#1 Dp#2 E#3- E#3- E#3"),
        # A hidden Describe is answered like any other; what to show is the relay's business.
        ("P B Dp! E S", b"12TDC", "P#0 B#1 Dp!#2 E#3- E#3"),
        ("Ds S", b"tT", "Ds#0- Ds#0"),
        ("Q+ S Q+ S", b"TDC", "Q+#0- Q+#0- Q+#0-"),
    ],
)
def test_a_batch_answered_in_order(sent: str, answers: bytes, trace: str) -> None:
    q = queue(sent)
    got = []
    for code in answers:
        e, finished = q.answer(bytes([code]))
        got.append(e.payload + ("" if finished else "-"))
    assert " ".join(got) == trace


# --------------------------------------------------------------------------- ready()


@pytest.mark.parametrize(
    ("sent", "skipped", "left"),
    [
        ("S", [], []),
        ("Q+ S", ["Q+#0"], []),  # a Query ends at its ReadyForQuery
        ("Q+ S Q+ S", ["Q+#0"], ["Q+#2", "S#3"]),
        ("P B E S", ["P#0", "B#1", "E#2"], []),  # the server skipped them (after an error)
        ("S P S", [], ["P#1", "S#2"]),
    ],
)
def test_ready_for_query_finishes_everything_up_to_the_sync(
    sent: str, skipped: list[str], left: list[str]
) -> None:
    q = queue(sent)
    gone, sync = q.ready()
    assert names(gone) == skipped
    assert sync is not None and sync.sent is Sent.SYNC
    assert names(q) == left


def test_ready_for_query_without_a_sync_returns_the_skipped_and_no_sync() -> None:
    q = queue("P B")
    gone, sync = q.ready()
    assert names(gone) == ["P#0", "B#1"] and sync is None and not q


# --------------------------------------------------------------------------- fail()


@pytest.mark.parametrize(
    ("sent", "head", "skipped", "left"),
    [
        ("", None, [], []),
        # Simple messages fail alone: their own ReadyForQuery still comes.
        ("Q+ S", "Q+#0", [], ["Q+#0", "S#1"]),
        ("F+ S", "F+#0", [], ["F+#0", "S#1"]),
        ("S", "S#0", [], ["S#0"]),
        # An extended message fails and the server skips until the client's Sync.
        ("P B E S", "P#0", ["P#0", "B#1", "E#2"], ["S#3"]),
        ("E S P S", "E#0", ["E#0"], ["S#1", "P#2", "S#3"]),
        ("Dp! E S", "Dp!#0", ["Dp!#0", "E#1"], ["S#2"]),
        # ... skipping a pipelined Query with it, and that Query's own ReadyForQuery.
        ("P Q+ S S", "P#0", ["P#0", "Q+#1"], ["S#3"]),
        ("P Q+ S E S", "P#0", ["P#0", "Q+#1", "E#3"], ["S#4"]),
        # No Sync yet: everything goes; the relay drops the client's messages until it comes.
        ("P B", "P#0", ["P#0", "B#1"], []),
        # A stand-in's error is expected: it leaves; after it the server skips until Sync.
        ("Q~+ S", "Q~+#0", [], ["S#1"]),
        ("Ds~ S", "Ds~#0", [], ["S#1"]),
        ("P Ds~ S", "P#0", ["P#0", "Ds~#1"], ["S#2"]),
        ("Ds~", "Ds~#0", [], []),
    ],
)
def test_an_error_and_the_skip_until_sync_rule(
    sent: str, head: str | None, skipped: list[str], left: list[str]
) -> None:
    q = queue(sent)
    failed, gone = q.fail()
    assert (failed.payload if failed else None) == head
    assert names(gone) == skipped
    assert names(q) == left
    assert q.synced is ("S#" in " ".join(left))


def test_skip_to_sync_keeps_the_failed_simple_heads_own_sync() -> None:
    # The head is a Query the relay already treats as failed (a refused extended batch): its
    # ReadyForQuery still comes, so its Sync stays; a later skipped Query takes its Sync along.
    q = queue("Q+ S")
    assert names(q.skip_to_sync()) == ["Q+#0"] and names(q) == ["S#1"]


def test_push_front_goes_ahead_of_everything() -> None:
    q = queue("P S")
    q.push_front(Expected(Sent.SYNC, payload="abort-sync"))
    q.push_front(Expected(Sent.QUERY, Answer.SIMULATE, payload="abort"))
    assert names(q) == ["abort", "abort-sync", "P#0", "S#1"]
    failed, gone = q.fail()
    assert failed is not None and failed.payload == "abort" and gone == []
    assert q.head is not None and q.head.payload == "abort-sync"


def test_extended_messages_are_the_ones_postgres_skips_after() -> None:
    assert {s for s in Sent if s.extended} == set(Sent) - {Sent.QUERY, Sent.FUNCTION_CALL, Sent.SYNC}
