"""SQL cursors through the real proxy in front of a real PostgreSQL, for restricted roles.

DECLARE is decided and rewritten like its query; the proxy keeps the cursor's decision per
session (proxy/pg/cursors.py) and masks every FETCH by it, counting the rows FETCH delivers
against the role's row limit. The server's own rules (transactions, WITH HOLD, one namespace
with protocol portals, name folding) are exercised here rather than assumed.

`vendor_zhang` (policies/examples/demo.yaml): mobile / id_card / person_name masked, rows of
customers filtered to branch 12, 200 rows. `peeker` (below): the same masks, 5 rows.
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
from proxy.pg.auth import make_verifier
from tests.integration.clients.expect import masked_mobile
from tests.integration.harness import connect_proxy, crm_database, serve_demo
from tests.integration.test_redteam import Wire, errors_of, leaked, rows, tags

pytestmark = pytest.mark.integration

SVC_PW = "svc-secret-cursors"
VENDOR = ("vendor_zhang", "vendor-pass")
DBA = ("dba_wang", "dba-pass")
PEEKER = ("peeker_wu", "peeker-pass")
BUDGET = 5
EXTRA_POLICY = f"""version: 1
roles:
  peeker:
    statements: [select]
    tables: ["crm.call_records", "crm.customers"]
    max_rows: {BUDGET}
    see: {{mobile: mask, id_card: mask, person_name: mask, bank_card: deny, free_text: mask}}
    masked_predicates: deny
users:
  {PEEKER[0]}:
    role: peeker
    password: "{make_verifier(PEEKER[1])}"
