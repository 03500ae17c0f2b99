"""Playbooks of the relay's prepared statements: one namespace for Parse and SQL-level PREPARE,
effects kept when the server confirms them, EXECUTE run with the kept decision."""

from __future__ import annotations

from policies.decision import Allow, Decision, PreparedEffect
from proxy.core.playbook import Playbook
from proxy.pg import messages as m
from proxy.pg.relay import FAILING_DESCRIBE, FAILING_QUERY
from proxy.services.gate import Principal
from proxy.services.statement import withheld_message
from tests.proxy.pg.fakegate import FakeGate
from tests.proxy.pg.transcripts import (
    PHONE,
    from_client,
    from_upstream,
    login,
    text_field,
    to_client,
    to_upstream,
)

PREPARE = "PREPARE s AS SELECT phone FROM c"
RD = m.RowDescription((text_field("phone"),))
ROW = m.DataRow((b"13800000001",))
MASKED = m.DataRow((b"138****0001",))
DECISIONS: dict[str, Allow] = {
    PREPARE: Allow(
        kind="select",
        columns=(PHONE,),
        tables=("public.c",),
        classes=("mobile",),
        fingerprint="f-prepare",
        prepared=PreparedEffect("prepare", "s"),
    ),
    "EXECUTE s": Allow(kind="execute", prepared=PreparedEffect("execute", "s")),
    "DEALLOCATE s": Allow(kind="session", prepared=PreparedEffect("deallocate", "s")),
    "DISCARD ALL": Allow(kind="session", prepared=PreparedEffect("deallocate_all")),
}


def _decide(p: Principal, sql: str) -> Decision:
    if sql in DECISIONS:
        return DECISIONS[sql]
    parts = tuple(DECISIONS[x.strip()] for x in sql.split(";"))
    return Allow(kind="multi", statements=parts)


def _prepared(pb: Playbook) -> Playbook:
    return (
        pb
        >> from_client(m.Query(PREPARE))
        << to_upstream(m.Query(PREPARE))
        >> from_upstream(m.CommandComplete("PREPARE"), m.ReadyForQuery(b"I"))
        << to_client(m.CommandComplete("PREPARE"), m.ReadyForQuery(b"I"))
    )


def _executed(pb: Playbook, sql: str = "EXECUTE s") -> Playbook:
    return (
        pb
        >> from_client(m.Query(sql))
        << to_upstream(m.Query(sql))
        >> from_upstream(RD, ROW, m.CommandComplete("SELECT 1"), m.ReadyForQuery(b"I"))
        << to_client(RD, MASKED, m.CommandComplete("SELECT 1"), m.ReadyForQuery(b"I"))
    )


def test_execute_runs_with_the_decision_kept_at_prepare() -> None:
    _, gate, pb = login(FakeGate(_decide))
    assert _executed(_prepared(pb))
    rec = gate.records[-1]
    assert rec.sql == "EXECUTE s" and rec.decision.tables == ("public.c",)
    assert rec.decision.fingerprint == "f-prepare" and rec.masked == 1
    # ... and a Bind of the name, the other door to the same statement.
    assert (
        pb
        >> from_client(m.Bind("", "s"), m.Execute(""), m.Sync())
        << to_upstream(m.Bind("", "s"), m.Describe(b"P", ""), m.Execute(""), m.Sync())
        >> from_upstream(m.BindComplete(), RD, ROW, m.CommandComplete("SELECT 1"), m.ReadyForQuery(b"I"))
        << to_client(m.BindComplete(), MASKED, m.CommandComplete("SELECT 1"), m.ReadyForQuery(b"I"))
    )


def test_a_failed_prepare_keeps_nothing() -> None:
    _, gate, pb = login(FakeGate(_decide))
    err = m.ErrorResponse((("S", "ERROR"), ("C", "42P05"), ("M", "exists")))
    told = m.ErrorResponse((("S", "ERROR"), ("C", "42P05"), ("M", withheld_message("42P05"))))
    assert (
        pb
        >> from_client(m.Query(PREPARE))
        << to_upstream(m.Query(PREPARE))
        >> from_upstream(err, m.ReadyForQuery(b"I"))
        << to_client(told, m.ReadyForQuery(b"I"))
    )
    # No statement of that name is known: refused in the server's place.
    assert pb >> from_client(m.Query("EXECUTE s")) << to_upstream(FAILING_QUERY)
    assert gate.records[-1].decision.message == 'prepared statement "s" does not exist'


