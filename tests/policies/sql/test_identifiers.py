"""Names fold as the server folds them: unquoted identifiers to lower case, quoted ones kept, once,
for CTE names, aliases, tables, columns, functions and search paths; and a column the schema does
not list on a known relation never comes out clear."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlglot import exp

from policies import Allow, Block, Engine, Schema, load_policy
from policies.schema import Table
from policies.sql.dialects import MYSQL, POSTGRES
from policies.sql.identifiers import function_name, search_path
from policies.sql.parser import parse_one

EXAMPLES = Path(__file__).resolve().parents[3] / "policies" / "examples"


@pytest.fixture(scope="module")
def demo() -> Engine:
    return Engine(load_policy(EXAMPLES / "demo.yaml"), Schema.load(EXAMPLES / "demo_schema.json"))


@pytest.fixture(scope="module")
def sales(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """Two schemas PostgreSQL tells apart: "Sales" (quoted, capital S) and sales."""
    policy = tmp_path_factory.mktemp("p") / "p.yaml"
    policy.write_text(
        "version: 1\ncolumns:\n  sales.orders.phone: mobile\n  public.pg_x.secret: mobile\n"
        "roles:\n  r: {tables: ['*.*'], see: {mobile: mask}, max_rows: 10}\n"
    )
    schema = Schema(
        "shop",
        "postgres",
        {
            ("Sales", "orders"): Table("Sales", "orders", ("id", "phone")),
            ("sales", "orders"): Table("sales", "orders", ("id",)),
            ("public", "pg_x"): Table("public", "pg_x", ("id", "secret")),
        },
    )
    return Engine(load_policy(policy), schema)


# --- CTE names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        # The CTE is named PG_X and referenced as pg_x: one name to PostgreSQL. It was taken for a
        # catalog relation pg_catalog.pg_x, whose columns are clear.
        "WITH PG_X AS (SELECT translate(phone, '0123456789', 'abcdefghij') m FROM customers) "
        "SELECT m FROM pg_x",
        "WITH pg_x AS (SELECT translate(phone, '0123456789', 'abcdefghij') m FROM customers) "
        "SELECT m FROM PG_X",
        "WITH \"pg_x\" AS (SELECT translate(phone, '0123456789', 'abcdefghij') m FROM customers) "
        "SELECT M FROM Pg_X",
    ],
)
def test_cte_names_fold_like_the_server(demo: Engine, sql: str) -> None:
    d = demo.decide("vendor", sql)
    assert isinstance(d, Allow), d
    assert [c.action for c in d.columns] == ["redact"]
    assert d.tables == ("public.customers",)


def test_a_quoted_cte_name_is_another_relation(demo: Engine) -> None:
    """ "PG_X" (quoted) is not the CTE pg_x: PostgreSQL reads a relation named "PG_X", which the
    schema does not know and the policy does not classify."""
    d = demo.decide("vendor", 'WITH pg_x AS (SELECT phone m FROM customers) SELECT m FROM "PG_X"')
    assert isinstance(d, Allow) and d.columns[0].sources == ("public.PG_X.m",), d


def test_a_pg_prefixed_table_of_the_schema_is_that_table(sales: Engine) -> None:
    d = sales.decide("r", "SELECT secret FROM pg_x")
    assert isinstance(d, Allow) and [c.action for c in d.columns] == ["mask"]
    assert d.tables == ("public.pg_x",)
    d = sales.decide("r", "SELECT relname FROM pg_class")
    assert isinstance(d, Allow) and d.tables == ("pg_catalog.pg_class",) and d.columns[0].action == "clear"


# --- search paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "path", "columns", "table"),
    [
        ('SET search_path = "Sales"; SELECT * FROM orders', ("Sales",), ["clear", "mask"], "Sales.orders"),
        ("SET search_path = 'Sales'; SELECT * FROM orders", ("Sales",), ["clear", "mask"], "Sales.orders"),
        ("SET search_path = Sales; SELECT * FROM orders", ("sales",), ["clear"], "sales.orders"),
        (
            "SET search_path TO SALES, public; SELECT * FROM orders",
            ("sales", "public"),
            ["clear"],
            "sales.orders",
        ),
        ("SET SCHEMA 'Sales'; SELECT * FROM orders", ("Sales",), ["clear", "mask"], "Sales.orders"),
    ],
)
def test_set_search_path_folds_like_the_server(
    sales: Engine, sql: str, path: tuple[str, ...], columns: list[str], table: str
) -> None:
    d = sales.decide("r", sql)
    assert isinstance(d, Allow), d
    first, second = d.parts()
    assert first.search_path == path and d.search_path == path
    assert [c.action for c in second.columns] == columns
    assert second.tables == (table,)


def test_a_session_search_path_is_exact(sales: Engine) -> None:
    """The proxy passes the search path as the server reports it, already folded."""
    d = sales.decide("r", "SELECT * FROM orders", search_path=("Sales",))
    assert isinstance(d, Allow) and d.tables == ("Sales.orders",)
    d = sales.decide("r", "SELECT * FROM orders", search_path=(POSTGRES.search_path_from_setting("Sales")))
    assert isinstance(d, Allow) and d.tables == ("sales.orders",)


def test_quoted_and_unquoted_schema_names(sales: Engine) -> None:
    d = sales.decide("r", 'SELECT * FROM "Sales".orders')
    assert isinstance(d, Allow) and d.tables == ("Sales.orders",) and len(d.columns) == 2
    d = sales.decide("r", "SELECT * FROM Sales.orders")
    assert isinstance(d, Allow) and d.tables == ("sales.orders",) and len(d.columns) == 1


def test_search_path_values() -> None:
    values = [exp.Var(this="Sales"), exp.Identifier(this="Sales", quoted=True), exp.Literal.string("A b")]
    assert search_path(values, POSTGRES) == ("sales", "Sales", "A b")
    assert search_path([exp.Var(this="Crm")], MYSQL) == ("Crm",)


# --- tables, columns, functions -----------------------------------------------------------------


def test_a_quoted_table_name_is_exact(demo: Engine) -> None:
    d = demo.decide("vendor", 'SELECT * FROM "Customers"')
    # Not customers: a relation the schema does not know, so its columns cannot be listed...
    assert isinstance(d, Block) and d.reason == "whole_row" and d.tables == ("public.Customers",)
    # ...and what is read of it is masked by the policy's patterns, which ignore case.
    d = demo.decide("vendor", 'SELECT phone, id FROM "Customers"')
    assert isinstance(d, Allow) and d.tables == ("public.Customers",)
    assert [c.action for c in d.columns] == ["mask", "redact"]


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT "PHONE" FROM customers',
        "SELECT nosuch FROM customers",
        "SELECT c.nosuch FROM customers c",
        "SELECT id FROM customers ORDER BY nosuch",
        "SELECT x.nosuch FROM (SELECT phone FROM customers) x",
        "WITH x AS (SELECT phone FROM customers) SELECT nosuch FROM x",
    ],
)
def test_a_column_the_schema_does_not_have_is_refused(demo: Engine, sql: str) -> None:
    """PostgreSQL rejects these (or, for `t.name`, calls a function name(t) on the whole row);
    taken for an unclassified value they would come out clear."""
    d = demo.decide("vendor", sql)
    assert isinstance(d, Block) and d.reason == "unparsable", d


@pytest.mark.parametrize(
    "sql", ["SELECT user, current_role FROM customers", "SELECT ctid, xmin, id FROM customers"]
)
def test_sql_value_keywords_and_system_columns_are_not_data(demo: Engine, sql: str) -> None:
    d = demo.decide("vendor", sql)
    assert isinstance(d, Allow) and all(c.action == "clear" for c in d.columns)


def test_function_names_fold() -> None:
    tree = parse_one('SELECT MyFunc(1), "MyFunc"(1), "myfunc"(1), SLEEP(1)', POSTGRES)
    assert isinstance(tree, exp.Select)
    names = [function_name(f, POSTGRES) for f in tree.selects]
    assert names == ["myfunc", "MyFunc", "myfunc", "sleep"]
    tree = parse_one("SELECT SLEEP(1), `Sleep`(1)", MYSQL)
    assert isinstance(tree, exp.Select)
    assert [function_name(f, MYSQL) for f in tree.selects] == ["sleep", "sleep"]


def test_rewrites_keep_quoted_function_names(demo: Engine) -> None:
    d = demo.decide("dba", 'SELECT "MyFunc"(id) FROM customers')
    assert isinstance(d, Allow)
    d = demo.decide("vendor", 'SELECT id FROM customers WHERE "MyFunc"(id) = 1')
    assert isinstance(d, Block) or (d.rewritten_sql is not None and '"MyFunc"(id)' in d.rewritten_sql)


# --- MySQL ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mysql() -> Engine:
    s = Schema(
        "crm",
        "mysql",
        {("crm", "customers"): Table("crm", "customers", ("id", "Phone", "bank_card", "branch_id"))},
    )
    return Engine(load_policy(EXAMPLES / "demo.yaml"), s)


@pytest.mark.parametrize("column", ["phone", "PHONE", "`Phone`", "`pHoNe`"])
def test_mysql_column_names_compare_case_insensitively(mysql: Engine, column: str) -> None:
    d = mysql.decide("vendor", f"SELECT id, {column} FROM customers", dialect="mysql", database="crm")
    assert isinstance(d, Allow), d
    assert [c.action for c in d.columns] == ["clear", "mask"]
    assert d.columns[1].sources == ("crm.customers.Phone",)


def test_mysql_table_names_are_exact(mysql: Engine) -> None:
    """Table names are case-sensitive on Linux (lower_case_table_names=0): CUSTOMERS is another
    table, which the schema does not list; its columns are taken as classified by the policy."""
    d = mysql.decide("vendor", "SELECT id, phone FROM CUSTOMERS", dialect="mysql", database="crm")
    assert isinstance(d, Allow) and d.tables == ("crm.CUSTOMERS",)
    assert [c.action for c in d.columns] == ["redact", "mask"]
    d = mysql.decide("vendor", "SELECT table_name FROM INFORMATION_SCHEMA.TABLES", dialect="mysql")
    assert isinstance(d, Allow) and d.columns[0].action == "clear"
