"""MySQL value types: kinds, integer ranges, charsets, value functions in both protocols, constants."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.mysql import types as t
from proxy.mysql.packets import BinaryRow, TextRow
from proxy.services.rows import Unmaskable, ValueKind

UTF8MB4 = 45


@pytest.mark.parametrize(
    "ftype,charset,kind",
    [
        (t.MYSQL_TYPE_VAR_STRING, UTF8MB4, ValueKind.TEXT),
        (t.MYSQL_TYPE_STRING, 8, ValueKind.TEXT),
        (t.MYSQL_TYPE_BLOB, UTF8MB4, ValueKind.TEXT),  # TEXT columns are BLOB with a charset
        (t.MYSQL_TYPE_BLOB, 63, ValueKind.TEXT),
        (t.MYSQL_TYPE_VAR_STRING, 63, ValueKind.TEXT),
        (t.MYSQL_TYPE_JSON, 63, ValueKind.JSON),  # MySQL 8 reports JSON as binary
        (t.MYSQL_TYPE_JSON, UTF8MB4, ValueKind.JSON),
        (t.MYSQL_TYPE_TINY, 63, ValueKind.INT),
        (t.MYSQL_TYPE_INT24, 63, ValueKind.INT),
        (t.MYSQL_TYPE_LONGLONG, 63, ValueKind.INT),
        (t.MYSQL_TYPE_NEWDECIMAL, 63, ValueKind.NUMERIC),
        (t.MYSQL_TYPE_DECIMAL, 63, ValueKind.NUMERIC),
        (t.MYSQL_TYPE_DOUBLE, 63, ValueKind.SCALAR),
        (t.MYSQL_TYPE_DATETIME, 63, ValueKind.SCALAR),
        (t.MYSQL_TYPE_YEAR, 63, ValueKind.SCALAR),
        (t.MYSQL_TYPE_BIT, 63, ValueKind.SCALAR),
        (t.MYSQL_TYPE_NULL, 63, ValueKind.SCALAR),
        (t.MYSQL_TYPE_ENUM, UTF8MB4, ValueKind.TEXT),
        (t.MYSQL_TYPE_SET, UTF8MB4, ValueKind.TEXT),
        (t.MYSQL_TYPE_GEOMETRY, 63, ValueKind.BYTES),
        (200, 63, ValueKind.OTHER),
    ],
)
def test_value_kind(ftype: int, charset: int, kind: ValueKind) -> None:
    assert t.value_kind(ftype, charset, 0) is kind


def test_int_ranges() -> None:
    assert t.int_range(t.MYSQL_TYPE_TINY, 0) == (-128, 127)
    assert t.int_range(t.MYSQL_TYPE_TINY, t.UNSIGNED_FLAG) == (0, 255)
    assert t.int_range(t.MYSQL_TYPE_INT24, 0) == (-(2**23), 2**23 - 1)
    assert t.int_range(t.MYSQL_TYPE_LONGLONG, t.UNSIGNED_FLAG) == (0, 2**64 - 1)
    with pytest.raises(ValueError):
        t.int_range(t.MYSQL_TYPE_YEAR, 0)


def test_charset_encoding() -> None:
    for cid in (45, 46, 224, 255, 1070):
        assert t.charset_encoding(cid) == "utf-8"
    for cid in (33, 83, 192, 223):
        assert t.charset_encoding(cid) == "utf-8"
    assert t.charset_encoding(8) == "cp1252"
    assert t.charset_encoding(63) == "latin-1"
    assert t.charset_encoding(28) == "gbk"
    assert t.charset_encoding(11) == "ascii"
    assert t.charset_encoding(99) is None  # cp1250_bin: unknown, so unmaskable
    assert t.charset_encoding(0) is None


def _digits(v: Any) -> Any:
    """A stand-in masker: ints -> 999999999, strings -> stars, bytes -> X."""
    if isinstance(v, int):
        return 999999999
    if isinstance(v, bytes):
        return b"X" * len(v)
    return "*" * len(v)


def test_text_value_fns() -> None:
    fn = t.text_value_fn(t.MYSQL_TYPE_VAR_STRING, UTF8MB4, 0, _digits, "utf-8")
    assert fn("héllo".encode()) == b"*****"
    # Integers stay within their type: a TINY cannot hold 999999999.
    assert t.text_value_fn(t.MYSQL_TYPE_TINY, 63, 0, _digits, "utf-8")(b"5") == b"127"
    assert t.text_value_fn(t.MYSQL_TYPE_LONG, 63, 0, _digits, "utf-8")(b"-5") == b"999999999"
    assert t.text_value_fn(t.MYSQL_TYPE_NEWDECIMAL, 63, 0, _digits, "utf-8")(b"-12.50") == b"-99.00"
    # Binary-charset strings are text to mask and scan (byte for byte), never passed as opaque bytes.
    assert t.text_value_fn(t.MYSQL_TYPE_BLOB, 63, 0, _digits, "latin-1")(b"\x00\x01") == b"**"
    # latin1 text decoded as cp1252: the euro sign is one character.
    assert t.text_value_fn(t.MYSQL_TYPE_STRING, 8, 0, _digits, "cp1252")(b"\x80") == b"*"
    assert t.text_value_fn(t.MYSQL_TYPE_STRING, 8, 0, lambda v: None, "cp1252")(b"x") is None


def test_binary_value_fns() -> None:
    fn = t.binary_value_fn(t.MYSQL_TYPE_SHORT, 63, t.UNSIGNED_FLAG, _digits, "utf-8")
    assert fn(struct.pack("<H", 7)) == struct.pack("<H", 65535)
    fn = t.binary_value_fn(t.MYSQL_TYPE_INT24, 63, 0, _digits, "utf-8")
    assert fn(struct.pack("<i", -7)) == struct.pack("<i", 2**23 - 1)  # 4 bytes, 24-bit range
    fn = t.binary_value_fn(t.MYSQL_TYPE_LONGLONG, 63, 0, lambda v: -v, "utf-8")
    assert fn(struct.pack("<q", 42)) == struct.pack("<q", -42)
    assert t.binary_value_fn(t.MYSQL_TYPE_NEWDECIMAL, 63, 0, _digits, "utf-8")(b"1.5") == b"9.0"
    assert t.binary_value_fn(t.MYSQL_TYPE_VAR_STRING, UTF8MB4, 0, _digits, "utf-8")(b"ab") == b"**"
    assert t.binary_value_fn(t.MYSQL_TYPE_GEOMETRY, 63, 0, _digits, "utf-8")(b"\x01\x02") == b"XX"
    assert t.binary_value_fn(t.MYSQL_TYPE_LONG, 63, 0, lambda v: None, "utf-8")(bytes(4)) is None
    with pytest.raises(Unmaskable):
        t.binary_value_fn(t.MYSQL_TYPE_DATETIME, 63, 0, _digits, "utf-8")


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(
        [t.MYSQL_TYPE_TINY, t.MYSQL_TYPE_SHORT, t.MYSQL_TYPE_INT24, t.MYSQL_TYPE_LONG, t.MYSQL_TYPE_LONGLONG]
    ),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.data(),
)
def test_binary_int_masks_stay_in_range(ftype: int, unsigned: bool, out: int, data: st.DataObject) -> None:
    flags = t.UNSIGNED_FLAG if unsigned else 0
    lo, hi = t.int_range(ftype, flags)
    v = data.draw(st.integers(lo, hi))
    fn = t.binary_value_fn(ftype, 63, flags, lambda _v: out, "utf-8")
    row_types = ((ftype, flags),)
    width = {1: 1, 2: 2, 9: 4, 3: 4, 8: 8}[ftype]
    fmt = {1: "b", 2: "h", 4: "i", 8: "q"}[width]
    raw = struct.pack("<" + (fmt.upper() if unsigned else fmt), v)
    masked = fn(raw)
    assert masked is not None and len(masked) == width
    # The masked value still parses in a binary row of that type, and sits within the range.
    assert BinaryRow.parse(BinaryRow((masked,)).serialize(row_types), row_types).values == (masked,)
    got = struct.unpack("<" + (fmt.upper() if unsigned else fmt), masked)[0]
    assert lo <= got <= hi and got == max(lo, min(hi, out))


def test_constants() -> None:
    assert t.constant(t.MYSQL_TYPE_LONG, False) == b"0"
    assert t.constant(t.MYSQL_TYPE_LONG, True) == bytes(4)
    assert t.constant(t.MYSQL_TYPE_TINY, True) == bytes(1)
    assert t.constant(t.MYSQL_TYPE_NEWDECIMAL, True) == b"0"
    assert t.constant(t.MYSQL_TYPE_VAR_STRING, False) == t.CONCEALED_TEXT
    assert t.constant(t.MYSQL_TYPE_JSON, True) == b'"****"'
    assert t.constant(t.MYSQL_TYPE_DATE, False) == b"2000-01-01"
    assert t.constant(t.MYSQL_TYPE_BIT, True) is None
    assert t.constant(t.MYSQL_TYPE_GEOMETRY, True) is None
    assert t.constant(t.MYSQL_TYPE_NULL, False) is None


@pytest.mark.parametrize(
    "ftype",
    [
        t.MYSQL_TYPE_TINY,
        t.MYSQL_TYPE_SHORT,
        t.MYSQL_TYPE_INT24,
        t.MYSQL_TYPE_LONG,
        t.MYSQL_TYPE_LONGLONG,
        t.MYSQL_TYPE_FLOAT,
        t.MYSQL_TYPE_DOUBLE,
        t.MYSQL_TYPE_YEAR,
        t.MYSQL_TYPE_DATE,
        t.MYSQL_TYPE_DATETIME,
        t.MYSQL_TYPE_TIMESTAMP,
        t.MYSQL_TYPE_TIME,
        t.MYSQL_TYPE_NEWDECIMAL,
        t.MYSQL_TYPE_VAR_STRING,
        t.MYSQL_TYPE_BLOB,
        t.MYSQL_TYPE_JSON,
        t.MYSQL_TYPE_ENUM,
    ],
)
def test_constants_fit_their_rows(ftype: int) -> None:
    """Every constant is a value the row layouts accept for its type, in both protocols."""
    types = ((ftype, 0),)
    binary = t.constant(ftype, True)
    assert binary is not None
    assert BinaryRow.parse(BinaryRow((binary,)).serialize(types), types).values == (binary,)
    text = t.constant(ftype, False)
    assert text is not None
    assert TextRow.parse(TextRow((text,)).serialize(), 1).values == (text,)
