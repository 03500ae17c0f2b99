"""Property: a decision reused from the shape cache equals the decision a full analysis makes.

Over the DBA fixture corpus, each statement's free literal slots (policies/sql/shapes.py) get other
literals: setting names, table names, catalog names, words, numbers. An engine that has seen two
statements of the shape (and so may have learned it) must decide a third exactly as a fresh
engine does, rewritten SQL included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot.tokens import TokenType

from policies import Engine, Schema, load_policy
from policies.cases import _role_for
from policies.decision import Decision
from policies.sql.dialects import MYSQL, POSTGRES, dialect_facts
from policies.sql.shapes import Sentinels, Shape, Slots, free_slots, shape_of

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXAMPLES = Path(__file__).resolve().parents[3] / "policies" / "examples"

# Values a rule could read: setting names (safe, identity, lexical), relation and schema names,
# setting values, and plain words.
_WORDS = sorted(
    POSTGRES.safe_settings
    | POSTGRES.identity_settings
    | frozenset(POSTGRES.lexical_settings)
    | MYSQL.identity_settings
    | frozenset(MYSQL.lexical_settings)
    | {"customers", "audit_trail", "pg_authid", "pg_stats", "public", "pg_catalog", "information_schema"}
    | {"on", "off", "GBK", "UTF8", "replica", "postgres", "", "x", "1", "2024-01-01", "138%", "a'b"}
)


def _case_engines() -> list[tuple[Any, Schema, str, str, str, str | None, tuple[str, ...] | None]]:
    out = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        pol = doc["policy"]
        policy = load_policy([path.parent / p for p in pol] if isinstance(pol, list) else path.parent / pol)
        schema = Schema.load(path.parent / doc["schema"]) if doc.get("schema") else Schema()
        for case in doc.get("cases") or []:
            role = _role_for(policy, case)
            if role is None:
                continue
            sp = case.get("search_path")
            out.append(
                (
                    policy,
                    schema,
                    role,
                    case["sql"],
                    case.get("dialect", "postgres"),
                    case.get("database"),
                    tuple(sp) if sp else None,
                )
            )
    return out


def _corpus() -> list[tuple[Any, ...]]:
    """Every fixture statement with a shape that has free slots, with its slots."""
    sentinels = Sentinels()
    out = []
    for policy, schema, role, sql, dialect, database, sp in _case_engines():
        shape = shape_of(sql, dialect)
        if shape is None:
            continue
        slots = free_slots(shape, dialect_facts(dialect), sentinels)
        if slots is None:
            continue
        out.append((policy, schema, role, sql, dialect, database, sp, shape, slots))
    return out


CORPUS = _corpus()


def _literal(tt: TokenType) -> st.SearchStrategy[str]:
    if tt == TokenType.NUMBER:
        return st.one_of(
            st.integers(min_value=0, max_value=10**9).map(str),
            st.tuples(st.integers(0, 999), st.integers(0, 99)).map(lambda p: f"{p[0]}.{p[1]}"),
        )
    words = st.sampled_from(_WORDS)
    text = st.one_of(words, words, words, st.text("abcXYZ_ -'%0123", max_size=8))
    return text.map(lambda v: "'" + v.replace("'", "''") + "'")


def _respelled(shape: Shape, slots: Slots, raws: dict[int, str]) -> str:
    parts, last = [], 0
    for i, (start, end) in enumerate(shape.spans):
        if i in raws:
            parts += [shape.text[last:start], raws[i]]
            last = end
    parts.append(shape.text[last:])
    return "".join(parts)


@st.composite
def _variants(draw: st.DrawFn, shape: Shape, slots: Slots) -> list[str]:
    out = []
    for _ in range(3):
        raws = {i: draw(_literal(shape.types[i])) for i in sorted(slots.free)}
        out.append(_respelled(shape, slots, raws))
    return out


_ENGINES: dict[int, tuple[Engine, Engine]] = {}


def _engines(policy: Any, schema: Schema) -> tuple[Engine, Engine]:
    """A (warm, cold) pair per fixture file; tests empty their decision caches as they need."""
    key = id(policy)
    if key not in _ENGINES:
        _ENGINES[key] = (Engine(policy, schema), Engine(policy, schema))
    return _ENGINES[key]


def _decide(engine: Engine, case: tuple[Any, ...], sql: str) -> Decision:
    _, _, role, _, dialect, database, sp, *_ = case
    return engine.decide(role, sql, dialect=dialect, search_path=sp, database=database)


def test_the_corpus_has_shapes() -> None:
    assert len(CORPUS) >= 100


@pytest.mark.parametrize("case", CORPUS, ids=[c[3][:60] for c in CORPUS])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_cached_decision_equals_the_uncached_one(case: tuple[Any, ...], data: st.DataObject) -> None:
    policy, schema, *_, shape, slots = case
    first, second, third = data.draw(_variants(shape, slots))
    warm, cold = _engines(policy, schema)
    warm.clear_cache()
    for sql in (case[3], first, second):
        _decide(warm, case, sql)
    cold.clear_cache()  # every decision cache emptied: a full analysis
    assert _decide(warm, case, third) == _decide(cold, case, third), third


def test_the_shape_cache_is_used_where_it_can_be() -> None:
    """The property above must not hold vacuously: point lookups and writes are served by shape."""
    hits = 0
    for case in CORPUS:
        policy, schema, *_, shape, slots = case
        warm = Engine(policy, schema)
        for n in range(3):
            raws = {i: (f"'v{n}'" if shape.types[i] != TokenType.NUMBER else str(n + 7)) for i in slots.free}
            _decide(warm, case, _respelled(shape, slots, raws))
        hits += warm.shape_hits
    assert hits >= len(CORPUS) // 3


def test_a_setting_named_in_a_literal_is_never_reused() -> None:
    """The issue's case: pg_dump's form allowed for application_name must not carry over to
    session_replication_role, which is refused when asked directly."""
    engine = Engine(load_policy(EXAMPLES / "demo.yaml"), Schema.load(EXAMPLES / "demo_schema.json"))
    sql = "SELECT set_config(name, 'replica', false) FROM pg_settings WHERE name = '{}'"
    for name in ("application_name", "application_name", "statement_timeout", "lock_timeout"):
        assert engine.decide("vendor", sql.format(name)).allowed
    d = engine.decide("vendor", sql.format("session_replication_role"))
    assert not d.allowed and engine.shape_hits == 0
