"""The proxy's picture never drifts from the server's (issue 9, item 3, engine side).

A restricted role's statements reach the server with every relation named by the schema the
engine resolved it to, so whatever the server's search_path says, it reads the relations that were
judged. Unrestricted roles' statements keep their names as written.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from policies import Allow, Block, Engine, Schema, load_policy
from policies.schema import Table

EXAMPLES = Path(__file__).parents[2] / "policies" / "examples"


@pytest.fixture(scope="module")
def engine() -> Engine:
    # The demo's vendor without its database_role: with one, RESET ROLE and DISCARD are refused
    # (tests/policies/data/identity.yaml); here they are the settings changes being reported.
    policy = load_policy(EXAMPLES / "demo.yaml")
    vendor = replace(policy.roles["vendor"], database_role=None)
    policy = replace(policy, roles={**policy.roles, "vendor": vendor})
    return Engine(policy, Schema.load(EXAMPLES / "demo_schema.json"))


def _sql(engine: Engine, role: str, sql: str, search_path: tuple[str, ...] | None = None) -> str | None:
    d = engine.decide(role, sql, search_path=search_path)
    assert isinstance(d, Allow), d
    return d.rewritten_sql


@pytest.mark.parametrize(
    ("sql", "sent"),
    [
        (
            "SELECT id FROM call_records WHERE id = 1 LIMIT 5",
            "SELECT id FROM public.call_records WHERE id = 1 LIMIT 5",
        ),
        (
            "SELECT r.id, a.balance FROM call_records r JOIN accounts a "
            "ON a.customer_id = r.customer_id LIMIT 1",
            "SELECT r.id, a.balance FROM public.call_records AS r JOIN public.accounts AS a "
            "ON a.customer_id = r.customer_id LIMIT 1",
        ),
        ("TABLE call_records LIMIT 3", "SELECT * FROM public.call_records LIMIT 3"),
        ("SELECT relname FROM pg_class LIMIT 1", "SELECT relname FROM pg_catalog.pg_class LIMIT 1"),
        ("EXPLAIN SELECT id FROM call_records", "EXPLAIN SELECT id FROM public.call_records"),
        (
            "PREPARE p AS SELECT id FROM call_records WHERE id = $1",
            "PREPARE p AS SELECT id FROM public.call_records WHERE id = $1 LIMIT 201",
        ),
        (
            "LOCK TABLE call_records IN ACCESS SHARE MODE",
            "LOCK TABLE public.call_records IN ACCESS SHARE MODE",
        ),
        ("COPY call_records (id) TO STDOUT", "COPY (SELECT id FROM public.call_records LIMIT 201) TO STDOUT"),
        # a WITH query keeps its name; a FOR UPDATE OF names an alias of FROM, not a relation
        (
            "WITH x AS (SELECT id FROM branches) SELECT id FROM x LIMIT 2",
            "WITH x AS (SELECT id FROM public.branches) SELECT id FROM x LIMIT 2",
        ),
    ],
)
def test_restricted_statements_name_every_relation_by_its_schema(engine: Engine, sql: str, sent: str) -> None:
    assert _sql(engine, "vendor", sql) == sent


def test_the_resolved_schema_follows_the_search_path_the_proxy_knows(engine: Engine) -> None:
    # The server's own default ("$user", public): $user names no schema of the file.
    assert _sql(engine, "vendor", "SELECT id FROM branches LIMIT 1", ("$user", "public")) == (
        "SELECT id FROM public.branches LIMIT 1"
    )
    # information_schema first: `tables` is the catalog view there, and the server is told so.
    assert _sql(
        engine, "vendor", "SELECT table_name FROM tables LIMIT 1", ("information_schema", "public")
    ) == ("SELECT table_name FROM information_schema.tables LIMIT 1")


def test_writes_name_their_targets_and_sources(engine: Engine) -> None:
    assert _sql(engine, "service_desk", "UPDATE customers SET email = 'a@b' WHERE id = 1") == (
        "UPDATE public.customers SET email = 'a@b' WHERE id = 1"
    )
    assert _sql(
        engine,
        "service_desk",
        "WITH u AS (UPDATE customers SET email = 'x' WHERE id = 1 RETURNING id) SELECT id FROM u",
    ) == (
        "WITH u AS (UPDATE public.customers SET email = 'x' WHERE id = 1 RETURNING id) "
        "SELECT id FROM u LIMIT 51"
    )


def test_unrestricted_roles_keep_their_names_as_written(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(
        "version: 1\nroles:\n  admin: {statements: [all], tables: ['*.*'], max_rows: 10, detect: []}\n"
    )
    e = Engine(load_policy(p), Schema.load(EXAMPLES / "demo_schema.json"))
    assert _sql(e, "admin", "SELECT id FROM customers") == "SELECT id FROM customers LIMIT 11"
    assert _sql(e, "admin", "SELECT id FROM customers LIMIT 3") is None
    assert _sql(e, "admin", "UPDATE customers SET email = 'x' WHERE id = 1") is None


def test_schema_names_are_quoted_when_the_server_would_fold_them(tmp_path: Path) -> None:
    schema = Schema(
        "crm",
        tables={
            ("Sales", "orders"): Table("Sales", "orders", ("id",)),
            ("order", "items"): Table("order", "items", ("id",)),
        },
    )
    p = tmp_path / "p.yaml"
    p.write_text("version: 1\nroles:\n  r: {tables: ['*.*'], max_rows: 5}\n")
    e = Engine(load_policy(p), schema)
    assert _sql(e, "r", "SELECT id FROM orders", ("Sales",)) == 'SELECT id FROM "Sales".orders LIMIT 6'
    assert _sql(e, "r", "SELECT id FROM items", ("order",)) == 'SELECT id FROM "order".items LIMIT 6'


def test_temporary_tables_are_created_and_named_in_pg_temp(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(
        "version: 1\nroles:\n"
        "  r: {statements: [select, ddl, insert], tables: ['crm.*', 'pg_temp.*'], max_rows: 5}\n"
    )
    e = Engine(load_policy(p), Schema.load(EXAMPLES / "demo_schema.json"))
    assert _sql(e, "r", "CREATE TEMP TABLE t (a int)") == "CREATE TEMPORARY TABLE pg_temp.t (a INT)"
    assert _sql(e, "r", "SELECT id INTO TEMP t2 FROM branches") == (
        "SELECT id INTO TEMPORARY pg_temp.t2 FROM public.branches"
    )
    assert _sql(e, "r", "CREATE TABLE t3 (a int REFERENCES branches (id))") == (
        "CREATE TABLE public.t3 (a INT REFERENCES public.branches (id))"
    )


def test_for_update_of_keeps_its_alias(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("version: 1\nroles:\n  r: {statements: [select, update], tables: ['*.*'], max_rows: 5}\n")
    e = Engine(load_policy(p), Schema.load(EXAMPLES / "demo_schema.json"))
    assert _sql(e, "r", "SELECT b.id FROM branches b WHERE b.id = 1 FOR UPDATE OF b") == (
        "SELECT b.id FROM public.branches AS b WHERE b.id = 1 LIMIT 6 FOR UPDATE OF b"
    )


def test_a_with_query_the_server_does_not_see_is_refused_rather_than_guessed(engine: Engine) -> None:
    d = engine.decide(
        "vendor", "WITH RECURSIVE a AS (SELECT id FROM b), b AS (SELECT id FROM a) SELECT id FROM a"
    )
    assert isinstance(d, Block) and d.reason == "unparsable"


# --- settings and transactions the proxy follows (Allow.settings, Allow.transaction) -------------


def _allow(engine: Engine, role: str, sql: str, search_path: tuple[str, ...] | None = None) -> Allow:
    d = engine.decide(role, sql, search_path=search_path)
    assert isinstance(d, Allow), d
    return d


@pytest.mark.parametrize(
    ("role", "sql", "settings"),
    [
        ("vendor", "SET search_path TO sales, public", [("search_path", ("sales", "public"), False)]),
        ("vendor", 'SET LOCAL search_path = "Sales"', [("search_path", ("Sales",), True)]),
        ("vendor", "SET SCHEMA 'brokerage'", [("search_path", ("brokerage",), False)]),
        ("vendor", "SET search_path TO DEFAULT", [("search_path", None, False)]),
        ("vendor", "RESET search_path", [("search_path", None, False)]),
        ("vendor", "SET statement_timeout = 0", [("statement_timeout", ("0",), False)]),
        ("vendor", "SET TIME ZONE 'UTC'", [("timezone", ("UTC",), False)]),
        ("vendor", "SET TIME ZONE LOCAL", [("timezone", None, False)]),
        ("vendor", "SET NAMES 'UTF8'", [("client_encoding", ("UTF8",), False)]),
        ("vendor", "RESET ALL", [("*", None, False)]),
        (
            "vendor",
            "DISCARD ALL",
            [("*", None, False), ("role", None, False), ("session_authorization", None, False)],
        ),
        ("vendor", "DISCARD PLANS", []),
        ("vendor", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", []),
        ("vendor", "RESET ROLE", [("role", None, False)]),
        ("dba", "SET ROLE Auditor", [("role", ("auditor",), False)]),
        ("dba", 'SET LOCAL ROLE "Auditor"', [("role", ("Auditor",), True)]),
        ("dba", "SET ROLE NONE", [("role", None, False)]),
        ("dba", "SET SESSION AUTHORIZATION 'Bob'", [("session_authorization", ("Bob",), False)]),
        ("dba", "SET SESSION AUTHORIZATION DEFAULT", [("session_authorization", None, False)]),
        # set_config in the forms understood as a SET
        ("vendor", "SELECT pg_catalog.set_config('search_path', '', false)", [("search_path", (), False)]),
        (
            "vendor",
            "SELECT set_config('search_path', 'Sales, \"Sales\"', true)",
            [("search_path", ("sales", "Sales"), True)],
        ),
        (
            "vendor",
            "SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings "
            "WHERE name = 'restrict_nonsystem_relation_kind'",
            [("restrict_nonsystem_relation_kind", ("view, foreign-table",), False)],
        ),
        ("vendor", "EXPLAIN SELECT set_config('search_path', '', false)", []),
        (
            "vendor",
            "EXPLAIN ANALYZE SELECT set_config('search_path', '', false)",
            [("search_path", (), False)],
        ),
    ],
)
def test_settings_changes_are_reported(
    engine: Engine, role: str, sql: str, settings: list[tuple[str, tuple[str, ...] | None, bool]]
) -> None:
    d = _allow(engine, role, sql)
    assert [(s.name, s.value, s.local) for s in d.settings] == settings
    path = [s.value for s in d.settings if s.name == "search_path"]
    if path:  # Allow.search_path as before: the path the session has after it
        assert d.search_path == (path[0] if path[0] is not None else ("public",))


@pytest.mark.parametrize(
    ("role", "sql", "kind", "name"),
    [
        ("vendor", "BEGIN", "begin", ""),
        ("vendor", "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", "begin", ""),
        ("vendor", "START TRANSACTION READ ONLY", "begin", ""),
        ("vendor", "COMMIT", "commit", ""),
        ("vendor", "END", "commit", ""),
        ("vendor", "COMMIT AND CHAIN", "commit", ""),
        ("vendor", "ROLLBACK", "rollback", ""),
        ("vendor", "ABORT", "rollback", ""),
        ("vendor", "SAVEPOINT a", "savepoint", "a"),
        ("vendor", 'SAVEPOINT "A"', "savepoint", "A"),
        ("vendor", "RELEASE SAVEPOINT A", "release", "a"),
        ("vendor", "RELEASE a", "release", "a"),
        ("vendor", "ROLLBACK TO SAVEPOINT a", "rollback_to", "a"),
        ("vendor", "ROLLBACK TO a", "rollback_to", "a"),
        ("dba", "PREPARE TRANSACTION 'tx1'", "prepare", ""),
    ],
)
def test_transaction_control_is_reported(engine: Engine, role: str, sql: str, kind: str, name: str) -> None:
    d = _allow(engine, role, sql)
    assert d.transaction is not None and (d.transaction.kind, d.transaction.name) == (kind, name)


def test_other_statements_report_no_transaction_or_settings(engine: Engine) -> None:
    for role, sql in [
        ("dba", "COMMIT PREPARED 'tx1'"),
        ("vendor", "SELECT 1"),
        ("vendor", "SHOW search_path"),
    ]:
        d = _allow(engine, role, sql)
        assert d.transaction is None and d.settings == ()


def test_each_part_of_a_string_reports_its_own_effects(engine: Engine) -> None:
    d = _allow(
        engine, "vendor", "BEGIN; SET LOCAL search_path = information_schema; SAVEPOINT s; COMMIT; SELECT 1"
    )
    parts = d.parts()
    assert [p.transaction.kind if p.transaction else None for p in parts] == [
        "begin",
        None,
        "savepoint",
        "commit",
        None,
    ]
    assert parts[1].settings[0].local and parts[1].search_path == ("information_schema",)
    assert d.search_path == ("public",)  # SET LOCAL ended with the transaction


@pytest.mark.parametrize(
    ("sql", "reads"),
    [
        # The server rolls the SET back: the SELECT reads public.customers, masked and filtered.
        ("BEGIN; SET search_path = information_schema; ROLLBACK; SELECT id, phone FROM customers", "public"),
        ("SET search_path = information_schema; ROLLBACK; SELECT id, phone FROM customers", "public"),
        (
            "BEGIN; SAVEPOINT a; SET search_path = information_schema; ROLLBACK TO a; "
            "SELECT id, phone FROM customers",
            "public",
        ),
        (
            "BEGIN; SET search_path = information_schema; SAVEPOINT a; RELEASE a; COMMIT; "
            "SELECT id, phone FROM customers",
            "information_schema",
        ),
        (
            "BEGIN; SET LOCAL search_path = information_schema; COMMIT; SELECT id, phone FROM customers",
            "public",
        ),
        (
            "SELECT set_config('search_path', 'information_schema', true); SELECT id, phone FROM customers",
            "information_schema",
        ),
        ("SET search_path = information_schema; RESET ALL; SELECT id, phone FROM customers", "public"),
        ("SET search_path = information_schema; DISCARD ALL; SELECT id, phone FROM customers", "public"),
    ],
)
def test_later_statements_of_a_string_resolve_under_the_path_the_server_has(
    engine: Engine, sql: str, reads: str
) -> None:
    last = _allow(engine, "vendor", sql).parts()[-1]
    assert last.tables == (f"{reads}.customers",)
    if reads == "public":
        assert [c.action for c in last.columns] == ["clear", "mask"] and last.row_limit == 200
        assert last.rewritten_sql is not None and "branch_id = 12" in last.rewritten_sql
    else:  # the proxy decided information_schema.customers, and says so upstream: no such relation
        assert last.rewritten_sql == "SELECT id, phone FROM information_schema.customers"


def test_a_set_config_earlier_in_the_string_moves_the_path(engine: Engine) -> None:
    # The session is on information_schema; the string moves the server back to public, where
    # customers is classified: the SELECT is judged there, not as a catalog read.
    d = _allow(
        engine,
        "vendor",
        "SELECT set_config('search_path', 'public', false); SELECT id, phone FROM customers",
        ("information_schema",),
    )
    last = d.parts()[-1]
    assert last.tables == ("public.customers",) and [c.action for c in last.columns] == ["clear", "mask"]
    assert d.search_path == ("public",)


def test_mysql_use_moves_later_statements_of_a_string(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("version: 1\nroles:\n  r: {tables: ['*.*'], max_rows: 5}\n")
    schema = Schema(
        "crm",
        "mysql",
        {("crm", "t"): Table("crm", "t", ("id",)), ("other", "t"): Table("other", "t", ("id",))},
    )
    d = Engine(load_policy(p), schema).decide(
        "r", "USE other; SELECT id FROM t", dialect="mysql", database="crm"
    )
    assert isinstance(d, Allow)
    assert d.parts()[1].tables == ("other.t",) and d.search_path == ("other",)
    assert d.rewritten_sql == "USE other; SELECT id FROM `other`.t LIMIT 6"


def test_an_empty_search_path_names_nothing_but_the_catalog(engine: Engine) -> None:
    """pg_dump's `set_config('search_path', '', false)`: the server searches pg_catalog only,
    so an unqualified user table is no relation (and the database is no schema)."""
    assert _sql(engine, "vendor", "SELECT relname FROM pg_class LIMIT 1", ()) == (
        "SELECT relname FROM pg_catalog.pg_class LIMIT 1"
    )
    sent = _sql(engine, "vendor", "SELECT id FROM customers LIMIT 1", ())
    assert sent == "SELECT id FROM (SELECT * FROM customers WHERE (branch_id = 12)) AS customers LIMIT 1"
