"""Policy loading: exact file:line:col errors, hints, merging and revision stability."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import PolicyError, load_policy
from policies.names import TableName
from policies.passwords import scram_verifier, verify_password
from proxy.mysql.auth import native_hash

EXAMPLES = Path(__file__).parents[2] / "policies" / "examples"
PW = scram_verifier("pw", b"0123456789abcdef")


def _write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _errors(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    return exc.value.errors


def test_examples_load() -> None:
    demo = load_policy(EXAMPLES / "demo.yaml")
    assert set(demo.roles) == {"vendor", "service_desk", "dba"}
    assert demo.users["vendor_zhang"].role == "vendor"
    assert verify_password("vendor-pass", demo.users["vendor_zhang"].password)
    assert verify_password("desk-pass", demo.users["desk_li"].password)
    assert verify_password("dba-pass", demo.users["dba_wang"].password)
    demo_passwords = {"vendor_zhang": "vendor-pass", "desk_li": "desk-pass", "dba_wang": "dba-pass"}
    for user, password in demo_passwords.items():
        assert demo.users[user].mysql_password == native_hash(password)
    assert demo.roles["dba"].max_rows is None
    assert demo.roles["vendor"].max_rows == 200
    vendor = load_policy(EXAMPLES / "outsourced_vendor.yaml")
    assert vendor.users["vendor_ops"].mysql_password == native_hash("vendor-pass")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "version: 1\nroles:\n  r:\n    max_row: 5\n",
            ":4:5: unknown key `max_row` in role `r` (did you mean `max_rows`?)",
        ),
        (
            "version: 1\nroles:\n  r:\n    statements: [select, delet]\n",
            ":4:26: unknown statement kind `delet` (did you mean `delete`?)",
        ),
        (
            "version: 1\nroles:\n  r:\n    see: {mobile: maks}\n",
            ":4:19: unknown action `maks` (did you mean `mask`?)",
        ),
        (
            "version: 1\nroles:\n  r:\n    see: {mobil: mask}\n",
            ":4:11: unknown class `mobil` (did you mean `mobile`?)",
        ),
        ("version: 1\ncolumns:\n  crm.customers.phone: mobil\n", ":3:24: unknown class `mobil`"),
        ("version: 1\ncolumns:\n  crm.phone: mobile\n", ":3:3: bad pattern `crm.phone`"),
        ('version: 1\nroles:\n  r:\n    tables: ["crm.[x"]\n', ":4:14: bad pattern `crm.[x`"),
        (
            'version: 1\nroles:\n  r:\n    row_filters:\n      crm.t: "branch_id = = 1"\n',
            ":5:14: row filter `branch_id = = 1` is not a condition over the table's columns",
        ),
        (
            'version: 1\nroles:\n  r:\n    row_filters:\n      crm.t: "SELECT 1"\n',
            ":5:14: row filter `SELECT 1` is not a condition",
        ),
        (
            'version: 1\nroles:\n  r:\n    row_filters:\n      crm.t: "branch_id = 12; DROP TABLE t"\n',
            ":5:14: row filter `branch_id = 12; DROP TABLE t` must be one condition",
        ),
        ("version: 1\nroles:\n  r:\n    masked_predicates: sometimes\n", ":4:24: unknown masked_predicates"),
        ("version: 1\nroles:\n  r:\n    max_rows: -3\n", ":4:15: `max_rows` must be a positive integer"),
        (
            "version: 1\nroles:\n  r:\n    lookups_per_hour: lots\n",
            ":4:23: `lookups_per_hour` must be a whole number or `unlimited`",
        ),
        ('version: 1\nroles:\n  r:\n    hours: ["Mon-Fry 09:00-18:00"]\n', ":4:13: bad day `mon-fry`"),
        ("version: 1\nusers:\n  u: {role: nobody, password: x}\n", ":3:13: unknown role `nobody`"),
        (
            "version: 1\nroles: {r: {}}\nusers:\n  u: {role: r, password: plain}\n",
            ":4:26: user `u`: password must be",
        ),
        ("version: 2\n", ":1:10: unsupported version `2`"),
        ("roles: {}\n", ":1:1: missing `version: 1`"),
        ("version: 1\nrole: {}\n", ":2:1: unknown key `role` in the policy (did you mean `roles`?)"),
        ("version: 1\nroles:\n  r: {}\n  r: {}\n", ":4:3: duplicate key `r`"),
        ("version: 1\nroles: [\n", ":3:1: YAML syntax error"),
        ("version: 1\ntimezone: Mars/Base\n", ":2:11: unknown timezone `Mars/Base`"),
        (
            "version: 1\nroles:\n  r:\n    database_role: crm vendor\n",
            ":4:20: `database_role` must be a database role name",
        ),
        (
            "version: 1\nroles:\n  r:\n    database_role: [crm_vendor]\n",
            ":4:20: `database_role` must be a database role name",
        ),
        (
            f"version: 1\nroles:\n  r:\n    database_role: {'r' * 64}\n",
            ":4:20: `database_role` must be a database role name",
        ),
        (
            "version: 1\nroles:\n  r:\n    database_rol: crm_vendor\n",
            ":4:5: unknown key `database_rol` in role `r` (did you mean `database_role`?)",
        ),
    ],
)
def test_error_locations(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    errors = _errors(path)
    assert any(e.startswith(str(path)) and expected in e for e in errors), errors


def test_all_errors_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, "version: 1\nroles:\n  a: {max_row: 1}\n  b: {see: {mobile: nope}}\n")
    assert len(_errors(path)) == 2


def test_directory_merge_and_conflicts(tmp_path: Path) -> None:
    d = tmp_path / "pol"
    d.mkdir()
    _write(d, "version: 1\ncolumns: {crm.t.a: mobile}\nroles: {r: {tables: ['crm.*']}}\n", "a.yaml")
    _write(d, f"version: 1\nusers: {{u: {{role: r, password: '{PW}'}}}}\n", "b.yaml")
    policy = load_policy(d)
    assert policy.users["u"].role == "r"
    _write(d, "version: 1\nroles: {r: {}}\n", "c.yaml")
    errors = _errors(d)
    assert any("c.yaml:2:9: role `r` is defined twice" in e for e in errors), errors


def test_revision_ignores_formatting_but_not_content(tmp_path: Path) -> None:
    a = _write(tmp_path, "version: 1\nroles:\n  r: {max_rows: 5, statements: [select]}\n", "a.yaml")
    b = _write(
        tmp_path, "# comment\nversion: 1\nroles:\n  r:\n    statements: [select]\n    max_rows: 5\n", "b.yaml"
    )
    c = _write(tmp_path, "version: 1\nroles:\n  r: {max_rows: 6}\n", "c.yaml")
    ra, rb, rc = (load_policy(p).revision for p in (a, b, c))
    assert ra == rb != rc
    assert len(ra) == 12


def test_defaults(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, "version: 1\nroles:\n  r: {see: {mobile: clear}}\n"))
    r = policy.roles["r"]
    assert r.statements == {"select"} and r.max_rows == 1000 and r.masked_predicates == "deny"
    assert "mobile" not in r.detect and "bank_card" in r.detect
    assert r.action_for("id_card") == "mask"


def test_custom_classes(tmp_path: Path) -> None:
    text = (
        "version: 1\nclasses: [salary]\ncolumns: {hr.staff.pay: salary}\n"
        "roles: {r: {see: {salary: redact}}}\n"
    )
    policy = load_policy(_write(tmp_path, text))
    assert policy.roles["r"].action_for("salary") == "redact"


def test_a_lone_star_means_every_table(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text('version: 1\nroles:\n  r: {tables: ["*", "!crm.audit_trail"]}\n', encoding="utf-8")
    role = load_policy(p).roles["r"]
    for table in (TableName("crm", "public", "customers"), TableName("crm", "ops", "tickets")):
        assert role.table_allowed(table, "public")
    assert not role.table_allowed(TableName("crm", "public", "audit_trail"), "public")


def test_database_role(tmp_path: Path) -> None:
    plain = _write(tmp_path, "version: 1\nroles:\n  r: {}\n", "a.yaml")
    named = _write(tmp_path, "version: 1\nroles:\n  r: {database_role: crm_vendor}\n", "b.yaml")
    other = _write(tmp_path, "version: 1\nroles:\n  r: {database_role: crm_desk}\n", "c.yaml")
    assert load_policy(plain).roles["r"].database_role is None
    assert load_policy(named).roles["r"].database_role == "crm_vendor"
    # Which database role a role runs as is part of what the policy says: a new revision.
    assert len({load_policy(p).revision for p in (plain, named, other)}) == 3


def test_lookups_per_hour(tmp_path: Path) -> None:
    text = "version: 1\nroles:\n  a: {}\n  b: {lookups_per_hour: 20}\n  c: {lookups_per_hour: unlimited}\n"
    policy = load_policy(_write(tmp_path, text))
    assert policy.roles["a"].lookups_per_hour == 300
    assert policy.roles["b"].lookups_per_hour == 20
    assert policy.roles["c"].lookups_per_hour is None


# MariaDB: SELECT PASSWORD('secret');
NATIVE = "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"


def _user(tmp_path: Path, mysql_password: str) -> Path:
    head = f"version: 1\nroles: {{r: {{}}}}\nusers:\n  u:\n    role: r\n    password: '{PW}'\n"
    return _write(tmp_path, head + mysql_password)


def test_mysql_password_is_optional_and_stored_upper_case(tmp_path: Path) -> None:
    assert load_policy(_user(tmp_path, "")).users["u"].mysql_password is None
    policy = load_policy(_user(tmp_path, f"    mysql_password: '{NATIVE.lower()}'\n"))
    assert policy.users["u"].mysql_password == NATIVE


def test_mysql_password_counts_for_the_revision(tmp_path: Path) -> None:
    # Each load reads the file just written: one path, four contents.
    without = load_policy(_user(tmp_path, "")).revision
    upper = load_policy(_user(tmp_path, f"    mysql_password: '{NATIVE}'\n")).revision
    lower = load_policy(_user(tmp_path, f"    mysql_password: '{NATIVE.lower()}'\n")).revision
    other = load_policy(_user(tmp_path, f"    mysql_password: '{native_hash('other')}'\n")).revision
    assert without != upper == lower != other


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"'{NATIVE[1:]}'", "it does not start with `*`"),
        (f"'{NATIVE[:-1]}'", "it has 39 characters after `*`"),
        (f"'{NATIVE}0'", "it has 41 characters after `*`"),
        ("'*'", "it has 0 characters after `*`"),
        (f"'*{'G' * 40}'", "it has characters that are not hex digits"),
        (f"'*{'A' * 39} '", "it has characters that are not hex digits"),
        ("12345", "got int"),
        ("''", "it does not start with `*`"),
        ("'secret'", "it does not start with `*`"),
    ],
)
def test_mysql_password_errors(tmp_path: Path, value: str, expected: str) -> None:
    path = _user(tmp_path, f"    mysql_password: {value}\n")
    errors = _errors(path)
    prefix = f'{path}:7:21: user `u`: mysql_password must be MySQL\'s "*" + 40 hex digits'
    assert any(e.startswith(prefix) and expected in e for e in errors), errors


def test_an_unquoted_mysql_password_gets_a_hint(tmp_path: Path) -> None:
    path = _user(tmp_path, f"    mysql_password: {NATIVE}\n")
    errors = _errors(path)
    where = f"{path}:7:21: YAML syntax error"
    assert any(e.startswith(where) and "must be quoted" in e for e in errors), errors
