"""MySQL's doors beyond the fixtures: how a SELECT … INTO @v is sent upstream, and which SHOW
statements expose other sessions' text (tests/policies/fixtures/mysql_doors.yaml has the
decisions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import Allow, Engine, Schema, load_policy
from policies.sql.dialects import MYSQL, POSTGRES

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def engine() -> Engine:
    policy = load_policy([ROOT / "policies/examples/demo.yaml", ROOT / "tests/policies/data/writers.yaml"])
    return Engine(policy, Schema.load(ROOT / "tests/policies/data/demo_schema_mysql.json"))


def test_select_into_variable_is_sent_as_select_into(engine: Engine) -> None:
    # sqlglot's MySQL writer turns SELECT … INTO into CREATE TABLE … AS SELECT.
    d = engine.decide("vendor", "SELECT id INTO @a FROM customers LIMIT 1", dialect="mysql", database="crm")
    assert isinstance(d, Allow), d
    assert d.rewritten_sql is not None
    assert not d.rewritten_sql.upper().startswith("CREATE")
    assert d.rewritten_sql.endswith("INTO @a")
    assert "branch_id = 12" in d.rewritten_sql


def test_select_into_variable_needs_select_only(engine: Engine) -> None:
    d = engine.decide("inserter", "SELECT id INTO @a FROM branches LIMIT 1", dialect="mysql", database="crm")
    assert isinstance(d, Allow), d
    assert d.columns == ()


@pytest.mark.parametrize(
    ("words", "exposes"),
    [
        (("PROCESSLIST",), True),
        (("FULL", "PROCESSLIST"), True),
        (("ENGINE", "INNODB", "STATUS"), True),
        (("BINLOG", "EVENTS", "IN"), True),
        (("WARNINGS", "LIMIT", "1"), True),
        (("COUNT", "(", "*", ")", "WARNINGS"), False),
        (("TABLES",), False),
        (("CREATE", "TABLE", "CUSTOMERS"), False),
        (("MASTER", "STATUS"), False),
    ],
)
def test_exposing_show(words: tuple[str, ...], exposes: bool) -> None:
    assert MYSQL.exposing_show(words) is exposes
    assert POSTGRES.exposing_show(words) is False


def test_catalog_classes_ignore_case_in_mysql_only() -> None:
    assert MYSQL.catalog_class("INFORMATION_SCHEMA", "PROCESSLIST", "Info") == "free_text"
    assert MYSQL.catalog_classified("Performance_Schema", "EVENTS_STATEMENTS_HISTORY")
    assert POSTGRES.catalog_class("pg_catalog", "PG_STAT_ACTIVITY", "query") is None
