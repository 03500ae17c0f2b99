"""Statement shapes: a statement's tokens with its plain literals taken out, for the decision cache.

Owns: the shape key of a statement (sqlglot's tokenizer, so quotes, dollar-quotes and comments are
honoured), which literal slots of a shape may vary without changing the decision, and templates
of the rewritten SQL into which each statement's own literals are put back. Never decides and
never caches: policies/engine.py does both. Never edits SQL by pattern: slot positions come from
the tokenizer and the template from the rewritten tree.

A slot is *free* (its value cannot change the decision) only when its literal sits, in the parsed
tree, under node types whose meaning does not depend on a literal's value: comparisons, boolean
and arithmetic operators, IN lists, VALUES rows, SET col = value, intervals, casts to plain types.
Everything else is *fixed*, its raw text part of the key: LIMIT/OFFSET/FETCH counts (the LIMIT is
tightened), ORDER/GROUP BY positions, function arguments (set_config, dblink, query_to_xml,
to_regclass, pg_relation_size … take names and SQL in strings), casts to regclass and other
non-plain types, literal output columns. Only plain `'…'` strings (without a backslash) and
numbers are slots at all: E'…', U&'…', $$…$$, N'…', X'…' and B'…' stay in the key as written.
Only SELECT, set operations, INSERT, UPDATE and DELETE have shapes; any other statement (SET,
COPY, LOCK, DDL, EXECUTE, PREPARE, EXPLAIN, several statements in one string, anything not
parsed) is keyed by its full text, as before. The engine uses a shape only after two statements
of it, with different literals, were analysed in full and agreed.

A slot's position says whether the *analysis* reads it; a rule may still read a literal's value
wherever it sits (pg_dump's `SELECT set_config(name, …) FROM pg_settings WHERE name = '<x>'` is
decided on the WHERE's literal). Such a rule marks the statement (`Described.literal_values`) and
the engine never learns its shape; and before learning any shape the engine decides it once more
with every free slot a sentinel value, which no allow-list holds, and learns it only if that
decision is the same too (policies/engine.py).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.tokens import Token, TokenType

from masking import native
from policies.sql.dialects import DialectFacts
from policies.sql.parser import Unparsable, parse_one

SLOT_TYPES = (TokenType.STRING, TokenType.NUMBER)

# Nodes a free literal may sit under (checked for every ancestor up to the statement).
_FREE_PARENTS: tuple[type[exp.Expression], ...] = (
    exp.Select,
    exp.SetOperation,
    exp.Subquery,
    exp.With,
    exp.CTE,
    exp.From,
    exp.Join,
    exp.Where,
    exp.Having,
    exp.Values,
    exp.Tuple,
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Alias,
    exp.Paren,
    exp.Neg,
    exp.Not,
    exp.And,
    exp.Or,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.NullSafeEQ,
    exp.NullSafeNEQ,
    exp.In,
    exp.Between,
    exp.Like,
    exp.ILike,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.Case,
    exp.If,
    exp.Interval,
    exp.Cast,
    exp.Exists,
)
_ROOTS: tuple[type[exp.Expression], ...] = (exp.Query, exp.Insert, exp.Update, exp.Delete)
_PLAIN_TYPES = frozenset(
    {
        exp.DataType.Type.TINYINT,
        exp.DataType.Type.SMALLINT,
        exp.DataType.Type.INT,
        exp.DataType.Type.BIGINT,
        exp.DataType.Type.FLOAT,
        exp.DataType.Type.DOUBLE,
        exp.DataType.Type.DECIMAL,
        exp.DataType.Type.BOOLEAN,
        exp.DataType.Type.TEXT,
        exp.DataType.Type.VARCHAR,
        exp.DataType.Type.CHAR,
        exp.DataType.Type.DATE,
        exp.DataType.Type.TIME,
        exp.DataType.Type.TIMETZ,
        exp.DataType.Type.TIMESTAMP,
        exp.DataType.Type.TIMESTAMPTZ,
        exp.DataType.Type.INTERVAL,
        exp.DataType.Type.UUID,
        exp.DataType.Type.JSON,
        exp.DataType.Type.JSONB,
    }
)

_TOKENIZERS: dict[str, object] = {}


@dataclass(frozen=True, slots=True)
class Shape:
    """One statement's shape `key` and the raw source text of each of its literal slots."""

    key: tuple[object, ...]
    raws: tuple[str, ...]
    types: tuple[TokenType, ...]  # of each slot
    text: str
    spans: tuple[tuple[int, int], ...]  # (start, end exclusive) of each slot in `text`


