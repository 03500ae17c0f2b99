"""PostgreSQL wire messages (protocol 3.0): one frozen dataclass per message, parse and serialize.

Owns the byte layout of every frontend and backend message and nothing else: no state, no I/O,
no policy. `parse(body)` takes the message body (after the type byte and length); `serialize()`
returns the whole message including its header. Strings are decoded with `surrogateescape`, so
any byte sequence round-trips unchanged even when the client encoding is not UTF-8.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Protocol

Buffer = bytes | bytearray | memoryview

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_HDR = struct.Struct("!ci")

PROTOCOL_3_0 = 196608  # 3 << 16
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102


class MessageError(ValueError):
    """A message body does not match its layout (truncated, bad counts, missing terminator)."""


class Message(Protocol):
    TYPE: ClassVar[bytes]

    def serialize(self) -> bytes: ...


def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _dec(b: Buffer) -> str:
    return bytes(b).decode("utf-8", "surrogateescape")


def frame(mtype: bytes, payload: Buffer) -> bytes:
    """A typed message: type byte, int32 length (including itself), payload."""
    return _HDR.pack(mtype, len(payload) + 4) + bytes(payload)


class _Reader:
    """Cursor over a message body; every read checks bounds so malformed input raises MessageError.

    The body is copied into one `bytes` up front: C-level `find` and `unpack_from` then work in
    place, where slicing a memoryview per field (and copying the rest to find a NUL) did not.
    """

    __slots__ = ("buf", "pos")

    def __init__(self, buf: Buffer) -> None:
        self.buf = buf if isinstance(buf, bytes) else bytes(buf)
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise MessageError("truncated message")
        v = self.buf[self.pos : self.pos + n]
        self.pos += n
        return v

    def _unpack(self, st: struct.Struct) -> tuple[int, ...]:
        pos = self.pos
        if pos + st.size > len(self.buf):
            raise MessageError("truncated message")
        self.pos = pos + st.size
        return st.unpack_from(self.buf, pos)

    def i16(self) -> int:
        return self._unpack(_I16)[0]

    def i32(self) -> int:
        return self._unpack(_I32)[0]

    def u32(self) -> int:
        return self._unpack(_U32)[0]

    def byte(self) -> bytes:
        return self._take(1)

    def raw(self, n: int) -> bytes:
        return self._take(n)

    def rest(self) -> bytes:
        return self._take(len(self.buf) - self.pos)

    def cstr(self) -> str:
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise MessageError("missing string terminator")
        s = self.buf[self.pos : end].decode("utf-8", "surrogateescape")
        self.pos = end + 1
        return s

    def value(self) -> bytes | None:
        n = self.i32()
        if n == -1:
            return None
        return self.raw(n)

    def count(self) -> int:
        n = self.i16()
        if n < 0:
            raise MessageError("negative count")
        return n

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise MessageError("trailing bytes in message")


def _cstr(s: str) -> bytes:
    b = _enc(s)
    if b"\0" in b:
        raise MessageError("string contains NUL")
    return b + b"\0"


def _values(vals: tuple[bytes | None, ...]) -> bytes:
    out = [_I16.pack(len(vals))]
    for v in vals:
        if v is None:
            out.append(b"\xff\xff\xff\xff")
        else:
            out.append(_I32.pack(len(v)))
            out.append(v)
    return b"".join(out)


def _i16s(vals: tuple[int, ...]) -> bytes:
    return _I16.pack(len(vals)) + b"".join(_I16.pack(v) for v in vals)


# ---------------------------------------------------------------------------------------------
# Untyped startup-phase messages (length, then a 32-bit code; no type byte)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartupMessage:
    TYPE: ClassVar[bytes] = b""
    protocol: int
    params: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, body: Buffer) -> StartupMessage:
        r = _Reader(body)
        proto = r.i32()
        params: list[tuple[str, str]] = []
        while True:
            key = r.cstr()
            if key == "":
                break
            params.append((key, r.cstr()))
        r.done()
        return cls(proto, tuple(params))

    def serialize(self) -> bytes:
        payload = _I32.pack(self.protocol) + b"".join(_cstr(k) + _cstr(v) for k, v in self.params) + b"\0"
        return _I32.pack(len(payload) + 4) + payload

    def param(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.params:
            if k == key:
                return v
        return default


@dataclass(frozen=True, slots=True)
class SSLRequest:
    TYPE: ClassVar[bytes] = b""

    @classmethod
    def parse(cls, body: Buffer) -> SSLRequest:
        r = _Reader(body)
        if r.i32() != SSL_REQUEST_CODE:
            raise MessageError("not an SSLRequest")
        r.done()
        return cls()

    def serialize(self) -> bytes:
        return _I32.pack(8) + _I32.pack(SSL_REQUEST_CODE)


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    TYPE: ClassVar[bytes] = b""

    @classmethod
    def parse(cls, body: Buffer) -> GSSENCRequest:
        r = _Reader(body)
        if r.i32() != GSSENC_REQUEST_CODE:
            raise MessageError("not a GSSENCRequest")
        r.done()
        return cls()

    def serialize(self) -> bytes:
        return _I32.pack(8) + _I32.pack(GSSENC_REQUEST_CODE)


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """The secret is bytes: 4 bytes in protocol 3.0, up to 256 in 3.2."""

    TYPE: ClassVar[bytes] = b""
    pid: int
    secret: bytes

    @classmethod
    def parse(cls, body: Buffer) -> CancelRequest:
        r = _Reader(body)
        if r.i32() != CANCEL_REQUEST_CODE:
            raise MessageError("not a CancelRequest")
        pid = r.i32()
        secret = r.rest()
        if not 4 <= len(secret) <= 256:
            raise MessageError("bad cancel key length")
        return cls(pid, secret)

    def serialize(self) -> bytes:
        payload = _I32.pack(CANCEL_REQUEST_CODE) + _I32.pack(self.pid) + self.secret
        return _I32.pack(len(payload) + 4) + payload


def parse_startup(body: Buffer) -> StartupMessage | SSLRequest | GSSENCRequest | CancelRequest:
    """Dispatch an untyped startup-phase message on its 32-bit code."""
    if len(body) < 4:
        raise MessageError("startup packet too short")
    code = _I32.unpack(bytes(body[:4]))[0]
    if code == SSL_REQUEST_CODE:
        return SSLRequest.parse(body)
    if code == GSSENC_REQUEST_CODE:
        return GSSENCRequest.parse(body)
    if code == CANCEL_REQUEST_CODE:
        return CancelRequest.parse(body)
    return StartupMessage.parse(body)


# ---------------------------------------------------------------------------------------------
# Frontend messages
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PasswordMessage:
    """'p' in reply to cleartext or MD5 authentication; `password` includes no terminator."""

    TYPE: ClassVar[bytes] = b"p"
    password: bytes

    @classmethod
    def parse(cls, body: Buffer) -> PasswordMessage:
        b = bytes(body)
        if not b.endswith(b"\0"):
            raise MessageError("missing string terminator")
        return cls(b[:-1])

    def serialize(self) -> bytes:
        return frame(b"p", self.password + b"\0")


@dataclass(frozen=True, slots=True)
class SASLInitialResponse:
    TYPE: ClassVar[bytes] = b"p"
    mechanism: str
    data: bytes | None

    @classmethod
    def parse(cls, body: Buffer) -> SASLInitialResponse:
        r = _Reader(body)
        mech = r.cstr()
        data = r.value()
        r.done()
        return cls(mech, data)

    def serialize(self) -> bytes:
        data = b"\xff\xff\xff\xff" if self.data is None else _I32.pack(len(self.data)) + self.data
        return frame(b"p", _cstr(self.mechanism) + data)


@dataclass(frozen=True, slots=True)
class SASLResponse:
    TYPE: ClassVar[bytes] = b"p"
    data: bytes

    @classmethod
    def parse(cls, body: Buffer) -> SASLResponse:
        return cls(bytes(body))

    def serialize(self) -> bytes:
        return frame(b"p", self.data)


@dataclass(frozen=True, slots=True)
class Query:
    TYPE: ClassVar[bytes] = b"Q"
    sql: str

    @classmethod
    def parse(cls, body: Buffer) -> Query:
        r = _Reader(body)
        sql = r.cstr()
        r.done()
        return cls(sql)

    def serialize(self) -> bytes:
        return frame(b"Q", _cstr(self.sql))


@dataclass(frozen=True, slots=True)
class Parse:
    TYPE: ClassVar[bytes] = b"P"
    name: str
    sql: str
    param_types: tuple[int, ...] = ()

    @classmethod
    def parse(cls, body: Buffer) -> Parse:
        r = _Reader(body)
        name = r.cstr()
        sql = r.cstr()
        n = r.count()
        types = tuple(r.u32() for _ in range(n))
        r.done()
        return cls(name, sql, types)

    def serialize(self) -> bytes:
        types = _I16.pack(len(self.param_types)) + b"".join(_U32.pack(t) for t in self.param_types)
        return frame(b"P", _cstr(self.name) + _cstr(self.sql) + types)


@dataclass(frozen=True, slots=True)
class Bind:
    TYPE: ClassVar[bytes] = b"B"
    portal: str
    statement: str
    param_formats: tuple[int, ...] = ()
    params: tuple[bytes | None, ...] = ()
    result_formats: tuple[int, ...] = ()

    @classmethod
    def parse(cls, body: Buffer) -> Bind:
        r = _Reader(body)
        portal = r.cstr()
        stmt = r.cstr()
        pf = tuple(r.i16() for _ in range(r.count()))
        params = tuple(r.value() for _ in range(r.count()))
        rf = tuple(r.i16() for _ in range(r.count()))
        r.done()
        return cls(portal, stmt, pf, params, rf)

    def serialize(self) -> bytes:
        return frame(
            b"B",
            _cstr(self.portal)
            + _cstr(self.statement)
            + _i16s(self.param_formats)
            + _values(self.params)
            + _i16s(self.result_formats),
        )


@dataclass(frozen=True, slots=True)
class Describe:
    """kind is b'S' (prepared statement) or b'P' (portal)."""

    TYPE: ClassVar[bytes] = b"D"
    kind: bytes
    name: str

    @classmethod
    def parse(cls, body: Buffer) -> Describe:
        r = _Reader(body)
        kind = r.byte()
        if kind not in (b"S", b"P"):
            raise MessageError("bad Describe kind")
        name = r.cstr()
        r.done()
        return cls(kind, name)

    def serialize(self) -> bytes:
        return frame(b"D", self.kind + _cstr(self.name))


@dataclass(frozen=True, slots=True)
class Execute:
    TYPE: ClassVar[bytes] = b"E"
    portal: str
    max_rows: int = 0

    @classmethod
    def parse(cls, body: Buffer) -> Execute:
        r = _Reader(body)
        portal = r.cstr()
        n = r.i32()
        r.done()
        return cls(portal, n)

    def serialize(self) -> bytes:
        return frame(b"E", _cstr(self.portal) + _I32.pack(self.max_rows))


@dataclass(frozen=True, slots=True)
class Close:
    TYPE: ClassVar[bytes] = b"C"
    kind: bytes
    name: str

    @classmethod
    def parse(cls, body: Buffer) -> Close:
        r = _Reader(body)
        kind = r.byte()
        if kind not in (b"S", b"P"):
            raise MessageError("bad Close kind")
        name = r.cstr()
        r.done()
        return cls(kind, name)

    def serialize(self) -> bytes:
        return frame(b"C", self.kind + _cstr(self.name))


@dataclass(frozen=True, slots=True)
class _Empty:
    """Base for messages without a body."""

    TYPE: ClassVar[bytes] = b""

    @classmethod
    def parse(cls, body: Buffer):  # type: ignore[no-untyped-def]
        if len(body):
            raise MessageError("unexpected message body")
        return cls()

    def serialize(self) -> bytes:
        return frame(self.TYPE, b"")


@dataclass(frozen=True, slots=True)
class Sync(_Empty):
    TYPE: ClassVar[bytes] = b"S"


@dataclass(frozen=True, slots=True)
class Flush(_Empty):
    TYPE: ClassVar[bytes] = b"H"


@dataclass(frozen=True, slots=True)
class Terminate(_Empty):
    TYPE: ClassVar[bytes] = b"X"


@dataclass(frozen=True, slots=True)
class FunctionCall:
    TYPE: ClassVar[bytes] = b"F"
    function_oid: int
    arg_formats: tuple[int, ...] = ()
    args: tuple[bytes | None, ...] = ()
    result_format: int = 0

    @classmethod
    def parse(cls, body: Buffer) -> FunctionCall:
        r = _Reader(body)
        oid = r.u32()
        af = tuple(r.i16() for _ in range(r.count()))
        args = tuple(r.value() for _ in range(r.count()))
        rf = r.i16()
        r.done()
        return cls(oid, af, args, rf)

    def serialize(self) -> bytes:
        return frame(
            b"F",
            _U32.pack(self.function_oid)
            + _i16s(self.arg_formats)
            + _values(self.args)
            + _I16.pack(self.result_format),
        )


@dataclass(frozen=True, slots=True)
class CopyData:
    """'d' in both directions."""

    TYPE: ClassVar[bytes] = b"d"
    data: bytes

    @classmethod
    def parse(cls, body: Buffer) -> CopyData:
        return cls(bytes(body))

    def serialize(self) -> bytes:
        return frame(b"d", self.data)


@dataclass(frozen=True, slots=True)
class CopyDone(_Empty):
    TYPE: ClassVar[bytes] = b"c"


@dataclass(frozen=True, slots=True)
class CopyFail:
    TYPE: ClassVar[bytes] = b"f"
    message: str

    @classmethod
    def parse(cls, body: Buffer) -> CopyFail:
        r = _Reader(body)
        m = r.cstr()
        r.done()
        return cls(m)

    def serialize(self) -> bytes:
        return frame(b"f", _cstr(self.message))


# ---------------------------------------------------------------------------------------------
# Backend messages
# ---------------------------------------------------------------------------------------------

AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12


@dataclass(frozen=True, slots=True)
class AuthenticationOk:
    TYPE: ClassVar[bytes] = b"R"

    def serialize(self) -> bytes:
        return frame(b"R", _I32.pack(AUTH_OK))


@dataclass(frozen=True, slots=True)
class AuthenticationCleartextPassword:
    TYPE: ClassVar[bytes] = b"R"

    def serialize(self) -> bytes:
        return frame(b"R", _I32.pack(AUTH_CLEARTEXT))


@dataclass(frozen=True, slots=True)
class AuthenticationMD5Password:
    TYPE: ClassVar[bytes] = b"R"
    salt: bytes

    def serialize(self) -> bytes:
        return frame(b"R", _I32.pack(AUTH_MD5) + self.salt)


@dataclass(frozen=True, slots=True)
class AuthenticationSASL:
    TYPE: ClassVar[bytes] = b"R"
    mechanisms: tuple[str, ...]

    def serialize(self) -> bytes:
        return frame(b"R", _I32.pack(AUTH_SASL) + b"".join(_cstr(m) for m in self.mechanisms) + b"\0")


@dataclass(frozen=True, slots=True)
class AuthenticationSASLContinue:
    TYPE: ClassVar[bytes] = b"R"
    data: bytes

    def serialize(self) -> bytes:
        return frame(b"R", _I32.pack(AUTH_SASL_CONTINUE) + self.data)


@dataclass(frozen=True, slots=True)
class AuthenticationSASLFinal:
    TYPE: ClassVar[bytes] = b"R"
    data: bytes

    def serialize(self) -> bytes:
        return frame(b"R", _I32.pack(AUTH_SASL_FINAL) + self.data)


@dataclass(frozen=True, slots=True)
class AuthenticationOther:
    """Kerberos, GSS, SSPI and anything else the proxy does not speak (kept to refuse them clearly)."""

    TYPE: ClassVar[bytes] = b"R"
    code: int
    data: bytes = b""

    def serialize(self) -> bytes:
        return frame(b"R", _I32.pack(self.code) + self.data)


Authentication = (
    AuthenticationOk
    | AuthenticationCleartextPassword
    | AuthenticationMD5Password
    | AuthenticationSASL
    | AuthenticationSASLContinue
    | AuthenticationSASLFinal
    | AuthenticationOther
)


def parse_authentication(body: Buffer) -> Authentication:
    r = _Reader(body)
    code = r.i32()
    if code == AUTH_OK:
        r.done()
        return AuthenticationOk()
    if code == AUTH_CLEARTEXT:
        r.done()
        return AuthenticationCleartextPassword()
    if code == AUTH_MD5:
        salt = r.raw(4)
        r.done()
        return AuthenticationMD5Password(salt)
    if code == AUTH_SASL:
        mechs: list[str] = []
        while True:
            m = r.cstr()
            if not m:
                break
            mechs.append(m)
        r.done()
        return AuthenticationSASL(tuple(mechs))
    if code == AUTH_SASL_CONTINUE:
        return AuthenticationSASLContinue(r.rest())
    if code == AUTH_SASL_FINAL:
        return AuthenticationSASLFinal(r.rest())
    return AuthenticationOther(code, r.rest())


@dataclass(frozen=True, slots=True)
class ParameterStatus:
    TYPE: ClassVar[bytes] = b"S"
    name: str
    value: str

    @classmethod
    def parse(cls, body: Buffer) -> ParameterStatus:
        r = _Reader(body)
        n, v = r.cstr(), r.cstr()
        r.done()
        return cls(n, v)

    def serialize(self) -> bytes:
        return frame(b"S", _cstr(self.name) + _cstr(self.value))


@dataclass(frozen=True, slots=True)
class BackendKeyData:
    TYPE: ClassVar[bytes] = b"K"
    pid: int
    secret: bytes

    @classmethod
    def parse(cls, body: Buffer) -> BackendKeyData:
        r = _Reader(body)
        pid = r.i32()
        secret = r.rest()
        if not 4 <= len(secret) <= 256:
            raise MessageError("bad cancel key length")
        return cls(pid, secret)

    def serialize(self) -> bytes:
        return frame(b"K", _I32.pack(self.pid) + self.secret)


@dataclass(frozen=True, slots=True)
class ReadyForQuery:
    """status: b'I' idle, b'T' in a transaction block, b'E' in a failed transaction block."""

    TYPE: ClassVar[bytes] = b"Z"
    status: bytes

    @classmethod
    def parse(cls, body: Buffer) -> ReadyForQuery:
        r = _Reader(body)
        s = r.byte()
        r.done()
        if s not in (b"I", b"T", b"E"):
            raise MessageError("bad transaction status")
        return cls(s)

    def serialize(self) -> bytes:
        return frame(b"Z", self.status)


@dataclass(frozen=True, slots=True)
class FieldDescription:
    name: str
    table_oid: int
    column: int
    type_oid: int
    type_size: int
    type_mod: int
    format: int


_FIELD = struct.Struct("!IhIhih")


@dataclass(frozen=True, slots=True)
class RowDescription:
    TYPE: ClassVar[bytes] = b"T"
    fields: tuple[FieldDescription, ...]

    @classmethod
    def parse(cls, body: Buffer) -> RowDescription:
        r = _Reader(body)
        fields = []
        for _ in range(r.count()):
            name = r.cstr()
            fields.append(FieldDescription(name, *r._unpack(_FIELD)))
        r.done()
        return cls(tuple(fields))

    def serialize(self) -> bytes:
        parts = [_I16.pack(len(self.fields))]
        for f in self.fields:
            parts.append(_cstr(f.name))
            parts.append(_FIELD.pack(f.table_oid, f.column, f.type_oid, f.type_size, f.type_mod, f.format))
        return frame(b"T", b"".join(parts))


@dataclass(frozen=True, slots=True)
class DataRow:
    TYPE: ClassVar[bytes] = b"D"
    values: tuple[bytes | None, ...]

    @classmethod
    def parse(cls, body: Buffer) -> DataRow:
        return cls(tuple(parse_datarow_values(body)))

    def serialize(self) -> bytes:
        return frame(b"D", _values(self.values))


def parse_datarow_values(body: Buffer) -> list[bytes | None]:
    """DataRow column values; the hot path of row masking, so it avoids the generic reader."""
    b = bytes(body)
    if len(b) < 2:
        raise MessageError("truncated DataRow")
    n = _I16.unpack_from(b, 0)[0]
    if n < 0:
        raise MessageError("negative count")
    pos = 2
    out: list[bytes | None] = []
    unpack = _I32.unpack_from
    end = len(b)
    for _ in range(n):
        if pos + 4 > end:
            raise MessageError("truncated DataRow")
        ln = unpack(b, pos)[0]
        pos += 4
        if ln == -1:
            out.append(None)
            continue
        if ln < 0 or pos + ln > end:
            raise MessageError("truncated DataRow")
        out.append(b[pos : pos + ln])
        pos += ln
    if pos != end:
        raise MessageError("trailing bytes in message")
    return out


def serialize_datarow(values: list[bytes | None]) -> bytes:
    payload = _values(tuple(values))
    return _HDR.pack(b"D", len(payload) + 4) + payload


@dataclass(frozen=True, slots=True)
class CommandComplete:
    TYPE: ClassVar[bytes] = b"C"
    tag: str

    @classmethod
    def parse(cls, body: Buffer) -> CommandComplete:
        r = _Reader(body)
        t = r.cstr()
        r.done()
        return cls(t)

    def serialize(self) -> bytes:
        return frame(b"C", _cstr(self.tag))


@dataclass(frozen=True, slots=True)
class EmptyQueryResponse(_Empty):
    TYPE: ClassVar[bytes] = b"I"


@dataclass(frozen=True, slots=True)
class _Fields:
    """ErrorResponse / NoticeResponse: (field code, value) pairs in wire order."""

    TYPE: ClassVar[bytes] = b""
    fields: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, body: Buffer):  # type: ignore[no-untyped-def]
        r = _Reader(body)
        out: list[tuple[str, str]] = []
        while True:
            code = r.byte()
            if code == b"\0":
                break
            out.append((_dec(code), r.cstr()))
        r.done()
        return cls(tuple(out))

    def serialize(self) -> bytes:
        return frame(self.TYPE, b"".join(_enc(c) + _cstr(v) for c, v in self.fields) + b"\0")

    def get(self, code: str, default: str = "") -> str:
        for c, v in self.fields:
            if c == code:
                return v
        return default

    @property
    def code(self) -> str:
        return self.get("C")

    @property
    def message(self) -> str:
        return self.get("M")


@dataclass(frozen=True, slots=True)
class ErrorResponse(_Fields):
    TYPE: ClassVar[bytes] = b"E"


@dataclass(frozen=True, slots=True)
class NoticeResponse(_Fields):
    TYPE: ClassVar[bytes] = b"N"


@dataclass(frozen=True, slots=True)
class NotificationResponse:
    TYPE: ClassVar[bytes] = b"A"
    pid: int
    channel: str
    payload: str

    @classmethod
    def parse(cls, body: Buffer) -> NotificationResponse:
        r = _Reader(body)
        pid = r.i32()
        ch, pl = r.cstr(), r.cstr()
        r.done()
        return cls(pid, ch, pl)

    def serialize(self) -> bytes:
        return frame(b"A", _I32.pack(self.pid) + _cstr(self.channel) + _cstr(self.payload))


@dataclass(frozen=True, slots=True)
class ParseComplete(_Empty):
    TYPE: ClassVar[bytes] = b"1"


@dataclass(frozen=True, slots=True)
class BindComplete(_Empty):
    TYPE: ClassVar[bytes] = b"2"


@dataclass(frozen=True, slots=True)
class CloseComplete(_Empty):
    TYPE: ClassVar[bytes] = b"3"


@dataclass(frozen=True, slots=True)
class NoData(_Empty):
    TYPE: ClassVar[bytes] = b"n"


@dataclass(frozen=True, slots=True)
class PortalSuspended(_Empty):
    TYPE: ClassVar[bytes] = b"s"


@dataclass(frozen=True, slots=True)
class ParameterDescription:
    TYPE: ClassVar[bytes] = b"t"
    type_oids: tuple[int, ...]

    @classmethod
    def parse(cls, body: Buffer) -> ParameterDescription:
        r = _Reader(body)
        oids = tuple(r.u32() for _ in range(r.count()))
        r.done()
        return cls(oids)

    def serialize(self) -> bytes:
        return frame(b"t", _I16.pack(len(self.type_oids)) + b"".join(_U32.pack(o) for o in self.type_oids))


@dataclass(frozen=True, slots=True)
class _CopyResponse:
    """CopyIn/Out/BothResponse: overall format (0 text, 1 binary) and per-column formats."""

    TYPE: ClassVar[bytes] = b""
    format: int
    column_formats: tuple[int, ...]

    @classmethod
    def parse(cls, body: Buffer):  # type: ignore[no-untyped-def]
        r = _Reader(body)
        fmt = r.byte()[0]
        cols = tuple(r.i16() for _ in range(r.count()))
        r.done()
        return cls(fmt, cols)

    def serialize(self) -> bytes:
        return frame(self.TYPE, bytes([self.format]) + _i16s(self.column_formats))


@dataclass(frozen=True, slots=True)
class CopyInResponse(_CopyResponse):
    TYPE: ClassVar[bytes] = b"G"


@dataclass(frozen=True, slots=True)
class CopyOutResponse(_CopyResponse):
    TYPE: ClassVar[bytes] = b"H"


@dataclass(frozen=True, slots=True)
class CopyBothResponse(_CopyResponse):
    TYPE: ClassVar[bytes] = b"W"


@dataclass(frozen=True, slots=True)
class FunctionCallResponse:
    TYPE: ClassVar[bytes] = b"V"
    value: bytes | None

    @classmethod
    def parse(cls, body: Buffer) -> FunctionCallResponse:
        r = _Reader(body)
        v = r.value()
        r.done()
        return cls(v)

    def serialize(self) -> bytes:
        v = b"\xff\xff\xff\xff" if self.value is None else _I32.pack(len(self.value)) + self.value
        return frame(b"V", v)


@dataclass(frozen=True, slots=True)
class NegotiateProtocolVersion:
    TYPE: ClassVar[bytes] = b"v"
    newest_minor: int
    unrecognized: tuple[str, ...]

    @classmethod
    def parse(cls, body: Buffer) -> NegotiateProtocolVersion:
        r = _Reader(body)
        minor = r.i32()
        n = r.i32()
        if n < 0:
            raise MessageError("negative count")
        opts = tuple(r.cstr() for _ in range(n))
        r.done()
        return cls(minor, opts)

    def serialize(self) -> bytes:
        return frame(
            b"v",
            _I32.pack(self.newest_minor)
            + _I32.pack(len(self.unrecognized))
            + b"".join(_cstr(o) for o in self.unrecognized),
        )


# Type byte -> class for messages whose meaning does not depend on the session state. 'p' (the
# password family) and 'R' (authentication) need context and are parsed by their own functions.
FRONTEND: dict[bytes, type] = {
    c.TYPE: c
    for c in (
        Query,
        Parse,
        Bind,
        Describe,
        Execute,
        Close,
        Sync,
        Flush,
        Terminate,
        FunctionCall,
        CopyData,
        CopyDone,
        CopyFail,
    )
}
BACKEND: dict[bytes, type] = {
    c.TYPE: c
    for c in (
        ParameterStatus,
        BackendKeyData,
        ReadyForQuery,
        RowDescription,
        DataRow,
        CommandComplete,
        EmptyQueryResponse,
        ErrorResponse,
        NoticeResponse,
        NotificationResponse,
        ParseComplete,
        BindComplete,
        CloseComplete,
        NoData,
        ParameterDescription,
        PortalSuspended,
        CopyInResponse,
        CopyOutResponse,
        CopyBothResponse,
        FunctionCallResponse,
        NegotiateProtocolVersion,
        CopyData,
        CopyDone,
    )
}


def parse_frontend(mtype: bytes, body: Buffer) -> object:
    cls = FRONTEND.get(mtype)
    if cls is None:
        raise MessageError(f"unknown frontend message type {mtype!r}")
    return cls.parse(body)


def parse_backend(mtype: bytes, body: Buffer) -> object:
    if mtype == b"R":
        return parse_authentication(body)
    cls = BACKEND.get(mtype)
    if cls is None:
        raise MessageError(f"unknown backend message type {mtype!r}")
    return cls.parse(body)


# ---------------------------------------------------------------------------------------------
# The hot path's readers: the one field a relay needs of a message, without its object
# ---------------------------------------------------------------------------------------------
# Each accepts and refuses exactly the bodies its message's `parse` does (MessageError, same
# words) and returns what `parse` would put in the field it names; tests/proxy/pg/test_messages.py
# checks them against `parse` on random bodies. A point lookup reads four or five messages a
# transaction, and the generic reader's call per field was a tenth of the session's work.


def _only_cstr(body: Buffer) -> str:
    b = body if isinstance(body, bytes) else bytes(body)
    end = b.find(b"\0")
    if end < 0:
        raise MessageError("missing string terminator")
    if end != len(b) - 1:
        raise MessageError("trailing bytes in message")
    return b[:end].decode("utf-8", "surrogateescape")


def query_sql(body: Buffer) -> str:
    """`Query.parse(body).sql`."""
    return _only_cstr(body)


def command_tag(body: Buffer) -> str:
    """`CommandComplete.parse(body).tag`."""
    return _only_cstr(body)


def ready_status(body: Buffer) -> bytes:
    """`ReadyForQuery.parse(body).status`."""
    s = body if isinstance(body, bytes) else bytes(body)
    if s == b"I" or s == b"T" or s == b"E":
        return s
    if not s:
        raise MessageError("truncated message")
    if len(s) > 1:
        raise MessageError("trailing bytes in message")
    raise MessageError("bad transaction status")


def execute_portal(body: Buffer) -> str:
    """`Execute.parse(body).portal` (its row count is the server's business)."""
    b = body if isinstance(body, bytes) else bytes(body)
    end = b.find(b"\0")
    if end < 0:
        raise MessageError("missing string terminator")
    rest = len(b) - end - 1
    if rest != 4:
        raise MessageError("truncated message" if rest < 4 else "trailing bytes in message")
    return b[:end].decode("utf-8", "surrogateescape")


def bind_head(body: Buffer) -> tuple[str, str, tuple[int, ...]]:
    """(portal, statement, result_formats) of `Bind.parse(body)`: the parameters are checked
    for their layout but not copied out (the relay forwards them as they came)."""
    b = body if isinstance(body, bytes) else bytes(body)
    size = len(b)
    p1 = b.find(b"\0")
    if p1 < 0:
        raise MessageError("missing string terminator")
    p2 = b.find(b"\0", p1 + 1)
    if p2 < 0:
        raise MessageError("missing string terminator")
    portal = b[:p1].decode("utf-8", "surrogateescape")
    statement = b[p1 + 1 : p2].decode("utf-8", "surrogateescape")
    i16 = _I16.unpack_from
    i32 = _I32.unpack_from
    pos = p2 + 1
    # Parameter format codes: skipped whole.
    if pos + 2 > size:
        raise MessageError("truncated message")
    n = i16(b, pos)[0]
    if n < 0:
        raise MessageError("negative count")
    pos += 2 + 2 * n
    # Parameter values: each length checked, the value skipped.
    if pos + 2 > size:
        raise MessageError("truncated message")
    n = i16(b, pos)[0]
    if n < 0:
        raise MessageError("negative count")
    pos += 2
    for _ in range(n):
        if pos + 4 > size:
            raise MessageError("truncated message")
        ln = i32(b, pos)[0]
        pos += 4
        if ln == -1:
            continue
        if ln < 0 or pos + ln > size:
            raise MessageError("truncated message")
        pos += ln
    if pos + 2 > size:
        raise MessageError("truncated message")
    n = i16(b, pos)[0]
    if n < 0:
        raise MessageError("negative count")
    pos += 2
    if pos + 2 * n > size:
        raise MessageError("truncated message")
    formats = struct.unpack_from(f"!{n}h", b, pos) if n else ()
    if pos + 2 * n != size:
        raise MessageError("trailing bytes in message")
    return portal, statement, formats
