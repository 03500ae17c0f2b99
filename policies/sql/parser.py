"""Parsing SQL text into one tree per statement.

Owns: tokenizing with each dialect's sqlglot tokenizer minus its COMMANDS shortcut (so the bodies of
EXPLAIN, LOCK, SHOW, EXECUTE, … are real tokens), the lexical refusals (U&"…" names, UESCAPE, quoted
names that sqlglot would read as a built-in function), client-side `%s` placeholders, splitting on
top-level semicolons, and maskgate's statement parsers per dialect. Like sqlglot's own
STATEMENT_PARSERS (keyed there by the first token), `STATEMENT_PARSERS` maps a statement's first
keyword to a method that builds a policies/sql/nodes.py node for what sqlglot leaves as
`exp.Command`; every other statement, and every expression inside maskgate's nodes, is parsed by
sqlglot. Each tree's identifiers are folded once, here (policies/sql/identifiers.py). Never
describes or judges.

sqlglot's Parser is compiled (sqlglotc) and cannot be subclassed from Python, so maskgate's
statement parsers sit in front of it instead of inside it: same table, same first-keyword
dispatch, and sqlglot's `parse`/`parse_into` for everything they contain.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.tokens import Token, Tokenizer, TokenType

from policies.sql import nodes
from policies.sql.dialects import DialectFacts
from policies.sql.identifiers import normalize
from policies.sql.nodes import Statement


class Unparsable(Exception):
    """The statement is not understood; refusing it is the only safe answer."""


# Set on a COPY tree: its options (nodes.CopyOptions), read here rather than by sqlglot, which
# knows only some of their forms and drops or misreads others.
COPY_OPTIONS_META = nodes.COPY_OPTIONS_META


# --- tokens -----------------------------------------------------------------------------------

_TOKENIZERS: dict[str, Tokenizer] = {}
# A plain word of COPY's option list (a name, or a value such as csv or true).
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUOTED = (TokenType.IDENTIFIER, TokenType.STRING)
# Token types that carry a string value in SET and friends.
_STRINGS = (TokenType.STRING, TokenType.NATIONAL_STRING)


def _tokenizer(dialect: str) -> Tokenizer:
    tok = _TOKENIZERS.get(dialect)
    if tok is None:
        d = Dialect.get_or_raise(dialect)
        # Without COMMANDS the tokenizer no longer turns "the rest of the statement" after
        # EXPLAIN, LOCK, SHOW, EXECUTE, … into one string: the statement parsers read it.
        plain = type(f"Maskgate{d.tokenizer_class.__name__}", (d.tokenizer_class,), {"COMMANDS": set()})
        tok = _TOKENIZERS[dialect] = plain(dialect=d)
    return tok


def _adjacent(a: Token, b: Token) -> bool:
    return b.start == a.end + 1


def _function_names(dialect: str) -> frozenset[str]:
    parser = Dialect.get_or_raise(dialect).parser()
    return (
        frozenset(parser.FUNCTIONS)
        | frozenset(parser.FUNCTION_PARSERS)
        | frozenset(k for k in parser.NO_PAREN_FUNCTIONS if isinstance(k, str))
    )


_FUNCTION_NAMES: dict[str, frozenset[str]] = {}


def _same_words_as_the_server(sql: str, tokens: list[Token], facts: DialectFacts) -> None:
    """Refuse text the server would cut into other tokens than the parser did: anything but the
    server's whitespace and comments between tokens, and an unquoted word the server would read
    on into the next character. What the proxy judges must be what the server runs."""
    pos = 0
    for tok in tokens:
        problem = facts.gap_problem(sql[pos : tok.start])
        if problem is not None:
            raise Unparsable(f"{problem} (near character {pos + 1})")
        first = sql[tok.start : tok.start + 1]
        after = sql[tok.end + 1 : tok.end + 2]
        if first and (first.isalpha() or first == "_") and after and facts.continues_word(after):
            raise Unparsable(f"the server would read `{sql[tok.start : tok.end + 2]}` as one word")
        pos = tok.end + 1
    problem = facts.gap_problem(sql[pos:])
    if problem is not None:
        raise Unparsable(f"{problem} (near character {pos + 1})")


def tokenize(sql: str, facts: DialectFacts) -> list[Token]:
    """The tokens of `sql`, after the lexical refusals, with `%s` placeholders made `?`."""
    try:
        tokens = _tokenizer(facts.sqlglot).tokenize(sql)
    except sqlglot.errors.SqlglotError as e:
        raise Unparsable(f"cannot tokenize: {str(e).splitlines()[0]}") from None
    _same_words_as_the_server(sql, tokens, facts)
    known = _FUNCTION_NAMES.get(facts.sqlglot)
    if known is None:
        known = _FUNCTION_NAMES[facts.sqlglot] = _function_names(facts.sqlglot)
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        # U&"ph\006fne": PostgreSQL reads a Unicode-escaped identifier; sqlglot reads `U & "..."`,
        # a different column name. Refuse rather than guess.
        if (
            tok.text.upper() == "U"
            and nxt is not None
            and nxt.token_type == TokenType.AMP
            and _adjacent(tok, nxt)
        ):
            raise Unparsable('Unicode-escaped names (U&"…") are not supported; write the name plainly')
        if tok.text.upper() == "UESCAPE" and tok.token_type not in _QUOTED:
            raise Unparsable("UESCAPE is not supported")
        if (
            tok.token_type == TokenType.IDENTIFIER
            and nxt is not None
            and nxt.token_type == TokenType.L_PAREN
            and tok.text.upper() in known
            and tok.text != facts.fold_identifier(tok.text, quoted=False)
        ):
            # sqlglot reads "UPPER"(x) as the built-in upper(x); the server calls a function
            # named exactly "UPPER", which is some other (user-defined) function.
            raise Unparsable(
                f'the quoted name "{tok.text}" would call another function than {tok.text.lower()}()'
            )
        if tok.token_type == TokenType.MOD and nxt is not None and nxt.text == "s" and _adjacent(tok, nxt):
            # `%s`: a client-side pyformat placeholder (MySQL drivers), a parameter like `?`.
            out.append(Token(TokenType.PLACEHOLDER, "?", tok.line, tok.col, tok.start, nxt.end, tok.comments))
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


@dataclass(frozen=True, slots=True)
class Chunk:
    """One statement's tokens and its text as the client wrote it."""

    sql: str
    tokens: list[Token]
    start: int
    end: int

    @property
    def text(self) -> str:
        return self.sql[self.start : self.end].strip()


def split(sql: str, facts: DialectFacts) -> list[Chunk]:
    """The statements of `sql`, split on top-level semicolons by the tokenizer (quotes,
    dollar-quotes and comments are honoured). Statements without tokens (comments) drop out."""
    tokens = tokenize(sql, facts)
    out: list[Chunk] = []
    current: list[Token] = []
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            if current:
                out.append(Chunk(sql, current, current[0].start, tok.start))
            current = []
        else:
            current.append(tok)
    if current:
        out.append(Chunk(sql, current, current[0].start, len(sql)))
    return out


