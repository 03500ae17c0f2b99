"""SQL analysis with sqlglot: what one parsed query reads, how, and where its output comes from.

Owns: qualification of a query against the `Schema` (table resolution through the search_path,
`*` expansion), output lineage through aliases, CTEs, derived tables, subqueries, LATERAL,
set operations, recursive CTEs, table functions and views, and the *uses* of every base column
(value, predicate, equality, null test, whole row). Names arrive folded (policies/sql/
identifiers.py) and are compared exactly; a name that is no column of a known relation is refused.
It knows nothing about roles or classes: it describes, policies/decide.py judges. Must not edit
SQL text; rewrites live in policies/rewrite.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from sqlglot import exp
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.schema import MappingSchema

from policies.names import ColumnName, TableName
from policies.schema import Schema
from policies.sql import identifiers
from policies.sql.dialects import DialectFacts
from policies.sql.parser import Unparsable, parse_one


class AnalysisError(Exception):
    """The statement cannot be described with confidence; the engine refuses it (fail closed)."""


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where one output column's value comes from."""

    name: str
    sources: frozenset[ColumnName]
    derived: bool
    # Tables whose columns are unknown (not in the schema) that may feed this value.
    opaque: frozenset[TableName] = frozenset()


def _assigns_user_variable(node: exp.Expression, child: exp.Expression) -> bool:
    """Whether `child` is the value `node` stores in a user variable (MySQL's `@v := child`;
    PostgreSQL's named arguments `f(a := x)` name a parameter, never an `@` variable)."""
    return (
        isinstance(node, exp.PropertyEQ) and isinstance(node.this, exp.Parameter) and child is node.expression
    )


@dataclass(frozen=True, slots=True)
class Use:
    """One read of base columns. `role` is value | predicate | eq_literal | eq_column | null_test |
    whole_row | assigned (stored in a user variable, MySQL's `@v := x`). Comparisons no operator
    spells out count too: a column of INTERSECT / EXCEPT /
    UNION (not ALL), of SELECT DISTINCT or of an aggregate's DISTINCT (`via` names the clause).
    `partner` holds the other side's columns of an eq_column comparison. `unsafe` is,
    for a value use, the first function, operator or cast on the way from the column to the
    output that is not total (DialectFacts.total_functions): evaluating it may raise an error
    that depends on the value, or take a value-dependent time."""

    role: str
    columns: frozenset[ColumnName]
    partner: frozenset[ColumnName] = frozenset()
    opaque: frozenset[TableName] = frozenset()
    node: exp.Expression | None = field(default=None, compare=False, hash=False)
    dialect: str = "postgres"
    unsafe: exp.Expression | None = field(default=None, compare=False, hash=False)
    # For a comparison no operator spells out: the clause that compares (UNION, DISTINCT, …).
    via: str = ""
    # For eq_literal: how many values it compares the column with (`= x`: 1, `IN (a, b, c)`: 3).
    candidates: int = 1

    @property
    def text(self) -> str:
        # Generated only for messages: SQL generation costs more than the whole analysis.
        return self.node.sql(dialect=self.dialect) if self.node is not None else ""

    @property
    def unsafe_text(self) -> str:
        return self.unsafe.sql(dialect=self.dialect) if self.unsafe is not None else ""


@dataclass
class QueryAnalysis:
    outputs: list[Lineage] | None  # None: the result's shape is unknown (e.g. * over an unknown table)
    uses: list[Use] = field(default_factory=list)
    tables: set[TableName] = field(default_factory=set)
    functions: list[tuple[str | None, str, exp.Expression]] = field(default_factory=list)
    unexpanded: set[TableName] = field(default_factory=set)
    # Each view read, with every table behind it (transitively).
    views: dict[TableName, frozenset[TableName]] = field(default_factory=dict)
    # What gathers many rows into one value (`array_agg()`, `ARRAY(subquery)`, a WITH RECURSIVE
    # query that carries a value from row to row and adds data to it), for messages.
    collects: list[str] = field(default_factory=list)
    # How many records of relations one result row may carry at most: each read of a relation in
    # the row's scope and in the subqueries feeding it (a self-join of four, five correlated
    # scalar subqueries), the larger side of a set operation. A row limit counts records, so the
    # judge divides it by this.
    records_per_row: int = 1


# Nodes whose operands are compared, matched or ordered: a classified column inside one of
# them reveals something about its value even when the result is masked.
_COMPARISONS: tuple[type[exp.Expression], ...] = (
    exp.Predicate,
    exp.Nullif,
    exp.StrPosition,
    exp.Greatest,
    exp.Least,
)
# Clause nodes (or arg names) whose whole content is a predicate. A value in LIMIT, OFFSET or
# FETCH sets how many rows come back: the row count would reveal it.
_PREDICATE_CLAUSES: tuple[type[exp.Expression], ...] = (
    exp.Where,
    exp.Having,
    exp.Qualify,
    exp.Group,
    exp.Order,
    exp.Limit,
    exp.Offset,
    exp.Fetch,
)
_PREDICATE_ARGS = {
    exp.Join: ("on", "using", "match_condition"),
    exp.Window: ("partition_by", "order"),
    exp.If: ("this",),
    exp.Case: ("this",),
    exp.Filter: ("expression",),
    exp.Distinct: ("on",),
}
# Sources in FROM computed by a function (`FROM t, f(t.x) g`): their arguments set the rows.
_FROM_FUNCTIONS: tuple[type[exp.Expression], ...] = (exp.Unnest, exp.Lateral, exp.Table, exp.UDTF)
# Casts that cannot fail: every value has a text form, and an explicit cast to a length truncates.
_TEXT_TYPES = frozenset(
    {
        exp.DataType.Type.TEXT,
        exp.DataType.Type.VARCHAR,
        exp.DataType.Type.CHAR,
        exp.DataType.Type.NCHAR,
        exp.DataType.Type.NVARCHAR,
        exp.DataType.Type.NAME,
        exp.DataType.Type.BPCHAR,
    }
)
_LITERALS: tuple[type[exp.Expression], ...] = (
    exp.Literal,
    exp.Placeholder,
    exp.Parameter,
    exp.Null,
    exp.Boolean,
)
_MAX_VIEW_DEPTH = 8
_MAX_RECURSION_PASSES = 16


def _is_literal(node: exp.Expression) -> bool:
    while isinstance(node, exp.Paren | exp.Cast | exp.Neg):
        node = node.this
    return isinstance(node, _LITERALS)


def _is_number(node: exp.Expression) -> bool:
    while isinstance(node, exp.Paren | exp.Neg | exp.Cast):
        node = node.this
    return isinstance(node, exp.Literal) and not node.is_string


