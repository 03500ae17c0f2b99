"""Masking of PostgreSQL result values: DataRow columns (text and binary formats) and COPY rows.

Owns the translation between wire encodings (text, binary int2/4/8, numeric, bytea, jsonb) and
the type-preserving maskers the Gate hands out. A plan is built once per result description
(RowDescription or CopyOutResponse) and then applied to every row. Knows nothing of sessions,
sockets or policy: it is told which action applies to which output position.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

from policies.decision import Allow, ColumnMask
from proxy.pg.messages import FieldDescription, MessageError

# Type OIDs (pg_type.dat).
BOOL, BYTEA, CHAR, NAME, INT8, INT2, INT4, TEXT, OID = 16, 17, 18, 19, 20, 21, 23, 25, 26
JSON, XML, FLOAT4, FLOAT8, UNKNOWN, MONEY, BPCHAR, VARCHAR = 114, 142, 700, 701, 705, 790, 1042, 1043
DATE, TIME, TIMESTAMP, TIMESTAMPTZ, INTERVAL, TIMETZ, NUMERIC, UUID, JSONB = (
    1082,
    1083,
    1114,
    1184,
    1186,
    1266,
    1700,
    2950,
    3802,
)

TEXTLIKE = frozenset({TEXT, VARCHAR, BPCHAR, NAME, CHAR, UNKNOWN, XML})
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_HDR_D = struct.Struct("!ci")
INTS = {INT2: struct.Struct("!h"), INT4: struct.Struct("!i"), INT8: struct.Struct("!q")}
INT_RANGE = {INT2: 2**15, INT4: 2**31, INT8: 2**63}
# Text-format values of these types cannot carry free text: detectors would only break them.
NOT_FREE_TEXT = frozenset(
    {BOOL, BYTEA, INT2, INT4, INT8, OID, FLOAT4, FLOAT8, MONEY, NUMERIC}
    | {DATE, TIME, TIMESTAMP, TIMESTAMPTZ, INTERVAL, TIMETZ, UUID}
)

# Types whose text form cannot hold a masked value (`138****5678` is no date, uuid, inet or
# array literal): a masked value of these types is sent as NULL, which every driver can read and
# which reveals nothing. Arrays: the common built-in array OIDs (`array_agg(phone)` and the like).
INET, CIDR = 869, 650
ARRAYS = frozenset(
    {199, 1000, 1001, 1002, 1003, 1005, 1007, 1009, 1014, 1015, 1016, 1021, 1022, 1041, 1115, 1182}
    | {1183, 1185, 1187, 1231, 1270, 2951, 3807}
)
NULL_WHEN_MASKED = (NOT_FREE_TEXT - {BYTEA, INT2, INT4, INT8, NUMERIC}) | ARRAYS | {INET, CIDR}

ValueFn = Callable[[bytes], bytes | None]


class Unmaskable(Exception):
    """A masked column arrives in an encoding maskgate cannot mask: the statement is refused."""

    def __init__(self, column: str) -> None:
        super().__init__(f'column "{column}" cannot be masked in binary format')
        self.column = column


class MaskerSource(Protocol):
    """What row masking needs from the Gate: per-column value maskers and text detectors."""

    def value_masker(self, cls: str | None, action: str) -> Callable[[Any], Any]: ...

    def text_masker(self, classes: frozenset[str]) -> Callable[[str], str]: ...


def codec(client_encoding: str) -> str:
    """Python codec for a PostgreSQL client_encoding (values are sent in the client's encoding)."""
    e = client_encoding.upper().replace("-", "").replace("_", "")
    return {
        "UTF8": "utf-8",
        "UNICODE": "utf-8",
        "SQLASCII": "latin-1",
        "LATIN1": "latin-1",
        "WIN1252": "cp1252",
        "GBK": "gbk",
        "GB18030": "gb18030",
        "EUCCN": "euc-cn",
        "BIG5": "big5",
    }.get(e, "utf-8")


# ------------------------------------------------------------------ numeric helpers


def mask_numeric_text(s: str, int_masker: Callable[[int], int]) -> str:
    """Mask a numeric's integer digits with the int masker, zero its fraction, keep its shape."""
    if s in ("NaN", "Infinity", "-Infinity"):
        return s
    neg = s.startswith("-")
    body = s[1:] if neg else s
    ipart, dot, frac = body.partition(".")
    if not ipart.isdigit() or (frac and not frac.isdigit()):
        return s  # exponent forms do not occur in numeric output; leave anything odd alone
    masked = str(abs(int(int_masker(int(ipart))))).zfill(len(ipart))[-len(ipart) :]
    return ("-" if neg else "") + masked + dot + "0" * len(frac)


_NUM_HDR = struct.Struct("!hhHh")
_NUMERIC_SPECIAL = {0xC000: "NaN", 0xD000: "Infinity", 0xF000: "-Infinity"}


def numeric_from_binary(b: bytes) -> str:
    ndigits, weight, sign, dscale = _NUM_HDR.unpack_from(b, 0)
    if sign in _NUMERIC_SPECIAL:
        return _NUMERIC_SPECIAL[sign]
    digits = struct.unpack_from(f"!{ndigits}h", b, 8)
    if not digits:
        val = Decimal(0)
    else:
        val = Decimal("".join(f"{d:04d}" for d in digits) + f"E{4 * (weight - ndigits + 1)}")
    if sign == 0x4000:
        val = -val
    return f"{val:.{dscale}f}"


def numeric_to_binary(s: str) -> bytes:
    for code, name in _NUMERIC_SPECIAL.items():
        if s == name:
            return _NUM_HDR.pack(0, 0, code, 0)
    neg = s.startswith("-")
    body = s[1:] if neg else s
    ipart, _, frac = body.partition(".")
    dscale = len(frac)
    ipart = ipart.lstrip("0")
    ipart = "0" * (-len(ipart) % 4) + ipart
    frac = frac + "0" * (-len(frac) % 4)
    groups = [int(ipart[i : i + 4]) for i in range(0, len(ipart), 4)]
    weight = len(groups) - 1
    groups += [int(frac[i : i + 4]) for i in range(0, len(frac), 4)]
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight = 0
    sign = 0x4000 if neg and groups else 0
    return _NUM_HDR.pack(len(groups), weight, sign, dscale) + struct.pack(f"!{len(groups)}h", *groups)


# ------------------------------------------------------------------ bytea text format


def bytea_from_text(s: bytes) -> bytes:
    if s.startswith(b"\\x"):
        return bytes.fromhex(s[2:].decode("ascii"))
    out = bytearray()  # escape format: \\ and \ooo
    i = 0
    while i < len(s):
        c = s[i]
        if c == 0x5C and s[i + 1 : i + 2] == b"\\":
            out.append(0x5C)
            i += 2
        elif c == 0x5C:
            out.append(int(s[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(c)
            i += 1
    return bytes(out)


# ------------------------------------------------------------------ per-column functions


def _text_fn(fn: Callable[[str], Any], enc: str) -> ValueFn:
    def apply(raw: bytes) -> bytes | None:
        s = raw.decode(enc, "surrogateescape")
        out = fn(s)
        if out is None:
            return None
        if out is s:
            return raw
        return str(out).encode(enc, "surrogateescape")

    return apply


def _null(_raw: bytes) -> bytes | None:
    return None


def _int_fn(vm: Callable[[Any], Any], oid: int, binary: bool) -> ValueFn:
    lim = INT_RANGE[oid]
    st = INTS[oid]

    def masked(v: int) -> int | None:
        out = vm(v)
        return None if out is None else max(-lim, min(lim - 1, int(out)))

    if binary:

        def apply_bin(raw: bytes) -> bytes | None:
            out = masked(st.unpack(raw)[0])
            return None if out is None else st.pack(out)

        return apply_bin

    def apply_text(raw: bytes) -> bytes | None:
        out = masked(int(raw))
        return None if out is None else str(out).encode()

    return apply_text


def _numeric_fn(vm: Callable[[Any], Any], binary: bool) -> ValueFn:
    def to_int(v: int) -> int:
        out = vm(v)
        return 0 if out is None else int(out)

    if binary:
        return lambda raw: numeric_to_binary(mask_numeric_text(numeric_from_binary(raw), to_int))
    return lambda raw: mask_numeric_text(raw.decode("ascii"), to_int).encode("ascii")


def _bytea_fn(vm: Callable[[Any], Any], binary: bool) -> ValueFn:
    if binary:
        return lambda raw: vm(raw)

    def apply(raw: bytes) -> bytes | None:
        out = vm(bytea_from_text(raw))
        return None if out is None else b"\\x" + bytes(out).hex().encode()

    return apply


def _jsonb_binary(fn: ValueFn) -> ValueFn:
    # Binary jsonb is a version byte (1) followed by the JSON text.
    def apply(raw: bytes) -> bytes | None:
        out = fn(raw[1:])
        return None if out is None else raw[:1] + out

    return apply


def column_fn(
    f: FieldDescription, fmt: int, cm: ColumnMask | None, detect: frozenset[str], src: MaskerSource, enc: str
) -> ValueFn | None:
    """The function for one output column, or None to pass its values untouched."""
    oid = f.type_oid
    binary = fmt == 1
    action = cm.action if cm is not None else "clear"
    if action == "clear":
        if not detect:
            return None
        det = _text_fn(src.text_masker(detect), enc)
        if oid in TEXTLIKE or oid == JSON:
            return det
        if oid == JSONB:
            return _jsonb_binary(det) if binary else det
        if not binary and oid not in NOT_FREE_TEXT:
            return det  # arrays, composites, enums and other types whose text may carry PII
        return None
    if action == "null":
        return _null
    assert cm is not None
    if oid in (JSON, JSONB):
        classes = detect | ({cm.cls} if cm.cls else frozenset())
        det = _text_fn(src.text_masker(frozenset(classes)), enc)
        return _jsonb_binary(det) if binary and oid == JSONB else det
    vm = src.value_masker(cm.cls, action)
    if oid in TEXTLIKE:
        return _text_fn(vm, enc)
    if oid in INTS:
        return _int_fn(vm, oid, binary)
    if oid == NUMERIC:
        return _numeric_fn(vm, binary)
    if oid == BYTEA:
        return _bytea_fn(vm, binary)
    if binary:
        raise Unmaskable(f.name)
    if oid in NULL_WHEN_MASKED:
        return _null
    # Text format of another type (a domain over text, an enum, …): mask the text. A typed
    # driver may fail to parse the result, which is preferable to passing the value clear.
    return _text_fn(vm, enc)


class RowPlan:
    """Per-column functions for one result; `apply` rewrites a DataRow body when needed."""

    __slots__ = ("fns", "ncols")

    def __init__(self, fns: list[ValueFn | None]) -> None:
        self.fns = fns
        self.ncols = len(fns)

    def apply(self, buf: bytes, start: int, end: int) -> tuple[bytes | None, int]:
        """Mask the DataRow message at buf[start:end] (type byte included).

        Returns (the new whole message, or None if no value changed; number of values changed).
        Works on offsets: only values with a masker are sliced out, and the new message is the
        untouched byte ranges spliced around the changed values.
        """
        i32 = _I32.unpack_from
        if end - start < 7:
            raise MessageError("truncated DataRow")
        n = _I16.unpack_from(buf, start + 5)[0]
        pos = start + 7
        last = start + 5
        fns = self.fns
        ncols = self.ncols
        pieces: list[bytes] | None = None
        changed = 0
        size = end - start - 1  # the new body length, adjusted as values change
        for i in range(n):
            if pos + 4 > end:
                raise MessageError("truncated DataRow")
            ln = i32(buf, pos)[0]
            vstart = pos + 4
            if ln < 0:
                if ln != -1:
                    raise MessageError("bad value length")
                pos = vstart
                continue
            vend = vstart + ln
            if vend > end:
                raise MessageError("truncated DataRow")
            fn = fns[i] if i < ncols else None
            if fn is not None:
                v = buf[vstart:vend]
                try:
                    out = fn(v)
                except (ValueError, ArithmeticError, struct.error) as e:
                    # Not a value of its declared type (b"abc" as int8): fail closed, as for any
                    # message that does not match its layout.
                    raise MessageError(f"column {i} value does not match its type") from e
                if out is not v and out != v:
                    if pieces is None:
                        pieces = [b""]  # the header, filled in below: one join builds the row
                    pieces.append(buf[last:pos])
                    if out is None:
                        pieces.append(b"\xff\xff\xff\xff")
                        size -= ln
                    else:
                        pieces.append(_I32.pack(len(out)))
                        pieces.append(out)
                        size += len(out) - ln
                    last = vend
                    changed += 1
            pos = vend
        if pos != end:
            raise MessageError("trailing bytes in DataRow")
        if pieces is None:
            return None, 0
        pieces.append(buf[last:end])
        pieces[0] = _HDR_D.pack(b"D", size)
        return b"".join(pieces), changed


def plan_rows(
    fields: tuple[FieldDescription, ...],
    formats: tuple[int, ...] | None,
    allow: Allow,
    src: MaskerSource,
    enc: str = "utf-8",
) -> RowPlan | None:
    """Build the plan for a result, or None when no column needs work. Raises Unmaskable.

    `formats` are the result format codes from Bind (none: all text; one: applies to all;
    else per column); None means use the RowDescription's own format codes.
    """
    fns: list[ValueFn | None] = []
    for i, f in enumerate(fields):
        if formats is None:
            fmt = f.format
        elif not formats:
            fmt = 0
        elif len(formats) == 1:
            fmt = formats[0]
        else:
            fmt = formats[i] if i < len(formats) else 0
        cm = allow.columns[i] if i < len(allow.columns) else None
        fns.append(column_fn(f, fmt, cm, allow.detect, src, enc))
    if all(fn is None for fn in fns):
        return None
    return RowPlan(fns)


# ------------------------------------------------------------------ COPY TO STDOUT (text, CSV)

_COPY_UNESCAPE = {
    ord("b"): "\b",
    ord("f"): "\f",
    ord("n"): "\n",
    ord("r"): "\r",
    ord("t"): "\t",
    ord("v"): "\v",
}


def _copy_unescape(s: str) -> str:
    if "\\" not in s:
        return s
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            out.append(_COPY_UNESCAPE.get(ord(n), n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _copy_escape(s: str) -> str:
    return (
        s.replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\b", "\\b")
        .replace("\f", "\\f")
        .replace("\v", "\\v")
    )


class CopyPlan:
    """Masks COPY TO STDOUT rows (one CopyData per row, as PostgreSQL sends them).

    Only the default text format is read: the wire does not say which format or delimiter a
    COPY uses, and a guessed CSV layout can be steered (a digit delimiter plus tabs inside a
    value shifts the columns). The engine therefore allows restricted roles plain text COPY only;
    a row that does not split into the announced columns raises Unmaskable.
    """

    def __init__(self, ncols: int, allow: Allow, src: MaskerSource, enc: str = "utf-8") -> None:
        self.ncols = ncols
        self.enc = enc
        self.fns: list[Callable[[str], str | None]] = []
        det = src.text_masker(allow.detect) if allow.detect else None
        for i in range(ncols):
            cm = allow.columns[i] if i < len(allow.columns) else None
            action = cm.action if cm is not None else "clear"
            if action == "clear":
                self.fns.append(det or (lambda s: s))
            elif action == "null":
                self.fns.append(lambda _s: None)
            else:
                vm = src.value_masker(cm.cls if cm else None, action)
                self.fns.append(lambda s, vm=vm: vm(s))

    def apply(self, data: bytes) -> tuple[bytes, int]:
        line = data.decode(self.enc, "surrogateescape")
        nl = "\n" if line.endswith("\n") else ""
        body = line[:-1] if nl else line
        fields = body.split("\t")
        if len(fields) != self.ncols:
            raise Unmaskable("COPY row")
        out, changed = self._text(fields)
        return ("\t".join(out) + nl).encode(self.enc, "surrogateescape"), changed

    def _text(self, fields: list[str]) -> tuple[list[str], int]:
        out = []
        changed = 0
        for fn, raw in zip(self.fns, fields, strict=True):
            if raw == "\\N":
                out.append(raw)
                continue
            v = _copy_unescape(raw)
            m = fn(v)
            if m is v:
                out.append(raw)
                continue
            changed += 1
            out.append("\\N" if m is None else _copy_escape(str(m)))
        return out, changed