@dataclass(frozen=True, slots=True)
class Slots:
    """Which slots of a shape are free. `fixed` are the others, whose raw text joins the key."""

    free: frozenset[int]
    fixed: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Template:
    """The rewritten SQL with holes for free slots: `parts` are text, ints name a slot."""

    parts: tuple[str | int, ...]

    def render(self, raws: tuple[str, ...]) -> str:
        return "".join(p if isinstance(p, str) else raws[p] for p in self.parts)


def _tokenizer(dialect: str):
    tok = _TOKENIZERS.get(dialect)
    if tok is None:
        d = Dialect.get_or_raise(dialect)
        tok = _TOKENIZERS[dialect] = d.tokenizer_class(dialect=d)
    return tok


_FINGERPRINT_LITERALS = frozenset(
    {
        TokenType.STRING,
        TokenType.NUMBER,
        TokenType.NATIONAL_STRING,
        TokenType.HEX_STRING,
        TokenType.BIT_STRING,
        TokenType.BYTE_STRING,
        TokenType.RAW_STRING,
        TokenType.HEREDOC_STRING,
        TokenType.UNICODE_STRING,
    }
)


def fingerprint(sql: str, dialect: str) -> str:
    """A stable id for a statement's shape, read with its dialect's tokenizer (backticks,
    dollar quotes, E'' strings): every literal becomes `?`, words are case-folded, spacing and
    comments drop out. Two runs of one query with different customer numbers share it, so the
    audit log can count who ran what without holding the numbers."""
    try:
        tokens = _tokenizer(dialect).tokenize(sql)  # type: ignore[attr-defined]
    except Exception:
        shape = " ".join(sql.split()).lower()
    else:
        shape = " ".join(
            "?"
            if t.token_type in _FINGERPRINT_LITERALS
            else (t.text if t.token_type == TokenType.IDENTIFIER else t.text.lower())
            for t in tokens
        )
    # SQL sent in another client encoding arrives with undecodable bytes as surrogates.
    return hashlib.sha256(shape.encode("utf-8", "surrogateescape")).hexdigest()[:16]


# --- the fast path of shape_of: a regex scanner over the common subset of SQL text ------------
#
# Most statements a client inlines its values into (pgbench -M simple, ORMs) use nothing but
# words, plain '…' strings, decimal numbers, quoted names and a few operators. For those the
# tokenizer's slots can be read with three precompiled regexes (a tenth of its cost); anything
# else (comments, dollar quotes, E''/N''/X''/B''/U&'' strings, backslashes, `$`, `?`, `#`, `@`,
# non-ASCII outside strings, exponents, numbers glued to names or dots, several statements) is
# UNSURE and the tokenizer reads it. tests/policies/sql/test_fast_shape.py holds the two equal.

UNSURE = object()
_native = native.load("policies.sql._shapes")

# Strings and quoted names, outside of which everything is checked character by character.
_QUOTED = {
    "postgres": re.compile(r"""('(?:[^'\\]|'')*'|"[^"\\]*")"""),
    # MySQL reads "…" as a string (not handled here: the scanner leaves a stray `"`, UNSURE).
    "mysql": re.compile(r"('(?:[^'\\]|'')*'|`[^`\\]*`)"),
}
# Outside quotes: anything but names, digits, spacing and these operators, or a comment opener.
_OUTSIDE_BAD = re.compile(r"[^A-Za-z0-9_ \t\r\n(),.;=<>*+\-/%:\[\]|!]|--|/\*")
# A number token: digits not glued to a name before them (t1, 1a, 12abc are names or unsure).
# (The first digit before the look-behind: the regex engine then skips non-digits fast.)
_NUMBER = re.compile(r"[0-9](?<![A-Za-z0-9_][0-9])[0-9]*(?:\.[0-9]+)?")
# What may come right before a slot: the tokenizer starts a new token there, and no prefix
# (E, N, X, B, U&, _charset, :, $, a dot) changes what the slot is.
_BEFORE_SLOT = frozenset(" \t\r\n(,=<>+-*/%[|!")
_GLUED_AFTER_NUMBER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.")


_TT_STRING, _TT_NUMBER = TokenType.STRING, TokenType.NUMBER  # an Enum attribute costs ~1k instructions
_SET_KEY, _SET_RAWS, _SET_TYPES, _SET_TEXT, _SET_SPANS = (
    getattr(Shape, name).__set__ for name in ("key", "raws", "types", "text", "spans")
)