def _bare(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _total_step(node: exp.Expression, child: exp.Expression, facts: DialectFacts) -> bool:
    """Whether `node` applied to `child` (one of its arguments) is total over any value of
    `child`: it cannot raise an error that depends on the value (see TOTAL_FUNCTIONS)."""
    if isinstance(node, exp.Paren | exp.Alias | exp.DPipe | exp.Array):
        return True
    if isinstance(node, exp.Replace):
        # Total, but a replacement longer than what it replaces makes the output (and the time
        # every later function takes) grow with how often the hidden value matches: nested
        # replace(substr(phone, 4, 1), '7', 'xxxxxxxxxx') took 42 ms for the right digit and
        # 0.5 ms for the others. Only a replacement no longer than its search string passes.
        search, replacement = node.args.get("expression"), node.args.get("replacement")
        return (
            child.arg_key == "this"
            and isinstance(search, exp.Literal)
            and search.is_string
            and isinstance(replacement, exp.Literal)
            and replacement.is_string
            and len(replacement.name) <= len(search.name)
        )
    if type(node) is exp.Cast:
        to = node.to
        return (
            child.arg_key == "this"
            and isinstance(to, exp.DataType)
            and to.this in _TEXT_TYPES
            and not to.args.get("nested")
        )
    if isinstance(node, exp.If):
        return child.arg_key in ("true", "false")
    if isinstance(node, exp.Case):
        return child.arg_key in ("ifs", "default")
    if isinstance(node, exp.Window):
        return child.arg_key == "this"
    if isinstance(node, exp.Distinct):
        return child.arg_key == "expressions" and isinstance(node.parent, exp.AggFunc)
    if isinstance(node, exp.Dot):
        # pg_catalog.upper(x): the function itself was judged one step below.
        return child.arg_key == "expression" and isinstance(child, exp.Func)
    if isinstance(node, exp.Func):
        if identifiers.function_name(node, facts) not in facts.total_functions:
            return False
        if isinstance(node, exp.Substring):
            # substring(x from 'pattern') is the regular-expression form.
            return not any(
                isinstance(a, exp.Literal) and a.is_string
                for a in (node.args.get("start"), node.args.get("length"))
            )
        return True
    return False


class Analyzer:
    """Analyses queries for one (schema, dialect, search_path, database) context."""

    def __init__(
        self,
        schema: Schema,
        facts: DialectFacts,
        search_path: Sequence[str],
        database: str | None,
        mapping: MappingSchema | None = None,
        view_cache: dict[TableName, list[Lineage] | None] | None = None,
        depth: int = 0,
        view_tables: dict[TableName, frozenset[TableName]] | None = None,
    ) -> None:
        self.schema = schema
        self.facts = facts
        self.database = database
        # MySQL: the current database is the default schema. (PostgreSQL's empty search_path,
        # pg_dump's, is empty: only pg_catalog and pg_temp are searched.)
        path = tuple(search_path) or ((database,) if database and facts.default_schema is None else ())
        self.search_path = path
        self.mapping = mapping or identifiers.mapping(schema, facts)
        self.view_cache = view_cache if view_cache is not None else {}
        # Every table (and view) a view reads, transitively. Kept as long as `view_cache`: a view
        # whose outputs come from the cache must still report the tables behind it.
        self.view_tables = view_tables if view_tables is not None else {}
        self.depth = depth
        self._default: Analyzer | None = None

    def at_default_path(self) -> Analyzer:
        """An analyzer of the same context at the dialect's default search_path: policy text (a
        row filter's subqueries) names relations as its author meant them, whatever the
        session's search_path is."""
        path = self.facts.default_search_path
        if self.search_path == (path or ((self.database,) if self.database else ())):
            return self
        if self._default is None:
            self._default = Analyzer(
                self.schema,
                self.facts,
                path,
                self.database,
                self.mapping,
                self.view_cache,
                self.depth,
                self.view_tables,
            )
        return self._default

    # --- tables ---------------------------------------------------------------------------

    def resolve_table(self, node: exp.Table) -> TableName:
        name = node.name
        schema = node.db or None
        catalog = node.catalog or None
        if schema is None:
            schema = self._search(name)
        db = catalog or self.database
        if self.facts.default_schema is None:  # MySQL: database and schema are one
            db = schema or db
        return TableName(db, schema, name)

    def _search(self, name: str) -> str | None:
        """The schema an unqualified table name resolves to. Names are exact (folded at parse)."""
        for s in self.search_path:
            if self.schema.table(s, name) is not None:
                return s
        # PostgreSQL searches pg_catalog first, whose relations the schema file does not list: a
        # pg_ name the schema has elsewhere is taken for that table (its classes apply, the safe
        # reading if a catalog relation shadowed it), any other for the catalog's.
        prefix = self.facts.implicit_catalog_prefix
        if prefix and self.facts.implicit_catalog and name.startswith(prefix):
            return self.facts.implicit_catalog
        return self.search_path[0] if self.search_path else None

    def is_catalog(self, table: TableName) -> bool:
        return self.facts.is_catalog_schema(table.schema)

    def bind(self, tree: exp.Expression) -> None:
        """Name every relation of `tree` by the schema it resolves to, in place and once.

        A table name that means a WITH query, as the server scopes WITH (see `_names_cte`), is
        marked CTE_REF and left as written; every other unqualified relation gets the schema the
        search_path gives it (`_search`; a temporary table created here: the dialect's temporary
        schema), as an identifier marked BOUND. From then on which relation a name means is a
        property of the tree: the analysis reads it, the rewrite filters it, and for restricted
        roles the SQL sent upstream names it, so the server reads the relation that was judged
        whatever its own search_path says. Idempotent: trees built from bound trees (copies,
        parts) are bound already.
        """
        for table in list(tree.find_all(exp.Table)):
            if not isinstance(table.this, exp.Identifier) or table.args.get("db") is not None:
                continue
            if table.meta.get(CTE_REF) or _not_a_relation(table):
                continue
            if source_position(table) and _names_cte(table):
                table.meta[CTE_REF] = True
                continue
            temporary = self.facts.temporary_schema if _created_temporary(table) else None
            schema = temporary or self._search(table.name)
            if schema:
                table.set("db", _schema_identifier(schema, self.facts))

    def _prepare(self, tree: exp.Expression) -> exp.Expression:
        """Bind the query's relations (`bind`) so qualify and lineage read the ones judged, and
        put WITH RECURSIVE queries in an order sqlglot's scopes can follow."""
        for collate in list(tree.find_all(exp.Collate)):
            # sqlglot reads `COLLATE pg_catalog.default` as a column; it names a collation.
            if isinstance(collate.expression, exp.Column):
                collate.set("expression", exp.Var(this=collate.expression.sql(self.facts.sqlglot)))
        self.bind(tree)
        for lock in tree.find_all(exp.Lock):
            # `FOR UPDATE OF c` names an alias of FROM, which qualify would take for a second c.
            lock.set("expressions", [])
        for with_ in list(tree.find_all(exp.With)):
            if with_.args.get("recursive"):
                _order_recursive(with_)
        return tree

    # --- entry point ------------------------------------------------------------------------

    def analyse_query(self, query: exp.Expression) -> QueryAnalysis:
        """Describe a SELECT / set operation (already copied: it is qualified in place)."""
        self._prepare(query)
        try:
            qualified = qualify(
                query,
                schema=self.mapping,
                dialect=self.facts.sqlglot,
                validate_qualify_columns=False,
                quote_identifiers=False,
                identify=False,
                expand_stars=True,
            )
        except Exception as e:  # qualify raises several types; any of them means "cannot describe"
            catalog = self._catalog_only(query)
            if catalog is not None:
                return catalog
            raise AnalysisError(f"cannot qualify the statement: {e}") from e
        return _QueryWalk(self, qualified).run()

    def _catalog_only(self, query: exp.Expression) -> QueryAnalysis | None:
        """The analysis of a query that reads catalog relations and nothing else, or None.

        qualify gives up on correlated subqueries over relations the schema does not list
        (pg_dump's `(SELECT ftserver FROM pg_foreign_table WHERE ftrelid = c.oid)`). When every
        relation the query names is a catalog one, every column it can mean is a catalog column,
        which carries no class: its outputs are clear and its uses irrelevant. Which catalog
        tables and which functions it touches is still reported, so the judge refuses sensitive
        catalogs (pg_stats, …) and dangerous functions as usual.
        """
        result = QueryAnalysis(outputs=None)
        for table in query.find_all(exp.Table):
            if not isinstance(table.this, exp.Identifier):
                continue  # a table function: its arguments are columns of the same catalog sources
            if table.meta.get(CTE_REF):
                continue
            name = self.resolve_table(table)
            if not self.is_catalog(name) or self.facts.catalog_classified(name.schema, name.name):
                return None  # a catalog column the facts classify (pg_stat_activity.query) needs lineage
            result.tables.add(name)
        if not result.tables:
            return None
        if isinstance(query, exp.Select) and not any(
            isinstance(p, exp.Star) or (isinstance(p, exp.Column) and isinstance(p.this, exp.Star))
            for p in query.selects
        ):
            result.outputs = [Lineage(p.alias_or_name, frozenset(), True) for p in query.selects]
        _collect_functions(query, result, self.facts)
        return result

    # --- views ----------------------------------------------------------------------------

    def view_outputs(self, table: TableName) -> list[Lineage] | None:
        if table in self.view_cache:
            return self.view_cache[table]
        t = self.schema.lookup(table)
        if t is None or not t.definition or self.depth >= _MAX_VIEW_DEPTH:
            raise AnalysisError(f"cannot expand view {table}")
        self.view_cache[table] = None  # cycle guard
        try:
            tree = parse_one(t.definition, self.facts)
        except Unparsable as e:
            raise AnalysisError(f"cannot parse the definition of view {table}") from e
        if not isinstance(tree, exp.Query):
            raise AnalysisError(f"the definition of view {table} is not a query")
        sub = Analyzer(
            self.schema,
            self.facts,
            (t.schema, *self.facts.default_search_path),
            self.database,
            self.mapping,
            self.view_cache,
            self.depth + 1,
            self.view_tables,
        )
        result = sub.analyse_query(tree)
        # result.tables already holds the tables of the views it reads (see _scope_outputs).
        self.view_tables[table] = frozenset(result.tables)
        self.view_cache[table] = result.outputs
        return result.outputs


# Marks maskgate puts on trees (sqlglot keeps `meta` through copies).
# On a schema identifier that name resolution added, rather than the client.
BOUND = "maskgate_bound"
# On a table name that means a WITH query, as the server scopes WITH queries.
CTE_REF = "maskgate_cte"


def _schema_identifier(schema: str, facts: DialectFacts) -> exp.Identifier:
    """The schema's name as SQL. Names are the server's exact spelling, so any name is quoted
    except the dialect's own well-known schemas (default search path, catalogs, temporary),
    which read back the same bare and keep the SQL a DBA reads in the audit log plain."""
    known = {*facts.default_search_path, *facts.catalog_schemas, facts.temporary_schema}
    ident = exp.to_identifier(schema, quoted=schema not in known)
    ident.meta[BOUND] = True
    return ident


def bound_names(tree: exp.Expression) -> bool:
    """Whether `bind` named any relation of `tree` by its schema."""
    return any((db := t.args.get("db")) is not None and db.meta.get(BOUND) for t in tree.find_all(exp.Table))


def unbind(tree: exp.Expression) -> None:
    """Take out the schemas `bind` added: the statement names its relations as written again."""
    for t in tree.find_all(exp.Table):
        db = t.args.get("db")
        if db is not None and db.meta.get(BOUND):
            t.set("db", None)


def _not_a_relation(table: exp.Table) -> bool:
    """Table nodes that name no relation to resolve: `FOR UPDATE OF alias`, `RENAME TO new`."""
    return isinstance(table.parent, exp.Lock | exp.AlterRename)


def source_position(node: exp.Expression) -> bool:
    """Whether a table sits where rows are read from it: FROM, JOIN, DELETE/MERGE USING, also
    inside a parenthesized join (`FROM (customers c JOIN …)`, whose joins sqlglot hangs off the
    table). A write's target, COPY's table, DDL and LOCK name a relation without reading it."""
    parent = node.parent
    if isinstance(parent, exp.From | exp.Join):
        return True
    if isinstance(parent, exp.Subquery) and node.arg_key == "this" and _joins_wrapper(node):
        return source_position(parent)  # parentheses around a join, at any depth
    return isinstance(parent, exp.Delete | exp.Merge) and node.arg_key == "using"


def _joins_wrapper(node: exp.Expression) -> bool:
    """A table, or parentheses around a join (`(t JOIN u …)`, nested as deep as written), as
    opposed to a subquery (`(SELECT …)`), whose tables are read in a scope of their own."""
    while isinstance(node, exp.Subquery):
        node = node.this
    return isinstance(node, exp.Table)


def _names_cte(table: exp.Table) -> bool:
    """Whether the unqualified `table` means a WITH query, as PostgreSQL scopes them: the WITH
    queries of every query around it are visible, innermost first, except that inside one WITH
    query of a list only the queries before it are (all of them, itself included, with
    RECURSIVE). A name that is no visible WITH query is a relation, even where a WITH query of
    that name is defined later or further in (the server then reads the table)."""
    name = table.name
    child: exp.Expression = table
    node = table.parent
    passed: exp.Expression | None = None
    while node is not None:
        if isinstance(child, exp.CTE):
            passed = child
        with_ = node.args.get("with_")
        if isinstance(with_, exp.With):
            ctes = with_.expressions
            if child is with_ and not with_.args.get("recursive"):
                at = next((i for i, c in enumerate(ctes) if c is passed), len(ctes))
                ctes = ctes[:at]
            if any(c.alias_or_name == name for c in ctes):
                return True
        child, node = node, node.parent
    return False


def _created_temporary(table: exp.Table) -> bool:
    """`CREATE TEMP TABLE t …`, `CREATE TEMP VIEW t …`, `SELECT … INTO TEMP t`: t."""
    target: exp.Expression = table
    if isinstance(table.parent, exp.Schema) and table.arg_key == "this":
        target = table.parent  # CREATE TABLE t (columns …)
    owner = target.parent
    if isinstance(owner, exp.Into):
        return bool(owner.args.get("temporary"))
    if isinstance(owner, exp.Create) and target.arg_key == "this":
        props = owner.args.get("properties")
        return props is not None and any(isinstance(p, exp.TemporaryProperty) for p in props.expressions)
    return False


def _order_recursive(with_: exp.With) -> None:
    """Order the queries of a WITH RECURSIVE list so that each comes after those it reads, as the
    server does before planning (sqlglot's scopes see only earlier ones). A cycle is left as it
    is: the server refuses mutual recursion, and the analysis then refuses the statement."""
    ctes = list(with_.expressions)
    names = {c.alias_or_name for c in ctes}
    deps = {
        id(c): {
            t.name
            for t in c.this.find_all(exp.Table)
            if t.meta.get(CTE_REF) and t.name in names and t.name != c.alias_or_name
        }
        for c in ctes
    }
    ordered: list[exp.CTE] = []
    done: set[str] = set()
    while len(ordered) < len(ctes):
        ready = [c for c in ctes if c not in ordered and deps[id(c)] <= done]
        if not ready:
            return
        ordered.append(ready[0])
        done.add(ready[0].alias_or_name)
    if any(a is not b for a, b in zip(ordered, ctes, strict=True)):
        with_.set("expressions", ordered)


class _QueryWalk:
    """One pass over the scopes of a qualified query."""

    def __init__(self, analyzer: Analyzer, tree: exp.Expression) -> None:
        self.a = analyzer
        self.tree = tree
        self.result = QueryAnalysis(outputs=None)
        self.outputs: dict[int, list[Lineage] | None] = {}
        self.by_expr: dict[int, Scope] = {}
        # Table functions whose arguments are being resolved: an argument cannot mean the
        # function's own output (`FROM pg_sequence, pg_get_sequence_data(seqrelid)`).
        self.resolving: set[int] = set()
        # Recursive CTEs (their set-operation scopes) whose rows their own members read.
        self.recursive: dict[int, Scope] = {}

    def run(self) -> QueryAnalysis:
        scopes = traverse_scope(self.tree)
        if not scopes:
            raise AnalysisError("no query scope found")
        for s in scopes:
            self.by_expr[id(s.expression)] = s
        # Post-order: children before their parents, so outputs are ready when needed.
        for s in scopes:
            self.outputs[id(s)] = self._scope_outputs(s)
        self._settle_recursion(scopes)
        for s in scopes:
            self._collect_uses(s)
        self._collect_functions()
        self.result.outputs = self.outputs[id(scopes[-1])]
        self.result.records_per_row = max(1, self._records(scopes[-1], set()))
        return self.result

    def _records(self, scope: Scope, seen: set[int]) -> int:
        """How many relation rows one row of `scope` may carry (see records_per_row). Catalog
        relations carry no customer records; a recursive reference counts once."""
        if id(scope) in seen:
            return 0
        seen = seen | {id(scope)}
        if scope.set_operation_scopes:
            return max((self._records(s, seen) for s in scope.set_operation_scopes), default=0)
        n = 0
        for _node, source in scope.selected_sources.values():  # what FROM and JOIN read
            if isinstance(source, Scope):
                n += self._records(source, seen)
            elif (
                isinstance(source, exp.Table)
                and isinstance(source.this, exp.Identifier)
                and not self.a.is_catalog(self.a.resolve_table(source))
            ):
                n += 1
        for sub in scope.subquery_scopes:
            # A subquery in the output carries its records into the row; one in WHERE, HAVING,
            # IN or EXISTS only decides which rows come back. A source in FROM that is a LATERAL
            # (SELECT …) or a table function is a scope of its own whose subqueries make its rows:
            # they count whole.
            if scope.is_udtf or _in_projection(sub.expression, scope.expression):
                n += self._records(sub, seen)
        if n and isinstance(scope.expression, exp.Select):
            # Each aggregate or window value in the output may hold another row of what this
            # scope reads, and that row carries n records itself: max(d) FILTER (WHERE id = 7),
            # lead(d, 200) OVER (…), and lead() over a lead() of the level below (which doubles
            # the records per level: a sum would count nine levels as ten, not 512).
            n *= 1 + _carriers(scope.expression)
        return n

    def _settle_recursion(self, scopes: list[Scope]) -> None:
        """A recursive CTE's member reads the CTE's own rows: anchor rows, then rows the member
        made from them, and so on. Its outputs are recomputed until they stop growing, so a
        value the member moves between columns (or feeds back) is traced to every column it
        reaches."""
        if not self.recursive:
            return
        for _ in range(_MAX_RECURSION_PASSES):
            before = [self.outputs.get(id(s)) for s in scopes]
            for s in scopes:
                self.outputs[id(s)] = self._scope_outputs(s)
            if [self.outputs.get(id(s)) for s in scopes] == before:
                return
        raise AnalysisError("the lineage of a recursive query does not settle")

    def _outputs_of(self, source: Scope) -> list[Lineage] | None:
        """A source scope's outputs (None: unknown shape). sqlglot stands a recursive CTE's
        reference to itself in by a scope over its anchor that is never traversed: its rows are
        the whole CTE's (the anchor's until the CTE's own are known; see _settle_recursion)."""
        if id(source) in self.outputs:
            return self.outputs[id(source)]
        anchor = self.by_expr.get(id(source.expression))
        union = anchor.parent if anchor is not None else None
        if anchor is None or union is None or not isinstance(union.expression, exp.SetOperation):
            return None
        self.recursive[id(union)] = union
        outs = self.outputs[id(union)] if id(union) in self.outputs else self.outputs.get(id(anchor))
        if outs is None:
            return None
        # Values that went round the recursion count as computed (as any CTE's could be).
        return [replace(o, derived=True) for o in outs]

    # --- outputs ---------------------------------------------------------------------------

    def _scope_outputs(self, scope: Scope) -> list[Lineage] | None:
        for source in scope.sources.values():
            if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
                if source.meta.get(CTE_REF):
                    # The server reads a WITH query here that sqlglot's scopes do not see.
                    raise AnalysisError(f"cannot follow the WITH query {source.name}")
                table = self.a.resolve_table(source)
                self.result.tables.add(table)
                t = self.a.schema.lookup(table)
                if t is not None and t.is_view:
                    self.a.view_outputs(table)
                    behind = self.a.view_tables.get(table, frozenset())
                    self.result.tables.update(behind)
                    self.result.views[table] = behind
        node = scope.expression
        if isinstance(node, exp.SetOperation):
            return self._union_outputs(scope)
        if isinstance(node, exp.Select):
            outs: list[Lineage] = []
            for projection in node.selects:
                if isinstance(projection, exp.Star) or (
                    isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
                ):
                    # qualify could not expand it: the table is not in the schema.
                    for src in self._star_sources(scope, projection):
                        self.result.unexpanded.add(src)
                    return None
                outs.append(self._lineage_of(projection, scope, projection.alias_or_name))
            return outs
        if isinstance(node, exp.Lateral) and isinstance(node.this, exp.Subquery):
            child = self.by_expr.get(id(node.this.this))
            return self.outputs.get(id(child)) if child else None
        # UDTF scopes (unnest(...), VALUES, table functions): every output derives from every
        # column the expression mentions.
        lin = self._lineage_of(node, scope, "", force_derived=True)
        return [lin]

    def _union_outputs(self, scope: Scope) -> list[Lineage] | None:
        left = self.outputs.get(id(scope.set_operation_scopes[0]))
        right = self.outputs.get(id(scope.set_operation_scopes[1]))
        if left is None or right is None:
            return None
        outs = []
        for i, lo in enumerate(left):
            ro = right[i] if i < len(right) else None
            if ro is None:
                outs.append(lo)
                continue
            outs.append(
                Lineage(
                    lo.name,
                    lo.sources | ro.sources,
                    lo.derived or ro.derived,
                    lo.opaque | ro.opaque,
                )
            )
        return outs

    def _star_sources(self, scope: Scope, star: exp.Expression) -> list[TableName]:
        alias = star.table if isinstance(star, exp.Column) else ""
        out = []
        for name, source in scope.sources.items():
            if alias and name != alias:
                continue
            if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
                out.append(self.a.resolve_table(source))
        return out

    def _lineage_of(
        self, node: exp.Expression, scope: Scope, name: str, force_derived: bool = False
    ) -> Lineage:
        inner = _bare(node.unalias() if isinstance(node, exp.Alias) else node)
        if isinstance(inner, exp.Column) and not isinstance(inner.this, exp.Star) and not force_derived:
            lin = self._resolve_column(inner, scope)
            if lin is not None:
                return Lineage(name, lin.sources, lin.derived, lin.opaque)
        if isinstance(inner, exp.Subquery) and not force_derived:
            child = self.by_expr.get(id(inner.this))
            outs = self.outputs.get(id(child)) if child else None
            if outs:
                first = outs[0]
                return Lineage(name, first.sources, first.derived, first.opaque)
        sources: set[ColumnName] = set()
        opaque: set[TableName] = set()
        for sub in _walk_value(inner):
            if isinstance(sub, exp.TableColumn) or (
                isinstance(sub, exp.Column) and isinstance(sub.this, exp.Star)
            ):
                alias = sub.name if isinstance(sub, exp.TableColumn) else sub.table
                lins = (
                    [self._whole_row(scope, alias)]
                    if alias
                    else [self._whole_row(scope, a) for a in scope.sources]
                )
                for lin in lins:
                    if lin is not None:
                        sources |= lin.sources
                        opaque |= lin.opaque
            elif isinstance(sub, exp.Column):
                lin = self._resolve_column(sub, scope)
                if lin is not None:
                    sources |= lin.sources
                    opaque |= lin.opaque
            elif isinstance(sub, exp.Query | exp.Subquery):
                target = sub.this if isinstance(sub, exp.Subquery) else sub
                child = self.by_expr.get(id(target))
                outs = self.outputs.get(id(child)) if child else None
                for o in outs or ():
                    sources |= o.sources
                    opaque |= o.opaque
        return Lineage(name, frozenset(sources), True, frozenset(opaque))

    # --- column resolution ---------------------------------------------------------------------

    def _find_source(self, scope: Scope, alias: str) -> tuple[Scope, exp.Expression | Scope] | None:
        s: Scope | None = scope
        while s is not None:
            if alias in s.sources:
                return s, s.sources[alias]
            s = s.parent
        return None

    def _source_lineage(self, owner: Scope, source: exp.Expression | Scope, column: str) -> Lineage | None:
        if isinstance(source, Scope):
            outs = self._outputs_of(source)
            if outs is None:
                # Unknown shape (e.g. its * could not be expanded): it may be any of its sources.
                return self._opaque_scope(source)
            key = self.a.facts.column_key(column)
            for o in outs:
                if self.a.facts.column_key(o.name) == key:
                    return o
            if len(outs) == 1 and not outs[0].name:  # UDTF: one anonymous output feeds every name
                return outs[0]
            return None
        if isinstance(source, exp.Table):
            if not isinstance(source.this, exp.Identifier):
                # A table function in FROM (generate_series(...) g): derived from its arguments.
                # When its columns are known (`AS g(n)`, or as qualify names them), only those.
                alias = source.args.get("alias")
                names = [c.name for c in alias.columns] if isinstance(alias, exp.TableAlias) else []
                if names and self.a.facts.column_key(column) not in {
                    self.a.facts.column_key(c) for c in names
                }:
                    return None
                return self._table_function(source, owner, column)
            table = self.a.resolve_table(source)
            t = self.a.schema.lookup(table)
            renamed = _alias_columns(source)
            if t is not None and t.is_view:
                outs = self.a.view_outputs(table)
                if outs is None:
                    return Lineage(column, frozenset(), True, frozenset({table}))
                i = self._visible_index(column, [o.name for o in outs], renamed)
                return outs[i] if i is not None else None
            if t is None:
                if self.a.is_catalog(table) and not self.a.facts.catalog_classified(table.schema, table.name):
                    return Lineage(column, frozenset(), False)
                if renamed:
                    # `unknown AS x(a, b)`: which column `a` is cannot be known.
                    return Lineage(column, frozenset(), True, frozenset({table}))
                return Lineage(column, frozenset({ColumnName(table, column)}), False, frozenset({table}))
            # Exact (folded at parse): "PHONE" is not phone to PostgreSQL. MySQL compares column
            # names case-insensitively (DialectFacts.column_key).
            i = self._visible_index(column, list(t.columns), renamed)
            if i is None:
                return None
            return Lineage(column, frozenset({ColumnName(table, t.columns[i])}), False)
        return None

    def _visible_index(self, column: str, names: list[str], renamed: list[str]) -> int | None:
        """The position of `column` among a relation's columns as its alias shows them:
        `customers AS x(a, id)` renames the first columns by position, so `x.id` is customers'
        second column (name), and customers' own `id` is no longer visible under that name."""
        key = self.a.facts.column_key(column)
        visible = renamed + names[len(renamed) :]
        for i, name in enumerate(visible):
            if self.a.facts.column_key(name) == key:
                return i
        return None

    def _table_function(self, source: exp.Table, owner: Scope, name: str) -> Lineage | None:
        if id(source) in self.resolving:
            return None
        self.resolving.add(id(source))
        try:
            return self._lineage_of(source.this, owner, name, force_derived=True)
        finally:
            self.resolving.discard(id(source))

    def _opaque_scope(self, scope: Scope) -> Lineage:
        sources: set[ColumnName] = set()
        opaque: set[TableName] = set()
        for name, src in scope.sources.items():
            if isinstance(src, exp.Table) and isinstance(src.this, exp.Identifier):
                opaque.add(self.a.resolve_table(src))
            elif isinstance(src, Scope):
                lin = self._whole_row(scope, name)
                if lin is not None:
                    sources |= lin.sources
                    opaque |= lin.opaque
        return Lineage("", frozenset(sources), True, frozenset(opaque))

    def _resolve_column(self, col: exp.Column, scope: Scope) -> Lineage | None:
        name = col.name
        if col.table:
            found = self._find_source(scope, col.table)
            if found is None:
                raise AnalysisError(f"{col.table} is not a relation of this query")
            lin = self._source_lineage(found[0], found[1], name)
            return lin if lin is not None else self._unknown_column(col, scope)
        # Unqualified after qualify: an output alias (ORDER BY), a column qualify could not
        # place, or a bare table alias used as a whole-row value.
        hits: list[Lineage] = []
        s: Scope | None = scope
        while s is not None and not hits:
            if _bare_order_key(col, s):
                # PostgreSQL: a bare name in ORDER BY is an output column before an input one
                # (`SELECT phone AS id … ORDER BY id` sorts by phone).
                hits = self._output_hits(col, s)
                if hits:
                    break
            for src in _selected(s):
                lin = self._source_lineage(s, src, name)
                if lin is not None:
                    hits.append(lin)
            if not hits or all(h.opaque and not h.derived for h in hits):
                # No input column, or only guesses at the columns of relations the schema does
                # not know: the output column may be the one meant.
                hits += self._output_hits(col, s)
            s = s.parent
        if not hits:
            return self._unknown_column(col, scope)
        if len(hits) == 1:
            return hits[0]
        return Lineage(
            name,
            frozenset().union(*(h.sources for h in hits)),
            any(h.derived for h in hits),
            frozenset().union(*(h.opaque for h in hits)),
        )

    def _output_hits(self, col: exp.Column, scope: Scope) -> list[Lineage]:
        """The lineage of the output columns of `scope` named like `col` (an output name used
        in ORDER BY or GROUP BY). An output being traced is skipped: `SELECT a AS b, b AS a`
        would otherwise chase itself."""
        if not isinstance(scope.expression, exp.Select):
            return []
        out = []
        for p in scope.expression.selects:
            if p.alias_or_name != col.name or _inside(col, p) or id(p) in self.resolving:
                continue
            self.resolving.add(id(p))
            try:
                out.append(self._lineage_of(p, scope, col.name))
            finally:
                self.resolving.discard(id(p))
        return out

    def _unknown_column(self, col: exp.Column, scope: Scope) -> Lineage | None:
        """A name that is no column, output name or alias of the relations in reach. PostgreSQL
        rejects such a statement (or, for `t.name`, calls a function name(t) on the whole row),
        unless the schema file is stale; so it is refused rather than taken for an unclassified
        value, which a column the schema does not yet list might well not be. Spelled-out SQL
        values that sqlglot reads as columns (`user`, `current_role`) and system columns (`ctid`,
        `xmin`, …) are values, not data of the relation."""
        name = col.name
        if not (col.this.quoted if isinstance(col.this, exp.Identifier) else False) and (
            name in self.a.facts.keyword_values or name in self.a.facts.system_columns
        ):
            return None
        s: Scope | None = scope
        while s is not None:
            if _selected(s):
                raise AnalysisError(f"column {name} does not exist in {self._sources_text(s)}")
            s = s.parent
        return None

    def _sources_text(self, scope: Scope) -> str:
        names = []
        for alias, (_, src) in scope.selected_sources.items():
            if isinstance(src, exp.Table) and isinstance(src.this, exp.Identifier):
                names.append(str(self.a.resolve_table(src)))
            else:
                names.append(alias)
        return ", ".join(sorted(names))

    def _whole_row(self, scope: Scope, alias: str) -> Lineage | None:
        """Every column of source `alias`, as one derived value (row_to_json(c), c.*, bare c)."""
        found = self._find_source(scope, alias)
        if found is None:
            # `"C".*` where the relation is c: PostgreSQL rejects it; it reads nothing known.
            raise AnalysisError(f"{alias} is not a relation of this query")
        owner, source = found
        if isinstance(source, Scope):
            outs = self._outputs_of(source)
            if outs is None:
                return self._opaque_scope(source)
            return Lineage(
                alias,
                frozenset().union(*(o.sources for o in outs)) if outs else frozenset(),
                True,
                frozenset().union(*(o.opaque for o in outs)) if outs else frozenset(),
            )
        if isinstance(source, exp.Table):
            if not isinstance(source.this, exp.Identifier):
                return self._table_function(source, owner, alias)
            table = self.a.resolve_table(source)
            t = self.a.schema.lookup(table)
            if t is None:
                if self.a.is_catalog(table):
                    return Lineage(alias, frozenset(), True)
                return Lineage(alias, frozenset(), True, frozenset({table}))
            if t.is_view:
                outs = self.a.view_outputs(table) or []
                return Lineage(
                    alias,
                    frozenset().union(*(o.sources for o in outs)) if outs else frozenset(),
                    True,
                    frozenset({table}) if not outs else frozenset(),
                )
            return Lineage(alias, frozenset(ColumnName(table, c) for c in t.columns), True)
        return None

    def _is_whole_row_ref(self, col: exp.Column, scope: Scope) -> bool:
        if isinstance(col.this, exp.Star):
            return True
        if col.table:
            return False
        found = self._find_source(scope, col.name)
        if found is None:
            return False
        # PostgreSQL prefers a real column of that name over the table alias.
        return self._resolve_column_strict(col, scope) is None

    def _resolve_column_strict(self, col: exp.Column, scope: Scope) -> Lineage | None:
        s: Scope | None = scope
        while s is not None:
            for src in _selected(s):
                lin = self._source_lineage(s, src, col.name)
                if lin is not None and lin.sources and not lin.opaque:
                    return lin
            s = s.parent
        return None

    # --- uses ------------------------------------------------------------------------------

    def _collect_uses(self, scope: Scope) -> None:
        root = scope.expression
        if isinstance(root, exp.SetOperation) and root.args.get("order") is not None:
            self._set_operation_order_uses(scope)
        if _deduplicates(root):
            self._set_operation_uses(scope)
        elif isinstance(root, exp.Select) and _distinct_rows(root):
            self._distinct_uses(scope)
        for node in scope.walk():
            if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Column):
                parent = node.parent
                if isinstance(parent, exp.Count) or (isinstance(root, exp.Select) and parent is root):
                    continue
                # `f(*)` other than count: a whole row of every source.
                for alias in scope.sources:
                    self._add_whole_row(scope, alias, node)
                continue
            if isinstance(node, exp.TableColumn):
                # qualify's name for a bare table alias used as a value (row_to_json(c), SELECT c).
                self._add_whole_row(scope, node.name, node)
                continue
            if not isinstance(node, exp.Column):
                continue
            if self._is_whole_row_ref(node, scope):
                alias = node.table if isinstance(node.this, exp.Star) else node.name
                if isinstance(node.this, exp.Star) and not alias:
                    for a in scope.sources:
                        self._add_whole_row(scope, a, node)
                else:
                    self._add_whole_row(scope, alias, node)
                continue
            lin = self._resolve_column(node, scope)
            if lin is None or not (lin.sources or lin.opaque):
                continue
            self._add_use(node, scope, root, lin)
        for sub in scope.subquery_scopes:
            # A subquery's output used as a value here (`(SELECT phone …)::int`, `LIMIT (SELECT …)`,
            # `'1' IN (SELECT phone …)`): a use of the columns it carries, judged at this level.
            target = sub.expression
            if isinstance(target.parent, exp.Subquery):
                target = target.parent
            if isinstance(target.parent, exp.Exists):
                continue  # whether rows exist, not what they hold
            outs = self.outputs.get(id(sub))
            lin = self._opaque_scope(sub) if outs is None else _merge(outs)
            if lin.sources or lin.opaque:
                self._add_use(target, scope, root, lin)

    def _set_operation_uses(self, scope: Scope) -> None:
        """INTERSECT and EXCEPT (with or without ALL) and UNION without ALL compare column i of
        one side with column i of the other: `SELECT '138…' INTERSECT SELECT phone` returns a row
        only if that number exists, and a UNION's row count tells how many values are equal.
        Each side's column is a use like the operand of `=`: eq_literal against a literal or
        parameter written in the other side's projection, eq_column against the other side's
        base columns when neither side is computed, a predicate otherwise (a generated or
        VALUES list of candidates is not a literal: it enumerates)."""
        sides = scope.set_operation_scopes[:2]
        if len(sides) < 2:
            return
        lineages = [self._side_outputs(side) for side in sides]
        op = scope.expression
        via = type(op).__name__.upper() + ("" if op.args.get("distinct") is not False else " ALL")
        width = max(len(lins) for lins in lineages)
        for i in range(width):
            for me, other in ((0, 1), (1, 0)):
                mine = lineages[me][i] if i < len(lineages[me]) else None
                if mine is None or not (mine.sources or mine.opaque):
                    continue
                theirs = lineages[other][i] if i < len(lineages[other]) else None
                node = _projection(sides[me].expression, i)
                partner: frozenset[ColumnName] = frozenset()
                if mine.derived or theirs is None:
                    role = "predicate"
                elif _is_literal(_projection(sides[other].expression, i).unalias()):
                    role = "eq_literal"
                elif theirs.derived or theirs.opaque or not theirs.sources:
                    role = "predicate"
                else:
                    role, partner = "eq_column", theirs.sources
                self.result.uses.append(
                    Use(role, mine.sources, partner, mine.opaque, node, self.a.facts.sqlglot, via=via)
                )

    def _set_operation_order_uses(self, scope: Scope) -> None:
        """The ORDER BY of a set operation sorts its output columns, named by position or by
        name (`… UNION ALL SELECT '5' ORDER BY 1`): the order the rows come back in compares the
        values of the columns it names, a predicate on what they carry from either side."""
        op = scope.expression
        outs = self.outputs.get(id(scope))
        if outs is None:
            lin = self._opaque_scope(scope)
            outs = [Lineage("", lin.sources, True, lin.opaque)]
        names = [o.name.lower() for o in outs]
        for ordered in op.args["order"].expressions:
            key = ordered.this if isinstance(ordered, exp.Ordered) else ordered
            while isinstance(key, exp.Paren):
                key = key.this
            picked: list[Lineage] = []
            if isinstance(key, exp.Literal) and key.is_int:
                k = int(key.name) - 1
                picked = [outs[k]] if 0 <= k < len(outs) else list(outs)
            else:
                wanted = {c.name.lower() for c in key.find_all(exp.Column)}
                picked = [o for o, n in zip(outs, names, strict=True) if n in wanted]
                if wanted and not picked:
                    picked = list(outs)  # a name this analysis does not see: every column
            for lin in picked:
                if lin.sources or lin.opaque:
                    self.result.uses.append(
                        Use(
                            "predicate",
                            lin.sources,
                            frozenset(),
                            lin.opaque,
                            ordered,
                            self.a.facts.sqlglot,
                            via="ORDER BY",
                        )
                    )

    def _side_outputs(self, side: Scope) -> list[Lineage]:
        outs = self.outputs.get(id(side))
        if outs is None:
            # Unknown shape: every column it may carry is compared, with unknown partners.
            lin = self._opaque_scope(side)
            return [Lineage("", lin.sources, True, lin.opaque)]
        return outs

    def _distinct_uses(self, scope: Scope) -> None:
        """SELECT DISTINCT compares every output column between rows: how many rows come back
        tells which values are equal. Each column is a use like `a.x = b.x` (eq_column with
        itself) when it is a base column, a predicate when it is computed (DISTINCT left(phone,
        3) groups by a prefix). DISTINCT ON (…) is judged by its expressions (_PREDICATE_ARGS)."""
        outs = self.outputs.get(id(scope))
        lineages = outs if outs is not None else self._side_outputs(scope)
        select = scope.expression
        for i, lin in enumerate(lineages):
            if not (lin.sources or lin.opaque):
                continue
            derived = lin.derived or bool(lin.opaque)
            self.result.uses.append(
                Use(
                    "predicate" if derived else "eq_column",
                    lin.sources,
                    frozenset() if derived else lin.sources,
                    lin.opaque,
                    _projection(select, i),
                    self.a.facts.sqlglot,
                    via="DISTINCT",
                )
            )

    def _add_use(self, node: exp.Expression, scope: Scope, root: exp.Expression, lin: Lineage) -> None:
        role, partner, unsafe = self._role_of(node, scope, root, lin)
        packs = _packing_aggregate(node, root, lin.derived)
        if packs is not None:
            self.result.collects.append(packs)
        self.result.uses.append(
            Use(
                role,
                lin.sources,
                partner,
                lin.opaque,
                node,
                self.a.facts.sqlglot,
                unsafe,
                candidates=_candidates(node) if role == "eq_literal" else 1,
            )
        )
        distinct = _aggregate_distinct(node, root)
        if distinct is not None:
            # count(DISTINCT phone) compares the values with each other (how many are equal),
            # besides passing them to the aggregate: equality of a column with itself, or a
            # predicate when the compared value is computed (count(DISTINCT left(phone, 3))).
            keys = distinct.expressions
            direct = not lin.derived and len(keys) == 1 and _bare(keys[0]) is node
            self.result.uses.append(
                Use(
                    "eq_column" if direct else "predicate",
                    lin.sources,
                    lin.sources if direct else frozenset(),
                    lin.opaque,
                    distinct.parent or distinct,
                    self.a.facts.sqlglot,
                    via="DISTINCT",
                )
            )

    def _add_whole_row(self, scope: Scope, alias: str, node: exp.Expression) -> None:
        lin = self._whole_row(scope, alias)
        if lin is not None:
            self.result.uses.append(
                Use("whole_row", lin.sources, frozenset(), lin.opaque, node, self.a.facts.sqlglot)
            )

    def _role_of(
        self, col: exp.Expression, scope: Scope, root: exp.Expression, lin: Lineage
    ) -> tuple[str, frozenset[ColumnName], exp.Expression | None]:
        none: frozenset[ColumnName] = frozenset()
        facts = self.a.facts
        child: exp.Expression = col
        node = col.parent
        direct = True  # no function or operator between the column and the comparison
        unsafe: exp.Expression | None = None
        while node is not None and child is not root:
            if _assigns_user_variable(node, child):
                # MySQL's `@v := x`: the value is kept in the session, where a later `SELECT @v`
                # reads it back with no column, so no mask (decide.py refuses non-clear ones).
                return "assigned", none, None
            if isinstance(node, exp.Is) and direct and _is_literal(node.expression):
                return "null_test", none, None
            if isinstance(node, exp.EQ | exp.NullSafeEQ) and direct and not lin.derived:
                other = node.expression if node.this is child else node.this
                other = _bare(other)
                if _is_literal(other):
                    if facts.numbers_compare_loosely and _is_number(other):
                        return "predicate", none, None
                    return "eq_literal", none, None
                if isinstance(other, exp.Column):
                    olin = self._resolve_column(other, scope)
                    return "eq_column", olin.sources if olin else none, None
                return "predicate", none, None
            if isinstance(node, exp.In) and direct and node.this is child and not lin.derived:
                query = node.args.get("query")
                if query is not None:
                    target = query.this if isinstance(query, exp.Subquery) else query
                    sub = self.by_expr.get(id(target))
                    outs = self.outputs.get(id(sub)) if sub else None
                    if outs and len(outs) == 1 and not outs[0].derived:
                        return "eq_column", outs[0].sources, None
                    return "predicate", none, None
                if all(_is_literal(e) for e in node.expressions):
                    if facts.numbers_compare_loosely and any(_is_number(e) for e in node.expressions):
                        return "predicate", none, None
                    return "eq_literal", none, None
                return "predicate", none, None
            if isinstance(node, exp.In) and direct and child is node.args.get("query") and not lin.derived:
                # `x IN (SELECT phone …)` seen from the subquery's side.
                left = _bare(node.this)
                if _is_literal(left):
                    return "eq_literal", none, None
                if isinstance(left, exp.Column):
                    llin = self._resolve_column(left, scope)
                    if llin is not None and not llin.derived:
                        return "eq_column", llin.sources, None
                return "predicate", none, None
            if isinstance(node, _COMPARISONS):
                return "predicate", none, None
            if isinstance(node, _PREDICATE_CLAUSES):
                return "predicate", none, None
            args = _PREDICATE_ARGS.get(type(node))
            if args and child.arg_key in args:
                return "predicate", none, None
            if isinstance(node, _FROM_FUNCTIONS) and not isinstance(child, exp.Query | exp.Subquery):
                return "predicate", none, None  # the argument of a function in FROM
            if (
                isinstance(node, exp.Func)
                and identifiers.function_name(node, facts) in facts.set_returning_functions
            ):
                return "predicate", none, None  # the argument of a set-returning function
            if unsafe is None and node is not root and not _total_step(node, child, facts):
                unsafe = node
            if not isinstance(node, exp.Paren):
                direct = False
            child = node
            node = node.parent
        if child is root and not isinstance(root, exp.Query) and col.parent is not root:
            # The scope itself is a function in FROM (unnest(…) u): its arguments set the rows.
            # (A LATERAL (subquery) is such a scope too, but its subquery's output is a value.)
            return "predicate", none, None
        return "value", none, unsafe

    # --- functions -------------------------------------------------------------------------

    def _collect_functions(self) -> None:
        _collect_functions(self.tree, self.result, self.a.facts)


