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


def test_passwd_mysql(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("secret\n"))
    assert main(["passwd", "--mysql"]) == 0
    # MariaDB: SELECT PASSWORD('secret');
    assert capsys.readouterr().out == "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7\n"


def test_passwd_mysql_refuses_an_empty_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["passwd", "--mysql"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "empty password" in out.err


def test_passwd_mysql_on_a_terminal_asks_twice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["secret", "secret", "secret", "other"])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["passwd", "--mysql"]) == 0
    assert capsys.readouterr().out == "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7\n"
    assert main(["passwd", "--mysql"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "do not match" in out.err


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


def test_database_role_warnings() -> None:
    from dataclasses import replace

    from policies import load_policy
    from policies.schema import DatabaseRole
    from proxy.commands.policy import database_roles, role_warnings

    policy = load_policy(DEMO)
    desk = replace(policy.roles["service_desk"], statements=frozenset({"select", "update"}))
    policy = replace(policy, roles={**policy.roles, "service_desk": desk})
    assert database_roles(policy) == {"service_desk": "crm_desk", "vendor": "crm_vendor"}  # dba: `all`
    rights = {
        "crm_vendor": DatabaseRole(
            "crm_vendor", writes=(("UPDATE", "public.customers"), ("USAGE", "public.s"), ("CREATE", "public"))
        ),
        "crm_desk": DatabaseRole("crm_desk", writes=(("UPDATE", "public.customers"), ("USAGE", "public.s"))),
        "crm_root": DatabaseRole("crm_root", superuser=True),
    }
    out = role_warnings(policy, {"vendor": "crm_vendor", "service_desk": "crm_desk"}, rights)
    assert out == [
        "role vendor (statements: select) runs as database role crm_vendor, which holds CREATE on "
        "public: revoke it",
        "role vendor (statements: select) runs as database role crm_vendor, which holds UPDATE on "
        "public.customers: revoke it",
        "role vendor (statements: select) runs as database role crm_vendor, which holds USAGE on "
        "public.s: revoke it",
    ]  # the desk may update, and nextval needs update: nothing to say about crm_desk
    out = role_warnings(policy, {"vendor": "crm_root", "service_desk": "crm_gone"}, rights)
    assert "role vendor runs as database role crm_root, a superuser" in out[0]
    assert out[1] == "role service_desk runs as database role crm_gone, which does not exist"
    many = DatabaseRole("crm_vendor", writes=tuple(("DELETE", f"public.t{i}") for i in range(8)))
    (line,) = role_warnings(policy, {"vendor": "crm_vendor"}, {"crm_vendor": many})
    assert line.endswith("public.t4 and 3 more: revoke it")
