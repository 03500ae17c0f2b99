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


def _paused_collect(framer: Framer, buf: bytes, skip_rows: bool) -> list[object]:
    """Frames of `buf` from a framer with `pause_rows`, resumed where it paused, or (`skip_rows`)
    past the run of DataRows it paused in, as the relay does after a native walk."""
    out: list[object] = []
    frames = framer._split_typed(buf)
    try:
        while True:
            out.extend(frames)
            if framer.paused_at < 0:
                return out
            pos = framer.paused_at
            if skip_rows:
                while pos + 5 <= len(buf) and buf[pos] == 68:
                    stop = pos + 1 + int.from_bytes(buf[pos + 1 : pos + 5], "big", signed=True)
                    if stop > len(buf) or stop <= pos + 4:
                        break
                    pos = stop
            frames = framer.resume(pos)
    except FramingError as e:
        out.append(str(e))
    return out


ROWS = [m.DataRow((b"r%d" % i, None)).serialize() for i in range(3)]
PIECES = [*ROWS, m.CommandComplete("SELECT 3").serialize(), m.ReadyForQuery(b"I").serialize()]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12), st.binary(max_size=8), st.integers(4, 40))
def test_a_paused_framer_resumed_where_it_paused_gives_the_same_frames(
    pieces: list[bytes], tail: bytes, limit: int
) -> None:
    """`pause_rows` only cuts the frame list after the first DataRow of a run: resumed where it
    paused, the same messages, error and kept tail as without it; resumed past the run, the
    same minus the rest of that run (the rows a native walk consumed)."""
    buf = b"".join(pieces) + tail
    plain = Framer(max_message=limit)
    want: list[object] = []
    try:
        want.extend(plain._split_typed(buf))
    except FramingError as e:
        want.append(str(e))
    paused = Framer(max_message=limit)
    paused.pause_rows = True
    paused.pause_min = 0
    assert _paused_collect(paused, buf, skip_rows=False) == want
    assert bytes(paused._pending) == bytes(plain._pending)
    skipping = Framer(max_message=limit)
    skipping.pause_rows = True
    skipping.pause_min = 0
    got = _paused_collect(skipping, buf, skip_rows=True)
    assert set(map(str, got)) <= set(map(str, want))
    assert [f for f in got if not isinstance(f, tuple) or f[0] != b"D"] == [
        f for f in want if not isinstance(f, tuple) or f[0] != b"D"
    ]
    assert bytes(skipping._pending) == bytes(plain._pending)


def test_a_pause_the_consumer_left_is_forgotten_at_the_next_buffer() -> None:
    """A consumer that closed mid-buffer leaves framing paused; the next feed starts afresh."""
    f = Framer()
    f.pause_rows, f.pause_min = True, 0
    _, frames = f.feed(ROWS[0] + ROWS[1])
    assert [t for t, _, _ in frames] == [b"D"] and f.paused_at == len(ROWS[0])
    _, frames = f.feed(PIECES[3])
    assert f.paused_at == -1 and [t for t, _, _ in frames] == [b"C"]