def fast_shape(sql: str, dialect: str) -> Shape | object | None:
    """`shape_of(sql, dialect)` read by the native scanner (policies/sql/_shapes.c) or the
    regexes below, or UNSURE when the text is outside the subset they know the tokenizer reads
    the same way. Never a different answer."""
    if _native is not None and dialect in _QUOTED:
        found = _native.scan(sql, dialect == "mysql", _TT_STRING, _TT_NUMBER)
        if found is None:
            return UNSURE
        if not found:
            return None
        # Shape(...) without its frozen __init__ (five object.__setattr__ calls cost twice the scan).
        shape = object.__new__(Shape)
        _SET_KEY(shape, found[0])
        _SET_RAWS(shape, found[1])
        _SET_TYPES(shape, found[2])
        _SET_TEXT(shape, sql)
        _SET_SPANS(shape, found[3])
        return shape
    return fast_shape_py(sql, dialect)


def fast_shape_py(sql: str, dialect: str) -> Shape | object | None:
    """The fast path in Python: the reference of the native scanner."""
    quoted = _QUOTED.get(dialect)
    if quoted is None:
        return UNSURE
    parts = quoted.split(sql)
    key: list[object] = []
    raws: list[str] = []
    types: list[TokenType] = []
    spans: list[tuple[int, int]] = []
    at = 0  # offset of the current part in sql
    cut = 0  # end of the last slot
    last_outside = len(parts) - 1
    for i, part in enumerate(parts):
        if i % 2:  # a string or a quoted name
            if part[0] == "'":
                if at and sql[at - 1] not in _BEFORE_SLOT:
                    return UNSURE
                key.append(sql[cut:at])
                key.append(_TT_STRING)
                raws.append(part)
                types.append(_TT_STRING)
                end = at + len(part)
                spans.append((at, end))
                cut = end
            at += len(part)
            continue
        if _OUTSIDE_BAD.search(part) is not None:
            return UNSURE
        # `;` only as the statement's last character (but for spacing): else several statements.
        if ";" in part and (i != last_outside or part.count(";") != 1 or part.rstrip(" \t\r\n")[-1] != ";"):
            return UNSURE
        for m in _NUMBER.finditer(part):
            start, end = at + m.start(), at + m.end()
            if start and sql[start - 1] not in _BEFORE_SLOT:
                return UNSURE
            if end < len(sql) and sql[end] in _GLUED_AFTER_NUMBER:
                return UNSURE
            key.append(sql[cut:start])
            key.append(_TT_NUMBER)
            raws.append(m.group())
            types.append(_TT_NUMBER)
            spans.append((start, end))
            cut = end
        at += len(part)
    if not raws:
        return None
    key.append(sql[cut:])
    return Shape(tuple(key), tuple(raws), tuple(types), sql, tuple(spans))


def shape_of(sql: str, dialect: str) -> Shape | None:
    """The shape of a one-statement string with at least one literal slot, or None.

    The key is the statement's *text* outside its literal slots, character for character (with
    each slot's token type): two statements share a shape only when they are the same text but
    for the values of their literals. A key of tokens alone let `interval<U+3000>$$…$$` share
    the shape of `interval $$…$$`, and so a decision learned for one text was reused for a text
    the full analysis would have refused (the server reads the ideographic space as part of a
    name); whatever the full path checks about the characters between tokens holds for every
    statement of a shape."""
    fast = fast_shape(sql, dialect)
    if fast is not UNSURE:
        return fast  # type: ignore[return-value]
    return shape_by_tokens(sql, dialect)


def shape_by_tokens(sql: str, dialect: str) -> Shape | None:
    """shape_of read with the dialect's tokenizer: the reference the fast path is held to."""
    try:
        tokens: list[Token] = _tokenizer(dialect).tokenize(sql)  # type: ignore[attr-defined]
    except Exception:  # the full path reports tokenizer errors
        return None
    key: list[object] = []
    raws: list[str] = []
    types: list[TokenType] = []
    spans: list[tuple[int, int]] = []
    last = len(tokens) - 1
    cut = 0
    for i, t in enumerate(tokens):
        tt = t.token_type
        if tt == TokenType.SEMICOLON and i != last:
            return None  # several statements
        if tt in SLOT_TYPES:
            raw = sql[t.start : t.end + 1]
            if "\\" in raw:
                # Whether a backslash escapes depends on session settings (standard_conforming_strings,
                # sql_mode) the tokenizer cannot see; a raw literal is put back only when it cannot matter.
                return None
            key.append(sql[cut : t.start])
            key.append(tt)
            raws.append(raw)
            types.append(tt)
            spans.append((t.start, t.end + 1))
            cut = t.end + 1
    if not raws:
        return None
    key.append(sql[cut:])
    return Shape(tuple(key), tuple(raws), tuple(types), sql, tuple(spans))


