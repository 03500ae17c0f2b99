"""The statement text the audit log records: its tokens as written, without comments."""

from __future__ import annotations

import doctest

import pytest

from policies.sql import text
from policies.sql.text import without_comments


def test_doctests() -> None:
    assert doctest.testmod(text).failed == 0


@pytest.mark.parametrize(
    ("sql", "want"),
    [
        ("SELECT/**/phone/* x */FROM t", "SELECT phone FROM t"),
        ("SELECT 1 -- tail", "SELECT 1"),
        ("/* lead */ UPDATE t SET a = 1", "UPDATE t SET a = 1"),
        ("SELECT '-- not a comment', \"a/*b*/\" FROM t", "SELECT '-- not a comment', \"a/*b*/\" FROM t"),
        ("SELECT E'it''s /* x */', $q$ /* y */ $q$", "SELECT E'it''s /* x */', $q$ /* y */ $q$"),
        ("SELECT  1,\n\t2 /* x */", "SELECT 1, 2"),
        ("SELECT  1,\n\t2", "SELECT  1,\n\t2"),  # no comment: as received
        ("SELECT (1)", "SELECT (1)"),
        ("/* only a comment */", ""),
        ("SELECT 'unterminated", "SELECT 'unterminated"),  # unreadable: kept as received
    ],
)
def test_comments_go_and_everything_else_stays(sql: str, want: str) -> None:
    assert without_comments(sql, "postgres") == want


def test_mysql_backticks_and_hash_comments() -> None:
    assert without_comments("SELECT `a` # why\nFROM t", "mysql") == "SELECT `a` FROM t"
