"""Playbooks of SQL cursors in the relay: FETCH masked by the cursor's decision, its row budget
across fetches, resolution when the answer starts, one namespace with protocol portals."""

from __future__ import annotations

from policies.decision import Allow, ColumnMask, CursorEffect, Decision, TransactionEffect
from proxy.core.playbook import Playbook
from proxy.pg import messages as m
from proxy.pg.relay import FAILING_DESCRIBE, FAILING_QUERY, FETCH_UNKNOWN
from proxy.pg.session import PgSession
from proxy.services.gate import Principal
from proxy.services.statement import withheld_message
from tests.proxy.pg.fakegate import FakeGate
from tests.proxy.pg.transcripts import (
    DETECT,
    PHONE,
    from_client,
    from_upstream,
    login,
    refusal,
    text_field,
    to_client,
    to_upstream,
    truncated,
)

RD = m.RowDescription((text_field("phone"),))
CLEAR = ColumnMask(0, "phone", None, "clear")
SYNTAX = m.ErrorResponse((("S", "ERROR"), ("C", "42601"), ("M", "syntax error")))  # the stand-in's
# What the fake policy decides: `DECLARE <name> masked|clear [hold]`, `FETCH <name>`, ...
MASKED = {"masked": (PHONE,), "clear": (CLEAR,)}


def decide(p: Principal, sql: str) -> Decision:
    words = sql.split()
    if words[0] == "DECLARE":
        columns = MASKED[words[2]]
        classes = ("mobile",) if columns == (PHONE,) else ()
        effect = CursorEffect("declare", words[1], hold="hold" in words)
        return Allow(
            kind="select", columns=columns, row_limit=3, detect=DETECT, classes=classes, cursor=effect
        )
    if words[0] in ("FETCH", "MOVE"):
        return Allow(
            kind="cursor", row_limit=3, detect=DETECT, cursor=CursorEffect(words[0].lower(), words[1])
        )
    if words[0] == "CLOSE":
        return Allow(kind="cursor", cursor=CursorEffect("close", None if words[1] == "ALL" else words[1]))
    if words[0] in ("COMMIT", "ROLLBACK", "BEGIN"):
        return Allow(kind="transaction", transaction=TransactionEffect(words[0].lower()))
    return Allow(kind="select", detect=DETECT)


def session() -> tuple[PgSession, FakeGate, Playbook]:
    return login(FakeGate(decide))


def ok(pb: Playbook, sql: str, tag: str, status: bytes = b"T") -> Playbook:
    return (
        pb
        >> from_client(m.Query(sql))
        << to_upstream(m.Query(sql))
        >> from_upstream(m.CommandComplete(tag), m.ReadyForQuery(status))
        << to_client(m.CommandComplete(tag), m.ReadyForQuery(status))
    )


def phones(*ns: int) -> list[m.DataRow]:
    return [m.DataRow((f"1380000000{n}".encode(),)) for n in ns]


def masked(*ns: int) -> list[m.DataRow]:
    return [m.DataRow((f"138****000{n}".encode(),)) for n in ns]


def declared(pb: Playbook, name: str = "c", how: str = "masked") -> Playbook:
    ok(pb, "BEGIN", "BEGIN")
    return ok(pb, f"DECLARE {name} {how}", "DECLARE CURSOR")


def test_fetch_is_masked_by_its_cursor_and_the_budget_spans_fetches() -> None:
    _, gate, pb = session()
    assert declared(pb)
    assert (
        pb
        >> from_client(m.Query("FETCH c 2"))
        << to_upstream(m.Query("FETCH c 2"))
        >> from_upstream(RD, *phones(1, 2), m.CommandComplete("FETCH 2"), m.ReadyForQuery(b"T"))
        << to_client(RD, *masked(1, 2), m.CommandComplete("FETCH 2"), m.ReadyForQuery(b"T"))
        >> from_client(m.Query("FETCH c 2"))
        << to_upstream(m.Query("FETCH c 2"))
        >> from_upstream(RD, *phones(3, 4), m.CommandComplete("FETCH 2"), m.ReadyForQuery(b"T"))
        << to_client(RD, *masked(3), truncated(3), m.CommandComplete("FETCH 1"), m.ReadyForQuery(b"T"))
    )
    assert (gate.records[-1].rows, gate.records[-1].truncated) == (1, True)


