"""The regex fast path of shape_of equals the tokenizer's reading wherever it answers.

Statements are built from the pgbench / ORM statement grammar, then salted with what the fast
path must recognise as outside its subset (comments, dollar quotes, E'' and other prefixed
strings, backslashes, unicode, parameters, several statements) in both dialects."""

from __future__ import annotations

from dataclasses import fields

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from policies.sql import shapes
from policies.sql.shapes import UNSURE, Shape, fast_shape, fast_shape_py, shape_by_tokens, shape_of

_NAMES = st.sampled_from(["id", "aid", "abalance", "t1", "c_2", "customers", "pgbench_accounts", "Name", "x"])
_QUOTED_NAMES = st.sampled_from(
    ['"id"', '"a\\b"', "`a\\b`", '"a b"', '"it\'s"', '"x""y"', "`id`", "`a'b`", '""']
)
_NUMBERS = st.one_of(
    st.integers(0, 10**12).map(str),
    st.sampled_from(["1.5", "0.25", "1.", ".5", "1e5", "1E-3", "0x1F", "1_000", "00", "12abc", "3.14.15"]),
)
_STRING_BODIES = st.lists(
    st.one_of(
        st.sampled_from([*"ab 09'\"\\;-/*#$`%_", "''", "--", "/*", "*/", "\n", "\u3000", "张", "\U0001f600"]),
        st.characters(),
    ),
    max_size=8,
).map("".join)
_STRINGS = st.one_of(
    _STRING_BODIES.map(lambda b: "'" + b.replace("'", "''") + "'"),
    _STRING_BODIES.map(lambda b: "'" + b + "'"),  # maybe unterminated or split
    st.sampled_from(
        [
            "E'a\\'b'",
            "e'x'",
            "N'x'",
            "X'1F'",
            "B'101'",
            "U&'d\\0061t'",
            "_utf8mb4'x'",
            '"s"',
            "$$a$$",
            "$t$b$t$",
        ]
    ),
)
_OPS = st.sampled_from(["=", "<>", "!=", "<", ">=", "+", "-", "*", "/", "%", "||", "::", ":", "!", ",", "."])
_SPACE = st.sampled_from([" ", "", "  ", "\n", "\t", "\r\n", " /* c */ ", " -- c\n", "#c\n", "\u3000", "\f"])
_ATOMS = st.one_of(
    _NAMES,
    _QUOTED_NAMES,
    _NUMBERS,
    _STRINGS,
    _OPS,
    st.sampled_from(["(", ")", "$1", "?", "@x", "[", "]", ";", "&"]),
)

_TEMPLATES = st.sampled_from(
    [
        "SELECT abalance FROM pgbench_accounts WHERE aid = {v};",
        "SELECT id, name, phone, id_card FROM customers WHERE id = {v}",
        "UPDATE pgbench_accounts SET abalance = abalance + {v} WHERE aid = {w};",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
        "VALUES ({v}, {w}, {v}, {w}, CURRENT_TIMESTAMP);",
        'SELECT "t"."id", "t"."name" FROM "customers" AS "t" WHERE "t"."name" = {v} LIMIT {w}',
        "SELECT `t`.`id` FROM `customers` `t` WHERE `t`.`phone` IN ({v}, {w}) ORDER BY 1",
        "SELECT * FROM t WHERE a BETWEEN {v} AND {w} OR b LIKE {v}",
        "SELECT {v}::int, CAST({w} AS text) FROM t",
        "DELETE FROM t WHERE id = {v}; SELECT {w}",
    ]
)


def _value() -> st.SearchStrategy[str]:
    return st.one_of(_NUMBERS, _STRINGS, st.builds("-{}".format, _NUMBERS))


_GRAMMAR = st.builds(lambda t, v, w: t.format(v=v, w=w), _TEMPLATES, _value(), _value())
_SOUP = st.lists(st.tuples(_ATOMS, _SPACE), max_size=14).map(lambda xs: "".join(a + s for a, s in xs))
_STATEMENTS = st.one_of(_GRAMMAR, _SOUP, st.builds(lambda a, s, b: a + s + b, _GRAMMAR, _SPACE, _SOUP))


@settings(max_examples=3000, deadline=None)
@given(_STATEMENTS, st.sampled_from(["postgres", "mysql"]))
@example("SELECT abalance FROM pgbench_accounts WHERE aid = 4821;", "postgres")
@example("SELECT x FROM t WHERE a = 'it''s' AND b = '张三';", "mysql")
@example("SELECT 1;;", "postgres")
@example("SELECT a FROM t WHERE b = 1;  ", "postgres")
def test_the_fast_shape_is_the_tokenizers_or_unsure(sql: str, dialect: str) -> None:
    reference = shape_by_tokens(sql, dialect)
    for fast in (fast_shape(sql, dialect), fast_shape_py(sql, dialect)):
        if fast is not UNSURE:
            assert fast == reference
    assert shape_of(sql, dialect) == reference


@pytest.mark.skipif(shapes._native is None, reason="native scanner not built (or MASKGATE_PURE=1)")
@settings(max_examples=3000, deadline=None)
@given(_STATEMENTS, st.sampled_from(["postgres", "mysql"]))
def test_the_native_scanner_is_the_python_fast_path(sql: str, dialect: str) -> None:
    # The same rules: the same answer, unsure included (but for more slots than it counts).
    assert fast_shape(sql, dialect) == fast_shape_py(sql, dialect) or fast_shape(sql, dialect) is UNSURE
    if fast_shape(sql, dialect) is UNSURE:
        assert fast_shape_py(sql, dialect) is UNSURE


def test_the_statements_of_pgbench_and_orms_take_the_fast_path() -> None:
    for sql, dialect in [
        ("SELECT abalance FROM pgbench_accounts WHERE aid = 4821;", "postgres"),
        ("UPDATE pgbench_accounts SET abalance = abalance + -3271 WHERE aid = 77;", "postgres"),
        ('SELECT "t"."id" FROM "customers" AS "t" WHERE "t"."name" = \'张三\' LIMIT 21', "postgres"),
        ("SELECT `t`.`id` FROM `customers` `t` WHERE `t`.`phone` = '13800138000'", "mysql"),
    ]:
        fast = fast_shape(sql, dialect)
        assert fast is not UNSURE and fast is not None, sql
        assert fast == shape_by_tokens(sql, dialect)


def test_a_statement_with_more_slots_than_the_scanner_counts_is_read_by_the_tokenizer() -> None:
    sql = "SELECT * FROM t WHERE id IN (" + ", ".join(str(i) for i in range(1500)) + ")"
    assert shape_of(sql, "postgres") == shape_by_tokens(sql, "postgres")
    assert fast_shape_py(sql, "postgres") == shape_by_tokens(sql, "postgres")


def test_the_native_path_sets_every_field_of_a_shape() -> None:
    assert [f.name for f in fields(Shape)] == ["key", "raws", "types", "text", "spans"]
    sql = "SELECT a FROM t WHERE b = 'x' AND c = 2"
    assert repr(fast_shape(sql, "postgres")) == repr(shape_by_tokens(sql, "postgres"))
