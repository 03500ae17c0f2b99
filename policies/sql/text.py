"""A statement's text for the record: what it says, without its comments.

Owns only rebuilding a statement from its tokens (the dialect's tokenizer, so quotes, dollar
quotes and E'' strings are honoured and a comment inside a string stays): the audit log records
this text, so a long comment cannot push the statement itself out of the record. Never decides
and never rewrites what is sent upstream.
"""

from __future__ import annotations

from sqlglot.dialects.dialect import Dialect

_TOKENIZERS: dict[str, object] = {}


def without_comments(sql: str, dialect: str) -> str:
    """`sql` with every comment removed: when it has any, each run of whitespace or comments
    between two tokens becomes one space; the tokens themselves (strings included) stay as
    written. Text without a comment marker is returned as it is, untokenized (the audit writer
    calls this for every new statement text). Text the tokenizer cannot read is returned as it
    is (the record then shows what was received).

    >>> without_comments("SELECT /* 4,000 characters */ phone -- why\\nFROM t", "postgres")
    'SELECT phone FROM t'
    >>> without_comments("SELECT '/* kept */', $$ -- kept $$", "postgres")
    "SELECT '/* kept */', $$ -- kept $$"
    """
    if "--" not in sql and "/*" not in sql and "#" not in sql:
        return sql
    tok = _TOKENIZERS.get(dialect)
    if tok is None:
        d = Dialect.get_or_raise(dialect)
        tok = _TOKENIZERS[dialect] = d.tokenizer_class(dialect=d)
    try:
        tokens = tok.tokenize(sql)  # type: ignore[attr-defined]
    except Exception:
        return sql
    parts: list[str] = []
    end = -1
    for t in tokens:
        if parts and t.start > end + 1:
            parts.append(" ")
        parts.append(sql[t.start : t.end + 1])
        end = t.end
    return "".join(parts)