def test_fetch_through_the_extended_protocol_is_masked_by_its_cursor() -> None:
    _, _, pb = session()
    assert declared(pb)
    assert (
        pb
        >> from_client(
            m.Parse("", "FETCH c 5"), m.Bind("", ""), m.Describe(b"P", ""), m.Execute("", 0), m.Sync()
        )
        << to_upstream(
            m.Parse("", "FETCH c 5"), m.Bind("", ""), m.Describe(b"P", ""), m.Execute("", 0), m.Sync()
        )
        >> from_upstream(m.ParseComplete(), m.BindComplete(), RD, *phones(1, 2, 3, 4))
        << to_client(m.ParseComplete(), m.BindComplete(), RD, *masked(1, 2, 3))
        >> from_upstream(m.CommandComplete("FETCH 4"), m.ReadyForQuery(b"T"))
        << to_client(truncated(3), m.CommandComplete("FETCH 3"), m.ReadyForQuery(b"T"))
    )


def test_a_fetch_behind_a_redeclare_is_masked_by_the_new_cursor() -> None:
    """Pipelined: the FETCH is decided while CLOSE and DECLARE are still in flight; it is
    resolved when its answer starts, so the cursor the server fetches from masks it."""
    _, _, pb = session()
    assert declared(pb, "c", "clear")
    sent = (m.Query("CLOSE c"), m.Query("DECLARE c masked"), m.Query("FETCH c 2"))
    assert (
        pb
        >> from_client(*sent)
        << to_upstream(*sent)
        >> from_upstream(m.CommandComplete("CLOSE CURSOR"), m.ReadyForQuery(b"T"))
        << to_client(m.CommandComplete("CLOSE CURSOR"), m.ReadyForQuery(b"T"))
        >> from_upstream(m.CommandComplete("DECLARE CURSOR"), m.ReadyForQuery(b"T"))
        << to_client(m.CommandComplete("DECLARE CURSOR"), m.ReadyForQuery(b"T"))
        >> from_upstream(RD, *phones(1, 2), m.CommandComplete("FETCH 2"), m.ReadyForQuery(b"T"))
        << to_client(RD, *masked(1, 2), m.CommandComplete("FETCH 2"), m.ReadyForQuery(b"T"))
    )


def test_a_fetch_of_an_unknown_cursor_is_refused() -> None:
    _, _, pb = session()
    assert ok(pb, "BEGIN", "BEGIN")
    assert (
        pb
        >> from_client(m.Query("FETCH c 2"))
        << to_upstream(FAILING_QUERY)
        >> from_upstream(SYNTAX, m.ReadyForQuery(b"E"))
        << to_client(refusal(FETCH_UNKNOWN), m.ReadyForQuery(b"E"))
    )


def test_a_fetch_behind_a_close_is_refused_when_its_answer_starts() -> None:
    _, _, pb = session()
    assert declared(pb)
    assert (
        pb
        >> from_client(m.Query("CLOSE c"), m.Query("FETCH c 2"))
        << to_upstream(m.Query("CLOSE c"), m.Query("FETCH c 2"))
        >> from_upstream(m.CommandComplete("CLOSE CURSOR"), m.ReadyForQuery(b"T"))
        << to_client(m.CommandComplete("CLOSE CURSOR"), m.ReadyForQuery(b"T"))
        # (a server would say the cursor does not exist; one that answered anyway is refused)
        >> from_upstream(RD, *phones(1, 2), m.CommandComplete("FETCH 2"), m.ReadyForQuery(b"T"))
        # the client is told, and the block is failed upstream too
        << to_upstream(FAILING_QUERY)
        << to_client(refusal(FETCH_UNKNOWN))
        >> from_upstream(SYNTAX, m.ReadyForQuery(b"E"))
        << to_client(m.ReadyForQuery(b"E"))
    )


def test_a_portal_bound_under_the_cursor_name_drops_the_cursor() -> None:
    _, _, pb = session()
    assert declared(pb, "c", "clear")
    assert (
        pb
        >> from_client(m.Close(b"P", "c"), m.Parse("s", "SELECT phone"), m.Bind("c", "s"), m.Sync())
        << to_upstream(m.Close(b"P", "c"), m.Parse("s", "SELECT phone"), m.Bind("c", "s"), m.Sync())
        >> from_upstream(m.CloseComplete(), m.ParseComplete(), m.BindComplete(), m.ReadyForQuery(b"T"))
        << to_client(m.CloseComplete(), m.ParseComplete(), m.BindComplete(), m.ReadyForQuery(b"T"))
        >> from_client(m.Parse("", "FETCH c 2"), m.Bind("", ""), m.Execute("", 0), m.Sync())
        << to_upstream(m.Parse("", "FETCH c 2"), m.Bind("", ""), FAILING_DESCRIBE, m.Sync())
    )


