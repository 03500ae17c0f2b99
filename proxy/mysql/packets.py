"""MySQL/MariaDB wire packets: framing, the lenenc codecs and one frozen dataclass per payload.

Owns the byte layout of every packet the proxy reads or writes and nothing else: no state, no
I/O, no policy. `parse(payload, ...)` takes a logical packet's payload (after the 4-byte header,
continuation chunks already joined by `Framer`); `serialize(...)` returns the payload again,
byte for byte. Anything malformed raises `PacketError` and nothing else, so a session can treat
every parse failure as one protocol violation and fail closed. Strings the proxy needs as text
(user names, plugin names, error messages) are decoded as UTF-8 with `surrogateescape`, so any
byte sequence round-trips unchanged; SQL, identifiers and values stay bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Self

Buffer = bytes | bytearray | memoryview


class PacketError(Exception):
    """A packet or the stream does not match its layout (truncated, bad lenenc, trailing bytes)."""


MAX_PAYLOAD = 0xFFFFFF  # a physical chunk's largest payload; longer packets continue in the next chunk

# ------------------------------------------------------------------ capability flags
CLIENT_LONG_PASSWORD = 1  # MariaDB calls bit 0 CLIENT_MYSQL: clear = extended capabilities present
CLIENT_FOUND_ROWS = 2
CLIENT_LONG_FLAG = 4
CLIENT_CONNECT_WITH_DB = 8
CLIENT_NO_SCHEMA = 16
CLIENT_COMPRESS = 32
CLIENT_ODBC = 64
CLIENT_LOCAL_FILES = 128
CLIENT_IGNORE_SPACE = 256
CLIENT_PROTOCOL_41 = 512
CLIENT_INTERACTIVE = 1024
CLIENT_SSL = 2048
CLIENT_IGNORE_SIGPIPE = 4096
CLIENT_TRANSACTIONS = 8192
CLIENT_RESERVED = 16384
CLIENT_SECURE_CONNECTION = 32768
CLIENT_MULTI_STATEMENTS = 1 << 16
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PS_MULTI_RESULTS = 1 << 18
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_CONNECT_ATTRS = 1 << 20
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21
CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS = 1 << 22
CLIENT_SESSION_TRACK = 1 << 23
CLIENT_DEPRECATE_EOF = 1 << 24
CLIENT_OPTIONAL_RESULTSET_METADATA = 1 << 25
CLIENT_QUERY_ATTRIBUTES = 1 << 27
CLIENT_SSL_VERIFY_SERVER_CERT = 1 << 30
CLIENT_REMEMBER_OPTIONS = 1 << 31
# MariaDB's extended capabilities: the high 32 bits, sent in otherwise reserved bytes.
MARIADB_CLIENT_PROGRESS = 1 << 32
MARIADB_CLIENT_COM_MULTI = 1 << 33
MARIADB_CLIENT_STMT_BULK_OPERATIONS = 1 << 34
MARIADB_CLIENT_EXTENDED_METADATA = 1 << 35
MARIADB_CLIENT_CACHE_METADATA = 1 << 36

# ------------------------------------------------------------------ server status flags
SERVER_STATUS_IN_TRANS = 1
SERVER_STATUS_AUTOCOMMIT = 2
SERVER_MORE_RESULTS_EXISTS = 8
SERVER_STATUS_NO_GOOD_INDEX_USED = 16
SERVER_STATUS_NO_INDEX_USED = 32
SERVER_STATUS_CURSOR_EXISTS = 64
SERVER_STATUS_LAST_ROW_SENT = 128
SERVER_STATUS_DB_DROPPED = 256
SERVER_STATUS_NO_BACKSLASH_ESCAPES = 512
SERVER_STATUS_METADATA_CHANGED = 1024
SERVER_QUERY_WAS_SLOW = 2048
SERVER_PS_OUT_PARAMS = 4096
SERVER_STATUS_IN_TRANS_READONLY = 8192
SERVER_SESSION_STATE_CHANGED = 16384

# ------------------------------------------------------------------ commands
COM_SLEEP = 0
COM_QUIT = 1
COM_INIT_DB = 2
COM_QUERY = 3
COM_FIELD_LIST = 4
COM_CREATE_DB = 5
COM_DROP_DB = 6
COM_REFRESH = 7
COM_SHUTDOWN = 8
COM_STATISTICS = 9
COM_PROCESS_INFO = 10
COM_CONNECT = 11
COM_PROCESS_KILL = 12
COM_DEBUG = 13
COM_PING = 14
COM_TIME = 15
COM_DELAYED_INSERT = 16
COM_CHANGE_USER = 17
COM_BINLOG_DUMP = 18
COM_TABLE_DUMP = 19
COM_CONNECT_OUT = 20
COM_REGISTER_SLAVE = 21
COM_STMT_PREPARE = 22
COM_STMT_EXECUTE = 23
COM_STMT_SEND_LONG_DATA = 24
COM_STMT_CLOSE = 25
COM_STMT_RESET = 26
COM_SET_OPTION = 27
COM_STMT_FETCH = 28
COM_DAEMON = 29
COM_BINLOG_DUMP_GTID = 30
COM_RESET_CONNECTION = 31
COM_STMT_BULK_EXECUTE = 250  # MariaDB

CURSOR_TYPE_NO_CURSOR = 0
CURSOR_TYPE_READ_ONLY = 1
CURSOR_TYPE_FOR_UPDATE = 2
CURSOR_TYPE_SCROLLABLE = 4

MYSQL_OPTION_MULTI_STATEMENTS_ON = 0
MYSQL_OPTION_MULTI_STATEMENTS_OFF = 1

# Packet header bytes.
OK_HEADER = 0x00
EOF_HEADER = 0xFE
ERR_HEADER = 0xFF
LOCAL_INFILE_HEADER = 0xFB
AUTH_MORE_DATA_HEADER = 0x01
AUTH_SWITCH_HEADER = 0xFE
NULL_VALUE = 0xFB  # lenenc NULL in rows

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_GREETING_MID = struct.Struct("<8sBHBHHB")  # scramble 1, filler, caps lo, charset, status, caps hi, len
_LOGIN_HEAD = struct.Struct("<IIB")  # capabilities, max packet, charset (then 23 filler bytes)
_EXEC_HEAD = struct.Struct("<BIBI")  # command, statement id, flags, iterations
_PREPARE_OK = struct.Struct("<BIHHBH")
_EOF = struct.Struct("<BHH")
_U16X2 = struct.Struct("<HH")
_COLDEF_FIXED = struct.Struct("<BHIBHBH")  # 0x0C, charset, length, type, flags, decimals, filler


def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _buf(payload: Buffer) -> bytes:
    # One bytes object up front: C-level find/unpack_from then work in place.
    return payload if isinstance(payload, bytes) else bytes(payload)


# ------------------------------------------------------------------ lenenc and NUL strings


def read_lenenc_int(buf: Buffer, pos: int) -> tuple[int | None, int]:
    """A length-encoded integer at `pos`: (value, new pos); value None for 0xFB (NULL)."""
    try:
        first = buf[pos]
        if first < 0xFB:
            return first, pos + 1
        if first == 0xFC:
            end = pos + 3
            if end > len(buf):
                raise PacketError("truncated length-encoded integer")
            return buf[pos + 1] | buf[pos + 2] << 8, end
        if first == 0xFD:
            end = pos + 4
            if end > len(buf):
                raise PacketError("truncated length-encoded integer")
            return buf[pos + 1] | buf[pos + 2] << 8 | buf[pos + 3] << 16, end
        if first == 0xFE:
            end = pos + 9
            if end > len(buf):
                raise PacketError("truncated length-encoded integer")
            return _U64.unpack_from(buf, pos + 1)[0], end
        if first == 0xFB:
            return None, pos + 1
    except IndexError:
        raise PacketError("truncated length-encoded integer") from None
    raise PacketError("0xFF is no length-encoded integer")


def lenenc_int(n: int) -> bytes:
    if n < 0:
        raise PacketError("a length-encoded integer cannot be negative")
    if n < 0xFB:
        return bytes((n,))
    if n < 1 << 16:
        return b"\xfc" + _U16.pack(n)
    if n < 1 << 24:
        return b"\xfd" + _U32.pack(n)[:3]
    if n < 1 << 64:
        return b"\xfe" + _U64.pack(n)
    raise PacketError("integer too large for a length-encoded integer")


def read_lenenc_bytes(buf: Buffer, pos: int) -> tuple[bytes | None, int]:
    """A length-encoded string at `pos`: (bytes, new pos); None for 0xFB (NULL)."""
    n, pos = read_lenenc_int(buf, pos)
    if n is None:
        return None, pos
    end = pos + n
    if end > len(buf):
        raise PacketError("truncated length-encoded string")
    return bytes(buf[pos:end]), end


def lenenc_bytes(b: bytes) -> bytes:
    return lenenc_int(len(b)) + b


def _read_lenenc_str(buf: bytes, pos: int) -> tuple[bytes, int]:
    # Where the layout has a string, NULL is malformed.
    v, pos = read_lenenc_bytes(buf, pos)
    if v is None:
        raise PacketError("NULL where a string belongs")
    return v, pos


def read_nul(buf: Buffer, pos: int) -> tuple[bytes, int]:
    """A NUL-terminated string at `pos`: (bytes without the NUL, pos after the NUL)."""
    b = _buf(buf)
    end = b.find(b"\x00", pos)
    if end < 0 or pos > len(b):
        raise PacketError("unterminated string")
    return b[pos:end], end + 1


def _unpack(st: struct.Struct, buf: bytes, pos: int) -> tuple[int, ...]:
    if pos < 0 or pos + st.size > len(buf):
        raise PacketError("truncated packet")
    return st.unpack_from(buf, pos)


def _expect_end(buf: bytes, pos: int) -> None:
    if pos != len(buf):
        raise PacketError("trailing bytes after the packet's last field")


def _header(buf: bytes, header: int, name: str) -> None:
    if not buf or buf[0] != header:
        raise PacketError(f"not a {name} packet")


def _read_attrs(buf: bytes, pos: int) -> tuple[tuple[tuple[str, str], ...], int]:
    total, pos = read_lenenc_int(buf, pos)
    if total is None:
        raise PacketError("NULL connection attributes length")
    end = pos + total
    if end > len(buf):
        raise PacketError("truncated connection attributes")
    block = buf[:end]  # the pairs must end exactly where the declared length says
    attrs: list[tuple[str, str]] = []
    while pos < end:
        k, pos = _read_lenenc_str(block, pos)
        v, pos = _read_lenenc_str(block, pos)
        attrs.append((_dec(k), _dec(v)))
    return tuple(attrs), end


def _attrs_bytes(attrs: tuple[tuple[str, str], ...]) -> bytes:
    body = b"".join(lenenc_bytes(_enc(k)) + lenenc_bytes(_enc(v)) for k, v in attrs)
    return lenenc_bytes(body)


# ------------------------------------------------------------------ framing


class Framer:
    """Splits one direction's byte stream into logical packets (sans-IO).

    A payload of exactly 0xFFFFFF bytes continues in the next physical chunk; `feed` joins the
    chunks and reports each logical packet once, with the sequence id of its last chunk (the one
    the next packet's id follows). `max_packet` may be lowered at any time (before
    authentication the session allows only small packets): a logical packet whose declared
    length exceeds it raises PacketError as soon as its header is seen, before its body is
    buffered, so an unauthenticated peer cannot make the proxy hold megabytes.
    """

    __slots__ = ("_chunks", "_chunks_len", "_last_seq", "_pending", "max_packet")

    def __init__(self, max_packet: int) -> None:
        self.max_packet = max_packet
        self._pending = bytearray()  # an incomplete physical chunk (header included)
        self._chunks: list[bytes] = []  # full 0xFFFFFF chunks of an unfinished logical packet
        self._chunks_len = 0
        self._last_seq = 0

    @property
    def buffered(self) -> int:
        """Bytes held back: an incomplete packet (a TLS upgrade must find this 0)."""
        return len(self._pending) + self._chunks_len

    def _needed(self) -> int:
        p = self._pending
        if len(p) < 4:
            return 4
        # 0 when the header is already wrong: the split below raises on it.
        length = p[0] | p[1] << 8 | p[2] << 16
        if self._chunks_len + length > self.max_packet:
            return 0
        if self._chunks and p[3] != (self._last_seq + 1) & 0xFF:
            return 0
        return 4 + length

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self._pending:
            self._pending += data
            if len(self._pending) < self._needed():
                # A large packet arriving in pieces: do not copy the buffer for every piece.
                return []
            buf = bytes(self._pending)
            self._pending.clear()
        else:
            buf = data if isinstance(data, bytes) else bytes(data)
        out: list[tuple[int, bytes]] = []
        append = out.append
        pos = 0
        end = len(buf)
        limit = self.max_packet
        if not self._chunks:
            # The common case, whole packets under 16 MiB: no continuation to follow.
            while end - pos >= 4:
                length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
                stop = pos + 4 + length
                if length == MAX_PAYLOAD or length > limit or stop > end:
                    break  # the general loop below says why, or keeps the rest
                append((buf[pos + 3], buf[pos + 4 : stop]))
                pos = stop
            if out:
                self._last_seq = out[-1][0]
        while end - pos >= 4:
            length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            seq = buf[pos + 3]
            if self._chunks and seq != (self._last_seq + 1) & 0xFF:
                raise PacketError("continuation chunk out of sequence")
            if self._chunks_len + length > self.max_packet:
                raise PacketError(
                    f"packet too large ({self._chunks_len + length} bytes, limit {self.max_packet})"
                )
            stop = pos + 4 + length
            if stop > end:
                break
            body = buf[pos + 4 : stop]
            pos = stop
            self._last_seq = seq
            if length == MAX_PAYLOAD:
                self._chunks.append(body)
                self._chunks_len += length
                continue
            if self._chunks:
                self._chunks.append(body)
                body = b"".join(self._chunks)
                self._chunks.clear()
                self._chunks_len = 0
            append((seq, body))
        if pos < end:
            self._pending += memoryview(buf)[pos:]
        return out


def frame_all(payloads: Sequence[bytes], seq: int) -> tuple[bytes, int]:
    """The wire bytes of consecutive packets from sequence id `seq`, and the next id: one
    buffer, so the session hands its driver one write for them."""
    out: list[bytes] = []
    append = out.append
    pack = _U32.pack
    for payload in payloads:
        n = len(payload)
        if n < MAX_PAYLOAD:
            append(pack(n | (seq & 0xFF) << 24))
            append(payload)
            seq = (seq + 1) & 0xFF
        else:
            data, seq = frame(payload, seq)
            append(data)
    return b"".join(out), seq


def frame(payload: bytes, seq: int) -> tuple[bytes, int]:
    """The wire bytes of one logical packet starting at sequence id `seq`, and the next id.

    A payload whose length is a multiple of 0xFFFFFF (0 included) ends with an empty chunk, so
    the reader knows the packet is complete."""
    n = len(payload)
    if n < MAX_PAYLOAD:
        return _U32.pack(n | (seq & 0xFF) << 24) + payload, (seq + 1) & 0xFF
    parts: list[bytes] = []
    pos = 0
    while True:
        chunk = payload[pos : pos + MAX_PAYLOAD]
        parts.append(_U32.pack(len(chunk) | (seq & 0xFF) << 24))
        parts.append(chunk)
        seq = (seq + 1) & 0xFF
        pos += MAX_PAYLOAD
        if len(chunk) < MAX_PAYLOAD:
            break
    return b"".join(parts), seq


# ------------------------------------------------------------------ connection phase


@dataclass(frozen=True, slots=True)
class HandshakeV10:
    """The server's greeting. `capabilities` is 64-bit: MariaDB sends its extended capabilities
    in the last 4 of the 10 reserved bytes when it clears bit 0 (CLIENT_MYSQL)."""

    server_version: str
    connection_id: int
    auth_data: bytes  # the whole scramble (part 1 + part 2, without part 2's NUL)
    capabilities: int
    charset: int
    status: int
    auth_plugin: str

    @classmethod
    def parse(cls, payload: Buffer) -> HandshakeV10:
        buf = _buf(payload)
        if not buf or buf[0] != 10:
            raise PacketError("not a protocol 10 handshake")
        version, pos = read_nul(buf, 1)
        (conn_id,) = _unpack(_U32, buf, pos)
        part1, _filler, caps_lo, charset, status, caps_hi, auth_len = _unpack(_GREETING_MID, buf, pos + 4)
        pos += 4 + _GREETING_MID.size
        caps = caps_lo | caps_hi << 16
        if pos + 10 > len(buf):
            raise PacketError("truncated handshake")
        if not caps & CLIENT_LONG_PASSWORD:
            caps |= _U32.unpack_from(buf, pos + 6)[0] << 32
        pos += 10
        auth_data = part1
        if caps & CLIENT_SECURE_CONNECTION:
            n = max(13, auth_len - 8)
            if pos + n > len(buf):
                raise PacketError("truncated scramble")
            part2 = buf[pos : pos + n]
            pos += n
            # Part 2 is NUL-terminated on every server; the NUL is no part of the scramble.
            auth_data += part2[:-1] if part2[-1] == 0 else part2
        plugin = b""
        if caps & CLIENT_PLUGIN_AUTH:
            plugin, pos = read_nul(buf, pos)
        _expect_end(buf, pos)
        return cls(_dec(version), conn_id, auth_data, caps, charset, status, _dec(plugin))

    def serialize(self) -> bytes:
        caps = self.capabilities
        high = caps >> 32
        if high and caps & CLIENT_LONG_PASSWORD:
            raise PacketError("extended capabilities need bit 0 clear")
        if len(self.auth_data) < 8:
            raise PacketError("scramble shorter than 8 bytes")
        secure = caps & CLIENT_SECURE_CONNECTION
        plugin_auth = caps & CLIENT_PLUGIN_AUTH
        part2 = self.auth_data[8:] + b"\x00" if secure else b""
        if secure and len(part2) < 13:
            part2 += bytes(13 - len(part2))
        if secure and not plugin_auth and len(self.auth_data) != 20:
            raise PacketError("without CLIENT_PLUGIN_AUTH the scramble is 20 bytes")
        auth_len = len(self.auth_data) + 1 if plugin_auth and secure else 0
        if auth_len > 0xFF:
            raise PacketError("scramble too long")
        out = [
            b"\x0a",
            _enc(self.server_version),
            b"\x00",
            _U32.pack(self.connection_id),
            _GREETING_MID.pack(
                self.auth_data[:8],
                0,
                caps & 0xFFFF,
                self.charset,
                self.status,
                (caps >> 16) & 0xFFFF,
                auth_len,
            ),
            bytes(6),
            _U32.pack(high),
            part2,
        ]
        if plugin_auth:
            out += [_enc(self.auth_plugin), b"\x00"]
        return b"".join(out)


def _login_head(buf: bytes) -> tuple[int, int, int]:
    caps, max_packet, charset = _unpack(_LOGIN_HEAD, buf, 0)
    if len(buf) < 32:
        raise PacketError("truncated login packet")
    if not caps & CLIENT_LONG_PASSWORD:
        # MariaDB: the last 4 of the 23 filler bytes carry the extended capabilities.
        caps |= _U32.unpack_from(buf, 28)[0] << 32
    return caps, max_packet, charset


def _login_head_bytes(caps: int, max_packet: int, charset: int) -> bytes:
    high = caps >> 32
    if high and caps & CLIENT_LONG_PASSWORD:
        raise PacketError("extended capabilities need bit 0 clear")
    return _LOGIN_HEAD.pack(caps & 0xFFFFFFFF, max_packet, charset) + bytes(19) + _U32.pack(high)


def _read_auth_response(buf: bytes, pos: int, secure: bool) -> tuple[bytes, int]:
    """An auth response with a 1-byte length (CLIENT_SECURE_CONNECTION), else NUL-terminated:
    the login packet's form without lenenc client data, and COM_CHANGE_USER's."""
    if not secure:
        return read_nul(buf, pos)
    if pos >= len(buf):
        raise PacketError("truncated auth response")
    n = buf[pos]
    if pos + 1 + n > len(buf):
        raise PacketError("truncated auth response")
    return buf[pos + 1 : pos + 1 + n], pos + 1 + n


def _auth_response_bytes(auth: bytes, secure: bool) -> list[bytes]:
    if secure:
        if len(auth) > 0xFF:
            raise PacketError("auth response too long for a 1-byte length")
        return [bytes((len(auth),)), auth]
    if b"\x00" in auth:
        raise PacketError("a NUL-terminated auth response cannot hold NUL")
    return [auth, b"\x00"]


def _read_plugin_and_attrs(
    buf: bytes, pos: int, caps: int
) -> tuple[str | None, tuple[tuple[str, str], ...], int]:
    """The optional end of a login and of COM_CHANGE_USER: the auth plugin's name, then the
    connection attributes, each only under its capability and only if the packet goes on."""
    plugin: str | None = None
    attrs: tuple[tuple[str, str], ...] = ()
    if caps & CLIENT_PLUGIN_AUTH and pos < len(buf):
        p, pos = read_nul(buf, pos)
        plugin = _dec(p)
    if caps & CLIENT_CONNECT_ATTRS and pos < len(buf):
        attrs, pos = _read_attrs(buf, pos)
    return plugin, attrs, pos


@dataclass(frozen=True, slots=True)
class SSLRequest:
    """The 32-byte prefix of a login packet a client sends before its TLS handshake."""

    capabilities: int
    max_packet: int
    charset: int

    @classmethod
    def parse(cls, payload: Buffer) -> SSLRequest:
        buf = _buf(payload)
        if len(buf) != 32:
            raise PacketError("an SSL request is 32 bytes")
        caps, max_packet, charset = _login_head(buf)
        if not caps & CLIENT_SSL:
            raise PacketError("SSL request without CLIENT_SSL")
        return cls(caps, max_packet, charset)

    def serialize(self) -> bytes:
        return _login_head_bytes(self.capabilities, self.max_packet, self.charset)


@dataclass(frozen=True, slots=True)
class HandshakeResponse41:
    """The client's login. `database`, `auth_plugin` and `attrs` are optional at the end of the
    packet even when their capability is set (None / () when absent), as the server reads them."""

    capabilities: int
    max_packet: int
    charset: int
    user: str
    auth_response: bytes
    database: str | None
    auth_plugin: str | None
    attrs: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, payload: Buffer) -> HandshakeResponse41:
        buf = _buf(payload)
        caps, max_packet, charset = _login_head(buf)
        if not caps & CLIENT_PROTOCOL_41:
            raise PacketError("pre-4.1 login packets are not supported")
        user, pos = read_nul(buf, 32)
        if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
            auth, pos = _read_lenenc_str(buf, pos)
        else:
            auth, pos = _read_auth_response(buf, pos, bool(caps & CLIENT_SECURE_CONNECTION))
        database: str | None = None
        if caps & CLIENT_CONNECT_WITH_DB and pos < len(buf):
            db, pos = read_nul(buf, pos)
            database = _dec(db)
        plugin, attrs, pos = _read_plugin_and_attrs(buf, pos, caps)
        _expect_end(buf, pos)
        return cls(caps, max_packet, charset, _dec(user), auth, database, plugin, attrs)

    def serialize(self) -> bytes:
        caps = self.capabilities
        out = [_login_head_bytes(caps, self.max_packet, self.charset), _enc(self.user), b"\x00"]
        if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
            out.append(lenenc_bytes(self.auth_response))
        else:
            out += _auth_response_bytes(self.auth_response, bool(caps & CLIENT_SECURE_CONNECTION))
        # Optional trailing fields: one may be absent only when every later one is absent too.
        tail: list[bytes | None] = [
            _enc(self.database) + b"\x00" if self.database is not None else None,
            _enc(self.auth_plugin) + b"\x00" if self.auth_plugin is not None else None,
            _attrs_bytes(self.attrs) if self.attrs else None,
        ]
        flags = (CLIENT_CONNECT_WITH_DB, CLIENT_PLUGIN_AUTH, CLIENT_CONNECT_ATTRS)
        if any(t is not None and not caps & f for t, f in zip(tail, flags, strict=True)):
            raise PacketError("a login field without its capability flag")
        last = max((i for i, t in enumerate(tail) if t is not None), default=-1)
        for i in range(last + 1):
            if not caps & flags[i]:
                continue
            t = tail[i]
            if t is None:
                raise PacketError("an optional login field is absent before a present one")
            out.append(t)
        return b"".join(out)


@dataclass(frozen=True, slots=True)
class AuthSwitchRequest:
    """The server asks the client to authenticate again with another plugin (0xFE)."""

    plugin: str
    data: bytes

    @classmethod
    def parse(cls, payload: Buffer) -> AuthSwitchRequest:
        buf = _buf(payload)
        _header(buf, AUTH_SWITCH_HEADER, "auth switch request")
        if len(buf) == 1:
            raise PacketError("the old (pre-4.1) password switch is not supported")
        plugin, pos = read_nul(buf, 1)
        return cls(_dec(plugin), buf[pos:])

    def serialize(self) -> bytes:
        return b"\xfe" + _enc(self.plugin) + b"\x00" + self.data


@dataclass(frozen=True, slots=True)
class AuthMoreData:
    """Extra authentication data from the server (0x01): caching_sha2 fast-auth results, keys."""

    data: bytes

    @classmethod
    def parse(cls, payload: Buffer) -> AuthMoreData:
        buf = _buf(payload)
        _header(buf, AUTH_MORE_DATA_HEADER, "auth more data")
        return cls(buf[1:])

    def serialize(self) -> bytes:
        return b"\x01" + self.data


@dataclass(frozen=True, slots=True)
class AuthSwitchResponse:
    """The client's answer to an auth switch or more-data packet: the raw payload."""

    data: bytes

    @classmethod
    def parse(cls, payload: Buffer) -> AuthSwitchResponse:
        return cls(_buf(payload))

    def serialize(self) -> bytes:
        return self.data


