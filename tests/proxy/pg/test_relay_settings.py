"""Playbooks: the relay follows the session's search_path with the server's transaction semantics,
from the decisions' effects (hand-made here) and the server's own reports.

The path a statement is decided under is what the FakeGate records for it."""

from __future__ import annotations

from policies.decision import Allow, SettingChange, TransactionEffect
from proxy.core.playbook import Playbook
from proxy.pg import messages as m
from proxy.pg.session import PgSession
from proxy.services.gate import Principal
from tests.proxy.pg.fakegate import FakeGate
from tests.proxy.pg.transcripts import from_client, from_upstream, login, to_client, to_upstream

START = ("$user", "public")


def effects(p: Principal, sql: str) -> Allow:
    """Hand-made decisions: what the engine says each statement does to the session."""
    words = sql.replace(";", " ; ").split()
    parts: list[Allow] = []
    for stmt in " ".join(words).split(" ; "):
        w = stmt.split()
        if w[:1] == ["SET"]:
            local = w[1] == "LOCAL"
            name = w[-1]
            parts.append(Allow(kind="session", settings=(SettingChange("search_path", (name,), local),)))
        elif w[:2] == ["RESET", "ALL"]:
            parts.append(Allow(kind="session", settings=(SettingChange("*", None),)))
        elif w[:1] == ["RESET"]:
            parts.append(Allow(kind="session", settings=(SettingChange("search_path", None),)))
        elif w[:1] in (["BEGIN"], ["COMMIT"], ["ROLLBACK"], ["SAVEPOINT"], ["RELEASE"]):
            kind = {"BEGIN": "begin", "COMMIT": "commit", "ROLLBACK": "rollback"}.get(w[0], w[0].lower())
            if w[:2] == ["ROLLBACK", "TO"]:
                kind = "rollback_to"
            parts.append(
                Allow(kind="transaction", transaction=TransactionEffect(kind, w[-1] if len(w) > 1 else ""))
            )
        else:
            parts.append(Allow(kind="select"))
    return parts[0] if len(parts) == 1 else Allow(kind="multi", statements=tuple(parts))


def session(*, unrestricted: bool = False) -> tuple[PgSession, FakeGate, Playbook]:
    return login(FakeGate(effects), unrestricted=unrestricted)


def query(pb: Playbook, sql: str, *answer: object) -> Playbook:
    return (
        pb
        >> from_client(m.Query(sql))
        << to_upstream(m.Query(sql))
        >> from_upstream(*answer)
        << to_client(*answer)
    )


def ok(tag: str) -> m.CommandComplete:
    return m.CommandComplete(tag)


def failed() -> m.ErrorResponse:
    return m.ErrorResponse((("S", "ERROR"), ("C", "22012"), ("M", "division by zero")))


def decided_under(gate: FakeGate) -> tuple[str, ...]:
    return gate.decisions[-1][2]


def probe(pb: Playbook, gate: FakeGate) -> tuple[str, ...]:
    """Send a SELECT and say which search_path it was decided under."""
    assert query(pb, "SELECT 1", ok("SELECT 1"), m.ReadyForQuery(b"I"))
    return decided_under(gate)


def test_rollback_undoes_a_set_made_in_the_block() -> None:
    s, gate, pb = session()
    assert query(pb, "BEGIN", ok("BEGIN"), m.ReadyForQuery(b"T"))
    assert query(pb, "SET search_path = information_schema", ok("SET"), m.ReadyForQuery(b"T"))
    assert s.ctx.tracker.search_path == ("information_schema",)
    assert query(pb, "ROLLBACK", ok("ROLLBACK"), m.ReadyForQuery(b"I"))
    assert s.ctx.tracker.search_path == START
    assert probe(pb, gate) == START


def test_set_local_ends_with_the_transaction_and_savepoints_roll_back() -> None:
    s, gate, pb = session()
    sql = "BEGIN; SET search_path = a; SAVEPOINT s; SET LOCAL search_path = b"
    assert query(pb, sql, ok("BEGIN"), ok("SET"), ok("SAVEPOINT"), ok("SET"), m.ReadyForQuery(b"T"))
    assert s.ctx.tracker.search_path == ("b",)
    assert query(pb, "ROLLBACK TO s", ok("ROLLBACK"), m.ReadyForQuery(b"T"))
    assert s.ctx.tracker.search_path == ("a",)
    assert query(pb, "SET LOCAL search_path = c", ok("SET"), m.ReadyForQuery(b"T"))
    assert query(pb, "COMMIT", ok("COMMIT"), m.ReadyForQuery(b"I"))
    assert probe(pb, gate) == ("a",)


def test_a_failed_statement_undoes_the_implicit_transaction() -> None:
    s, gate, pb = session(unrestricted=True)  # no Describe of its own before each Execute
    sql = "SET search_path = a; SELECT 1/0"
    assert query(pb, sql, ok("SET"), failed(), m.ReadyForQuery(b"I"))
    assert probe(pb, gate) == START
    # The same in the extended protocol: the batch up to Sync is one implicit transaction.
    batch = (
        m.Parse("", "SET search_path = a"),
        m.Bind("", "", (), (), ()),
        m.Execute("", 0),
        m.Parse("", "SELECT 1/0"),
        m.Bind("", "", (), (), ()),
        m.Execute("", 0),
        m.Sync(),
    )
    answer = (m.ParseComplete(), m.BindComplete(), ok("SET"), m.ParseComplete(), m.BindComplete(), failed())
    assert pb >> from_client(*batch) << to_upstream(*batch)
    assert pb >> from_upstream(*answer, m.ReadyForQuery(b"I")) << to_client(*answer, m.ReadyForQuery(b"I"))
    assert s.ctx.tracker.search_path == START


def test_a_failed_block_is_undone_at_the_error_and_reset_all_restores_the_start() -> None:
    s, gate, pb = session()
    assert query(pb, "BEGIN; SET search_path = a", ok("BEGIN"), ok("SET"), m.ReadyForQuery(b"T"))
    assert query(pb, "SELECT 1/0", failed(), m.ReadyForQuery(b"E"))
    assert s.ctx.tracker.search_path == START
    assert query(pb, "ROLLBACK", ok("ROLLBACK"), m.ReadyForQuery(b"I"))
    assert query(pb, "SET search_path = a", ok("SET"), m.ReadyForQuery(b"I"))
    assert query(pb, "RESET ALL", ok("RESET"), m.ReadyForQuery(b"I"))
    assert probe(pb, gate) == START


def test_the_servers_report_wins_over_the_decisions() -> None:
    # A statement whose effect the decision did not describe (SET SCHEMA, set_config): the server
    # reports the new value before its ReadyForQuery (PostgreSQL 18), and that value is followed.
    _, gate, pb = session()
    report = m.ParameterStatus("search_path", "brokerage")
    assert query(pb, "SELECT 2", ok("SELECT 1"), report, m.ReadyForQuery(b"I"))
    assert probe(pb, gate) == ("brokerage",)
    # …and when the server undoes it (ROLLBACK), it reports that too.
    assert query(pb, "BEGIN", ok("BEGIN"), m.ReadyForQuery(b"T"))
    assert query(pb, "SELECT 3", ok("SELECT 1"), m.ParameterStatus("search_path", "x"), m.ReadyForQuery(b"T"))
    undo = m.ParameterStatus("search_path", "brokerage")
    assert query(pb, "ROLLBACK", ok("ROLLBACK"), undo, m.ReadyForQuery(b"I"))
    assert probe(pb, gate) == ("brokerage",)
