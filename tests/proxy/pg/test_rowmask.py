"""DataRow and COPY plans: text and binary ints, numeric, bytea, jsonb, COPY text (other rows refused)."""

from __future__ import annotations

import struct

import pytest

from policies.decision import Allow, ColumnMask
from proxy.pg import messages as m
from proxy.pg import types
from proxy.pg.rowmask import CopyPlan, plan_rows
from proxy.pg.types import numeric_from_binary, numeric_to_binary
from proxy.services.rows import Unmaskable
from tests.proxy.pg.fakegate import FakeGate

GATE = FakeGate()


def f(name: str, oid: int, fmt: int = 0) -> m.FieldDescription:
    return m.FieldDescription(name, 0, 0, oid, -1, -1, fmt)


def masked(i: int, cls: str = "mobile", action: str = "mask") -> ColumnMask:
    return ColumnMask(i, f"c{i}", cls, action)


def row(*vals: bytes | None) -> tuple[bytes, int, int]:
    msg = m.DataRow(tuple(vals)).serialize()
    return msg, 0, len(msg)


def test_text_and_binary_int_columns() -> None:
    allow = Allow(kind="select", columns=(masked(0), masked(1)))
    plan = plan_rows((f("a", 25), f("b", 20)), (1,), allow, GATE)
    assert plan is not None
    out, n = plan.apply(*row(b"13800138000", struct.pack("!q", 13900139000)))
    assert n == 2 and out == m.DataRow((b"138****8000", struct.pack("!q", 13900009000))).serialize()
    plan = plan_rows((f("b", 23),), None, Allow(kind="select", columns=(masked(0),)), GATE)
    assert plan is not None
    assert plan.apply(*row(b"12345678"))[0] == m.DataRow((b"12305678",)).serialize()


def test_numeric_binary_column() -> None:
    plan = plan_rows((f("n", 1700, 1),), None, Allow(kind="select", columns=(masked(0),)), GATE)
    assert plan is not None
    out, _ = plan.apply(*row(numeric_to_binary("13800138000.50")))
    assert out is not None
    assert numeric_from_binary(m.DataRow.parse(out[5:]).values[0]) == "13800008000.00"  # type: ignore[arg-type]


def test_bytea_text_and_null_action() -> None:
    allow = Allow(kind="select", columns=(masked(0), masked(1, action="null")))
    plan = plan_rows((f("b", 17), f("t", 25)), None, allow, GATE)
    assert plan is not None
    out, n = plan.apply(*row(b"\\x4142", b"secret"))
    assert out == m.DataRow((b"\\x2a2a", None)).serialize() and n == 2


def test_jsonb_binary_scanned_by_detectors() -> None:
    allow = Allow(kind="select", detect=frozenset({"mobile"}))
    plan = plan_rows((f("j", 3802, 1),), None, allow, GATE)
    assert plan is not None
    out, _ = plan.apply(*row(b'\x01{"m": "13800138000"}'))
    assert out == m.DataRow((b'\x01{"m": "138****8000"}',)).serialize()


def test_unmaskable_binary_type_refused() -> None:
    with pytest.raises(Unmaskable):
        plan_rows((f("d", 1082, 1),), None, Allow(kind="select", columns=(masked(0),)), GATE)
    # ...but null works for any type, and text format masks the text.
    assert plan_rows(
        (f("d", 1082, 1),), None, Allow(kind="select", columns=(masked(0, action="null"),)), GATE
    )
    assert plan_rows((f("d", 1082, 0),), None, Allow(kind="select", columns=(masked(0),)), GATE)


def test_nothing_to_do_gives_no_plan() -> None:
    assert plan_rows((f("a", 25), f("b", 23)), None, Allow(kind="select"), GATE) is None
    # Detectors skip types that cannot carry free text.
    assert plan_rows((f("b", 23),), None, Allow(kind="select", detect=frozenset({"mobile"})), GATE) is None


def test_copy_text_only() -> None:
    allow = Allow(
        kind="select", columns=(ColumnMask(0, "id", None, "clear"), masked(1)), detect=frozenset({"mobile"})
    )
    plan = CopyPlan(2, allow, GATE)
    assert plan.apply(b"1\t13800138000\n") == (b"1\t138****8000\n", 1)
    assert plan.apply(b"1\t\\N\n") == (b"1\t\\N\n", 0)
    # A row not in the layout the engine read from the statement (text here): refused, not guessed.
    for row in (b'1,"13800138000"\n', b"1|2|3\n", b"a\tb\tc213800138000\n"):
        with pytest.raises(Unmaskable):
            plan.apply(row)


