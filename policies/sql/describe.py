"""Splitting a SQL string into statements and describing each one for the decision.

Owns: token-level statement splitting (sqlglot's tokenizer, so quotes, dollar-quotes and
comments are honoured), recognition of session plumbing that sqlglot parses only as
`exp.Command` (SET, SHOW, LOCK, EXPLAIN, PREPARE, DO, CALL, …), and turning every parsed
statement into a `Described` value: kind, required permission, the queries it reads and the
values it writes. Never judges: policies/decide.py does. Never edits SQL text by pattern.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.tokens import Token, TokenType

from policies.names import TableName
from policies.sql.analysis import AnalysisError, Analyzer, Lineage, QueryAnalysis, Use


class Unparsable(Exception):
    """The statement is not understood; refusing it is the only safe answer."""


@dataclass
class Described:
    kind: str
    text: str
    required: frozenset[str] = frozenset()  # statement permissions needed; empty: session plumbing
    needs_all: tuple[str, str] | None = None  # (reason, message) unless the role has statements: [all]
    query: QueryAnalysis | None = None  # the read whose rows the client receives
    reads: list[QueryAnalysis] = field(default_factory=list)  # further reads (predicates, write sources)
    flows: list[Lineage] = field(default_factory=list)  # values written somewhere
    flow_target: str = ""
    written: set[TableName] = field(default_factory=set)
    touched: set[TableName] = field(default_factory=set)  # DDL/LOCK targets (checked against tables)
    search_path: tuple[str, ...] | None = None
    schema_changed: bool = False
    tree: exp.Expression | None = None  # the original parsed statement, for rewrites
    prefix: str = ""  # text kept before the rewritten inner statement (EXPLAIN …, PREPARE x AS)
    result_rows: bool = True  # whether `query` outputs are the rows the client receives
    limit_rows: bool = False  # whether LIMIT max_rows+1 applies
    filtered_writes: set[TableName] = field(default_factory=set)  # INSERT/COPY FROM targets
    notes: list[str] = field(default_factory=list)

    def all_reads(self) -> list[QueryAnalysis]:
        return ([self.query] if self.query else []) + self.reads


PLUMBING_FIRST = {
    "BEGIN": "transaction",
    "COMMIT": "transaction",
    "END": "transaction",
    "ROLLBACK": "transaction",
    "ABORT": "transaction",
    "SAVEPOINT": "transaction",
    "RELEASE": "transaction",
    "SHOW": "show",
    "DISCARD": "session",
    "DEALLOCATE": "session",
    "LISTEN": "session",
    "UNLISTEN": "session",
    "CLOSE": "session",
    "RESET": "session",
    "DESCRIBE": "show",
    "DESC": "show",
    "USE": "session",
}
ADMIN_FIRST = {
    "VACUUM",
    "CLUSTER",
    "REINDEX",
    "CHECKPOINT",
    "REFRESH",
    "LOAD",
    "SECURITY",
    "IMPORT",
    "ANALYZE",
    "ANALYSE",
    "NOTIFY",
    "KILL",
    "FLUSH",
    "OPTIMIZE",
    "REPAIR",
    "INSTALL",
    "UNINSTALL",
    "PURGE",
    "RESTART",
    "SHUTDOWN",
}
DCL_OBJECTS = {"ROLE", "USER", "GROUP"}
CODE_OBJECTS = {
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
QUERY_STARTERS = {
    "SELECT",
    "WITH",
    "INSERT",
    "UPDATE",
    "DELETE",
    "VALUES",
    "TABLE",
    "MERGE",
    "CREATE",
    "DECLARE",
    "EXECUTE",
    "REPLACE",
}
SAFE_LOCK_MODES = {"ACCESS SHARE"}
READ_LOCK_MODES = {"ACCESS SHARE", "ROW SHARE"}


def _word(tok: Token) -> str:
    return tok.text.upper()


_PLAIN_TOKENIZERS: dict[str, object] = {}


def plain_tokens(text: str, dialect: str) -> list[Token]:
    """Tokens of one statement, without sqlglot's "rest of the statement is a string" handling
    of EXPLAIN, LOCK, SHOW, … so their inner words can be read."""
    tok = _PLAIN_TOKENIZERS.get(dialect)
    if tok is None:
        d = Dialect.get_or_raise(dialect)
        plain = type("PlainTokenizer", (d.tokenizer_class,), {"COMMANDS": set()})
        tok = _PLAIN_TOKENIZERS[dialect] = plain(dialect=d)
    try:
        return tok.tokenize(text)  # type: ignore[attr-defined]
    except sqlglot.errors.SqlglotError as e:
        raise Unparsable(f"cannot tokenize: {str(e).splitlines()[0]}") from None


def split_statements(sql: str, dialect: str) -> list[str]:
    """The text of each statement, split on top-level semicolons by the tokenizer (quotes,
    dollar-quotes and comments are honoured)."""
    try:
        tokens = Dialect.get_or_raise(dialect).tokenize(sql)
    except sqlglot.errors.SqlglotError as e:
        raise Unparsable(f"cannot tokenize: {str(e).splitlines()[0]}") from None
    out: list[str] = []
    start: int | None = None
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            if start is not None:
                out.append(sql[start : tok.start].strip())
            start = None
        elif start is None:
            start = tok.start
    if start is not None:
        out.append(sql[start:].strip())
    return [t for t in out if t]


def _check_tokens(tokens: list[Token], text: str) -> list[Token]:
    """Refuse lexical tricks the parser would misread, and turn `%s` into a placeholder."""
    fixed: list[Token] = []
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
            and nxt.start == tok.end + 1
        ):
            raise Unparsable('Unicode-escaped names (U&"…") are not supported; write the name plainly')
        if tok.text.upper() == "UESCAPE":
            raise Unparsable("UESCAPE is not supported")
        fixed.append(tok)
        i += 1
    return fixed


def _has_pyformat(tokens: list[Token]) -> bool:
    return any(
        t.token_type == TokenType.MOD
        and i + 1 < len(tokens)
        and tokens[i + 1].text == "s"
        and tokens[i + 1].start == t.end + 1
        for i, t in enumerate(tokens)
    )


def _replace_pyformat(text: str, tokens: list[Token]) -> str:
    """`%s` (client-side pyformat, MySQL drivers) → `?`, by token offsets."""
    out = []
    last = 0
    skip = False
    for i, t in enumerate(tokens):
        if skip:
            skip = False
            continue
        if (
            t.token_type == TokenType.MOD
            and i + 1 < len(tokens)
            and tokens[i + 1].text == "s"
            and (tokens[i + 1].start == t.end + 1)
        ):
            out.append(text[last : t.start])
            out.append("?")
            last = tokens[i + 1].end + 1
            skip = True
    out.append(text[last:])
    return "".join(out)


class Describer:
    """Turns one statement's text into a `Described` for a given analysis context."""

    def __init__(self, analyzer: Analyzer) -> None:
        self.a = analyzer
        self.facts = analyzer.facts
        self.dialect = analyzer.facts.sqlglot

    # --- entry ------------------------------------------------------------------------------

    def describe(self, text: str) -> Described:
        tokens = _check_tokens(plain_tokens(text, self.dialect), text)
        if not tokens:
            raise Unparsable("empty statement")
        if _has_pyformat(tokens):
            return self.describe(_replace_pyformat(text, tokens))
        first = _word(tokens[0])
        second = _word(tokens[1]) if len(tokens) > 1 else ""
        if first == "SET":
            return self._set(text, tokens)
        if first == "START" and second == "TRANSACTION":
            return Described("transaction", text)
        if (
            first in ("BEGIN", "END")
            and len(tokens) > 1
            and second not in ("TRANSACTION", "WORK", "ISOLATION", "READ", "NOT", "DEFERRABLE")
        ):
            raise Unparsable(f"{first} {second} is not understood")
        if (first in ("COMMIT", "ROLLBACK") and second == "PREPARED") or (
            first == "PREPARE" and second == "TRANSACTION"
        ):
            return Described("admin", text, frozenset({"admin"}))
        if first in PLUMBING_FIRST:
            if first == "SHOW" and self.facts.name == "mysql" and "PROCESSLIST" in {_word(t) for t in tokens}:
                return Described("admin", text, frozenset({"admin"}))
            if first in ("DESCRIBE", "DESC"):
                return self._describe_table(text, tokens)
            d = Described(PLUMBING_FIRST[first], text)
            if first == "RESET" and second in ("ALL", "SEARCH_PATH"):
                d.search_path = self.facts.default_search_path
            if first == "RESET" and second in ("ROLE", "SESSION"):
                d.notes.append("identity reset")
            if first == "USE" and len(tokens) > 1:
                d.search_path = (tokens[1].text,)
            return d
        if first == "LOCK":
            return self._lock(text, tokens)
        if first in ("EXPLAIN",):
            return self._explain(text, tokens)
        if first == "PREPARE":
            return self._prepare(text, tokens)
        if first == "EXECUTE":
            return Described(
                "execute",
                text,
                needs_all=("function_denied", "SQL-level EXECUTE runs a statement maskgate cannot see"),
            )
        if first == "DO":
            return Described("do", text, needs_all=("function_denied", "DO blocks run dynamic SQL"))
        if first == "CALL":
            name = tokens[1].text.lower() if len(tokens) > 1 else ""
            if len(tokens) > 3 and tokens[2].token_type == TokenType.DOT:
                name = f"{name}.{tokens[3].text.lower()}"
            d = Described(
                "call", text, needs_all=("function_denied", f"procedure {name} is not allow-listed")
            )
            d.notes.append(f"call:{name}")
            return d
        if first in ("DECLARE", "FETCH", "MOVE"):
            return Described(
                "cursor",
                text,
                needs_all=(
                    "statement_not_allowed",
                    "cursors are not available to this role; use plain SELECT",
                ),
            )
        if first in ADMIN_FIRST or (first == "ALTER" and second == "SYSTEM"):
            return Described("admin", text, frozenset({"admin"}))
        if (
            first in ("GRANT", "REVOKE", "REASSIGN")
            or (first in ("CREATE", "ALTER", "DROP") and second in DCL_OBJECTS)
            or (first == "ALTER" and second == "DEFAULT")
            or (first == "DROP" and second == "OWNED")
        ):
            return Described("dcl", text, frozenset({"dcl"}))
        if first in ("CREATE", "ALTER", "DROP"):
            words = [_word(t) for t in tokens[1:6]]
            obj = next(
                (w for w in words if w not in ("OR", "REPLACE", "TEMP", "TEMPORARY", "UNIQUE", "DEFINER")), ""
            )
            if obj in CODE_OBJECTS or any(w in CODE_OBJECTS for w in words[:3]):
                return Described(
                    "ddl",
                    text,
                    frozenset({"ddl"}),
                    needs_all=(
                        "function_denied",
                        "defining functions, triggers or extensions needs statements: [all]",
                    ),
                    schema_changed=True,
                )
        return self._parsed(text)

    # --- token-level statements ----------------------------------------------------------------

    def _set(self, text: str, tokens: list[Token]) -> Described:
        words = [_word(t) for t in tokens]
        i = 1
        if i < len(words) and words[i] in ("SESSION", "LOCAL", "GLOBAL", "PERSIST", "PERSIST_ONLY"):
            if words[i] in ("GLOBAL", "PERSIST", "PERSIST_ONLY"):
                return Described("admin", text, frozenset({"admin"}))
            if words[i] == "SESSION" and i + 1 < len(words) and words[i + 1] == "AUTHORIZATION":
                return self._identity(text, "session_authorization")
            if not (words[i] == "SESSION" and i + 1 < len(words) and words[i + 1] in ("CHARACTERISTICS",)):
                i += 1
        if "SELECT" in words or any(t.token_type == TokenType.L_PAREN for t in tokens):
            # MySQL `SET @x = (SELECT phone …)` stores a value maskgate would never mask.
            return Described(
                "session", text, needs_all=("statement_not_allowed", "SET with a subquery or function call")
            )
        if i >= len(words):
            raise Unparsable("incomplete SET")
        if words[i] in ("ROLE", "AUTHORIZATION"):
            return self._identity(text, "role")
        encoding_at = None
        if words[i] in ("NAMES", "CHARSET"):
            encoding_at = i + 1
        elif words[i] == "CHARACTER" and i + 1 < len(words) and words[i + 1] == "SET":
            encoding_at = i + 2
        if encoding_at is not None:
            value = tokens[encoding_at : encoding_at + 1]
            if len(tokens) > encoding_at + 1 and words[encoding_at + 1] != "COLLATE":
                value = tokens[encoding_at:]  # anything but `NAMES x [COLLATE y]` is no one encoding
            if self.facts.unsafe_setting("names", " ".join(t.text for t in value)):
                return self._lexical(text, "the client encoding")
            return Described("session", text)
        if words[i] in ("TRANSACTION", "CONSTRAINTS", "CHARACTERISTICS", "TIME"):
            return Described("session", text)
        name_parts = []
        j = i
        while (
            j < len(tokens) and tokens[j].token_type not in (TokenType.EQ,) and words[j] not in ("TO", ":=")
        ):
            name_parts.append(tokens[j].text)
            j += 1
        name = "".join(name_parts).lower()
        if name in self.facts.identity_settings:
            return self._identity(text, name)
        bare = self.facts.setting_key(name)
        if self.facts.unsafe_setting(bare, " ".join(t.text for t in tokens[j + 1 :])):
            return self._lexical(text, bare)
        d = Described("session", text)
        if name == "search_path":
            values = [t.text for t in tokens[j + 1 :] if t.token_type != TokenType.COMMA]
            if [v.upper() for v in values] == ["DEFAULT"]:
                d.search_path = self.facts.default_search_path
            else:
                d.search_path = tuple(v for v in values if v)
        return d

    def _lexical(self, text: str, setting: str) -> Described:
        return Described(
            "session",
            text,
            needs_all=(
                "statement_not_allowed",
                f"this value of {setting} changes how SQL text is read; it needs statements: [all]",
            ),
        )

    def _identity(self, text: str, setting: str) -> Described:
        return Described(
            "session",
            text,
            needs_all=("statement_not_allowed", f"changing {setting} needs statements: [all]"),
        )

    def _describe_table(self, text: str, tokens: list[Token]) -> Described:
        d = Described("show", text)
        return d

    def _lock(self, text: str, tokens: list[Token]) -> Described:
        words = [_word(t) for t in tokens]
        i = 1
        if i < len(words) and words[i] in ("TABLE", "TABLES"):
            i += 1
        names: list[list[str]] = [[]]
        while i < len(tokens) and words[i] not in ("IN", "NOWAIT", "READ", "WRITE"):
            t = tokens[i]
            if t.token_type == TokenType.COMMA:
                names.append([])
            elif t.token_type not in (TokenType.DOT, TokenType.STAR) and words[i] != "ONLY":
                names[-1].append(t.text if t.token_type == TokenType.IDENTIFIER else t.text.lower())
            i += 1
        mode = "ACCESS EXCLUSIVE"
        if i < len(words) and words[i] == "IN":
            end = words.index("MODE") if "MODE" in words else len(words)
            mode = " ".join(words[i + 1 : end])
        elif i < len(words) and words[i] in ("READ", "WRITE"):  # MySQL LOCK TABLES t READ
            mode = "ACCESS SHARE" if words[i] == "READ" else "ACCESS EXCLUSIVE"
        tables = set()
        for parts in names:
            if not parts or len(parts) > 3:
                if parts:
                    raise Unparsable("bad LOCK target")
                continue
            node = exp.Table(
                this=exp.to_identifier(parts[-1]),
                db=exp.to_identifier(parts[-2]) if len(parts) > 1 else None,
                catalog=exp.to_identifier(parts[-3]) if len(parts) > 2 else None,
            )
            tables.add(self.a.resolve_table(node))
        required = "select" if mode in READ_LOCK_MODES else "admin"
        d = Described("lock", text, frozenset({required}))
        d.touched = tables
        return d

    def _inner_start(self, tokens: list[Token]) -> int | None:
        depth = 0
        for i, t in enumerate(tokens[1:], start=1):
            if t.token_type == TokenType.L_PAREN:
                depth += 1
            elif t.token_type == TokenType.R_PAREN:
                depth -= 1
            elif depth == 0 and _word(t) in QUERY_STARTERS:
                return i
        return None

    def _explain(self, text: str, tokens: list[Token]) -> Described:
        start = self._inner_start(tokens)
        if start is None:
            if self.facts.name == "mysql":
                return Described("show", text)
            raise Unparsable("EXPLAIN of an unknown statement")
        inner = self.describe(text[tokens[start].start :])
        inner.prefix = text[: tokens[start].start]
        inner.text = text
        inner.result_rows = False  # the client receives a plan, not rows
        inner.limit_rows = False
        inner.notes.append("explain")
        if any(_word(t) in ("ANALYZE", "ANALYSE") for t in tokens[1:start]):
            # It runs the statement and reports actual row counts (`Rows Removed by Filter`).
            # `ANALYZE false` counts too: refusing a no-op costs nothing.
            inner.notes.append("explain analyze")
        return inner

    def _prepare(self, text: str, tokens: list[Token]) -> Described:
        words = [_word(t) for t in tokens]
        depth = 0
        for i, t in enumerate(tokens):
            if t.token_type == TokenType.L_PAREN:
                depth += 1
            elif t.token_type == TokenType.R_PAREN:
                depth -= 1
            elif depth == 0 and words[i] == "AS" and i + 1 < len(tokens):
                inner = self.describe(text[tokens[i + 1].start :])
                inner.prefix = text[: tokens[i + 1].start]
                inner.text = text
                inner.notes.append(f"prepare:{tokens[1].text}")
                return inner
            elif depth == 0 and words[i] == "FROM":  # MySQL PREPARE s FROM '…': SQL in a string
                return Described(
                    "prepare",
                    text,
                    needs_all=("function_denied", "PREPARE … FROM a string is dynamic SQL"),
                )
        raise Unparsable("PREPARE without AS")

    # --- parsed statements --------------------------------------------------------------------

    def _parsed(self, text: str) -> Described:
        try:
            trees = sqlglot.parse(text, read=self.dialect)
        except sqlglot.errors.SqlglotError as e:
            raise Unparsable(f"cannot parse: {str(e).splitlines()[0][:200]}") from None
        trees = [t for t in trees if t is not None]
        if len(trees) != 1:
            raise Unparsable("expected one statement")
        tree = trees[0]
        if isinstance(tree, exp.Command) or tree.find(exp.Command):
            raise Unparsable("statement not understood")
        d = self._dispatch(text, tree)
        d.tree = tree
        if tree.find(exp.Lock) is not None:
            # SELECT … FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE takes row locks: a write.
            d.required = d.required | {"update"}
            d.notes.append("row locks")
        return d

    def _query(self, node: exp.Expression) -> QueryAnalysis:
        return self.a.analyse_query(node.copy())

    def _dispatch(self, text: str, tree: exp.Expression) -> Described:
        if isinstance(tree, exp.Select) and tree.args.get("into") is not None:
            q = tree.copy()
            into = q.args["into"]
            q.set("into", None)
            d = Described("ddl", text, frozenset({"select", "ddl"}), schema_changed=True)
            analysis = self._query(q)
            d.reads.append(analysis)
            d.flows = list(analysis.outputs or self._value_lineage(analysis))
            d.flow_target = "SELECT INTO"
            if isinstance(into.this, exp.Table):
                d.written.add(self.a.resolve_table(into.this))
            return d
        if isinstance(tree, exp.Query):
            d = Described("select", text, frozenset({"select"}), limit_rows=True)
            d.query = self._query(tree)
            return d
        if isinstance(tree, exp.Insert):
            return self._insert(text, tree)
        if isinstance(tree, exp.Update):
            return self._update(text, tree)
        if isinstance(tree, exp.Delete):
            return self._delete(text, tree)
        if isinstance(tree, exp.Merge):
            return self._merge(text, tree)
        if isinstance(tree, exp.Copy):
            return self._copy(text, tree)
        if isinstance(tree, exp.Create):
            return self._create(text, tree)
        if isinstance(tree, exp.Drop | exp.Alter | exp.TruncateTable | exp.Comment):
            d = Described("ddl", text, frozenset({"ddl"}), schema_changed=True)
            for t in tree.find_all(exp.Table):
                if isinstance(t.this, exp.Identifier):
                    d.touched.add(self.a.resolve_table(t))
            if isinstance(tree, exp.TruncateTable):
                d.filtered_writes |= d.touched
            return d
        if isinstance(tree, exp.Grant | exp.Revoke):
            return Described("dcl", text, frozenset({"dcl"}))
        if isinstance(tree, exp.Analyze):
            return Described("admin", text, frozenset({"admin"}))
        if isinstance(tree, exp.Transaction | exp.Commit | exp.Rollback):
            return Described("transaction", text)
        if isinstance(tree, exp.Use):
            return Described("session", text, search_path=(tree.name,) if tree.name else None)
        if isinstance(tree, exp.Show | exp.Describe):
            return Described("show", text)
        raise Unparsable(f"{type(tree).__name__} statements are not understood")

    def _value_lineage(self, analysis: QueryAnalysis) -> list[Lineage]:
        return [
            Lineage("", u.columns, True, u.opaque) for u in analysis.uses if u.role in ("value", "whole_row")
        ]

    def _flows_of(self, analysis: QueryAnalysis) -> list[Lineage]:
        return list(analysis.outputs) if analysis.outputs is not None else self._value_lineage(analysis)

    def _returning(
        self, d: Described, tree: exp.Expression, target: exp.Table, extra: list[exp.Expression]
    ) -> None:
        returning = tree.args.get("returning")
        if returning is None:
            d.result_rows = False
            return
        sel = exp.Select(expressions=[e.copy() for e in returning.expressions]).from_(target.copy())
        for t in extra:
            sel = sel.join(t.copy())
        d.query = self._query(sel)

    def _target(self, tree: exp.Expression) -> exp.Table:
        target = tree.this
        if isinstance(target, exp.Schema):
            target = target.this
        if not isinstance(target, exp.Table):
            raise Unparsable("write target is not a table")
        return target

    def _insert(self, text: str, tree: exp.Insert) -> Described:
        target = self._target(tree)
        d = Described("insert", text, frozenset({"insert"}))
        table = self.a.resolve_table(target)
        d.written.add(table)
        d.filtered_writes.add(table)
        source = tree.expression
        if isinstance(source, exp.Values):
            # Each row that computes something (a subquery, a column) is read like a SELECT;
            # rows of plain literals (bulk loads) carry nothing classified and are skipped.
            for row in source.expressions:
                values = row.expressions if isinstance(row, exp.Tuple) else [row]
                if any(v.find(exp.Column, exp.Query) for v in values):
                    analysis = self._query(exp.Select(expressions=[v.copy() for v in values]))
                    d.reads.append(analysis)
                    d.flows += self._flows_of(analysis)
            d.flow_target = f"INSERT INTO {table}"
        elif source is not None:
            sel = source.copy()
            if tree.args.get("with_") is not None and isinstance(sel, exp.Query):
                sel.set("with_", tree.args["with_"].copy())
            analysis = self._query(sel)
            d.reads.append(analysis)
            d.flows = self._flows_of(analysis)
            d.flow_target = f"INSERT INTO {table}"
        conflict = tree.args.get("conflict")
        if conflict is not None:
            exprs = [e.expression for e in conflict.find_all(exp.EQ) if e.expression is not None]
            if exprs:
                sel = exp.Select(expressions=[e.copy() for e in exprs]).from_(target.copy())
                analysis = self._query(sel)
                d.reads.append(analysis)
                d.flows += self._flows_of(analysis)
        self._returning(d, tree, target, [])
        return d

    def _from_tables(self, tree: exp.Expression) -> list[exp.Expression]:
        out: list[exp.Expression] = []
        frm = tree.args.get("from_")
        if frm is not None:
            out.append(frm.this)
            out.extend(frm.expressions or [])
        for u in tree.args.get("using") or []:
            out.append(u)
        return out

    def _update(self, text: str, tree: exp.Update) -> Described:
        target = self._target(tree)
        table = self.a.resolve_table(target)
        d = Described("update", text, frozenset({"update"}))
        d.written.add(table)
        extra = self._from_tables(tree)
        sel = exp.Select(expressions=[eq.expression.copy() for eq in tree.expressions]).from_(target.copy())
        for t in extra:
            sel = sel.join(t.copy())
        for j in tree.args.get("joins") or []:
            sel = sel.join(j.copy())
        if tree.args.get("where") is not None:
            sel.set("where", tree.args["where"].copy())
        if tree.args.get("with_") is not None:
            sel.set("with_", tree.args["with_"].copy())
        analysis = self._query(sel)
        d.reads.append(analysis)
        d.flows = self._flows_of(analysis)
        d.flow_target = f"UPDATE {table}"
        self._returning(d, tree, target, extra)
        return d

    def _delete(self, text: str, tree: exp.Delete) -> Described:
        target = self._target(tree)
        table = self.a.resolve_table(target)
        d = Described("delete", text, frozenset({"delete"}))
        d.written.add(table)
        extra = self._from_tables(tree)
        sel = exp.Select(expressions=[exp.Literal.number(1)]).from_(target.copy())
        for t in extra:
            sel = sel.join(t.copy())
        if tree.args.get("where") is not None:
            sel.set("where", tree.args["where"].copy())
        if tree.args.get("with_") is not None:
            sel.set("with_", tree.args["with_"].copy())
        d.reads.append(self._query(sel))
        self._returning(d, tree, target, extra)
        return d

    def _merge(self, text: str, tree: exp.Merge) -> Described:
        target = self._target(tree)
        table = self.a.resolve_table(target)
        kinds: set[str] = set()
        values: list[exp.Expression] = []
        conds: list[exp.Expression] = []
        whens = tree.args.get("whens")
        for when in whens.expressions if whens is not None else []:
            then = when.args.get("then")
            if when.args.get("condition") is not None:
                conds.append(when.args["condition"])
            if isinstance(then, exp.Update):
                kinds.add("update")
                values += [eq.expression for eq in then.expressions]
            elif isinstance(then, exp.Insert):
                kinds.add("insert")
                if then.expression is not None:
                    values += list(then.expression.expressions or [then.expression])
            elif then is not None and "DELETE" in then.sql().upper():
                kinds.add("delete")
            else:
                kinds.add("update")
        d = Described("merge", text, frozenset(kinds or {"update"}))
        d.written.add(table)
        d.filtered_writes.add(table)
        sel = exp.Select(expressions=[v.copy() for v in values] or [exp.Literal.number(1)]).from_(
            target.copy()
        )
        using = tree.args.get("using")
        if using is not None:
            sel = sel.join(using.copy())
        where = tree.args.get("on")
        for c in conds:
            where = exp.and_(where, c) if where is not None else c
        if where is not None:
            sel.set("where", exp.Where(this=where.copy()))
        analysis = self._query(sel)
        d.reads.append(analysis)
        d.flows = self._flows_of(analysis)
        d.flow_target = f"MERGE INTO {table}"
        return d

    def _copy(self, text: str, tree: exp.Copy) -> Described:
        this = tree.this
        files = tree.args.get("files") or []
        dest = files[0] if files else None
        to_client = isinstance(dest, exp.Identifier) and dest.name.upper() in ("STDOUT", "STDIN")
        program = isinstance(dest, exp.Identifier) and dest.name.upper() == "PROGRAM"
        inbound = bool(tree.args.get("kind"))
        if isinstance(this, exp.Subquery | exp.Query):
            query = this.this if isinstance(this, exp.Subquery) else this
            table_node = None
        else:
            cols = []
            table_node = this
            if isinstance(this, exp.Schema):
                table_node = this.this
                cols = [exp.column(i.name) for i in this.expressions]
            if not isinstance(table_node, exp.Table):
                raise Unparsable("COPY of an unknown target")
            query = exp.Select(expressions=cols or [exp.Star()]).from_(table_node.copy())
        if inbound:
            if table_node is None:
                raise Unparsable("COPY (query) FROM")
            table = self.a.resolve_table(table_node)
            d = Described("copy", text, frozenset({"insert"}))
            d.written.add(table)
            d.filtered_writes.add(table)
            d.result_rows = False
            if not to_client:
                d.needs_all = ("function_denied", "COPY FROM a server file or program")
            return d
        d = Described("copy", text, frozenset({"select"}), limit_rows=to_client)
        analysis = self._query(query)
        if to_client:
            d.query = analysis
            if tree.args.get("params") or self._copy_options(text):
                # The proxy masks COPY data in the default text format; other framings
                # (CSV with a digit delimiter, binary) move values across its field boundaries.
                d.notes.append("copy options")
        else:
            d.reads.append(analysis)
            d.flows = self._flows_of(analysis)
            d.flow_target = "COPY TO a server " + ("program" if program else "file")
            d.result_rows = False
            d.needs_all = ("function_denied", "COPY TO a server file or program")
        return d

    def _copy_options(self, text: str) -> bool:
        """Whether anything but `;` follows `TO STDOUT` (sqlglot may drop options it does not know)."""
        tokens = plain_tokens(text, self.dialect)
        depth = 0
        for i, t in enumerate(tokens):
            if t.token_type == TokenType.L_PAREN:
                depth += 1
            elif t.token_type == TokenType.R_PAREN:
                depth -= 1
            elif depth == 0 and _word(t) == "TO" and i + 1 < len(tokens):
                rest = tokens[i + 2 :]
                return any(r.token_type != TokenType.SEMICOLON for r in rest)
        return True

    def _create(self, text: str, tree: exp.Create) -> Described:
        kind = (tree.args.get("kind") or "").upper()
        d = Described("ddl", text, frozenset({"ddl"}), schema_changed=True)
        if kind in ("FUNCTION", "PROCEDURE", "TRIGGER") or isinstance(tree.this, exp.UserDefinedFunction):
            d.needs_all = ("function_denied", "defining functions needs statements: [all]")
            return d
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        if isinstance(target, exp.Table) and isinstance(target.this, exp.Identifier):
            d.touched.add(self.a.resolve_table(target))
        for t in tree.find_all(exp.Table):
            if (
                t is not target
                and isinstance(t.this, exp.Identifier)
                and not isinstance(tree.expression, exp.Query)
            ):
                d.touched.add(self.a.resolve_table(t))  # CREATE INDEX ON t, REFERENCES t
        query = tree.expression
        if isinstance(query, exp.Query):
            analysis = self._query(query)
            d.reads.append(analysis)
            d.flows = self._flows_of(analysis)
            d.flow_target = f"CREATE {kind or 'TABLE'} AS"
            d.required = frozenset({"ddl", "select"})
        return d


def flows_text(flows: list[Lineage]) -> list[str]:
    return [str(c) for f in flows for c in sorted(f.sources)]


__all__ = ["AnalysisError", "Described", "Describer", "Unparsable", "Use", "split_statements"]