"""
REFUSED = "42501"


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with crm_database(tmp_path_factory, "pg-cursors", SVC_PW, 300) as pg:
        yield pg


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("cursors"), crm, SVC_PW, extra_policy=EXTRA_POLICY) as s:
        yield s


@pytest.fixture(scope="module")
def truth(crm: EmbeddedPostgres) -> dict[str, Any]:
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as c:
        calls = dict(c.execute("SELECT id, caller FROM call_records ORDER BY id").fetchall())
        cust = c.execute("SELECT id, phone, id_card, branch_id FROM customers ORDER BY id").fetchall()
    return {
        "calls": calls,
        "phones": {r[0]: r[1] for r in cust},
        "branch12": [r[0] for r in cust if r[3] == 12],
        "secrets": {x for r in cust for x in r[1:3] if x} | set(calls.values()),
    }


def connect(served: dict[str, Any], who: tuple[str, str] = VENDOR, **kw: Any) -> psycopg.Connection[Any]:
    return connect_proxy(served, who, **kw)


@pytest.fixture()
def wire(served: dict[str, Any]) -> Iterator[Wire]:
    w = Wire(served["port"])
    try:
        yield w
    finally:
        w.close()


def codes(out: list[tuple[Any, ...]]) -> list[str]:
    return [c for c, _ in errors_of(out)]


def notices(out: list[tuple[Any, ...]]) -> list[str]:
    return [r[2] for r in out if r[0] == "N"]


def fetch_refused(conn: psycopg.Connection[Any], sql: str) -> bool:
    try:
        conn.execute(sql)
    except psycopg.errors.InsufficientPrivilege as e:
        assert (e.diag.message_primary or "").startswith("maskgate: ")
        return True
    return False


# ---------------------------------------------------------------------------------------------
# Drivers: psycopg named cursors, text and binary, in batches
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True])
def test_named_cursor_batches_are_masked(served: dict[str, Any], truth: dict[str, Any], binary: bool) -> None:
    with connect(served) as conn, conn.cursor("batches", binary=binary) as cur:
        cur.itersize = 40
        cur.execute("SELECT id, caller FROM call_records ORDER BY id")
        got = list(cur)
    assert [r[0] for r in got] == list(range(1, 201))  # 200 rows over 5 FETCHes, then the limit
    assert all(c == masked_mobile(truth["calls"][i]) for i, c in got)


def test_named_cursor_reads_the_row_filtered_rows(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served) as conn, conn.cursor("filtered") as cur:
        cur.execute("SELECT id, phone FROM customers ORDER BY id")
        got = cur.fetchall()
    assert [r[0] for r in got] == truth["branch12"][:200]
    assert not leaked(truth["secrets"], got)
    assert all(p == masked_mobile(truth["phones"][i]) for i, p in got)


def test_with_hold_cursor_survives_commit(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served) as conn:
        with conn.cursor("held", withhold=True) as cur:
            cur.execute("SELECT id, caller FROM call_records ORDER BY id")
            conn.commit()
            got = cur.fetchmany(7)
        assert got == [(i, masked_mobile(truth["calls"][i])) for i in range(1, 8)]
        conn.commit()
        # psycopg closed it (after reading pg_cursors, which restricted roles may now read)
        assert conn.execute("SELECT count(*) FROM pg_cursors").fetchone() == (0,)


# ---------------------------------------------------------------------------------------------
# The server's rules, followed: transactions, WITH HOLD, CLOSE, names
# ---------------------------------------------------------------------------------------------


def test_a_cursor_without_hold_goes_with_its_transaction(served: dict[str, Any]) -> None:
    with connect(served, autocommit=True) as conn:
        # The server refuses DECLARE without HOLD outside a transaction block.
        with pytest.raises(psycopg.errors.NoActiveSqlTransaction):
            conn.execute("DECLARE c CURSOR FOR SELECT id FROM call_records")
        conn.execute("BEGIN")
        conn.execute("DECLARE c CURSOR FOR SELECT id, caller FROM call_records ORDER BY id")
        assert conn.execute("FETCH 2 FROM c").fetchall()[0][0] == 1
        conn.execute("COMMIT")
        assert fetch_refused(conn, "FETCH 2 FROM c")


def test_with_hold_survives_commit_not_rollback(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("DECLARE kept CURSOR WITH HOLD FOR SELECT id, caller FROM call_records ORDER BY id")
        conn.execute("COMMIT")
        conn.execute("BEGIN")
        conn.execute("DECLARE lost CURSOR WITH HOLD FOR SELECT id, caller FROM call_records ORDER BY id")
        conn.execute("ROLLBACK")
        assert conn.execute("FETCH 2 FROM kept").fetchall() == [
            (i, masked_mobile(truth["calls"][i])) for i in (1, 2)
        ]
        assert fetch_refused(conn, "FETCH 2 FROM lost")
        # An error in the declaring transaction: COMMIT answers ROLLBACK, the cursor is gone.
        conn.execute("BEGIN")
        conn.execute("DECLARE failed CURSOR WITH HOLD FOR SELECT id FROM call_records")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        conn.execute("COMMIT")
        assert fetch_refused(conn, "FETCH 2 FROM failed")
        # Outside a block, WITH HOLD commits with its own (implicit) transaction.
        conn.execute("DECLARE auto CURSOR WITH HOLD FOR SELECT id FROM call_records ORDER BY id")
        assert conn.execute("FETCH 1 FROM auto").fetchall() == [(1,)]
        # ...unless a later statement of the same string fails.
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("DECLARE doomed CURSOR WITH HOLD FOR SELECT id FROM call_records; SELECT 1 / 0")
        assert fetch_refused(conn, "FETCH 1 FROM doomed")
        conn.execute("CLOSE kept")
        assert fetch_refused(conn, "FETCH 2 FROM kept")


def test_close_all_and_discard_all(served: dict[str, Any]) -> None:
    with connect(served, PEEKER, autocommit=True) as conn:  # vendor's database_role forbids DISCARD ALL
        conn.execute("DECLARE h CURSOR WITH HOLD FOR SELECT id FROM call_records")
        conn.execute("BEGIN")
        conn.execute("DECLARE a CURSOR FOR SELECT id FROM call_records")
        conn.execute("DECLARE b CURSOR FOR SELECT id FROM call_records")
        conn.execute("CLOSE ALL")
        for name in ("a", "b", "h"):
            assert fetch_refused(conn, f"FETCH 1 FROM {name}"), name
        conn.execute("ROLLBACK")
        conn.execute("DECLARE h2 CURSOR WITH HOLD FOR SELECT id FROM call_records")
        conn.execute("DISCARD ALL")
        assert fetch_refused(conn, "FETCH 1 FROM h2")


def test_names_fold_as_the_server_folds_them(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute('DECLARE "C1" CURSOR FOR SELECT id, caller FROM call_records ORDER BY id')
        conn.execute("DECLARE C2 CURSOR FOR SELECT id, caller FROM call_records ORDER BY id")
        assert conn.execute('FETCH 1 FROM "C1"').fetchall() == [(1, masked_mobile(truth["calls"][1]))]
        assert conn.execute('FETCH 1 FROM "c2"').fetchall() == [(1, masked_mobile(truth["calls"][1]))]
        assert conn.execute("FETCH 1 FROM c2").fetchall() == [(2, masked_mobile(truth["calls"][2]))]
        assert fetch_refused(conn, "FETCH 1 FROM c1")  # c1 is not "C1"
        conn.execute("ROLLBACK")
        conn.execute("BEGIN")
        assert fetch_refused(conn, 'FETCH 1 FROM "C2"')  # C2 folded to c2


# ---------------------------------------------------------------------------------------------
# The row limit counts across FETCHes
# ---------------------------------------------------------------------------------------------


def test_row_budget_holds_across_fetches(served: dict[str, Any], truth: dict[str, Any]) -> None:
    seen: list[str] = []
    with connect(served, PEEKER, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
        conn.execute("BEGIN")
        conn.execute("DECLARE c CURSOR FOR SELECT id, caller FROM call_records ORDER BY id")
        first = conn.execute("FETCH 3 FROM c").fetchall()
        assert seen == []
        second = conn.execute("FETCH 3 FROM c")
        assert second.statusmessage == "FETCH 2"
        got = first + second.fetchall()
        assert seen == [f"maskgate: result truncated to {BUDGET} rows"]
        assert conn.execute("FETCH 3 FROM c").fetchall() == []
        assert conn.execute("FETCH ALL FROM c").fetchall() == []
        conn.execute("COMMIT")
    assert got == [(i, masked_mobile(truth["calls"][i])) for i in range(1, BUDGET + 1)]


def test_backward_fetches_count_the_rows_delivered(served: dict[str, Any]) -> None:
    with connect(served, PEEKER, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("DECLARE s SCROLL CURSOR FOR SELECT id FROM call_records ORDER BY id")
        delivered = conn.execute("FETCH 3 FROM s").fetchall()
        delivered += conn.execute("FETCH BACKWARD 2 FROM s").fetchall()
        conn.execute("MOVE ABSOLUTE 0 IN s")  # moves deliver nothing
        delivered += conn.execute("FETCH ABSOLUTE 1 FROM s").fetchall()
        conn.execute("COMMIT")
    # Rows read again count again: the budget of 5 is spent at the second row re-read.
    assert [r[0] for r in delivered] == [1, 2, 3, 2, 1]
    with connect(served, PEEKER, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("DECLARE t SCROLL CURSOR FOR SELECT id FROM call_records ORDER BY id")
        assert conn.execute("MOVE FORWARD 4 IN t").statusmessage == "MOVE 4"
        delivered = conn.execute("FETCH ABSOLUTE -1 FROM t").fetchall()
        delivered += conn.execute("FETCH BACKWARD ALL FROM t").fetchall()
        conn.execute("COMMIT")
    assert [r[0] for r in delivered] == [6, 5, 4, 3, 2]  # the last of LIMIT 6, then backwards


def test_a_cursor_query_is_limited_upstream(served: dict[str, Any], crm: EmbeddedPostgres) -> None:
    with connect(served, PEEKER, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("DECLARE big SCROLL CURSOR FOR SELECT id FROM call_records ORDER BY id")
        # The server holds the rewritten query: LIMIT max_rows + 1.
        statement = conn.execute("SELECT statement FROM pg_cursors WHERE name = 'big'").fetchone()[0]
        assert f"LIMIT {BUDGET + 1}" in statement
        assert conn.execute("MOVE FORWARD ALL IN big").statusmessage == f"MOVE {BUDGET + 1}"
        conn.execute("ROLLBACK")


# ---------------------------------------------------------------------------------------------
# Every door: multi-statement Query, extended protocol, binary results
# ---------------------------------------------------------------------------------------------


def test_fetch_inside_a_multi_statement_query(wire: Wire, truth: dict[str, Any]) -> None:
    out = wire.query(
        "BEGIN; DECLARE m CURSOR FOR SELECT id, phone FROM customers ORDER BY id; "
        "FETCH 3 FROM m; FETCH 2 FROM m; COMMIT"
    )
    assert codes(out) == []
    assert tags(out) == ["BEGIN", "DECLARE CURSOR", "FETCH 3", "FETCH 2", "COMMIT"]
    got = [(int(r[0]), r[1].decode()) for r in rows(out)]
    assert [i for i, _ in got] == truth["branch12"][:5]
    assert all(p == masked_mobile(truth["phones"][i]) for i, p in got)
    # Without BEGIN, a string is one (implicit) transaction block: the cursor lives until its end.
    out = wire.query("DECLARE n CURSOR FOR SELECT id, phone FROM customers ORDER BY id; FETCH 1 FROM n")
    assert codes(out) == [] and tags(out) == ["DECLARE CURSOR", "FETCH 1"]
    assert [r[1].decode() for r in rows(out)] == [masked_mobile(truth["phones"][truth["branch12"][0]])]
    assert codes(wire.query("FETCH 1 FROM n")) == [REFUSED]


@pytest.mark.parametrize("fmt", [0, 1])
def test_fetch_through_the_extended_protocol(wire: Wire, truth: dict[str, Any], fmt: int) -> None:
    assert codes(wire.query("BEGIN")) == []
    out = wire.run(
        m.Parse("", "DECLARE x CURSOR FOR SELECT id, phone FROM customers ORDER BY id"),
        m.Bind("", ""),
        m.Execute(""),
        # In the same batch: resolved when its answer starts, after the DECLARE completed.
        m.Parse("f", "FETCH 3 FROM x"),
        m.Bind("", "f", (), (), (fmt,)),
        m.Execute(""),
        m.Sync(),
    )
    assert codes(out) == []
    assert tags(out) == ["DECLARE CURSOR", "FETCH 3"]
    out += wire.run(m.Bind("", "f", (), (), (fmt,)), m.Describe(b"P", ""), m.Execute("", 1), m.Sync())
    assert codes(out) == []
    phones = [r[1].decode() for r in rows(out)]
    assert phones == [masked_mobile(truth["phones"][i]) for i in truth["branch12"][:4]]
    assert not leaked(truth["secrets"], rows(out))
    wire.query("COMMIT")


def test_binary_cursor_values_are_masked(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("DECLARE bc BINARY CURSOR FOR SELECT id, phone, id_card FROM customers ORDER BY id")
        cur = conn.execute("FETCH 20 FROM bc")
        got = cur.pgresult
        assert got is not None and got.nfields == 3 and got.fformat(1) == 1
        values = [got.get_value(r, 1) for r in range(got.ntuples)] + [
            got.get_value(r, 2) for r in range(got.ntuples)
        ]
        conn.execute("COMMIT")
    assert values and not leaked(truth["secrets"], values)


# ---------------------------------------------------------------------------------------------
# One namespace with protocol portals; cursors of other sessions' or unknown names
# ---------------------------------------------------------------------------------------------


def test_a_portal_closed_and_bound_under_a_cursor_name_is_not_masked_by_the_cursor(
    wire: Wire, truth: dict[str, Any]
) -> None:
    assert codes(wire.query("BEGIN")) == []
    assert codes(wire.query("DECLARE p1 CURSOR FOR SELECT id FROM customers")) == []
    # Close the cursor as a portal, then bind a portal of the same name over masked columns.
    out = wire.run(
        m.Close(b"P", "p1"),
        m.Parse("s", "SELECT phone, id_card FROM customers"),
        m.Bind("p1", "s"),
        m.Sync(),
    )
    assert codes(out) == []
    out = wire.query("FETCH 5 FROM p1")
    assert codes(out) == [REFUSED] and not rows(out)
    wire.query("ROLLBACK")
    # A DECLARE under a bound portal's name fails on the server and changes nothing.
    assert codes(wire.query("BEGIN")) == []
    assert codes(wire.run(m.Parse("s2", "SELECT id FROM customers"), m.Bind("p2", "s2"), m.Sync())) == []
    out = wire.query("DECLARE p2 CURSOR FOR SELECT phone FROM customers")
    assert codes(out) == ["42P03"]
    wire.query("ROLLBACK")


def test_a_cursor_cannot_be_executed_as_a_portal(wire: Wire) -> None:
    assert codes(wire.query("BEGIN")) == []
    assert codes(wire.query("DECLARE q CURSOR FOR SELECT phone FROM customers")) == []
    out = wire.run(m.Execute("q", 0), m.Sync())
    assert codes(out) == [REFUSED] and not rows(out)
    wire.query("ROLLBACK")


@pytest.mark.parametrize("close", ["CLOSE p3", "CLOSE ALL"])
def test_a_cursor_declared_under_a_closed_portal_name_is_not_executed_by_the_portal_decision(
    wire: Wire, truth: dict[str, Any], close: str
) -> None:
    """A portal over a clear column, closed by SQL, its name taken by a cursor over a masked one:
    an Execute of that name must not be masked by the portal's (all clear) decision."""
    assert codes(wire.query("BEGIN")) == []
    out = wire.run(
        m.Parse("s3", "SELECT id FROM customers"), m.Bind("p3", "s3"), m.Execute("p3", 1), m.Sync()
    )
    assert codes(out) == [] and len(rows(out)) == 1
    assert codes(wire.query(close)) == []
    assert codes(wire.query("DECLARE p3 CURSOR FOR SELECT phone FROM customers")) == []
    out = wire.run(m.Execute("p3", 0), m.Sync())
    assert codes(out) == [REFUSED] and not rows(out)
    assert not leaked(truth["secrets"], out)
    wire.query("ROLLBACK")