def parse_one(sql: str, facts: DialectFacts) -> Statement:
    """The tree of a one-statement string (the shape cache's sentinel texts, view definitions)."""
    chunks = split(sql, facts)
    if len(chunks) != 1:
        raise Unparsable("expected one statement")
    return parse_statement(chunks[0], facts)


def parse_statement(chunk: Chunk, facts: DialectFacts) -> Statement:
    """One statement's tree, with its identifiers folded as the server folds them."""
    parser = STATEMENT_PARSER_CLASSES.get(facts.sqlglot, StatementParser)(facts, chunk.sql, chunk.tokens)
    tree = normalize(parser.parse(), facts)
    if facts.dummy_table is not None and isinstance(tree, exp.Expression):
        _drop_dummy_tables(tree, facts.dummy_table)
    if facts.parenthesized_positions and isinstance(tree, exp.Expression):
        _positions_unwrapped(tree)
    if facts.right_join_star_differs and isinstance(tree, exp.Expression):
        _no_star_over_right_using(tree)
    if facts.identifier_bytes is not None:
        _check_identifier_lengths(tree, facts.identifier_bytes)
    return tree


def _drop_dummy_tables(tree: exp.Expression, name: str) -> None:
    """`SELECT 1 FROM DUAL` reads no table (the server treats the unquoted keyword so); left in,
    it would be qualified into `crm.DUAL`, which no server has."""
    for sel in tree.find_all(exp.Select):
        frm = sel.args.get("from_")
        table = frm.this if frm is not None else None
        if (
            isinstance(table, exp.Table)
            and not table.args.get("db")
            and not table.this.quoted
            and table.name.upper() == name
            and not sel.args.get("joins")
        ):
            sel.set("from_", None)


def _no_star_over_right_using(tree: exp.Expression) -> None:
    """Refuse an unqualified `*` over a RIGHT JOIN with USING or NATURAL: MySQL puts the right
    side's columns first there, so the analysis would mask the result by another layout."""
    for sel in tree.find_all(exp.Select):
        if not any(isinstance(p, exp.Star) for p in sel.expressions):
            continue
        joins = [j for j in sel.find_all(exp.Join) if j.parent_select is sel]
        for j in joins:
            if str(j.args.get("side") or "").upper() == "RIGHT" and (
                j.args.get("using") or str(j.args.get("method") or "").upper() == "NATURAL"
            ):
                raise Unparsable(
                    "SELECT * over a RIGHT JOIN with USING or NATURAL is not understood; list the columns"
                )


def _positions_unwrapped(tree: exp.Expression) -> None:
    """`ORDER BY (1)` sorts by the first result column on MariaDB, like `ORDER BY 1`: read as
    the server reads it, or a sort by a masked column passes as a sort by a constant. A
    parameter there (`ORDER BY ?`) is refused: bound to an integer, it is a position too."""
    for clause in (*tree.find_all(exp.Order), *tree.find_all(exp.Group)):
        for item in list(clause.expressions):
            target = item.this if isinstance(item, exp.Ordered) else item
            inner = target
            while isinstance(inner, exp.Paren):
                inner = inner.this
            if isinstance(inner, exp.Placeholder | exp.Parameter):
                # Bound to an integer at EXECUTE, MariaDB sorts by that result column: which
                # column is sorted by is then the client's to choose after the decision.
                raise Unparsable("a parameter in ORDER BY or GROUP BY is not understood")
            if inner is not target and isinstance(inner, exp.Literal) and inner.is_int:
                target.replace(inner.copy())


def _check_identifier_lengths(tree: Statement, limit: int) -> None:
    """Refuse a name the server would shorten: `DECLARE <63 c>x` and `FETCH <63 c>` name one
    cursor on the server and two in the proxy, which would mask one's rows by the other's
    decision. Its UTF-8 length bounds its length in any server encoding."""
    if isinstance(tree, nodes.Node):
        for child in tree.expressions():
            _check_identifier_lengths(child, limit)
        return
    for ident in tree.find_all(exp.Identifier):
        name = ident.this
        if isinstance(name, str) and len(name) > limit // 4 and len(name.encode("utf-8")) > limit:
            raise Unparsable(
                f"a name longer than {limit} bytes, which the server would shorten, is not understood"
            )


# --- statement parsers --------------------------------------------------------------------------

_TRANSACTION_WORDS = frozenset(
    {
        "WORK",
        "TRANSACTION",
        "ISOLATION",
        "LEVEL",
        "SERIALIZABLE",
        "REPEATABLE",
        "READ",
        "COMMITTED",
        "UNCOMMITTED",
        "WRITE",
        "ONLY",
        "NOT",
        "DEFERRABLE",
        "AND",
        "NO",
        "CHAIN",
        "RELEASE",
        "WITH",
        "CONSISTENT",
        "SNAPSHOT",
    }
)
_LOCK_MODES = frozenset(
    {
        "ACCESS SHARE",
        "ROW SHARE",
        "ROW EXCLUSIVE",
        "SHARE UPDATE EXCLUSIVE",
        "SHARE",
        "SHARE ROW EXCLUSIVE",
        "EXCLUSIVE",
        "ACCESS EXCLUSIVE",
    }
)
_ROLE_OBJECTS = frozenset({"ROLE", "USER", "GROUP"})
_CODE_OBJECTS = frozenset(
    {
        "FUNCTION",
        "PROCEDURE",
        "TRIGGER",
        "RULE",
        "EVENT",
        "LANGUAGE",
        "EXTENSION",
        "CAST",
        "OPERATOR",
        "AGGREGATE",
        "TRANSFORM",
        "SERVER",
        "FOREIGN",
        "PUBLICATION",
        "SUBSCRIPTION",
        "ACCESS",
    }
)
_CREATE_MODIFIERS = frozenset({"OR", "REPLACE", "TEMP", "TEMPORARY", "UNIQUE", "DEFINER"})
# Statements EXPLAIN and PREPARE may wrap (the server's grammar), as tree types.
_PLANNABLE: tuple[type, ...] = (exp.Query, exp.Insert, exp.Update, exp.Delete, exp.Merge)


# DECLARE's words between the name and FOR, and FETCH / MOVE's direction (PostgreSQL's grammar,
# words upper-cased and joined by one space): anything else is not understood, never passed.
_CURSOR_OPTIONS = re.compile(
    r"(BINARY |ASENSITIVE |INSENSITIVE |NO SCROLL |SCROLL )*CURSOR( WITH HOLD| WITHOUT HOLD)?"
)
_FETCH_DIRECTION = re.compile(
    r"((NEXT|PRIOR|FIRST|LAST|ALL|(ABSOLUTE |RELATIVE )?[-+]?\d+|(FORWARD|BACKWARD)( ALL| [-+]?\d+)?)"
    r"( FROM| IN)?|FROM|IN)?"
)