# ------------------------------------------------------------------ generic responses


def is_ok(payload: Buffer) -> bool:
    return len(payload) > 0 and payload[0] == OK_HEADER


def is_err(payload: Buffer) -> bool:
    return len(payload) > 0 and payload[0] == ERR_HEADER


def is_eof(payload: Buffer) -> bool:
    """A classic EOF (0xFE, shorter than 9 bytes): a row starting 0xFE is 9 bytes or more.
    Under CLIENT_DEPRECATE_EOF the result set ends with an OK whose header is 0xFE instead:
    parse that with `OK.parse`."""
    return 0 < len(payload) < 9 and payload[0] == EOF_HEADER


def is_result_end(payload: Buffer, capabilities: int) -> bool:
    """Whether a packet where a row may come ends the rows: the classic EOF, or under
    CLIENT_DEPRECATE_EOF an OK with header 0xFE, which may be 9 bytes or more (session state):
    a row starting 0xFE has a first value of 2**24 bytes or more, so its packet is longer."""
    if capabilities & CLIENT_DEPRECATE_EOF:
        return 0 < len(payload) < MAX_PAYLOAD and payload[0] == EOF_HEADER
    return is_eof(payload)


def is_local_infile(payload: Buffer) -> bool:
    return len(payload) > 0 and payload[0] == LOCAL_INFILE_HEADER


