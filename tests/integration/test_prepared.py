"""SQL-level prepared statements through the real proxy: PREPARE remembered per session, EXECUTE
run with the kept decision, one namespace with the protocol's Parse.

The person is `vendor_zhang` of policies/examples/demo.yaml (select only, mobile / id_card /
person_name masked, `branch_id = 12` on customers, 200 rows). Every test asserts the secure
behaviour, through the simple Query, the extended protocol, or both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.pg import messages as m
from tests.integration.harness import crm_database, serve_demo
from tests.integration.test_redteam import Wire, errors_of, leaked, rows, tags

SVC_PW = "svc-secret-prepared"
VENDOR = ("vendor_zhang", "vendor-pass")
CALLS = "SELECT id, caller FROM call_records"  # more than 200 rows, caller masked


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with crm_database(tmp_path_factory, "pg-prepared", SVC_PW, 300) as pg:
        yield pg


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("prepared"), crm, SVC_PW) as s:
        yield s


@pytest.fixture(scope="module")
def truth(crm: EmbeddedPostgres) -> dict[str, Any]:
    """The secrets, read as the service account straight from PostgreSQL."""
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as c:
        cust = c.execute("SELECT phone, id_card FROM customers").fetchall()
        calls = c.execute("SELECT caller FROM call_records").fetchall()
        total = c.execute("SELECT count(*) FROM call_records").fetchone()
    secrets = {x for r in cust for x in r if x} | {r[0] for r in calls if r[0]}
    assert total is not None and total[0] > 200
    return {"secrets": secrets}


@pytest.fixture()
def wire(served: dict[str, Any]) -> Iterator[Wire]:
    w = Wire(served["port"])
    try:
        yield w
    finally:
        w.close()


def vendor(served: dict[str, Any]) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1",
        port=served["port"],
        user=VENDOR[0],
        password=VENDOR[1],
        dbname="crm",
        sslmode="disable",
        autocommit=True,
    )


def _values(out: list[tuple[Any, ...]]) -> list[list[str | None]]:
    return [[None if v is None else bytes(v).decode() for v in r] for r in rows(out)]


def _notices(out: list[tuple[Any, ...]]) -> list[str]:
    return [r[2] for r in out if r[0] == "N"]


def _masked(out: list[tuple[Any, ...]], truth: dict[str, Any]) -> bool:
    got = _values(out)
    return bool(got) and not leaked(truth["secrets"], got) and all("*" in (r[-1] or "*") for r in got)


# ---------------------------------------------------------------------------------------------
# PREPARE + EXECUTE: masked and limited like the statement itself
# ---------------------------------------------------------------------------------------------


def test_execute_is_masked_and_limited_like_the_select_itself(wire: Wire, truth: dict[str, Any]) -> None:
    plain = wire.query(CALLS)
    assert not errors_of(wire.query(f"PREPARE calls AS {CALLS}"))
    out = wire.query("EXECUTE calls")
    assert not errors_of(out)
    assert _masked(out, truth)
    # Same rows, same truncation notice, same command tag as the SELECT sent as itself.
    assert len(rows(out)) == len(rows(plain)) == 200
    assert _notices(out) == _notices(plain) and _notices(out)
    assert tags(out) == tags(plain) == ["SELECT 200"]


def test_execute_with_parameters_and_in_one_string(wire: Wire, truth: dict[str, Any]) -> None:
    out = wire.query(
        "PREPARE one(int) AS SELECT id, phone FROM customers WHERE id > $1; EXECUTE one(0); EXECUTE one (5)"
    )
    assert not errors_of(out), errors_of(out)
    assert _masked(out, truth)
    assert tags(out) == ["PREPARE", *[t for t in tags(out)[1:] if t.startswith("SELECT")]]


def test_execute_through_psycopg_text_and_binary(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with vendor(served) as c:
        c.execute("PREPARE p AS SELECT id, phone, id_card FROM customers")
        for binary in (False, True):
            got = c.execute("EXECUTE p", binary=binary).fetchall()
            assert got and not leaked(truth["secrets"], got), binary
            assert all("*" in r[1] for r in got if r[1])


def test_execute_through_the_extended_protocol(wire: Wire, truth: dict[str, Any]) -> None:
    assert not errors_of(wire.query(f"PREPARE calls AS {CALLS}"))
    out = wire.run(m.Parse("", "EXECUTE calls"), m.Bind("", ""), m.Execute(""), m.Sync())
    assert not errors_of(out), errors_of(out)
    assert _masked(out, truth) and len(rows(out)) == 200 and _notices(out)
    # Bound like a Parse'd statement, by name: the same kept decision.
    out = wire.run(m.Bind("", "calls", (), (), (1,)), m.Execute(""), m.Sync())
    assert not errors_of(out) and len(rows(out)) == 200
    assert not leaked(truth["secrets"], [bytes(v) for r in rows(out) for v in r if v])


def test_prepare_and_deallocate_through_parse_act_on_the_same_names(
    wire: Wire, truth: dict[str, Any]
) -> None:
    out = wire.run(
        m.Parse("", "PREPARE x AS SELECT id, phone FROM customers"), m.Bind("", ""), m.Execute(""), m.Sync()
    )
    assert not errors_of(out)
    assert _masked(wire.query("EXECUTE x"), truth)
    out = wire.run(m.Parse("", "DEALLOCATE x"), m.Bind("", ""), m.Execute(""), m.Sync())
    assert not errors_of(out)
    assert [c for c, _ in errors_of(wire.query("EXECUTE x"))] == ["42501"]


# ---------------------------------------------------------------------------------------------
# Names: reuse, case and quoting, failures, transactions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("drop", ["DEALLOCATE s", "DEALLOCATE PREPARE S", "DEALLOCATE ALL"])
def test_execute_after_deallocate_is_refused(wire: Wire, drop: str) -> None:
    assert not errors_of(wire.query("PREPARE s AS SELECT id FROM call_records"))
    assert not errors_of(wire.query(drop))
    out = wire.query("EXECUTE s")
    assert [c for c, _ in errors_of(out)] == ["42501"] and not rows(out)
    assert not errors_of(wire.query("SELECT 1"))


def test_name_reused_after_deallocate_through_both_doors(wire: Wire, truth: dict[str, Any]) -> None:
    # SQL PREPARE, then the name taken by a protocol Parse of a classified statement.
    assert not errors_of(wire.query("PREPARE s AS SELECT 'x'::text AS a, 'y'::text AS b"))
    assert not errors_of(wire.query("DEALLOCATE s"))
    out = wire.run(m.Parse("s", "SELECT id, phone FROM customers"), m.Sync())
    assert not errors_of(out)
    assert _masked(wire.query("EXECUTE s"), truth)
    # And back: Parse'd name dropped by SQL, taken by SQL PREPARE, run by SQL EXECUTE.
    assert not errors_of(wire.query("DEALLOCATE ALL"))
    assert not errors_of(wire.query("PREPARE s AS SELECT id, id_card FROM customers"))
    assert _masked(wire.query("EXECUTE s"), truth)


def test_quoted_and_unquoted_names_are_two_statements(wire: Wire, truth: dict[str, Any]) -> None:
    assert not errors_of(wire.query('PREPARE "S1" AS SELECT id, phone FROM customers'))
    assert not errors_of(wire.query("PREPARE s1 AS SELECT 1 AS id, 'x'::text AS phone"))
    assert _masked(wire.query('EXECUTE "S1"'), truth)
    assert _values(wire.query("EXECUTE S1")) == [["1", "x"]]  # folds to s1
    out = wire.run(m.Bind("", "S1"), m.Execute(""), m.Sync())  # the protocol names it as is
    assert _masked(out, truth)
    assert not errors_of(wire.query('DEALLOCATE "S1"'))
    assert [c for c, _ in errors_of(wire.query('EXECUTE "S1"'))] == ["42501"]
    assert _values(wire.query("EXECUTE s1")) == [["1", "x"]]


def test_failed_prepare_does_not_overwrite_the_name(wire: Wire, truth: dict[str, Any]) -> None:
    assert not errors_of(wire.query("PREPARE s AS SELECT id, phone FROM customers"))
    # Allowed as itself (all clear), refused by the server: s is taken.
    out = wire.query("PREPARE s AS SELECT 1 AS id, 'x'::text AS phone")
    assert [c for c, _ in errors_of(out)] == ["42P05"]
    assert _masked(wire.query("EXECUTE s"), truth)
    out = wire.run(m.Bind("", "s"), m.Execute(""), m.Sync())
    assert _masked(out, truth)
    # The same through the other door: a Parse'd name, a SQL PREPARE that fails over it.
    assert not errors_of(wire.run(m.Parse("p", "SELECT id, id_card FROM customers"), m.Sync()))
    assert errors_of(wire.query("PREPARE p AS SELECT 1 AS id, 'x'::text AS id_card"))
    assert _masked(wire.query("EXECUTE p"), truth)


def test_prepared_statements_outlive_a_rollback_on_the_server(crm: EmbeddedPostgres) -> None:
    """What the relay assumes, checked on the server itself: PREPARE and DEALLOCATE are not
    undone by ROLLBACK."""
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm"), autocommit=True) as c:
        c.execute("BEGIN")
        c.execute("PREPARE kept AS SELECT 1")
        c.execute("ROLLBACK")
        assert c.execute("EXECUTE kept").fetchone() == (1,)
        c.execute("BEGIN")
        c.execute("DEALLOCATE kept")
        c.execute("ROLLBACK")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            c.execute("EXECUTE kept")


def test_prepare_and_deallocate_in_a_rolled_back_transaction(wire: Wire, truth: dict[str, Any]) -> None:
    out = wire.query("BEGIN; PREPARE s AS SELECT id, phone FROM customers; ROLLBACK")
    assert not errors_of(out)
    assert _masked(wire.query("EXECUTE s"), truth)  # still there, with its decision
    assert not errors_of(wire.query("BEGIN"))
    assert not errors_of(wire.query("DEALLOCATE s"))
    assert not errors_of(wire.query("ROLLBACK"))
    assert [c for c, _ in errors_of(wire.query("EXECUTE s"))] == ["42501"]


def test_nothing_applies_in_an_aborted_transaction(wire: Wire, truth: dict[str, Any]) -> None:
    assert not errors_of(wire.query("PREPARE s AS SELECT id, phone FROM customers"))
    assert not errors_of(wire.query("BEGIN"))
    assert errors_of(wire.query("SELECT 1/0"))
    assert [c for c, _ in errors_of(wire.query("DEALLOCATE s"))] == ["25P02"]
    assert [c for c, _ in errors_of(wire.query("PREPARE t AS SELECT 1"))] == ["25P02"]
    assert not errors_of(wire.query("ROLLBACK"))
    assert _masked(wire.query("EXECUTE s"), truth)
    assert [c for c, _ in errors_of(wire.query("EXECUTE t"))] == ["42501"]


def test_pipelined_deallocate_and_prepare_then_bind_cannot_use_the_old_decision(
    wire: Wire, truth: dict[str, Any]
) -> None:
    assert not errors_of(wire.run(m.Parse("s1", "SELECT 'x'::text AS a, 'y'::text AS b"), m.Sync()))
    # All in one write: the Bind is decided before the server answered the two Queries.
    out = wire.run(
        m.Query("DEALLOCATE s1"),
        m.Query("PREPARE s1 AS SELECT name, translate(phone, '0123456789', 'abcdefghij') FROM customers"),
        m.Bind("", "s1"),
        m.Execute(""),
        m.Sync(),
        syncs=3,
    )
    got = [[(v or "").translate(str.maketrans("abcdefghij", "0123456789")) for v in r] for r in _values(out)]
    assert not leaked(truth["secrets"], got)
    assert all("*" in (r[0] or "*") for r in _values(out))  # names masked, if any came


# ---------------------------------------------------------------------------------------------
# Refused: what cannot be decided
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "EXPLAIN EXECUTE s",
        "EXPLAIN ANALYZE EXECUTE s",
        "CREATE TEMP TABLE t AS EXECUTE s",
        "EXECUTE s(pg_read_file('/etc/passwd'))",
        "EXECUTE s((SELECT phone FROM customers LIMIT 1))",
        "EXECUTE nosuch",
    ],
)
def test_what_cannot_be_decided_is_refused(wire: Wire, sql: str) -> None:
    assert not errors_of(
        wire.query("PREPARE s(text) AS SELECT id, phone FROM customers WHERE $1 IS NOT NULL")
    )
    out = wire.query(sql)
    assert [c for c, _ in errors_of(out)] == ["42501"] and not rows(out)


# ---------------------------------------------------------------------------------------------
# Reload and audit
# ---------------------------------------------------------------------------------------------


def _records(served: dict[str, Any]) -> list[dict[str, Any]]:
    path = served["dir"] / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_execute_is_audited_as_the_prepared_statement(served: dict[str, Any], wire: Wire) -> None:
    assert not errors_of(wire.query("PREPARE audited AS SELECT id, phone FROM customers"))
    assert not errors_of(wire.query("EXECUTE audited"))

    def found() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
        recs = _records(served)
        starts = {r.get("sql", "").split(" AS ")[0]: r for r in recs if r["event"] == "start"}
        prep, run = starts.get("PREPARE audited"), starts.get("EXECUTE audited")
        ends = [r for r in recs if run is not None and r["event"] == "end" and r["id"] == run["id"]]
        return (prep, run, ends[0]) if prep and run and ends else None

    deadline = time.monotonic() + 10
    got = found()
    while got is None and time.monotonic() < deadline:
        time.sleep(0.05)
        got = found()
    assert got is not None, "no audit records"
    prep, run, end = got
    # The record names what ran: the prepared statement's tables, classes and fingerprint.
    assert run["tables"] == ["public.customers"] and run["classes"] == ["mobile"]
    assert run["kind"] == "select" and run["decision"] == "allow"
    assert run["fingerprint"] == prep["fingerprint"]
    assert end["rows"] > 0 and end["masked"] > 0


def test_a_reload_between_prepare_and_execute(served: dict[str, Any], truth: dict[str, Any]) -> None:
    app = served["app"]
    good = served["policy"].read_text()
    try:
        with vendor(served) as c:
            c.execute("PREPARE same AS SELECT id, phone FROM customers")
            c.execute(f"PREPARE limited AS {CALLS}")
            # A change that keeps the statements' SQL: decided again, run under the new policy.
            served["policy"].write_text(good.replace("mobile: mask", "mobile: redact", 1))
            assert app.reloader.reload_now() is True
            got = c.execute("EXECUTE same").fetchall()
            assert got and not leaked(truth["secrets"], got)
            # A change of the row limit needs other SQL upstream: prepare it again.
            served["policy"].write_text(good.replace("max_rows: 200", "max_rows: 100"))
            assert app.reloader.reload_now() is True
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="prepare it again"):
                c.execute("EXECUTE limited")
            c.execute("DEALLOCATE limited")
            c.execute(f"PREPARE limited AS {CALLS}")
            assert len(c.execute("EXECUTE limited").fetchall()) == 100
    finally:
        served["policy"].write_text(good)
        app.reloader.reload_now()


def test_a_name_the_server_would_shorten_cannot_reach_a_protocol_statement(
    wire: Wire, truth: dict[str, Any]
) -> None:
    # The server cuts `DEALLOCATE <64 letters>` to the first 63; a Parse name is never cut.
    short, long = "n" * 63, "n" * 63 + "x"
    assert not errors_of(wire.run(m.Parse(short, "SELECT 'x'::text AS a, 'y'::text AS b"), m.Sync()))
    assert [c for c, _ in errors_of(wire.query(f"DEALLOCATE {long}"))] == ["42501"]
    out = wire.query(f"PREPARE {long} AS SELECT name, phone FROM customers")
    assert [c for c, _ in errors_of(out)] == ["42501"]
    out = wire.run(m.Bind("", short), m.Execute(""), m.Sync())
    assert _values(out) == [["x", "y"]]
    assert not leaked(truth["secrets"], _values(out))
