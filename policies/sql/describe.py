"""One walk of a statement's tree → `Described`: what it is, what it needs, reads and writes.

Owns: turning each parsed statement (policies/sql/parser.py) into a `Described` value: its kind,
the statement permissions it needs, the queries it reads (analysed by policies/sql/analysis.py),
the values it writes and where, its session effects, and the typed facts the judge asks about (a
CALL's procedure, row locks, COPY options, EXPLAIN ANALYZE, a PREPARE's name, …). Everything comes
from the tree, never from the statement's first words. Never judges: policies/decide.py does.
Never edits SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from policies.decision import CopyFraming, CursorEffect, PreparedEffect, SettingChange, TransactionEffect
from policies.names import TableName
from policies.sql import nodes
from policies.sql.analysis import Analyzer, Lineage, QueryAnalysis
from policies.sql.dialects import DialectFacts
from policies.sql.identifiers import function_name, search_path
from policies.sql.nodes import Statement
from policies.sql.parser import COPY_OPTIONS_META, Unparsable

# The longest SQL identifier PostgreSQL keeps whole, in bytes (NAMEDATALEN - 1).
_NAME_BYTES = 63
# LOCK modes a role with select may take; ROW SHARE is SELECT … FOR UPDATE's lock and needs update.
READ_LOCK_MODES = frozenset({"ACCESS SHARE"})
# Statements that write rows. Inside a tree they are WITH queries (or MERGE's WHEN actions).
_WRITES: tuple[type[exp.Expression], ...] = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
# TransactionControl actions → TransactionEffect kinds.
_TRANSACTION_EFFECTS = {
    "BEGIN": "begin",
    "START TRANSACTION": "begin",
    "COMMIT": "commit",
    "END": "commit",
    "ROLLBACK": "rollback",
    "ABORT": "rollback",
    "SAVEPOINT": "savepoint",
    "RELEASE": "release",
    "ROLLBACK TO SAVEPOINT": "rollback_to",
    "ABORT TO SAVEPOINT": "rollback_to",
}
# SET items whose setting the proxy may follow, by kind: the setting's name.
_SETTING_KINDS = {"time_zone": "timezone", "names": "client_encoding", "role": "role"}
# Bare words that set a setting of that kind back to its default.
_DEFAULT_WORDS = {
    "setting": frozenset({"DEFAULT"}),
    "time_zone": frozenset({"DEFAULT", "LOCAL"}),
    "names": frozenset({"DEFAULT"}),
    "role": frozenset({"NONE"}),
    "session_authorization": frozenset({"DEFAULT"}),
}
# What else a `SELECT set_config(…)` statement may have: FROM and WHERE in pg_dump's form only.
_SETTING_CALL_ARGS = frozenset({"expressions", "from_", "where"})


def _appended_to_itself(item: nodes.SetItem, facts: DialectFacts) -> str | None:
    """The literal text of `SET x = CONCAT(@@x, '<literal>'…)`, a session setting extended by
    literals (MariaDB Connector/J sends `sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES')` on
    connect); None for any other computed value. Such a value reads no data, only the session's
    own value (which was let through already), so the appended flags are all there is to decide;
    the global value (`@@global.x`) is not the session's and stays refused.

    >>> from policies.sql.dialects import MYSQL
    >>> from policies.sql.parser import parse_one
    >>> item = parse_one("SET sql_mode = concat(@@sql_mode, ',STRICT_TRANS_TABLES')", MYSQL).items[0]
    >>> _appended_to_itself(item, MYSQL)
    ',STRICT_TRANS_TABLES'
    >>> item = parse_one("SET sql_mode = concat(@@global.sql_mode, ',X')", MYSQL).items[0]
    >>> _appended_to_itself(item, MYSQL) is None
    True
    >>> item = parse_one("SET sql_mode = concat(@@sql_mode, '_QUOTES')", MYSQL).items[0]
    >>> _appended_to_itself(item, MYSQL) is None
    True
    """
    computed = item.computed
    if item.kind != "setting" or not isinstance(computed, exp.Concat) or not computed.expressions:
        return None
    rule = facts.lexical_settings.get(item.name)
    if rule is not None and rule.kind not in ("no_flag_of", "only_flags_of"):
        return None  # a one-word setting (an encoding): a longer value is another value
    own, *rest = computed.expressions
    if not isinstance(own, exp.SessionParameter):
        return None
    if str(own.args.get("kind") or "session").lower() not in ("session", "local"):
        return None
    if facts.setting_key(own.name) != item.name or not rest:
        return None
    if not all(isinstance(v, exp.Literal) and v.is_string for v in rest):
        return None
    appended = "".join(v.name for v in rest)
    # Only whole flags after a comma: text glued to the session's last flag makes a word that
    # is not in the literal, and the appended flags would no longer be all there is to check.
    return appended if appended.startswith(",") else None


def _isolation_serializable(item: nodes.SetItem) -> bool:
    """SET [SESSION] TRANSACTION ISOLATION LEVEL SERIALIZABLE, or the isolation variable set to
    it (`tx_isolation`, `transaction_isolation`, any spelling of their value)."""
    if item.kind != "transaction" and not item.name.endswith(("tx_isolation", "transaction_isolation")):
        return False
    text = " ".join(v.name for v in item.values) + " " + (item.computed.sql() if item.computed else "")
    return "SERIALIZABLE" in text.upper() or item.computed is not None


@dataclass(frozen=True, slots=True)
class Flow:
    """A value written somewhere: `target` names where (for messages), `lineage` what it carries."""

    target: str
    lineage: Lineage


@dataclass
class Described:
    kind: str
    required: frozenset[str] = frozenset()  # statement permissions needed; empty: session plumbing
    needs_all: tuple[str, str] | None = None  # (reason, message) unless the role has statements: [all]
    query: QueryAnalysis | None = None  # the read whose rows the client receives
    reads: list[QueryAnalysis] = field(default_factory=list)  # further reads (predicates, write sources)
    flows: list[Flow] = field(default_factory=list)  # values written somewhere
    written: set[TableName] = field(default_factory=set)
    touched: set[TableName] = field(default_factory=set)  # DDL/LOCK targets (checked against tables)
    filtered_writes: set[TableName] = field(default_factory=set)  # writes a row filter cannot follow
    search_path: tuple[str, ...] | None = None
    schema_changed: bool = False
    tree: Statement | None = None  # the parsed statement, for rewrites (consumed by policies/rewrite.py)
    result_rows: bool = True  # whether `query` outputs are the rows the client receives
    limit_rows: bool = False  # whether LIMIT max_rows+1 applies
    # Typed facts of particular statements.
    call: str | None = None  # CALL's procedure, as `schema.name` or `name`
    row_locks: bool = False  # SELECT … FOR UPDATE / SHARE
    copy_options: bool = False  # COPY … TO STDOUT with options that change its framing
    # … the layout its rows come in, or None with `copy_unmaskable` saying why the proxy's COPY
    # masker cannot read them (binary, ENCODING, an option it does not know).
    copy_framing: CopyFraming | None = None
    copy_unmaskable: str | None = None
    explain: bool = False  # EXPLAIN of the statement: the client receives a plan, not rows
    explain_analyze: bool = False  # … which runs it and reports actual row counts
    identity_reset: bool = False  # RESET ROLE / SESSION AUTHORIZATION
    prepared: str | None = None  # PREPARE's statement name
    # What it does to the session's prepared statements (PREPARE, EXECUTE, DEALLOCATE, DISCARD ALL).
    prepared_effect: PreparedEffect | None = None
    # Session effects with their transaction semantics (policies/decision.py).
    settings: tuple[SettingChange, ...] = ()
    transaction: TransactionEffect | None = None
    cursor: CursorEffect | None = None  # DECLARE / FETCH / MOVE / CLOSE, DISCARD ALL
    # The statement is `SELECT set_config('<setting>', '<value>', <local>)` (or pg_dump's form over
    # pg_settings), understood as a SET: its settings are above and its refusals in needs_all.
    setting_call: bool = False
    # Why the statement's result cannot be masked (other sessions' SQL, replication events, a
    # replica's last error; a prepared statement the session does not resolve): refused
    # for every role whose results are masked, statements: [all] or not.
    unmaskable: str | None = None
    # A rule read the value of one of the statement's literals: another literal may change the
    # decision, so it is never reused for another statement of the same shape.
    literal_values: bool = False

    def all_reads(self) -> list[QueryAnalysis]:
        return ([self.query] if self.query else []) + self.reads

    def notes(self) -> tuple[str, ...]:
        """The typed facts in words, for `maskgate explain` and the decision's notes."""
        out: list[str] = []
        if self.explain:
            out.append("explain")
        if self.explain_analyze:
            out.append("explain analyze")
        if self.prepared is not None:
            out.append(f"prepare:{self.prepared}")
        if self.call is not None:
            out.append(f"call:{self.call}")
        if self.row_locks:
            out.append("row locks")
        if self.copy_options:
            out.append("copy options")
        if self.identity_reset:
            out.append("identity reset")
        if self.cursor is not None:
            out.append(f"cursor {self.cursor.action}:{self.cursor.name or 'all'}")
        return tuple(out)


