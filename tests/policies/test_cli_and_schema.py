"""`maskgate check | explain | test | passwd` through proxy.cli.main, and the schema loader
against a real PostgreSQL."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest

from policies import Engine, Schema, load_policy
from policies.names import TableName
from policies.passwords import verify_password
from policies.sql.dialects import POSTGRES
from proxy.cli import main

EXAMPLES = Path(__file__).parents[2] / "policies" / "examples"
DEMO = str(EXAMPLES / "demo.yaml")
SCHEMA = str(EXAMPLES / "demo_schema.json")


def test_check_ok_with_schema_warnings(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["check", DEMO, "--schema", SCHEMA]) == 0
    out = capsys.readouterr().out
    assert "ok: revision" in out
    assert "view public.customer_contacts exposes classified columns (mobile, person_name)" in out
    pol = tmp_path / "p.yaml"
    pol.write_text("version: 1\ncolumns: {crm.customers.fax: mobile}\n")
    assert main(["check", str(pol), "--schema", SCHEMA]) == 0
    assert "crm.customers.fax (mobile): column does not exist" in capsys.readouterr().out


def test_check_errors_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pol = tmp_path / "bad.yaml"
    pol.write_text("version: 1\nroles:\n  r:\n    max_row: 5\n")
    assert main(["check", str(pol)]) == 1
    err = capsys.readouterr().err
    assert f"{pol}:4:5: unknown key `max_row` in role `r` (did you mean `max_rows`?)" in err


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    sql = "SELECT id, upper(phone) AS p FROM customers"
    assert main(["explain", "--policy", DEMO, "--user", "vendor_zhang", "--schema", SCHEMA, sql]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["decision"] == "allow" and doc["max_rows"] == 200
    assert doc["columns"][1] == {
        "name": "p",
        "class": "mobile",
        "action": "redact",
        "sources": ["public.customers.phone"],
        "derived": True,
    }
    assert doc["rewritten_sql"].endswith("LIMIT 201")


def test_explain_block_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    sql = "SELECT id FROM customers WHERE phone LIKE '1%'"
    assert main(["explain", "--policy", DEMO, "--user", "vendor_zhang", "--schema", SCHEMA, sql]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["decision"], doc["reason"]) == ("block", "masked_predicate")
    sql = "SELECT id, upper(phone) FROM customers"
    argv = [
        "explain",
        "--policy",
        DEMO,
        "--user",
        "vendor_zhang",
        "--schema",
        SCHEMA,
        "--format",
        "table",
        sql,
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "col 2 _col_1 ← f(public.customers.phone) [mobile] → redact" in out


def test_test_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["test", str(EXAMPLES / "demo_cases.yaml")]) == 0
    assert "0 failed" in capsys.readouterr().out
    failing = tmp_path / "cases.yaml"
    failing.write_text(
        f"policy: {DEMO}\nschema: {SCHEMA}\ncases:\n"
        "  - {user: vendor_zhang, sql: 'SELECT phone FROM customers', expect: allow,"
        " masked: {phone: clear}}\n"
    )
    assert main(["test", str(failing)]) == 1
    assert "column phone: expected clear, got mask" in capsys.readouterr().out
    empty = tmp_path / "empty.yaml"
    empty.write_text(f"policy: {DEMO}\ncases: []\n")
    assert main(["test", str(empty)]) == 1


def test_passwd(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    assert main(["passwd"]) == 0
    verifier = capsys.readouterr().out.strip()
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert verify_password("s3cret", verifier) and not verify_password("other", verifier)


def test_schema_save_load_roundtrip(tmp_path: Path) -> None:
    s = Schema.load(SCHEMA)
    s.save(tmp_path / "s.json")
    assert Schema.load(tmp_path / "s.json") == s


def test_schema_from_postgres(embedded_pg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
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
        CREATE ROLE schema_reader LOGIN PASSWORD 'reader-pass';
        GRANT USAGE ON SCHEMA ops TO schema_reader;
        """,
        "policy_crm",
    )
    schema = Schema.from_postgres(embedded_pg.dsn("schema_reader", "reader-pass", "policy_crm"))
    assert schema.database == "policy_crm"
    assert schema.tables[("public", "customers")].columns == ("id", "name", "phone", "bank_card")
    assert schema.tables[("ops", "tickets")].columns == ("id", "customer_id", "body")
    view = schema.tables[("public", "contacts")]
    assert view.is_view and view.columns == ("id", "name", "phone")
    assert ("public", "phone_of") in schema.functions
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
