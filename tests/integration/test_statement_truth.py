"""Issue 9 through the real proxy (App) in front of a real PostgreSQL: what a statement does is
read from its whole tree, and the server reads exactly what the proxy decided.

- writes anywhere in a statement are writes, through every protocol door (item 2);
- the server's search_path cannot make it read another relation than the one judged: relations
  go upstream named by their schema, setting functions are followed or refused (item 3);
- names fold as the server folds them: random case and quoting give the proxy's decision the
  relations the server itself resolves (item 4);
- values that gather rows are refused for row-limited roles (item 8);
- the statement-shape cache never reuses a decision for a literal that changes it (item 9).

The attacker is mostly `vendor_zhang` (policies/examples/demo.yaml: select only, masked classes,
`branch_id = 12` on customers, 200 rows). Ground truth is read as the service account straight
from PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.passwords import scram_verifier
from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.pg import messages as m
from tests.conftest import start_crm
from tests.integration.harness import serve_demo
from tests.integration.test_redteam import Wire, errors_of, leaked, rows

SVC_PW = "svc-secret-truth"
VENDOR = ("vendor_zhang", "vendor-pass")
DESK = ("desk_li", "desk-pass")
BRANCH_DESK = ("desk_zhao", "zhao-pass")  # update on customers, row filter branch_id = 12
BRANCH_DESK_ROLE = """  branch_desk:
    statements: [select, update]
    tables: ["crm.customers", "crm.call_records"]
    max_rows: 50
    see: {mobile: mask, id_card: mask, person_name: mask, bank_card: mask, free_text: mask}
    masked_predicates: equality
    row_filters:
      crm.customers: "branch_id = 12"