@dataclass(frozen=True, slots=True)
class OK:
    """An OK packet (0x00), or with header 0xFE the OK that ends a result set under
    CLIENT_DEPRECATE_EOF. With CLIENT_SESSION_TRACK `info` is a lenenc string (absent when empty
    and no state changed) followed by `session_state` when SERVER_SESSION_STATE_CHANGED is set;
    without it `info` is the rest of the packet."""

    affected_rows: int
    last_insert_id: int
    status: int
    warnings: int
    info: bytes = b""
    session_state: bytes = b""
    header: int = OK_HEADER

    @classmethod
    def parse(cls, payload: Buffer, capabilities: int) -> OK:
        buf = _buf(payload)
        if not buf or buf[0] not in (OK_HEADER, EOF_HEADER):
            raise PacketError("not an OK packet")
        affected, pos = read_lenenc_int(buf, 1)
        last_id, pos = read_lenenc_int(buf, pos)
        if affected is None or last_id is None:
            raise PacketError("NULL in an OK packet")
        status = warnings = 0
        if capabilities & CLIENT_PROTOCOL_41:
            status, warnings = _unpack(_U16X2, buf, pos)
            pos += 4
        elif capabilities & CLIENT_TRANSACTIONS:
            (status,) = _unpack(_U16, buf, pos)
            pos += 2
        info = state = b""
        if capabilities & CLIENT_SESSION_TRACK:
            if pos < len(buf):
                info, pos = _read_lenenc_str(buf, pos)
            if status & SERVER_SESSION_STATE_CHANGED:
                state, pos = _read_lenenc_str(buf, pos)
            _expect_end(buf, pos)
        else:
            info = buf[pos:]
        return cls(affected, last_id, status, warnings, info, state, buf[0])

    def serialize(self, capabilities: int) -> bytes:
        out = [bytes((self.header,)), lenenc_int(self.affected_rows), lenenc_int(self.last_insert_id)]
        if capabilities & CLIENT_PROTOCOL_41:
            out.append(_U16.pack(self.status) + _U16.pack(self.warnings))
        elif capabilities & CLIENT_TRANSACTIONS:
            out.append(_U16.pack(self.status))
        if capabilities & CLIENT_SESSION_TRACK:
            changed = self.status & SERVER_SESSION_STATE_CHANGED
            if self.info or changed:
                out.append(lenenc_bytes(self.info))
            if changed:
                out.append(lenenc_bytes(self.session_state))
        else:
            out.append(self.info)
        return b"".join(out)