class Sentinels:
    """Unique literal values that stand for slots while a shape is parsed or rewritten. A random
    stem, and a refusal to use them on text that already holds the stem, keep them apart from
    anything a client writes or a row filter adds."""

    MAX_SLOTS = 100_000

    def __init__(self) -> None:
        nonce = secrets.randbelow(10**8)
        self.number_stem = f"7{nonce:08d}"
        self.string_stem = f"mgslot{nonce:08d}x"

    def value(self, i: int, tt: TokenType) -> str:
        if tt == TokenType.NUMBER:
            return f"{self.number_stem}{i:05d}"
        return f"{self.string_stem}{i}"

    def literal(self, i: int, tt: TokenType) -> str:
        v = self.value(i, tt)
        return v if tt == TokenType.NUMBER else f"'{v}'"

    def occur_in(self, text: str) -> bool:
        return self.number_stem in text or self.string_stem in text

    def text(self, shape: Shape, slots: frozenset[int] | range) -> str | None:
        """`shape.text` with the given slots replaced by sentinels; None if a sentinel could not
        be told apart from the text."""
        if len(shape.raws) >= self.MAX_SLOTS or self.occur_in(shape.text):
            return None
        out: list[str] = []
        last = 0
        for i in sorted(slots):
            start, end = shape.spans[i]
            out.append(shape.text[last:start])
            out.append(self.literal(i, shape.types[i]))
            last = end
        out.append(shape.text[last:])
        return "".join(out)


def _parse(sql: str, facts: DialectFacts) -> exp.Expression | None:
    """The statement's tree as the engine parses it (identifiers folded), or None."""
    try:
        tree = parse_one(sql, facts)
    except Unparsable:
        return None
    if not isinstance(tree, exp.Expression) or tree.find(exp.Command) is not None:
        return None
    return tree


def _free(literal: exp.Literal, root: exp.Expression) -> bool:
    node: exp.Expression = literal
    while node is not root:
        parent = node.parent
        if parent is None or not isinstance(parent, _FREE_PARENTS):
            return False
        if isinstance(parent, exp.Select) and node.arg_key == "expressions" and type(node) is not exp.Alias:
            return False  # an unnamed output column: its name may come from the literal
        if isinstance(parent, exp.Cast) and (
            node.arg_key != "this"
            or type(parent) is not exp.Cast
            or not isinstance(parent.to, exp.DataType)
            or parent.to.this not in _PLAIN_TYPES
            or parent.to.expressions
        ):
            return False
        node = parent
    return True


def free_slots(shape: Shape, facts: DialectFacts, sentinels: Sentinels) -> Slots | None:
    """Which slots of `shape` are free, or None when the shape is not cacheable by shape."""
    text = sentinels.text(shape, range(len(shape.raws)))
    if text is None:
        return None
    tree = _parse(text, facts)
    if tree is None or not isinstance(tree, _ROOTS):
        return None
    if isinstance(tree, exp.Select) and tree.args.get("into") is not None:
        return None
    wanted = {sentinels.value(i, tt): i for i, tt in enumerate(shape.types)}
    seen: dict[int, int] = {}
    free: set[int] = set()
    for lit in tree.find_all(exp.Literal):
        i = wanted.get(lit.this)
        if i is None:
            continue
        seen[i] = seen.get(i, 0) + 1
        if _free(lit, tree):
            free.add(i)
    free = {i for i in free if seen.get(i) == 1}
    if not free:
        return None
    return Slots(frozenset(free), tuple(i for i in range(len(shape.raws)) if i not in free))


def sentinel_tree(
    shape: Shape, slots: Slots, facts: DialectFacts, sentinels: Sentinels
) -> exp.Expression | None:
    """The statement parsed with its free slots replaced by sentinels (fixed ones as written)."""
    text = sentinels.text(shape, slots.free)
    return _parse(text, facts) if text is not None else None


def template_of(rewritten: str, shape: Shape, slots: Slots, sentinels: Sentinels) -> Template | None:
    """Cut rewritten SQL (generated from `sentinel_tree`) at its sentinels. None unless every free
    slot's sentinel occurs exactly once, and nothing else looks like one."""
    found: list[tuple[int, int, int]] = []
    for i in slots.free:
        lit = sentinels.literal(i, shape.types[i])
        at = rewritten.find(lit)
        if at < 0 or rewritten.find(lit, at + 1) >= 0:
            return None
        found.append((at, at + len(lit), i))
    found.sort()
    parts: list[str | int] = []
    last = 0
    for start, end, i in found:
        if start < last:
            return None
        parts.append(rewritten[last:start])
        parts.append(i)
        last = end
    parts.append(rewritten[last:])
    if sentinels.occur_in("".join(p for p in parts if isinstance(p, str))):
        return None
    return Template(tuple(parts))
