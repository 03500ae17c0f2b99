"""The followed session settings with the server's transaction semantics: hand-made effects, then
random statement sequences checked against a real PostgreSQL's own value after every step."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.decision import Allow, SettingChange, TransactionEffect
from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.services.settings import ROLE, SEARCH_PATH, SessionSettings

START = ("$user", "public")


def set_(schema: str, local: bool = False) -> Allow:
    return Allow(kind="session", settings=(SettingChange(SEARCH_PATH, (schema,), local),))


RESET = Allow(kind="session", settings=(SettingChange(SEARCH_PATH, None),))
RESET_ALL = Allow(kind="session", settings=(SettingChange("*", None),))


def tx(kind: str, name: str = "") -> Allow:
    return Allow(kind="transaction", transaction=TransactionEffect(kind, name))


def run(*steps: Allow | str) -> SessionSettings:
    """Feed steps to a fresh session: an Allow completes, "error" fails, "I"/"T" is ReadyForQuery."""
    s = SessionSettings({SEARCH_PATH: START, ROLE: None})
    for step in steps:
        if step == "error":
            s.failed()
        elif isinstance(step, str):
            s.ready(in_transaction=step != "I")
        else:
            s.completed(step)
    return s


def path(*steps: Allow | str) -> tuple[str, ...] | None:
    return run(*steps).value(SEARCH_PATH)


def test_set_outside_a_block_lasts() -> None:
    assert path(set_("a"), "I") == ("a",)
    assert path(set_("a"), "I", RESET, "I") == START
    assert path(set_("a"), "I", RESET_ALL, "I") == START


def test_set_local_ends_with_its_transaction() -> None:
    assert path(set_("a", local=True), "I") == START  # outside a block: no effect after it
    assert path(tx("begin"), set_("a", local=True), "T") == ("a",)
    assert path(tx("begin"), set_("a", local=True), "T", tx("commit"), "I") == START
    # SET, then SET LOCAL: the SET's value comes back at commit.
    assert path(tx("begin"), set_("a"), set_("b", local=True), tx("commit"), "I") == ("a",)
    # SET LOCAL, then SET: the SET wins.
    assert path(tx("begin"), set_("b", local=True), set_("a"), tx("commit"), "I") == ("a",)


def test_rollback_undoes_what_the_block_set() -> None:
    assert path(tx("begin"), set_("a"), "T", tx("rollback"), "I") == START
    assert path(set_("a"), "I", tx("begin"), set_("b"), RESET, "T", tx("rollback"), "I") == ("a",)
    # In one simple Query: BEGIN makes the statements before it part of the block.
    assert path(set_("a"), tx("begin"), tx("rollback"), "I") == START


def test_a_failed_statement_undoes_its_transaction_at_once() -> None:
    assert path(tx("begin"), set_("a"), "T", "error", "E") == START
    assert path(tx("begin"), set_("a"), "T", "error", "E", tx("rollback"), "I") == START
    # COMMIT of a failed block rolls back.
    assert path(set_("z"), "I", tx("begin"), set_("a"), "error", tx("commit"), "I") == ("z",)
    # An implicit transaction (a multi-statement Query, or a batch up to Sync) fails whole.
    assert path(set_("a"), "error", "I") == START


def test_savepoints() -> None:
    begin = (tx("begin"), set_("a"), tx("savepoint", "s"), set_("b"))
    assert path(*begin, tx("rollback_to", "s"), "T") == ("a",)
    assert path(*begin, tx("rollback_to", "s"), set_("c"), tx("release", "s"), tx("commit"), "I") == ("c",)
    assert path(*begin, tx("release", "s"), tx("rollback"), "I") == START
    assert path(*begin, tx("release", "s"), tx("commit"), "I") == ("b",)
    # An error inside a savepoint undoes it alone; ROLLBACK TO brings the block back.
    assert path(*begin, "error", "E") == ("a",)
    assert path(*begin, "error", tx("rollback_to", "s"), tx("commit"), "I") == ("a",)
    # SET LOCAL inside a savepoint, released: it still ends with the transaction.
    assert path(tx("begin"), tx("savepoint", "s"), set_("b", local=True), tx("release", "s"), "T") == ("b",)
    assert path(
        tx("begin"), tx("savepoint", "s"), set_("b", local=True), tx("release", "s"), tx("commit")
    ) == (START)
    # SET in the block, SET LOCAL in a released savepoint: the SET's value comes back at commit.
    local_in_savepoint = (tx("begin"), set_("a"), tx("savepoint", "s"), set_("b", local=True))
    assert path(*local_in_savepoint, tx("release", "s"), "T") == ("b",)
    assert path(*local_in_savepoint, tx("release", "s"), tx("commit"), "I") == ("a",)
    # Savepoint names may repeat: the innermost one is meant.
    twice = (tx("begin"), tx("savepoint", "s"), set_("a"), tx("savepoint", "s"), set_("b"))
    assert path(*twice, tx("rollback_to", "s"), "T") == ("a",)


def test_reset_all_keeps_the_role_and_discard_all_resets_it() -> None:
    as_vendor = Allow(kind="session", settings=(SettingChange(ROLE, ("crm_vendor",)),))
    s = run(as_vendor, set_("a"), RESET_ALL, "I")
    assert (s.value(SEARCH_PATH), s.value(ROLE)) == (START, ("crm_vendor",))
    discard = Allow(kind="session", settings=(SettingChange("*", None), SettingChange(ROLE, None)))
    s = run(as_vendor, set_("a"), "I", discard, "I")
    assert (s.value(SEARCH_PATH), s.value(ROLE)) == (START, None)


def test_the_servers_report_wins() -> None:
    s = run(tx("begin"), set_("a"), "T")
    s.reported(SEARCH_PATH, ("brokerage",))  # e.g. SET SCHEMA, which the decisions did not say
    assert s.value(SEARCH_PATH) == ("brokerage",)
    s.completed(tx("rollback"))
    s.ready(in_transaction=False)  # no new report: the value is what was last reported
    assert s.value(SEARCH_PATH) == ("brokerage",)
    s.reported(SEARCH_PATH, START)  # the server undid it and says so
    s.ready(in_transaction=False)
    assert s.value(SEARCH_PATH) == START


# ---------------------------------------------------------------------------------------------
# Against the server: random statements, the model fed by hand-made effects, compared each step
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    sql: str
    effect: Allow | None  # None: the statement fails


SCHEMAS = ("a", "b", "c")
SAVEPOINTS = ("s1", "s2")


def _steps() -> st.SearchStrategy[list[Step]]:
    sets = st.builds(
        lambda name, local: Step(f"SET {'LOCAL ' if local else ''}search_path = {name}", set_(name, local)),
        st.sampled_from(SCHEMAS),
        st.booleans(),
    )
    fixed = st.sampled_from(
        [
            Step("RESET search_path", RESET),
            Step("SET search_path TO DEFAULT", RESET),
            Step("RESET ALL", RESET_ALL),
            Step("BEGIN", tx("begin")),
            Step("COMMIT", tx("commit")),
            Step("ROLLBACK", tx("rollback")),
            Step("SELECT 1/0", None),
        ]
    )
    savepoints = st.builds(
        lambda verb, name: Step(
            f"{verb} {name}",
            tx({"SAVEPOINT": "savepoint", "RELEASE": "release", "ROLLBACK TO": "rollback_to"}[verb], name),
        ),
        st.sampled_from(["SAVEPOINT", "RELEASE", "ROLLBACK TO"]),
        st.sampled_from(SAVEPOINTS),
    )
    # A simple Query of two statements: one implicit transaction (outside a block).
    pairs = st.builds(
        lambda a, b: [a, b],
        sets,
        st.sampled_from([Step("SELECT 1/0", None), Step("SELECT 1", Allow(kind="select"))]),
    )
    one = st.one_of(sets, fixed, savepoints).map(lambda s: [s])
    # Transaction blocks are where the rules differ: a block of SETs and savepoints, then its end.
    ends = st.sampled_from(
        [Step("COMMIT", tx("commit")), Step("ROLLBACK", tx("rollback")), Step("SELECT 1/0", None)]
    )
    inner = st.lists(st.one_of(sets, sets, savepoints, fixed), max_size=6).map(lambda xs: [[x] for x in xs])
    blocks = st.builds(lambda body, end: [[Step("BEGIN", tx("begin"))], *body, [end]], inner, ends)
    return st.lists(
        st.one_of(one.map(lambda q: [q]), pairs.map(lambda q: [q]), blocks), min_size=1, max_size=6
    ).map(lambda groups: [q for g in groups for q in g])


@pytest.fixture(scope="module")
def server(embedded_pg: EmbeddedPostgres) -> Iterator[psycopg.Connection]:
    embedded_pg.psql("CREATE DATABASE settings_model", check=False)
    conn = psycopg.connect(
        f"host={embedded_pg.socket_dir} port={embedded_pg.port} user=postgres dbname=settings_model",
        autocommit=True,
    )
    try:
        yield conn
    finally:
        conn.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_steps())
def test_the_model_follows_the_server(server: psycopg.Connection, queries: list[list[Step]]) -> None:
    conn = server
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("ROLLBACK")
    conn.execute("RESET ALL")
    start = conn.info.parameter_status("search_path")
    model = SessionSettings({SEARCH_PATH: (start or "",)})
    for query in queries:
        sql = "; ".join(s.sql for s in query)
        conn.pgconn.send_query(sql.encode())  # a simple Query: several statements, one message
        results = []
        while (r := conn.pgconn.get_result()) is not None:
            results.append(r)
        for step, res in zip(query, results, strict=False):
            if res.status == psycopg.pq.ExecStatus.FATAL_ERROR:
                model.failed()
                break
            model.completed(step.effect or Allow(kind="select"))
        status = conn.pgconn.transaction_status
        model.ready(in_transaction=status != psycopg.pq.TransactionStatus.IDLE)
        truth = conn.pgconn.parameter_status(b"search_path")
        assert truth is not None
        assert model.value(SEARCH_PATH) == (truth.decode(),), (sql, status)