@dataclass(frozen=True, slots=True)
class ERR:
    """An error packet (0xFF). Parsing also accepts the pre-4.1 form without '#' and SQLSTATE
    (servers send it before capabilities are agreed); serializing always writes '#' + SQLSTATE."""

    code: int
    sqlstate: str
    message: str

    @classmethod
    def parse(cls, payload: Buffer) -> ERR:
        buf = _buf(payload)
        _header(buf, ERR_HEADER, "error")
        (code,) = _unpack(_U16, buf, 1)
        if code == 0xFFFF:
            # MariaDB progress report: only sent to clients that advertise progress, which we never do.
            raise PacketError("unexpected progress report")
        if buf[3:4] == b"#":
            if len(buf) < 9:
                raise PacketError("truncated SQLSTATE")
            return cls(code, buf[4:9].decode("latin-1"), _dec(buf[9:]))
        return cls(code, "HY000", _dec(buf[3:]))

    def serialize(self) -> bytes:
        state = self.sqlstate.encode("ascii", "replace")
        if len(state) != 5:
            raise PacketError("a SQLSTATE has 5 characters")
        return b"\xff" + _U16.pack(self.code) + b"#" + state + _enc(self.message)


@dataclass(frozen=True, slots=True)
class EOF:
    """The classic end-of-columns / end-of-rows marker (0xFE, warnings, status)."""

    warnings: int
    status: int

    @classmethod
    def parse(cls, payload: Buffer) -> EOF:
        buf = _buf(payload)
        if len(buf) != 5 or buf[0] != EOF_HEADER:
            raise PacketError("not an EOF packet")
        _, warnings, status = _EOF.unpack(buf)
        return cls(warnings, status)

    def serialize(self) -> bytes:
        return _EOF.pack(EOF_HEADER, self.warnings, self.status)


