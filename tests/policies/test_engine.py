"""Engine behaviour beyond single decisions: cache, hours, multi-statement parts, dialects,
session effects and fail-closed analysis."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import Allow, Block, Engine, Schema, load_policy
from policies.decision import ColumnMask, PreparedEffect
from policies.engine import _ALLOW_FIELDS, _Learned
from policies.names import TableName
from policies.schema import Table
from policies.sql.analysis import Analyzer
from policies.sql.dialects import POSTGRES
from policies.sql.parser import split

EXAMPLES = Path(__file__).parents[2] / "policies" / "examples"


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_policy(EXAMPLES / "demo.yaml"), Schema.load(EXAMPLES / "demo_schema.json"))


def test_cache_hits_and_misses() -> None:
    calls: list[bool] = []
    e = Engine(
        load_policy(EXAMPLES / "demo.yaml"), Schema.load(EXAMPLES / "demo_schema.json"), on_cache=calls.append
    )
    a = e.decide("vendor", "SELECT id FROM customers")
    b = e.decide("vendor", "SELECT id FROM customers")
    assert a is b
    e.decide("vendor", "SELECT id FROM customers", search_path=("crm",))  # different key
    e.decide("service_desk", "SELECT id FROM customers")  # different role
    assert (e.cache_hits, e.cache_misses) == (1, 3)
    assert calls == [False, True, False, False]


def test_cache_is_bounded() -> None:
    e = Engine(load_policy(EXAMPLES / "demo.yaml"), Schema.load(EXAMPLES / "demo_schema.json"), cache_size=2)
    for i in range(5):
        e.decide("vendor", f"SELECT {i}")
    e.decide("vendor", "SELECT 0")
    assert e.cache_misses == 6 and e.cache_hits == 0


def test_outside_hours_checked_before_cache(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(
        "version: 1\ntimezone: Asia/Shanghai\nroles:\n"
        "  r: {tables: ['*.*'], hours: ['Mon-Fri 09:00-18:00']}\n"
    )
    e = Engine(load_policy(p))
    tz = ZoneInfo("Asia/Shanghai")
    inside = datetime(2024, 6, 3, 10, 0, tzinfo=tz)  # a Monday
    outside = datetime(2024, 6, 3, 20, 0, tzinfo=tz)
    saturday = datetime(2024, 6, 8, 10, 0, tzinfo=tz)
    assert e.decide("r", "SELECT 1", now=inside).allowed
    d = e.decide("r", "SELECT 1", now=outside)
    assert isinstance(d, Block) and d.reason == "outside_hours"
    assert e.decide("r", "SELECT 1", now=saturday).reason == "outside_hours"
    assert e.decide("r", "SELECT 1", now=inside).allowed


def test_overnight_window(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("version: 1\nroles:\n  r: {tables: ['*.*'], hours: ['Mon 22:00-06:00']}\n")
    e = Engine(load_policy(p))
    assert e.decide("r", "SELECT 1", now=datetime(2024, 6, 3, 23, 0)).allowed  # Monday night
    assert e.decide("r", "SELECT 1", now=datetime(2024, 6, 4, 5, 0)).allowed  # Tuesday early
    assert not e.decide("r", "SELECT 1", now=datetime(2024, 6, 4, 23, 0)).allowed


def test_unknown_role(engine: Engine) -> None:
    assert engine.decide("nobody", "SELECT 1").reason == "statement_not_allowed"


def test_multi_statement_parts(engine: Engine) -> None:
    d = engine.decide("vendor", "SET search_path = public; SELECT id, phone FROM customers; SELECT 1")
    assert isinstance(d, Allow)
    parts = d.parts()
    assert [p.kind for p in parts] == ["session", "select", "select"]
    assert parts[0].search_path == ("public",)
    assert [c.action for c in parts[1].columns] == ["clear", "mask"]
    assert d.rewritten_sql is not None and d.rewritten_sql.startswith(
        "SET search_path = public; SELECT id, phone FROM ("
    )
    assert d.search_path == ("public",)


def test_single_statement_has_no_parts(engine: Engine) -> None:
    d = engine.decide("vendor", "SELECT 1;")
    assert isinstance(d, Allow) and d.statements == () and d.parts() == (d,)


def test_empty_string(engine: Engine) -> None:
    assert engine.decide("vendor", " ; -- nothing").allowed


def test_ddl_marks_schema_changed(engine: Engine) -> None:
    d = engine.decide("dba", "ALTER TABLE customers ADD COLUMN wechat text")
    assert isinstance(d, Allow) and d.schema_changed


def test_allow_carries_detect_tables_classes(engine: Engine) -> None:
    d = engine.decide("vendor", "SELECT phone FROM customers")
    assert isinstance(d, Allow)
    assert "mobile" in d.detect and d.row_limit == 200
    assert d.tables == ("public.customers",) and d.classes == ("mobile",)
    assert d.columns[0].sources == ("public.customers.phone",)


def test_fail_closed_on_internal_error(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("bug")

    e = Engine(engine.policy, engine.schema)
    monkeypatch.setattr(Analyzer, "analyse_query", boom)
    d = e.decide("vendor", "SELECT id FROM customers")
    assert isinstance(d, Block) and d.reason == "unparsable"


def test_unknown_table_star_with_classes_refused(engine: Engine) -> None:
    e = Engine(engine.policy, Schema())  # no schema: stars cannot be expanded
    d = e.decide("vendor", "SELECT * FROM customers", database="crm")
    assert d.reason == "whole_row"
    d = e.decide("vendor", "SELECT id, phone FROM customers", database="crm")
    assert isinstance(d, Allow) and [c.action for c in d.columns] == ["redact", "mask"]
    d = e.decide("vendor", "SELECT * FROM branches", database="crm")
    assert isinstance(d, Allow) and d.columns == () and "result shape unknown" in d.notes


@pytest.fixture(scope="module")
def mysql_engine() -> Engine:
    s = Schema(
        "crm",
        "mysql",
        {("crm", "customers"): Table("crm", "customers", ("id", "name", "phone", "bank_card", "branch_id"))},
    )
    return Engine(load_policy(EXAMPLES / "demo.yaml"), s)


@pytest.mark.parametrize(
    ("sql", "allowed", "reason"),
    [
        ("SELECT id, phone FROM customers WHERE id = ?", True, None),
        ("SELECT id, phone FROM crm.customers WHERE id = %s", True, None),
        ("SELECT * FROM customers", False, "class_denied"),
        ("SELECT id FROM customers WHERE phone LIKE ?", False, "masked_predicate"),
        ("SELECT LOAD_FILE('/etc/passwd')", False, "function_denied"),
        ("SELECT table_name FROM information_schema.tables", True, None),
        ("SELECT user FROM mysql.user", False, "table_denied"),
        ("SHOW TABLES", True, None),
        ("USE crm", True, None),
        ("SET NAMES utf8mb4", True, None),
        ("SET @x = (SELECT phone FROM customers LIMIT 1)", False, "statement_not_allowed"),
        ("SELECT * FROM customers INTO OUTFILE '/tmp/x'", False, "unparsable"),
    ],
)
def test_mysql_same_path(mysql_engine: Engine, sql: str, allowed: bool, reason: str | None) -> None:
    d = mysql_engine.decide("vendor", sql, dialect="mysql", database="crm")
    assert d.allowed is allowed, d
    if reason:
        assert d.reason == reason


def test_mysql_masks_and_limit(mysql_engine: Engine) -> None:
    d = mysql_engine.decide(
        "vendor", "SELECT id, phone FROM customers LIMIT ?", dialect="mysql", database="crm"
    )
    assert isinstance(d, Allow)
    assert [c.action for c in d.columns] == ["clear", "mask"]
    assert d.rewritten_sql is not None and d.rewritten_sql.endswith("LIMIT 201")


def test_view_analysis_uses_base_columns() -> None:
    s = Schema.load(EXAMPLES / "demo_schema.json")
    a = Analyzer(s, POSTGRES, ("public",), "crm")

    outs = a.view_outputs(TableName("crm", "public", "phone_prefixes"))
    assert (
        outs is not None
        and outs[1].derived
        and {str(c) for c in outs[1].sources} == {"public.customers.phone"}
    )


def test_decisions_carry_revision_and_dialect_fingerprint(engine: Engine) -> None:
    a = engine.decide("vendor", "SELECT id FROM customers WHERE id = 1")
    b = engine.decide("vendor", "select id  from customers where id = 2")
    c = engine.decide("vendor", "SELECT id FROM customers WHERE id = $x$13812345678$x$")
    blocked = engine.decide("vendor", "SELECT bank_card FROM customers WHERE id = 3")
    assert a.revision == engine.policy.revision == blocked.revision
    assert a.fingerprint and a.fingerprint == b.fingerprint == c.fingerprint
    assert isinstance(blocked, Block) and blocked.fingerprint not in ("", a.fingerprint)
    m1 = engine.decide("vendor", "SELECT `id` FROM customers WHERE id = '1'", dialect="mysql")
    m2 = engine.decide("vendor", "SELECT `id` FROM customers WHERE id = '2'", dialect="mysql")
    assert m1.fingerprint == m2.fingerprint


_PARTS = [
    "SELECT id FROM customers",  # rewritten: LIMIT
    "SELECT relname::text FROM pg_class WHERE false",  # catalog only: sent as written
    "SHOW search_path",
    "SELECT 'x -- not a comment; SELECT 2' AS s FROM customers",
]
_TAILS = ["", " -- trailing; comment\n", " /* block; comment */", "\n-- c\n", " --c\r"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_PARTS), st.sampled_from(_TAILS)), min_size=2, max_size=4))
def test_a_rewritten_string_runs_exactly_the_statements_decided(parts: list[tuple[str, str]]) -> None:
    # A rewrite must keep every separator as the client wrote it: a trailing `--` comment once
    # swallowed the `;` the parts were rejoined with, and the server read other statements.
    engine = Engine(load_policy(EXAMPLES / "demo.yaml"), Schema.load(EXAMPLES / "demo_schema.json"))
    sql = ";".join(text + tail for text, tail in parts)
    d = engine.decide("vendor", sql)
    assert isinstance(d, Allow)
    decided = split(d.rewritten_sql or sql, POSTGRES)
    assert len(decided) == len(parts)
    for chunk, part in zip(decided, d.parts(), strict=True):
        assert part.rewritten_sql is None or chunk.text.startswith(part.rewritten_sql)


def test_prepare_carries_its_body_decision_and_limit(engine: Engine) -> None:
    d = engine.decide("vendor", "PREPARE q AS SELECT id, caller FROM call_records")
    assert isinstance(d, Allow) and d.prepared == PreparedEffect("prepare", "q")
    # What EXECUTE q will be masked and limited by: the body's columns, row limit and rewrite.
    assert [c.action for c in d.columns] == ["clear", "mask"]
    assert d.row_limit == 200 and d.rewritten_sql is not None and d.rewritten_sql.endswith("LIMIT 201")
    multi = engine.decide("vendor", "DEALLOCATE q; PREPARE q AS SELECT id FROM call_records; EXECUTE q")
    assert isinstance(multi, Allow)
    assert [p.prepared for p in multi.parts()] == [
        PreparedEffect("deallocate", "q"),
        PreparedEffect("prepare", "q"),
        PreparedEffect("execute", "q"),
    ]


def test_a_restricted_role_may_not_send_statements_too_long_to_analyse(engine: Engine) -> None:
    from policies.engine import MAX_ANALYSED_CHARS

    e = engine
    long_in = "SELECT id FROM call_records WHERE id IN (" + ",".join(["1"] * (MAX_ANALYSED_CHARS // 2)) + ")"
    d = e.decide("vendor", long_in, database="crm")
    assert isinstance(d, Block) and "longer than" in d.message
    assert isinstance(e.decide("dba", long_in, database="crm"), Allow)


def test_a_learned_shape_builds_each_hits_decision_as_replace_would() -> None:
    a = Allow(
        kind="select",
        columns=(ColumnMask(0, "phone", "mobile", "mask"),),
        row_limit=200,
        detect=frozenset({"mobile"}),
        tables=("public.t",),
        classes=("mobile",),
        lookups=1,
        notes=("n",),
        revision="r",
        fingerprint="f",
    )
    learned = _Learned(a, None, tuple(getattr(a, f) for f in _ALLOW_FIELDS))
    assert [f.name for f in fields(Allow)] == list(_ALLOW_FIELDS)
    assert learned.with_sql("SELECT 1") == replace(a, rewritten_sql="SELECT 1")