"""


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = start_crm(tmp_path_factory.mktemp("pg-truth"), SVC_PW, 400)
    try:
        with psycopg.connect(pg.dsn("maskgate_svc", SVC_PW, "crm"), autocommit=True) as c:
            # The issue's tables: branches to write into, and a second schema whose `customers`
            # is not the one the vendor may read.
            c.execute("CREATE TABLE branches (id text PRIMARY KEY, name text)")
            c.execute("INSERT INTO branches VALUES ('SH01', 'Shanghai'), ('BJ01', 'Beijing')")
            c.execute("CREATE SCHEMA brokerage")
            c.execute("CREATE TABLE brokerage.customers AS SELECT id, phone, branch_id FROM customers")
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("truth"), crm, SVC_PW) as s:
        text = s["policy"].read_text()
        text = text.replace("roles:\n", "roles:\n" + BRANCH_DESK_ROLE, 1)
        text = text.replace(
            "users:\n",
            f"users:\n  {BRANCH_DESK[0]}:\n    role: branch_desk\n"
            f'    password: "{scram_verifier(BRANCH_DESK[1])}"\n',
            1,
        )
        s["policy"].write_text(text)
        assert s["app"].reloader.reload_now() is True
        yield s


@pytest.fixture(scope="module")
def truth(crm: EmbeddedPostgres) -> dict[str, Any]:
    with dba(crm) as c:
        cust = c.execute(
            "SELECT id, phone, id_card, bank_card, branch_id FROM customers ORDER BY id"
        ).fetchall()
    secrets = {x for r in cust for x in r[1:4] if x}
    return {
        "secrets": secrets,
        "branch12": [r[0] for r in cust if r[4] == 12],
        "others": [r[0] for r in cust if r[4] != 12],
        "all": len(cust),
    }


def dba(crm: EmbeddedPostgres) -> psycopg.Connection[Any]:
    """The service account straight to PostgreSQL, never through the proxy."""
    return psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm"), autocommit=True)


def connect(served: dict[str, Any], who: tuple[str, str], **kw: Any) -> psycopg.Connection[Any]:
    kw.setdefault("autocommit", True)
    return psycopg.connect(
        host="127.0.0.1",
        port=served["port"],
        user=who[0],
        password=who[1],
        dbname="crm",
        sslmode="disable",
        **kw,
    )


def refused_by_maskgate(conn: psycopg.Connection[Any], sql: str) -> bool:
    try:
        conn.execute(sql)
    except psycopg.errors.InsufficientPrivilege as e:
        return (e.diag.message_primary or "").startswith("maskgate: ")
    return False


def branches(crm: EmbeddedPostgres) -> list[tuple[Any, ...]]:
    with dba(crm) as c:
        return c.execute("SELECT id, name FROM branches ORDER BY id").fetchall()


# ---------------------------------------------------------------------------------------------
# Item 2: a write anywhere in the tree is a write, through every door
# ---------------------------------------------------------------------------------------------

CTE_INSERT = "WITH u AS (INSERT INTO branches VALUES ('XX99', 'x') RETURNING 1) SELECT 1"
WRITES = [
    CTE_INSERT,
    "WITH u AS (INSERT INTO branches VALUES ('XX98', 'x') RETURNING id) SELECT id FROM u",
    "WITH u AS (UPDATE branches SET name = 'pwned' RETURNING id) SELECT count(*) FROM u",
    "WITH u AS (DELETE FROM branches RETURNING id) SELECT count(*) FROM u",
    "WITH u AS (INSERT INTO branches VALUES ('XX97', 'x') RETURNING id) "
    "SELECT id FROM u UNION ALL SELECT 'a'",
    "SELECT * FROM (WITH u AS (INSERT INTO branches VALUES ('XX96', 'x') RETURNING id) SELECT id FROM u) s",
    "MERGE INTO branches b USING (SELECT 'SH01' AS id) s ON b.id = s.id "
    "WHEN MATCHED THEN UPDATE SET name = 'pwned'",
    "MERGE INTO branches b USING (SELECT 'XX95' AS id) s ON b.id = s.id "
    "WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'x')",
    "MERGE INTO branches b USING (SELECT 'SH01' AS id) s ON b.id = s.id WHEN MATCHED THEN DELETE",
    "WITH m AS (MERGE INTO branches b USING (SELECT 'SH01' AS id) s ON b.id = s.id "
    "WHEN MATCHED THEN UPDATE SET name = 'pwned' RETURNING b.id) SELECT * FROM m",
    "INSERT INTO branches VALUES ('XX94', 'x') ON CONFLICT (id) DO UPDATE SET name = 'pwned'",
    "SELECT id FROM branches FOR UPDATE",
    "SELECT id FROM (SELECT id FROM branches FOR KEY SHARE) s",
    "SELECT id INTO branches_copy FROM branches",
    "CREATE TABLE branches_copy AS SELECT id FROM branches",
    "COPY (WITH u AS (UPDATE branches SET name = 'pwned' RETURNING id) SELECT id FROM u) TO STDOUT",
]
DOORS = ["simple", "extended", "prepare", "explain analyze", "cursor"]


def _through(door: str, sql: str) -> list[str]:
    """The statements a client sends to run `sql` through a door."""
    if door == "prepare":
        return [f"PREPARE w AS {sql}", "EXECUTE w"]
    if door == "explain analyze":
        return [f"EXPLAIN ANALYZE {sql}"]
    if door == "cursor":
        return ["BEGIN", f"DECLARE w CURSOR FOR {sql}", "FETCH ALL FROM w", "COMMIT"]
    return [sql]


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("sql", WRITES)
def test_a_select_only_role_writes_nothing_through_any_door(
    served: dict[str, Any], crm: EmbeddedPostgres, sql: str, door: str
) -> None:
    before = branches(crm)
    w = Wire(served["port"])
    try:
        for stmt in _through(door, sql):
            if door == "extended":
                out = w.run(
                    m.Parse("", stmt, ()),
                    m.Bind("", "", (), (), ()),
                    m.Execute("", 0),
                    m.Sync(),
                )
            else:
                out = w.query(stmt)
            for code, _ in errors_of(out):
                # Refused by maskgate, or (after a refusal) by the server in an aborted transaction.
                assert code in ("42501", "25P02", "26000", "34000"), (stmt, errors_of(out))
        w.query("ROLLBACK")
    finally:
        w.close()
    assert branches(crm) == before
    with dba(crm) as c:
        assert c.execute("SELECT to_regclass('public.branches_copy')").fetchone() == (None,)


def test_the_issues_insert_in_a_cte_is_refused_and_inserts_nothing(
    served: dict[str, Any], crm: EmbeddedPostgres
) -> None:
    with connect(served, VENDOR) as c:
        assert refused_by_maskgate(c, CTE_INSERT)
    with dba(crm) as c:
        assert c.execute("SELECT count(*) FROM branches WHERE id = 'XX99'").fetchone() == (0,)


def test_update_returning_in_a_cte_is_row_filtered_and_masked(
    served: dict[str, Any], crm: EmbeddedPostgres, truth: dict[str, Any]
) -> None:
    other, mine = truth["others"][0], truth["branch12"][0]
    sql = (
        "WITH u AS (UPDATE customers SET created_at = created_at WHERE id = {} "
        "RETURNING id, phone, upper(phone) AS p, translate(id_card, '0123', 'abcd') AS t) SELECT * FROM u"
    )
    with connect(served, BRANCH_DESK) as c:
        assert c.execute(sql.format(other)).fetchall() == []  # another branch's row: filtered out
        got = c.execute(sql.format(mine)).fetchall()
        everyone = c.execute(
            "WITH u AS (UPDATE customers SET created_at = created_at RETURNING id, branch_id) SELECT * FROM u"
        ).fetchall()
    assert [r[0] for r in got] == [mine]
    assert not leaked(truth["secrets"], got)
    assert got[0][1] != got[0][2]  # phone masked, the derived value redacted to a constant
    assert {r[1] for r in everyone} == {12} and len(everyone) <= 50


def test_merge_returning_is_masked(
    served: dict[str, Any], truth: dict[str, Any], crm: EmbeddedPostgres
) -> None:
    # The desk's database role may update contact details of customers (and nothing else).
    with dba(crm) as c:
        (rid,) = c.execute("SELECT min(id) FROM customers").fetchone()
    with connect(served, DESK) as c:
        got = c.execute(
            f"MERGE INTO customers r USING (SELECT {rid}::bigint AS id) s ON r.id = s.id "
            "WHEN MATCHED THEN UPDATE SET email = r.email "
            f"RETURNING r.phone, translate(r.id_card, '0123', 'abcd'), reverse(r.phone)"
        ).fetchall()
    assert len(got) == 1 and not leaked(truth["secrets"], got)


# ---------------------------------------------------------------------------------------------
# Item 3: the server reads what the proxy decided, whatever moved its search_path
# ---------------------------------------------------------------------------------------------


def _no_whole_table(conn: psycopg.Connection[Any], truth: dict[str, Any]) -> None:
    """`SELECT id, phone FROM customers` is refused, fails, or returns what the vendor may see."""
    try:
        got = conn.execute("SELECT id, phone FROM customers").fetchall()
    except psycopg.Error:
        return
    assert len(got) <= 200
    assert {r[0] for r in got} <= set(truth["branch12"])
    assert not leaked(truth["secrets"], got)


DRIFTS = [
    # The issue's three, and their spellings.
    ["SET SCHEMA 'brokerage'"],
    ["SELECT set_config('search_path', 'brokerage', false)"],
    ["BEGIN", "SET search_path = information_schema", "ROLLBACK"],
    ["BEGIN; SET search_path = information_schema; ROLLBACK"],
    ["BEGIN", "SET LOCAL search_path = information_schema", "COMMIT"],
    ["BEGIN", "SAVEPOINT a", "SET search_path = information_schema", "ROLLBACK TO a", "COMMIT"],
    ["SET search_path = information_schema", "SELECT set_config('search_path', 'public', false)"],
    ["SET search_path = information_schema", "RESET ALL"],
    ["SET search_path = information_schema", "DISCARD ALL"],
    ["SELECT pg_catalog.set_config('search_path', 'information_schema', true)"],
]


@pytest.mark.parametrize("steps", DRIFTS, ids=[" | ".join(d) for d in DRIFTS])
def test_moving_the_search_path_never_returns_a_whole_table(
    served: dict[str, Any], truth: dict[str, Any], steps: list[str]
) -> None:
    with connect(served, VENDOR) as c:
        for s in steps:
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                c.execute(s)
        _no_whole_table(c, truth)


@pytest.mark.parametrize(
    "string",
    [
        "BEGIN; SET search_path = information_schema; ROLLBACK; SELECT id, phone FROM customers",
        "SET search_path = information_schema; ROLLBACK; SELECT id, phone FROM customers",
        "SELECT set_config('search_path', 'public', false); SELECT id, phone FROM customers",
        "SET search_path = information_schema; SELECT set_config('search_path', 'public', false); "
        "SELECT id, phone FROM customers",
    ],
)
def test_a_multi_statement_string_is_judged_under_the_path_the_server_has(
    served: dict[str, Any], truth: dict[str, Any], string: str
) -> None:
    w = Wire(served["port"])
    try:
        w.query("SET search_path = information_schema")
        out = w.query(string)
        w.query("RESET search_path")
    finally:
        w.close()
    got = rows(out)
    assert len(got) <= 201
    assert not leaked(truth["secrets"], got)
    ids = {int(r[0]) for r in got if r and r[0] is not None and r[0].isdigit()}
    assert ids <= set(truth["branch12"])


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT set_config('search_path', 'brokerage', false) FROM branches LIMIT 1",
        "SELECT 1 WHERE set_config('search_path', 'brokerage', false) IS NOT NULL",
        "SELECT * FROM set_config('search_path', 'brokerage', false)",
        "WITH s AS (SELECT set_config('search_path', 'brokerage', false)) SELECT * FROM s",
        "SELECT set_config('search_path', 'brokerage', false), 1",
        "SELECT set_config(name, 'brokerage', false) FROM pg_settings WHERE name IN ('search_path')",
        "SELECT set_config('search_path', 'public, pg_catalog', false)",
        "SET search_path = public, pg_catalog",
    ],
)
def test_setting_functions_inside_queries_are_refused_and_change_nothing(
    served: dict[str, Any], sql: str
) -> None:
    with connect(served, VENDOR) as c:
        assert refused_by_maskgate(c, sql)
        assert c.execute("SHOW search_path").fetchone() == ('"$user", public',)


def test_pg_dumps_set_config_is_followed_like_a_set(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served, VENDOR) as c:
        assert c.execute("SELECT pg_catalog.set_config('search_path', '', false);").fetchone() == ("",)
        assert c.execute("SHOW search_path").fetchone() == ("",)
        got = c.execute("SELECT id, phone FROM public.customers").fetchall()
        assert 0 < len(got) <= 200 and not leaked(truth["secrets"], got)
        # No schema on the path: refused by maskgate (it cannot tell which customers is meant)
        # or by the server (no such relation), never read from a schema the proxy did not judge.
        with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedTable)):
            c.execute("SELECT id FROM customers")


def test_a_row_filter_cannot_be_hidden_by_a_with_query_or_parentheses(
    served: dict[str, Any], truth: dict[str, Any]
) -> None:
    with connect(served, VENDOR) as c:
        later = c.execute(
            "WITH a AS (SELECT id FROM customers), customers AS (SELECT 1 AS id) SELECT id FROM a"
        ).fetchall()
        nested = c.execute(
            "SELECT c.id FROM customers c, (WITH customers AS (SELECT 1 AS x) SELECT x FROM customers) s"
        ).fetchall()
        recursive = c.execute(
            "WITH RECURSIVE a AS (SELECT * FROM b), "
            "b AS (SELECT translate(phone, '0123456789', 'abcdefghij') AS x FROM customers) SELECT * FROM a"
        ).fetchall()
        parenthesized = c.execute(
            "SELECT c.id FROM call_records r JOIN (customers c JOIN accounts a ON a.customer_id = c.id) "
            "ON r.customer_id = c.id"
        ).fetchall()
    assert parenthesized and {r[0] for r in parenthesized} <= set(truth["branch12"])
    assert later and {r[0] for r in later} <= set(truth["branch12"])
    assert nested and {r[0] for r in nested} <= set(truth["branch12"])
    assert recursive and not leaked(truth["secrets"], recursive)


# ---------------------------------------------------------------------------------------------
# Item 4: names fold as the server folds them (property, against the server's own resolution)
# ---------------------------------------------------------------------------------------------

SAMPLE = [
    "SELECT id, phone FROM customers WHERE id = 3",
    "WITH PG_X AS (SELECT translate(phone, 'abc', 'xyz') m FROM customers) SELECT m FROM pg_x",
    "WITH pg_class AS (SELECT id, phone FROM customers) SELECT phone FROM PG_CLASS",
    "SELECT c.id, r.caller FROM customers c JOIN call_records r ON r.customer_id = c.id",
    "SELECT Customers.id FROM Customers WHERE Customers.branch_id = 12",
    "SELECT count(*) FROM call_records WHERE customer_id IN (SELECT id FROM customers)",
    "WITH x AS (SELECT id, phone FROM customers) SELECT upper(phone) FROM X",
    "SELECT a.balance FROM accounts a",
    "SELECT actor FROM audit_trail",
    "SELECT b.name FROM branches b",
]


def _name_tokens(sql: str) -> list[tuple[int, int, str]]:
    from sqlglot.tokens import TokenType

    from policies.sql.dialects import POSTGRES
    from policies.sql.parser import tokenize

    return [(t.start, t.end + 1, t.text) for t in tokenize(sql, POSTGRES) if t.token_type == TokenType.VAR]


@st.composite
def _respelled(draw: st.DrawFn) -> tuple[str, str]:
    sql = draw(st.sampled_from(SAMPLE))
    parts, last = [], 0
    for start, end, text in _name_tokens(sql):
        how = draw(st.sampled_from(["keep", "case", "quote", "other"]))
        if how == "case":
            flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
            text = "".join(ch.upper() if f else ch.lower() for ch, f in zip(text, flips, strict=True))
        elif how == "quote":
            text = f'"{text.lower()}"'
        elif how == "other":  # another name to the server: quoted with a capital letter
            text = f'"{text[0].upper()}{text[1:].lower()}"'
        parts += [sql[last:start], text]
        last = end
    parts.append(sql[last:])
    return sql, "".join(parts)


def _server_relations(crm: EmbeddedPostgres, sql: str) -> set[str] | None:
    """The relations the server resolves `sql` to (EXPLAIN VERBOSE as the DBA), or None."""
    with dba(crm) as c:
        try:
            (plan,) = c.execute(f"EXPLAIN (VERBOSE, FORMAT JSON) {sql}").fetchone()
        except psycopg.Error:
            return None
    out: set[str] = set()
    stack = [plan[0]["Plan"]]
    while stack:
        node = stack.pop()
        if "Relation Name" in node:
            out.add(f"{node['Schema']}.{node['Relation Name']}")
        stack.extend(node.get("Plans", []))
    return out


def _proxy_decision(served: dict[str, Any], sql: str) -> dict[str, Any]:
    """Send `sql` as the vendor and read the proxy's decision back from the audit log."""
    audit = Path(served["dir"]) / "audit.jsonl"
    w = Wire(served["port"])
    try:
        w.query(sql)
    finally:
        w.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in reversed(audit.read_text(encoding="utf-8").splitlines()):
            rec = json.loads(line)
            if rec.get("sql") == sql and rec.get("user") == VENDOR[0] and rec.get("decision"):
                return rec
        time.sleep(0.05)
    raise AssertionError(f"no audit record for {sql!r}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=_respelled())
def test_respelled_names_mean_to_the_proxy_what_they_mean_to_the_server(
    served: dict[str, Any], crm: EmbeddedPostgres, pair: tuple[str, str]
) -> None:
    original, variant = pair
    server = _server_relations(crm, variant)
    decided = _proxy_decision(served, variant)
    if server is None:
        return  # the server cannot run it (a name that is no object): nothing to compare
    if decided["decision"] == "allow" or decided["decision"] == "error":
        # Everything the server reads, the proxy judged (it names those relations upstream).
        assert server <= set(decided["tables"]), (variant, server, decided)
    if server == _server_relations(crm, original):
        # The same relations to the server: the same decision from the proxy.
        canonical = _proxy_decision(served, original)
        assert (decided["decision"], decided["reason"], sorted(decided["classes"])) == (
            canonical["decision"],
            canonical["reason"],
            sorted(canonical["classes"]),
        ), (variant, decided, canonical)


# ---------------------------------------------------------------------------------------------
# Item 8: row limits count records
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT json_agg(json_build_object('n', id, 'b', branch_id)) FROM customers",
        "SELECT string_agg(id::text, ',') FROM customers",
        "SELECT array_agg(id) OVER () FROM customers LIMIT 1",
        "SELECT to_json(ARRAY(SELECT id FROM customers))",
        "SELECT (SELECT jsonb_object_agg(id, branch_id) FROM customers)",
        "WITH RECURSIVE r(n, acc) AS (SELECT 0, ''::text UNION ALL SELECT n + 1, acc || ',' || "
        "(SELECT id::text FROM customers ORDER BY id OFFSET n LIMIT 1) FROM r WHERE n < 400) "
        "SELECT acc FROM r ORDER BY n DESC LIMIT 1",
    ],
)
def test_one_row_cannot_carry_more_records_than_the_row_limit(served: dict[str, Any], sql: str) -> None:
    with connect(served, VENDOR) as c:
        assert refused_by_maskgate(c, sql)