class Describer:
    """Describes parsed statements for one analysis context (schema, dialect, search path)."""

    def __init__(self, analyzer: Analyzer) -> None:
        self.a = analyzer
        self.facts = analyzer.facts

    def describe(self, tree: Statement) -> Described:
        for part in nodes.sqlglot_trees(tree):
            self.a.bind(part)
        d = self._dispatch(tree)
        d.tree = tree
        return d

    def _dispatch(self, tree: Statement) -> Described:
        if isinstance(tree, nodes.Node):
            return self._node(tree)
        if isinstance(tree, exp.Command) or tree.find(exp.Command) is not None:
            raise Unparsable("statement not understood")
        writes = _cte_writes(tree)
        d = self._with_writes(tree, writes) if writes else self._expression(tree)
        if tree.find(exp.Lock) is not None:
            # SELECT … FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE takes row locks: a write.
            d.required = d.required | {"update"}
            d.row_locks = True
        if isinstance(tree, exp.Select):
            self._setting_call(tree, d)
        if d.needs_all is None:
            # A session whose search_path (a role or database default, say) puts another schema
            # before pg_catalog would call that schema's functions and operators, not the ones
            # judged: only its SET statements run until it is put right.
            d.needs_all = self._path_refusal(self.a.search_path)
        return d

    # --- maskgate's statement nodes -----------------------------------------------------------

    def _node(self, node: nodes.Node) -> Described:
        if isinstance(node, nodes.Set):
            return self._set(node)
        if isinstance(node, nodes.Reset):
            d = Described("session", settings=(SettingChange(node.name or "*", None),))
            if node.name is None or node.name == self.facts.search_path_setting:
                d.search_path = self.facts.default_search_path
            d.identity_reset = node.name in ("role", "session_authorization")
            return d
        if isinstance(node, nodes.Show) and node.words and node.words[0] in self.facts.described_shows:
            # A result of fixed shape, described as a read of the catalog pseudo relation whose
            # columns the dialect classifies; the statement is sent as written.
            schema, relation, columns = self.facts.described_shows[node.words[0]]
            classified = [c for c in columns if self.facts.catalog_class(schema, relation, c)]
            # The columns the dialect does not classify are the server's own words (a level, a
            # code): described as values, so they are not taken for unknown columns of a
            # classified relation (which would be redacted).
            query = exp.select(
                *(
                    exp.column(c) if c in classified else exp.alias_(exp.Literal.string(""), c)
                    for c in columns
                )
            ).from_(exp.table_(relation, db=schema))
            return Described("show", query=self._query(query))
        if isinstance(node, nodes.Show) and self.facts.exposing_show(node.words):
            return Described(
                "show",
                unmaskable=f"SHOW {' '.join(node.words[:3])} returns other sessions' statements, "
                "replication events or errors with the values in them, which no column "
                "mask can follow",
            )
        if isinstance(node, nodes.Show | nodes.DescribeRelation):
            return Described("show")
        if isinstance(node, nodes.Lock):
            return self._lock(node)
        if isinstance(node, nodes.Explain):
            if isinstance(node.statement, nodes.Execute):
                # Its plan is the prepared statement's, which only the session knows; EXPLAIN
                # ANALYZE would run it with no decision for its effects.
                return Described(
                    "explain",
                    needs_all=("statement_not_allowed", "EXPLAIN EXECUTE is not available to this role"),
                    explain=True,
                )
            d = self._dispatch(node.statement)
            d.result_rows = False  # the client receives a plan, not rows
            d.limit_rows = False
            d.explain = True
            d.explain_analyze = node.analyze
            d.cursor = None  # EXPLAIN DECLARE plans (or runs) the query; it declares no cursor
            if not node.analyze:  # planned, not run: it changes nothing
                d.settings, d.search_path = (), None
            return d
        if isinstance(node, nodes.Prepare):
            if isinstance(node.statement, nodes.Node):
                # PostgreSQL prepares SELECT, VALUES and the writes only.
                raise Unparsable(f"PREPARE of {type(node.statement).__name__} is not understood")
            d = self._dispatch(node.statement)
            d.prepared = self._statement_name(node.name)
            d.prepared_effect = PreparedEffect("prepare", d.prepared)
            # It changes settings when EXECUTE runs it, which maskgate does not see: a
            # set_config() in it is not understood as a SET (and is refused for restricted roles).
            d.settings, d.search_path, d.setting_call = (), None, False
            if node.from_text:
                # MySQL's statement is a string literal: another literal is another statement,
                # so its decision is never reused for the same shape.
                d.literal_values = True
            return d
        if isinstance(node, nodes.PrepareFrom):
            return Described(
                "prepare", needs_all=("function_denied", "PREPARE … FROM a string is dynamic SQL")
            )
        if isinstance(node, nodes.Execute):
            return self._execute(node)
        if isinstance(node, nodes.Do):
            return Described("do", needs_all=("function_denied", "DO blocks run dynamic SQL"))
        if isinstance(node, nodes.Call):
            return self._call(node)
        if isinstance(node, nodes.Cursor):
            return self._cursor(node)
        if isinstance(node, nodes.Notification):
            if node.action == "NOTIFY":
                return Described("admin", frozenset({"admin"}))
            return Described("session")
        if isinstance(node, nodes.Discard) and node.what == "ALL":
            # RESET ALL, and SET SESSION AUTHORIZATION DEFAULT, which RESET ALL does not reset;
            # and DEALLOCATE ALL.
            return Described(
                "session",
                search_path=self.facts.default_search_path,
                settings=(
                    SettingChange("*", None),
                    SettingChange("role", None),
                    SettingChange("session_authorization", None),
                ),
                cursor=CursorEffect("close", None),  # it closes every cursor, WITH HOLD ones too
                prepared_effect=PreparedEffect("deallocate_all"),
            )
        if isinstance(node, nodes.Deallocate):
            if node.name is None:
                return Described("session", prepared_effect=PreparedEffect("deallocate_all"))
            name = self._statement_name(node.name)
            return Described("session", prepared_effect=PreparedEffect("deallocate", name))
        if isinstance(node, nodes.Discard | nodes.UnlockTables):
            return Described("session")
        if isinstance(node, nodes.Use):
            return Described("session", search_path=search_path([node.database], self.facts))
        if isinstance(node, nodes.TransactionControl):
            kind = _TRANSACTION_EFFECTS.get(node.action)
            if kind is None:
                raise Unparsable(f"{node.action} is not understood")
            name = node.savepoint.name if node.savepoint is not None else ""
            return Described("transaction", transaction=TransactionEffect(kind, name))
        if isinstance(node, nodes.TwoPhaseCommit):
            # PREPARE TRANSACTION ends this session's transaction; the others act on prepared ones.
            prepare = TransactionEffect("prepare") if node.action == "PREPARE TRANSACTION" else None
            return Described("admin", frozenset({"admin"}), transaction=prepare)
        if isinstance(node, nodes.Maintenance):
            return Described("admin", frozenset({"admin"}))
        if isinstance(node, nodes.AccessControl):
            return Described("dcl", frozenset({"dcl"}))
        if isinstance(node, nodes.RoutineDefinition):
            return Described(
                "ddl",
                frozenset({"ddl"}),
                needs_all=(
                    "function_denied",
                    "defining functions, triggers or extensions needs statements: [all]",
                ),
                schema_changed=True,
            )
        raise Unparsable(f"{type(node).__name__} statements are not understood")

    def _cursor(self, node: nodes.Cursor) -> Described:
        """DECLARE is its query, read like any other (tables, row filters, masks, the row limit
        its rewrite adds), with the cursor it creates; the session keeps that decision to mask
        the rows FETCH returns later. FETCH reads rows (of a query judged when it was declared);
        MOVE and CLOSE read nothing."""
        name = node.name.name if node.name is not None else None
        if node.action == "DECLARE":
            if node.statement is None or name is None:
                raise Unparsable("DECLARE without a query")
            d = self._dispatch(node.statement)
            d.cursor = CursorEffect("declare", name, node.hold)
            # A cursor's query runs when it is fetched from (WITH HOLD: when its transaction
            # commits): settings a set_config() in it would change are not followed.
            d.settings, d.search_path, d.setting_call = (), None, False
            return d
        if node.action == "FETCH":
            return Described("cursor", frozenset({"select"}), cursor=CursorEffect("fetch", name))
        return Described("cursor", cursor=CursorEffect(node.action.lower(), name))

    def _statement_name(self, name: exp.Identifier) -> str:
        """A prepared statement's name as the server keeps it (PREPARE "S1" and s1 are two).

        The server also cuts a SQL identifier to 63 bytes of its own encoding (a name given in
        the protocol's Parse is not cut): `DEALLOCATE <64 characters>` would drop the statement
        of the first 63, which the session would not know. A name that could be cut is refused:
        every server encoding is an ASCII superset and takes at most 4 bytes a character."""
        folded = self.facts.fold_identifier(name.name, quoted=name.quoted)
        if self.facts.case_insensitive_statement_names:
            if not folded.isascii():
                # The server folds case with its own tables (σ and ς, µ and μ, ϑ and θ are one
                # name to MariaDB, not to str.lower()): two names maskgate keeps apart would be
                # one statement upstream, run under the other one's decision.
                raise Unparsable("a prepared statement name outside ASCII is not understood")
            folded = folded.lower()
        if len(folded) > _NAME_BYTES or (not folded.isascii() and 4 * len(folded) > _NAME_BYTES):
            raise Unparsable("a prepared statement name the server may shorten is not understood")
        return folded

    def _execute(self, node: nodes.Execute) -> Described:
        """EXECUTE name [(arg, …)]: what runs is the statement kept under `name`, which the
        session resolves (proxy/pg/relay.py); here only its arguments are read. They are
        expressions without FROM (PostgreSQL refuses subqueries there): their functions are
        judged like a SELECT's."""
        if node.using and not all(isinstance(a, exp.Parameter) for a in node.args):
            # MySQL's EXECUTE … USING takes user variables only (the server's grammar).
            raise Unparsable("EXECUTE … USING takes user variables")
        # MySQL's USING @v passes values a user variable holds, which are never classified
        # (storing a non-clear value in one is refused): parameters, like PostgreSQL's.
        name = self._statement_name(node.name)
        d = Described("execute", prepared_effect=PreparedEffect("execute", name))
        if not self.facts.session_resolves_execute:
            # Its rows are the kept statement's, masked only where the session puts that
            # statement's decision on them (proxy/pg/relay.py does; the MySQL relay does not yet).
            d.unmaskable = (
                "SQL-level EXECUTE is not available to this role: this protocol's session does not "
                "apply the prepared statement's decision to its rows yet"
            )
        if any(a.find(exp.Column, exp.Query, exp.Subquery) for a in node.args):
            raise Unparsable("EXECUTE arguments may not read columns or run queries")
        if node.args:
            d.reads.append(self._query(exp.Select(expressions=[a.copy() for a in node.args])))
        return d

    def _set(self, node: nodes.Set) -> Described:
        d = Described("session")
        settings: list[SettingChange] = []
        for item in node.items:
            if item.scope in ("GLOBAL", "PERSIST", "PERSIST_ONLY") or item.name.startswith(
                ("global.", "persist.", "persist_only.")
            ):
                d.kind = "admin"
                d.required = d.required | {"admin"}
                continue
            refusal = self._set_refusal(item)
            if refusal is not None and d.needs_all is None:
                d.needs_all = refusal
            if self.facts.serializable_locks and _isolation_serializable(item):
                d.required = d.required | {"update"}
            change = self._setting_change(item)
            if change is None:
                continue
            settings.append(change)
            if change.name == self.facts.search_path_setting:
                d.search_path = change.value if change.value is not None else self.facts.default_search_path
                refusal = self._path_refusal(d.search_path)
                if refusal is not None and d.needs_all is None:
                    d.needs_all = refusal
        d.settings = tuple(settings)
        return d

    def _setting_change(self, item: nodes.SetItem) -> SettingChange | None:
        """What one SET item does to a setting, as the server will hold it; None for items that
        change no setting (SET TRANSACTION, SET CONSTRAINTS) or whose value is computed."""
        if item.kind in ("transaction", "constraints") or item.computed is not None:
            return None
        name = item.name if item.kind == "setting" else _SETTING_KINDS.get(item.kind, item.kind)
        local = item.scope == "LOCAL"
        words = [v.name.upper() for v in item.values if isinstance(v, exp.Var)]
        if len(item.values) == 1 and words and words[0] in _DEFAULT_WORDS.get(item.kind, frozenset()):
            return SettingChange(name, None, local)
        if item.kind in ("role", "session_authorization"):
            return SettingChange(name, (self._role_name(item.values[0].name),), local)
        if name == self.facts.search_path_setting:
            return SettingChange(name, search_path(item.values, self.facts), local)
        return SettingChange(name, tuple(v.name for v in item.values), local)

    def _role_name(self, raw: str) -> str:
        """A role named in SET ROLE / SESSION AUTHORIZATION, as the server looks it up."""
        text = raw.strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            return text[1:-1].replace(text[0] * 2, text[0])
        return self.facts.fold_identifier(text, quoted=False)

    def _path_refusal(self, path: tuple[str, ...]) -> tuple[str, str] | None:
        """A search_path that lists the implicit catalog after another schema lets that schema's
        functions, types and operators stand in for the built-in ones the analysis assumes (the
        server searches pg_catalog first only when the path does not name it)."""
        catalog = self.facts.implicit_catalog
        if catalog is None or catalog not in path:
            return None
        before = [s for s in path[: path.index(catalog)] if s != self.facts.temporary_schema]
        if not before:
            return None
        return (
            "statement_not_allowed",
            f"a search_path that lists {', '.join(before)} before {catalog} needs statements: [all]; "
            f"leave {catalog} out or first",
        )

    def _setting_call(self, tree: exp.Select, d: Described) -> None:
        """`SELECT [pg_catalog.]set_config('<setting>', '<value>', true|false)` as the whole
        statement, or pg_dump's `SELECT set_config(name, '<value>', false) FROM pg_settings WHERE
        name = '<setting>'`: a SET the proxy follows like any other, with SET's rules (and only
        for the settings a settings function may change). Any other use of a settings function
        is refused for restricted roles (policies/decide.py): it may sit anywhere in a query."""
        if self.facts.settings_catalog is None or len(tree.selects) != 1:
            return
        if any(v and k not in _SETTING_CALL_ARGS for k, v in tree.args.items()):
            return
        call = tree.selects[0].unalias()
        catalog_schema, catalog_table, name_column = self.facts.settings_catalog
        if isinstance(call, exp.Dot):
            if not isinstance(call.this, exp.Identifier) or call.this.name != catalog_schema:
                return
            call = call.expression
        functions = self.facts.setting_functions
        if not isinstance(call, exp.Func) or function_name(call, self.facts) not in functions:
            return
        args = call.expressions if isinstance(call, exp.Anonymous) else []
        if len(args) != 3 or not isinstance(args[2], exp.Boolean):
            return
        setting, value, local = args
        if not (isinstance(value, exp.Literal) and value.is_string):
            return
        frm, where = tree.args.get("from_"), tree.args.get("where")
        if frm is None and where is None:
            if not (isinstance(setting, exp.Literal) and setting.is_string):
                return
            name = setting.name
        else:
            name = _pinned_setting(tree, setting, catalog_schema, catalog_table, name_column)
            if name is None:
                return
        key = self.facts.setting_key(name)
        d.setting_call = True
        d.literal_values = True
        item = nodes.SetItem("setting", key, (exp.Literal.string(value.name),), "LOCAL" if local.this else "")
        change = self._setting_change(item)
        if key == self.facts.search_path_setting:
            change = SettingChange(key, self.facts.search_path_from_setting(value.name), bool(local.this))
        d.settings = (change,) if change is not None else ()
        refusal = None
        if key not in self.facts.safe_settings:
            refusal = ("function_denied", "set_config() may only change session settings such as search_path")
        refusal = refusal or self._set_refusal(item)
        if change is not None and key == self.facts.search_path_setting:
            d.search_path = change.value
            refusal = refusal or self._path_refusal(change.value or ())
        if refusal is not None:
            # Refused as the function call it is, with SET's explanation.
            d.needs_all = d.needs_all or ("function_denied", refusal[1])

    def _set_refusal(self, item: nodes.SetItem) -> tuple[str, str] | None:
        if item.computed is not None:
            if item.name.startswith("@") and _variables_only(item.computed):
                # mysqldump's `SET @OLD_SQL_MODE = @@SQL_MODE`: a user variable takes a system
                # variable's or another user variable's value, neither of which is ever a
                # classified one. (A system variable set from a variable stays refused: its
                # value, say sql_mode's, is not known.)
                return None
            appended = _appended_to_itself(item, self.facts)
            if appended is None:
                # MySQL `SET @x = (SELECT phone …)` stores a value maskgate would never mask.
                return "statement_not_allowed", "SET with a subquery or function call"
            if self.facts.unsafe_setting(item.name, appended):
                return (
                    "statement_not_allowed",
                    f"this value of {item.name} changes how SQL text is read; it needs statements: [all]",
                )
            return None
        identity = item.kind if item.kind in ("role", "session_authorization") else None
        if identity is None and item.name in self.facts.identity_settings:
            identity = item.name
        if identity is not None:
            return "statement_not_allowed", f"changing {identity} needs statements: [all]"
        if item.kind in ("setting", "names"):
            value = ", ".join(v.name for v in item.values)
            if self.facts.unsafe_setting(item.name, value):
                setting = "the client encoding" if item.kind == "names" else item.name
                return (
                    "statement_not_allowed",
                    f"this value of {setting} changes how SQL text is read; it needs statements: [all]",
                )
        return None

    def _lock(self, node: nodes.Lock) -> Described:
        tables = {self.a.resolve_table(t.table) for t in node.targets}
        modes = {t.mode for t in node.targets}
        if modes <= READ_LOCK_MODES:
            required = "select"
        elif modes <= READ_LOCK_MODES | {"ROW SHARE"}:
            required = "update"
        else:
            required = "admin"
        return Described("lock", frozenset({required}), touched=tables)

    def _call(self, node: nodes.Call) -> Described:
        name = node.qualified_name
        d = Described(
            "call", needs_all=("function_denied", f"procedure {name} is not allow-listed"), call=name
        )
        if node.args:
            # What a procedure does with its arguments is not visible: they are values written.
            analysis = self._query(exp.Select(expressions=[a.copy() for a in node.args]))
            d.reads.append(analysis)
            d.flows = self._flows(f"CALL {name}", analysis)
        return d

    # --- writes anywhere in the tree -----------------------------------------------------------

    def _with_writes(self, tree: exp.Expression, writes: list[exp.CTE]) -> Described:
        """A statement whose WITH holds data-modifying queries (`WITH u AS (UPDATE … RETURNING …)
        SELECT …`). Each one is a write of its own: its kind's permission, its target (row filters
        cannot follow an INSERT or MERGE there; UPDATE and DELETE get theirs in the rewrite), its
        reads and the values it writes. The rest of the statement is described with each of them
        standing in as the read of its RETURNING rows."""
        analysed = tree.copy()
        stand_ins: dict[str, exp.Expression] = {}
        described: list[Described] = []
        for cte in writes:
            body = cte.this
            own = body.copy()
            siblings = [c for c in cte.parent.expressions if c is not cte] if cte.parent else []
            if siblings:
                with_ = exp.With(
                    expressions=[c.copy() for c in siblings], recursive=cte.parent.args.get("recursive")
                )
                own.set("with_", with_)
            described.append(self._expression(own))
            stand_ins[cte.alias_or_name] = self._returned_rows(body)
        for cte in analysed.find_all(exp.CTE):
            if cte.alias_or_name in stand_ins and isinstance(cte.this, _WRITES):
                cte.set("this", stand_ins[cte.alias_or_name].copy())
        d = self._expression(analysed)
        for w in described:
            if isinstance(tree, exp.Query) and d.kind == "select":
                d.kind = w.kind
            d.required = d.required | w.required
            d.needs_all = d.needs_all or w.needs_all
            d.written |= w.written
            d.touched |= w.touched
            d.filtered_writes |= w.filtered_writes
            d.reads += w.reads
            d.flows += w.flows
        return d

    def _returned_rows(self, write: exp.Expression) -> exp.Expression:
        """What a data-modifying WITH query gives the rest of the statement: its RETURNING rows,
        read from its target (and the other relations it reads). Without RETURNING, nothing."""
        returning = write.args.get("returning")
        if returning is None:
            return exp.select(exp.Null()).where(exp.false())
        target = self._target(write)
        sel = exp.Select(expressions=[e.copy() for e in returning.expressions]).from_(target.copy())
        for t in self._from_tables(write):  # UPDATE's FROM, DELETE's and MERGE's USING
            sel = sel.join(t.copy())
        return sel

    # --- sqlglot trees ------------------------------------------------------------------------

    def _query(self, node: exp.Expression) -> QueryAnalysis:
        return self.a.analyse_query(node.copy())

    def _expression(self, tree: exp.Expression) -> Described:
        if isinstance(tree, exp.Select) and tree.args.get("into") is not None:
            q = tree.copy()
            into = q.args["into"]
            q.set("into", None)
            if _into_user_variables(into):
                # MySQL's SELECT … INTO @v: no table is made, the values stay in the session
                # (a later `SELECT @v` reads them back with no column to mask), so they are a flow.
                d = Described("select", frozenset({"select"}), result_rows=False)
                analysis = self._query(q)
                d.reads.append(analysis)
                d.flows = self._flows("a user variable (SELECT … INTO @v)", analysis)
                return d
            d = Described("ddl", frozenset({"select", "ddl"}), schema_changed=True)
            analysis = self._query(q)
            d.reads.append(analysis)
            d.flows = self._flows("SELECT INTO", analysis)
            if isinstance(into.this, exp.Table):
                d.written.add(self.a.resolve_table(into.this))
            return d
        if isinstance(tree, exp.Query):
            d = Described("select", frozenset({"select"}), limit_rows=True)
            d.query = self._query(tree)
            return d
        if isinstance(tree, exp.Insert):
            return self._insert(tree)
        if isinstance(tree, exp.Update):
            return self._update(tree)
        if isinstance(tree, exp.Delete):
            return self._delete(tree)
        if isinstance(tree, exp.Merge):
            return self._merge(tree)
        if isinstance(tree, exp.Copy):
            return self._copy(tree)
        if isinstance(tree, exp.Create):
            return self._create(tree)
        if isinstance(tree, exp.Drop | exp.Alter | exp.TruncateTable | exp.Comment):
            d = Described("ddl", frozenset({"ddl"}), schema_changed=True)
            for t in tree.find_all(exp.Table):
                if isinstance(t.this, exp.Identifier):
                    d.touched.add(self.a.resolve_table(t))
            if isinstance(tree, exp.TruncateTable):
                d.filtered_writes |= d.touched
            return d
        raise Unparsable(f"{type(tree).__name__} statements are not understood")

    def _value_lineage(self, analysis: QueryAnalysis) -> list[Lineage]:
        return [
            Lineage("", u.columns, True, u.opaque) for u in analysis.uses if u.role in ("value", "whole_row")
        ]

    def _flows(self, target: str, analysis: QueryAnalysis) -> list[Flow]:
        lineages = analysis.outputs if analysis.outputs is not None else self._value_lineage(analysis)
        return [Flow(target, lin) for lin in lineages]

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
        if tree.args.get("with_") is not None:
            sel.set("with_", tree.args["with_"].copy())  # the WITH queries its FROM / USING read
        d.query = self._query(sel)

    def _target(self, tree: exp.Expression) -> exp.Table:
        target = tree.this
        if isinstance(target, exp.Schema):
            target = target.this
        if not isinstance(target, exp.Table):
            raise Unparsable("write target is not a table")
        return target

    def _insert(self, tree: exp.Insert) -> Described:
        target = self._target(tree)
        d = Described("insert", frozenset({"insert"}))
        table = self.a.resolve_table(target)
        d.written.add(table)
        d.filtered_writes.add(table)
        source = tree.expression
        where = f"INSERT INTO {table}"
        if isinstance(source, exp.Values):
            # Each row that computes something (a subquery, a column) is read like a SELECT;
            # rows of plain literals (bulk loads) carry nothing classified and are skipped.
            for row in source.expressions:
                values = row.expressions if isinstance(row, exp.Tuple) else [row]
                if any(v.find(exp.Column, exp.Query) for v in values):
                    analysis = self._query(exp.Select(expressions=[v.copy() for v in values]))
                    d.reads.append(analysis)
                    d.flows += self._flows(where, analysis)
        elif source is not None:
            sel = source.copy()
            if tree.args.get("with_") is not None and isinstance(sel, exp.Query):
                sel.set("with_", tree.args["with_"].copy())
            analysis = self._query(sel)
            d.reads.append(analysis)
            d.flows = self._flows(where, analysis)
        conflict = tree.args.get("conflict")
        action = conflict.args.get("action") if conflict is not None else None
        if conflict is not None and not (isinstance(action, exp.Var) and action.name.upper() == "DO NOTHING"):
            # ON CONFLICT DO UPDATE updates the row that is there: an UPDATE (the server asks
            # for the UPDATE privilege too), whose SET values flow into it and whose WHERE is a
            # predicate on that row.
            d.required = d.required | {"update"}
            exprs = [e.expression for e in conflict.expressions if isinstance(e, exp.EQ)]
            sel = exp.Select(expressions=[e.copy() for e in exprs] or [exp.Literal.number(1)]).from_(
                target.copy()
            )
            if conflict.args.get("where") is not None:
                sel.set("where", conflict.args["where"].copy())
            for col in list(sel.find_all(exp.Column)):
                if col.table == "excluded":
                    # The row proposed for insertion: its values are the source's, read above.
                    col.replace(exp.Null())
            analysis = self._query(sel)
            d.reads.append(analysis)
            if exprs:
                d.flows += self._flows(where, analysis)
        self._returning(d, tree, target, [])
        return d

    def _from_tables(self, tree: exp.Expression) -> list[exp.Expression]:
        out: list[exp.Expression] = []
        frm = tree.args.get("from_")
        if frm is not None:
            out.append(frm.this)
            out.extend(frm.expressions or [])
        using = tree.args.get("using")
        out.extend(using if isinstance(using, list) else [using] if isinstance(using, exp.Expression) else [])
        return out

    def _update(self, tree: exp.Update) -> Described:
        target = self._target(tree)
        table = self.a.resolve_table(target)
        d = Described("update", frozenset({"update"}))
        d.written.add(table)
        extra = self._from_tables(tree)
        sel = exp.Select(expressions=[eq.expression.copy() for eq in tree.expressions]).from_(target.copy())
        for t in extra:
            sel = sel.join(t.copy())
        for j in tree.args.get("joins") or []:
            sel = sel.join(j.copy())
        if tree.args.get("where") is not None:
            sel.set("where", tree.args["where"].copy())
        if tree.args.get("order") is not None:
            # MySQL's UPDATE … ORDER BY … LIMIT n: which rows it writes compares their values.
            sel.set("order", tree.args["order"].copy())
        if tree.args.get("with_") is not None:
            sel.set("with_", tree.args["with_"].copy())
        analysis = self._query(sel)
        d.reads.append(analysis)
        d.flows = self._flows(f"UPDATE {table}", analysis)
        self._returning(d, tree, target, extra)
        return d

    def _delete(self, tree: exp.Delete) -> Described:
        target = self._target(tree)
        table = self.a.resolve_table(target)
        d = Described("delete", frozenset({"delete"}))
        d.written.add(table)
        extra = self._from_tables(tree)
        sel = exp.Select(expressions=[exp.Literal.number(1)]).from_(target.copy())
        for t in extra:
            sel = sel.join(t.copy())
        if tree.args.get("where") is not None:
            sel.set("where", tree.args["where"].copy())
        if tree.args.get("order") is not None:
            sel.set("order", tree.args["order"].copy())  # MySQL's DELETE … ORDER BY … LIMIT n
        if tree.args.get("with_") is not None:
            sel.set("with_", tree.args["with_"].copy())
        d.reads.append(self._query(sel))
        self._returning(d, tree, target, extra)
        return d

    def _merge(self, tree: exp.Merge) -> Described:
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
        d = Described("merge", frozenset(kinds or {"update"}))
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
        d.flows = self._flows(f"MERGE INTO {table}", analysis)
        self._returning(d, tree, target, [using] if using is not None else [])
        return d

    def _copy(self, tree: exp.Copy) -> Described:
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
                cols = [exp.column(i.copy()) for i in this.expressions]
            if not isinstance(table_node, exp.Table):
                raise Unparsable("COPY of an unknown target")
            query = exp.Select(expressions=cols or [exp.Star()]).from_(table_node.copy())
        if inbound:
            if table_node is None:
                raise Unparsable("COPY (query) FROM")
            table = self.a.resolve_table(table_node)
            d = Described("copy", frozenset({"insert"}))
            d.written.add(table)
            d.filtered_writes.add(table)
            d.result_rows = False
            if not to_client:
                d.needs_all = ("function_denied", "COPY FROM a server file or program")
            return d
        d = Described("copy", frozenset({"select"}), limit_rows=to_client)
        analysis = self._query(query)
        if to_client:
            d.query = analysis
            # The proxy's COPY masker reads rows in the layout the options give (text or CSV,
            # their delimiter, quote, escape, NULL and header); what it cannot read is refused
            # to roles whose results are masked (policies/decide.py).
            options = tree.meta.get(COPY_OPTIONS_META)
            if not isinstance(options, nodes.CopyOptions):
                raise Unparsable("COPY options not read")
            d.copy_options = bool(options.options)
            d.copy_framing, d.copy_unmaskable = copy_framing(options)
            if any(o.kind == "string" for o in options.options):
                d.literal_values = True  # a delimiter or NULL string is part of the decision
        else:
            d.reads.append(analysis)
            d.flows = self._flows("COPY TO a server " + ("program" if program else "file"), analysis)
            d.result_rows = False
            d.needs_all = ("function_denied", "COPY TO a server file or program")
        return d

    def _create(self, tree: exp.Create) -> Described:
        kind = (tree.args.get("kind") or "").upper()
        d = Described("ddl", frozenset({"ddl"}), schema_changed=True)
        if kind in ("FUNCTION", "PROCEDURE", "TRIGGER") or isinstance(tree.this, exp.UserDefinedFunction):
            d.needs_all = ("function_denied", "defining functions needs statements: [all]")
            return d
        if tree.find(exp.ExecuteAsProperty) is not None:
            # CREATE TABLE … AS EXECUTE name: the rows of a prepared statement only the session
            # knows would land in a table unmasked.
            d.needs_all = ("statement_not_allowed", "CREATE TABLE … AS EXECUTE is not available to this role")
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
            d.flows = self._flows(f"CREATE {kind or 'TABLE'} AS", analysis)
            d.required = frozenset({"ddl", "select"})
        return d


