"""COPY's option list as the server reads it: parenthesized and legacy forms, rendered back in
one canonical form that reads the same, never as more than the one statement it was."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.sql import nodes
from policies.sql.dialects import POSTGRES
from policies.sql.parser import COPY_OPTIONS_META, Unparsable, parse_one, split


def options(sql: str) -> nodes.CopyOptions:
    opts = parse_one(sql, POSTGRES).meta[COPY_OPTIONS_META]
    assert isinstance(opts, nodes.CopyOptions)
    return opts


def rendered(sql: str) -> str:
    return nodes.render(parse_one(sql, POSTGRES), "postgres")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("COPY t TO STDOUT", "COPY t TO STDOUT"),
        ("COPY (SELECT 1) TO STDOUT (FORMAT csv, HEADER)", "COPY (SELECT 1) TO STDOUT (format csv, header)"),
        (
            "COPY t TO STDOUT (FORMAT csv, HEADER true, DELIMITER ';', QUOTE '\"', FORCE_QUOTE *, NULL 'x', "
            "ENCODING 'UTF8')",
            "COPY t TO STDOUT (format csv, header true, delimiter ';', quote '\"', force_quote *, null 'x', "
            "encoding 'UTF8')",
        ),
        ("COPY t TO STDOUT WITH CSV HEADER", "COPY t TO STDOUT (format csv, header)"),
        ("COPY t TO STDOUT BINARY", "COPY t TO STDOUT (format binary)"),
        ("COPY BINARY t TO STDOUT", "COPY t TO STDOUT (format binary)"),
        ("COPY t TO STDOUT WITH (FORMAT binary)", "COPY t TO STDOUT (format binary)"),
        ("COPY t TO STDOUT USING DELIMITERS '|'", "COPY t TO STDOUT (delimiter '|')"),
        (
            "COPY t (a, b) TO STDOUT WITH CSV DELIMITER AS ';' NULL AS 'n' QUOTE AS '''' ESCAPE '\\' "
            "FORCE QUOTE a, b",
            "COPY t (a, b) TO STDOUT (format csv, delimiter ';', null 'n', quote '''', escape '\\', "
            'force_quote ("a", "b"))',
        ),
        (
            'COPY t TO STDOUT (FORMAT "CSV", force_quote ("Id", b))',
            'COPY t TO STDOUT (format "CSV", force_quote ("Id", "b"))',
        ),
        (
            "COPY t TO STDOUT (FORMAT 'csv', HEADER 1, x -1)",
            "COPY t TO STDOUT (format 'csv', header 1, x -1)",
        ),
        ("COPY t TO PROGRAM 'cat' (FORMAT csv)", "COPY t TO PROGRAM 'cat' (format csv)"),
        ("COPY t FROM STDIN (FORMAT csv)", "COPY t FROM STDIN (format csv)"),
    ],
)
def test_forms_and_their_canonical_rendering(sql: str, expected: str) -> None:
    assert rendered(sql) == expected
    assert options(expected) == options(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "COPY t TO STDOUT (DELIMITER E'\\t')",  # an E'…' value: sqlglot's escapes, not the server's
        "COPY t TO STDOUT (FORMAT $$csv$$)",
        "COPY t TO STDOUT (FORMAT csv,)",
        "COPY t TO STDOUT (FORMAT csv) extra",
        "COPY t TO STDOUT (FORMAT csv) (x)",
        "COPY t TO STDOUT ()",
        "COPY t TO STDOUT (FORMAT csv, FORMAT text)",
        "COPY t TO STDOUT CSV CSV",
        "COPY t TO STDOUT DELIMITER 'a' 'b'",
        "COPY t TO STDOUT (DELIMITER 'a' 'b')",
        "COPY t TO STDOUT FORCE SOMETHING a",
        "COPY t TO STDOUT (FORMAT csv) WHERE a > 1",
        "LOCK ONLY t * IN ACCESS SHARE MODE",
    ],
)
def test_what_is_not_understood(sql: str) -> None:
    with pytest.raises(Unparsable):
        parse_one(sql, POSTGRES)


names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(names, names, names)
def test_rendering_is_one_statement_that_reads_the_same(name: str, word: str, string: str) -> None:
    """Quoted names, quoted words and strings with any characters (quotes, semicolons, comment
    starts) render into the same options and nothing more."""

    def ident(s: str) -> str:
        return '"' + s.replace('"', '""') + '"'

    sql = f"COPY t TO STDOUT ({ident(name)} {ident(word)}, null '{string.replace(chr(39), chr(39) * 2)}')"
    try:
        first = options(sql)
    except Unparsable:
        return  # refused: nothing is rendered
    out = rendered(sql)
    assert len(split(out, POSTGRES)) == 1
    assert options(out) == first
