"""`maskgate check | explain | test | passwd` through proxy.cli.main, and the schema file form."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from policies import Schema
from policies.passwords import verify_password
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
        "discovered": False,
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


def test_explain_shows_discovered_classes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = json.loads(Path(SCHEMA).read_text())
    doc["tables"].append({"schema": "public", "name": "tickets", "columns": ["id", "remark"]})
    doc["discovered"] = [{"schema": "public", "table": "tickets", "column": "remark", "class": "mobile"}]
    saved = tmp_path / "s.json"
    saved.write_text(json.dumps(doc))
    sql = "SELECT id, remark, reverse(remark) AS r FROM tickets"
    args = ["explain", "--policy", DEMO, "--schema", str(saved), sql]
    assert main([*args[:-1], "--user", "vendor_zhang", "--format", "table", sql]) == 0
    out = capsys.readouterr().out
    assert "col 2 remark ← public.tickets.remark [mobile, discovered] → mask" in out
    assert "col 3 r ← f(public.tickets.remark) [mobile, discovered] → redact" in out
    assert main([*args[:-1], "--user", "vendor_zhang", sql]) == 0
    cols = json.loads(capsys.readouterr().out)["columns"]
    assert [(c["class"], c["discovered"]) for c in cols] == [
        (None, False),
        ("mobile", True),
        ("mobile", True),
    ]
    # a role with `all` reads unclassified columns as they are
    assert main([*args[:-1], "--user", "dba_wang", sql]) == 0
    cols = json.loads(capsys.readouterr().out)["columns"]
    assert [(c["class"], c["action"], c["discovered"]) for c in cols][1] == (None, "clear", False)