def test_fetch_of_an_unknown_cursor_is_refused(served: dict[str, Any]) -> None:
    with connect(served, autocommit=True) as conn:
        conn.execute("BEGIN")
        assert fetch_refused(conn, "FETCH 1 FROM nowhere")
    with connect(served, DBA, autocommit=True) as conn:  # unrestricted: the server answers
        conn.execute("BEGIN")
        with pytest.raises(psycopg.errors.InvalidCursorName):
            conn.execute("FETCH 1 FROM nowhere")


# ---------------------------------------------------------------------------------------------
# Policy reload between DECLARE and FETCH
# ---------------------------------------------------------------------------------------------


def test_reload_between_declare_and_fetch(served: dict[str, Any], truth: dict[str, Any]) -> None:
    app = served["app"]
    good = served["policy"].read_text()
    try:
        with connect(served, autocommit=True) as conn:
            conn.execute("DECLARE same CURSOR WITH HOLD FOR SELECT id, caller FROM call_records ORDER BY id")
            conn.execute("DECLARE other CURSOR WITH HOLD FOR SELECT id, caller FROM call_records ORDER BY id")
            assert conn.execute("FETCH 1 FROM other").fetchall() == [(1, masked_mobile(truth["calls"][1]))]
            # Masks only: the cursor's query is sent the same; the new masks apply.
            served["policy"].write_text(good.replace("      mobile: mask\n", "      mobile: redact\n", 1))
            assert app.reloader.reload_now() is True
            got = conn.execute("FETCH 1 FROM same").fetchall()
            assert got and got[0][0] == 1 and got[0][1] != masked_mobile(truth["calls"][1])
            assert not leaked(truth["secrets"], got)
            # The row limit changes the query upstream: the server's cursor is not what the
            # policy runs now, so it may not be read.
            served["policy"].write_text(good.replace("max_rows: 200", "max_rows: 100", 1))
            assert app.reloader.reload_now() is True
            assert fetch_refused(conn, "FETCH 1 FROM other")
    finally:
        served["policy"].write_text(good)
        app.reloader.reload_now()


