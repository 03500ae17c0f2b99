"""The capabilities maskgate speaks on both sides of a MySQL session."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from policies.sql.dialects import MYSQL
from proxy.mysql import packets as p
from proxy.mysql.context import SUPPORTED_CAPABILITIES, Context, ServerFacts
from tests.proxy.mysql.transcripts import FakeGate, cfg, decide


def test_ignore_space_is_neither_offered_nor_relayed() -> None:
    """A client's CLIENT_IGNORE_SPACE becomes the session's sql_mode IGNORE_SPACE on the server,
    a mode that reads SQL otherwise than maskgate's parser (a restricted session with it is
    refused at login): the proxy never offers the flag, and its upstream handshake only carries
    supported flags."""
    assert MYSQL.unsafe_setting("sql_mode", "IGNORE_SPACE,STRICT_TRANS_TABLES")
    assert not SUPPORTED_CAPABILITIES & p.CLIENT_IGNORE_SPACE
    assert not ServerFacts().capabilities & p.CLIENT_IGNORE_SPACE


_STEPS = st.one_of(
    st.tuples(st.just("send"), st.binary(max_size=20)),
    st.tuples(st.just("large"), st.just(b"")),
    st.tuples(st.just("all"), st.lists(st.binary(max_size=20), max_size=4)),
    st.tuples(st.just("number"), st.integers(0, 255)),
    st.tuples(st.just("flush"), st.just(b"")),
)


@settings(deadline=None, max_examples=60)  # large packets are 16 MiB
@given(st.lists(_STEPS, max_size=12))
def test_packets_framed_late_are_the_packets_framed_at_once(steps: list[tuple[str, object]]) -> None:
    """The client's packets are framed when the event's commands are gathered, in runs: the
    bytes are those of each packet framed as it was sent, whatever restarts the numbering."""
    ctx = Context(FakeGate(decide), cfg(), session_id="t")
    want: list[bytes] = []
    seq = 0
    large = b"L" * p.MAX_PAYLOAD

    def one(payload: bytes) -> None:
        nonlocal seq
        data, seq = p.frame(payload, seq)
        want.append(data)

    for op, arg in steps:
        if op == "send":
            ctx.send(arg)  # type: ignore[arg-type]
            one(arg)  # type: ignore[arg-type]
        elif op == "large":
            ctx.send(large)
            one(large)
        elif op == "all":
            ctx.send_all(list(arg))  # type: ignore[call-overload]
            for payload in arg:  # type: ignore[attr-defined]
                one(payload)
        elif op == "number":
            ctx.cseq = seq = arg  # type: ignore[assignment]
        else:
            ctx.flush_client()
        assert ctx.cseq == seq
    ctx.flush_client()
    assert b"".join(bytes(c) for c in ctx.out.to_client) == b"".join(want)
