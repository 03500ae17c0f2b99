"""maskgate's statement nodes: the statements sqlglot leaves as `exp.Command`, as typed trees.

Owns the node types that policies/sql/parser.py builds for session plumbing, utility, code and
access-control statements (SET, LOCK, EXPLAIN, PREPARE, CALL, cursors, …) and their rendering back
to SQL. A node holds sqlglot expressions where the statement has them (a LOCK's tables, a CALL's
arguments, the statement an EXPLAIN or PREPARE wraps), so one tree carries the whole statement and
a rewrite of the inner statement renders with its wrapper. Never describes or judges.

sqlglot's own Expression, Parser and Generator classes are compiled (sqlglotc) and cannot be
subclassed from Python, so these nodes are frozen dataclasses beside them rather than Expression
subclasses; `sql()` plays the generator's part.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlglot import exp

# Set on a COPY tree by the parser: its option list (CopyOptions), which sqlglot does not read.
COPY_OPTIONS_META = "maskgate_copy_options"


def render(statement: Statement, dialect: str) -> str:
    """SQL text of a tree. Function names keep their spelling: sqlglot would write a quoted
    "MyFunc"(x) as "MYFUNC"(x), another function. Trees are rendered without a copy: a tree
    is rendered when its decision is made, and never changed after. A COPY's options follow
    its destination, in the parenthesized form whatever form they were written in."""
    if isinstance(statement, Node):
        return statement.sql(dialect)
    into = statement.args.get("into") if isinstance(statement, exp.Select) else None
    if into is not None and dialect == "mysql":
        # sqlglot writes MySQL's SELECT … INTO as CREATE TABLE … AS SELECT (MySQL has no SELECT
        # INTO a table); the only INTO it reads there is user variables, which MySQL and MariaDB
        # both take at the end of the statement.
        statement.set("into", None)
        try:
            text = statement.sql(dialect=dialect, normalize_functions=False, copy=False)
        finally:
            statement.set("into", into)
        return f"{text} INTO {into.this.sql(dialect=dialect)}"
    text = statement.sql(dialect=dialect, normalize_functions=False, copy=False)
    options = statement.meta.get(COPY_OPTIONS_META) if isinstance(statement, exp.Copy) else None
    if isinstance(options, CopyOptions) and (options.options or options.program is not None):
        text += " " + options.sql()
    return text


def sqlglot_trees(statement: Statement) -> Iterator[exp.Expression]:
    """The sqlglot trees a statement is made of: itself, or those its node holds (an EXPLAIN's
    or PREPARE's statement, a LOCK's tables, a CALL's arguments, …)."""
    if isinstance(statement, Node):
        for child in statement.expressions():
            yield from sqlglot_trees(child)
    else:
        yield statement


def _join(parts: list[str]) -> str:
    return " ".join(p for p in parts if p)


def _csv(items: tuple[exp.Expression, ...], dialect: str) -> str:
    return ", ".join(render(i, dialect) for i in items)


@dataclass(frozen=True, slots=True)
class Node:
    """Base of maskgate's statement nodes."""

    def sql(self, dialect: str) -> str:
        raise NotImplementedError

    def expressions(self) -> Iterator[Statement]:
        """The sqlglot expressions and inner statements this node holds (for identifier folding)."""
        return iter(())


# One parsed statement: a sqlglot tree for what sqlglot models, a node for the rest.
Statement = exp.Expression | Node


@dataclass(frozen=True, slots=True)
class Verbatim(Node):
    """A statement maskgate classifies by its leading words but does not take apart (VACUUM,
    GRANT, CREATE FUNCTION, SHOW, …): nothing inside it is ever rewritten, so it renders as the
    client wrote it."""

    text: str

    def sql(self, dialect: str) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Maintenance(Verbatim):
    """VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, REFRESH, ALTER SYSTEM, KILL, FLUSH, …:
    server administration (statements: [admin])."""

    command: str = ""


@dataclass(frozen=True, slots=True)
class AccessControl(Verbatim):
    """GRANT, REVOKE, REASSIGN OWNED, DROP OWNED, role and user DDL, default privileges,
    MySQL's SET PASSWORD and SET DEFAULT ROLE (statements: [dcl])."""

    command: str = ""


@dataclass(frozen=True, slots=True)
class RoutineDefinition(Verbatim):
    """CREATE/ALTER/DROP of code the server runs later or elsewhere: functions, procedures,
    triggers, rules, events, extensions, languages, casts, operators, servers, foreign objects,
    publications, subscriptions, access methods."""

    action: str = ""
    object_kind: str = ""


@dataclass(frozen=True, slots=True)
class TwoPhaseCommit(Verbatim):
    """PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED: they act on transactions of
    other sessions (statements: [admin]). `action` is one of those three, as listed."""

    action: str = ""


@dataclass(frozen=True, slots=True)
class Show(Verbatim):
    """SHOW … (PostgreSQL's settings, MySQL's SHOW TABLES, …). `words` are its words in upper
    case, unquoted ones only."""

    words: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DescribeRelation(Verbatim):
    """MySQL's DESCRIBE t / DESC t / EXPLAIN t: the columns of a table."""


@dataclass(frozen=True, slots=True)
class TransactionControl(Verbatim):
    """BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE, ROLLBACK TO
    SAVEPOINT, and the transaction characteristics they carry. `savepoint` names the savepoint
    of the last three (folded like any name)."""

    action: str = ""
    savepoint: exp.Identifier | None = None

    def expressions(self) -> Iterator[Statement]:
        if self.savepoint is not None:
            yield self.savepoint


@dataclass(frozen=True, slots=True)
class Discard(Verbatim):
    """DISCARD ALL | PLANS | SEQUENCES | TEMP. `what` is the word, in upper case."""

    what: str = ""


@dataclass(frozen=True, slots=True)
class Notification(Verbatim):
    """LISTEN ch, UNLISTEN ch | *, NOTIFY ch [, payload]."""

    action: str = ""


@dataclass(frozen=True, slots=True)
class UnlockTables(Verbatim):
    """MySQL's UNLOCK TABLES."""


@dataclass(frozen=True, slots=True)
class SetItem(Node):
    """One assignment of a SET statement. `kind` is setting | names | role |
    session_authorization | transaction | constraints | time_zone. `name` is the setting's name
    as the server looks it up (lower case; MySQL's `@@session.x` stays as written apart from
    case); `values` are its values as written: strings and numbers as literals, quoted names as
    identifiers, bare words as `exp.Var` (DEFAULT, on, public, …). `computed` is a value that is
    an expression (a function call, a subquery, a variable), parsed by sqlglot."""

    kind: str
    name: str = ""
    values: tuple[exp.Expression, ...] = ()
    scope: str = ""  # SESSION | LOCAL | GLOBAL | PERSIST | PERSIST_ONLY, as written
    collate: exp.Expression | None = None
    computed: exp.Expression | None = None

    def sql(self, dialect: str) -> str:
        value = render(self.computed, dialect) if self.computed is not None else _csv(self.values, dialect)
        if self.kind == "setting":
            body = f"{self.name} = {value}"
        elif self.kind == "names":
            collate = f" COLLATE {render(self.collate, dialect)}" if self.collate is not None else ""
            body = f"NAMES {value}{collate}"
        elif self.kind == "session_authorization":
            body = f"SESSION AUTHORIZATION {value}"
        elif self.kind == "time_zone":
            body = f"TIME ZONE {value}"
        else:
            body = f"{self.kind.upper()} {value}"
        return _join([self.scope, body])

    def expressions(self) -> Iterator[Statement]:
        yield from self.values
        if self.computed is not None:
            yield self.computed


@dataclass(frozen=True, slots=True)
class Set(Node):
    """SET …; MySQL may assign several settings in one statement."""

    items: tuple[SetItem, ...]

    def sql(self, dialect: str) -> str:
        return "SET " + ", ".join(i.sql(dialect) for i in self.items)

    def expressions(self) -> Iterator[Statement]:
        for item in self.items:
            yield from item.expressions()


@dataclass(frozen=True, slots=True)
class Reset(Node):
    """RESET name | RESET ALL (name None) | RESET ROLE | RESET SESSION AUTHORIZATION."""

    name: str | None

    def sql(self, dialect: str) -> str:
        if self.name is None:
            return "RESET ALL"
        return "RESET " + ("SESSION AUTHORIZATION" if self.name == "session_authorization" else self.name)


@dataclass(frozen=True, slots=True)
class LockTarget(Node):
    table: exp.Table
    mode: str  # PostgreSQL's lock mode; MySQL's READ becomes ACCESS SHARE, WRITE ACCESS EXCLUSIVE
    only: bool = False
    written_mode: str = ""  # MySQL: READ [LOCAL] | [LOW_PRIORITY] WRITE as written

    def sql(self, dialect: str) -> str:
        return _join(["ONLY" if self.only else "", render(self.table, dialect), self.written_mode])

    def expressions(self) -> Iterator[Statement]:
        yield self.table


@dataclass(frozen=True, slots=True)
class Lock(Node):
    """LOCK [TABLE] t, … [IN mode MODE] [NOWAIT] (PostgreSQL) or LOCK TABLES t READ, … (MySQL)."""

    targets: tuple[LockTarget, ...]
    nowait: bool = False
    tables_keyword: str = "TABLE"

    def sql(self, dialect: str) -> str:
        if any(t.written_mode for t in self.targets):
            return "LOCK TABLES " + ", ".join(t.sql(dialect) for t in self.targets)
        mode = self.targets[0].mode if self.targets else "ACCESS EXCLUSIVE"
        names = ", ".join(t.sql(dialect) for t in self.targets)
        return _join(["LOCK", self.tables_keyword, names, f"IN {mode} MODE", "NOWAIT" if self.nowait else ""])

    def expressions(self) -> Iterator[Statement]:
        for t in self.targets:
            yield from t.expressions()


@dataclass(frozen=True, slots=True)
class ExplainOption(Node):
    name: str  # upper case
    value: exp.Expression | None = None

    def sql(self, dialect: str) -> str:
        return _join([self.name, render(self.value, dialect) if self.value is not None else ""])


@dataclass(frozen=True, slots=True)
class Explain(Node):
    """EXPLAIN [ANALYZE] [VERBOSE] stmt | EXPLAIN (option [value], …) stmt | MySQL's
    EXPLAIN [FORMAT = x] [ANALYZE] stmt. `parenthesized`: the option-list form."""

    statement: Statement
    options: tuple[ExplainOption, ...] = ()
    parenthesized: bool = False
    # MySQL's `FORMAT = JSON` is written with an equals sign.
    equals: bool = False

    @property
    def analyze(self) -> bool:
        """Whether the statement runs. `ANALYZE false` counts too: refusing a no-op costs nothing."""
        return any(o.name in ("ANALYZE", "ANALYSE") for o in self.options)

    def sql(self, dialect: str) -> str:
        inner = render(self.statement, dialect)
        if self.parenthesized:
            return f"EXPLAIN ({', '.join(o.sql(dialect) for o in self.options)}) {inner}"
        opts = [
            f"{o.name} = {render(o.value, dialect)}"
            if self.equals and o.value is not None
            else o.sql(dialect)
            for o in self.options
        ]
        return _join(["EXPLAIN", *opts, inner])

    def expressions(self) -> Iterator[Statement]:
        yield self.statement


@dataclass(frozen=True, slots=True)
class Prepare(Node):
    """PREPARE name [(type, …)] AS stmt, or MySQL's PREPARE name FROM '<stmt>' (`from_text`)."""

    name: exp.Identifier
    statement: Statement
    types: tuple[exp.DataType, ...] = ()
    from_text: bool = False

    def sql(self, dialect: str) -> str:
        if self.from_text:
            # The statement as a plain string under MySQL's default sql_mode (sessions that
            # turned off backslash escapes are refused for restricted roles).
            inner = render(self.statement, dialect).replace("\\", "\\\\").replace("'", "''")
            return f"PREPARE {render(self.name, dialect)} FROM '{inner}'"
        types = f" ({_csv(self.types, dialect)})" if self.types else ""
        return f"PREPARE {render(self.name, dialect)}{types} AS {render(self.statement, dialect)}"

    def expressions(self) -> Iterator[Statement]:
        yield self.name
        yield self.statement


@dataclass(frozen=True, slots=True)
class PrepareFrom(Node):
    """MySQL's PREPARE name FROM 'text' | @variable: SQL in a string."""

    name: exp.Identifier
    source: exp.Expression

    def sql(self, dialect: str) -> str:
        return f"PREPARE {render(self.name, dialect)} FROM {render(self.source, dialect)}"


@dataclass(frozen=True, slots=True)
class Execute(Node):
    """EXECUTE name [(arg, …)] | MySQL's EXECUTE name [USING @a, …]."""

    name: exp.Identifier
    args: tuple[exp.Expression, ...] = ()
    using: bool = False

    def expressions(self) -> Iterator[Statement]:
        yield self.name
        yield from self.args

    def sql(self, dialect: str) -> str:
        if not self.args:
            return f"EXECUTE {render(self.name, dialect)}"
        if self.using:
            return f"EXECUTE {render(self.name, dialect)} USING {_csv(self.args, dialect)}"
        return f"EXECUTE {render(self.name, dialect)}({_csv(self.args, dialect)})"


@dataclass(frozen=True, slots=True)
class Deallocate(Node):
    """DEALLOCATE [PREPARE] name | ALL (name None)."""

    name: exp.Identifier | None
    prepare_keyword: bool = False

    def expressions(self) -> Iterator[Statement]:
        if self.name is not None:
            yield self.name

    def sql(self, dialect: str) -> str:
        head = "DEALLOCATE PREPARE" if self.prepare_keyword else "DEALLOCATE"
        return f"{head} {render(self.name, dialect) if self.name is not None else 'ALL'}"


@dataclass(frozen=True, slots=True)
class Do(Verbatim):
    """DO [LANGUAGE l] 'code' (PostgreSQL) or DO expr, … (MySQL): code maskgate cannot see into."""


@dataclass(frozen=True, slots=True)
class Call(Node):
    """CALL name(arg, …). `name` holds the procedure's name parts, folded."""

    name: tuple[exp.Identifier, ...]
    args: tuple[exp.Expression, ...] = ()

    @property
    def qualified_name(self) -> str:
        return ".".join(i.name for i in self.name)

    def sql(self, dialect: str) -> str:
        return f"CALL {'.'.join(render(i, dialect) for i in self.name)}({_csv(self.args, dialect)})"

    def expressions(self) -> Iterator[Statement]:
        yield from self.name
        yield from self.args


@dataclass(frozen=True, slots=True)
class Cursor(Node):
    """DECLARE name … CURSOR … FOR stmt, FETCH/MOVE … name, CLOSE name | ALL. `options` are the
    words between the action and the name (DECLARE: between name and FOR), upper-cased and
    joined by one space, checked against PostgreSQL's grammar by the parser."""

    action: str  # DECLARE | FETCH | MOVE | CLOSE
    name: exp.Identifier | None
    options: str = ""
    statement: Statement | None = None

    @property
    def hold(self) -> bool:
        """DECLARE … WITH HOLD: the cursor outlives the transaction that commits it."""
        return self.options.endswith(" WITH HOLD")

    def sql(self, dialect: str) -> str:
        name = render(self.name, dialect) if self.name is not None else "ALL"
        if self.action == "DECLARE":
            inner = render(self.statement, dialect) if self.statement is not None else ""
            return _join(["DECLARE", name, self.options, "FOR", inner])
        return _join([self.action, self.options, name])

    def expressions(self) -> Iterator[Statement]:
        if self.name is not None:
            yield self.name
        if self.statement is not None:
            yield self.statement


@dataclass(frozen=True, slots=True)
class Use(Node):
    """MySQL's USE db."""

    database: exp.Identifier

    def sql(self, dialect: str) -> str:
        return f"USE {render(self.database, dialect)}"

    def expressions(self) -> Iterator[Statement]:
        yield self.database


def _quote_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quote_name(name: str) -> str:
    # A quoted name's own double quotes are doubled: it stays one name, whatever it holds.
    return '"' + name.replace('"', '""') + '"'


def _word(name: str) -> str:
    """A folded word as written (csv, force_quote, true); anything else quoted."""
    return name if name.isascii() and name.isidentifier() and name.islower() else _quote_name(name)


@dataclass(frozen=True, slots=True)
class CopyOption:
    """One COPY option as the server reads it: `name` folded (force_quote, delimiter, …), and a
    value of one kind: none (`HEADER`), string (`DELIMITER ';'`), word (`FORMAT csv`, folded
    unless quoted; true/false/on/off are words), number, star (`FORCE_QUOTE *`) or columns."""

    name: str
    kind: str = "none"  # none | string | word | number | star | columns
    value: str = ""
    columns: tuple[str, ...] = ()

    def text(self) -> str:
        """The value as a string, as the server's option readers see it (defGetString)."""
        return self.value

    def sql(self) -> str:
        name = _word(self.name)
        if self.kind == "none":
            return name
        if self.kind == "string":
            return f"{name} {_quote_string(self.value)}"
        if self.kind == "word":
            return f"{name} {_word(self.value)}"
        if self.kind == "number":
            return f"{name} {self.value}"
        if self.kind == "star":
            return f"{name} *"
        cols = ", ".join(_quote_name(c) for c in self.columns)
        return f"{name} ({cols})"


@dataclass(frozen=True, slots=True)
class CopyOptions:
    """A COPY's options (`WITH (FORMAT csv, HEADER)`, legacy `CSV HEADER`, `BINARY`, …), in
    the order written; legacy options are given the names of the parenthesized form."""

    options: tuple[CopyOption, ...] = ()
    program: str | None = None  # TO / FROM PROGRAM's command, which sqlglot does not keep

    def get(self, name: str) -> CopyOption | None:
        return next((o for o in self.options if o.name == name), None)

    def sql(self) -> str:
        text = "(" + ", ".join(o.sql() for o in self.options) + ")" if self.options else ""
        if self.program is not None:
            text = _join([_quote_string(self.program), text])
        return text
