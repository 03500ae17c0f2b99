"""Framer: messages split at every byte boundary come out whole; bad lengths are errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.pg import messages as m
from proxy.pg.framing import Framer, FramingError

STREAM = b"".join(
    x.serialize()
    for x in (
        m.Query("SELECT 1"),
        m.Parse("a", "SELECT 2"),
        m.Sync(),
        m.DataRow((b"x" * 300, None)),
        m.Terminate(),
    )
)


def _collect(framer: Framer, chunks: list[bytes]) -> list[bytes]:
    out = []
    for c in chunks:
        buf, it = framer.feed(c)
        out.extend(buf[s:e] for _, s, e in it)
    return out


def test_whole_stream() -> None:
    msgs = _collect(Framer(), [STREAM])
    assert b"".join(msgs) == STREAM and len(msgs) == 5


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_split_at_every_byte(cut: int) -> None:
    msgs = _collect(Framer(), [STREAM[:cut], STREAM[cut:]])
    assert b"".join(msgs) == STREAM and len(msgs) == 5


def test_byte_by_byte() -> None:
    f = Framer()
    msgs = _collect(f, [bytes([b]) for b in STREAM])
    assert b"".join(msgs) == STREAM and f.buffered == 0


def test_startup_then_typed() -> None:
    startup = m.StartupMessage(m.PROTOCOL_3_0, (("user", "u"),)).serialize()
    f = Framer(startup=True)
    buf, it = f.feed(startup + m.Query("x").serialize())
    mtype, s, e = next(it)
    assert mtype == b"" and buf[s:e] == startup
    f.typed()
    mtype, s, e = next(it)
    assert mtype == b"Q"


def test_oversized_message() -> None:
    f = Framer(max_message=1000)
    with pytest.raises(FramingError):
        _collect(f, [b"Q" + (2000).to_bytes(4, "big")])


def test_oversized_message_after_partial_header() -> None:
    f = Framer(max_message=1000)
    with pytest.raises(FramingError):
        _collect(f, [b"Q\x00", b"\x00\x10\x00" + b"x" * 10])


@pytest.mark.parametrize("length", [0, 3, -1])
def test_bad_length(length: int) -> None:
    with pytest.raises(FramingError):
        _collect(Framer(), [b"Q" + length.to_bytes(4, "big", signed=True)])


def test_bad_startup_length() -> None:
    with pytest.raises(FramingError):
        _collect(Framer(startup=True), [(100_000).to_bytes(4, "big")])


def test_large_message_in_chunks() -> None:
    big = m.CopyData(b"z" * 200_000).serialize()
    f = Framer()
    chunks = [big[i : i + 1000] for i in range(0, len(big), 1000)]
    assert _collect(f, chunks) == [big]


def test_an_oversized_message_is_refused_from_its_header_alone() -> None:
    """Only the 5-byte header is needed to refuse: nothing of the body is buffered."""
    f = Framer(max_message=10_000)
    with pytest.raises(FramingError, match="too large"):
        _collect(f, [b"p", b"\x03\x93\x87\x00"])  # 60 MB announced, header sent in two parts
    f = Framer(max_message=10_000)
    with pytest.raises(FramingError, match="too large"):
        _collect(f, [b"p\x03\x93\x87\x00" + b"x" * 100])
    assert f.buffered == 0


def test_a_zero_type_byte_is_an_untyped_packet_refused_at_once() -> None:
    """After login a StartupMessage or SSLRequest would read as type 0 and a length of kilobytes;
    the first byte is enough to refuse it."""
    f = Framer()
    with pytest.raises(FramingError, match="untyped packet"):
        _collect(f, [b"\x00"])
    f = Framer()
    startup = m.StartupMessage(m.PROTOCOL_3_0, (("user", "a"),)).serialize()
    with pytest.raises(FramingError, match="untyped packet"):
        _collect(f, [m.Sync().serialize() + startup])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=12), max_size=6), st.integers(4, 40))
def test_typed_split_all_at_once_is_the_generator(chunks: list[bytes], limit: int) -> None:
    """Typed framing splits a buffer at once (`_split_typed`); the generator (`_split`) is the
    reference: the same messages, then the same error, and the same tail kept."""
    stream = b"".join(chunks)
    for buf in (stream, STREAM + stream, STREAM[:-3]):
        got, want = Framer(max_message=limit), Framer(max_message=limit)
        out_got: list[object] = []
        out_want: list[object] = []
        for out, split in ((out_got, got._split_typed), (out_want, want._split)):
            try:
                out.extend(split(buf))
            except FramingError as e:
                out.append(str(e))
        assert out_got == out_want
        if not out_got or not isinstance(out_got[-1], str):
            assert bytes(got._pending) == bytes(want._pending)
