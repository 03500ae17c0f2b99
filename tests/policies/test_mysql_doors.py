"""MySQL's doors beyond the fixtures: how a SELECT … INTO @v is sent upstream, and which SHOW
statements expose other sessions' text (tests/policies/fixtures/mysql_doors.yaml has the
decisions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
        (("WARNINGS", "LIMIT", "1"), False),  # described: its Message column is free text
        (("ERRORS",), False),
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


def _decide(engine: Engine, role: str, sql: str):
    return engine.decide(role, sql, dialect="mysql", database="crm")


def test_prepare_from_a_literal_is_the_statement_it_holds(engine: Engine) -> None:
    d = _decide(engine, "vendor", "PREPARE S1 FROM 'SELECT id, phone FROM customers WHERE id = ?'")
    assert isinstance(d, Allow), d
    assert d.prepared is not None and (d.prepared.action, d.prepared.name) == ("prepare", "s1")
    assert [c.action for c in d.columns] == ["clear", "mask"]
    # sent with its row filter and row limit, as a string again
    assert d.rewritten_sql is not None and d.rewritten_sql.startswith("PREPARE S1 FROM 'SELECT")
    assert "branch_id = 12" in d.rewritten_sql and d.rewritten_sql.endswith("LIMIT 201'")
    e = _decide(engine, "dba", "EXECUTE s1 USING @a")
    assert isinstance(e, Allow) and e.prepared is not None
    assert (e.prepared.action, e.prepared.name) == ("execute", "s1")  # names ignore case
    # The MySQL session puts the kept decision on an EXECUTE's rows (proxy/mysql/relay.py
    # `_resolve_executes`): the engine lets it through, carrying the name.
    e = _decide(engine, "vendor", "EXECUTE s1 USING @a")
    assert isinstance(e, Allow) and e.prepared is not None and e.prepared.name == "s1"


def test_prepare_from_text_is_never_reused_by_shape(engine: Engine) -> None:
    texts = ["SELECT id FROM branches", "SELECT bank_card FROM customers"] * 4
    got = [_decide(engine, "vendor", f"PREPARE s FROM '{t}'").allowed for t in texts]
    assert got == [True, False] * 4


def test_prepare_string_quotes_round_trip(engine: Engine) -> None:
    d = _decide(engine, "dba", "PREPARE s FROM 'SELECT ''it''''s'' AS x FROM branches'")
    assert isinstance(d, Allow), d
    sql = "PREPARE s FROM 'SELECT id FROM customers WHERE email = ''a''''b'''"
    d = _decide(engine, "service_desk", sql)
    assert isinstance(d, Allow) and d.rewritten_sql is not None
    again = _decide(engine, "service_desk", d.rewritten_sql)
    assert isinstance(again, Allow) and again.rewritten_sql in (None, d.rewritten_sql)


@pytest.mark.parametrize(
    "sql",
    [
        "PREPARE s FROM @sql",  # text unknown
        "PREPARE s FROM CONCAT('SELECT ', 'phone FROM customers')",
        "PREPARE s FROM 'SELECT id FROM customers WHERE name = \\'x\\''",  # escapes: not read
        "PREPARE s FROM 'SET @a = 1'",  # only queries and writes are read from a string
    ],
)
def test_prepare_of_text_not_read_is_dynamic_sql(engine: Engine, sql: str) -> None:
    d = _decide(engine, "vendor", sql)
    assert not d.allowed and d.reason == "function_denied"


def test_execute_using_takes_variables_only(engine: Engine) -> None:
    assert not _decide(engine, "vendor", "EXECUTE s USING 1").allowed
    assert not _decide(engine, "vendor", "EXECUTE s USING (SELECT phone FROM customers)").allowed


# --- names, quotes and comments: every spelling of one statement decides alike -------------------

_SEPARATORS = st.sampled_from([" ", "  ", "\t", "\n", "/**/", " /* x */ ", " # c\n", " -- c\n", "--\t\n"])


def _cased(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda ups: "".join(c.upper() if u else c.lower() for c, u in zip(word, ups, strict=True))
    )


def _column(name: str) -> st.SearchStrategy[str]:
    return _cased(name).flatmap(
        lambda n: st.sampled_from([n, f"`{n}`", f"customers.{n}", f"`customers`.`{n}`"])
    )


_TABLES = st.sampled_from(
    ["customers", "`customers`", "crm.customers", "`crm`.`customers`", "crm . customers"]
)


def _statement(column: str) -> st.SearchStrategy[str]:
    return st.tuples(
        _cased("select"),
        _SEPARATORS,
        _column(column),
        _SEPARATORS,
        _cased("from"),
        _SEPARATORS,
        _TABLES,
        st.sampled_from(["", ";", " ;", "; -- end"]),
    ).map(lambda p: "".join(p[:7]) + p[7])


@settings(max_examples=150, deadline=None)
@given(_statement("phone"), st.sampled_from(["", "SELECT 1 AS one; ", "select/**/1 as one;\n"]))
def test_spellings_of_a_masked_read_are_masked(engine: Engine, sql: str, before: str) -> None:
    d = _decide(engine, "vendor", before + sql)
    assert isinstance(d, Allow), (before + sql, d)
    cols = [c for p in d.parts() for c in p.columns]
    assert [c.action for c in cols if c.name.lower() == "phone"] == ["mask"], (before + sql, cols)


@settings(max_examples=150, deadline=None)
@given(_statement("bank_card"), st.sampled_from(["", "SELECT 1 AS one; "]))
def test_spellings_of_a_denied_read_are_refused(engine: Engine, sql: str, before: str) -> None:
    d = _decide(engine, "vendor", before + sql)
    assert not d.allowed and d.reason == "class_denied", (before + sql, d)


@settings(max_examples=100, deadline=None)
@given(_cased("crm"), _cased("customers"), _cased("phone"))
def test_table_case_never_unmasks(engine: Engine, db: str, table: str, column: str) -> None:
    """MySQL table names are case-sensitive on Linux: `CRM`.`Customers` is another table (or
    none), and it is masked by the policy's patterns, which ignore case, all the same."""
    d = _decide(engine, "vendor", f"SELECT {column} FROM `{db}`.`{table}`")
    if d.allowed:
        assert [c.action for c in d.columns] == ["mask"], d


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT extractvalue(1, concat(0x7e, phone)) AS x FROM customers WHERE id = 1",
        "SELECT updatexml(1, concat(0x7e, phone), 1) AS x FROM customers WHERE id = 1",
        "SELECT exp(~(SELECT phone FROM customers WHERE id = 1)) AS x",
        "SELECT geometrycollection((SELECT phone FROM customers WHERE id = 1)) AS x",
        "SELECT ST_GeomFromText(phone) AS x FROM customers WHERE id = 1",
        "SELECT json_extract('x', concat('$', phone)) AS x FROM customers WHERE id = 1",
        "SELECT 1 AS one; SELECT extractvalue(1, concat(0x7e, phone)) AS x FROM customers",
    ],
)
def test_error_echoes_carry_the_classes_in_flight(engine: Engine, sql: str) -> None:
    """The equality-mode desk may compute over masked values (the result is redacted); the
    error such a computation raises quotes the value, so the decision of the part that runs it
    must carry its classes: the proxy withholds an error's text when it does
    (proxy/services/statement.withholds_errors)."""
    d = _decide(engine, "service_desk", sql)
    assert isinstance(d, Allow), d
    part = d.parts()[-1]
    assert "mobile" in part.classes
    assert [c.action for c in part.columns] == ["redact"]