# ------------------------------------------------------------------ result sets


@dataclass(frozen=True, slots=True)
class ColumnCount:
    """The first packet of a result set. MariaDB adds a metadata-follows byte only under
    CACHE_METADATA, which the proxy never advertises, so the payload is the count alone."""

    count: int

    @classmethod
    def parse(cls, payload: Buffer) -> ColumnCount:
        buf = _buf(payload)
        n, pos = read_lenenc_int(buf, 0)
        if not n:
            raise PacketError("a result set has at least one column")
        _expect_end(buf, pos)
        return cls(n)

    def serialize(self) -> bytes:
        return lenenc_int(self.count)


@dataclass(frozen=True, slots=True)
class ColumnDefinition41:
    """One column of a result set (or of a COM_FIELD_LIST answer, which appends a lenenc default
    value: `has_default` marks that block, `default` is its value, None for a NULL default)."""

    schema: bytes
    table: bytes
    org_table: bytes
    name: bytes
    org_name: bytes
    charset: int
    length: int
    type: int
    flags: int
    decimals: int
    catalog: bytes = b"def"
    default: bytes | None = None
    # Added to the contract: a NULL default (0xFB) and no default block differ on the wire.
    has_default: bool = False

    @classmethod
    def parse(cls, payload: Buffer) -> ColumnDefinition41:
        buf = _buf(payload)
        catalog, pos = _read_lenenc_str(buf, 0)
        schema, pos = _read_lenenc_str(buf, pos)
        table, pos = _read_lenenc_str(buf, pos)
        org_table, pos = _read_lenenc_str(buf, pos)
        name, pos = _read_lenenc_str(buf, pos)
        org_name, pos = _read_lenenc_str(buf, pos)
        fixed, charset, length, ftype, flags, decimals, _filler = _unpack(_COLDEF_FIXED, buf, pos)
        if fixed != 0x0C:
            raise PacketError("column definition without its 12-byte fixed block")
        pos += _COLDEF_FIXED.size
        default: bytes | None = None
        has_default = pos < len(buf)
        if has_default:
            default, pos = read_lenenc_bytes(buf, pos)
        _expect_end(buf, pos)
        return cls(
            schema,
            table,
            org_table,
            name,
            org_name,
            charset,
            length,
            ftype,
            flags,
            decimals,
            catalog,
            default,
            has_default,
        )

    def serialize(self) -> bytes:
        out = b"".join(
            (
                lenenc_bytes(self.catalog),
                lenenc_bytes(self.schema),
                lenenc_bytes(self.table),
                lenenc_bytes(self.org_table),
                lenenc_bytes(self.name),
                lenenc_bytes(self.org_name),
                _COLDEF_FIXED.pack(0x0C, self.charset, self.length, self.type, self.flags, self.decimals, 0),
            )
        )
        if self.has_default or self.default is not None:
            out += b"\xfb" if self.default is None else lenenc_bytes(self.default)
        return out


