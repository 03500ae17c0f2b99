"""Disclosures on the PostgreSQL row path: what a person received, noted once per run of rows."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from policies.decision import Allow, ColumnMask, Decision
from proxy.core.commands import SendClient
from proxy.core.events import ClientData, UpstreamData
from proxy.pg import messages as m
from proxy.pg import rowmask
from proxy.services.disclosure import text_reader
from proxy.services.gate import Disclosed, Principal
from tests.proxy.pg.fakegate import FakeGate
from tests.proxy.pg.transcripts import login

SQL = "SELECT phone, id, note FROM customers"


def decision(p: Principal, sql: str) -> Decision:
    action = "clear" if p.unrestricted else "mask"
    return Allow(
        kind="select",
        columns=(
            ColumnMask(0, "phone", "mobile", action, sources=("public.customers.phone",)),
            ColumnMask(1, "id", None, "clear", sources=("public.customers.id",)),
            ColumnMask(2, "note", None, "clear", sources=("public.customers.note",)),
        ),
        classes=("mobile",),
    )


def run(*, observing: bool, unrestricted: bool, rows: int = 3) -> tuple[FakeGate, bytes]:
    gate = FakeGate(decision)
    gate.observing = observing
    gate.customer_key_column = "crm.customers.id"
    s, _, _ = login(gate, unrestricted=unrestricted)
    s.handle(ClientData(m.Query(SQL).serialize()))
    fields = tuple(
        m.FieldDescription(n, 0, 0, oid, -1, -1, 0) for n, oid in (("phone", 25), ("id", 23), ("note", 25))
    )
    data = m.RowDescription(fields).serialize()
    for i in range(rows):
        data += m.DataRow((f"1380013800{i}".encode(), str(i).encode(), b"hello")).serialize()
    data += m.CommandComplete(f"SELECT {rows}").serialize() + m.ReadyForQuery(b"I").serialize()
    out = b"".join(c.data for c in s.handle(UpstreamData(data)) if isinstance(c, SendClient))
    return gate, out


def test_a_restricted_person_is_noted_with_masked_values_and_customer_keys_in_one_batch() -> None:
    gate, out = run(observing=True, unrestricted=False)
    assert b"13800138000" not in out  # still masked
    ((user, sid, values),) = gate.disclosed
    assert user == "alice" and sid == "t-1"
    assert values[:2] == (
        Disclosed("mobile", "public.customers.phone", "13800138000", False),
        Disclosed("customer_key", "public.customers.id", "0", True),
    )
    # The unclassified note is read for the numbers it holds (on the disclosure thread).
    assert values[2] == Disclosed("*", "public.customers.note", "hello", True)
    assert len(values) == 9


def test_an_unrestricted_person_is_noted_in_clear_and_gets_the_same_bytes() -> None:
    gate, out = run(observing=True, unrestricted=True)
    _, plain = run(observing=False, unrestricted=True)
    assert out == plain and b"13800138002" in out
    ((_, _, values),) = gate.disclosed
    assert [(d.cls, d.value, d.clear) for d in values if d.cls == "mobile"] == [
        ("mobile", f"1380013800{i}", True) for i in range(3)
    ]


def test_without_observers_nothing_is_noted_and_the_bytes_are_the_same() -> None:
    gate, out = run(observing=False, unrestricted=False)
    _, observed_out = run(observing=True, unrestricted=False)
    assert gate.disclosed == [] and out == observed_out


@given(
    st.lists(st.lists(st.one_of(st.none(), st.binary(max_size=20)), min_size=3, max_size=3), max_size=20),
    st.sets(st.integers(0, 2), min_size=1),
)
def test_the_native_column_reader_agrees_with_the_reference(
    rows: list[list[bytes | None]], wanted: set[int]
) -> None:
    if rowmask._walker is None:
        return  # MASKGATE_PURE=1: the reference is all there is
    buf = b"".join(m.DataRow(tuple(r)).serialize() for r in rows)
    reader = text_reader("utf-8")
    observe = {i: ("mobile", "", True, reader) for i in wanted}
    native = rowmask.RowPlan([None, None, None], observe=observe)
    native.note(buf, 0, len(buf))
    reference = rowmask.RowPlan([None, None, None], observe=observe)
    walker, rowmask._walker = rowmask._walker, None
    try:
        reference.note(buf, 0, len(buf))
    finally:
        rowmask._walker = walker
    assert (
        native.seen
        == reference.seen
        == [(i, v) for r in rows for i, v in enumerate(r) if i in wanted and v is not None]
    )


def test_binary_arrays_records_and_bytea_are_read_as_their_client_reads_them() -> None:
    import struct

    from proxy.pg.rowmask import _bytea_text, _structured

    read = _structured("utf-8")
    array = struct.pack("!iiIii", 1, 0, 20, 1, 1) + struct.pack("!iq", 8, 13812345678)
    record = struct.pack("!i", 2) + struct.pack("!Iiq", 20, 8, 13812345678) + struct.pack("!Iii", 23, 4, 1)
    nested = struct.pack("!i", 1) + struct.pack("!Ii", 1016, len(array)) + array  # ROW(ARRAY[...])
    assert read(array) == "13812345678"
    assert read(record) == "13812345678\n1"
    assert read(nested) == "13812345678"
    assert read(b"not binary 13812345678") == "not binary 13812345678"
    assert _bytea_text("utf-8")(b"\\x3133383132333435363738") == "13812345678"
