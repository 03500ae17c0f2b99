"""A run of DataRows masked in one native call, with the framer paused after its first row
(`Framer.pause_rows`) and resumed past the rows walked: the client gets the same bytes, and the
statement the same record, as when every row is framed one by one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from policies.decision import Allow, ColumnMask, Decision
from proxy.core.commands import SendClient
from proxy.core.events import ClientData, UpstreamData
from proxy.pg import messages as m
from proxy.services.gate import Principal
from tests.proxy.pg.fakegate import FakeGate
from tests.proxy.pg.transcripts import login

FIELDS = tuple(m.FieldDescription(n, 0, 0, 25, -1, -1, 0) for n in ("id", "phone", "note"))


def _answer(rows: int, ncols_bad: int) -> bytes:
    out = bytearray(m.RowDescription(FIELDS).serialize())
    for g in range(rows):
        note = f"回拨 139{g:08d}".encode() if g % 3 else None
        vals: tuple[bytes | None, ...] = (str(g).encode(), f"138{g:08d}".encode(), note)
        if g == ncols_bad:
            vals = vals[:2]  # a row whose column count is not the description's: fail closed
        out += m.DataRow(vals).serialize()
    out += m.CommandComplete(f"SELECT {rows}").serialize() + m.ReadyForQuery(b"I").serialize()
    return bytes(out)


def _run(
    answer: bytes, cuts: list[int], limit: int | None, restricted: bool, pause: bool
) -> tuple[bytes, list]:
    allow = Allow(
        kind="select",
        columns=(
            ColumnMask(0, "id", None, "clear"),
            ColumnMask(1, "phone", "mobile", "mask"),
            ColumnMask(2, "note", "free_text", "mask"),
        ),
        row_limit=limit,
        detect=frozenset({"mobile"}),
    )

    def decide(p: Principal, sql: str) -> Decision:
        return allow

    gate = FakeGate(decide)
    s, _, _ = login(gate, unrestricted=not restricted)
    s._uf.pause_rows = pause
    s._uf.pause_min = 0
    s.handle(ClientData(m.Query("SELECT id, phone, note FROM t").serialize()))
    out = bytearray()
    last = 0
    for c in [*sorted(cuts), len(answer)]:
        for cmd in s.handle(UpstreamData(answer[last:c])):
            if isinstance(cmd, SendClient):
                out += cmd.data
        last = c
    records = [(r.rows, r.masked, r.truncated, r.outcome) for r in gate.records]
    return bytes(out), records


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 40),
    st.integers(-1, 40),
    st.lists(st.integers(0, 4000), max_size=6),
    st.one_of(st.none(), st.integers(0, 30)),
    st.booleans(),
)
def test_rows_walked_past_a_paused_framer_are_the_rows_framed_one_by_one(
    rows: int, bad: int, cuts: list[int], limit: int | None, restricted: bool
) -> None:
    answer = _answer(rows, bad)
    cuts = [c for c in cuts if c < len(answer)]
    assert _run(answer, cuts, limit, restricted, pause=True) == _run(
        answer, cuts, limit, restricted, pause=False
    )
