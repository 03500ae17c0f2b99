"""Red team of the fast shape readers (policies/sql/shapes.py, policies/sql/_shapes.c) and of the
shape cache they feed (policies/engine.py), as a vendor who may read masked phone numbers.

Attacks that held (kept as guards): the native scanner and the regex reader answer the
tokenizer's shape or "unsure" on hand-picked texts from every corner the brief names (comments
nested or executable, dollar quotes, prefixed strings, backslashes, MySQL "…" strings, doubled
quotes in names, odd numbers, unicode, NUL, casts, parameters, JSON operators, several
statements, more slots than the scanner counts); and a shape trained with two literals decides a
third one as a fresh engine does, rewritten SQL included, for literals chosen to change a
tokenizer's or sqlglot's reading (intervals, dates, quotes, comment openers inside strings).
Differential fuzzing (300k random token soups) and the C scanner built with
-fsanitize=address,undefined found no difference and no memory error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import Engine, Schema, load_policy
from policies.sql import shapes
from policies.sql.shapes import UNSURE, fast_shape, fast_shape_py, shape_by_tokens, shape_of

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"

_TEXTS = [
    # comments: plain, nested, executable, MySQL's `#` and `--` without a space
    "SELECT id FROM t WHERE a = 1 /* 'x' */",
    "SELECT id /* a /* b */ c */ FROM t WHERE x = 1",
    "SELECT id /* a /* b */ , 2 */ FROM t WHERE x = 'y'",
    "SELECT id /*! , 2 */ FROM t WHERE x = 1",
    "SELECT id /*!50000 , 'a*/' */ FROM t WHERE x = 1",
    "SELECT id FROM t WHERE x = 1 #, 2\n",
    "SELECT id FROM t WHERE x = 1--1",
    "SELECT id FROM t WHERE x = 1 -- 1\n AND y = 2",
    "SELECT id FROM t WHERE x = '--' AND y = '/*'",
    # dollar quotes, with and without tags, holding quotes
    "SELECT id FROM t WHERE x = $$a'b$$ AND y = 1",
    "SELECT id FROM t WHERE x = $q$ ' $$ ' $q$ AND y = 'z'",
    "SELECT id FROM t WHERE x = $1 AND y = 'z'",
    "SELECT id FROM t WHERE x = ? AND y = 'z'",
    # prefixed strings and backslashes
    "SELECT id FROM t WHERE x = E'a\\'b' AND y = 1",
    "SELECT id FROM t WHERE x = e'x' AND y = 1",
    "SELECT id FROM t WHERE x = U&'d\\0061t' AND y = 1",
    "SELECT id FROM t WHERE x = N'x' AND y = X'1F' AND z = B'101'",
    "SELECT id FROM t WHERE x = _utf8mb4'x' AND y = 1",
    "SELECT id FROM t WHERE x = 'a\\' AND y = ' OR 1=1 --'",
    "SELECT id FROM t WHERE x = 'a\\'' AND y = 1",
    # MySQL "…" strings, quoted names with doubled quotes
    'SELECT id FROM t WHERE x = "a" AND y = 1',
    'SELECT "a""b" FROM t WHERE x = 1',
    'SELECT "a""\'" FROM t WHERE x = \'1\'',
    "SELECT `a``b` FROM t WHERE x = 1",
    "SELECT `a``'` FROM t WHERE x = '1'",
    "SELECT `a\\` FROM t WHERE x = '1'",
    # numbers
    "SELECT id FROM t WHERE x = 1e5",
    "SELECT id FROM t WHERE x = .5",
    "SELECT id FROM t WHERE x = 1.",
    "SELECT id FROM t WHERE x = 0x1F",
    "SELECT id FROM t WHERE x = 1_000",
    "SELECT id FROM t WHERE x = 1.5.3",
    "SELECT id FROM t WHERE x = 00012",
    "SELECT id FROM t WHERE x = 1a",
    "SELECT id FROM t WHERE x = t.1",
    "SELECT id FROM t WHERE x = 99999999999999999999999999999",
    # unicode, NUL, odd spacing
    "SELECT id FROM t WHERE x = '张三' AND y = 1",
    "SELECT id FROM t WHERE x =\u30001",
    "SELECT id FROM t WHERE x = '\x00' AND y = 1",
    "SELECT id FROM t WHERE x = 1\x00",
    "SELECT id FROM t WHERE x = '\U0001f600' AND \"\U0001f600\" = 2",
    "SELECT id FROM t WHERE x = 1\f",
    "SELECT id FROM t WHERE x = 1\u2028",
    "SELECT id FROM t WHERE x = 'a'\n'b'",
    # casts, operators, subscripts
    "SELECT id FROM t WHERE x = 1::int AND y = '2'::text",
    "SELECT id FROM t WHERE d->>'phone' = '1' AND d #>> '{a}' = '2'",
    "SELECT id FROM t WHERE a <@ b AND b @> '{1}'",
    "SELECT id FROM t WHERE a[1] = 2 AND a[1:2] = '{3}'",
    "SELECT id FROM t WHERE a |/ 25 = 5 AND b !~ 'x'",
    "SELECT id FROM t WHERE a := 1",
    # several statements, semicolons
    "SELECT id FROM t WHERE x = 1; SELECT 2",
    "SELECT id FROM t WHERE x = ';' ;",
    "SELECT id FROM t WHERE x = 1;;",
    "SELECT id FROM t WHERE x = 1;  \n",
    # unterminated quotes
    "SELECT id FROM t WHERE x = 'a",
    'SELECT id FROM "t WHERE x = 1',
    "SELECT id FROM t WHERE x = 'a \"b' AND \"c' = 1",
]


@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
@pytest.mark.parametrize("sql", _TEXTS)
def test_the_fast_readers_answer_the_tokenizers_shape_or_unsure(sql: str, dialect: str) -> None:
    reference = shape_by_tokens(sql, dialect)
    for fast in (fast_shape(sql, dialect), fast_shape_py(sql, dialect)):
        assert fast is UNSURE or fast == reference
    assert shape_of(sql, dialect) == reference


@pytest.mark.skipif(shapes._native is None, reason="native scanner not built (or MASKGATE_PURE=1)")
def test_the_native_scanner_holds_on_huge_and_odd_input() -> None:
    native = shapes._native
    string, number = shapes._TT_STRING, shapes._TT_NUMBER
    # 1024 slots fit its arrays; one more is unsure, never a write past them.
    assert len(native.scan("SELECT " + ",".join(["1"] * 1024), False, string, number)[1]) == 1024
    assert native.scan("SELECT " + ",".join(["1"] * 1025), False, string, number) is None
    big = "SELECT '" + "a" * 2_000_000 + "' FROM t"
    assert native.scan(big, False, string, number)[1][0] == big[7:-7]
    assert native.scan("\U0001f600'a'", False, string, number) is None
    with pytest.raises(TypeError):
        native.scan(b"SELECT 1", False, string, number)
    with pytest.raises(TypeError):
        native.scan("SELECT 1", False, string)


def _engines() -> tuple[Engine, Engine]:
    policy = load_policy(EXAMPLES / "demo.yaml")
    schema = Schema.load(EXAMPLES / "demo_schema.json")
    return Engine(policy, schema), Engine(policy, schema)


# (template, two training literals, the third literal, dialect)
_SEQUENCES = [
    ("SELECT phone FROM customers WHERE id = {}", ["1", "2"], "1.5", "postgres"),
    ("SELECT phone FROM customers WHERE id = {}", ["1", "2"], "99999999999999999999999", "postgres"),
    ("SELECT name FROM customers WHERE id = {}", ["'1'", "'2'"], "'it''s'", "postgres"),
    ("SELECT name FROM customers WHERE id = {}", ["'1'", "'2'"], "'*/ , phone /*'", "postgres"),
    ("SELECT name FROM customers WHERE id = {}", ["'1'", "'2'"], "'$$'", "postgres"),
    ("SELECT {} AS phone FROM customers", ["'a'", "'b'"], "'13812345678'", "postgres"),
    ("SELECT {} AS x, id FROM customers", ["'a'", "'b'"], "'mgslot00000000x0'", "postgres"),
    (
        "SELECT id FROM customers WHERE created_at > now() - interval {}",
        ["'abc'", "'xyz'"],
        "'1 day'",
        "postgres",
    ),
    (
        "SELECT id FROM customers WHERE created_at > {}::date",
        ["'2024-01-01'", "'2024-01-02'"],
        "'today'",
        "postgres",
    ),
    ("SELECT id FROM customers WHERE id IN ({}, 2)", ["1", "3"], "4", "postgres"),
    ("SELECT id, phone FROM customers WHERE id = {} ORDER BY 1", ["1", "3"], "4", "postgres"),
    ("SELECT id FROM customers WHERE id = {} /* x */", ["1", "2"], "3", "mysql"),
    ("SELECT id, phone FROM customers WHERE id = {}", ["1", "2"], "3", "mysql"),
    ("SELECT id, name FROM customers WHERE id = 1 AND {} = 'x'", ["'a'", "'b'"], "'/*!'", "mysql"),
]


@pytest.mark.parametrize(("template", "training", "third", "dialect"), _SEQUENCES)
def test_a_trained_shape_decides_a_third_literal_as_a_fresh_engine(
    template: str, training: list[str], third: str, dialect: str
) -> None:
    warm, cold = _engines()
    for v in training:
        warm.decide("vendor", template.format(v), dialect=dialect)
    sql = template.format(third)
    assert warm.decide("vendor", sql, dialect=dialect) == cold.decide("vendor", sql, dialect=dialect)


# --- found on the way, outside the cache (a fresh engine decides the same) --------------------

MYSQL_SCHEMA = Path(__file__).resolve().parent / "data" / "demo_schema_mysql.json"


def test_the_desks_equality_with_a_number_on_a_masked_text_column_is_refused_in_mysql() -> None:
    policy = load_policy([EXAMPLES / "demo.yaml", Path(__file__).resolve().parent / "data" / "writers.yaml"])
    engine = Engine(policy, Schema.load(MYSQL_SCHEMA))
    for sql in (
        "SELECT id FROM customers WHERE phone = 138",
        "SELECT id FROM customers WHERE id_card = 11010119900307777",
        "SELECT id FROM customers WHERE phone IN (138, 139)",
    ):
        assert not engine.decide("service_desk", sql, dialect="mysql", database="crm").allowed, sql


@pytest.mark.xfail(
    strict=True,
    reason="MySQL: a shape learned from plain strings renders a later string's NUL, newline, tab, "
    "CR, backspace or Ctrl-Z raw where a fresh rewrite escapes it (\\0 \\n \\t …); the same value "
    "under the sql_modes restricted roles may use, but not the fresh decision",
)
@pytest.mark.parametrize("char", ["\x00", "\n", "\t", "\x1a"])
def test_a_control_character_in_a_mysql_string_is_rendered_as_a_fresh_rewrite(char: str) -> None:
    policy = load_policy([EXAMPLES / "demo.yaml", Path(__file__).resolve().parent / "data" / "writers.yaml"])
    schema = Schema.load(MYSQL_SCHEMA)
    warm, cold = Engine(policy, schema), Engine(policy, schema)
    template = "SELECT id, phone FROM customers WHERE id = 1 AND {} = 'x'"
    for v in ("'a'", "'b'"):
        warm.decide("vendor", template.format(v), dialect="mysql", database="crm")
    sql = template.format(f"'x{char}y'")
    got = warm.decide("vendor", sql, dialect="mysql", database="crm")
    assert warm.shape_hits == 1
    assert got == cold.decide("vendor", sql, dialect="mysql", database="crm")


@pytest.mark.xfail(
    strict=True,
    reason="the decision caches key search_path=None (the server's default path) and an empty path "
    "(SET search_path = '') both as (): a decision made for one is reused for the other, "
    "`public.customers` where a fresh one names `customers` unresolved",
)
def test_an_empty_search_path_does_not_share_the_default_paths_cache_entry() -> None:
    warm, cold = _engines()
    sql = "SELECT phone FROM customers WHERE id = 1"
    warm.decide("vendor", sql, search_path=None)
    assert warm.decide("vendor", sql, search_path=[]) == cold.decide("vendor", sql, search_path=[])