class StatementParser:
    """Parses one statement's tokens. Subclasses per dialect extend STATEMENT_PARSERS."""

    STATEMENT_PARSERS: ClassVar[dict[str, Callable[[StatementParser], Statement]]] = {}

    def __init__(self, facts: DialectFacts, sql: str, tokens: list[Token]) -> None:
        self.facts = facts
        self.sql = sql
        self.tokens = tokens
        self.i = 0

    # --- the cursor ---------------------------------------------------------------------------

    def word(self, k: int = 0) -> str:
        """The keyword at i+k in upper case ("" for a quoted name or string, or past the end)."""
        j = self.i + k
        if j >= len(self.tokens) or self.tokens[j].token_type in _QUOTED:
            return ""
        return " ".join(self.tokens[j].text.upper().split())

    def match(self, *words: str) -> bool:
        if all(self.word(k) == w for k, w in enumerate(words)):
            self.i += len(words)
            return True
        return False

    def match_type(self, token_type: TokenType) -> bool:
        if self.i < len(self.tokens) and self.tokens[self.i].token_type == token_type:
            self.i += 1
            return True
        return False

    def at_end(self) -> bool:
        return self.i >= len(self.tokens)

    def rest(self) -> list[Token]:
        tokens = self.tokens[self.i :]
        self.i = len(self.tokens)
        return tokens

    def text(self) -> str:
        return self.sql[self.tokens[0].start : self.tokens[-1].end + 1]

    def until_top_level(self, *stops: TokenType) -> list[Token]:
        """Tokens up to (not including) the next top-level token of one of `stops`."""
        depth = 0
        start = self.i
        while self.i < len(self.tokens):
            tt = self.tokens[self.i].token_type
            if depth == 0 and tt in stops:
                break
            if tt in (TokenType.L_PAREN, TokenType.L_BRACKET):
                depth += 1
            elif tt in (TokenType.R_PAREN, TokenType.R_BRACKET):
                depth -= 1
            self.i += 1
        return self.tokens[start : self.i]

    # --- handing over to sqlglot --------------------------------------------------------------

    def sqlglot_statement(self, tokens: list[Token]) -> exp.Expression:
        try:
            trees = [
                t for t in Dialect.get_or_raise(self.facts.sqlglot).parser().parse(tokens, self.sql) if t
            ]
        except sqlglot.errors.SqlglotError as e:
            raise Unparsable(f"cannot parse: {str(e).splitlines()[0][:200]}") from None
        if len(trees) != 1:
            raise Unparsable("expected one statement")
        return trees[0]

    def sqlglot_into(self, kind: type[exp.Expr], tokens: list[Token]) -> exp.Expression:
        if not tokens:
            raise Unparsable(f"missing {kind.__name__.lower()}")
        try:
            found = Dialect.get_or_raise(self.facts.sqlglot).parser().parse_into(kind, tokens, self.sql)
        except sqlglot.errors.SqlglotError as e:
            raise Unparsable(f"cannot parse: {str(e).splitlines()[0][:200]}") from None
        if len(found) != 1 or found[0] is None:
            raise Unparsable(f"expected one {kind.__name__.lower()}")
        return found[0]  # type: ignore[return-value]

    def inner(self, tokens: list[Token], allowed: tuple[type, ...]) -> Statement:
        """A statement inside this one (EXPLAIN's, PREPARE's, DECLARE's), parsed the same way."""
        if not tokens:
            raise Unparsable("missing statement")
        tree = type(self)(self.facts, self.sql, tokens).parse()
        if not isinstance(tree, allowed):
            raise Unparsable(f"{type(tree).__name__} cannot be wrapped here")
        return tree

    def identifier(self) -> exp.Identifier:
        if self.at_end():
            raise Unparsable("missing name")
        tok = self.tokens[self.i]
        if tok.token_type in (TokenType.STRING, TokenType.L_PAREN, TokenType.R_PAREN, TokenType.COMMA):
            raise Unparsable(f"expected a name, found {tok.text!r}")
        self.i += 1
        return exp.Identifier(this=tok.text, quoted=tok.token_type == TokenType.IDENTIFIER)

    # --- entry --------------------------------------------------------------------------------

    def parse(self) -> Statement:
        first = self.tokens[0]
        handler = None
        if first.token_type not in _QUOTED:
            key = " ".join(first.text.upper().split())
            handler = self.STATEMENT_PARSERS.get(key) or self.STATEMENT_PARSERS.get(key.split(" ")[0])
        if handler is None:
            return self.sqlglot_statement(self.tokens)
        self.i = 1
        tree = handler(self)
        if not self.at_end():
            raise Unparsable(f"{self.word(0) or self.tokens[self.i].text!r} is not understood here")
        return tree

    # --- SET / RESET / SHOW -------------------------------------------------------------------

    def _value(self, tokens: list[Token]) -> exp.Expression | None:
        """A simple SET value (string, signed number, quoted name or bare word), or None."""
        sign = ""
        if len(tokens) == 2 and tokens[0].token_type in (TokenType.DASH, TokenType.PLUS):
            sign = "-" if tokens[0].token_type == TokenType.DASH else ""
            tokens = tokens[1:]
        if len(tokens) != 1:
            return None
        tok = tokens[0]
        if tok.token_type == TokenType.NUMBER:
            return exp.Literal.number(sign + tok.text)
        if sign:
            return None
        if tok.token_type in _STRINGS:
            return exp.Literal.string(tok.text)
        if tok.token_type == TokenType.IDENTIFIER:
            return exp.Identifier(this=tok.text, quoted=True)
        if tok.text.replace("_", "").replace("$", "").isalnum():
            return exp.Var(this=tok.text)
        return None

    def _set_values(self, tokens: list[Token]) -> tuple[tuple[exp.Expression, ...], exp.Expression | None]:
        """(simple values, None) or ((), the value as one expression) for what follows `=`."""
        values = [self._value(p) for p in _split_commas(tokens)]
        if all(v is not None for v in values):
            return tuple(v for v in values if v is not None), None
        return (), self.sqlglot_into(exp.Expr, tokens)

    def _set_item(self, tokens: list[Token]) -> nodes.SetItem:
        sub = type(self)(self.facts, self.sql, tokens)
        return sub._set_item_here()

    def _set_item_here(self) -> nodes.SetItem:
        scope = ""
        for s in ("SESSION", "LOCAL", "GLOBAL", "PERSIST", "PERSIST_ONLY"):
            if self.word() == s and self.word(1) not in ("AUTHORIZATION", "CHARACTERISTICS", "=", ""):
                self.i += 1
                scope = s
                break
        for kind, words in (("session_authorization", ("SESSION", "AUTHORIZATION")), ("role", ("ROLE",))):
            if self.match(*words):
                # Who the session becomes is refused whatever it says (MySQL lists roles and
                # `'r'@'host'` forms), so the value is kept as written.
                rest = self.rest()
                if not rest:
                    raise Unparsable(f"SET {' '.join(words)} without a value")
                raw = self.sql[rest[0].start : rest[-1].end + 1]
                return nodes.SetItem(kind, values=(exp.Var(this=raw),), scope=scope)
        if self.match("TIME", "ZONE"):
            words = self.rest()
            value = self._value(words)
            # TIME ZONE 'x' | -8 | LOCAL | DEFAULT, or INTERVAL '+05:30' HOUR TO MINUTE.
            values = (value,) if value is not None else tuple(self._value([t]) for t in words)
            if not values or any(v is None for v in values):
                raise Unparsable("TIME ZONE value not understood")
            return nodes.SetItem("time_zone", "timezone", values, scope)  # type: ignore[arg-type]
        for kind, words in (
            ("transaction", ("TRANSACTION",)),
            ("transaction", ("SESSION", "CHARACTERISTICS", "AS", "TRANSACTION")),
            ("constraints", ("CONSTRAINTS",)),
        ):
            if self.match(*words):
                rest = self.rest()
                if kind == "transaction" and any(
                    t.token_type != TokenType.COMMA and t.text.upper() not in _TRANSACTION_WORDS for t in rest
                ):
                    raise Unparsable("transaction characteristics not understood")
                return nodes.SetItem(kind, values=tuple(exp.Var(this=t.text) for t in rest), scope=scope)
        if self.match("NAMES") or self.match("CHARSET") or self.match("CHARACTER", "SET"):
            charset = self._value(self.until_top_level(TokenType.COLLATE))
            collate = None
            if self.match_type(TokenType.COLLATE):
                collate = self._value(self.rest())
                if collate is None:
                    raise Unparsable("COLLATE value not understood")
            if charset is None or not self.at_end():
                raise Unparsable("client encoding value not understood")
            return nodes.SetItem("names", "names", (charset,), scope, collate)
        if self.match("SCHEMA"):  # PostgreSQL: SET SCHEMA 'x' is SET search_path TO 'x'
            return nodes.SetItem("setting", "search_path", self._simple_rest(), scope)
        if self.match("XML", "OPTION"):
            return nodes.SetItem("setting", "xmloption", self._simple_rest(), scope)
        name = self._setting_name()
        if not (self.match_type(TokenType.EQ) or self.match("TO") or self.match_type(TokenType.COLON_EQ)):
            raise Unparsable("SET without a value")
        values, computed = self._set_values(self.rest())
        if not values and computed is None:
            raise Unparsable("SET without a value")
        return nodes.SetItem("setting", name, values, scope, computed=computed)

    def _simple_rest(self) -> tuple[exp.Expression, ...]:
        rest = self.rest()
        value = self._value(rest)
        if value is None:
            raise Unparsable("value not understood")
        return (value,)

    def _setting_name(self) -> str:
        """A setting's name (parts joined by dots, `@@`/`@` kept), as the server looks it up."""
        parts: list[str] = []
        while not self.at_end():
            tok = self.tokens[self.i]
            if tok.token_type in (TokenType.EQ, TokenType.COLON_EQ) or self.word() == "TO":
                break
            if tok.token_type in (TokenType.STRING, TokenType.L_PAREN, TokenType.COMMA):
                raise Unparsable("setting name not understood")
            parts.append(tok.text)
            self.i += 1
        if not parts:
            raise Unparsable("SET without a setting")
        return self.facts.setting_key("".join(parts))

    def _set(self) -> Statement:
        return nodes.Set((self._set_item(self.rest()),))

    def _reset(self) -> Statement:
        if self.match("ALL"):
            return nodes.Reset(None)
        if self.match("SESSION", "AUTHORIZATION"):
            return nodes.Reset("session_authorization")
        if self.match("TIME", "ZONE"):
            return nodes.Reset("timezone")
        if self.match("TRANSACTION", "ISOLATION", "LEVEL"):
            return nodes.Reset("transaction_isolation")
        return nodes.Reset(self._setting_name())

    def _show(self) -> Statement:
        words = tuple(self.word(k) for k in range(len(self.tokens) - self.i))
        if "WHERE" in words:
            # SHOW … WHERE evaluates an expression the server runs and maskgate never analyses:
            # a subquery or a function call there is a yes/no oracle on any table. A WHERE over
            # the SHOW's own columns and literals is all a tool needs.
            after = words[words.index("WHERE") + 1 :]
            opens = any(t.text == "(" for t in self.tokens[self.i :])
            if opens or "SELECT" in after:
                raise Unparsable("SHOW … WHERE with a subquery or a function call is not understood")
        self.rest()
        return nodes.Show(self.text(), tuple(w for w in words if w))

    # --- LOCK ---------------------------------------------------------------------------------

    def _table(self, tokens: list[Token]) -> exp.Table:
        table = self.sqlglot_into(exp.Table, tokens)
        if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
            raise Unparsable("expected a table name")
        return table  # type: ignore[return-value]

    def _lock(self) -> Statement:
        self.match("TABLE")
        targets: list[tuple[exp.Table, bool]] = []
        while True:
            only = self.match_type(TokenType.ONLY)
            tokens = self.until_top_level(TokenType.COMMA, TokenType.IN, TokenType.STAR)
            if tokens and tokens[-1].text.upper() == "NOWAIT":  # `LOCK t NOWAIT`
                tokens = tokens[:-1]
                self.i -= 1
            targets.append((self._table(tokens), only))
            if self.match_type(TokenType.STAR) and only:  # `t *`: and its descendants, as without ONLY
                raise Unparsable("ONLY t * is not a table")  # the server's syntax error, not ours to mend
            if not self.match_type(TokenType.COMMA):
                break
        mode = "ACCESS EXCLUSIVE"
        if self.match_type(TokenType.IN):
            words: list[str] = []
            while not self.at_end() and self.word() != "MODE":
                words.append(self.word())
                self.i += 1
            if not self.match("MODE") or " ".join(words) not in _LOCK_MODES:
                raise Unparsable("lock mode not understood")
            mode = " ".join(words)
        nowait = self.match("NOWAIT")
        return nodes.Lock(tuple(nodes.LockTarget(t, mode, only) for t, only in targets), nowait)

    # --- EXPLAIN / PREPARE / EXECUTE / DEALLOCATE ---------------------------------------------

    def _explain(self) -> Statement:
        options: list[nodes.ExplainOption] = []
        parenthesized = False
        if self.match_type(TokenType.L_PAREN):
            parenthesized = True
            while not self.match_type(TokenType.R_PAREN):
                if self.at_end():
                    raise Unparsable("unterminated EXPLAIN options")
                name = self.word()
                if not name:
                    raise Unparsable("EXPLAIN option not understood")
                self.i += 1
                value_tokens = self.until_top_level(TokenType.COMMA, TokenType.R_PAREN)
                value = self._value(value_tokens) if value_tokens else None
                if value_tokens and value is None:
                    raise Unparsable("EXPLAIN option value not understood")
                options.append(nodes.ExplainOption(name, value))
                self.match_type(TokenType.COMMA)
        else:
            while self.word() in ("ANALYZE", "ANALYSE", "VERBOSE"):
                options.append(nodes.ExplainOption(self.word()))
                self.i += 1
        inner = self.inner(self.rest(), (*_PLANNABLE, exp.Create, nodes.Execute, nodes.Cursor))
        if isinstance(inner, exp.Create) and not isinstance(inner.expression, exp.Query):
            raise Unparsable("EXPLAIN of CREATE without AS")
        if isinstance(inner, nodes.Cursor) and inner.action != "DECLARE":
            raise Unparsable("EXPLAIN of a cursor action")
        return nodes.Explain(inner, tuple(options), parenthesized)

    def _prepare(self) -> Statement:
        if self.match("TRANSACTION"):
            self.rest()
            return nodes.TwoPhaseCommit(self.text(), "PREPARE TRANSACTION")
        name = self.identifier()
        if self.match_type(TokenType.FROM):  # MySQL: PREPARE s FROM '…' | @var, SQL in a string
            rest = self.rest()
            text = self._plain_string(rest)
            if text is not None:
                # SQL in a literal is read like any statement: the session keeps its decision
                # for the EXECUTE that runs it, as for PostgreSQL's PREPARE … AS.
                inner = parse_one(text, self.facts)
                if isinstance(inner, _PLANNABLE):
                    return nodes.Prepare(name, inner, from_text=True)
            return nodes.PrepareFrom(name, self.sqlglot_into(exp.Expr, rest))
        types: tuple[exp.DataType, ...] = ()
        if self.match_type(TokenType.L_PAREN):
            inside = self.until_top_level(TokenType.R_PAREN)
            if not self.match_type(TokenType.R_PAREN):
                raise Unparsable("unterminated PREPARE types")
            types = tuple(self._data_type(part) for part in _split_commas(inside))
        if not self.match("AS"):
            raise Unparsable("PREPARE without AS")
        return nodes.Prepare(name, self.inner(self.rest(), _PLANNABLE), types)

    def _plain_string(self, tokens: list[Token]) -> str | None:
        """The text of a lone '…' or "…" string without backslashes (whose value is then its
        text with doubled quotes undone, by the server's rules and sqlglot's alike), or None."""
        if len(tokens) != 1 or tokens[0].token_type != TokenType.STRING:
            return None
        raw = self.sql[tokens[0].start : tokens[0].end + 1]
        if raw[:1] not in ("'", '"') or raw[-1:] != raw[:1] or "\\" in raw:
            return None
        return raw[1:-1].replace(raw[0] * 2, raw[0])

    def _data_type(self, tokens: list[Token]) -> exp.DataType:
        if len(tokens) >= 3 and tokens[1].token_type == TokenType.DOT:
            # A schema-qualified type (pg_dump writes `pg_catalog.oid`): a parameter's type only,
            # kept as written, which the server resolves.
            text = self.sql[tokens[0].start : tokens[-1].end + 1]
            return exp.DataType.build(text, dialect=self.facts.sqlglot, udt=True)
        found = self.sqlglot_into(exp.DataType, tokens)
        if not isinstance(found, exp.DataType):
            raise Unparsable("expected a type")
        return found

    def _execute(self) -> Statement:
        name = self.identifier()
        if self.match("USING"):  # MySQL
            parts = _split_commas(self.rest())
            return nodes.Execute(name, tuple(self.sqlglot_into(exp.Expr, p) for p in parts), using=True)
        if self.at_end():
            return nodes.Execute(name)
        args = self.sqlglot_into(exp.Tuple, self.rest())
        return nodes.Execute(name, tuple(args.expressions))

    def _deallocate(self) -> Statement:
        prepare = self.match("PREPARE")
        if self.match("ALL"):
            return nodes.Deallocate(None, prepare)
        return nodes.Deallocate(self.identifier(), prepare)

    # --- DO / CALL / cursors / notifications ----------------------------------------------------

    def _do(self) -> Statement:
        if self.at_end():
            raise Unparsable("DO without code")
        self.rest()
        return nodes.Do(self.text())

    def _call(self) -> Statement:
        parts = [self.identifier()]
        while self.match_type(TokenType.DOT):
            parts.append(self.identifier())
        args: tuple[exp.Expression, ...] = ()
        if not self.at_end():
            found = self.sqlglot_into(exp.Tuple, self.rest())
            args = tuple(found.expressions)
        return nodes.Call(tuple(parts), args)

    def _declare(self) -> Statement:
        name = self.identifier()
        words: list[str] = []
        while not self.at_end() and self.word() != "FOR":
            words.append(self.word())
            self.i += 1
        options = " ".join(words)
        if not _CURSOR_OPTIONS.fullmatch(options) or not self.match("FOR"):
            raise Unparsable("DECLARE is only understood for cursors")
        return nodes.Cursor("DECLARE", name, options, self.inner(self.rest(), (exp.Query,)))

    def _fetch(self) -> Statement:
        action = self.word(-1)
        if self.at_end():
            raise Unparsable(f"{action} without a cursor")
        # Every token but the last (the name) is the direction; signed counts are two tokens
        # (`-`, `3`), joined below as PostgreSQL writes them.
        words = [self.word(k) for k in range(len(self.tokens) - 1 - self.i)]
        if not all(words):
            raise Unparsable(f"{action} direction not understood")
        self.i = len(self.tokens) - 1
        name = self.identifier()
        options = " ".join(words).replace("- ", "-").replace("+ ", "+")
        if not _FETCH_DIRECTION.fullmatch(options):
            raise Unparsable(f"{action} direction not understood")
        return nodes.Cursor(action, name, options)

    def _close(self) -> Statement:
        if self.match("ALL"):
            return nodes.Cursor("CLOSE", None)
        return nodes.Cursor("CLOSE", self.identifier())

    def _notification(self) -> Statement:
        action = self.word(-1)
        if self.at_end():
            raise Unparsable(f"{action} without a channel")
        self.rest()
        return nodes.Notification(self.text(), action)

    def _discard(self) -> Statement:
        what = self.word()
        if what not in ("ALL", "PLANS", "SEQUENCES", "TEMP", "TEMPORARY"):
            raise Unparsable("DISCARD of what")
        self.i += 1
        return nodes.Discard(self.text(), what)

    # --- transactions -------------------------------------------------------------------------

    def _begin(self) -> Statement:
        return self._transaction("BEGIN")

    def _start(self) -> Statement:
        if not self.match("TRANSACTION"):
            raise Unparsable("START without TRANSACTION")
        return self._transaction("START TRANSACTION")

    def _transaction(self, action: str) -> Statement:
        for tok in self.rest():
            if tok.token_type != TokenType.COMMA and tok.text.upper() not in _TRANSACTION_WORDS:
                raise Unparsable(f"{action} {tok.text} is not understood")
        return nodes.TransactionControl(self.text(), action)

    def _commit(self) -> Statement:
        action = self.word(-1)
        if self.match("PREPARED"):
            if not self.match_type(TokenType.STRING) or not self.at_end():
                raise Unparsable(f"{action} PREPARED needs one transaction id")
            return nodes.TwoPhaseCommit(self.text(), f"{action} PREPARED")
        return self._transaction(action)

    def _rollback(self) -> Statement:
        action = self.word(-1)
        if self.word() == "PREPARED":
            return self._commit()
        start = self.i
        _ = self.match("WORK") or self.match("TRANSACTION")
        if self.match("TO"):
            self.match("SAVEPOINT")
            name = self.identifier()
            return nodes.TransactionControl(self.text(), f"{action} TO SAVEPOINT", name)
        self.i = start
        return self._transaction(action)

    def _savepoint(self) -> Statement:
        name = self.identifier()
        return nodes.TransactionControl(self.text(), "SAVEPOINT", name)

    def _release(self) -> Statement:
        self.match("SAVEPOINT")
        name = self.identifier()
        return nodes.TransactionControl(self.text(), "RELEASE", name)

    # --- COPY ---------------------------------------------------------------------------------

    def _copy(self) -> Statement:
        """COPY [BINARY] target {TO|FROM} [PROGRAM] dest [[USING] DELIMITERS 'c'] [WITH] options
        [WHERE …]. sqlglot reads the statement up to its destination (and a WHERE); the options,
        in the parenthesized form or the legacy one, are read here into nodes.CopyOptions."""
        tokens = list(self.tokens)
        legacy: list[nodes.CopyOption] = []
        if (
            len(tokens) > 2
            and self._plain_word(tokens[1]) == "BINARY"
            and self._plain_word(tokens[2]) != "TO"
        ):
            # COPY BINARY t …: the pre-7.3 spelling the grammar still accepts.
            legacy.append(nodes.CopyOption("format", "word", "binary"))
            del tokens[1]
        depth = 0
        k = None
        for n, tok in enumerate(tokens):
            if tok.token_type == TokenType.L_PAREN:
                depth += 1
            elif tok.token_type == TokenType.R_PAREN:
                depth -= 1
            elif depth == 0 and self._plain_word(tok) in ("TO", "FROM") and n > 1:
                k = n
                break
        if k is None:
            raise Unparsable("COPY without TO or FROM")
        j = k + 1
        program = None
        if j < len(tokens) and self._plain_word(tokens[j]) == "PROGRAM":
            # sqlglot reads the command string as an option: it is kept beside the tree.
            program = self._copy_string(tokens, j + 1)
            head, tail = tokens[: j + 1], tokens[j + 2 :]
        else:
            if j >= len(tokens):
                raise Unparsable("COPY without a destination")
            head, tail = tokens[: j + 1], tokens[j + 1 :]
        where: list[Token] = []
        depth = 0
        for n, tok in enumerate(tail):
            depth += (tok.token_type == TokenType.L_PAREN) - (tok.token_type == TokenType.R_PAREN)
            if depth == 0 and self._plain_word(tok) == "WHERE":
                tail, where = tail[:n], tail[n:]
                break
        options = self._copy_options(tail, legacy, program)
        if where and options.options:
            # The options would be rendered after the WHERE sqlglot writes: not the server's order.
            raise Unparsable("COPY … WHERE with options")
        tree = self.sqlglot_statement(head + where)
        if not isinstance(tree, exp.Copy) or tree.args.get("params"):
            raise Unparsable("COPY not understood")
        tree.meta[COPY_OPTIONS_META] = options
        self.i = len(self.tokens)
        return tree

    @staticmethod
    def _plain_word(tok: Token) -> str:
        return "" if tok.token_type in _QUOTED else tok.text.upper()

    def _copy_options(
        self, tokens: list[Token], legacy: list[nodes.CopyOption], program: str | None
    ) -> nodes.CopyOptions:
        out = list(legacy)
        i = 0
        if i < len(tokens) and self._plain_word(tokens[i]) == "USING":
            i += 1
            if i >= len(tokens) or self._plain_word(tokens[i]) != "DELIMITERS":
                raise Unparsable("COPY option not understood")
        if i < len(tokens) and self._plain_word(tokens[i]) == "DELIMITERS":
            out.append(nodes.CopyOption("delimiter", "string", self._copy_string(tokens, i + 1)))
            i += 2
        if i < len(tokens) and self._plain_word(tokens[i]) == "WITH":
            i += 1
        rest = tokens[i:]
        if rest and rest[0].token_type == TokenType.L_PAREN:
            if _closing_paren(rest, 0) != len(rest) - 1 or len(rest) < 3:
                raise Unparsable("COPY option list not understood")
            items = _split_commas(rest[1:-1], keep_empty=True)
            if any(not item for item in items):
                raise Unparsable("COPY option list not understood")
            for item in items:
                out.append(self._copy_generic_option(item))
        else:
            out.extend(self._copy_legacy_options(rest))
        names = [o.name for o in out]
        if len(set(names)) != len(names):
            raise Unparsable("a COPY option is given twice")  # the server refuses it too
        return nodes.CopyOptions(tuple(out), program)

    def _copy_string(self, tokens: list[Token], i: int) -> str:
        # Only a plain '…' string: an E'…' string's escapes are sqlglot's reading, not the server's.
        tok = tokens[i] if i < len(tokens) else None
        if tok is None or tok.token_type != TokenType.STRING or self.sql[tok.start : tok.start + 1] != "'":
            raise Unparsable("COPY option value must be a plain string")
        return tokens[i].text

    def _copy_name(self, tok: Token) -> str:
        """An option's name or word value: a quoted name as written, a plain word folded. A
        token whose text is not its source (a string of any kind) is neither."""
        if tok.token_type == TokenType.IDENTIFIER:
            return tok.text  # quoted: as written
        if self.sql[tok.start : tok.end + 1] != tok.text or not _WORD.fullmatch(tok.text):
            raise Unparsable("COPY option not understood (values are words, numbers or plain '…' strings)")
        return tok.text.lower()

    def _copy_generic_option(self, item: list[Token]) -> nodes.CopyOption:
        """name [value]: a string, a number (signed), a word, *, or a parenthesized name list."""
        name = self._copy_name(item[0])
        value = item[1:]
        if not value:
            return nodes.CopyOption(name)
        first = value[0]
        if len(value) == 1:
            if first.token_type == TokenType.STRING:
                return nodes.CopyOption(name, "string", first.text)
            if first.token_type == TokenType.NUMBER:
                return nodes.CopyOption(name, "number", first.text)
            if first.token_type == TokenType.STAR:
                return nodes.CopyOption(name, "star")
            return nodes.CopyOption(name, "word", self._copy_name(first))
        if (
            len(value) == 2
            and first.token_type in (TokenType.DASH, TokenType.PLUS)
            and value[1].token_type == TokenType.NUMBER
        ):
            return nodes.CopyOption(
                name, "number", ("-" if first.token_type == TokenType.DASH else "") + value[1].text
            )
        if first.token_type == TokenType.L_PAREN and value[-1].token_type == TokenType.R_PAREN:
            return nodes.CopyOption(name, "columns", columns=self._copy_columns(value[1:-1]))
        raise Unparsable("COPY option value not understood")

    def _copy_columns(self, tokens: list[Token]) -> tuple[str, ...]:
        cols = []
        for part in _split_commas(tokens):
            if len(part) != 1:
                raise Unparsable("COPY column list not understood")
            cols.append(self._copy_name(part[0]))
        if not cols:
            raise Unparsable("COPY column list not understood")
        return tuple(cols)

    def _copy_legacy_options(self, tokens: list[Token]) -> list[nodes.CopyOption]:
        """BINARY, CSV, HEADER, FREEZE, DELIMITER [AS] 's', NULL [AS] 's', QUOTE [AS] 's',
        ESCAPE [AS] 's', ENCODING 's', FORCE QUOTE {*|cols}, FORCE NOT NULL cols, FORCE NULL cols."""
        out: list[nodes.CopyOption] = []
        i = 0
        flags = {
            "BINARY": ("format", "binary"),
            "CSV": ("format", "csv"),
            "HEADER": ("header", ""),
            "FREEZE": ("freeze", ""),
        }
        strings = {
            "DELIMITER": "delimiter",
            "NULL": "null",
            "QUOTE": "quote",
            "ESCAPE": "escape",
            "ENCODING": "encoding",
        }
        while i < len(tokens):
            w = self._plain_word(tokens[i])
            if w in flags:
                name, value = flags[w]
                out.append(nodes.CopyOption(name, "word", value) if value else nodes.CopyOption(name))
                i += 1
            elif w in strings:
                i += 1
                if w != "ENCODING" and i < len(tokens) and self._plain_word(tokens[i]) == "AS":
                    i += 1
                out.append(nodes.CopyOption(strings[w], "string", self._copy_string(tokens, i)))
                i += 1
            elif w == "FORCE":
                i += 1
                words = []
                while (
                    i < len(tokens)
                    and self._plain_word(tokens[i]) in ("QUOTE", "NOT", "NULL")
                    and len(words) < 2
                ):
                    words.append(self._plain_word(tokens[i]))
                    i += 1
                kind = {
                    ("QUOTE",): "force_quote",
                    ("NOT", "NULL"): "force_not_null",
                    ("NULL",): "force_null",
                }.get(tuple(words))
                if kind is None:
                    raise Unparsable("COPY FORCE option not understood")
                if kind == "force_quote" and i < len(tokens) and tokens[i].token_type == TokenType.STAR:
                    out.append(nodes.CopyOption(kind, "star"))
                    i += 1
                    continue
                cols: list[Token] = []
                while i < len(tokens):
                    cols.append(tokens[i])
                    i += 1
                    if i < len(tokens) and tokens[i].token_type == TokenType.COMMA:
                        cols.append(tokens[i])
                        i += 1
                    else:
                        break
                out.append(nodes.CopyOption(kind, "columns", columns=self._copy_columns(cols)))
            else:
                raise Unparsable("COPY option not understood")
        return out

    # --- administration, access control, code ---------------------------------------------------

    def _maintenance(self) -> Statement:
        command = self.word(-1)
        self.rest()
        return nodes.Maintenance(self.text(), command)

    def _access_control(self) -> Statement:
        command = self.word(-1)
        self.rest()
        return nodes.AccessControl(self.text(), command)

    def _ddl(self) -> Statement:
        """CREATE / ALTER / DROP: roles and code are maskgate's nodes, the rest sqlglot's."""
        action = self.word(-1)
        following = [self.word(k) for k in range(5)]
        if action == "ALTER" and following[0] == "SYSTEM":
            self.rest()
            return nodes.Maintenance(self.text(), "ALTER SYSTEM")
        if (following[0] in _ROLE_OBJECTS) or (action == "ALTER" and following[0] == "DEFAULT"):
            self.rest()
            return nodes.AccessControl(self.text(), f"{action} {following[0]}")
        if action == "DROP" and following[0] == "OWNED":
            self.rest()
            return nodes.AccessControl(self.text(), "DROP OWNED")
        obj = next((w for w in following if w not in _CREATE_MODIFIERS), "")
        code = obj if obj in _CODE_OBJECTS else next((w for w in following[:3] if w in _CODE_OBJECTS), "")
        if code:
            self.rest()
            return nodes.RoutineDefinition(self.text(), action, code)
        self.i = len(self.tokens)
        return self.sqlglot_statement(self.tokens)


