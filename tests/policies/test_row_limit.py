"""The row-limit rewrite: the limit the server applies is the smaller of the client's own and
the role's max_rows + 1, whatever form the client's limit takes and wherever the statement has it.

The rewritten tree is evaluated here (literals, LEAST, CAST, + and *, a parameter's value), so
the property holds of the SQL the server receives, not of the rewrite's intentions."""

from __future__ import annotations

import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from policies.rewrite import apply_limit

# PostgreSQL's statement forms the row limit applies to; {limit} is the client's limit clause.
FORMS = (
    "SELECT id FROM t ORDER BY id {limit}",
    "SELECT id FROM t UNION ALL SELECT id FROM u {limit}",
    "WITH c AS (SELECT id FROM t LIMIT 3) SELECT id FROM c {limit}",
    "SELECT id FROM (SELECT id FROM t LIMIT 2) AS s {limit}",
    "COPY (SELECT id FROM t {limit}) TO STDOUT",
    "COPY (SELECT id FROM t UNION SELECT id FROM u {limit}) TO STDOUT",
)


def _value(node: exp.Expression | None, param: int | None) -> int | None:
    """The count the server computes for a LIMIT expression; None means no limit."""
    if node is None or isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Var) and node.name.upper() == "ALL":
        return None
    if isinstance(node, exp.Literal):
        return int(node.this)
    if isinstance(node, exp.Parameter):
        return param
    if isinstance(node, exp.Cast | exp.Paren):
        return _value(node.this, param)
    if isinstance(node, exp.Add | exp.Mul):
        a, b = _value(node.this, param), _value(node.expression, param)
        if a is None or b is None:
            return None
        return a + b if isinstance(node, exp.Add) else a * b
    if isinstance(node, exp.Least):
        values = [v for v in (_value(e, param) for e in [node.this, *node.expressions]) if v is not None]
        return min(values) if values else None  # LEAST ignores NULLs
    raise AssertionError(f"unexpected limit expression {node.sql('postgres')}")


def _effective(tree: exp.Expression, param: int | None) -> int | None:
    """The limit of the statement's own query (the one a COPY reads)."""
    query = tree.this.this if isinstance(tree, exp.Copy) else tree
    limit = query.args.get("limit")
    if limit is None:
        return None
    if isinstance(limit, exp.Fetch):
        count = limit.args.get("count")
        return 1 if count is None else _value(count, param)
    return _value(limit.expression, param)


# The client's limit: (clause, what it asks for, the value of $1).
user_limits = st.one_of(
    st.just(("", None, None)),
    st.just(("LIMIT ALL", None, None)),
    st.just(("LIMIT NULL", None, None)),
    st.integers(0, 10_000).map(lambda v: (f"LIMIT {v}", v, None)),
    st.integers(0, 10_000).map(lambda v: (f"LIMIT {v} OFFSET 7", v, None)),
    st.integers(1, 10_000).map(lambda v: (f"FETCH FIRST {v} ROWS ONLY", v, None)),
    st.integers(0, 10_000).map(lambda v: ("LIMIT $1", v, v)),
    st.integers(0, 10_000).map(lambda v: ("FETCH NEXT $1 ROWS ONLY", v, v)),
    st.integers(0, 5_000).map(lambda v: (f"LIMIT {v} + 2", v + 2, None)),
    st.integers(0, 5_000).map(lambda v: (f"LIMIT ($1 * {v})", 3 * v, 3)),
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(FORMS), user_limits, st.integers(0, 5_000))
def test_effective_limit_is_the_smaller(
    form: str, user: tuple[str, int | None, int | None], max_rows: int
) -> None:
    clause, asked, param = user
    tree = sqlglot.parse_one(form.format(limit=clause), read="postgres")
    bounded = apply_limit(tree, max_rows)
    expected = max_rows + 1 if asked is None else min(asked, max_rows + 1)
    assert _effective(bounded, param) == expected, bounded.sql("postgres")


@given(st.integers(0, 10_000), st.integers(0, 5_000))
def test_a_literal_limit_within_the_bound_is_left_as_written(asked: int, max_rows: int) -> None:
    sql = f"COPY (SELECT id FROM t LIMIT {asked}) TO STDOUT"
    bounded = apply_limit(sqlglot.parse_one(sql, read="postgres"), max_rows).sql("postgres")
    if asked <= max_rows + 1:
        assert bounded == sql
    else:
        assert bounded == f"COPY (SELECT id FROM t LIMIT {max_rows + 1}) TO STDOUT"


def test_mysql_placeholder_limit_is_wrapped() -> None:
    """MySQL's LIMIT takes no expression: its `LIMIT ?` is kept and the query bounded outside."""
    tree = sqlglot.parse_one("SELECT id FROM t LIMIT ?", read="mysql")
    out = apply_limit(tree, 200, expressions=False).sql("mysql")
    assert out == "SELECT * FROM (SELECT id FROM t LIMIT ?) AS _maskgate LIMIT 201"
    small = sqlglot.parse_one("SELECT id FROM t LIMIT 5", read="mysql")
    assert apply_limit(small, 200, expressions=False).sql("mysql") == "SELECT id FROM t LIMIT 5"
