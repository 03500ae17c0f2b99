"""The proxy's picture never drifts from the server's (issue 9, item 3, engine side).

A restricted role's statements reach the server with every relation named by the schema the
engine resolved it to, so whatever the server's search_path says, it reads the relations that were
judged. Unrestricted roles' statements keep their names as written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import Allow, Block, Engine, Schema, load_policy
from policies.schema import Table

EXAMPLES = Path(__file__).parents[2] / "policies" / "examples"


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_policy(EXAMPLES / "demo.yaml"), Schema.load(EXAMPLES / "demo_schema.json"))


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