def _closing_paren(tokens: list[Token], start: int) -> int:
    """The index of the parenthesis that closes the one at `start` (-1: none)."""
    depth = 0
    for n in range(start, len(tokens)):
        depth += (tokens[n].token_type == TokenType.L_PAREN) - (tokens[n].token_type == TokenType.R_PAREN)
        if depth == 0:
            return n
    return -1


def _split_commas(tokens: list[Token], keep_empty: bool = False) -> list[list[Token]]:
    parts: list[list[Token]] = [[]]
    depth = 0
    for tok in tokens:
        if tok.token_type in (TokenType.L_PAREN, TokenType.L_BRACKET):
            depth += 1
        elif tok.token_type in (TokenType.R_PAREN, TokenType.R_BRACKET):
            depth -= 1
        if tok.token_type == TokenType.COMMA and depth == 0:
            parts.append([])
        else:
            parts[-1].append(tok)
    return parts if keep_empty else [p for p in parts if p]


_COMMON: dict[str, Callable[[StatementParser], Statement]] = {
    "SET": StatementParser._set,
    "RESET": StatementParser._reset,
    "SHOW": StatementParser._show,
    "LOCK": StatementParser._lock,
    "EXPLAIN": StatementParser._explain,
    "PREPARE": StatementParser._prepare,
    "EXECUTE": StatementParser._execute,
    "DEALLOCATE": StatementParser._deallocate,
    "DO": StatementParser._do,
    "CALL": StatementParser._call,
    "DECLARE": StatementParser._declare,
    "FETCH": StatementParser._fetch,
    "MOVE": StatementParser._fetch,
    "CLOSE": StatementParser._close,
    "LISTEN": StatementParser._notification,
    "UNLISTEN": StatementParser._notification,
    "NOTIFY": StatementParser._notification,
    "DISCARD": StatementParser._discard,
    "COPY": StatementParser._copy,
    "BEGIN": StatementParser._begin,
    "START": StatementParser._start,
    "COMMIT": StatementParser._commit,
    "END": StatementParser._commit,
    "ROLLBACK": StatementParser._rollback,
    "ABORT": StatementParser._rollback,
    "SAVEPOINT": StatementParser._savepoint,
    "RELEASE": StatementParser._release,
    "GRANT": StatementParser._access_control,
    "REVOKE": StatementParser._access_control,
    "REASSIGN": StatementParser._access_control,
    "CREATE": StatementParser._ddl,
    "ALTER": StatementParser._ddl,
    "DROP": StatementParser._ddl,
    **dict.fromkeys(
        (
            "VACUUM",
            "ANALYZE",
            "ANALYSE",
            "CLUSTER",
            "REINDEX",
            "CHECKPOINT",
            "REFRESH",
            "LOAD",
            "SECURITY",
            "IMPORT",
        ),
        StatementParser._maintenance,
    ),
}
StatementParser.STATEMENT_PARSERS = _COMMON


