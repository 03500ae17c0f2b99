"""The shape cache: statements that differ only in plain literals share one analysis, each gets
its own literals back in its rewritten SQL, and literals whose value matters stay in the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import Allow, Block, Engine, Schema, load_policy
from policies.sql.dialects import POSTGRES
from policies.sql.shapes import Sentinels, free_slots, shape_of

EXAMPLES = Path(__file__).resolve().parents[3] / "policies" / "examples"


@pytest.fixture
def engine() -> Engine:
    return Engine(load_policy(EXAMPLES / "demo.yaml"), Schema.load(EXAMPLES / "demo_schema.json"))


def _decide(engine: Engine, role: str, sql: str) -> tuple[Allow | Block, bool]:
    before = engine.shape_hits
    d = engine.decide(role, sql)
    return d, engine.shape_hits > before


def _fresh(engine: Engine, role: str, sql: str) -> Allow | Block:
    """The decision of a full analysis, as without a shape cache."""
    return Engine(engine.policy, engine.schema).decide(role, sql)


def test_statements_differing_in_a_literal_share_one_analysis(engine: Engine) -> None:
    lookup = "SELECT id, name, phone, id_card FROM customers WHERE id = {}"
    hits = [_decide(engine, "vendor", lookup.format(n))[1] for n in (1, 2, 3, 4711, 99)]
    assert hits == [False, False, True, True, True]  # learned from two, then reused
    assert engine.cache_misses == 2 and engine.cache_hits == 3
    d = engine.decide("vendor", lookup.format(4242))
    assert d == _fresh(engine, "vendor", lookup.format(4242))
    assert isinstance(d, Allow)
    assert d.rewritten_sql is not None and "id = 4242 LIMIT 201" in d.rewritten_sql
    assert "branch_id = 12" in d.rewritten_sql
    assert [c.action for c in d.columns] == ["clear", "mask", "mask", "mask"]


def test_rewritten_sql_carries_each_statements_own_literals(engine: Engine) -> None:
    sql = "SELECT id FROM customers WHERE email = '{}' AND created_at > '{}'::date"
    for i, (email, day) in enumerate(
        [("a@x", "2024-01-01"), ("b@x", "2024-02-02"), ("it''s@x", "2025-03-03")]
    ):
        d, hit = _decide(engine, "service_desk", sql.format(email, day))
        assert hit == (i == 2)
        assert d == _fresh(engine, "service_desk", sql.format(email, day))
        assert isinstance(d, Allow) and d.rewritten_sql is not None
        assert f"email = '{email}'" in d.rewritten_sql and f"'{day}'" in d.rewritten_sql


def test_a_different_limit_still_gets_the_right_limit(engine: Engine) -> None:
    sql = "SELECT id FROM call_records WHERE id = {} LIMIT {}"
    for n, limit, expect in [
        (1, 10, None),
        (2, 10, None),
        (3, 10, None),
        (4, 500, 201),
        (5, 500, 201),
        (6, 500, 201),
        (7, 10, None),
        (8, 150, None),
        (9, 201, None),
        (10, 202, 201),
    ]:
        d = engine.decide("vendor", sql.format(n, limit))
        assert d == _fresh(engine, "vendor", sql.format(n, limit))
        assert isinstance(d, Allow)
        # The vendor's relations are named by their schema; a LIMIT within max_rows is kept.
        assert d.rewritten_sql == f"SELECT id FROM public.call_records WHERE id = {n} LIMIT {expect or limit}"


def test_updates_and_inserts_share_an_analysis(engine: Engine) -> None:
    sql = "UPDATE customers SET email = '{}' WHERE id = {}"
    hits = [_decide(engine, "service_desk", sql.format(f"u{i}@x", i))[1] for i in range(4)]
    assert hits == [False, False, True, True]


@pytest.mark.parametrize(
    ("template", "values", "role"),
    [
        # set_config: the setting name and value are decided on
        (
            "SELECT set_config({}, 'x', false) FROM customers WHERE id = {}",
            [
                ("'search_path'", "1"),
                ("'statement_timeout'", "2"),
                ("'role'", "3"),
                ("'session_authorization'", "4"),
            ],
            "vendor",
        ),
        # table names in strings
        (
            "SELECT {}::regclass, id FROM branches WHERE id = {}",
            [("'branches'", "1"), ("'customers'", "2"), ("'audit_trail'", "3")],
            "vendor",
        ),
        (
            "SELECT pg_relation_size({}) FROM branches WHERE id = {}",
            [("'branches'", "1"), ("'customers'", "2"), ("'audit_trail'", "3")],
            "vendor",
        ),
        (
            "SELECT to_regclass({}) FROM branches WHERE id = {}",
            [("'branches'", "1"), ("'customers'", "2"), ("'audit_trail'", "3")],
            "vendor",
        ),
        # SQL and connection strings in strings
        (
            "SELECT query_to_xml({}, true, true, '') FROM branches WHERE id = {}",
            [("'select 1'", "1"), ("'select 2'", "2"), ("'select phone from customers'", "3")],
            "dba",
        ),
        # ORDER BY / GROUP BY positions name columns
        (
            "SELECT id, phone FROM customers WHERE id > {} ORDER BY {}",
            [("1", "1"), ("2", "1"), ("3", "2"), ("4", "1")],
            "vendor",
        ),
        (
            "SELECT phone, count(*) FROM customers WHERE id > {} GROUP BY {}",
            [("1", "2"), ("2", "2"), ("3", "1")],
            "vendor",
        ),
        # OFFSET / FETCH
        (
            "SELECT id FROM call_records WHERE id > {} FETCH FIRST {} ROWS ONLY",
            [("1", "10"), ("2", "10"), ("3", "900"), ("4", "10")],
            "vendor",
        ),
        (
            "SELECT id FROM call_records WHERE id > {} OFFSET {}",
            [("1", "10"), ("2", "10"), ("3", "900")],
            "vendor",
        ),
        # escape strings and dollar quotes stay in the key
        (
            "SELECT id FROM customers WHERE name = {} AND id = {}",
            [("E'a'", "1"), ("E'a'", "2"), ("E'b\\''", "3"), ("$$x$$", "4"), ("$$y$$", "5"), ("'q\\'", "6")],
            "vendor",
        ),
    ],
)
def test_value_sensitive_literals_still_decide_correctly(
    engine: Engine, template: str, values: list[tuple[str, str]], role: str
) -> None:
    for a, b in values * 2:
        sql = template.format(a, b)
        assert engine.decide(role, sql) == _fresh(engine, role, sql), sql


def test_value_sensitive_literals_are_fixed_not_free() -> None:
    s = Sentinels()

    def free(sql: str) -> list[str] | None:
        shape = shape_of(sql, "postgres")
        slots = free_slots(shape, POSTGRES, s) if shape else None
        return [shape.raws[i] for i in sorted(slots.free)] if shape and slots else None

    assert free("SELECT id FROM t WHERE id = 5 LIMIT 10") == ["5"]
    assert free("SELECT 'customers'::regclass, x FROM t WHERE a = 'q'") == ["'q'"]
    assert free("SELECT set_config('search_path', 'x', false) FROM t WHERE a = 1") == ["1"]
    assert free("SELECT * FROM dblink('host=x', 'select 1') AS t(a int) WHERE a = 1") == ["1"]
    assert free("SELECT id FROM t GROUP BY 1 HAVING count(*) > 3") == ["3"]
    assert free("SELECT id FROM t WHERE x = E'a' AND y = 2") == ["2"]
    assert free("SELECT 5 AS n, id FROM t WHERE id IN (1, 2)") == ["5", "1", "2"]
    assert free("UPDATE t SET a = 'x' WHERE id = 7") == ["'x'", "7"]
    assert free("SELECT 1") is None  # an unnamed literal column
    assert free("SELECT id FROM t ORDER BY 2") is None
    assert free("SELECT id FROM t OFFSET 5") is None
    assert free("COPY t TO '/tmp/x'") is None
    assert free("SELECT 1; SELECT 2") is None
    assert free("SELECT id FROM t WHERE a = 'x\\' OR b = '1'") is None  # a backslash: never


def test_other_statement_kinds_keep_the_full_text_key(engine: Engine) -> None:
    for sql in [
        "SET statement_timeout = {}",
        "LOCK TABLE customers IN ACCESS SHARE MODE NOWAIT; SELECT {}",
        "EXPLAIN SELECT id FROM customers WHERE id = {}",
        "PREPARE p{} AS SELECT id FROM customers WHERE id = 1",
        "COPY (SELECT id FROM customers WHERE id = {}) TO STDOUT",
        "SELECT id FROM customers WHERE id = {}; SELECT 1",
    ]:
        for i in range(4):
            engine.decide("vendor", sql.format(i))
    assert engine.shape_hits == 0


def test_blocks_are_never_served_by_shape(engine: Engine) -> None:
    sql = "SELECT id FROM customers WHERE phone LIKE '{}%'"
    for i in range(4):
        d, hit = _decide(engine, "vendor", sql.format(f"138{i}"))
        # A refusal's message may quote the statement: it is never reused for another one.
        assert isinstance(d, Block) and not hit


def test_a_new_policy_revision_or_role_does_not_reuse_a_shape(engine: Engine) -> None:
    sql = "SELECT id, phone FROM customers WHERE id = {}"
    for i in range(3):
        engine.decide("vendor", sql.format(i))
    d, hit = _decide(engine, "service_desk", sql.format(10))
    assert not hit and isinstance(d, Allow) and d.row_limit == 50
    engine.clear_cache()
    assert not _decide(engine, "vendor", sql.format(11))[1]
