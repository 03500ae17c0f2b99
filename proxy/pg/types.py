"""PostgreSQL's value types on the wire: type OIDs -> `ValueKind`, and the codecs of their forms.

Owns what is PostgreSQL-specific about a value: which kind an OID is, the binary layouts of
int2/4/8 and numeric, bytea's text form, jsonb's version byte and the client_encoding names.
Must not decide what happens to a column (services/rows.py does) nor touch messages or sessions.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from proxy.services.rows import ValueFn, ValueKind, decimal_masker, int_masker, on_int_text, on_text

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
INET, CIDR = 869, 650
# The common built-in array OIDs (`array_agg(phone)` and the like), with their element types.
ARRAY_ELEMENTS = {
    199: JSON,
    1000: BOOL,
    1001: BYTEA,
    1002: CHAR,
    1003: NAME,
    1005: INT2,
    1007: INT4,
    1009: TEXT,
    1014: BPCHAR,
    1015: VARCHAR,
    1016: INT8,
    1021: FLOAT4,
    1022: FLOAT8,
    1041: INET,
    1115: TIMESTAMP,
    1182: DATE,
    1183: TIME,
    1185: TIMESTAMPTZ,
    1187: INTERVAL,
    1231: NUMERIC,
    1270: TIMETZ,
    2951: UUID,
    3807: JSONB,
}
ARRAYS = frozenset(ARRAY_ELEMENTS)


@dataclass(frozen=True, slots=True)
class IntType:
    """A fixed-width integer: its binary layout and its range."""

    layout: struct.Struct
    lo: int
    hi: int


INTS = {
    INT2: IntType(struct.Struct("!h"), -(2**15), 2**15 - 1),
    INT4: IntType(struct.Struct("!i"), -(2**31), 2**31 - 1),
    INT8: IntType(struct.Struct("!q"), -(2**63), 2**63 - 1),
}

_KINDS: dict[int, ValueKind] = (
    dict.fromkeys((TEXT, VARCHAR, BPCHAR, NAME, CHAR, UNKNOWN, XML), ValueKind.TEXT)
    | dict.fromkeys((JSON, JSONB), ValueKind.JSON)
    | dict.fromkeys(INTS, ValueKind.INT)
    | {NUMERIC: ValueKind.NUMERIC, BYTEA: ValueKind.BYTES}
    | dict.fromkeys(
        (BOOL, OID, FLOAT4, FLOAT8, MONEY, DATE, TIME, TIMESTAMP, TIMESTAMPTZ, INTERVAL, TIMETZ, UUID),
        ValueKind.SCALAR,
    )
    | dict.fromkeys(ARRAYS | {INET, CIDR}, ValueKind.STRUCTURED)
)


def value_kind(oid: int) -> ValueKind:
    """The kind of a result column's type; types not listed (enums, composites, domains) are OTHER."""
    return _KINDS.get(oid, ValueKind.OTHER)


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


def value_fn(oid: int, fn: Callable[[Any], Any], binary: bool, enc: str) -> ValueFn:
    """`fn` (a column's masker or detectors) applied to one column's values in their wire form."""
    kind = value_kind(oid)
    if kind is ValueKind.INT:
        return _int_fn(fn, INTS[oid], binary)
    if kind is ValueKind.NUMERIC:
        return _numeric_fn(fn, binary)
    if kind is ValueKind.BYTES:
        return _bytea_fn(fn, binary)
    text = on_text(fn, enc)
    return _jsonb_binary(text) if binary and oid == JSONB else text


# ------------------------------------------------------------------ the concealing constant

