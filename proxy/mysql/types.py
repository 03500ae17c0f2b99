"""MySQL/MariaDB value types on the wire: field types -> `ValueKind`, and the codecs of their forms.

Owns what is MySQL-specific about a value: which kind a field type is, the integer widths of the
binary protocol, the charset ids and the constants a concealed column becomes. Must not decide
what happens to a column (services/rows.py does) nor touch packets or sessions.

Values arrive in the connection's result charset (character_set_results) whatever their
column's collation, except binary-charset (63) columns, which are raw bytes: the caller passes
that encoding; a column's charset id only tells text from bytes here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from proxy.services.rows import (
    Unmaskable,
    ValueFn,
    ValueKind,
    decimal_masker,
    int_masker,
    on_int_text,
    on_text,
)

# Field types (enum_field_types).
MYSQL_TYPE_DECIMAL = 0
MYSQL_TYPE_TINY = 1
MYSQL_TYPE_SHORT = 2
MYSQL_TYPE_LONG = 3
MYSQL_TYPE_FLOAT = 4
MYSQL_TYPE_DOUBLE = 5
MYSQL_TYPE_NULL = 6
MYSQL_TYPE_TIMESTAMP = 7
MYSQL_TYPE_LONGLONG = 8
MYSQL_TYPE_INT24 = 9
MYSQL_TYPE_DATE = 10
MYSQL_TYPE_TIME = 11
MYSQL_TYPE_DATETIME = 12
MYSQL_TYPE_YEAR = 13
MYSQL_TYPE_NEWDATE = 14
MYSQL_TYPE_VARCHAR = 15
MYSQL_TYPE_BIT = 16
MYSQL_TYPE_TIMESTAMP2 = 17
MYSQL_TYPE_DATETIME2 = 18
MYSQL_TYPE_TIME2 = 19
MYSQL_TYPE_JSON = 245
MYSQL_TYPE_NEWDECIMAL = 246
MYSQL_TYPE_ENUM = 247
MYSQL_TYPE_SET = 248
MYSQL_TYPE_TINY_BLOB = 249
MYSQL_TYPE_MEDIUM_BLOB = 250
MYSQL_TYPE_LONG_BLOB = 251
MYSQL_TYPE_BLOB = 252
MYSQL_TYPE_VAR_STRING = 253
MYSQL_TYPE_STRING = 254
MYSQL_TYPE_GEOMETRY = 255

# Column flags.
NOT_NULL_FLAG = 1
PRI_KEY_FLAG = 2
UNIQUE_KEY_FLAG = 4
MULTIPLE_KEY_FLAG = 8
BLOB_FLAG = 16
UNSIGNED_FLAG = 32
ZEROFILL_FLAG = 64
BINARY_FLAG = 128
ENUM_FLAG = 256
AUTO_INCREMENT_FLAG = 512
TIMESTAMP_FLAG = 1024
SET_FLAG = 2048
NUM_FLAG = 32768

BINARY_CHARSET = 63

_STRINGS = frozenset(
    {
        MYSQL_TYPE_VARCHAR,
        MYSQL_TYPE_VAR_STRING,
        MYSQL_TYPE_STRING,
        MYSQL_TYPE_TINY_BLOB,
        MYSQL_TYPE_MEDIUM_BLOB,
        MYSQL_TYPE_LONG_BLOB,
        MYSQL_TYPE_BLOB,
    }
)
# Integer types: binary-protocol layout (signed, unsigned) and bit width of their range.
# INT24 travels as 4 bytes but holds 24 bits.
_INTS: dict[int, tuple[struct.Struct, struct.Struct, int]] = {
    MYSQL_TYPE_TINY: (struct.Struct("<b"), struct.Struct("<B"), 8),
    MYSQL_TYPE_SHORT: (struct.Struct("<h"), struct.Struct("<H"), 16),
    MYSQL_TYPE_INT24: (struct.Struct("<i"), struct.Struct("<I"), 24),
    MYSQL_TYPE_LONG: (struct.Struct("<i"), struct.Struct("<I"), 32),
    MYSQL_TYPE_LONGLONG: (struct.Struct("<q"), struct.Struct("<Q"), 64),
}
_KINDS: dict[int, ValueKind] = (
    dict.fromkeys(_INTS, ValueKind.INT)
    | dict.fromkeys((MYSQL_TYPE_DECIMAL, MYSQL_TYPE_NEWDECIMAL), ValueKind.NUMERIC)
    | dict.fromkeys((MYSQL_TYPE_ENUM, MYSQL_TYPE_SET), ValueKind.TEXT)
    | {MYSQL_TYPE_JSON: ValueKind.JSON, MYSQL_TYPE_GEOMETRY: ValueKind.BYTES}
    | dict.fromkeys(
        (
            MYSQL_TYPE_FLOAT,
            MYSQL_TYPE_DOUBLE,
            MYSQL_TYPE_NULL,
            MYSQL_TYPE_TIMESTAMP,
            MYSQL_TYPE_DATE,
            MYSQL_TYPE_TIME,
            MYSQL_TYPE_DATETIME,
            MYSQL_TYPE_YEAR,
            MYSQL_TYPE_NEWDATE,
            MYSQL_TYPE_BIT,
            MYSQL_TYPE_TIMESTAMP2,
            MYSQL_TYPE_DATETIME2,
            MYSQL_TYPE_TIME2,
        ),
        ValueKind.SCALAR,
    )
)


def value_kind(field_type: int, charset: int, flags: int) -> ValueKind:
    """The kind of a result column. Strings and blobs are TEXT whatever their charset, the
    binary charset included (read byte for byte as latin-1): a session picks the charset of its
    results (`SET character_set_results = binary`, `CAST(notes AS BINARY)`, `CONVERT(x USING
    binary)`, `HEX`-free `BINARY x`), so a text column's numbers must not escape the detectors by
    arriving as bytes. JSON stays JSON whatever its charset (MySQL 8 reports it as binary,
    MariaDB reports JSON columns as LONGTEXT, which TEXT covers). Unknown types are OTHER."""
    del flags, charset  # ENUM/SET flags ride on STRING columns, which are text either way
    if field_type in _STRINGS:
        return ValueKind.TEXT
    return _KINDS.get(field_type, ValueKind.OTHER)


def int_range(field_type: int, flags: int) -> tuple[int, int]:
    """The (lowest, highest) value of an integer type; ValueError for other types."""
    entry = _INTS.get(field_type)
    if entry is None:
        raise ValueError(f"field type {field_type} is not an integer type")
    bits = entry[2]
    if flags & UNSIGNED_FLAG:
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


# ------------------------------------------------------------------ charsets

_UTF8MB4 = frozenset(
    {45, 46, *range(224, 248), *range(255, 324), 608, 609, 610, 1069, 1070, 1248, 1270}
)  # MySQL 8 utf8mb4_0900_* are 255-323; MariaDB's nopad/uca variants above 512
_UTF8MB3 = frozenset({33, 76, 83, *range(192, 216), 223, 576, 577, 578, 1057, 1107, 1216, 1238})
_LATIN1 = frozenset({5, 8, 15, 31, 47, 48, 49, 94, 1032, 1071})
_ENCODINGS: dict[int, str] = (
    dict.fromkeys(_UTF8MB4 | _UTF8MB3, "utf-8")
    # MySQL's latin1 is Windows-1252 (0x80 is the euro sign); surrogateescape keeps its 5
    # undefined bytes intact.
    | dict.fromkeys(_LATIN1, "cp1252")
    | {BINARY_CHARSET: "latin-1"}  # bytes as they are
    | dict.fromkeys((28, 87, 1052, 1111), "gbk")
    | dict.fromkeys((11, 65, 1035, 1089), "ascii")
    | dict.fromkeys((1, 84, 1025, 1108), "big5")
    | dict.fromkeys((248, 249, 250), "gb18030")  # MySQL 8
)


# The same codecs by charset name, as `SET NAMES` and `SET character_set_client` spell them.
_NAMED_ENCODINGS: dict[str, str] = {
    "utf8mb4": "utf-8",
    "utf8mb3": "utf-8",
    "utf8": "utf-8",
    "latin1": "cp1252",
    "binary": "latin-1",
    "gbk": "gbk",
    "ascii": "ascii",
    "big5": "big5",
    "gb18030": "gb18030",
}


def charset_name_encoding(name: str) -> str | None:
    """The Python codec for a MySQL charset name (`utf8mb4`); None when unknown."""
    return _NAMED_ENCODINGS.get(name.strip("'\"`").lower())


def charset_encoding(charset_id: int) -> str | None:
    """The Python codec for a MySQL/MariaDB collation id; None when unknown (the caller refuses
    to mask such a column rather than guess: a wrong codec could leave a value clear)."""
    return _ENCODINGS.get(charset_id)


# ------------------------------------------------------------------ value functions


def _numeric_text(masker: Callable[[Any], Any]) -> ValueFn:
    masked = decimal_masker(masker)
    return lambda raw: masked(raw.decode("ascii")).encode("ascii")


def _bytes_fn(masker: Callable[[Any], Any]) -> ValueFn:
    def apply(raw: bytes) -> bytes | None:
        out = masker(raw)
        if out is None:
            return None
        return out if isinstance(out, bytes) else str(out).encode("latin-1", "replace")

    return apply


def text_value_fn(
    field_type: int, charset: int, flags: int, masker: Callable[[Any], Any], encoding: str
) -> ValueFn:
    """`masker` (a column's masker or detectors) over one column's values in the text protocol,
    where every value is its text in `encoding` (BYTES: the raw bytes)."""
    kind = value_kind(field_type, charset, flags)
    if kind is ValueKind.INT:
        lo, hi = int_range(field_type, flags)
        return on_int_text(int_masker(masker, lo, hi))
    if kind is ValueKind.NUMERIC:
        return _numeric_text(masker)
    if kind is ValueKind.BYTES:
        return _bytes_fn(masker)
    return on_text(masker, encoding)


def binary_value_fn(
    field_type: int, charset: int, flags: int, masker: Callable[[Any], Any], encoding: str
) -> ValueFn:
    """`masker` over one column's values in the binary protocol, as `BinaryRow` yields them:
    integers little-endian at their type's width, re-encoded at that width within the type's
    range; decimals as text; strings, JSON and blobs as their raw bytes. Raises Unmaskable for
    the kinds no binary codec here can mask (floats, dates, times, bits, unknown types)."""
    kind = value_kind(field_type, charset, flags)
    if kind is ValueKind.INT:
        signed, unsigned, _bits = _INTS[field_type]
        layout = unsigned if flags & UNSIGNED_FLAG else signed
        lo, hi = int_range(field_type, flags)
        masked = int_masker(masker, lo, hi)

        def apply(raw: bytes) -> bytes | None:
            out = masked(layout.unpack(raw)[0])
            return None if out is None else layout.pack(out)

        return apply
    if kind is ValueKind.NUMERIC:
        return _numeric_text(masker)  # NEWDECIMAL is its text in the binary protocol too
    if kind is ValueKind.BYTES:
        return _bytes_fn(masker)
    if kind in (ValueKind.TEXT, ValueKind.JSON):
        return on_text(masker, encoding)
    raise Unmaskable("", f"a field of type {field_type} cannot be masked in binary format")


# ------------------------------------------------------------------ the concealing constant

# What a concealed value (derived from a classified column) becomes, NULL included: one valid
# value of the column's type. Text forms are what the server prints; binary forms the type's
# zero in the binary protocol's layout (date/time values carry their length byte, as BinaryRow
# keeps them: length 0 is the server's own encoding of a zero date or time).
CONCEALED_TEXT = b"****"
_SCALAR_CONSTANTS: dict[int, tuple[bytes, bytes]] = {
    MYSQL_TYPE_FLOAT: (b"0", bytes(4)),
    MYSQL_TYPE_DOUBLE: (b"0", bytes(8)),
    MYSQL_TYPE_YEAR: (b"2000", struct.pack("<H", 2000)),
    MYSQL_TYPE_DATE: (b"2000-01-01", bytes((4,)) + struct.pack("<HBB", 2000, 1, 1)),
    MYSQL_TYPE_NEWDATE: (b"2000-01-01", bytes((4,)) + struct.pack("<HBB", 2000, 1, 1)),
    MYSQL_TYPE_DATETIME: (b"2000-01-01 00:00:00", bytes((4,)) + struct.pack("<HBB", 2000, 1, 1)),
    MYSQL_TYPE_TIMESTAMP: (b"2000-01-01 00:00:00", bytes((4,)) + struct.pack("<HBB", 2000, 1, 1)),
    MYSQL_TYPE_TIME: (b"00:00:00", b"\x00"),
}


def constant(field_type: int, binary: bool) -> bytes | None:
    """The one value every value of a concealed column of `field_type` becomes, in the text or
    binary protocol (binary: as `BinaryRow` holds it, lenenc prefix stripped); None when no
    constant fits the type (BIT, GEOMETRY in binary, NULL): the statement is then refused."""
    known = _SCALAR_CONSTANTS.get(field_type)
    if known is not None:
        return known[int(binary)]
    if field_type in _INTS:
        return _INTS[field_type][0].pack(0) if binary else b"0"
    if field_type in (MYSQL_TYPE_DECIMAL, MYSQL_TYPE_NEWDECIMAL):
        return b"0"
    if field_type == MYSQL_TYPE_JSON:
        return b'"' + CONCEALED_TEXT + b'"'  # a JSON string: a valid document
    if field_type in _STRINGS or field_type in (MYSQL_TYPE_ENUM, MYSQL_TYPE_SET):
        # An ENUM/SET column takes any string in a result: the client does not validate it.
        return CONCEALED_TEXT
    return None
