"""Row filters checked against a schema: a column the table lacks is an error, named in policy terms."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import Schema, load_policy
from policies.checks import row_filter_errors
from proxy.cli import main

EXAMPLES = Path(__file__).parents[2] / "policies" / "examples"
SCHEMA = Schema.load(EXAMPLES / "demo_schema.json")


def policy(tmp_path: Path, row_filter: str) -> Path:
    p = tmp_path / "p.yaml"
    head = 'version: 1\nroles:\n  r:\n    tables: ["crm.*"]\n    row_filters:\n'
    p.write_text(f"{head}      crm.customers: {row_filter!r}\n", encoding="utf-8")
    return p


@pytest.mark.parametrize(
    "row_filter",
    ["branch_id = 12", "BRANCH_ID = 12", "branch_id IN (SELECT id FROM customers WHERE nosuch = 1)"],
)
def test_filters_over_existing_columns_pass(tmp_path: Path, row_filter: str) -> None:
    assert row_filter_errors(load_policy(policy(tmp_path, row_filter)), SCHEMA) == []


@pytest.mark.parametrize(
    ("row_filter", "missing"), [("branchid = 12", "branchid"), ('"Branch_id" = 1', "Branch_id")]
)
def test_a_missing_column_is_an_error(
    tmp_path: Path, row_filter: str, missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    p = policy(tmp_path, row_filter)
    [err] = row_filter_errors(load_policy(p), SCHEMA)
    assert f"names {missing}, which public.customers does not have" in err
    assert main(["check", str(p), "--schema", str(EXAMPLES / "demo_schema.json")]) == 1
    assert "error: role r: row filter" in capsys.readouterr().err