def _variables_only(value: exp.Expression) -> bool:
    """Whether `value` is built of variable references and literals only (`@@x`, `@y`, `'z'`)."""
    plain = (exp.SessionParameter, exp.Parameter, exp.Var, exp.Literal, exp.Paren, exp.Identifier)
    return all(isinstance(n, plain) for n in value.walk())


def _into_user_variables(into: exp.Expression) -> bool:
    """Whether SELECT's INTO names user variables (MySQL `INTO @v`) rather than a new table."""
    target = into.this
    return isinstance(target, exp.Table) and isinstance(target.this, exp.Parameter)


def _pinned_setting(
    select: exp.Select, setting: exp.Expression, schema: str, table: str, column: str
) -> str | None:
    """The one setting pg_dump's `SELECT set_config(name, …) FROM pg_settings WHERE name = '<x>'`
    changes: FROM is the settings catalog alone, the first argument its name column, and the
    WHERE exactly `name = '<x>'`. None for anything else."""
    frm = select.args.get("from_")
    source = frm.this if frm is not None and not frm.expressions else None
    if select.args.get("joins") or select.args.get("laterals") or not isinstance(source, exp.Table):
        return None
    if source.name != table or source.db != schema or not isinstance(source.this, exp.Identifier):
        return None
    alias = source.alias_or_name

    def is_name(node: exp.Expression) -> bool:
        return isinstance(node, exp.Column) and node.name == column and node.table in ("", alias)

    where = select.args.get("where")
    if not is_name(setting) or where is None or not isinstance(where.this, exp.EQ):
        return None
    left, right = where.this.this, where.this.expression
    if is_name(right):
        left, right = right, left
    if is_name(left) and isinstance(right, exp.Literal) and right.is_string:
        return right.name
    return None


