"""The native row walker (proxy/pg/_rowwalk.c) against the reference, RowPlan.apply row by row.

For random plans (column types, formats, masks, detectors, concealed columns) over the real
Guard's maskers, and random runs of messages (DataRows of PII-shaped and other values, malformed
rows, other messages, incomplete tails): the same bytes, the same consumed offset, rows and
changed values, the same stopping point before any row the reference raises MessageError for,
and the same per-class masked-value counts. Skipped where the walker is not built.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import masking
from masking.classes import CLASSES
from masking.detectors import DETECTABLE
from policies import load_policy
from policies.decision import Allow, ColumnMask
from proxy.pg import messages as m
from proxy.pg import rowmask
from proxy.pg.messages import MessageError
from proxy.pg.rowmask import RowPlan, plan_rows
from proxy.services.guard import Guard
from proxy.services.metrics import Metrics
from proxy.services.rows import Unmaskable
from tests.masking.strategies import id18s, mobiles

walker = rowmask._walker
pytestmark = pytest.mark.skipif(walker is None, reason="native row walker not built (or MASKGATE_PURE=1)")

DEMO = Path(__file__).resolve().parents[3] / "policies" / "examples" / "demo.yaml"
MAX_LEN = 1 << 20


def guard() -> Guard:
    return Guard(
        load_policy(DEMO), metrics=Metrics(CollectorRegistry()), default_databases={"postgres": "crm"}
    )


# text, varchar, bpchar, int8, int4, numeric, bytea, json, jsonb, date, text[], inet, an enum
OIDS = (25, 1043, 1042, 20, 23, 1700, 17, 114, 3802, 1082, 1009, 869, 90001)
MASK_CLASSES = ("mobile", "id_card", "bank_card", "email", "person_name", "address", "free_text", None)
# Name contexts, surnames, their separators and dots: what the walker's name gate reasons about.
NAMEY = "客户姓名称联系人收款本先生女士小张王李欧阳司马回拨电话已处理为是：: \t·.•・的"
DETECT_CLASSES = ("mobile", "id_card", "bank_card", "email", "person_name", "ip_address", "uscc", "address")


@st.composite
def column_masks(draw: st.DrawFn, i: int) -> ColumnMask | None:
    if draw(st.booleans()):
        return None
    cls = draw(st.sampled_from(MASK_CLASSES))
    action = draw(st.sampled_from(("mask", "mask", "mask", "redact", "hash", "null", "clear", "fake")))
    return ColumnMask(i, f"c{i}", cls, action, derived=action == "redact" and draw(st.booleans()))


@st.composite
def plans(draw: st.DrawFn) -> tuple[tuple[m.FieldDescription, ...], tuple[int, ...], Allow]:
    n = draw(st.integers(1, 5))
    fields = tuple(
        m.FieldDescription(f"c{i}", 0, 0, draw(st.sampled_from(OIDS)), -1, -1, 0) for i in range(n)
    )
    formats = tuple(draw(st.sampled_from((0, 0, 0, 1))) for _ in range(n))
    columns = tuple(draw(column_masks(i)) for i in range(n))
    detect = frozenset(draw(st.lists(st.sampled_from(DETECT_CLASSES), max_size=3)))
    allow = Allow(
        kind="select",
        columns=tuple(c or ColumnMask(i, f"c{i}", None, "clear") for i, c in enumerate(columns)),
    )
    return fields, formats, Allow(kind="select", columns=allow.columns, detect=detect)


def cards() -> st.SearchStrategy[str]:
    return st.integers(16, 19).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n))


TEXTS = st.one_of(
    mobiles(),
    id18s(),
    cards(),
    st.text("0123456789", min_size=1, max_size=20),
    st.text("0123456789 -()+\t.:@abX客户姓名已处理电话", max_size=40),
    st.text(NAMEY, max_size=16),
    st.lists(st.one_of(mobiles(), st.text(NAMEY, max_size=6)), max_size=4).map("".join),
    st.builds(
        lambda a, b, c: f"{a} {b} {c}",
        st.sampled_from(("客户回拨电话", "联系人", "note")),
        mobiles(),
        st.text(max_size=5),
    ),
    st.text(max_size=30),
)


def values() -> st.SearchStrategy[bytes | None]:
    return st.one_of(
        st.none(),
        TEXTS.map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.binary(max_size=12),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: str(v).encode()),
        st.integers(-(2**31), 2**31 - 1).map(lambda v: struct.pack("!i", v)),
    )


def raw_row(vals: list[bytes | None]) -> bytes:
    return m.DataRow(tuple(vals)).serialize()


@st.composite
def messages(draw: st.DrawFn, ncols: int) -> bytes:
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return (
            m.CommandComplete("SELECT 1").serialize()
            if hasattr(m, "CommandComplete")
            else b"C\x00\x00\x00\x04"
        )
    if kind == 1:  # a row of another width
        return raw_row(draw(st.lists(values(), max_size=ncols + 2)))
    if kind == 2:  # malformed: a byte cut from the body, or a bad length
        body = bytearray(raw_row(draw(st.lists(values(), min_size=ncols, max_size=ncols))))
        if len(body) > 7 and draw(st.booleans()):
            del body[-1]
            struct.pack_into("!i", body, 1, len(body) - 1)
        else:
            body += b"\x00"
            struct.pack_into("!i", body, 1, len(body) - 1)
        return bytes(body)
    return raw_row(draw(st.lists(values(), min_size=ncols, max_size=ncols)))


def reference(
    plan: RowPlan, buf: bytes, start: int, max_rows: int, ncols: int
) -> tuple[bytes, int, int, int, bool]:
    """The walk's contract, spelled out over RowPlan.apply: (output, consumed, rows, changed,
    stopped before a row apply raises for)."""
    out = []
    pos, rows, changed = start, 0, 0
    end = len(buf)
    while max_rows < 0 or rows < max_rows:
        if end - pos < 5 or buf[pos : pos + 1] != b"D":
            break
        mlen = struct.unpack_from("!i", buf, pos + 1)[0]
        if mlen < 4 or mlen > MAX_LEN or mlen + 1 > end - pos:
            break
        mend = pos + 1 + mlen
        if ncols >= 0 and (mend - pos < 7 or struct.unpack_from("!h", buf, pos + 5)[0] != ncols):
            break
        try:
            new, n = plan.apply(buf, pos, mend)
        except MessageError:
            return b"".join(out), pos, rows, changed, True
        out.append(buf[pos:mend] if new is None else new)
        changed += n
        rows += 1
        pos = mend
    return b"".join(out), pos, rows, changed, False


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), shape=plans())
def test_walk_equals_apply_row_by_row(data: st.DataObject, shape) -> None:  # type: ignore[no-untyped-def]
    fields, formats, allow = shape
    ref_gate, native_gate = guard(), guard()
    try:
        ref_plan = plan_rows(fields, formats, allow, ref_gate)
    except Unmaskable:
        assume(False)
    plan = plan_rows(fields, formats, allow, native_gate)
    assume(plan is not None and ref_plan is not None)
    assert plan is not None and ref_plan is not None
    ncols = len(fields)
    check = data.draw(st.sampled_from((ncols, -1)))
    msgs = data.draw(st.lists(messages(ncols), max_size=12))
    prefix = data.draw(st.binary(max_size=3))
    buf = prefix + b"".join(msgs)
    cut = data.draw(st.integers(0, 6))
    if cut and len(buf) > len(prefix) + cut:
        buf = buf[:-cut]  # an incomplete last message
    max_rows = data.draw(st.sampled_from((-1, -1, 0, 1, 3)))
    want_out, want_pos, want_rows, want_changed, raised = reference(
        ref_plan, buf, len(prefix), max_rows, check
    )
    out, pos, rows, changed = plan.walk(buf, len(prefix), len(buf), max_rows, check, MAX_LEN)
    assert (pos, rows, changed) == (want_pos, want_rows, want_changed)
    consts = plan.consts or [None] * ncols
    for f, fmt, cm, fn, c in zip(fields, formats, allow.columns, plan.fns, consts, strict=True):
        event(f"op {rowmask.native_op(f, fmt, cm, allow.detect, native_gate, 'utf-8', fn or c)[0][0]}")
    event(f"rows {min(rows, 3)} raised {raised}")
    assert (buf[len(prefix) : pos] if out is None else out) == want_out
    if out is not None:
        assert want_changed > 0
    if not raised:
        assert native_gate._masked_counts == ref_gate._masked_counts


def test_bench_shape_uses_native_ops_and_counts_them() -> None:
    g = guard()
    fields = tuple(
        m.FieldDescription(n, 0, 0, oid, -1, -1, 0)
        for n, oid in (("id", 23), ("phone", 25), ("id_card", 25), ("note", 25))
    )
    allow = Allow(
        kind="select",
        columns=(
            ColumnMask(0, "id", None, "clear"),
            ColumnMask(1, "phone", "mobile", "mask"),
            ColumnMask(2, "id_card", "id_card", "mask"),
            ColumnMask(3, "note", None, "clear"),
        ),
        detect=frozenset({"mobile", "id_card", "bank_card"}),
    )
    plan = plan_rows(fields, None, allow, g)
    assert plan is not None and plan.native is not None
    ops = [
        native_op[0][0]
        for native_op in (
            rowmask.native_op(f, 0, c, allow.detect, g, "utf-8", fn)
            for f, c, fn in zip(fields, allow.columns, plan.fns, strict=True)
        )
    ]
    assert ops == [walker.PASS, walker.MOBILE, walker.ID, walker.DETECT]
    rows = [raw_row([b"1", b"13812345678", b"11010519491231002X", "无号码".encode()]) for _ in range(3)]
    buf = b"".join(rows)
    out, pos, n, changed = plan.walk(buf, 0, len(buf), -1, 4, MAX_LEN)
    assert (pos, n, changed) == (len(buf), 3, 6)
    assert out == raw_row([b"1", b"138****5678", b"110***********002X", "无号码".encode()]) * 3
    assert g._masked_counts == {"mobile": 3, "id_card": 3}


def test_a_gate_with_other_maskers_gets_its_functions_called() -> None:
    from tests.proxy.pg.fakegate import FakeGate

    fg = FakeGate()
    f = m.FieldDescription("phone", 0, 0, 25, -1, -1, 0)
    cm = ColumnMask(0, "phone", "mobile", "mask")
    plan = plan_rows((f,), None, Allow(kind="select", columns=(cm,)), fg)
    assert plan is not None
    op = rowmask.native_op(f, 0, cm, frozenset(), fg, "utf-8", plan.fns[0])
    assert op[0][0] == walker.PYFN


GATE_CLASSES = st.frozensets(st.sampled_from(sorted(CLASSES)), max_size=4)
GATE_TEXT = st.one_of(
    st.text(st.sampled_from("0123456789 -\t()+.:@aX客户姓名已处理电话先生㐀，：。"), max_size=40),
    st.text(NAMEY, max_size=16),
    st.lists(st.one_of(mobiles(), id18s(), st.text(NAMEY, max_size=6)), max_size=4).map("".join),
    st.text(max_size=40),
    st.lists(
        st.one_of(
            mobiles(), id18s(), cards(), st.text(st.sampled_from("电话 号码，0123456789-+:"), max_size=6)
        ),
        max_size=5,
    ).map("".join),
)


@settings(max_examples=1500, deadline=None)
@given(text=GATE_TEXT, classes=GATE_CLASSES)
def test_detect_is_the_text_maskers_answer_where_sure(text: str, classes: frozenset[str]) -> None:
    """Soundness of DETECT: where the walker answers (unchanged, or masked in C), its answer is
    the reference text masker's."""
    from masking.detectors import DETECTABLE

    bits = rowmask._gate_bits(classes & DETECTABLE)
    assert bits is not None
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        return
    want = masking.make_text_masker(classes, "mask")(text)
    got = walker.detect(raw, bits)
    if got is not None:
        assert got.decode() == want
    if walker.detect_clear(raw, bits):
        assert want == text