def _collect_functions(tree: exp.Expression, result: QueryAnalysis, facts: DialectFacts) -> None:
    for node in tree.find_all(exp.Func):
        schema: str | None = None
        if isinstance(node.parent, exp.Dot) and node.parent.expression is node:
            schema = node.parent.this.name if node.parent.this else None
        name = identifiers.function_name(node, facts)
        result.functions.append((schema, name, node))
        if name in facts.collecting_functions:
            # As the dialect spells it (sqlglot's canonical name of string_agg is group_concat).
            written = node.sql(dialect=facts.sqlglot).split("(", 1)[0].strip().lower()
            result.collects.append(f"{written or name}()")
        elif isinstance(node, exp.PercentileDisc | exp.PercentileCont) and not _number(node.this):
            # A fraction array returns one value of the group per fraction: every row, in order.
            result.collects.append(f"{name}() of an array of fractions")
        elif (
            isinstance(node, exp.Array)
            and not node.args.get("value_constructor")
            and any(isinstance(e, exp.Query) for e in node.expressions)
        ):
            result.collects.append("ARRAY(subquery)")
    for with_ in tree.find_all(exp.With):
        if with_.args.get("recursive"):
            result.collects += [
                f"WITH RECURSIVE {c.alias_or_name}" for c in with_.expressions if _accumulates(c)
            ]