def _cte_writes(tree: exp.Expression) -> list[exp.CTE]:
    """The WITH queries of `tree` that write (PostgreSQL allows INSERT, UPDATE, DELETE and MERGE
    there). A write anywhere else but the statement itself and MERGE's WHEN actions is not
    understood."""
    out: list[exp.CTE] = []
    for node in tree.find_all(*_WRITES):
        if node is tree or isinstance(node.parent, exp.When):
            continue
        if isinstance(node.parent, exp.CTE) and node.arg_key == "this":
            out.append(node.parent)
            continue
        raise Unparsable("a data-modifying statement is only understood as a WITH query")
    return out


# COPY options that only change how rows are laid out; the masker reads each of them.
_FRAMING_STRINGS = ("delimiter", "null", "quote", "escape")


def _boolean(option: nodes.CopyOption) -> bool | None:
    """An option's boolean value as the server reads it (defGetBoolean); None if not one."""
    if option.kind == "none":
        return True
    word = option.value.lower() if option.kind in ("word", "string") else option.value
    return {"true": True, "on": True, "1": True, "false": False, "off": False, "0": False}.get(word)


def _one_char(value: str) -> bool:
    # One printable ASCII character: one byte in every client encoding the proxy serves.
    return len(value) == 1 and " " <= value <= "~"