def test_cursors_without_hold_go_with_their_transaction_and_hold_ones_with_its_rollback() -> None:
    s, _, pb = session()
    assert declared(pb, "c")
    assert ok(pb, "DECLARE h masked hold", "DECLARE CURSOR")
    assert ok(pb, "COMMIT", "COMMIT", b"I")
    assert s.relay is not None and set(s.relay.cursors.open) == {"h"}
    assert ok(pb, "BEGIN", "BEGIN")
    assert ok(pb, "DECLARE g masked hold", "DECLARE CURSOR")
    # COMMIT of a failed transaction: the server answers ROLLBACK, and the cursor is gone.
    assert ok(pb, "COMMIT", "ROLLBACK", b"I")
    assert set(s.relay.cursors.open) == {"h"}
    assert ok(pb, "CLOSE ALL", "CLOSE CURSOR ALL", b"I")
    assert not s.relay.cursors.open


def test_a_failed_declare_keeps_the_cursor_the_server_holds() -> None:
    s, _, pb = session()
    assert declared(pb, "c", "masked")
    exists = m.ErrorResponse((("S", "ERROR"), ("C", "42P03"), ("M", 'cursor "c" already exists')))
    assert (
        pb
        >> from_client(m.Query("DECLARE c clear"))
        << to_upstream(m.Query("DECLARE c clear"))
        >> from_upstream(exists, m.ReadyForQuery(b"E"))
        << to_client(exists, m.ReadyForQuery(b"E"))
    )
    assert s.relay is not None and s.relay.cursors.open["c"].allow.columns == (PHONE,)


def test_a_reload_redecides_the_cursor() -> None:
    rewritten = {"sql": "DECLARE c FOR SELECT phone LIMIT 4"}
    columns = {"c": (PHONE,)}

    def by_policy(p: Principal, sql: str) -> Decision:
        d = decide(p, sql)
        if isinstance(d, Allow) and sql.startswith("DECLARE"):
            return Allow(
                kind="select",
                columns=columns["c"],
                row_limit=3,
                detect=DETECT,
                cursor=d.cursor,
                rewritten_sql=rewritten["sql"],
            )
        return d

    gate = FakeGate(by_policy)
    _, gate, pb = login(gate)
    ok(pb, "BEGIN", "BEGIN")
    assert (
        pb
        >> from_client(m.Query("DECLARE c masked"))
        << to_upstream(m.Query(rewritten["sql"]))
        >> from_upstream(m.CommandComplete("DECLARE CURSOR"), m.ReadyForQuery(b"T"))
        << to_client(m.CommandComplete("DECLARE CURSOR"), m.ReadyForQuery(b"T"))
    )
    # The same SQL upstream under the new policy: its new masks apply.
    gate.generation += 1
    columns["c"] = (ColumnMask(0, "phone", "mobile", "null"),)
    assert (
        pb
        >> from_client(m.Query("FETCH c 1"))
        << to_upstream(m.Query("FETCH c 1"))
        >> from_upstream(RD, *phones(1), m.CommandComplete("FETCH 1"), m.ReadyForQuery(b"T"))
        << to_client(RD, m.DataRow((None,)), m.CommandComplete("FETCH 1"), m.ReadyForQuery(b"T"))
    )
    # Other SQL upstream (another limit): the server's cursor is not what the policy runs now.
    gate.generation += 1
    rewritten["sql"] = "DECLARE c FOR SELECT phone LIMIT 2"
    stale = refusal("the policy changed since this statement was prepared; prepare it again")
    assert (
        pb
        >> from_client(m.Query("FETCH c 1"))
        << to_upstream(m.Query("FETCH c 1"))
        >> from_upstream(RD, *phones(2), m.CommandComplete("FETCH 1"), m.ReadyForQuery(b"T"))
        << to_upstream(FAILING_QUERY)
        << to_client(stale)
        >> from_upstream(SYNTAX, m.ReadyForQuery(b"E"))
        << to_client(m.ReadyForQuery(b"E"))
    )


def test_errors_of_a_fetch_are_judged_by_its_cursor() -> None:
    """FETCH runs the cursor's query: its errors are withheld as the query's own would be."""
    _, _, pb = session()
    assert declared(pb)
    bad = m.ErrorResponse((("S", "ERROR"), ("V", "ERROR"), ("C", "22P02"), ("M", 'invalid input: "x7950"')))
    withheld = m.ErrorResponse(
        (
            ("S", "ERROR"),
            ("V", "ERROR"),
            ("C", "22P02"),
            ("M", withheld_message("22P02")),
        )
    )
    assert (
        pb
        >> from_client(m.Query("FETCH c 1"))
        << to_upstream(m.Query("FETCH c 1"))
        >> from_upstream(bad, m.ReadyForQuery(b"E"))
        << to_client(withheld, m.ReadyForQuery(b"E"))
    )
