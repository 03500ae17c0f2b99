"""The COPY masker in every layout the engine allows: text with any delimiter and NULL string,
and CSV with any delimiter, quote, escape, NULL string and header.

Rows are written here the way the server writes them (copyto.c CopyAttributeOutText /
CopyAttributeOutCSV), so the property tests hold for what a server can send: a masked row is
still one row of the same layout with the same number of fields, each field outside the masked
column is what it was, and the masked column holds the masker's output, never the value."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.decision import Allow, ColumnMask, CopyFraming
from proxy.pg.rowmask import CopyPlan, split_csv
from proxy.services.rows import Unmaskable
from tests.proxy.pg.fakegate import FakeGate

GATE = FakeGate()


def _allow(framing: CopyFraming | None, ncols: int, masked_at: int) -> Allow:
    cols = tuple(
        ColumnMask(i, f"c{i}", "mobile", "mask") if i == masked_at else ColumnMask(i, f"c{i}", None, "clear")
        for i in range(ncols)
    )
    return Allow(kind="copy", columns=cols, detect=frozenset({"mobile"}), copy=framing)


def server_csv(values: list[str | None], fr: CopyFraming, force_quote: bool = False) -> str:
    out = []
    for v in values:
        if v is None:
            out.append(fr.null)
            continue
        needs = force_quote or v == fr.null or any(c in v for c in (fr.delimiter, fr.quote, "\n", "\r"))
        if not needs:
            out.append(v)
            continue
        body = "".join(fr.escape + c if c in (fr.quote, fr.escape) else c for c in v)
        out.append(fr.quote + body + fr.quote)
    return fr.delimiter.join(out) + "\n"


def server_text(values: list[str | None], fr: CopyFraming) -> str:
    out = []
    for v in values:
        if v is None:
            out.append(fr.null)
            continue
        esc = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v", "\\": "\\\\"}
        out.append("".join(esc.get(c) or ("\\" + c if c == fr.delimiter else c) for c in v))
    return fr.delimiter.join(out) + "\n"


def read_csv(line: str, fr: CopyFraming) -> list[str | None]:
    assert line.endswith("\n")
    return [None if (raw == fr.null and not q) else v for raw, v, q in split_csv(line[:-1], fr)]


PHONE = "13800138000"
MASKED = "138****8000"
printable = "".join(chr(c) for c in range(0x21, 0x7F))
alphabet = st.sampled_from(list(printable + " \t\n\r\\\"'中文"))
values = st.lists(st.one_of(st.none(), st.text(alphabet, max_size=8)), min_size=1, max_size=4)
csv_framings = st.builds(
    lambda d, q, e, n, h: CopyFraming("csv", d, n, q, e, h),
    st.sampled_from(list(",;|2a\t ")),
    st.sampled_from(list("\"'1x")),
    st.sampled_from(list("\"'\\1")),
    st.sampled_from(["", "x", "NULL", "\\N"]),
    st.booleans(),
).filter(lambda f: f.delimiter != f.quote and f.delimiter not in f.null and f.quote not in f.null)


@settings(max_examples=300, deadline=None)
@given(csv_framings, values, st.integers(0, 4), st.booleans())
def test_csv_rows_stay_valid_and_only_the_masked_column_changes(
    fr: CopyFraming, others: list[str | None], where: int, force_quote: bool
) -> None:
    where = min(where, len(others))
    row = [*others[:where], PHONE, *others[where:]]
    plan = CopyPlan(len(row), _allow(fr, len(row), where), GATE)
    if fr.header:
        names = [f"c{i}" for i in range(len(row))]
        head = server_csv(names, fr).encode()  # type: ignore[arg-type]
        assert plan.apply(head) == (head, 0)
    out, n = plan.apply(server_csv(row, fr, force_quote).encode())
    assert n == 1
    back = read_csv(out.decode(), fr)
    assert back == [*others[:where], MASKED, *others[where:]]
    assert PHONE not in out.decode()


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["\t", ",", "|", ";", " "]),
    st.sampled_from(["\\N", "", "x"]),
    values,
    st.integers(0, 4),
)
def test_text_rows_with_any_delimiter(delim: str, null: str, others: list[str | None], where: int) -> None:
    fr = CopyFraming("text", delim, null)
    where = min(where, len(others))
    row = [*others[:where], PHONE, *others[where:]]
    if any(v == null for v in others):
        return  # text format cannot tell such a value from NULL: the server's ambiguity, not ours
    plan = CopyPlan(len(row), _allow(fr, len(row), where), GATE)
    out, n = plan.apply(server_text(row, fr).encode())
    assert n == 1
    assert out.decode() == server_text([*others[:where], MASKED, *others[where:]], fr)


def test_digit_delimiter_and_tabs_do_not_shift_columns() -> None:
    """The red team's row: `a<TAB>b<TAB>c` 2 phone 2 id, CSV with DELIMITER '2'."""
    fr = CopyFraming("csv", "2", "", '"', '"')
    plan = CopyPlan(3, _allow(fr, 3, 1), GATE)
    line = server_csv(["a\tb\tc", PHONE, "12"], fr)
    assert line == 'a\tb\tc2138001380002"12"\n'
    out, n = plan.apply(line.encode())
    assert n == 1 and PHONE not in out.decode()
    assert read_csv(out.decode(), fr) == ["a\tb\tc", MASKED, "12"]