def test_deallocate_and_discard_all_drop_the_name_when_confirmed() -> None:
    for drop in ("DEALLOCATE s", "DISCARD ALL"):
        _, _, pb = login(FakeGate(_decide))
        pb = _prepared(pb)
        tag = m.CommandComplete(drop.split()[0])
        assert (
            pb
            >> from_client(m.Query(drop))
            << to_upstream(m.Query(drop))
            >> from_upstream(tag, m.ReadyForQuery(b"I"))
            << to_client(tag, m.ReadyForQuery(b"I"))
        )
        assert pb >> from_client(m.Query("EXECUTE s")) << to_upstream(FAILING_QUERY), drop
        # Parse'd names go too: a Bind of one is refused.
        assert pb >> from_client(m.Bind("", "s"), m.Sync()) << to_upstream(FAILING_DESCRIBE, m.Sync())


def test_a_prepare_earlier_in_the_same_string_counts() -> None:
    _, _, pb = login(FakeGate(_decide))
    sql = f"{PREPARE}; EXECUTE s"
    assert (
        pb
        >> from_client(m.Query(sql))
        << to_upstream(m.Query(sql))
        >> from_upstream(m.CommandComplete("PREPARE"), RD, ROW, m.CommandComplete("SELECT 1"))
        << to_client(m.CommandComplete("PREPARE"), RD, MASKED, m.CommandComplete("SELECT 1"))
    )


def test_a_name_a_statement_in_flight_may_change_cannot_be_bound() -> None:
    _, _, pb = login(FakeGate(_decide))
    pb = _prepared(pb)
    # DEALLOCATE not answered yet: which statement `s` is when the Bind runs is unknown.
    assert (
        pb
        >> from_client(m.Query("DEALLOCATE s"), m.Bind("", "s"), m.Sync())
        << to_upstream(m.Query("DEALLOCATE s"), FAILING_DESCRIBE, m.Sync())
    )
    assert pb >> from_client(m.Query("EXECUTE s")) << to_upstream(FAILING_QUERY)


def test_a_parse_over_a_held_name_leaves_the_name_unsettled_until_answered() -> None:
    gate = FakeGate(lambda p, sql: Allow(kind="select", columns=(PHONE,) if "phone" in sql else ()))
    _, _, pb = login(gate)
    assert (
        pb
        >> from_client(m.Parse("s", "SELECT phone FROM c"), m.Sync())
        << to_upstream(m.Parse("s", "SELECT phone FROM c"), m.Sync())
        >> from_upstream(m.ParseComplete(), m.ReadyForQuery(b"I"))
        << to_client(m.ParseComplete(), m.ReadyForQuery(b"I"))
    )
    # The server refuses this Parse (s exists) and keeps the phone statement: a Bind after the
    # Sync, sent before the answer, may not take the new (all clear) decision.
    assert (
        pb
        >> from_client(m.Parse("s", "SELECT 'x'"), m.Sync(), m.Bind("", "s"), m.Sync())
        << to_upstream(m.Parse("s", "SELECT 'x'"), m.Sync(), FAILING_DESCRIBE, m.Sync())
    )


def test_close_then_parse_of_a_name_binds_the_new_statement() -> None:
    _, _, pb = login(FakeGate(lambda p, sql: Allow(kind="select")))
    assert (
        pb
        >> from_client(m.Parse("s", "SELECT 1"), m.Sync())
        << to_upstream(m.Parse("s", "SELECT 1"), m.Sync())
        >> from_upstream(m.ParseComplete(), m.ReadyForQuery(b"I"))
        << to_client(m.ParseComplete(), m.ReadyForQuery(b"I"))
    )
    msgs = (m.Close(b"S", "s"), m.Parse("s", "SELECT 2"), m.Bind("", "s"), m.Sync())
    assert pb >> from_client(*msgs) << to_upstream(*msgs)