def test_detect_masks_bare_numbers_in_chinese_text() -> None:
    for classes in (frozenset({"mobile", "id_card", "bank_card"}), DETECTABLE):
        bits = rowmask._gate_bits(classes)
        assert bits is not None
        got = walker.detect("客户回拨电话 13912345678 已处理".encode(), bits)
        assert got == "客户回拨电话 139****5678 已处理".encode()
    # A name after a context word is the Python finder's to mask.
    assert walker.detect("客户张三 13912345678".encode(), rowmask._gate_bits(DETECTABLE)) is None
    assert walker.detect("客户：王五".encode(), rowmask._gate_bits(DETECTABLE)) is None
    assert walker.detect("联系人为李四".encode(), rowmask._gate_bits(DETECTABLE)) is None


def test_detect_gate_matches_the_digit_gate_regex() -> None:
    from masking.detectors import _DIGIT_GATE_RE

    for s in [
        "12 (345) 6789",
        "12 3456 7890",
        "12-345-678",
        "1234567",
        "123456",
        "12 ( ) 345 6789",
        "12+-(3456-7890",
        "138 - 1234 - 5678",
        "10) - 2345-6789",
        "12 345  6789",
        "110101 900307 123",
        "110101  900307",
        "11010 900307",
    ]:
        assert (not walker.detect_clear(s.encode(), walker.G_DIGITS)) == bool(_DIGIT_GATE_RE.search(s)), s


@settings(max_examples=200, deadline=None)
@given(data=st.data(), ncols=st.integers(0, 4))
def test_the_pass_through_plan_only_counts(data: st.DataObject, ncols: int) -> None:
    plan = rowmask.PASS_THROUGH
    assert plan is not None
    buf = b"".join(data.draw(st.lists(messages(ncols), max_size=8)))
    check = data.draw(st.sampled_from((ncols, -1)))
    want_out, want_pos, want_rows, _, _ = reference(plan, buf, 0, -1, check)
    out, pos, rows, changed = plan.walk(buf, 0, len(buf), -1, check, MAX_LEN)
    assert (out, pos, rows, changed) == (None, want_pos, want_rows, 0)
    assert buf[:pos] == want_out