def copy_framing(options: nodes.CopyOptions) -> tuple[CopyFraming | None, str | None]:
    """The layout of a COPY TO STDOUT's rows, or None and why the proxy cannot mask them.

    Read as the server reads the options (commands/copy.c ProcessCopyOptions): FORMAT text or
    csv, HEADER a boolean, DELIMITER / NULL / QUOTE / ESCAPE strings, FORCE_QUOTE (quoting only).
    Anything else is left to the server for roles whose results are not masked: ENCODING
    re-encodes the rows (their bytes no longer read in the session's encoding), binary is not
    text, and an option the masker does not know may change the layout."""
    fmt = "text"
    values: dict[str, str] = {}
    header = False
    for o in options.options:
        if o.name == "format":
            if o.kind not in ("word", "string") or o.value not in ("text", "csv", "binary"):
                return None, f"COPY format {o.value!r} is not known"
            fmt = o.value
        elif o.name == "header":
            flag = _boolean(o)
            if flag is None:
                return None, "COPY HEADER other than true or false"
            header = flag
        elif o.name in _FRAMING_STRINGS:
            if o.kind != "string":
                return None, f"COPY {o.name.upper()} must be a string"
            values[o.name] = o.value
        elif o.name == "force_quote" and o.kind in ("star", "columns"):
            pass  # quotes more fields: the CSV reader reads quoted fields
        else:
            return None, f"COPY option {o.name.upper()} cannot be masked"
    if fmt == "binary":
        return None, "binary COPY cannot be masked"
    if fmt == "text":
        if "quote" in values or "escape" in values:
            return None, "COPY QUOTE and ESCAPE are CSV options"
        framing = CopyFraming("text", values.get("delimiter", "\t"), values.get("null", "\\N"), header=header)
        if framing.delimiter != "\t" and not _one_char(framing.delimiter):
            return None, "COPY DELIMITER must be one printable ASCII character"
        # The server refuses these delimiters in text format; the masker's unescaping would
        # read a backslash one differently.
        if framing.delimiter in "\\.abcdefghijklmnopqrstuvwxyz0123456789":
            return None, "this COPY DELIMITER is not valid in text format"
    else:
        quote = values.get("quote", '"')
        framing = CopyFraming(
            "csv",
            values.get("delimiter", ","),
            values.get("null", ""),
            quote,
            values.get("escape", quote),
            header,
        )
        if not all(_one_char(c) for c in (framing.delimiter, framing.quote, framing.escape)):
            return None, "COPY DELIMITER, QUOTE and ESCAPE must be one printable ASCII character each"
        if framing.delimiter == framing.quote:
            return None, "COPY DELIMITER and QUOTE must differ"
    if any(c in framing.null for c in "\r\n") or framing.delimiter in framing.null:
        return None, "this COPY NULL string cannot be masked"
    return framing, None