def test_datarow_rewrite_matches_reference() -> None:
    allow = Allow(
        kind="select", columns=(ColumnMask(0, "a", None, "clear"), masked(1), masked(2, action="null"))
    )
    plan = plan_rows((f("a", 25), f("b", 25), f("c", 25)), None, allow, GATE)
    assert plan is not None
    msg = m.DataRow((b"x", b"13800138000", b"y", b"extra")).serialize()
    prefix = b"junk"
    out, n = plan.apply(prefix + msg, len(prefix), len(prefix) + len(msg))
    assert n == 2 and out == m.DataRow((b"x", b"138****8000", None, b"extra")).serialize()
    with pytest.raises(m.MessageError):
        plan.apply(msg[:-1], 0, len(msg) - 1)


@pytest.mark.parametrize("oid", [1009, 1082, 2950, 869, 16])  # text[], date, uuid, inet, bool
def test_masked_values_of_types_that_cannot_hold_a_mask_become_null(oid: int) -> None:
    allow = Allow(kind="select", columns=(masked(0, action="redact"),))
    plan = plan_rows((f("a", oid),), None, allow, GATE)
    assert plan is not None
    msg = m.DataRow((b"{13800138000,13900139000}",)).serialize()
    out, n = plan.apply(msg, 0, len(msg))
    assert n == 1 and out == m.DataRow((None,)).serialize()


def concealed(i: int) -> ColumnMask:
    return ColumnMask(i, f"c{i}", "mobile", "redact", ("public.customers.phone",), True)


# Every type the proxy knows, in both formats: (oid, format) -> the constant.
KNOWN = sorted({*types._KINDS, *types.ARRAYS})


@pytest.mark.parametrize("fmt", [0, 1])
@pytest.mark.parametrize("oid", KNOWN)
def test_a_concealed_column_is_one_constant_whatever_the_input(oid: int, fmt: int) -> None:
    allow = Allow(kind="select", columns=(ColumnMask(0, "id", None, "clear"), concealed(1)))
    plan = plan_rows((f("id", 25), f("d", oid, fmt)), None, allow, GATE)
    assert plan is not None
    const = types.constant(oid, fmt == 1)
    assert const is not None
    outs = set()
    # Values of every length, and NULL: the length and the NULL-ness must both disappear.
    for value in (None, b"", b"8", b"13800138000", b"x" * 300):
        msg = m.DataRow((b"7", value)).serialize()
        out, _ = plan.apply(msg, 0, len(msg))
        got = m.DataRow.parse((out or msg)[5:]).values
        assert got[0] == b"7"
        outs.add(got[1])
    assert outs == {const}


def test_concealed_constants_are_values_of_their_type() -> None:
    assert types.constant(20, True) == struct.pack("!q", 0) and types.constant(20, False) == b"0"
    assert numeric_from_binary(types.constant(1700, True) or b"") == "0"
    assert types.constant(3802, True) == b'\x01"****"' and types.constant(114, False) == b'"****"'
    assert types.constant(1009, False) == b"{}"
    assert types.constant(1009, True) == struct.pack("!iiI", 0, 0, 25)
    assert types.constant(17, False) == b"\\x2a2a2a2a" and types.constant(17, True) == b"****"
    # A type maskgate does not know (an enum, a composite): text only; binary is refused.
    assert types.constant(99999, False) == b"****" and types.constant(99999, True) is None
    allow = Allow(kind="select", columns=(concealed(0),))
    with pytest.raises(Unmaskable):
        plan_rows((f("e", 99999, 1),), None, allow, GATE)


def test_copy_conceals_null_and_length_too() -> None:
    allow = Allow(kind="select", columns=(ColumnMask(0, "id", None, "clear"), concealed(1)))
    plan = CopyPlan(2, allow, GATE)
    assert plan.apply(b"1\t\\N\n") == (b"1\t****\n", 1)
    assert plan.apply(b"2\t13800138000\n") == (b"2\t****\n", 1)
    assert plan.apply(b"3\t8\n") == (b"3\t****\n", 1)
