"""The pure decision: one described statement + one role → Allow or Block.

Owns: the order and content of the rules in DESIGN.md §3 (statement kinds, functions, tables,
classes, whole rows, predicates, flows) and the per-column masks of an allowed result; for
restricted roles also the classes the policy does not write itself (catalog columns the dialect
facts classify, columns discovery found personal data in) and the row filter on the
column-statistics view. Pure: no statement parsing (policies/sql/describe.py describes), no
rewriting (policies/rewrite.py), no cache.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import replace

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel
from sqlglot.tokens import TokenType

from policies.decision import Allow, Block, ColumnMask
from policies.model import ACTION_STRENGTH, Policy, Role, RowFilter
from policies.names import ColumnName, TableName
from policies.schema import Schema
from policies.sql import identifiers, nodes
from policies.sql.analysis import Lineage, Use
from policies.sql.describe import Described
from policies.sql.dialects import DialectFacts
from policies.sql.nodes import Statement

# What the effect of a function in DialectFacts.function_rights is, by the right it needs.
_EFFECTS = {
    "update": "writes a sequence",
    "admin": "takes a lock others wait on",
}


# How many values one statement may compare masked columns with in `equality` mode: a caller's
# number, a few alternatives. Thousands, split by bit, read the hidden digits in one statement.
MAX_LOOKUP_VALUES = 10
_WRITE_KINDS = frozenset({"insert", "update", "delete", "ddl", "all"})


def server_function_name(node: exp.Func, name: str, facts: DialectFacts) -> str | None:
    """The name the server looks a call up by, or None when the node is SQL syntax rather than a
    call of a function the catalog lists (CASE, CAST, COALESCE, CURRENT_TIMESTAMP, operators).

    `name` is the call's folded name (policies.sql.identifiers.function_name): the server's own
    for the calls sqlglot leaves untyped. A typed node (SUBSTR parses as Substring, BTRIM as
    Trim) is rendered in the dialect, and its leading call name read from the tokens.

    >>> from policies.sql.dialects import POSTGRES
    >>> node = sqlglot.parse_one("SELECT btrim(x)", read="postgres").selects[0]
    >>> server_function_name(node, "trim", POSTGRES)
    'btrim'
    >>> node = sqlglot.parse_one("SELECT coalesce(a, b)", read="postgres").selects[0]
    >>> server_function_name(node, "coalesce", POSTGRES) is None
    True
    """
    if isinstance(node, exp.Anonymous):
        this = node.this
        quoted = isinstance(this, exp.Identifier) and this.quoted
        return None if name in facts.syntax_calls and not quoted else name
    try:
        try:
            text = _shallow(node).sql(dialect=facts.sqlglot, unsupported_level=ErrorLevel.IGNORE)
        except Exception:
            text = node.sql(dialect=facts.sqlglot, unsupported_level=ErrorLevel.IGNORE)
        tokens = sqlglot.tokenize(text, read=facts.sqlglot)
    except Exception:
        return name  # judged by sqlglot's name, which the catalog then does not know: refused
    if len(tokens) < 2 or tokens[1].token_type != TokenType.L_PAREN:
        return None  # an operator, a keyword value (CURRENT_TIMESTAMP) or CASE
    rendered = tokens[0].text.lower()
    if not rendered[:1].isalpha() and rendered[:1] != "_":
        return None  # a parenthesised expression, not a call
    if rendered in facts.syntax_calls:
        return None
    return facts.function_aliases.get(rendered, rendered)


# Leaves a call's rendering may read (formats, units, types): kept when the call is rendered alone.
_LEAVES = (exp.Literal, exp.Column, exp.Identifier, exp.DataType, exp.Var, exp.Null, exp.Boolean, exp.Star)


def _shallow(node: exp.Func) -> exp.Expression:
    """The call with every argument that is itself an expression tree stood in for by a column.

    Rendering the whole node renders every call nested in it, and the judge asks for every call:
    nested CASEs or coalesce(coalesce(…)) cost the square of their depth (400 levels took seconds
    on the loop every session shares). Only the leading name is read from the rendering, and
    renderings choose names from their leaves (units, formats, types), which stay.
    """

    def keep(v: object) -> object:
        if isinstance(v, exp.Query):
            return exp.select("_")  # ARRAY(SELECT …) renders unlike ARRAY[…]
        if isinstance(v, exp.Expression) and not isinstance(v, _LEAVES):
            return exp.column("_")
        return v

    args = {k: [keep(x) for x in v] if isinstance(v, list) else keep(v) for k, v in node.args.items()}
    return type(node)(**args)


@functools.cache
def _typed_call(name: str, dialect: str) -> type[exp.Func] | None:
    """The sqlglot node a call of `name` parses into, when sqlglot types it (None: Anonymous).
    A user-defined function of that name may be what an unqualified call of the typed node runs."""
    found: type[exp.Func] | None = None
    quoted = exp.to_identifier(name).sql(dialect=dialect)
    for args in ("", "NULL", "NULL, NULL", "NULL, NULL, NULL"):
        try:
            tree = sqlglot.parse_one(f"SELECT {quoted}({args})", read=dialect)
        except Exception:
            continue
        node = tree.selects[0] if isinstance(tree, exp.Select) and tree.selects else None
        if isinstance(node, exp.Func) and not isinstance(node, exp.Anonymous):
            found = type(node)
            break
    return found


# Settings that say who a session is upstream (the role it acts as, its session user). A role with
# a `database_role` runs as that database role: no statement of its sessions may change them.
IDENTITY_SETTINGS = frozenset({"role", "session_authorization"})
# A session may rename itself (the proxy puts `maskgate:<user>/` back in front), but not to a name
# that says it is someone else's maskgate session, even for the moment before the proxy does.
APPLICATION_NAME = "application_name"
IMPERSONATION = "application_name may not start with `maskgate:`, which names the person behind a session"


def _impersonates(value: tuple[str, ...] | None) -> bool:
    return bool(value) and any(v.strip().lower().startswith("maskgate:") for v in value or ())


class Judge:
    """Applies one role's rules. Build one per (policy, role, schema, dialect).

    `role` is the policy's role as the rules apply it: for restricted roles with the row filter
    on the column-statistics view added (the rewrite must use this role, not the policy's)."""

    def __init__(self, policy: Policy, role: Role, schema: Schema, facts: DialectFacts) -> None:
        self.policy = policy
        self.schema = schema
        self.facts = facts
        self.default_schema = facts.default_schema
        # Classes the policy does not write: catalog columns (pg_stat_activity.query) and
        # columns discovery found personal data in, and the filter on pg_stats. They bind every
        # role whose results are masked at all; only an unrestricted one (`all`, every class
        # clear, no detectors: the DBA) reads the catalogs and unclassified columns as they are.
        self.restricted = not policy.unrestricted(role)
        self._may_write = bool(role.statements & _WRITE_KINDS)
        extra = {*facts.catalog_classes.values(), *schema.discovered.values()} if self.restricted else set()
        self.policy_role = role
        self.role = self._with_statistics_filter(role)
        # Whether anything this role receives is masked or scanned: then result framing the
        # proxy's maskers rely on (COPY's default text format) must not be changed.
        self.masks_output = bool(role.detect) or any(
            role.action_for(c) != "clear" for c in [*(rule.cls for rule in policy.columns), *extra]
        )
        functions = schema.volatility
        if functions is None and facts.builtin_functions is not None:
            functions = facts.builtin_functions()
        # (schema, name) -> volatility; None: the dialect has none (only the function lists apply).
        self.functions = functions
        # sqlglot node types an unqualified call of a user-defined function parses into.
        self.user_typed = frozenset(
            t for _, n in schema.functions if (t := _typed_call(n, facts.sqlglot)) is not None
        )
        # Restricted: anything but a role that may run anything and sees everything clear. Its
        # statements name every relation by the schema it was judged in (policies/rewrite.py).
        self.restricted = not role.unrestricted_statements or self.masks_output

    # --- helpers -------------------------------------------------------------------------------

    def cls(self, column: ColumnName) -> str | None:
        found = self.policy.classify(column, self.default_schema)
        if found is None and self.restricted:
            t = column.table
            found = self.schema.discovered.get((t.schema or "", t.name, column.column))
            if found is None:
                found = self.facts.catalog_class(t.schema, t.name, column.column)
        return found

    def action(self, column: ColumnName) -> str:
        return self.role.action_for(self.cls(column))

    def _non_clear(self, columns: Iterable[ColumnName]) -> list[tuple[ColumnName, str, str]]:
        out = []
        for c in columns:
            cls = self.cls(c)
            if cls is not None:
                act = self.role.action_for(cls)
                if act != "clear":
                    out.append((c, cls, act))
        return out

    def _opaque_classified(self, tables: Iterable[TableName]) -> list[TableName]:
        return [
            t
            for t in tables
            if self.policy.table_has_classes(t, self.default_schema)
            or (self.restricted and self.facts.catalog_classified(t.schema, t.name))
        ]

    def _with_statistics_filter(self, role: Role) -> Role:
        """`role` with a row filter on the column-statistics view (pg_stats) keeping only the rows
        about columns this role may read in clear: its value lists (most_common_vals,
        histogram_bounds, most_common_elems) hold the column's values. Rows of tables the role
        may not read, of columns it sees masked, of materialised views and index expressions,
        and of tables the schema does not know are left out; so are the catalogs' own rows."""
        stats = self.facts.column_statistics
        if stats is None or not self.restricted:
            return role
        stats_schema, stats_relation, keys = stats
        whole: list[tuple[str, str]] = []
        single: list[tuple[str, str, str]] = []
        for (s, t), table in sorted(self.schema.tables.items()):
            if self.facts.is_catalog_schema(s) or table.kind in ("view", "matview"):
                # A materialised view's columns carry the classes of the columns it reads,
                # which only lineage knows: its statistics rows are left out.
                continue
            name = TableName(self.schema.database, s, t)
            if not role.table_allowed(name, self.default_schema):
                continue
            clear = [c for c in table.columns if role.action_for(self.cls(ColumnName(name, c))) == "clear"]
            if clear and len(clear) == len(table.columns):
                whole.append((s, t))
            else:
                single += [(s, t, c) for c in clear]

        def member(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> exp.Expression:
            return exp.In(
                this=exp.Tuple(expressions=[exp.column(c) for c in columns]),
                expressions=[exp.Tuple(expressions=[exp.Literal.string(v) for v in r]) for r in rows],
            )

        terms = []
        if whole:
            terms.append(member(keys[:2], whole))
        if single:
            terms.append(member(keys, single))
        cond = exp.or_(*terms) if terms else exp.false()
        sql = cond.sql(dialect=self.facts.sqlglot)
        return replace(
            role, row_filters=(*role.row_filters, RowFilter((stats_schema, stats_relation), sql, cond))
        )

    def _block(self, reason: str, message: str, d: Described, tables=(), classes=()) -> Block:
        return Block(
            reason, message, tuple(sorted(str(t) for t in tables)), tuple(sorted(set(classes))), d.kind
        )

    # --- the rules --------------------------------------------------------------------------

    def judge(self, d: Described) -> Allow | Block:
        role = self.role
        tables = self._tables(d)
        # 1. statement kind
        if d.needs_all is not None and not role.unrestricted_statements:
            reason, message = d.needs_all
            name = d.call
            if name and (name in role.functions or name.rsplit(".", 1)[-1] in role.functions):
                reason = ""
            if reason:
                return self._block(reason, message, d, tables)
        if d.unmaskable is not None and self.restricted:
            return self._block("statement_not_allowed", d.unmaskable, d, tables)
        if d.row_locks and not role.may("update"):
            return self._block(
                "statement_not_allowed",
                "SELECT … FOR UPDATE/SHARE takes row locks: it needs statements: [update]",
                d,
                tables,
            )
        missing = sorted(k for k in d.required if not role.may(k))
        if missing:
            return self._block(
                "statement_not_allowed",
                f"{'/'.join(missing).upper()} statements are not allowed for this role",
                d,
            )
        # 2. functions, wherever they are called: reads, a write's VALUES and SET, RETURNING,
        # ON CONFLICT, a COPY's query, the statement inside EXPLAIN or PREPARE
        if not role.unrestricted_statements:
            for schema, name, node in self._calls(d):
                if name in self.facts.setting_functions:
                    if d.setting_call:
                        continue  # understood as a SET (policies/sql/describe.py), judged above
                    return self._block(
                        "function_denied",
                        f"{name}() changes a setting inside a query, which the proxy cannot "
                        f"follow; use SET, or SELECT {name}('<setting>', '<value>', false) alone",
                        d,
                        tables,
                    )
                found = self._function_refusal(schema, name, node)
                if found:
                    return self._block(*found, d, tables)
        # 2b. who the session is upstream, whatever the role's statements
        identity = self._identity_refusal(d)
        if identity is not None:
            return self._block("statement_not_allowed", identity, d, tables)
        if d.copy_unmaskable is not None and self.masks_output:
            # The proxy masks COPY rows it can read: text or CSV in the layout the options give.
            # Whatever the role's statements, a layout it cannot read is not sent to a role whose
            # results are masked.
            return self._block(
                "statement_not_allowed",
                f"{d.copy_unmaskable} for this role; use COPY … TO STDOUT in text or CSV format",
                d,
                tables,
            )
        # 3. tables
        for t in sorted(tables):
            if self._catalog_ok(t):
                continue
            if not role.table_allowed(t, self.default_schema):
                return self._block("table_denied", f"table {t} is not allowed for this role", d, [t])
        for t in sorted(d.filtered_writes):
            if role.row_filters_for(t, self.default_schema) and not role.unrestricted_statements:
                return self._block(
                    "statement_not_allowed",
                    f"{t} has a row filter for this role: {d.kind.upper()} cannot be filtered",
                    d,
                    [t],
                )
        refusal = self._views_over_filtered(d)
        if refusal is not None:
            return refusal
        if d.explain_analyze and not role.unrestricted_statements:
            filtered = sorted(t for t in tables if role.row_filters_for(t, self.default_schema))
            if filtered:
                return self._block(
                    "statement_not_allowed",
                    f"EXPLAIN ANALYZE shows the rows the row filter on {', '.join(map(str, filtered))} "
                    "removes; use EXPLAIN without ANALYZE",
                    d,
                    filtered,
                )
        uses = [u for read in d.all_reads() for u in read.uses]
        # 4. whole rows
        for u in uses:
            if u.role != "whole_row":
                continue
            bad = self._non_clear(u.columns)
            opaque = self._opaque_classified(u.opaque)
            if bad or opaque:
                what = ", ".join(sorted({str(c.table) for c, _, _ in bad} | {str(t) for t in opaque}))
                return self._block(
                    "whole_row",
                    f"whole-row value `{u.text}` would carry classified columns of {what}; list the columns",
                    d,
                    tables,
                    [cls for _, cls, _ in bad],
                )
        # 5. denied classes anywhere
        outputs = [o for read in d.all_reads() for o in (read.outputs or [])]
        flows = [f.lineage for f in d.flows]
        for cols in [u.columns for u in uses] + [o.sources for o in outputs] + [f.sources for f in flows]:
            for c, cls, act in self._non_clear(cols):
                if act == "deny":
                    return self._block(
                        "class_denied", f"class {cls} ({c}) is denied for this role", d, tables, [cls]
                    )
        # 6. unexpanded stars over tables that may hold classified columns
        for read in d.all_reads():
            opaque = self._opaque_classified(read.unexpanded)
            if opaque:
                return self._block(
                    "whole_row",
                    f"cannot expand * over {', '.join(map(str, opaque))} (not in the schema); "
                    "list the columns",
                    d,
                    opaque,
                )
        # 6b. values kept in user variables (MySQL `@v := phone`): `SELECT @v` would read them back
        # later with no column to mask
        for u in uses:
            if u.role != "assigned":
                continue
            bad = self._non_clear(u.columns)
            if bad or self._opaque_classified(u.opaque):
                classes = [cls for _, cls, _ in bad]
                return self._block(
                    "masked_flow",
                    f"classified values ({', '.join(sorted(set(classes)) or ['unknown'])}) cannot be "
                    f"stored in a user variable (`{u.text}`): a later SELECT of it would read them unmasked",
                    d,
                    tables,
                    classes,
                )
        # 7. predicates, and computations whose errors or timing would reveal a masked value
        refusal = self._predicates(uses) or self._computations(uses)
        if refusal is not None:
            text, classes = refusal
            return self._block("masked_predicate", text, d, tables, classes)
        # 8. flows into writes
        for flow in d.flows:
            f = flow.lineage
            bad = self._non_clear(f.sources)
            opaque = self._opaque_classified(f.opaque) if not f.sources else []
            if bad or opaque:
                classes = [cls for _, cls, _ in bad]
                return self._block(
                    "masked_flow",
                    f"classified values ({', '.join(sorted(set(classes)) or ['unknown'])}) cannot flow into "
                    f"{flow.target}",
                    d,
                    tables,
                    classes,
                )
        # 9. values that gather many rows
        refusal = self._row_budget(d, tables)
        if refusal is not None:
            return refusal
        shape = self._unknown_shape(d, uses)
        if shape is not None:
            return self._block("unparsable", shape, d, tables)
        return self._allow(d, tables, uses, outputs)

    def _unknown_shape(self, d: Described, uses: list[Use]) -> str | None:
        """Masks apply to result columns by position. When the analysis cannot tell the result's
        columns apart (`*` over a table function or catalog relation whose columns the schema does
        not list) and the statement reads classified data, no mask could be put on the right
        column: refused (the proxy also refuses any result whose column count differs from the
        decision's)."""
        if not self.restricted or d.query is None or not d.result_rows or d.query.outputs is not None:
            return None
        for u in uses:
            if self._non_clear(u.columns) or self._opaque_classified(u.opaque):
                return (
                    "the result's columns cannot be told apart (a * over a source whose columns the "
                    "schema does not list) while it reads classified data; list the columns"
                )
        return None

    def _identity_refusal(self, d: Described) -> str | None:
        """Statements that would change who the session is upstream. For a role with a
        `database_role`: SET ROLE, SET SESSION AUTHORIZATION, RESET of either, DISCARD (DISCARD
        ALL resets the session authorization), set_config() of either or of a setting named by
        an expression, and writes to the settings catalog (its update rule calls set_config).
        (Renaming the session is allowed: the proxy puts `maskgate:<user>/` back in front of any
        application_name a session sets, proxy/pg/relay.py.)"""
        fixed = self.role.database_role
        tree = d.tree
        facts = self.facts
        why = (
            f"this role's statements run as database role {fixed}, which its sessions cannot change"
            if fixed is not None
            else ""
        )
        if fixed is not None and isinstance(tree, nodes.Set):
            for item in tree.items:
                if item.kind in IDENTITY_SETTINGS or item.name in IDENTITY_SETTINGS:
                    return why
        if fixed is not None and (d.identity_reset or isinstance(tree, nodes.Discard)):
            return why
        # What the statement is understood to set (SET, RESET, DISCARD ALL, set_config as a whole
        # statement, pg_dump's pinned pg_settings form).
        for change in d.settings:
            if fixed is not None and change.name in IDENTITY_SETTINGS:
                return why
            if change.name == APPLICATION_NAME and _impersonates(change.value):
                return IMPERSONATION
        # set_config anywhere else: roles with statements: [all] may call it inside a query.
        for _schema, name, node in self._calls(d):
            if name not in facts.setting_functions or d.setting_call:
                continue
            args = node.expressions if hasattr(node, "expressions") else []
            setting = args[0] if args else None
            literal = isinstance(setting, exp.Literal) and setting.is_string
            key = facts.setting_key(setting.name) if literal and setting is not None else None
            value = args[1] if len(args) > 1 else None
            if key == APPLICATION_NAME and not (
                isinstance(value, exp.Literal) and value.is_string and not _impersonates((value.name,))
            ):
                return IMPERSONATION
            if fixed is not None and (key is None or key in IDENTITY_SETTINGS):
                # A name computed by an expression could be `role`.
                return why
        catalog = facts.settings_catalog
        if catalog is not None and (fixed is not None or not self.role.unrestricted_statements):
            for t in d.written:
                if t.schema == catalog[0] and t.name == catalog[1]:
                    return f"writing {t} changes session settings (its update rule calls set_config)"
        return None

    def _views_over_filtered(self, d: Described) -> Block | None:
        """Row filters are ANDed into reads of the filtered table itself, not into the views over
        it: a view whose tables (transitively) carry a row filter for this role would show every
        row, so it is refused, and so is a write into any view when the role has row filters."""
        if not self.role.row_filters:
            return None
        for read in d.all_reads():
            for view, behind in sorted(read.views.items()):
                filtered = sorted(b for b in behind if self.role.row_filters_for(b, self.default_schema))
                if filtered:
                    names = ", ".join(map(str, filtered))
                    return self._block(
                        "table_denied",
                        f"view {view} reads {names}, which has a row filter for this role; "
                        f"query {names} directly",
                        d,
                        [view, *filtered],
                    )
        if not self.policy_role.row_filters:
            return None  # the statistics filter binds no table a write can reach through a view
        for t in sorted(d.written):
            found = self.schema.lookup(t)
            if found is not None and found.is_view:
                return self._block(
                    "table_denied",
                    f"{t} is a view: writes through it cannot be row-filtered for this role",
                    d,
                    [t],
                )
        return None

    def _row_budget(self, d: Described, tables: set[TableName]) -> Block | None:
        """`max_rows` counts records, not result rows: a value that gathers the rows it reads
        (collection aggregates in any form, window ones included; ARRAY(subquery); a WITH
        RECURSIVE query that accumulates) could carry every record in one row. How many rows it
        gathers is known only when it runs, so it is refused for a role with a row limit, unless
        the statement only reads catalog relations (pg_dump and GUI tools gather catalog rows this
        way, and catalog reads have no row limit) or is an EXPLAIN, and writes nothing (a write
        would keep the gathered value for a later read)."""
        if self.role.max_rows is None:
            return None
        if not d.written and (d.explain or all(self._catalog_ok(t) for t in tables)):
            return None  # a plan carries no rows; catalog reads have no row limit
        for read in d.all_reads():
            if read.collects:
                what = read.collects[0]
                return self._block(
                    "row_budget",
                    f"{what} gathers many rows into one value, and this role may receive at most "
                    f"{self.role.max_rows} rows per statement; select the rows themselves",
                    d,
                    tables,
                )
        if d.query is not None and d.result_rows and d.query.records_per_row > self.role.max_rows:
            return self._block(
                "row_budget",
                f"one row of this result may carry {d.query.records_per_row} records (joins, "
                f"subqueries, aggregate and window values), and this role may receive at most "
                f"{self.role.max_rows} per statement",
                d,
                tables,
            )
        return None

    def _catalog_only(self, d: Described, tables: set[TableName]) -> bool:
        return bool(tables) and all(self._catalog_ok(t) for t in tables) and not d.written

    def _catalog_ok(self, t: TableName) -> bool:
        if not self.facts.is_catalog_schema(t.schema):
            return False
        if self.role.unrestricted_statements:
            return True
        return not self.facts.is_sensitive_catalog(t.schema or "", t.name)

    def _tables(self, d: Described) -> set[TableName]:
        out = set(d.written) | set(d.touched)
        for read in d.all_reads():
            out |= read.tables
        return out

    def _calls(self, d: Described) -> Iterator[tuple[str | None, str, exp.Func]]:
        """Every function call of the statement's tree, as (schema or None, folded name, node)."""
        if d.tree is None:
            for read in d.all_reads():
                yield from read.functions
            return
        pending: list[Statement] = [d.tree]
        while pending:
            part = pending.pop()
            if isinstance(part, nodes.Node):
                pending.extend(part.expressions())
                continue
            for node in part.find_all(exp.Func):
                schema = None
                if isinstance(node.parent, exp.Dot) and node.parent.expression is node:
                    schema = node.parent.this.name if node.parent.this else None
                yield schema, identifiers.function_name(node, self.facts), node

    def _function_refusal(self, schema: str | None, name: str, node: exp.Func) -> tuple[str, str] | None:
        """Restricted roles call functions by what they may do. Immutable and stable functions
        (the catalog's volatility, the most volatile of the name's overloads) and a reviewed list
        of harmless volatile ones pass; any other volatile function needs the statement right its
        effect implies (`function_rights`, else `volatile_function_right`). A function the
        catalog does not list is refused, and so are, unless the role allow-lists them: user-
        defined functions (lineage cannot see into them), server file, network and SQL-in-a-
        string functions, and those that expose other sessions' SQL or statistics values.
        Sleeping, sequence writes and advisory locks are refused whatever the allow-list says."""
        facts, role = self.facts, self.role
        # An unqualified call sqlglot types the way it types a user-defined function's name may
        # run that function (`SET search_path = public, pg_catalog` puts it before the catalog),
        # even when the node renders as syntax (`now()` as CURRENT_TIMESTAMP).
        shadowed = schema is None and type(node) in self.user_typed
        server = server_function_name(node, name, facts)
        if server is None:
            if schema is None and not shadowed:
                return None
            server = name  # `pg_catalog.coalesce(…)` is a call, of a function the catalog lacks
        full = f"{schema}.{server}" if schema else server
        if server in facts.timing_functions:
            return "function_denied", f"function {server}() is not allowed: its timing is a side channel"
        right = facts.function_rights.get(server)
        if right is not None and not role.may(right):
            effect = _EFFECTS.get(right, "has an effect")
            return "statement_not_allowed", f"{server}() {effect}: it needs statements: [{right}]"
        allowed = role.functions
        if server in allowed or name in allowed or full in allowed:
            return None
        if server in facts.dangerous_functions:
            return (
                "function_denied",
                f"function {server}() is not allowed "
                "(server files, network, large objects or SQL in a string)",
            )
        if server in facts.exposing_functions:
            return (
                "function_denied",
                f"function {server}() returns other sessions' SQL or statistics values; read "
                "pg_stat_activity or pg_stats, which mask them",
            )
        if schema and not facts.is_catalog_schema(schema):
            return "function_denied", f"user-defined function {full}() is not allowed for this role"
        if self.schema.is_user_function(schema, server) or shadowed:
            return "function_denied", f"user-defined function {full}() is not allowed for this role"
        if right is not None or self.functions is None:
            return None  # the right its effect needs is held; or the dialect has no volatility
        where = schema or facts.implicit_catalog
        volatility = self.functions.get((where, server)) if where else None
        if volatility is None:
            return (
                "function_denied",
                f"function {full}() is not in the database's catalog; maskgate does not know what it does",
            )
        if server in facts.effect_functions:
            volatility = "volatile"
        if (
            volatility == "volatile"
            and server not in facts.harmless_volatile_functions
            and not role.may(facts.volatile_function_right)
        ):
            need = facts.volatile_function_right
            return (
                "statement_not_allowed",
                f"function {server}() is volatile (it may change data, the server or other sessions): "
                f"it needs statements: [{need}]",
            )
        return None

    def _predicates(self, uses: list[Use]) -> tuple[str, list[str]] | None:
        """`deny` refuses every comparison of a non-clear class, including those no operator
        spells out (INTERSECT / EXCEPT / UNION without ALL, SELECT DISTINCT, count(DISTINCT …)).
        `equality` keeps those that are equalities the role could write with `=`: against a
        literal or parameter, or between base columns of the same class (the analysis makes them
        eq_literal / eq_column; computed values, candidate lists and DISTINCT ON are predicates).
        Like a same-class join, such a comparison may come back in the value's sort order when
        the server sorts to compare; the values themselves stay masked. Equalities with values
        count: one statement may test a masked class against at most MAX_LOOKUP_VALUES of them
        (`IN` lists, OR chains and subqueries together), or a bit split of the candidates in
        one statement reads a whole number."""
        mode = self.role.masked_predicates
        if mode == "allow":
            return None
        lookups = 0
        for u in uses:
            if u.role in ("value", "whole_row", "null_test", "assigned"):
                continue
            bad = self._non_clear(u.columns)
            opaque = self._opaque_classified(u.opaque) if not u.columns else []
            if not bad and not opaque:
                continue
            classes = [cls for _, cls, _ in bad]
            if mode == "equality":
                if u.role == "eq_literal":
                    lookups += u.candidates
                    if lookups <= MAX_LOOKUP_VALUES:
                        continue
                    return (
                        f"`{u.text}`: this statement compares classified "
                        f"{', '.join(sorted(set(classes))) or 'data'} with {lookups} values; at most "
                        f"{MAX_LOOKUP_VALUES} per statement for this role (a list of candidates "
                        "tests many numbers at once)",
                        classes,
                    )
                if u.role == "eq_column" and u.partner and not self._may_write:
                    # Same-class columns hold the database's values, unless the role can put its
                    # own there: an UPDATE writing 10,000 candidates into other rows' phone, then a
                    # join on phone, reads a masked number without one counted lookup.
                    mine = {cls for _, cls, _ in bad}
                    theirs = {self.cls(c) for c in u.partner}
                    if theirs == mine:
                        continue
            if mode == "equality" and u.role == "eq_column" and self._may_write:
                how = (
                    "only equality with a value: this role may write, so a column it compares with "
                    "could hold values it wrote"
                )
            else:
                how = (
                    "only equality with a value"
                    if mode == "equality"
                    else "no filtering, sorting or grouping"
                )
            where = f"in a comparison ({u.via})" if u.via else "in a condition"
            return (
                f"`{u.text}` uses classified {', '.join(sorted(set(classes))) or 'data'} {where} "
                f"({how} allowed for this role)",
                classes,
            )
        return None

    def _computations(self, uses: list[Use]) -> tuple[str, list[str]] | None:
        """For `masked_predicates: deny`: a value of a non-clear class may only pass through
        total functions (DialectFacts.total_functions). Anything else (a cast to a number, a
        division, a regular expression) can fail or slow down depending on the value, and its
        error, or its absence, or its time, tells the value that the redacted output hides."""
        if self.role.masked_predicates != "deny":
            return None
        for u in uses:
            if u.role != "value" or u.unsafe is None:
                continue
            bad = self._non_clear(u.columns)
            opaque = self._opaque_classified(u.opaque) if not u.columns else []
            if not bad and not opaque:
                continue
            classes = [cls for _, cls, _ in bad]
            return (
                f"`{u.unsafe_text}` computes on classified {', '.join(sorted(set(classes))) or 'data'}; "
                "only total text functions (upper, substr, ||, md5, coalesce, casts to text, …) may be "
                "applied to masked values for this role",
                classes,
            )
        return None

    def _mask_for(self, index: int, lin: Lineage) -> ColumnMask:
        bad = self._non_clear(lin.sources)
        sources = tuple(sorted(str(c) for c in lin.sources))
        if not bad:
            if lin.opaque and self._opaque_classified(lin.opaque):
                # A column of a table the schema does not describe, in a table the policy
                # classifies: the class is unknown, so nothing of it is shown.
                return ColumnMask(index, lin.name, None, "redact", sources, True)
            # In name order: the class shown must not depend on set iteration (hash seeds).
            first = next((cls for c in sorted(lin.sources) if (cls := self.cls(c))), None)
            return ColumnMask(index, lin.name, first, "clear", sources, lin.derived)
        classes = sorted({cls for _, cls, _ in bad})
        strongest = max((act for _, _, act in bad), key=lambda a: ACTION_STRENGTH.get(a, 9))
        if lin.derived or len(classes) > 1:
            # A value computed from a classified column is redacted whole: partial masks of a
            # transformed value (upper(phone), phone || '') would leak its remaining characters.
            action = "redact" if ACTION_STRENGTH.get(strongest, 9) <= ACTION_STRENGTH["redact"] else strongest
        else:
            action = strongest
        return ColumnMask(index, lin.name, classes[0], action, sources, lin.derived)

    def _allow(self, d: Described, tables: set[TableName], uses: list[Use], outputs: list[Lineage]) -> Allow:
        columns: tuple[ColumnMask, ...] = ()
        if d.query is not None and d.result_rows and d.query.outputs is not None:
            columns = tuple(self._mask_for(i, o) for i, o in enumerate(d.query.outputs))
        classes = set()
        for u in uses:
            classes |= {cls for c in u.columns if (cls := self.cls(c))}
        for o in outputs:
            classes |= {cls for c in o.sources if (cls := self.cls(c))}
        notes = list(d.notes())
        if d.query is not None and d.result_rows and d.query.outputs is None:
            notes.append("result shape unknown")
        # The row budget bounds how much data leaves in one statement. A read of catalog
        # relations only (sensitive ones are refused above) carries none, and pg_dump and GUI
        # tools break when their catalog queries are cut short.
        catalog_only = self._catalog_only(d, tables)
        row_limit = None if catalog_only else self.role.max_rows
        if row_limit is not None and d.query is not None and d.result_rows:
            # A row limit counts records: a row that joins four reads of a table, or carries five
            # scalar subqueries or aggregate values, holds four or five records (_row_budget
            # refuses a row that holds more than the limit).
            row_limit = max(1, row_limit // d.query.records_per_row)
        lookups = 0
        if self.role.masked_predicates == "equality":
            lookups = sum(u.candidates for u in uses if u.role == "eq_literal" and self._non_clear(u.columns))
        probed = {cls for u in uses if u.role == "predicate" for c in u.columns if (cls := self.cls(c))}
        return Allow(
            kind=d.kind,
            columns=columns,
            row_limit=row_limit,
            lookups=lookups,
            probed=tuple(sorted(probed)),
            detect=self.role.detect,
            tables=tuple(sorted(str(t) for t in tables)),
            classes=tuple(sorted(classes)),
            search_path=d.search_path,
            settings=d.settings,
            transaction=d.transaction,
            cursor=d.cursor,
            prepared=d.prepared_effect,
            schema_changed=d.schema_changed,
            notes=tuple(notes),
            copy=d.copy_framing,
        )