# What a concealed value (one derived from a classified column) becomes, whatever it was, NULL
# included: one valid value of the column's type, in each format. Text forms are the server's own
# output with its default settings (DateStyle ISO, IntervalStyle postgres); binary forms are the
# type's zero. A type not listed has a text form only (`****`) and no binary constant.
CONCEALED_TEXT = b"****"
_SCALAR_CONSTANTS: dict[int, tuple[bytes, bytes]] = {
    BOOL: (b"f", b"\x00"),
    CHAR: (b"*", b"*"),  # "char": one byte
    OID: (b"0", bytes(4)),
    FLOAT4: (b"0", bytes(4)),
    FLOAT8: (b"0", bytes(8)),
    MONEY: (b"0.00", bytes(8)),
    DATE: (b"2000-01-01", bytes(4)),  # binary: days since 2000-01-01
    TIME: (b"00:00:00", bytes(8)),
    TIMETZ: (b"00:00:00+00", bytes(12)),
    TIMESTAMP: (b"2000-01-01 00:00:00", bytes(8)),  # binary: microseconds since 2000-01-01
    TIMESTAMPTZ: (b"2000-01-01 00:00:00+00", bytes(8)),
    INTERVAL: (b"00:00:00", bytes(16)),
    UUID: (b"00000000-0000-0000-0000-000000000000", bytes(16)),
    INET: (b"0.0.0.0", bytes((2, 32, 0, 4, 0, 0, 0, 0))),  # family, bits, is_cidr, length, address
    CIDR: (b"0.0.0.0/32", bytes((2, 32, 1, 4, 0, 0, 0, 0))),
}


def constant(oid: int, binary: bool) -> bytes | None:
    """The one value every value of a concealed column of type `oid` becomes, in the text or
    binary format; None when the type has no binary constant (the statement is then refused)."""
    known = _SCALAR_CONSTANTS.get(oid)
    if known is not None:
        return known[int(binary)]
    kind = value_kind(oid)
    if kind is ValueKind.INT:
        return INTS[oid].layout.pack(0) if binary else b"0"
    if kind is ValueKind.NUMERIC:
        return numeric_to_binary("0") if binary else b"0"
    if kind is ValueKind.BYTES:
        return CONCEALED_TEXT if binary else b"\\x" + CONCEALED_TEXT.hex().encode()
    if kind is ValueKind.JSON:
        doc = b'"' + CONCEALED_TEXT + b'"'  # a JSON string: valid json and jsonb
        return b"\x01" + doc if binary and oid == JSONB else doc
    if oid in ARRAYS:
        # The empty array: a valid value of every array type. Binary: no dimensions, no nulls.
        return struct.pack("!iiI", 0, 0, ARRAY_ELEMENTS[oid]) if binary else b"{}"
    if kind is ValueKind.TEXT or not binary:
        return CONCEALED_TEXT
    return None


# ------------------------------------------------------------------ int2/4/8, numeric


def _int_fn(vm: Callable[[Any], Any], t: IntType, binary: bool) -> ValueFn:
    masked = int_masker(vm, t.lo, t.hi)
    if not binary:
        return on_int_text(masked)
    layout = t.layout

    def apply(raw: bytes) -> bytes | None:
        out = masked(layout.unpack(raw)[0])
        return None if out is None else layout.pack(out)

    return apply


def _numeric_fn(vm: Callable[[Any], Any], binary: bool) -> ValueFn:
    masked = decimal_masker(vm)
    if binary:
        return lambda raw: numeric_to_binary(masked(numeric_from_binary(raw)))
    return lambda raw: masked(raw.decode("ascii")).encode("ascii")


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


# ------------------------------------------------------------------ bytea, jsonb


def _bytea_fn(vm: Callable[[Any], Any], binary: bool) -> ValueFn:
    if binary:
        return lambda raw: vm(raw)

    def apply(raw: bytes) -> bytes | None:
        out = vm(bytea_from_text(raw))
        return None if out is None else b"\\x" + bytes(out).hex().encode()

    return apply


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


def _jsonb_binary(fn: ValueFn) -> ValueFn:
    # Binary jsonb is a version byte (1) followed by the JSON text.
    def apply(raw: bytes) -> bytes | None:
        out = fn(raw[1:])
        return None if out is None else raw[:1] + out

    return apply
