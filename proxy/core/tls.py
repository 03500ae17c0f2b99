"""Server-side TLS over an open client transport, driven through memory BIOs.

Owns TLS for protocols whose clients start the handshake without waiting for an answer: a MySQL
client sends its SSLRequest and its TLS ClientHello back to back, so the bytes after the request
may already have been read with it and must reach the TLS layer first. `loop.start_tls` cannot
be handed bytes that were read already; an `ssl.SSLObject` over memory BIOs can. The wrapper
looks like the transport it wraps (write, close, pause and resume reading, extra info), so the
driver carries on unchanged once the handshake is done. Knows no wire format and no session.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from typing import Any

_READ = 64 * 1024


class TlsServerTransport:
    """TLS on `raw` with `ctx`. Feed it what `raw` receives; it calls `on_handshake()` once the
    handshake is done, `on_data(plaintext)` for what the client sends after it, and
    `on_error(exc)` when the handshake or the stream fails (the caller closes)."""

    def __init__(
        self,
        raw: Any,
        ctx: ssl.SSLContext,
        *,
        on_handshake: Callable[[], None],
        on_data: Callable[[bytes], None],
        on_error: Callable[[Exception], None],
    ) -> None:
        self.raw = raw
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = ctx.wrap_bio(self._in, self._out, server_side=True)
        self._on_handshake = on_handshake
        self._on_data = on_data
        self._on_error = on_error
        self.handshaken = False
        self._closing = False

    def feed(self, data: bytes) -> None:
        """Bytes from the client: handshake records until it is done, then application data."""
        if self._closing:
            return
        self._in.write(data)
        if not self.handshaken:
            try:
                self._obj.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except (ssl.SSLError, OSError) as e:
                self._flush()
                self._on_error(e)
                return
            self.handshaken = True
            self._flush()
            self._on_handshake()
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._obj.read(_READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                break  # close_notify: the raw connection's end follows
            except (ssl.SSLError, OSError) as e:
                self._flush()
                self._on_error(e)
                return
            if not chunk:
                break
            chunks.append(chunk)
        self._flush()  # key updates and alerts the reads produced
        if chunks:
            self._on_data(b"".join(chunks))

    def _flush(self) -> None:
        out = self._out.read()
        if out and not self.raw.is_closing():
            self.raw.write(out)

    # ------------------------------------------------------------------ the transport's face

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not self.handshaken:
            return
        self._obj.write(bytes(data))
        self._flush()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self.handshaken:
            with contextlib.suppress(ssl.SSLError, OSError):
                self._obj.unwrap()  # close_notify; the client's answer is not awaited
            self._flush()
        self.raw.close()

    def is_closing(self) -> bool:
        return self._closing or bool(self.raw.is_closing())

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.raw.set_write_buffer_limits(high=high, low=low)

    def get_write_buffer_size(self) -> int:
        return int(self.raw.get_write_buffer_size())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._obj
        if name == "peercert":
            return self._obj.getpeercert()
        if name == "cipher":
            return self._obj.cipher()
        return self.raw.get_extra_info(name, default)