@dataclass(frozen=True, slots=True)
class LocalInfileRequest:
    """The server asks the client for a local file's contents (0xFB + file name)."""

    filename: bytes

    @classmethod
    def parse(cls, payload: Buffer) -> LocalInfileRequest:
        buf = _buf(payload)
        _header(buf, LOCAL_INFILE_HEADER, "LOCAL INFILE request")
        return cls(buf[1:])

    def serialize(self) -> bytes:
        return b"\xfb" + self.filename


def text_row_spans(payload: Buffer, ncols: int) -> list[tuple[int, int] | None]:
    """(start, end) of each value of a text-protocol row in `payload`, None for NULL: the row
    is walked once, no value is copied. Raises PacketError unless the row has exactly `ncols`."""
    buf = _buf(payload)
    end = len(buf)
    spans: list[tuple[int, int] | None] = []
    append = spans.append
    pos = 0
    for _ in range(ncols):
        if pos >= end:
            raise PacketError("truncated row")
        first = buf[pos]
        if first < 0xFB:
            start = pos + 1
            stop = start + first
        elif first == 0xFB:
            append(None)
            pos += 1
            continue
        else:
            n, start = read_lenenc_int(buf, pos)
            stop = start + n  # type: ignore[operator]  # not None: 0xFB handled above
        if stop > end:
            raise PacketError("truncated row value")
        append((start, stop))
        pos = stop
    if pos != end:
        raise PacketError("row has more values than columns")
    return spans


@dataclass(frozen=True, slots=True)
class TextRow:
    """A text-protocol row: each value a lenenc string, 0xFB for NULL."""

    values: tuple[bytes | None, ...]

    @classmethod
    def parse(cls, payload: Buffer, ncols: int) -> TextRow:
        buf = _buf(payload)
        return cls(tuple(None if s is None else buf[s[0] : s[1]] for s in text_row_spans(buf, ncols)))

    def serialize(self) -> bytes:
        return text_row_bytes(self.values)


def text_row_bytes(values: Sequence[bytes | None]) -> bytes:
    """A text-protocol row of `values` (None: NULL)."""
    return b"".join(
        b"\xfb" if v is None else (bytes((len(v),)) + v if len(v) < 0xFB else lenenc_bytes(v)) for v in values
    )


# How a binary-protocol value is laid out, by field type: > 0 a fixed width, LENENC a
# length-encoded string, DATE_LEN / TIME_LEN a 1-byte length then that many bytes, NOTHING no
# bytes (the NULL type).
LENENC = 0
DATE_LEN = -1
TIME_LEN = -2
NOTHING = -3
# TINY, SHORT, YEAR, LONG, INT24, FLOAT, LONGLONG, DOUBLE, NULL
_FIXED_WIDTH = {1: 1, 2: 2, 13: 2, 3: 4, 9: 4, 4: 4, 8: 8, 5: 8, 6: NOTHING}
_DATE_TYPES = frozenset({7, 10, 12, 14})  # TIMESTAMP, DATE, DATETIME, NEWDATE
_TIME_TYPE = 11
# The lengths the server uses (0 = all zero, then date, +time, +microseconds).
_DATE_LENGTHS = frozenset({0, 4, 7, 11})
_TIME_LENGTHS = frozenset({0, 8, 12})


def binary_width(field_type: int) -> int:
    """The layout code of `field_type` in the binary protocol (see LENENC, DATE_LEN, TIME_LEN)."""
    if field_type in _DATE_TYPES:
        return DATE_LEN
    if field_type == _TIME_TYPE:
        return TIME_LEN
    return _FIXED_WIDTH.get(field_type, LENENC)