class PostgresStatements(StatementParser):
    """PostgreSQL: the common table as it stands."""


class MySQLStatements(StatementParser):
    """MySQL: several assignments per SET, LOCK TABLES … READ/WRITE, DESCRIBE, USE, SHOW
    PROCESSLIST and the server-control statements."""

    def _set(self) -> Statement:
        head = self.word()
        if self.match("PASSWORD") or self.match("DEFAULT", "ROLE"):
            self.rest()
            return nodes.AccessControl(self.text(), f"SET {head}")
        if self.match("RESOURCE", "GROUP"):
            self.rest()
            return nodes.Maintenance(self.text(), "SET RESOURCE GROUP")
        k = 1 if head in ("SESSION", "GLOBAL", "LOCAL", "PERSIST", "PERSIST_ONLY") else 0
        first = self.word(k)
        if first in ("TRANSACTION", "NAMES", "CHARSET", "ROLE") or (
            first == "CHARACTER" and self.word(k + 1) == "SET"
        ):
            # One item whose own commas (isolation level, read only, roles) separate no items.
            return nodes.Set((self._set_item(self.rest()),))
        parts = _split_commas(self.rest())
        if not parts:
            raise Unparsable("SET without a setting")
        return nodes.Set(tuple(self._set_item(p) for p in parts))

    def _rename(self) -> Statement:
        if self.word() == "USER":
            self.rest()
            return nodes.AccessControl(self.text(), "RENAME USER")
        self.i = len(self.tokens)
        return self.sqlglot_statement(self.tokens)

    def _lock(self) -> Statement:
        self.match("TABLE") or self.match("TABLES")
        targets: list[nodes.LockTarget] = []
        for part in _split_commas(self.rest()):
            words = [t.text.upper() for t in part]
            cut = next((k for k, w in enumerate(words) if w in ("READ", "WRITE", "LOW_PRIORITY")), None)
            if cut is None or cut == 0:
                raise Unparsable("LOCK TABLES needs READ or WRITE")
            name = part[:cut]
            if len(name) >= 2 and name[-2].token_type == TokenType.ALIAS:
                name = name[:-2]
            elif len(name) >= 2 and name[-2].token_type != TokenType.DOT:
                name = name[:-1]  # `t alias READ`
            written = " ".join(words[cut:])
            if written not in ("READ", "READ LOCAL", "WRITE", "LOW_PRIORITY WRITE"):
                raise Unparsable("lock type not understood")
            mode = "ACCESS SHARE" if written.startswith("READ") else "ACCESS EXCLUSIVE"
            targets.append(nodes.LockTarget(self._table(name), mode, written_mode=written))
        if not targets:
            raise Unparsable("LOCK TABLES of nothing")
        return nodes.Lock(tuple(targets), tables_keyword="TABLES")

    def _unlock(self) -> Statement:
        # MySQL's tokenizer reads `UNLOCK TABLES` as one keyword.
        if self.word(-1) == "UNLOCK" and not (self.match("TABLES") or self.match("TABLE")):
            raise Unparsable("UNLOCK what")
        return nodes.UnlockTables(self.text())

    def _explain(self) -> Statement:
        options: list[nodes.ExplainOption] = []
        while True:
            if self.match("ANALYZE"):
                options.append(nodes.ExplainOption("ANALYZE"))
            elif self.word() == "FORMAT" and self.word(1) == "=":
                self.i += 2
                value = self._value(self.tokens[self.i : self.i + 1])
                if value is None:
                    raise Unparsable("EXPLAIN FORMAT not understood")
                self.i += 1
                options.append(nodes.ExplainOption("FORMAT", value))
            else:
                break
        if self.word() in ("SELECT", "WITH", "TABLE", "INSERT", "UPDATE", "DELETE", "REPLACE", "VALUES", "("):
            inner = self.inner(self.rest(), _PLANNABLE)
            return nodes.Explain(inner, tuple(options), equals=True)
        if self.word() == "FOR" and self.word(1) == "CONNECTION":
            # Another session's plan, with the literals of its conditions: a SHOW of that
            # session (DialectFacts.exposing_shows), not a description of a relation.
            words = tuple(self.word(k) for k in range(len(self.tokens) - self.i))
            self.rest()
            return nodes.Show(self.text(), ("EXPLAIN", *(w for w in words if w)))
        if self.word() in ("EXTENDED", "PARTITIONS") or len(self.tokens) - self.i > 4:
            # EXPLAIN EXTENDED prints (in its Note 1003) the rows the optimizer read as constants,
            # with no row filter or mask: only EXPLAIN of a statement, or of a table, is understood.
            raise Unparsable("EXPLAIN EXTENDED / PARTITIONS is not understood; use EXPLAIN")
        self.rest()  # EXPLAIN t [col]: metadata, like DESCRIBE
        return nodes.DescribeRelation(self.text())

    def _use(self) -> Statement:
        return nodes.Use(self.identifier())

    STATEMENT_PARSERS: ClassVar[dict[str, Callable[[StatementParser], Statement]]] = {
        **_COMMON,
        "SET": _set,
        "LOCK": _lock,
        "LOCK TABLES": _lock,
        "UNLOCK": _unlock,
        "UNLOCK TABLES": _unlock,
        "EXPLAIN": _explain,
        "DESCRIBE": _explain,
        "DESC": _explain,
        "USE": _use,
        "RENAME": _rename,
        **dict.fromkeys(
            (
                "KILL",
                "FLUSH",
                "OPTIMIZE",
                "REPAIR",
                "INSTALL",
                "UNINSTALL",
                "PURGE",
                "RESTART",
                "SHUTDOWN",
            ),
            StatementParser._maintenance,
        ),
    }  # type: ignore[dict-item]


STATEMENT_PARSER_CLASSES: dict[str, type[StatementParser]] = {
    "postgres": PostgresStatements,
    "mysql": MySQLStatements,
}