# ---------------------------------------------------------------------------------------------
# What else leaves with a cursor: pg_cursors, errors, audit
# ---------------------------------------------------------------------------------------------


def test_pg_cursors_is_readable_and_its_statement_masked(
    served: dict[str, Any], truth: dict[str, Any]
) -> None:
    phone = truth["phones"][truth["branch12"][0]]
    with connect(served, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute(f"DECLARE lit CURSOR FOR SELECT id, '{phone}' AS p FROM customers")
        got = conn.execute("SELECT name, statement, is_holdable FROM pg_cursors").fetchall()
        conn.execute("ROLLBACK")
    assert [(n, h) for n, _, h in got] == [("lit", False)]
    assert phone not in got[0][1] and "DECLARE lit" in got[0][1]


def test_errors_raised_by_a_fetch_are_withheld(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served, autocommit=True) as conn:
        conn.execute("BEGIN")
        # The query runs when it is fetched from: its error comes at FETCH, while it reads the
        # cursor's classified columns, and is withheld as the same SELECT's would be.
        conn.execute("DECLARE e CURSOR FOR SELECT id, phone FROM customers WHERE 1 / (id - id) = 1")
        with pytest.raises(psycopg.errors.DivisionByZero) as info:
            conn.execute("FETCH 1 FROM e")
        conn.execute("ROLLBACK")
    assert "withheld" in str(info.value)


def audit(served: dict[str, Any]) -> list[dict[str, Any]]:
    path = served["dir"] / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_declare_and_fetch_are_audited(served: dict[str, Any]) -> None:
    with connect(served, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("DECLARE audited_c CURSOR FOR SELECT id, caller FROM call_records ORDER BY id")
        conn.execute("FETCH 4 FROM audited_c").fetchall()
        conn.execute("COMMIT")
    deadline = time.monotonic() + 10
    while True:
        recs = audit(served)
        starts = {r["id"]: r for r in recs if r.get("event") == "start" and "audited_c" in r["sql"]}
        ends = {r["id"]: r for r in recs if r.get("event") == "end" and r["id"] in starts}
        if len(ends) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    declare = next(i for i, r in starts.items() if r["sql"].startswith("DECLARE"))
    fetch = next(i for i, r in starts.items() if r["sql"].startswith("FETCH"))
    assert starts[declare]["tables"] == ["public.call_records"] and starts[declare]["fingerprint"]
    assert ends[fetch]["rows"] == 4
