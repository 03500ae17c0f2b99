"""Functions judged by what they do (issue 9, item 6): the catalog's volatility, a reviewed list of
harmless volatile functions, the rights an effect needs, and fail-closed for what the catalog does
not list. The built-in table (policies/sql/postgres_functions.py) stands in for schemas saved
without function data; tests/integration/test_diagnostics.py checks it against a live server."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from policies import Block, Engine, Schema, load_policy
from policies.decide import server_function_name
from policies.schema import Table
from policies.sql import identifiers
from policies.sql.dialects import POSTGRES
from policies.sql.postgres_functions import FUNCTIONS

EXAMPLES = Path(__file__).parents[2] / "policies" / "examples"
ORDER = {"immutable": 0, "stable": 1, "volatile": 2}
BUILTINS = POSTGRES.builtin_functions()  # type: ignore[misc]
CATALOG = {n: v for (s, n), v in BUILTINS.items() if s == "pg_catalog"}

# The issue's examples: a select-only vendor ran every one of these.
ISSUE = [
    "SELECT pg_stat_reset_single_table_counters('customers'::regclass)",
    "SELECT txid_current()",
    "SELECT pg_stat_reset()",
    "SELECT pg_backup_start('x')",
    "SELECT lo_truncate(0, 0)",
]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_policy(EXAMPLES / "demo.yaml"), Schema.load(EXAMPLES / "demo_schema.json"))


def _quoted(name: str) -> str:
    """The name as SQL that calls exactly it (quoted when folding would change it)."""
    return exp.to_identifier(name, quoted=name != name.lower()).sql(dialect="postgres")


def _call(name: str, args: int) -> exp.Func | None:
    quoted = _quoted(name)
    try:
        tree = sqlglot.parse_one(f"SELECT {quoted}({', '.join(['x'] * args)})", read="postgres")
    except sqlglot.errors.SqlglotError:
        return None
    node = tree.selects[0] if isinstance(tree, exp.Select) else None
    return node if isinstance(node, exp.Func) else None


def test_builtin_table_is_loaded() -> None:
    assert len(CATALOG) > 2500
    assert CATALOG["upper"] == "immutable" and CATALOG["now"] == "stable"
    assert CATALOG["pg_stat_reset"] == "volatile" and CATALOG["txid_current"] == "stable"
    assert set(FUNCTIONS) == {"pg_catalog", "information_schema"}


def test_sqlglot_names_never_launder_a_volatile_function() -> None:
    """Every pg_catalog name, called with 0 to 3 arguments: the name maskgate judges (sqlglot's
    typed node rendered back, or the written name) is SQL syntax only for functions that are not
    volatile, and otherwise a catalog name at least as volatile as the one written."""
    problems = []
    for name, volatility in sorted(CATALOG.items()):
        for args in range(4):
            node = _call(name, args)
            if node is None:
                continue
            judged = server_function_name(node, identifiers.function_name(node, POSTGRES), POSTGRES)
            if judged is None:
                if volatility == "volatile":
                    problems.append(f"{name}/{args}: volatile but read as syntax")
                continue
            got = CATALOG.get(judged)
            if got is None or ORDER[got] < ORDER[volatility]:
                problems.append(f"{name}/{args}: judged as {judged} ({got}), is {volatility}")
    assert problems == []


def _expected(name: str) -> str:
    """What a select-only role gets for a call of a catalog function: allow, or the reason."""
    if name in POSTGRES.timing_functions or name in POSTGRES.dangerous_functions:
        return "function_denied"
    if name in POSTGRES.exposing_functions:
        return "function_denied"
    if name in POSTGRES.function_rights:
        return "statement_not_allowed"
    if name in POSTGRES.setting_functions:
        return "function_denied"
    volatile = CATALOG[name] == "volatile" or name in POSTGRES.effect_functions
    if volatile and name not in POSTGRES.harmless_volatile_functions:
        return "statement_not_allowed"
    return "allow"


def test_every_catalog_function_is_judged_by_its_volatility(engine: Engine) -> None:
    """The whole catalog, once: `SELECT pg_catalog.name()` for the vendor (select only)."""
    wrong = []
    for name in sorted(CATALOG):
        d = engine.decide("vendor", f"SELECT pg_catalog.{_quoted(name)}()")
        got = "allow" if d.allowed else d.reason
        if got == "unparsable":
            continue  # a keyword sqlglot cannot call (`SELECT pg_catalog.char()`): refused anyway
        if got != _expected(name):
            wrong.append(f"{name}: {got}, expected {_expected(name)}")
    assert wrong == []


@pytest.mark.parametrize("sql", ISSUE)
def test_the_issue_examples_are_refused(engine: Engine, sql: str) -> None:
    d = engine.decide("vendor", sql)
    assert isinstance(d, Block) and d.reason == "statement_not_allowed"
    assert "needs statements: [admin]" in d.message


@pytest.mark.parametrize("sql", ISSUE)
def test_admin_may_call_them(sql: str) -> None:
    policy = load_policy(EXAMPLES / "demo.yaml")
    vendor = policy.roles["vendor"]
    admin = replace(vendor, statements=frozenset({"select", "admin"}))
    engine = Engine(replace(policy, roles={**policy.roles, "vendor": admin}), Schema())
    assert engine.decide("vendor", sql).allowed


@given(
    name=st.sampled_from(
        sorted(n for n in CATALOG if _expected(n) == "statement_not_allowed" and n == n.lower())
    ),
    data=st.data(),
)
@settings(max_examples=150, deadline=None)
def test_case_and_quoting_variants_of_volatile_functions(engine: Engine, name: str, data) -> None:
    """Unquoted names fold to lower case; a quoted name keeps its case (and then names another
    function, which the catalog lacks); a schema may be written or not, quoted or not."""
    cased = "".join(ch.upper() if data.draw(st.booleans()) else ch for ch in name)
    quote = data.draw(st.booleans())
    written = f'"{cased}"' if quote else cased
    schema = data.draw(st.sampled_from(["", "pg_catalog.", '"pg_catalog".', "PG_CATALOG."]))
    d = engine.decide("vendor", f"SELECT {schema}{written}()")
    assert not d.allowed
    if quote and cased != name:
        assert d.reason in ("function_denied", "unparsable")
    else:
        assert d.reason in ("statement_not_allowed", "unparsable")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT random(), clock_timestamp(), now(), gen_random_uuid(), timeofday()",
        "SELECT pg_relation_size('customers'), pg_total_relation_size('customers')",
        "SELECT pg_database_size(current_database()), pg_is_in_recovery(), pg_backend_pid()",
        "SELECT pg_get_viewdef('customer_contacts'::regclass), format_type(25, NULL)",
        "SELECT has_table_privilege('customers', 'SELECT'), pg_get_expr(NULL, 0)",
        "SELECT current_setting('search_path'), version(), current_user, current_schema()",
        "SELECT coalesce(NULL, 1), nullif(1, 2), greatest(1, 2), CAST(1 AS text), ARRAY[1]",
        "SELECT CASE WHEN random() > 0.5 THEN 1 END, extract(year FROM now())",
    ],
)
def test_stable_catalog_functions_and_harmless_volatile_ones_pass(engine: Engine, sql: str) -> None:
    assert engine.decide("vendor", sql).allowed


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pg_stat_get_activity(NULL)",
        "SELECT query FROM pg_stat_get_activity(NULL)",
        "SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s",
        "SELECT * FROM pg_mcv_list_items(NULL)",
        "SELECT * FROM pg_prepared_statement()",
    ],
)
def test_functions_exposing_other_sessions_sql_are_no_side_door(engine: Engine, sql: str) -> None:
    d = engine.decide("vendor", sql)
    assert isinstance(d, Block) and d.reason == "function_denied"


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE customers SET name = name WHERE txid_current() > 0",
        "UPDATE customers SET name = pg_stat_reset()::text WHERE id = 1 RETURNING id",
        "SELECT id FROM customers ORDER BY pg_stat_reset()",
        "SELECT count(*) FILTER (WHERE pg_stat_reset() IS NULL) FROM customers",
        "WITH x AS (SELECT pg_stat_reset()) SELECT 1",
        "COPY (SELECT pg_stat_reset()) TO STDOUT",
        "EXPLAIN ANALYZE SELECT pg_stat_reset()",
        "PREPARE p AS SELECT txid_current()",
        "SELECT * FROM pg_stat_reset()",
    ],
)
def test_volatile_calls_anywhere_in_the_tree(engine: Engine, sql: str) -> None:
    d = engine.decide("service_desk", sql)  # select and update, no admin
    assert isinstance(d, Block) and d.reason == "statement_not_allowed", d


def test_writes_values_are_judged_too() -> None:
    policy = load_policy([EXAMPLES / "demo.yaml", Path(__file__).parent / "data" / "writers.yaml"])
    engine = Engine(policy, Schema.load(EXAMPLES / "demo_schema.json"))
    sql = "INSERT INTO branches VALUES (txid_current()::text, 'x')"
    d = engine.decide("view_writer", sql)
    assert isinstance(d, Block) and d.reason == "statement_not_allowed"
    assert engine.decide("view_writer", "INSERT INTO branches VALUES ('a', 'b')").allowed
    # Sequence writers keep needing `update` only, as before.
    assert engine.decide("view_writer", "INSERT INTO branches VALUES (nextval('s')::text, 'x')").allowed


def _live_like_schema() -> Schema:
    """A schema as the loader reads it: its own volatility table and a user function."""
    demo = Schema.load(EXAMPLES / "demo_schema.json")
    volatility = dict(BUILTINS)
    volatility[("pg_catalog", "upper")] = "volatile"  # as if this server said so
    del volatility[("pg_catalog", "initcap")]  # a function this server does not have
    volatility[("public", "substr")] = "immutable"
    volatility[("public", "lookup_phone")] = "stable"
    volatility[("public", "now")] = "volatile"
    return Schema(
        demo.database,
        demo.dialect,
        demo.tables,
        frozenset({("public", "substr"), ("public", "lookup_phone"), ("public", "now")}),
        volatility,
    )


def test_a_loaded_schema_is_judged_by_its_own_catalog() -> None:
    engine = Engine(load_policy(EXAMPLES / "demo.yaml"), _live_like_schema())
    assert engine.decide("vendor", "SELECT upper(name) FROM customers").reason == "statement_not_allowed"
    d = engine.decide("vendor", "SELECT initcap(name) FROM customers")
    assert d.reason == "function_denied" and "not in the database's catalog" in d.message
    # sqlglot reads substr as its Substring node; a user function of that name may be what runs
    d = engine.decide("vendor", "SELECT substr(name, 1) FROM customers")
    assert d.reason == "function_denied" and "user-defined" in d.message
    assert engine.decide("vendor", "SELECT lookup_phone(1)").reason == "function_denied"
    # now() renders as CURRENT_TIMESTAMP, yet with `public` before pg_catalog it runs public.now:
    # such a search_path is refused outright, before any function is judged
    d = engine.decide("vendor", "SELECT now()", search_path=("public", "pg_catalog"))
    assert isinstance(d, Block)
    assert engine.decide("vendor", "SELECT pg_catalog.now()").allowed
    assert engine.decide("vendor", "SELECT lower(name) FROM customers").allowed


def test_an_unknown_function_fails_closed(engine: Engine) -> None:
    for sql in ("SELECT no_such_function(1)", 'SELECT "FORMAT_TYPE"(25, NULL)'):
        d = engine.decide("vendor", sql)
        assert isinstance(d, Block) and d.reason == "function_denied", sql
    assert engine.decide("dba", "SELECT no_such_function(1)").allowed  # `all`: the server decides


def test_the_allow_list_lifts_volatility_but_not_effects() -> None:
    policy = load_policy(EXAMPLES / "demo.yaml")
    vendor = replace(policy.roles["vendor"], functions=frozenset({"pg_stat_reset", "pg_sleep", "nextval"}))
    engine = Engine(replace(policy, roles={**policy.roles, "vendor": vendor}), Schema())
    assert engine.decide("vendor", "SELECT pg_stat_reset()").allowed
    assert engine.decide("vendor", "SELECT pg_sleep(1)").reason == "function_denied"
    assert engine.decide("vendor", "SELECT nextval('s')").reason == "statement_not_allowed"


def test_mysql_has_no_volatility_and_keeps_its_lists() -> None:
    engine = Engine(load_policy(EXAMPLES / "demo.yaml"), Schema(dialect="mysql"))
    assert engine.decide("vendor", "SELECT upper('a'), rand()", dialect="mysql").allowed
    assert engine.decide("vendor", "SELECT sleep(1)", dialect="mysql").reason == "function_denied"
    assert engine.decide("vendor", "SELECT get_lock('a', 1)", dialect="mysql").reason == (
        "statement_not_allowed"
    )


def test_schema_file_keeps_function_data(tmp_path: Path) -> None:
    s = _live_like_schema()
    s = replace(s, tables={**s.tables, ("public", "t"): Table("public", "t", ("remark",), ("text",))})
    s = replace(s, discovered={("public", "t", "remark"): "mobile"})
    s.save(tmp_path / "s.json")
    back = Schema.load(tmp_path / "s.json")
    assert back == s and back.volatility is not None
    assert back.function_volatility("pg_catalog", "upper") == "volatile"
    # A file saved before function data existed has none: the judge uses the built-in table.
    assert Schema.load(EXAMPLES / "demo_schema.json").volatility is None
