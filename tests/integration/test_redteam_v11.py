"""Red team v11 (issue 15): the disclosure ledger, canaries and budgets after the v10 fixes.

The threat is unchanged: an insider whose role sees numbers in clear (the DBA; a call-centre
agent with a budget) takes customers' numbers in a form they can turn back into the number, and
`maskgate trace` names them neither among its matches nor among its "computed" reads, or no
budget counts them.

What this pass found:
- the audit's `computed` list comes from the lineage of result columns alone. A number read
  through a predicate (`substr(phone, p, 1) = d::text` joined with `generate_series`) returns
  only unclassified positions and digits, one short value per row, or folded into letters
  (`chr(97 + d)`, also in an error's text): the content scan finds no number, the lineage no
  class, and trace names nobody. ID cards alike.
- the same read lets a budgeted agent take a customer per statement: eleven (position, digit)
  rows hold neither the customer key nor a number, and count no customer.
  (Both fixed: the analysis reports the classes a statement's conditions compute over, the
  audit lists them as `computed`, and each row of a computed read counts as a customer.)
- a computed column whose lineage is kept (a digit cipher, circled digits) counted, without the
  key, only the numbers its content reads as: none. trace names the DBA for such a column; the
  budget did not count it (fixed: each row of a computed read counts as a customer).
- SQL in a string the DBA may send (ts_stat, ts_rewrite; query_to_xml is the same door, the test
  server has no XML): its inner reads have no lineage and the statement is no computed read.

What held: a circled-digit or padded cipher, a notice from a DO block, an error's text and a
column renamed inside a transaction are all named by trace; to_hex(phone::bigint) counts against
the budget; aggregates gathering many rows are refused to a role with max_rows; ts_stat and
ts_rewrite are refused to restricted roles; an agent over budget is refused a table read dressed
as a catalog (a CTE named pg_namespace, a join or UNION with pg_am, a cursor), and a pipeline
reads past the budget by one statement's max_rows at most.

Each attack reads its own customer and runs as its own person, so that no attack vouches for
another. A finding is an xfail(strict) test that fails today; attacks that hold are plain tests.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.cli import main
from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.pg.auth import make_verifier
from tests.integration.harness import connect_proxy, crm_database, serve_demo
from tests.integration.test_redteam_v9 import Received, env, refused_soon, settle  # noqa: F401

SVC_PW = "svc-secret-red11"
KEY = "ledger-test-key-11"
KEY_LINES = f"ledger_dir: ledger\nmasking_key: {KEY}\n"

DBAS = [f"red11_d{i}" for i in range(1, 21)]
CUSTOMERS_PER_DAY = 5
MAX_ROWS = 20
AGENTS = [f"red11_a{i}" for i in range(1, 8)]
POLICY = (
    f"""version: 1
customer_key: crm.customers.id
roles:
  red11_agent:
    statements: [select]
    tables: ["crm.customers"]
    max_rows: {MAX_ROWS}
    see: {{mobile: clear, id_card: clear, person_name: clear, bank_card: clear, email: clear,
           address: clear, free_text: clear}}
    budgets: {{rows_per_hour: 1000, distinct_customers_per_day: {CUSTOMERS_PER_DAY}}}
