"""The protocol-neutral column action, table-tested over every ValueKind, action and format,
and the text-form value helpers."""

from __future__ import annotations

import pytest

from policies.decision import ColumnMask
from proxy.services.rows import (
    CLEAR,
    CONSTANT,
    NULL,
    REFUSE,
    ColumnAction,
    Op,
    ValueKind,
    column_action,
    decimal_masker,
    int_masker,
    mask_decimal_text,
    on_int_text,
    on_text,
)
from tests.proxy.pg.fakegate import FakeGate

K = ValueKind
DETECT = frozenset({"mobile", "id_card"})
# Per kind, what a classified column gets: (clear column scanned in text form, … in binary form,
# masked column in text form, … in binary form). "detect" / "mask" / "null" / "refuse" / "clear".
TABLE = {
    K.TEXT: ("detect", "detect", "mask", "mask"),
    K.JSON: ("detect", "detect", "detect+own", "detect+own"),
    K.INT: ("clear", "clear", "mask", "mask"),
    K.NUMERIC: ("clear", "clear", "mask", "mask"),
    K.BYTES: ("clear", "clear", "mask", "mask"),
    K.SCALAR: ("clear", "clear", "null", "refuse"),
    # Binary arrays, composites, enums, addresses: the detectors cannot read inside them, and
    # passing them clear passed numbers their text form masks (red team, issue 12): refused.
    K.STRUCTURED: ("detect", "refuse", "null", "refuse"),
    K.OTHER: ("detect", "refuse", "mask", "refuse"),
}


def expected(word: str, action: str) -> ColumnAction:
    return {
        "clear": CLEAR,
        "null": NULL,
        "refuse": REFUSE,
        "detect": ColumnAction(Op.DETECT, classes=DETECT),
        "detect+own": ColumnAction(Op.DETECT, classes=DETECT | {"bank_card"}),
        "mask": ColumnAction(Op.MASK, cls="bank_card", action=action),
    }[word]


def test_the_table_covers_every_kind() -> None:
    assert set(TABLE) == set(ValueKind)


@pytest.mark.parametrize("kind", list(ValueKind))
@pytest.mark.parametrize("binary", [False, True])
def test_clear_columns_are_scanned_only_where_free_text_can_be(kind: ValueKind, binary: bool) -> None:
    want = expected(TABLE[kind][int(binary)], "")
    unclassified = ColumnMask(0, "c", None, "clear")
    assert column_action(kind, None, DETECT, binary) == want
    assert column_action(kind, unclassified, DETECT, binary) == want
    # Nothing to scan for: every clear column passes untouched.
    assert column_action(kind, None, frozenset(), binary) == CLEAR


@pytest.mark.parametrize("kind", list(ValueKind))
@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("action", ["mask", "hash", "fake", "redact"])
def test_masked_columns_keep_their_type_or_become_null_or_are_refused(
    kind: ValueKind, binary: bool, action: str
) -> None:
    column = ColumnMask(0, "c", "bank_card", action)
    want = expected(TABLE[kind][2 + int(binary)], action)
    if kind is K.JSON and action == "redact":
        want = NULL  # a redacted document shows nothing, not its undetected parts
    assert column_action(kind, column, DETECT, binary) == want


@pytest.mark.parametrize("kind", list(ValueKind))
@pytest.mark.parametrize("binary", [False, True])
def test_null_columns_are_null_in_every_kind_and_format(kind: ValueKind, binary: bool) -> None:
    assert column_action(kind, ColumnMask(0, "c", "bank_card", "null"), DETECT, binary) == NULL


@pytest.mark.parametrize("kind", list(ValueKind))
@pytest.mark.parametrize("binary", [False, True])
def test_a_value_derived_from_a_classified_column_is_one_constant(kind: ValueKind, binary: bool) -> None:
    # nullif(substr(phone, 4, 1), '8'), length(phone), json_build_object('p', reverse(phone)):
    # whatever the type and format, the protocol sends one constant for every value, NULL too.
    derived = ColumnMask(0, "d", "mobile", "redact", ("public.customers.phone",), True)
    opaque = ColumnMask(0, "d", None, "redact", (), True)  # a column of an undescribed classified table
    assert column_action(kind, derived, DETECT, binary) == CONSTANT
    assert column_action(kind, opaque, DETECT, binary) == CONSTANT
    # A role that nulls the class gets NULL (which says nothing either), not the constant.
    assert column_action(kind, ColumnMask(0, "d", "mobile", "null", (), True), DETECT, binary) == NULL


def test_a_classified_json_column_is_scanned_for_its_own_class() -> None:
    column = ColumnMask(0, "doc", "id_card", "mask", ("public.t.doc",))
    expected = ColumnAction(Op.DETECT, classes=DETECT | {"id_card"})
    assert column_action(K.JSON, column, DETECT, False) == expected


def test_an_action_hands_out_its_masker() -> None:
    gate = FakeGate()
    detect = ColumnAction(Op.DETECT, classes=frozenset({"mobile"}))
    assert detect.masker(gate)("call 13812345678") == "call 138****5678"
    mask = ColumnAction(Op.MASK, cls="mobile", action="mask")
    assert mask.masker(gate)("13812345678") == "138****5678"
    for no_masker in (CLEAR, NULL, REFUSE):
        with pytest.raises(ValueError):
            no_masker.masker(gate)


def test_text_values_round_trip_untouched_when_unchanged() -> None:
    raw = "张三 13812345678".encode()
    assert on_text(lambda s: s, "utf-8")(raw) is raw
    assert on_text(lambda s: s.replace("张", "*"), "utf-8")(raw) == "*三 13812345678".encode()
    assert on_text(lambda s: None, "utf-8")(raw) is None
    odd = b"\xff\xfeabc"  # not UTF-8: carried through as surrogates, not lost
    assert on_text(lambda s: s.upper(), "utf-8")(odd) == b"\xff\xfeABC"


def test_ints_are_kept_within_their_range() -> None:
    masked = int_masker(lambda v: v * 1000, -128, 127)
    assert masked(1) == 127 and masked(-1) == -128 and masked(0) == 0
    assert int_masker(lambda v: None, 0, 255)(5) is None
    assert on_int_text(masked)(b"-3") == b"-128"
    assert on_int_text(int_masker(lambda v: None, 0, 9))(b"3") is None


def test_decimal_text_mask_keeps_shape() -> None:
    assert mask_decimal_text("13800138000.25", lambda v: 13800008000) == "13800008000.00"
    assert mask_decimal_text("-5.5", lambda v: 0) == "-0.0"
    for odd in ("NaN", "Infinity", "-Infinity", "1e5"):
        assert mask_decimal_text(odd, lambda v: 0) == odd
    # An int masker that nulls gives zero digits: a decimal column must still read as a number.
    assert decimal_masker(lambda v: None)("123.45") == "000.00"
