"""The name a call is judged by comes from rendering the call alone, not its whole subtree.

server_function_name renders a typed call with its argument trees stood in for (decide._shallow),
so nested calls cost linear, not quadratic, time. These tests hold it to the full rendering over
every statement of the decision fixtures, and show the depth that used to stall the proxy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import sqlglot
import yaml
from sqlglot import exp
from sqlglot.errors import ErrorLevel
from sqlglot.tokens import TokenType

from policies.decide import server_function_name
from policies.sql.dialects import POSTGRES

FIXTURES = Path(__file__).parent / "fixtures"


def _full_rendering_name(node: exp.Func, name: str) -> str | None:
    """The former rule: render the whole node and read its leading call name."""
    text = node.sql(dialect=POSTGRES.sqlglot, unsupported_level=ErrorLevel.IGNORE)
    tokens = sqlglot.tokenize(text, read=POSTGRES.sqlglot)
    if len(tokens) < 2 or tokens[1].token_type != TokenType.L_PAREN:
        return None
    rendered = tokens[0].text.lower()
    if (not rendered[:1].isalpha() and rendered[:1] != "_") or rendered in POSTGRES.syntax_calls:
        return None
    return POSTGRES.function_aliases.get(rendered, rendered)


def _called(node: exp.Func) -> str:
    return node.name.lower() if isinstance(node, exp.Anonymous) else node.sql_name().lower()


def _fixture_sql() -> Iterator[str]:
    def walk(o: object) -> Iterator[str]:
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "sql" and isinstance(v, str):
                    yield v
                else:
                    yield from walk(v)
        elif isinstance(o, list):
            for x in o:
                yield from walk(x)

    for path in sorted(FIXTURES.glob("*.yaml")):
        yield from walk(yaml.safe_load(path.read_text()))


def test_calls_are_named_as_the_full_rendering_names_them() -> None:
    logging.getLogger("sqlglot").setLevel(logging.CRITICAL)
    checked = 0
    for sql in _fixture_sql():
        try:
            trees = sqlglot.parse(sql, read="postgres")
        except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
            continue
        for tree in trees:
            for node in tree.find_all(exp.Func) if tree is not None else ():
                if isinstance(node, exp.Anonymous):
                    continue
                name = node.sql_name().lower()
                want = _full_rendering_name(node, name)
                got = server_function_name(node, name, POSTGRES)
                # The full rendering of an operator starts with its left operand: when that is a
                # call, it named the nested call, which is judged as its own node anyway.
                nested = {_called(c) for c in node.find_all(exp.Func) if c is not node}
                assert got == want or (got is None and want in nested), sql
                checked += 1
    assert checked > 300


def test_deeply_nested_calls_are_named_without_rendering_their_subtrees() -> None:
    depth = 300
    sql = "SELECT " + "coalesce(upper(" * depth + "name" + "), '')" * depth + " FROM customers"
    tree = sqlglot.parse_one(sql, read="postgres")
    calls = list(tree.find_all(exp.Upper))
    assert len(calls) == depth
    # Rendering each call whole would render depth² / 2 nodes; the stand-ins keep each small.
    assert all(server_function_name(c, "upper", POSTGRES) == "upper" for c in calls)