def _accumulates(cte: exp.CTE) -> bool:
    """Whether a recursive WITH query carries a value from one of its rows to the next and adds
    data to it on the way (`acc || (SELECT id … OFFSET n LIMIT 1)`, `r.path || c.name`, or the
    same inside a LATERAL that reads the previous row): its last row can then hold every row it
    read. A column that only moves its own value on (`n + 1`), or one computed from the data
    alone, gathers nothing."""
    body = cte.this
    member = body.expression if isinstance(body, exp.SetOperation) else None
    if not isinstance(member, exp.Select):
        return False
    name = cte.alias_or_name
    sources = [member.args["from_"].this] if member.args.get("from_") else []
    sources += [j.this for j in member.args.get("joins") or []]
    sources += list(member.args.get("laterals") or [])
    own = {
        t.alias_or_name
        for t in sources
        if isinstance(t, exp.Table) and t.name == name and t.args.get("db") is None
    }
    if not own:
        return False
    # FROM items computed from the previous row (a correlated LATERAL): their columns carry it on,
    # and add data when they read a relation.
    carriers: dict[str, bool] = {}
    for src in sources:
        if isinstance(src, exp.Table):
            continue
        if any(c.table in own for c in src.find_all(exp.Column)):
            reads = any(t.args.get("db") is not None for t in src.find_all(exp.Table))
            carriers[src.alias_or_name] = reads
    for projection in member.selects:
        direct = [c for c in projection.find_all(exp.Column) if not _under_query(c, projection)]
        carried = any(c.table in own or c.table in carriers for c in direct)
        added = projection.find(exp.Query) is not None or any(
            (c.table not in own and c.table not in carriers) or carriers.get(c.table, False) for c in direct
        )
        if carried and added:
            return True
    return False


