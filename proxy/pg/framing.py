"""Incremental, sans-IO message framing for one direction of a PostgreSQL connection.

Owns splitting a byte stream into messages and nothing else: no parsing of bodies, no state
beyond the unfinished tail. Complete messages are reported as offsets into one immutable
`bytes` object so callers can pass untouched runs of messages on as a single slice, without a
copy per message.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

_I32 = struct.Struct("!i")

DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024  # generous: large DataRows and COPY chunks are legitimate
MAX_STARTUP_PACKET = 10_000  # PostgreSQL's own limit for the untyped startup packet
# Every message a client sends before it is authenticated (SASL, password, GSS) is small; a large
# length header there is an attack on memory, refused before its body is read.
MAX_PREAUTH_MESSAGE = 10_000
PAUSE_MIN = 256  # see Framer.pause_min


class FramingError(ValueError):
    """The stream is not a valid sequence of messages (bad length, oversized message)."""


class Framer:
    """Feed bytes in, iterate over complete messages.

    `startup=True` frames untyped messages (length first, no type byte) until `typed()` is
    called. `feed()` returns the buffer that the yielded (type, start, end) offsets refer to;
    `type` is the type byte as bytes (b"" for untyped), `start..end` covers the whole message
    including its header, the body starts at `start + header`.
    """

    __slots__ = ("_paused", "_pending", "_startup", "max_message", "pause_min", "pause_rows", "paused_at")

    def __init__(self, *, startup: bool = False, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self._pending = bytearray()
        self._startup = startup
        self.max_message = max_message
        # With `pause_rows`, typed framing stops after the first DataRow of a run: a consumer
        # that masks the whole run natively then resumes past it (`resume`), so a buffer of rows
        # costs one Python step, not one per row. `paused_at` is where framing stopped (-1: it
        # did not). It does not pause with fewer than `pause_min` bytes left: framing the end of
        # a point lookup's answer (CommandComplete, ReadyForQuery) costs less than a resume.
        self.pause_rows = False
        self.pause_min = PAUSE_MIN
        self._paused = b""
        self.paused_at = -1

    @property
    def header(self) -> int:
        return 4 if self._startup else 5

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held back (a TLS upgrade must find this empty)."""
        return len(self._pending)

    def typed(self) -> None:
        self._startup = False

    def feed(self, data: bytes | bytearray | memoryview) -> tuple[bytes, Iterator[tuple[bytes, int, int]]]:
        if self.paused_at >= 0:
            # The consumer of the last buffer stopped (it closed the session) while framing was
            # paused: the rest of that buffer is not this stream's any more.
            self.paused_at = -1
            self._paused = b""
        if self._pending:
            if len(self._pending) + len(data) < self._needed():
                # A large message arriving in chunks: do not copy the buffer on every chunk.
                self._pending += data
                return b"", iter(())
            # The held tail and the new read in one copy (appending the read to the tail and
            # then copying that out was two, and most reads of a stream of rows have a tail).
            buf = b"".join((self._pending, data))
            self._pending.clear()
        else:
            buf = bytes(data) if not isinstance(data, bytes) else data
        if self._startup:
            return buf, self._split(buf)
        return buf, self._split_typed(buf)

    def _needed(self) -> int:
        p = self._pending
        h = self.header
        if not self._startup and p and p[0] == 0:
            return 0  # an untyped packet where a typed message belongs: let _split raise
        if len(p) < h:
            return h
        length = _I32.unpack_from(p, 0 if self._startup else 1)[0]
        limit = MAX_STARTUP_PACKET if self._startup else self.max_message
        if length < 4 or length > limit:
            return 0  # let _split raise the framing error
        return length + (0 if self._startup else 1)

    def resume(self, pos: int) -> Iterator[tuple[bytes, int, int]]:
        """The messages of the paused buffer from `pos` on (a message boundary at or after where
        framing paused: the consumer has handled everything before it). Framing pauses again only
        at a later run of DataRows: the one at `pos`, if any, is one the consumer declined."""
        buf = self._paused
        if pos < self.paused_at:
            raise ValueError("resume before the pause")
        self.paused_at = -1
        self._paused = b""
        return self._split_typed(buf, pos, in_rows=True)

    def _split_typed(
        self, buf: bytes, pos: int = 0, in_rows: bool = False
    ) -> Iterator[tuple[bytes, int, int]]:
        """`_split` for typed framing, all at once: a generator resumed per message was a tenth
        of the session's work on a point lookup. Typed framing never turns back into startup
        framing, so nothing the consumer does while iterating changes where messages end. Its
        errors come where `_split` raises them, after the messages before the bad one; and the
        tail is kept now, not when the consumer has read every message (a consumer that stops
        early is closing the session)."""
        frames: list[tuple[bytes, int, int]] = []
        append = frames.append
        end = len(buf)
        unpack = _I32.unpack_from
        limit = self.max_message
        pause = self.pause_rows
        pause_end = end - self.pause_min
        error: FramingError | None = None
        while pos < end:
            c = buf[pos]
            if c == 0:
                error = FramingError("untyped packet where a typed message belongs")
                break
            if end - pos < 5:
                break
            length = unpack(buf, pos + 1)[0]
            if length < 4:
                error = FramingError("invalid message length")
                break
            if length > limit:
                error = FramingError(f"message too large ({length} bytes, limit {limit})")
                break
            stop = pos + 1 + length
            if stop > end:
                break
            append((buf[pos : pos + 1], pos, stop))
            pos = stop
            if c == 68:  # DataRow
                if pause and not in_rows and pos < end and pos <= pause_end:
                    self._paused = buf
                    self.paused_at = pos
                    return iter(frames)
                in_rows = True
            else:
                in_rows = False
        if error is not None:
            return _then_raise(frames, error)
        if pos < end:
            self._pending += memoryview(buf)[pos:]
        return iter(frames)

    def _split(self, buf: bytes) -> Iterator[tuple[bytes, int, int]]:
        pos = 0
        end = len(buf)
        unpack = _I32.unpack_from
        while True:
            # Re-read the mode each time: the consumer may switch to typed framing mid-buffer.
            if self._startup:
                if end - pos < 4:
                    break
                length = unpack(buf, pos)[0]
                if length < 8 or length > MAX_STARTUP_PACKET:
                    raise FramingError("invalid startup packet length")
                if end - pos < length:
                    break
                yield b"", pos, pos + length
                pos += length
            else:
                if pos < end and buf[pos] == 0:
                    # No message has type 0: it is the first byte of an untyped packet's length
                    # (a second StartupMessage or SSLRequest), whose "length" would read as
                    # kilobytes to wait for. Refused at once.
                    raise FramingError("untyped packet where a typed message belongs")
                if end - pos < 5:
                    break
                length = unpack(buf, pos + 1)[0]
                if length < 4:
                    raise FramingError("invalid message length")
                if length > self.max_message:
                    raise FramingError(f"message too large ({length} bytes, limit {self.max_message})")
                stop = pos + 1 + length
                if stop > end:
                    break
                yield buf[pos : pos + 1], pos, stop
                pos = stop
        if pos < end:
            self._pending += memoryview(buf)[pos:]


def _then_raise(
    frames: list[tuple[bytes, int, int]], error: FramingError
) -> Iterator[tuple[bytes, int, int]]:
    yield from frames
    raise error