def test_catalog_collections_stay_unlimited(served: dict[str, Any]) -> None:
    with connect(served, VENDOR) as c:
        (names,) = c.execute("SELECT array_agg(relname) FROM pg_catalog.pg_class").fetchone()
    assert len(names) > 200


# ---------------------------------------------------------------------------------------------
# Item 9: the shape cache never reuses a decision for a literal that changes it
# ---------------------------------------------------------------------------------------------


def test_a_cached_set_config_decision_is_not_reused_for_another_setting(served: dict[str, Any]) -> None:
    sql = "SELECT set_config(name, 'replica', false) FROM pg_settings WHERE name = '{}'"
    with connect(served, VENDOR) as c:
        for name in ("application_name", "application_name", "statement_timeout", "lock_timeout"):
            # 'replica' is no valid value of a timeout: the server says so, which is fine here.
            with contextlib.suppress(psycopg.errors.DataError):
                c.execute(sql.format(name))
        assert refused_by_maskgate(c, sql.format("session_replication_role"))
        assert c.execute("SHOW session_replication_role").fetchone() == ("origin",)


# ---------------------------------------------------------------------------------------------
# Rendering: restricted roles' statements now reach the server as maskgate renders them
# ---------------------------------------------------------------------------------------------


def _rewritten_corpus() -> list[tuple[str, str]]:
    """(original, rewritten) for every allowed single-statement PostgreSQL fixture case whose SQL
    maskgate changes, decided with the fixture's own policy and schema."""
    import yaml

    from policies import Allow, Engine, Schema, load_policy
    from policies.cases import _role_for

    fixtures = Path(__file__).resolve().parents[1] / "policies" / "fixtures"
    out = []
    for path in sorted(fixtures.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        pol = doc["policy"]
        policy = load_policy([path.parent / p for p in pol] if isinstance(pol, list) else path.parent / pol)
        engine = Engine(policy, Schema.load(path.parent / doc["schema"]))
        for case in doc.get("cases") or []:
            if (
                case.get("dialect", "postgres") != "postgres"
                or case.get("search_path")
                or case.get("database")
            ):
                continue
            role = _role_for(policy, case)
            d = engine.decide(role, case["sql"]) if role else None
            if isinstance(d, Allow) and d.rewritten_sql and not d.statements:
                out.append((case["sql"], d.rewritten_sql))
    return out


def _outcome(conn: psycopg.Connection[Any], sql: str) -> tuple[str, frozenset[str]]:
    """How the server takes `sql` in a transaction that is rolled back: the SQLSTATE class of its
    error ('' if none) and, for a plannable statement, the relations it reads."""
    relations: set[str] = set()
    conn.execute("BEGIN")
    try:
        try:
            (plan,) = conn.execute(f"EXPLAIN (VERBOSE, FORMAT JSON) {sql}").fetchone()
            stack = [plan[0]["Plan"]]
            while stack:
                node = stack.pop()
                if "Relation Name" in node:
                    relations.add(f"{node['Schema']}.{node['Relation Name']}")
                stack.extend(node.get("Plans", []))
        except psycopg.errors.SyntaxError:
            conn.execute("ROLLBACK")
            conn.execute("BEGIN")
            if sql.upper().lstrip().startswith("COPY"):
                with conn.cursor().copy(sql) as copy:
                    for _ in copy:
                        pass
            else:
                conn.execute(sql)
        return "", frozenset(relations)
    except psycopg.Error as e:
        return (e.sqlstate or "?")[:2], frozenset()
    finally:
        conn.execute("ROLLBACK")
        conn.execute("DEALLOCATE ALL")  # SQL-level PREPARE outlives a rollback


def test_rewritten_sql_runs_like_the_original(crm: EmbeddedPostgres) -> None:
    """Every rewritten fixture statement is valid SQL to PostgreSQL, fails where the original
    fails, and reads at least the relations the original reads (row filters may add some)."""
    corpus = _rewritten_corpus()
    assert len(corpus) >= 150
    # No driver-side prepared statements: each statement's own PREPARE is deallocated after it.
    with psycopg.connect(
        crm.dsn("maskgate_svc", SVC_PW, "crm"), autocommit=True, prepare_threshold=None
    ) as c:
        for original, rewritten in corpus:
            before, after = _outcome(c, original), _outcome(c, rewritten)
            assert after[0] == before[0], (original, rewritten, before, after)
            assert before[1] <= after[1], (original, rewritten, before, after)