def _under_query(node: exp.Expression, top: exp.Expression) -> bool:
    parent = node.parent
    while parent is not None and parent is not top:
        if isinstance(parent, exp.Query):
            return True
        parent = parent.parent
    return False


def _bare_order_key(col: exp.Column, scope: Scope) -> bool:
    """Whether `col` is by itself one ORDER BY key of `scope`'s SELECT (not inside an
    expression, where PostgreSQL reads input columns only)."""
    ordered = col.parent
    while isinstance(ordered, exp.Paren):
        ordered = ordered.parent
    order = ordered.parent if isinstance(ordered, exp.Ordered) else None
    return isinstance(order, exp.Order) and order.parent is scope.expression


def _selected(scope: Scope) -> list[exp.Expression | Scope]:
    """The relations a scope reads in its FROM and JOINs (not every CTE it could name)."""
    return [src for _, src in scope.selected_sources.values()]


def _deduplicates(node: exp.Expression) -> bool:
    """Whether a set operation compares its sides' rows: INTERSECT and EXCEPT always (ALL too:
    they still match rows), UNION unless ALL. UNION ALL only concatenates."""
    if isinstance(node, exp.Intersect | exp.Except):
        return True
    return isinstance(node, exp.Union) and node.args.get("distinct") is not False


def _aggregate_distinct(node: exp.Expression, root: exp.Expression) -> exp.Distinct | None:
    """The aggregate DISTINCT (`count(DISTINCT …)`) whose compared expressions hold `node`."""
    child, parent = node, node.parent
    while parent is not None and child is not root and not isinstance(child, exp.Query):
        if isinstance(parent, exp.Distinct) and child.arg_key == "expressions":
            return parent
        child, parent = parent, parent.parent
    return None