users:
"""
    + "".join(f'  {u}:\n    role: red11_agent\n    password: "{make_verifier(u + "-pw")}"\n' for u in AGENTS)
    + "".join(f'  {u}:\n    role: dba\n    password: "{make_verifier(u + "-pw")}"\n' for u in DBAS)
)


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with crm_database(tmp_path_factory, "pg-red11", SVC_PW, 80) as pg:
        yield pg


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(
        tmp_path_factory.mktemp("red11"), crm, SVC_PW, extra_policy=POLICY, config_lines=KEY_LINES
    ) as s:
        yield s


@pytest.fixture(scope="module")
def numbers(crm: EmbeddedPostgres) -> dict[int, tuple[str, str, str | None]]:
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as conn:
        rows = conn.execute("SELECT id, phone, id_card, bank_card FROM customers").fetchall()
    return {i: (p, c, b) for i, p, c, b in rows}


def named(served: dict[str, Any], capsys: Any, number: str) -> set[str]:
    """Everyone trace names for `number`: matched by value, or listed among computed reads."""
    settle(served)
    capsys.readouterr()
    assert main(["trace", "--config", str(served["dir"] / "maskgate.yaml"), "--json", number]) == 0
    entry = json.loads(capsys.readouterr().out)["numbers"][0]
    return {p["user"] for p in entry["people"]} | {p["user"] for p in entry["computed"]}


def session(served: dict[str, Any], user: str, statements: list[str]) -> Received:
    got = Received()
    with connect_proxy(served, (user, user + "-pw"), autocommit=True) as conn:
        conn.add_notice_handler(lambda d: got.notices.append(d.message_primary or ""))
        for sql in statements:
            try:
                cur = conn.execute(sql)
                if cur.description is not None:
                    got.rows += cur.fetchall()
            except psycopg.Error as e:
                got.error += f"{e} "
    return got


def _letters(s: str) -> str:
    return "".join(str(ord(c) - ord("a")) for c in s)


# The digit at each position of a column, joined on the predicate alone: the result columns are
# a position and a digit from generate_series, lineage of no class.
ORACLE = (
    "FROM customers c, generate_series(1, 18) p, generate_series(0, 9) d"
    " WHERE {where} AND substr(c.{col}, p, 1) = d::text"
)


# id: (statement reading customer id's number in a form no detector reads, how its reader gets
# the number back, which number). The person is DBAS[id].
PREDICATE_FORMS: dict[int, tuple[str, Any, int]] = {
    # One row per digit: (position, digit), each value shorter than any number.
    1: (
        "SELECT p, d " + ORACLE.format(col="phone", where="c.id = {id}") + " ORDER BY p",
        lambda r: "".join(str(d) for _p, d in r.rows),
        0,
    ),
    # One row, the digits as letters.
    2: (
        "SELECT string_agg(chr(97 + d), '' ORDER BY p) " + ORACLE.format(col="phone", where="c.id = {id}"),
        lambda r: _letters(r.rows[0][0]),
        0,
    ),
    # An ID card (its X check character aside: the other 17 digits give it back).
    3: (
        "SELECT string_agg(chr(97 + d), '' ORDER BY p) " + ORACLE.format(col="id_card", where="c.id = {id}"),
        lambda r: _letters(r.rows[0][0]),
        1,
    ),
    # The number in an error's text, no rows at all.
    4: (
        "SELECT string_agg(chr(97 + d), '' ORDER BY p)::int "
        + ORACLE.format(col="phone", where="c.id = {id}"),
        lambda r: _letters(r.error.split('"')[1]),
        0,
    ),
}


@pytest.mark.parametrize("cid", sorted(PREDICATE_FORMS))
def test_dba_number_read_through_a_predicate_is_named(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any, cid: int
) -> None:
    user = DBAS[cid]
    sql, undo, which = PREDICATE_FORMS[cid]
    got = session(served, user, [sql.format(id=cid)])
    number = numbers[cid][which]
    # An ID card's check character X is no digit: it is the one position the oracle leaves out.
    assert undo(got) == number.rstrip("Xx"), got.text()
    assert user in named(served, capsys, number)


# ------------------------------------------------------------------ budgets


def test_agent_budget_counts_customers_read_through_a_predicate(
    served: dict[str, Any], numbers: dict[int, Any]
) -> None:
    user = AGENTS[0]
    ids = range(41, 41 + CUSTOMERS_PER_DAY + 2)
    got = {}
    for cid in ids:
        r = session(
            served, user, ["SELECT p, d " + ORACLE.format(col="phone", where=f"c.id = {cid}") + " ORDER BY p"]
        )
        got[cid] = "".join(str(d) for _p, d in r.rows)
    # Each row of a computed read counts as a customer: the reads stop within the budget.
    assert sum(got[i] == numbers[i][0] for i in ids) < CUSTOMERS_PER_DAY
    assert refused_soon(served, user)


# Computed columns whose lineage is kept, whose content reads as no number: a row each, no key.
BUDGET_FORMS: dict[int, tuple[str, Any]] = {
    # A digit cipher.
    1: (
        "SELECT translate(phone, '0123456789', 'abcdefghij') FROM customers WHERE id BETWEEN {lo} AND {hi}",
        _letters,
    ),
    # Circled digits: no decimal digit (\\d) for the content scan to start from.
    2: (
        "SELECT translate(phone, '0123456789', '⓪①②③④⑤⑥⑦⑧⑨') FROM customers WHERE id BETWEEN {lo} AND {hi}",
        lambda p: "".join(str("⓪①②③④⑤⑥⑦⑧⑨".index(c)) for c in p),
    ),
    # Hex of the integer.
    3: (
        "SELECT to_hex(phone::bigint) FROM customers WHERE id BETWEEN {lo} AND {hi}",
        lambda p: str(int(p, 16)),
    ),
}


CONTENT_UNCOUNTED: set[int] = set()  # a computed column's rows count as customers


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(
            f,
            marks=pytest.mark.xfail(
                strict=True,
                reason="a computed column without the key counts the numbers its content reads as: "
                "a digit cipher or circled digits read as none, ten customers count none",
            ),
        )
        if f in CONTENT_UNCOUNTED
        else f
        for f in sorted(BUDGET_FORMS)
    ],
)
def test_agent_budget_counts_customers_in_a_computed_column(
    served: dict[str, Any], numbers: dict[int, Any], form: int
) -> None:
    user = AGENTS[form]
    lo = 1 + 10 * form
    sql, undo = BUDGET_FORMS[form]
    got = session(served, user, [sql.format(lo=lo, hi=lo + 9)])
    if got.rows:
        assert {undo(r[0]) for r in got.rows} == {numbers[i][0] for i in range(lo, lo + 10)}
        assert refused_soon(served, user)
    else:
        assert "maskgate" in got.error, got.text()


# ------------------------------------------------------------------ what holds


# id: statements giving customer id's mobile in a form the content scan does not read, but whose
# lineage (or kind) the audit's `computed` list keeps. The person is DBAS[id].
HELD_FORMS: dict[int, tuple[list[str], Any]] = {
    10: (
        ["SELECT translate(phone, '0123456789', '⓪①②③④⑤⑥⑦⑧⑨') FROM customers WHERE id = {id}"],
        lambda r: "".join(str("⓪①②③④⑤⑥⑦⑧⑨".index(c)) for c in r.rows[0][0]),
    ),
    11: (
        [
            "DO $$BEGIN RAISE NOTICE '%', (SELECT translate(phone, '0123456789', 'abcdefghij')"
            " FROM customers WHERE id = {id}); END$$"
        ],
        lambda r: _letters(r.notices[0]),
    ),
    12: (
        ["SELECT rpad(regexp_replace(phone, '(.)', '\\1z', 'g'), 90, 'q') FROM customers WHERE id = {id}"],
        lambda r: "".join(c for c in r.rows[0][0] if c.isdigit()),
    ),
    13: (
        ["SELECT (translate(phone, '0123456789', 'abcdefghij'))::int FROM customers WHERE id = {id}"],
        lambda r: _letters(r.error.split('"')[1]),
    ),
}


@pytest.mark.parametrize("cid", sorted(HELD_FORMS))
def test_dba_computed_form_is_named(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any, cid: int
) -> None:
    user = DBAS[cid]
    stmts, undo = HELD_FORMS[cid]
    got = session(served, user, [s.format(id=cid) for s in stmts])
    assert undo(got) == numbers[cid][0], got.text()
    assert user in named(served, capsys, numbers[cid][0])


# id: statements a DBA may send that move a number where lineage does not follow it. The person
# is DBAS[id]; the last statement returns customer id's mobile as letters. (query_to_xml and
# its kin are the same door; the test server is built without XML.)
MORE_FORMS: dict[int, tuple[list[str], Any]] = {
    15: (
        [
            "SELECT word FROM ts_stat('SELECT to_tsvector(''simple'', translate(phone, ''0123456789'',"
            " ''abcdefghij'')) FROM customers WHERE id = {id}')"
        ],
        lambda r: _letters(r.rows[0][0]),
    ),
    17: (
        [
            "SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, to_tsquery(''simple'', translate(phone,"
            " ''0123456789'', ''abcdefghij'')) FROM customers WHERE id = {id}')::text"
        ],
        lambda r: _letters(r.rows[0][0].strip("'")),
    ),
    16: (
        [
            "BEGIN",
            "ALTER TABLE customers RENAME COLUMN phone TO red11_p",
            "SELECT translate(red11_p, '0123456789', 'abcdefghij') FROM customers WHERE id = {id}",
            "ROLLBACK",
        ],
        lambda r: _letters(r.rows[0][0]),
    ),
}


SQL_IN_A_STRING = {15, 17}


@pytest.mark.parametrize(
    "cid",
    [
        pytest.param(
            c,
            marks=pytest.mark.xfail(
                strict=True,
                reason="SQL in a string (ts_stat, ts_rewrite: functions refused to restricted roles, "
                "allowed to the DBA) reads a column no lineage sees: its result is no computed read, "
                "a cipher in it reads as no number, and trace names nobody",
            ),
        )
        if c in SQL_IN_A_STRING
        else c
        for c in sorted(MORE_FORMS)
    ],
)
def test_dba_number_moved_past_lineage_is_named(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any, cid: int
) -> None:
    user = DBAS[cid]
    stmts, undo = MORE_FORMS[cid]
    got = session(served, user, [s.format(id=cid) for s in stmts])
    assert undo(got) == numbers[cid][0], got.text()
    assert user in named(served, capsys, numbers[cid][0])


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT word FROM ts_stat('SELECT to_tsvector(''simple'', phone) FROM customers WHERE id < 30')",
        "SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, to_tsquery(''simple'', phone)"
        " FROM customers')::text",
    ],
)
def test_agent_may_not_run_sql_in_a_string(served: dict[str, Any], sql: str) -> None:
    got = session(served, AGENTS[5], [sql])
    assert not got.rows and "maskgate" in got.error, got.text()


@pytest.mark.parametrize(
    "sql",
    [
        "WITH pg_namespace AS (SELECT id, phone FROM customers WHERE id = 72) SELECT * FROM pg_namespace",
        "SELECT c.id, c.phone FROM pg_catalog.pg_am a, customers c WHERE c.id = 73 LIMIT 1",
        "SELECT (SELECT phone FROM customers WHERE id = 74)",
        "SELECT phone FROM customers WHERE id = 75 UNION ALL SELECT amname::text FROM pg_am",
        "DECLARE k CURSOR FOR SELECT id, phone FROM customers WHERE id > 75",
    ],
)
def test_agent_over_budget_reads_no_table_dressed_as_a_catalog(served: dict[str, Any], sql: str) -> None:
    user = AGENTS[6]
    session(served, user, ["SELECT id, phone FROM customers WHERE id BETWEEN 61 AND 70"])
    assert refused_soon(served, user)
    got = session(served, user, ["BEGIN", sql, "FETCH 3 FROM k"] if "CURSOR" in sql else [sql])
    assert not got.rows and "customers per day" in got.error, got.text()


def test_agent_pipeline_reads_past_the_budget_by_one_statement_at_most(
    served: dict[str, Any], numbers: dict[int, Any]
) -> None:
    user = AGENTS[4]
    phones: set[str] = set()
    with connect_proxy(served, (user, user + "-pw"), autocommit=True) as conn:
        cursors = []
        # The refusal of a later statement surfaces when the pipeline syncs; the rows of the
        # statements that ran are still on their cursors.
        with contextlib.suppress(psycopg.Error), conn.pipeline():
            for lo in (1, 21, 41, 61):
                cur = conn.cursor()
                cur.execute(f"SELECT phone FROM customers WHERE id BETWEEN {lo} AND {lo + 19}")
                cursors.append(cur)
        for cur in cursors:
            with contextlib.suppress(psycopg.Error):
                phones |= {p for (p,) in cur.fetchall()}
    got = len(phones & {n[0] for n in numbers.values()})
    assert 0 < got <= CUSTOMERS_PER_DAY - 1 + MAX_ROWS