def test_a_row_that_does_not_split_into_the_columns_is_refused() -> None:
    fr = CopyFraming("csv", ",", "", '"', '"')
    plan = CopyPlan(2, _allow(fr, 2, 1), GATE)
    for line in (b"1,2,13800138000\n", b"13800138000\n", b'1,"13800138000\n'):
        with pytest.raises(Unmaskable):
            plan.apply(line)


def test_masked_null_and_quoted_null_string() -> None:
    fr = CopyFraming("csv", ",", "", '"', '"')
    plan = CopyPlan(2, _allow(fr, 2, 1), GATE)
    assert plan.apply(b"1,\n") == (b"1,\n", 0)  # NULL stays NULL
    out, _ = plan.apply(b'1,""\n')  # an empty string is not NULL: masked as a value
    assert read_csv(out.decode(), fr)[1] is not None


def test_binary_framing_is_never_masked() -> None:
    with pytest.raises(Unmaskable):
        CopyPlan(1, _allow(CopyFraming("binary"), 1, 0), GATE)


@pytest.mark.parametrize("fmt", ["text", "csv"])
def test_a_null_string_equal_to_a_value_is_no_oracle(fmt: str) -> None:
    """NULL '13800138000': text format writes such a value as the NULL string (CSV quotes it);
    a masked column's field equal to it is masked, never passed as a NULL."""
    fr = CopyFraming(fmt, "\t" if fmt == "text" else ",", PHONE, '"', '"')
    plan = CopyPlan(2, _allow(fr, 2, 1), GATE)
    line = server_text(["1", PHONE], fr) if fmt == "text" else server_csv(["1", PHONE], fr)
    out, n = plan.apply(line.encode())
    assert n == 1 and PHONE not in out.decode()


def test_copy_rows_are_noted_for_the_observers() -> None:
    """While disclosures are observed, a COPY's values are noted as a row's are: classified
    columns by class (masked here: not clear), the rest read for the numbers they hold."""
    from proxy.services.gate import Disclosed

    fr = CopyFraming(format="csv", delimiter=",", null="")
    plan = CopyPlan(3, _allow(fr, 3, 1), GATE, observe=(("*", ""), ("mobile", "t.c1"), ("*", "")))
    out, _ = plan.apply(b'"call 13912345670",13812345678,\n')
    assert b"13812345678" not in out
    assert plan.seen == [
        Disclosed("*", "", "call 13912345670", False),  # the role's detectors mask it
        Disclosed("mobile", "t.c1", "13812345678", False),
    ]


@given(st.lists(st.text(alphabet='ab1\t\\\n,"', max_size=6), min_size=1, max_size=4))
@settings(max_examples=100, deadline=None)
def test_an_unrestricted_copy_is_noted_and_never_refused(values: list[str]) -> None:
    """Observation of an unrestricted session's COPY never refuses: a row that does not split
    as the statement said is read whole."""
    allow = Allow(kind="copy", columns=(), copy=CopyFraming())
    plan = CopyPlan(2, allow, GATE, observe=(("*", ""), ("*", "")), mask=False)
    line = "\t".join(values).encode() + b"\n"
    out, n = plan.apply(line)
    assert (out, n) == (line, 0)
    assert plan.seen is not None