def _distinct_rows(select: exp.Select) -> bool:
    """SELECT DISTINCT (not DISTINCT ON, whose expressions are uses of their own)."""
    distinct = select.args.get("distinct")
    return distinct is not None and not distinct.args.get("on")


def _projection(query: exp.Expression, i: int) -> exp.Expression:
    """The i-th output expression of a SELECT, or the query itself (nested set operation, VALUES)."""
    if isinstance(query, exp.Select) and i < len(query.selects):
        return query.selects[i]
    return query


def _merge(outs: list[Lineage]) -> Lineage:
    """Every output of a scope as one value (a subquery used as an expression)."""
    return Lineage(
        "",
        frozenset().union(*(o.sources for o in outs)) if outs else frozenset(),
        any(o.derived for o in outs),
        frozenset().union(*(o.opaque for o in outs)) if outs else frozenset(),
    )


def _inside(node: exp.Expression, ancestor: exp.Expression) -> bool:
    n: exp.Expression | None = node
    while n is not None:
        if n is ancestor:
            return True
        n = n.parent
    return False


def _walk_value(node: exp.Expression) -> Iterable[exp.Expression]:
    """Nodes that feed a value, skipping count() (its result says nothing about the values) and
    not entering subqueries (their outputs are taken from their own scope)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, exp.Count) or (isinstance(n, exp.Filter) and isinstance(n.this, exp.Count)):
            continue
        yield n
        if isinstance(n, exp.Query | exp.Subquery) and n is not node:
            continue
        if isinstance(n, exp.Subquery) and n is node:
            continue
        stack.extend(n.iter_expressions())


def _alias_columns(source: exp.Table) -> list[str]:
    """The column names an alias gives a table (`AS x(a, b)`), in order; empty when none."""
    alias = source.args.get("alias")
    if not isinstance(alias, exp.TableAlias):
        return []
    return [c.name for c in alias.columns]


# Aggregates whose value is one row's value or a count, whatever they are given: a computed
# argument cannot pack many rows into them. Any other aggregate (sum, avg, bit_or, …) can:
# sum(d * 1000 ^ id) holds every row's d.
_SELECTING = (
    exp.Count,
    exp.Min,
    exp.Max,
    exp.AnyValue,
    exp.LogicalAnd,
    exp.LogicalOr,
    exp.Mode,
    exp.PercentileDisc,
    exp.PercentileCont,
    exp.Lead,
    exp.Lag,
    exp.FirstValue,
    exp.LastValue,
    exp.NthValue,
)
# Between a column and its aggregate, these change no row's value into another's.
_PLAIN = (exp.Paren, exp.Cast, exp.TryCast, exp.Distinct)


def _number(node: exp.Expression | None) -> bool:
    while isinstance(node, exp.Paren | exp.Neg):
        node = node.this
    return isinstance(node, exp.Literal) and node.is_number


def _packing_aggregate(col: exp.Expression, root: exp.Expression, derived: bool) -> str | None:
    """The aggregate that accumulates a computed value of `col` (`sum(d * power(1000, id))`, or
    sum(y) of a y computed below), which can then hold many rows' values in one: its name, or
    None. Selecting aggregates (max, count, …) and plain columns are fine."""
    node, computed = col.parent, derived
    while node is not None and node is not root and not isinstance(node, exp.Query):
        if isinstance(node, exp.AggFunc):
            if isinstance(node, _SELECTING) or not computed:
                return None
            return f"{node.sql_name().lower()}() over a computed value"
        if not isinstance(node, _PLAIN):
            computed = True
        node = node.parent
    return None


def _carriers(select: exp.Select) -> int:
    """How many aggregate and window values the output of `select` holds (not those of its
    subqueries, which count as their own scopes)."""
    n = 0
    for e in select.expressions:
        for node in e.walk(prune=lambda x: isinstance(x, exp.Query)):
            if isinstance(node, exp.Window) or (
                isinstance(node, exp.AggFunc)
                and not isinstance(node, exp.Count)  # a count is no row's value
                and not isinstance(node.parent, exp.Window)
            ):
                n += 1
    return n


def _candidates(col: exp.Expression) -> int:
    """How many values the comparison `col` is an operand of tests it against: the length of an
    IN list, else one (the comparison _role_of found: the first = or IN above the column)."""
    node = col.parent
    while node is not None and not isinstance(node, exp.In | exp.EQ | exp.NullSafeEQ):
        node = node.parent
    if isinstance(node, exp.In) and node.args.get("query") is None:
        return max(1, len(node.expressions))
    return 1


def _in_projection(node: exp.Expression, root: exp.Expression) -> bool:
    """Whether `node` sits in the output columns of the query `root`."""
    while node is not None and node is not root:
        if node.parent is root:
            return node.arg_key == "expressions"
        node = node.parent
    return False
