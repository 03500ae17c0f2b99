"""The pure decision: one described statement + one role → Allow or Block.

Owns: the order and content of the rules in DESIGN.md §3 (statement kinds, functions, tables,
classes, whole rows, predicates, flows) and the per-column masks of an allowed result. Pure: no
parsing (policies/sql/describe.py describes), no rewriting (policies/rewrite.py), no cache.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlglot import exp

from policies.decision import Allow, Block, ColumnMask
from policies.model import ACTION_STRENGTH, Policy, Role
from policies.names import ColumnName, TableName
from policies.schema import Schema
from policies.sql import nodes
from policies.sql.analysis import Lineage, Use
from policies.sql.describe import Described
from policies.sql.dialects import DialectFacts


def _setting_rows_are_safe(setting: exp.Expression, node: exp.Expression, facts: DialectFacts) -> bool:
    """`SELECT set_config(name, …) FROM pg_settings WHERE name = '<safe>'` (pg_dump's form): the
    setting comes from pg_settings.name and the WHERE pins it to safe settings only.

    Anything else (a join, another source, OR, a non-literal comparison) is refused: the WHERE
    must be a conjunction one of whose terms is `name = '<safe>'` or `name IN ('<safe>', …)`.
    """
    select = node.find_ancestor(exp.Select)
    if select is None or select.args.get("joins") or select.args.get("laterals"):
        return False
    frm = select.args.get("from_")
    source = frm.this if frm is not None and not frm.expressions else None
    if not isinstance(source, exp.Table) or not isinstance(source.this, exp.Identifier):
        return False
    if facts.settings_catalog is None:
        return False
    catalog_schema, catalog_table, name_column = facts.settings_catalog
    if source.name != catalog_table or (source.db or catalog_schema) != catalog_schema:
        return False
    alias = source.alias_or_name

    def is_name(col: exp.Expression) -> bool:
        return isinstance(col, exp.Column) and col.name == name_column and col.table in ("", alias)

    if not is_name(setting):
        return False
    where = select.args.get("where")
    if where is None:
        return False
    for term in where.this.flatten() if isinstance(where.this, exp.And) else [where.this]:
        if isinstance(term, exp.EQ):
            col, value = term.this, term.expression
            if not is_name(col):
                col, value = value, col
            if is_name(col) and _safe_setting_literal(value, facts):
                return True
        if (
            isinstance(term, exp.In)
            and is_name(term.this)
            and not term.args.get("query")
            and term.expressions
            and all(_safe_setting_literal(v, facts) for v in term.expressions)
        ):
            return True
    return False


def _safe_setting_literal(node: exp.Expression, facts: DialectFacts) -> bool:
    return (
        isinstance(node, exp.Literal)
        and node.is_string
        and facts.setting_key(node.name) in facts.safe_settings
    )


# Settings that say who a session is upstream (the role it acts as, its session user). A role with
# a `database_role` runs as that database role: no statement of its sessions may change them.
IDENTITY_SETTINGS = frozenset({"role", "session_authorization"})
# maskgate sets the upstream application_name to `maskgate:<user>/…` so the database's own views
# and logs name the person: no role's session may rename itself.
APPLICATION_NAME = "application_name"


class Judge:
    """Applies one role's rules. Build one per (policy, role, schema, dialect)."""

    def __init__(self, policy: Policy, role: Role, schema: Schema, facts: DialectFacts) -> None:
        self.policy = policy
        self.role = role
        self.schema = schema
        self.facts = facts
        self.default_schema = facts.default_schema
        # Whether anything this role receives is masked or scanned: then result framing the
        # proxy's maskers rely on (COPY's default text format) must not be changed.
        self.masks_output = bool(role.detect) or any(
            role.action_for(rule.cls) != "clear" for rule in policy.columns
        )

    # --- helpers -------------------------------------------------------------------------------

    def cls(self, column: ColumnName) -> str | None:
        return self.policy.classify(column, self.default_schema)

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
        return [t for t in tables if self.policy.table_has_classes(t, self.default_schema)]

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
        # 2. functions
        if not role.unrestricted_statements:
            for read in d.all_reads():
                for schema, name, node in read.functions:
                    found = self._effect_refusal(name)
                    if found:
                        return self._block(*found, d, tables)
                    refusal = self._function_refusal(schema, name, node)
                    if refusal:
                        return self._block("function_denied", refusal, d, tables)
        # 2b. who the session is upstream, whatever the role's statements
        identity = self._identity_refusal(d)
        if identity is not None:
            return self._block("statement_not_allowed", identity, d, tables)
        if d.copy_options and self.masks_output and not role.unrestricted_statements:
            return self._block(
                "statement_not_allowed",
                "COPY options (FORMAT, DELIMITER, QUOTE, NULL, HEADER, …) are not allowed for this role; "
                "use plain text COPY … TO STDOUT",
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
        return self._allow(d, tables, uses, outputs)

    def _identity_refusal(self, d: Described) -> str | None:
        """Statements that would change who the session is upstream. For a role with a
        `database_role`: SET ROLE, SET SESSION AUTHORIZATION, RESET of either, DISCARD (DISCARD
        ALL resets the session authorization), set_config() of either or of a setting named by
        an expression, and writes to the settings catalog (its update rule calls set_config).
        For every role: renaming the session (SET application_name, set_config of it)."""
        fixed = self.role.database_role
        tree = d.tree
        facts = self.facts
        why = (
            f"this role's statements run as database role {fixed}, which its sessions cannot change"
            if fixed is not None
            else ""
        )
        rename = (
            "application_name names the person behind the session (maskgate:<user>) and cannot be changed"
        )
        if isinstance(tree, nodes.Set):
            for item in tree.items:
                if fixed is not None and (item.kind in IDENTITY_SETTINGS or item.name in IDENTITY_SETTINGS):
                    return why
                if item.kind == "setting" and facts.setting_key(item.name) == APPLICATION_NAME:
                    default = [v.name.upper() for v in item.values if isinstance(v, exp.Var)] == ["DEFAULT"]
                    if not (default and len(item.values) == 1):  # DEFAULT is maskgate's own name
                        return rename
        if fixed is not None and (d.identity_reset or isinstance(tree, nodes.Discard)):
            return why
        for read in d.all_reads():
            for _schema, name, node in read.functions:
                if name not in facts.setting_functions:
                    continue
                args = node.expressions if hasattr(node, "expressions") else []
                setting = args[0] if args else None
                literal = isinstance(setting, exp.Literal) and setting.is_string
                key = facts.setting_key(setting.name) if literal and setting is not None else None
                if key == APPLICATION_NAME:
                    return rename
                if fixed is None:
                    continue
                if key in IDENTITY_SETTINGS:
                    return why
                if key is None and not (setting is not None and _setting_rows_are_safe(setting, node, facts)):
                    # A name computed by an expression could be `role`; pg_dump's form, a name read
                    # from pg_settings whose WHERE pins it to safe settings, cannot.
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

    def _effect_refusal(self, name: str) -> tuple[str, str] | None:
        """Functions refused for what they do rather than what they read (checked before the
        role's function allow-list): sleeping, writing sequences, taking advisory locks."""
        if name in self.facts.timing_functions:
            return "function_denied", f"function {name}() is not allowed: its timing is a side channel"
        if name in self.facts.write_functions and not self.role.may("update"):
            return "statement_not_allowed", f"{name}() writes a sequence: it needs statements: [update]"
        if name in self.facts.lock_functions and not self.role.may("admin"):
            return "statement_not_allowed", f"{name}() takes a lock others wait on: needs statements: [admin]"
        return None

    def _function_refusal(self, schema: str | None, name: str, node) -> str | None:
        allowed = self.role.functions
        full = f"{schema}.{name}" if schema else name
        if name in allowed or full in allowed:
            return None
        if name in self.facts.dangerous_functions:
            return (
                f"function {name}() is not allowed (server files, network, large objects or SQL in a string)"
            )
        if name in self.facts.setting_functions:
            args = node.expressions if hasattr(node, "expressions") else []
            setting = args[0] if args else None
            if setting is not None and _safe_setting_literal(setting, self.facts):
                value = args[1] if len(args) > 1 else None
                key = self.facts.setting_key(setting.name)
                if key not in self.facts.lexical_settings or (
                    isinstance(value, exp.Literal)
                    and value.is_string
                    and not self.facts.unsafe_setting(key, value.name)
                ):
                    return None
            if setting is not None and _setting_rows_are_safe(setting, node, self.facts):
                return None
            return "set_config() may only change session settings such as search_path"
        if schema and schema not in self.facts.catalog_schemas:
            return f"user-defined function {full}() is not allowed for this role"
        if self.schema.is_user_function(schema, name):
            return f"user-defined function {full}() is not allowed for this role"
        return None

    def _predicates(self, uses: list[Use]) -> tuple[str, list[str]] | None:
        """`deny` refuses every comparison of a non-clear class, including those no operator
        spells out (INTERSECT / EXCEPT / UNION without ALL, SELECT DISTINCT, count(DISTINCT …)).
        `equality` keeps those that are equalities the role could write with `=`: against a
        literal or parameter, or between base columns of the same class (the analysis makes them
        eq_literal / eq_column; computed values, candidate lists and DISTINCT ON are predicates).
        Like a same-class join, such a comparison may come back in the value's sort order when
        the server sorts to compare; the values themselves stay masked."""
        mode = self.role.masked_predicates
        if mode == "allow":
            return None
        for u in uses:
            if u.role in ("value", "whole_row", "null_test"):
                continue
            bad = self._non_clear(u.columns)
            opaque = self._opaque_classified(u.opaque) if not u.columns else []
            if not bad and not opaque:
                continue
            classes = [cls for _, cls, _ in bad]
            if mode == "equality":
                if u.role == "eq_literal":
                    continue
                if u.role == "eq_column" and u.partner:
                    mine = {cls for _, cls, _ in bad}
                    theirs = {self.cls(c) for c in u.partner}
                    if theirs == mine:
                        continue
            how = "only equality with a value" if mode == "equality" else "no filtering, sorting or grouping"
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
        catalog_only = bool(tables) and all(self._catalog_ok(t) for t in tables) and not d.written
        return Allow(
            kind=d.kind,
            columns=columns,
            row_limit=None if catalog_only else self.role.max_rows,
            detect=self.role.detect,
            tables=tuple(sorted(str(t) for t in tables)),
            classes=tuple(sorted(classes)),
            search_path=d.search_path,
            schema_changed=d.schema_changed,
            notes=tuple(notes),
        )
