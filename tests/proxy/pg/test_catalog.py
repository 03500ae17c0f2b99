"""The live-PostgreSQL schema loader against a real PostgreSQL, and `--schema DSN` in the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from policies import Engine, Schema, load_policy
from policies.names import TableName
from policies.sql.dialects import POSTGRES
from proxy.cli import main
from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.pg import catalog

DEMO = str(Path(__file__).parents[3] / "policies" / "examples" / "demo.yaml")


@pytest.fixture(scope="module")
def dsn(embedded_pg: EmbeddedPostgres) -> str:
    embedded_pg.psql("DROP DATABASE IF EXISTS policy_crm; CREATE DATABASE policy_crm;")
    embedded_pg.psql(
        """
        CREATE TABLE customers (id int PRIMARY KEY, name text, phone text, bank_card text, branch_id int);
        CREATE SCHEMA ops;
        CREATE TABLE ops.tickets (id int, customer_id int, body text);
        CREATE VIEW contacts AS SELECT id, upper(name) AS name, phone FROM customers;
        CREATE FUNCTION phone_of(i int) RETURNS text LANGUAGE plpgsql AS
          $$ BEGIN RETURN (SELECT phone FROM customers WHERE id = i); END $$;
        ALTER TABLE customers DROP COLUMN branch_id;
        DROP ROLE IF EXISTS schema_reader;
        CREATE ROLE schema_reader LOGIN PASSWORD 'reader-pass';
        GRANT USAGE ON SCHEMA ops TO schema_reader;
        """,
        "policy_crm",
    )
    return embedded_pg.dsn("schema_reader", "reader-pass", "policy_crm")


def test_schema_from_postgres(dsn: str, tmp_path: Path) -> None:
    schema = catalog.load_schema(dsn)
    assert schema.database == "policy_crm"
    assert schema.tables[("public", "customers")].columns == ("id", "name", "phone", "bank_card")
    assert schema.tables[("ops", "tickets")].columns == ("id", "customer_id", "body")
    view = schema.tables[("public", "contacts")]
    assert view.is_view and view.columns == ("id", "name", "phone")
    assert ("public", "phone_of") in schema.functions
    # every function's volatility, the catalog's own included, and the classified catalog views
    assert schema.function_volatility("public", "phone_of") == "volatile"
    assert schema.function_volatility("pg_catalog", "upper") == "immutable"
    assert schema.function_volatility("pg_catalog", "txid_current") == "stable"
    activity = schema.tables[("pg_catalog", "pg_stat_activity")]
    assert "query" in activity.columns and not activity.is_view
    assert "most_common_vals" in schema.tables[("pg_catalog", "pg_stats")].columns
    schema.save(tmp_path / "live.json")
    assert Schema.load(tmp_path / "live.json") == schema

    policy = load_policy(DEMO)
    engine = Engine(policy, schema)
    # The vendor's row filter on customers cannot follow a view over it: refused.
    assert engine.decide("vendor", "SELECT * FROM contacts", database="crm").reason == "table_denied"
    unfiltered = replace(policy.roles["vendor"], row_filters=())
    engine = Engine(replace(policy, roles={**policy.roles, "vendor": unfiltered}), schema)
    d = engine.decide("vendor", "SELECT * FROM contacts", database="crm")
    assert [(c.name, c.action) for c in d.columns] == [("id", "clear"), ("name", "redact"), ("phone", "mask")]
    assert engine.decide("vendor", "SELECT phone_of(1)", database="crm").reason == "function_denied"
    outs = engine._analyzer(POSTGRES, None, "crm").view_outputs(TableName("crm", "public", "contacts"))
    assert outs is not None and len(outs) == 3


def test_the_built_in_function_table_matches_the_server(dsn: str) -> None:
    """policies/sql/postgres_functions.py stands in for schemas saved without function data; it
    must say what this server's catalog says. When the server is upgraded, regenerate it:
    `python -m proxy.pg.catalog DSN > policies/sql/postgres_functions.py`."""
    live = catalog.load_schema(dsn).volatility or {}
    in_catalog = {k: v for k, v in live.items() if k[0] in POSTGRES.catalog_schemas}
    assert in_catalog == dict(POSTGRES.builtin_functions())  # type: ignore[misc]


def test_extension_views_are_read_without_their_definition(embedded_pg: EmbeddedPostgres, dsn: str) -> None:
    """An extension's view is built over its C functions: lineage stops at the view, whose
    columns the dialect facts classify by name (pg_stat_statements.query)."""
    embedded_pg.psql("CREATE EXTENSION IF NOT EXISTS pg_buffercache", "policy_crm")
    try:
        view = catalog.load_schema(dsn).tables[("public", "pg_buffercache")]
        assert view.kind == "view" and view.definition is None and "bufferid" in view.columns
        assert catalog.load_schema(dsn).tables[("public", "contacts")].definition  # not an extension's
    finally:
        embedded_pg.psql("DROP EXTENSION pg_buffercache", "policy_crm")


def test_an_open_connection_is_read_and_left_open(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn:
        assert ("ops", "tickets") in catalog.load_schema(conn).tables
        assert not conn.closed


def test_dsn_or_file(tmp_path: Path) -> None:
    assert catalog.is_dsn("postgresql://u@h/db") and catalog.is_dsn("postgres://h/db")
    assert catalog.is_dsn("host=127.0.0.1 dbname=crm")
    assert not catalog.is_dsn(str(tmp_path / "schema.json"))
    odd = tmp_path / "a=b.json"  # a file whose name holds `=` is still a file
    odd.write_text("{}")
    assert not catalog.is_dsn(str(odd))


def test_cli_reads_a_live_schema_from_a_dsn(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    sql = "SELECT * FROM contacts"
    assert main(["explain", "--policy", DEMO, "--user", "vendor_zhang", "--schema", dsn, sql]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "table_denied"  # the view is known
    assert main(["check", DEMO, "--schema", dsn]) == 0
    # The live database is `policy_crm`, so the demo's `crm.*` classifications match nothing there.
    assert "crm.customers.phone (mobile): column does not exist" in capsys.readouterr().out


def test_cli_test_reads_a_live_schema_from_a_dsn(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        f"policy: {DEMO}\ncases:\n"
        "  - {user: vendor_zhang, sql: 'SELECT phone_of(1)', expect: block, reason: function_denied}\n"
    )
    assert main(["test", str(cases), "--schema", dsn]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out


@pytest.fixture(scope="module")
def database_roles(embedded_pg: EmbeddedPostgres, dsn: str) -> dict[str, object]:
    embedded_pg.psql(
        """
        DROP ROLE IF EXISTS crm_reader; DROP ROLE IF EXISTS crm_writer; DROP ROLE IF EXISTS crm_root;
        CREATE ROLE crm_reader; GRANT SELECT ON customers TO crm_reader;
        CREATE ROLE crm_writer BYPASSRLS;
        GRANT SELECT, DELETE ON customers TO crm_writer;
        GRANT UPDATE (name) ON customers TO crm_writer;
        GRANT TRUNCATE ON ops.tickets TO crm_writer;
        CREATE SEQUENCE ops.ticket_no; GRANT USAGE ON SEQUENCE ops.ticket_no TO crm_writer;
        GRANT CREATE ON SCHEMA ops TO crm_writer;
        CREATE ROLE crm_root SUPERUSER;
        """,
        "policy_crm",
    )
    return catalog.load_database_roles(dsn, ["crm_reader", "crm_writer", "crm_root", "crm_nobody"])


def test_database_roles_and_their_writes(database_roles: dict[str, object]) -> None:
    from policies.schema import DatabaseRole

    assert database_roles["crm_reader"] == DatabaseRole("crm_reader")
    writer = database_roles["crm_writer"]
    assert isinstance(writer, DatabaseRole) and writer.bypass_rls and not writer.superuser
    assert set(writer.writes) == {
        ("DELETE", "public.customers"),
        ("UPDATE", "public.customers"),  # a column grant counts
        ("TRUNCATE", "ops.tickets"),
        ("USAGE", "ops.ticket_no"),  # nextval
        ("CREATE", "ops"),
    }
    assert database_roles["crm_root"].superuser  # type: ignore[attr-defined]
    assert not database_roles["crm_nobody"].exists  # type: ignore[attr-defined]


def test_check_warns_about_database_roles(
    dsn: str, database_roles: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A role without a database_role runs upstream as the service account.
    text = "\n".join(line for line in Path(DEMO).read_text().splitlines() if "database_role:" not in line)
    policy = tmp_path / "policy.yaml"
    policy.write_text(text + "\n")
    main(["check", str(policy), "--schema", dsn])
    out = capsys.readouterr().out
    assert "role vendor has no database_role" in out and "role dba has no" not in out


def test_check_warns_about_a_policy_database_role(
    dsn: str, database_roles: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = Path(DEMO).read_text()
    text = text.replace("database_role: crm_vendor", "database_role: crm_writer")
    text = text.replace("database_role: crm_desk", "database_role: crm_root")
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    main(["check", str(policy), "--schema", dsn])
    out = capsys.readouterr().out
    assert (
        "role vendor (statements: select) runs as database role crm_writer, which holds DELETE on "
        "public.customers: revoke it"
    ) in out
    assert "role service_desk runs as database role crm_root, a superuser" in out
