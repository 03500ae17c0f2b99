"""PostgreSQL types: OID -> ValueKind, and the codecs (int2/4/8, numeric, bytea, jsonb, encodings)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.pg import types
from proxy.services.rows import ValueKind


@pytest.mark.parametrize(
    ("oids", "kind"),
    [
        ((25, 1043, 1042, 19, 18, 705, 142), ValueKind.TEXT),  # text, varchar, bpchar, name, char, …
        ((114, 3802), ValueKind.JSON),
        ((21, 23, 20), ValueKind.INT),
        ((1700,), ValueKind.NUMERIC),
        ((17,), ValueKind.BYTES),
        ((16, 26, 700, 701, 790, 1082, 1083, 1114, 1184, 1186, 1266, 2950), ValueKind.SCALAR),
        ((1009, 1007, 1016, 1015, 1115, 2951, 869, 650), ValueKind.STRUCTURED),  # arrays, inet, cidr
        ((0, 16_384, 99_999), ValueKind.OTHER),  # enums, composites, domains: not built in
    ],
)
def test_value_kinds(oids: tuple[int, ...], kind: ValueKind) -> None:
    assert {types.value_kind(oid) for oid in oids} == {kind}


@pytest.mark.parametrize(
    "s", ["0", "1.50", "-12345678.0001", "100000000", "0.0001", "NaN", "Infinity", "12.000"]
)
def test_numeric_binary_round_trip(s: str) -> None:
    assert types.numeric_from_binary(types.numeric_to_binary(s)) == s


@given(st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-(10**12), max_value=10**12))
def test_numeric_binary_round_trip_property(d) -> None:  # type: ignore[no-untyped-def]
    s = f"{d:.3f}"
    assert types.numeric_from_binary(types.numeric_to_binary(s)) == s


def test_bytea_text_forms() -> None:
    assert types.bytea_from_text(b"\\x4142") == b"AB"
    assert types.bytea_from_text(b"a\\\\b\\101") == b"a\\bA"  # escape format: \\ and \ooo


@pytest.mark.parametrize(("oid", "fmt"), [(21, "!h"), (23, "!i"), (20, "!q")])
def test_binary_ints_are_masked_within_their_range(oid: int, fmt: str) -> None:
    t = types.INTS[oid]
    fn = types.value_fn(oid, lambda v: 10**30, True, "utf-8")  # a masker that overflows any width
    assert fn(struct.pack(fmt, 5)) == struct.pack(fmt, t.hi)
    assert types.value_fn(oid, lambda v: None, True, "utf-8")(struct.pack(fmt, 5)) is None
    assert types.value_fn(oid, lambda v: -(10**30), False, "utf-8")(b"5") == str(t.lo).encode()


def test_numeric_masks_integer_digits_in_both_forms() -> None:
    fn = types.value_fn(1700, lambda v: v // 1000 * 1000, True, "utf-8")
    out = fn(types.numeric_to_binary("1234567.89"))
    assert out is not None and types.numeric_from_binary(out) == "1234000.00"
    assert types.value_fn(1700, lambda v: None, False, "utf-8")(b"-42.5") == b"-00.0"


def test_bytea_text_is_masked_as_bytes_and_sent_back_in_hex() -> None:
    fn = types.value_fn(17, lambda b: b.upper(), False, "utf-8")
    assert fn(b"\\x6162") == b"\\x4142"
    assert types.value_fn(17, lambda b: b.upper(), True, "utf-8")(b"ab") == b"AB"


def test_jsonb_binary_keeps_its_version_byte() -> None:
    fn = types.value_fn(3802, lambda s: s.replace("1", "*"), True, "utf-8")
    assert fn(b'\x01{"a": 1}') == b'\x01{"a": *}'
    assert types.value_fn(3802, lambda s: s.replace("1", "*"), False, "utf-8")(b'{"a": 1}') == b'{"a": *}'


def test_text_values_are_decoded_in_the_client_encoding() -> None:
    fn = types.value_fn(25, lambda s: s.replace("张", "*"), False, types.codec("GBK"))
    assert fn("张三".encode("gbk")) == "*三".encode("gbk")
    same = b"unchanged"
    assert types.value_fn(25, lambda s: s, False, "utf-8")(same) is same


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("UTF8", "utf-8"),
        ("unicode", "utf-8"),
        ("SQL_ASCII", "latin-1"),
        ("LATIN1", "latin-1"),
        ("WIN1252", "cp1252"),
        ("gbk", "gbk"),
        ("GB18030", "gb18030"),
        ("EUC_CN", "euc-cn"),
        ("BIG5", "big5"),
        ("KOI8R", "utf-8"),  # not listed: read as UTF-8
    ],
)
def test_client_encoding_codecs(name: str, codec: str) -> None:
    assert types.codec(name) == codec