@lru_cache(maxsize=1024)
def binary_layout(types: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
    """The layout codes of a row's columns, cached: a result set's rows share one tuple."""
    return tuple(binary_width(t) for t, _flags in types)


def _binary_values(
    buf: bytes, pos: int, layout: tuple[int, ...], nulls: bytes, shift: int
) -> tuple[tuple[bytes | None, ...], int]:
    """Walk the values after a NULL bitmap. Bit `i + shift` of `nulls` marks value i NULL."""
    end = len(buf)
    values: list[bytes | None] = []
    append = values.append
    for i, width in enumerate(layout):
        bit = i + shift
        if nulls[bit >> 3] & (1 << (bit & 7)):
            append(None)
            continue
        if width > 0:
            stop = pos + width
            if stop > end:
                raise PacketError("truncated binary value")
            append(buf[pos:stop])
            pos = stop
        elif width == LENENC:
            if pos < end and buf[pos] < 0xFB:  # the common short string, inline
                stop = pos + 1 + buf[pos]
                if stop > end:
                    raise PacketError("truncated binary value")
                append(buf[pos + 1 : stop])
                pos = stop
                continue
            v, pos = read_lenenc_bytes(buf, pos)
            if v is None:
                raise PacketError("lenenc NULL in a binary row")
            append(v)
        elif width != NOTHING:
            if pos >= end:
                raise PacketError("truncated binary value")
            n = buf[pos]
            if n not in (_DATE_LENGTHS if width == DATE_LEN else _TIME_LENGTHS):
                raise PacketError("bad date/time length")
            stop = pos + 1 + n
            if stop > end:
                raise PacketError("truncated binary value")
            append(buf[pos:stop])
            pos = stop
        else:
            append(b"")
    return tuple(values), pos


def _binary_value_bytes(v: bytes, width: int) -> bytes:
    if width == LENENC:
        return lenenc_bytes(v)
    if width > 0 and len(v) != width:
        raise PacketError("binary value of the wrong width")
    if width in (DATE_LEN, TIME_LEN) and (not v or v[0] != len(v) - 1):
        raise PacketError("date/time value without its length byte")
    return v


def _bitmap(values: Sequence[bytes | None], shift: int, skip: Collection[int] = ()) -> bytes:
    bits = bytearray((len(values) + shift + 7) // 8)
    for i, v in enumerate(values):
        if v is None and i not in skip:
            bit = i + shift
            bits[bit >> 3] |= 1 << (bit & 7)
    return bytes(bits)


def binary_row_bytes(values: Sequence[bytes | None], layout: tuple[int, ...]) -> bytes:
    """A binary-protocol row of `values` for a layout from `binary_layout`."""
    if len(layout) != len(values):
        raise PacketError("row and column count differ")
    out = [b"\x00", _bitmap(values, 2)]
    for v, width in zip(values, layout, strict=True):
        if v is not None:
            out.append(_binary_value_bytes(v, width))
    return b"".join(out)


def binary_row_values(payload: Buffer, layout: tuple[int, ...]) -> tuple[bytes | None, ...]:
    """The values of a binary row, for a layout from `binary_layout` (the hot path: the session
    computes the layout once per result set, not once per row)."""
    buf = _buf(payload)
    nbytes = (len(layout) + 9) // 8
    if not buf or buf[0] != 0:
        raise PacketError("not a binary row")
    if 1 + nbytes > len(buf):
        raise PacketError("truncated NULL bitmap")
    values, pos = _binary_values(buf, 1 + nbytes, layout, buf[1 : 1 + nbytes], 2)
    _expect_end(buf, pos)
    return values


@dataclass(frozen=True, slots=True)
class BinaryRow:
    """A binary-protocol row: 0x00, a NULL bitmap with offset 2, the non-NULL values.

    Values are the raw encoded bytes: the lenenc prefix stripped for strings, decimals, blobs,
    JSON and geometry; fixed-width integers and floats as sent; date/time values with their own
    length byte, so they round-trip unchanged."""

    values: tuple[bytes | None, ...]

    @classmethod
    def parse(cls, payload: Buffer, types: Sequence[tuple[int, int]]) -> BinaryRow:
        buf = _buf(payload)
        return cls(binary_row_values(buf, binary_layout(tuple(types))))

    def serialize(self, types: Sequence[tuple[int, int]]) -> bytes:
        return binary_row_bytes(self.values, binary_layout(tuple(types)))


# ------------------------------------------------------------------ commands


def command_of(payload: Buffer) -> int:
    if not payload:
        raise PacketError("empty command packet")
    return payload[0]


def _command(buf: Buffer, cmd: int) -> bytes:
    b = _buf(buf)
    if not b or b[0] != cmd:
        raise PacketError(f"not command {cmd}")
    return b


@dataclass(frozen=True, slots=True)
class ComQuery:
    """COM_QUERY: the SQL text (the proxy never advertises CLIENT_QUERY_ATTRIBUTES)."""

    query: bytes

    @classmethod
    def parse(cls, payload: Buffer) -> ComQuery:
        return cls(_command(payload, COM_QUERY)[1:])

    def serialize(self) -> bytes:
        return b"\x03" + self.query


@dataclass(frozen=True, slots=True)
class ComInitDb:
    schema: bytes

    @classmethod
    def parse(cls, payload: Buffer) -> ComInitDb:
        return cls(_command(payload, COM_INIT_DB)[1:])

    def serialize(self) -> bytes:
        return b"\x02" + self.schema


@dataclass(frozen=True, slots=True)
class ComFieldList:
    """COM_FIELD_LIST: a NUL-terminated table name, then a wildcard to the end."""

    table: bytes
    wildcard: bytes

    @classmethod
    def parse(cls, payload: Buffer) -> ComFieldList:
        buf = _command(payload, COM_FIELD_LIST)
        table, pos = read_nul(buf, 1)
        return cls(table, buf[pos:])

    def serialize(self) -> bytes:
        if b"\x00" in self.table:
            raise PacketError("a table name cannot hold NUL")
        return b"\x04" + self.table + b"\x00" + self.wildcard


class _Bare:
    """A command that is its command byte alone."""

    __slots__ = ()
    COMMAND: int

    @classmethod
    def parse(cls, payload: Buffer) -> Self:
        buf = _command(payload, cls.COMMAND)
        _expect_end(buf, 1)
        return cls()

    def serialize(self) -> bytes:
        return bytes((self.COMMAND,))


@dataclass(frozen=True, slots=True)
class ComPing(_Bare):
    COMMAND = COM_PING


@dataclass(frozen=True, slots=True)
class ComQuit(_Bare):
    COMMAND = COM_QUIT


@dataclass(frozen=True, slots=True)
class ComStatistics(_Bare):
    COMMAND = COM_STATISTICS


@dataclass(frozen=True, slots=True)
class ComResetConnection(_Bare):
    COMMAND = COM_RESET_CONNECTION


@dataclass(frozen=True, slots=True)
class ComDebug(_Bare):
    COMMAND = COM_DEBUG


def _u32_command(payload: Buffer, cmd: int) -> int:
    buf = _command(payload, cmd)
    if len(buf) != 5:
        raise PacketError("command takes exactly a 4-byte integer")
    return _U32.unpack_from(buf, 1)[0]


@dataclass(frozen=True, slots=True)
class ComProcessKill:
    connection_id: int

    @classmethod
    def parse(cls, payload: Buffer) -> ComProcessKill:
        return cls(_u32_command(payload, COM_PROCESS_KILL))

    def serialize(self) -> bytes:
        return b"\x0c" + _U32.pack(self.connection_id)


@dataclass(frozen=True, slots=True)
class ComSetOption:
    option: int  # MYSQL_OPTION_MULTI_STATEMENTS_ON / _OFF

    @classmethod
    def parse(cls, payload: Buffer) -> ComSetOption:
        buf = _command(payload, COM_SET_OPTION)
        if len(buf) != 3:
            raise PacketError("COM_SET_OPTION takes exactly a 2-byte option")
        return cls(_U16.unpack_from(buf, 1)[0])

    def serialize(self) -> bytes:
        return b"\x1b" + _U16.pack(self.option)


@dataclass(frozen=True, slots=True)
class ComStmtPrepare:
    query: bytes

    @classmethod
    def parse(cls, payload: Buffer) -> ComStmtPrepare:
        return cls(_command(payload, COM_STMT_PREPARE)[1:])

    def serialize(self) -> bytes:
        return b"\x16" + self.query


@dataclass(frozen=True, slots=True)
class ComStmtClose:
    stmt_id: int

    @classmethod
    def parse(cls, payload: Buffer) -> ComStmtClose:
        return cls(_u32_command(payload, COM_STMT_CLOSE))

    def serialize(self) -> bytes:
        return b"\x19" + _U32.pack(self.stmt_id)


@dataclass(frozen=True, slots=True)
class ComStmtReset:
    stmt_id: int

    @classmethod
    def parse(cls, payload: Buffer) -> ComStmtReset:
        return cls(_u32_command(payload, COM_STMT_RESET))

    def serialize(self) -> bytes:
        return b"\x1a" + _U32.pack(self.stmt_id)


@dataclass(frozen=True, slots=True)
class ComStmtFetch:
    stmt_id: int
    rows: int

    @classmethod
    def parse(cls, payload: Buffer) -> ComStmtFetch:
        buf = _command(payload, COM_STMT_FETCH)
        if len(buf) != 9:
            raise PacketError("COM_STMT_FETCH is 9 bytes")
        stmt_id, rows = struct.unpack_from("<II", buf, 1)
        return cls(stmt_id, rows)

    def serialize(self) -> bytes:
        return b"\x1c" + _U32.pack(self.stmt_id) + _U32.pack(self.rows)


@dataclass(frozen=True, slots=True)
class ComStmtSendLongData:
    stmt_id: int
    param_id: int
    data: bytes

    @classmethod
    def parse(cls, payload: Buffer) -> ComStmtSendLongData:
        buf = _command(payload, COM_STMT_SEND_LONG_DATA)
        if len(buf) < 7:
            raise PacketError("truncated COM_STMT_SEND_LONG_DATA")
        stmt_id, param_id = struct.unpack_from("<IH", buf, 1)
        return cls(stmt_id, param_id, buf[7:])

    def serialize(self) -> bytes:
        return b"\x18" + struct.pack("<IH", self.stmt_id, self.param_id) + self.data


@dataclass(frozen=True, slots=True)
class ComStmtExecute:
    """COM_STMT_EXECUTE. `param_types` are (field type, flag byte: 0x80 unsigned) per parameter;
    when `new_params_bound` is false the client did not send them and they are the previous
    execute's (passed to `parse` as `previous_types`; `serialize` does not write them).

    `values` holds one entry per parameter: the raw binary encoding (as in `BinaryRow`), None
    for a NULL (its bitmap bit set) and None for a parameter whose data came by
    COM_STMT_SEND_LONG_DATA (bitmap bit clear, no bytes in this packet: `parse` must be told
    which through `long_data`, which the session tracks per statement)."""

    stmt_id: int
    flags: int
    iterations: int
    null_bitmap: bytes
    new_params_bound: bool
    param_types: tuple[tuple[int, int], ...]
    values: tuple[bytes | None, ...]

    @classmethod
    def parse(
        cls,
        payload: Buffer,
        num_params: int,
        previous_types: tuple[tuple[int, int], ...] = (),
        long_data: Collection[int] = (),
    ) -> ComStmtExecute:
        buf = _command(payload, COM_STMT_EXECUTE)
        _, stmt_id, flags, iterations = _unpack(_EXEC_HEAD, buf, 0)
        pos = _EXEC_HEAD.size
        if num_params == 0:
            _expect_end(buf, pos)
            return cls(stmt_id, flags, iterations, b"", False, (), ())
        nbytes = (num_params + 7) // 8
        if pos + nbytes + 1 > len(buf):
            raise PacketError("truncated COM_STMT_EXECUTE")
        bitmap = buf[pos : pos + nbytes]
        pos += nbytes
        bound = buf[pos]
        pos += 1
        if bound > 1:
            raise PacketError("bad new-params-bound flag")
        if bound:
            end = pos + 2 * num_params
            if end > len(buf):
                raise PacketError("truncated parameter types")
            types = tuple((buf[i], buf[i + 1]) for i in range(pos, end, 2))
            pos = end
        else:
            if len(previous_types) != num_params:
                raise PacketError("parameters not bound by this or a previous execute")
            types = tuple(previous_types)
        # A long-data parameter is skipped like a NULL: mark it in a copy of the bitmap.
        nulls = bytearray(bitmap)
        for i in long_data:
            if 0 <= i < num_params:
                nulls[i >> 3] |= 1 << (i & 7)
        values, pos = _binary_values(buf, pos, binary_layout(types), bytes(nulls), 0)
        _expect_end(buf, pos)
        return cls(stmt_id, flags, iterations, bitmap, bool(bound), types, values)

    def serialize(self) -> bytes:
        out = [_EXEC_HEAD.pack(COM_STMT_EXECUTE, self.stmt_id, self.flags, self.iterations)]
        if not self.values:
            return out[0]
        n = len(self.values)
        if len(self.null_bitmap) != (n + 7) // 8 or len(self.param_types) != n:
            raise PacketError("parameter count, bitmap and types disagree")
        out += [self.null_bitmap, b"\x01" if self.new_params_bound else b"\x00"]
        if self.new_params_bound:
            out.append(bytes(b for t in self.param_types for b in t))
        layout = binary_layout(self.param_types)
        bitmap = self.null_bitmap
        for i, (v, width) in enumerate(zip(self.values, layout, strict=True)):
            if bitmap[i >> 3] & (1 << (i & 7)):
                if v is not None:
                    raise PacketError("a value for a parameter marked NULL")
                continue
            if v is not None:  # None with a clear bit: sent by COM_STMT_SEND_LONG_DATA
                out.append(_binary_value_bytes(v, width))
        return b"".join(out)


@dataclass(frozen=True, slots=True)
class ComChangeUser:
    """COM_CHANGE_USER: a new login on the same connection. The auth response has a 1-byte
    length under CLIENT_SECURE_CONNECTION, else it is NUL-terminated; the charset is required
    (every current client sends it); plugin and attributes are optional at the end."""

    user: str
    auth_response: bytes
    database: str
    charset: int
    auth_plugin: str | None
    attrs: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, payload: Buffer, capabilities: int) -> ComChangeUser:
        buf = _command(payload, COM_CHANGE_USER)
        user, pos = read_nul(buf, 1)
        # No lenenc form here: COM_CHANGE_USER has only the 1-byte length or NUL termination.
        auth, pos = _read_auth_response(buf, pos, bool(capabilities & CLIENT_SECURE_CONNECTION))
        db, pos = read_nul(buf, pos)
        (charset,) = _unpack(_U16, buf, pos)
        pos += 2
        plugin, attrs, pos = _read_plugin_and_attrs(buf, pos, capabilities)
        _expect_end(buf, pos)
        return cls(_dec(user), auth, _dec(db), charset, plugin, attrs)

    def serialize(self, capabilities: int) -> bytes:
        out = [b"\x11", _enc(self.user), b"\x00"]
        out += _auth_response_bytes(self.auth_response, bool(capabilities & CLIENT_SECURE_CONNECTION))
        out += [_enc(self.database), b"\x00", _U16.pack(self.charset)]
        plugin, attrs = self.auth_plugin, self.attrs
        if (plugin is not None and not capabilities & CLIENT_PLUGIN_AUTH) or (
            attrs and not capabilities & CLIENT_CONNECT_ATTRS
        ):
            raise PacketError("a field without its capability flag")
        if attrs and plugin is None and capabilities & CLIENT_PLUGIN_AUTH:
            raise PacketError("attributes need the plugin name before them")
        if plugin is not None:
            out += [_enc(plugin), b"\x00"]
        if attrs:
            out.append(_attrs_bytes(attrs))
        return b"".join(out)


@dataclass(frozen=True, slots=True)
class StmtPrepareOK:
    """The answer to COM_STMT_PREPARE: 0x00, statement id, column and parameter counts, a
    reserved 0x00 and warnings; 12 bytes (no metadata-follows byte: the proxy never advertises
    CLIENT_OPTIONAL_RESULTSET_METADATA)."""

    stmt_id: int
    num_columns: int
    num_params: int
    warnings: int

    @classmethod
    def parse(cls, payload: Buffer) -> StmtPrepareOK:
        buf = _buf(payload)
        if len(buf) != _PREPARE_OK.size:
            raise PacketError("a prepare OK is 12 bytes")
        status, stmt_id, ncols, nparams, reserved, warnings = _PREPARE_OK.unpack(buf)
        if status != 0 or reserved != 0:
            raise PacketError("not a prepare OK")
        return cls(stmt_id, ncols, nparams, warnings)

    def serialize(self) -> bytes:
        return _PREPARE_OK.pack(0, self.stmt_id, self.num_columns, self.num_params, 0, self.warnings)
