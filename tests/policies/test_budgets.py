"""Policy side of per-person budgets: `roles.R.budgets`, top-level `customer_key`, their
errors (file:line:col) and their part in the revision."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import PolicyError, load_policy
from policies.model import RoleBudgets
from policies.names import ColumnName, TableName


def _write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _errors(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    return exc.value.errors


def test_budgets_and_customer_key_load(tmp_path: Path) -> None:
    text = (
        "version: 1\n"
        "customer_key: crm.customers.id\n"
        "roles:\n"
        "  desk:\n"
        "    budgets: {distinct_customers_per_day: 500, rows_per_hour: 20000}\n"
        "  rows_only:\n"
        "    budgets: {rows_per_hour: 10}\n"
        "  none: {}\n"
    )
    policy = load_policy(_write(tmp_path, text))
    assert policy.customer_key == "crm.customers.id"
    assert policy.roles["desk"].budgets == RoleBudgets(rows_per_hour=20000, distinct_customers_per_day=500)
    assert policy.roles["rows_only"].budgets == RoleBudgets(rows_per_hour=10)
    assert policy.roles["rows_only"].budgets.items() == (("rows_per_hour", 10),)
    assert policy.roles["none"].budgets is None
    customers = TableName("crm", "public", "customers")
    # Matched as column classes are: database.table.column names schema public in database crm.
    assert policy.is_customer_key(ColumnName(customers, "ID"), "public")
    assert not policy.is_customer_key(ColumnName(customers, "phone"), "public")
    assert not policy.is_customer_key(ColumnName(TableName("crm", "public", "calls"), "id"), "public")


def test_without_customer_key(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, "version: 1\nroles: {r: {}}\n"))
    assert policy.customer_key is None
    assert not policy.is_customer_key(ColumnName(TableName("crm", "public", "customers"), "id"), "public")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\ncustomer_key: crm.customers\n", ":2:15: bad pattern `crm.customers`"),
        ("version: 1\ncustomer_key: crm.customers.*\n", ":2:15: `customer_key` must name one column"),
        ("version: 1\ncustomer_key: [crm.customers.id]\n", ":2:15: `customer_key` must name one column"),
        ("version: 1\nroles:\n  r:\n    budgets: 500\n", ":4:14: `budgets` must map a budget"),
        ("version: 1\nroles:\n  r:\n    budgets: {}\n", ":4:14: `budgets` must map a budget"),
        (
            "version: 1\nroles:\n  r:\n    budgets: {rows_per_hour: 0}\n",
            ":4:30: `rows_per_hour` must be a positive whole number, got `0`",
        ),
        (
            "version: 1\nroles:\n  r:\n    budgets: {rows_per_hour: lots}\n",
            ":4:30: `rows_per_hour` must be a positive whole number, got `lots`",
        ),
        (
            "version: 1\nroles:\n  r:\n    budgets:\n      distinct_customers_per_day: true\n",
            ":5:35: `distinct_customers_per_day` must be a positive whole number",
        ),
        (
            "version: 1\nroles:\n  r:\n    budgets: {rows_per_day: 5}\n",
            ":4:15: unknown key `rows_per_day` in `budgets` (did you mean `rows_per_hour`?)",
        ),
        (
            "version: 1\nroles:\n  r:\n    budget: {rows_per_hour: 5}\n",
            ":4:5: unknown key `budget` in role `r` (did you mean `budgets`?)",
        ),
    ],
)
def test_errors_are_located(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    errors = _errors(path)
    assert any(e.startswith(str(path)) and expected in e for e in errors), errors


def test_one_customer_key_across_merged_files(tmp_path: Path) -> None:
    d = tmp_path / "pol"
    d.mkdir()
    _write(d, "version: 1\ncustomer_key: crm.customers.id\n", "a.yaml")
    _write(d, "version: 1\ncustomer_key: CRM.customers.ID\n", "b.yaml")  # the same column
    assert load_policy(d).customer_key == "crm.customers.id"
    _write(d, "version: 1\ncustomer_key: crm.accounts.id\n", "c.yaml")
    errors = _errors(d)
    assert any(
        "c.yaml:2:15: `customer_key` `crm.accounts.id` conflicts with `crm.customers.id`" in e for e in errors
    )


def test_budgets_and_customer_key_are_part_of_the_revision(tmp_path: Path) -> None:
    texts = [
        "version: 1\nroles:\n  r: {}\n",
        "version: 1\nroles:\n  r: {budgets: {rows_per_hour: 10}}\n",
        "version: 1\nroles:\n  r: {budgets: {rows_per_hour: 11}}\n",
        "version: 1\nroles:\n  r: {budgets: {rows_per_hour: 11, distinct_customers_per_day: 3}}\n",
        "version: 1\ncustomer_key: crm.customers.id\nroles:\n  r: {budgets: {rows_per_hour: 11}}\n",
    ]
    revisions = {load_policy(_write(tmp_path, t, f"{i}.yaml")).revision for i, t in enumerate(texts)}
    assert len(revisions) == len(texts)
    # Key order and spelling of the mapping do not change it.
    a = _write(
        tmp_path,
        "version: 1\nroles:\n  r:\n    budgets:\n"
        "      rows_per_hour: 11\n      distinct_customers_per_day: 3\n",
        "x.yaml",
    )
    assert load_policy(a).revision == load_policy(tmp_path / "3.yaml").revision
