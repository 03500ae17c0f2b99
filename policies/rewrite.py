"""AST rewrites of an allowed statement: schema-qualified relations, row filters and the row limit.

Owns: naming every relation by the schema it was resolved to for restricted roles (the names
`Analyzer.bind` put on the tree), wrapping every read of a row-filtered table in a filtered
derived table (alias kept), ANDing filters into UPDATE/DELETE targets, and adding or tightening
LIMIT to max_rows+1 (one more than the client may see, so the proxy can tell that it truncated),
keeping a smaller limit of the client's own.
Rewrites the statement inside an EXPLAIN, PREPARE or DECLARE in place and renders the whole tree,
wrapper included; never edits SQL text.
"""

from __future__ import annotations

from dataclasses import replace

from sqlglot import exp

from policies.model import Role
from policies.sql import nodes
from policies.sql.analysis import CTE_REF, Analyzer, bound_names, source_position, unbind
from policies.sql.describe import Described
from policies.sql.nodes import Statement

WRAP_ALIAS = "_maskgate"


def _filter_for(role: Role, analyzer: Analyzer, table: exp.Table) -> exp.Expression | None:
    if not isinstance(table.this, exp.Identifier) or table.meta.get(CTE_REF):
        return None
    name = analyzer.resolve_table(table)
    filters = role.row_filters_for(name, analyzer.facts.default_schema)
    if not filters:
        return None
    cond: exp.Expression | None = None
    for f in filters:
        e = exp.paren(f.expression.copy(), copy=False)
        # The filter's own relations are the ones its author named, at the default search_path:
        # bound before it joins the statement, they can neither follow the session's search_path
        # nor be taken for one of the statement's WITH queries.
        analyzer.at_default_path().bind(e)
        cond = e if cond is None else exp.and_(cond, e, copy=False)
    return cond


def _qualify_filter(cond: exp.Expression, alias: str) -> exp.Expression:
    """Prefix the filter's own columns (not those of its subqueries) with the target's alias."""

    def fix(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.find_ancestor(exp.Query) is None:
            return exp.column(node.this.copy(), table=alias)
        return node

    return cond.transform(fix, copy=True)


def apply_row_filters(tree: exp.Expression, role: Role, analyzer: Analyzer) -> exp.Expression:
    """A filtered copy of `tree`, or `tree` itself when no filter applies."""
    if not role.row_filters:
        return tree
    if not _filtered(tree, role, analyzer):
        return tree
    targets: set[int] = set()
    for write in [tree, *tree.find_all(exp.Update, exp.Delete, exp.Insert, exp.Merge)]:
        if isinstance(write, exp.Update | exp.Delete | exp.Insert | exp.Merge) and write.this is not None:
            t = write.this.this if isinstance(write.this, exp.Schema) else write.this
            targets.add(id(t))

    # Every read of a filtered table becomes a filtered derived table under the same alias. The
    # tables are collected first, so the filters' own subqueries are never wrapped again.
    reads = [
        t
        for t in tree.find_all(exp.Table)
        if id(t) not in targets and source_position(t) and not t.meta.get(CTE_REF)
    ]
    unqualified: list[tuple[str, str, str]] = []  # (catalog, db, name) of wrapped unaliased tables
    for node in reads:
        cond = _filter_for(role, analyzer, node)
        if cond is None:
            continue
        alias = node.args.get("alias")
        # In a parenthesized join the joins hang off the table: they stay outside the filter.
        joins = node.args.get("joins")
        bare = node.copy()
        bare.set("alias", None)
        bare.set("joins", None)
        inner = exp.Select(expressions=[exp.Star()]).from_(bare, copy=False).where(cond, copy=False)
        new_alias = alias.copy() if alias is not None else exp.TableAlias(this=exp.to_identifier(node.name))
        wrapped = exp.Subquery(this=inner, alias=new_alias)
        if alias is None and node.args.get("db") is not None:
            unqualified.append((node.text("catalog"), node.text("db"), node.name))
        node.replace(wrapped)
        if joins:
            wrapped.set("joins", joins)
    # `crm.customers.phone` named the table the derived table replaced; the derived table is
    # `customers` alone, so such references keep their column and table, not their schema.
    if unqualified:
        for col in tree.find_all(exp.Column):
            if col.args.get("db") is None:
                continue
            key = (col.text("catalog"), col.text("db"), col.table)
            if key in unqualified:
                col.set("db", None)
                col.set("catalog", None)

    # The statement's own UPDATE / DELETE and those in its WITH queries (MERGE's WHEN actions
    # have no target of their own: a MERGE into a filtered table is refused).
    writes = [tree] if isinstance(tree, exp.Update | exp.Delete) else []
    writes += [w for w in tree.find_all(exp.Update, exp.Delete) if w is not tree]
    for write in writes:
        target = write.this
        if isinstance(target, exp.Table):
            cond = _filter_for(role, analyzer, target)
            if cond is not None:
                alias = target.alias or target.name
                cond = _qualify_filter(cond, alias)
                where = write.args.get("where")
                new = (
                    exp.and_(exp.paren(where.this, copy=False), cond, copy=False)
                    if where is not None
                    else cond
                )
                write.set("where", exp.Where(this=new))
    if isinstance(tree, exp.Copy):
        this = tree.this
        cols: list[exp.Expression] = []
        table = this
        if isinstance(this, exp.Schema):
            table, cols = this.this, [exp.column(i.copy()) for i in this.expressions]
        if isinstance(table, exp.Table):
            cond = _filter_for(role, analyzer, table)
            if cond is not None:
                inner = (
                    exp.Select(expressions=cols or [exp.Star()]).from_(table.copy()).where(cond, copy=False)
                )
                tree.set("this", exp.Subquery(this=inner))
    return tree


def _filtered(tree: exp.Expression, role: Role, analyzer: Analyzer) -> bool:
    tables = (t for t in tree.find_all(exp.Table) if isinstance(t.this, exp.Identifier))
    return any(
        role.row_filters_for(analyzer.resolve_table(t), analyzer.facts.default_schema)
        for t in tables
        if not t.meta.get(CTE_REF)
    )


def _literal_int(node: exp.Expression | None) -> int | None:
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return int(node.this)
        except ValueError:
            return None
    return None


def _count_node(limit: exp.Expression) -> exp.Expression | None:
    """The row count a LIMIT or FETCH clause gives, as written (None: FETCH FIRST ROW ONLY)."""
    return limit.args.get("count") if isinstance(limit, exp.Fetch) else limit.expression


def _no_bound(count: exp.Expression | None) -> bool:
    """LIMIT ALL and LIMIT NULL: PostgreSQL reads both as no limit at all."""
    return isinstance(count, exp.Null) or (isinstance(count, exp.Var) and count.name.upper() == "ALL")


def bounded_count(limit: exp.Expression | None, n: int, expressions: bool = True) -> exp.Expression | None:
    """The count that takes the place of `limit`'s so that the statement returns at most n rows
    and never more than its own limit asked for; None when `limit` already does.

    A literal count at most n is kept as it is; a larger one, a missing one, LIMIT ALL and
    LIMIT NULL become n. A count the proxy cannot read (LIMIT $1, LIMIT 2 + 3, LIMIT (SELECT …))
    becomes LEAST(CAST(count AS bigint), n): the server computes the smaller of the two, so the
    client's limit still holds whatever its value. The cast keeps the type PostgreSQL infers for
    a parameter in LIMIT (bigint) and rounds a fraction as LIMIT does; LEAST ignores a NULL, which
    LIMIT reads as no limit; a negative count stays negative and the server refuses it as it would
    without us. Refusing such statements instead would break every driver and ORM that sends
    its LIMIT as a parameter, and wrapping the query in `SELECT * FROM (…) LIMIT n` would lose
    its ORDER BY guarantee and its row locks. Without `expressions` (MySQL, whose LIMIT takes
    literals and placeholders only) such a count is left to _limit_query, which wraps."""
    if limit is None:
        return exp.Literal.number(n)
    count = _count_node(limit)
    if isinstance(limit, exp.Fetch) and count is None:
        return None  # FETCH FIRST ROW ONLY: one row
    value = _literal_int(count)
    if value is not None:
        return None if value <= n else exp.Literal.number(n)
    if count is None or _no_bound(count):
        return exp.Literal.number(n)
    if not expressions:
        return None
    return exp.Least(this=exp.cast(count, "BIGINT"), expressions=[exp.Literal.number(n)])


def needs_limit(query: exp.Expression, n: int) -> bool:
    """Whether `query` (or the query a COPY reads) may return more than n rows as written."""
    if isinstance(query, exp.Copy):
        inner = query.this
        return not isinstance(inner, exp.Subquery) or needs_limit(inner.this, n)
    if not isinstance(query, exp.Query):
        return False
    return bounded_count(query.args.get("limit"), n) is not None


def _limit_query(query: exp.Expression, n: int, expressions: bool = True) -> exp.Expression:
    """Bound the query's own limit to n (bounded_count). Where LIMIT takes no expression, a
    count that is not a literal (MySQL's `LIMIT ?`) is kept and the whole query bounded."""
    limit = query.args.get("limit")
    count = bounded_count(limit, n, expressions)
    if count is None:
        if limit is None or bounded_count(limit, n) is None:
            return query
        wrapped = exp.Select(expressions=[exp.Star()]).from_(
            exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier(WRAP_ALIAS)))
        )
        wrapped.set("limit", exp.Limit(expression=exp.Literal.number(n)))
        return wrapped
    if limit is None:
        query.set("limit", exp.Limit(expression=count))
    elif isinstance(limit, exp.Fetch):
        limit.set("count", count)
    else:
        limit.set("expression", count)
    return query


def apply_limit(tree: exp.Expression, max_rows: int, expressions: bool = True) -> exp.Expression:
    """Bound the rows `tree` returns to max_rows+1, keeping any smaller limit of its own: the
    statement's top-level limit (of a set operation too; a subquery's or a WITH query's limit is
    not the statement's), or the query a COPY reads."""
    n = max_rows + 1
    if isinstance(tree, exp.Copy):
        this = tree.this
        if isinstance(this, exp.Subquery):
            this.set("this", _limit_query(this.this, n, expressions))
            return tree
        cols: list[exp.Expression] = []
        table = this
        if isinstance(this, exp.Schema):
            table, cols = this.this, [exp.column(i.copy()) for i in this.expressions]
        inner = exp.Select(expressions=cols or [exp.Star()]).from_(table.copy())
        inner.set("limit", exp.Limit(expression=exp.Literal.number(n)))
        tree.set("this", exp.Subquery(this=inner))
        return tree
    if isinstance(tree, exp.Query):
        return _limit_query(tree, n, expressions)
    return tree


def rewrite(
    d: Described, role: Role, analyzer: Analyzer, row_limit: int | None = -1, qualify: bool = True
) -> str | None:
    """The SQL to send upstream, or None when the statement goes as written.

    `row_limit` is the decision's limit (None: unlimited); by default the role's max_rows.
    `qualify`: name every relation by the schema it was resolved to (restricted roles), so the
    server reads the relations that were judged whatever its search_path; otherwise relations
    stay named as the client wrote them."""
    max_rows = role.max_rows if row_limit == -1 else row_limit
    statement = d.tree
    d.tree = None  # consumed
    if statement is None:
        return None
    # d.tree was parsed for this decision alone (analysis works on its own copy), so it is
    # rewritten in place: copying sqlglot trees costs more than the whole analysis. Trees the
    # describer saw are bound already; a shape's sentinel tree is bound here.
    for part in nodes.sqlglot_trees(statement):
        analyzer.bind(part)
    changed = False
    tree = _inner(statement)
    if tree is not None:
        if role.row_filters and _filtered(tree, role, analyzer):
            tree = apply_row_filters(tree, role, analyzer)
            changed = True
        if d.limit_rows and max_rows is not None and needs_limit(tree, max_rows + 1):
            tree = apply_limit(tree, max_rows, analyzer.facts.expression_limits)
            changed = True
        statement = _rewrapped(statement, tree)
    named = any(bound_names(part) for part in nodes.sqlglot_trees(statement))
    if qualify:
        changed = changed or named
    elif changed and named:
        for part in nodes.sqlglot_trees(statement):
            unbind(part)
    if not changed:
        return None
    return nodes.render(statement, analyzer.facts.sqlglot)


def _inner(statement: Statement | None) -> exp.Expression | None:
    """The sqlglot statement row filters and the row limit apply to: the statement itself, or
    the one an EXPLAIN, PREPARE or DECLARE … CURSOR wraps."""
    if isinstance(statement, nodes.Explain | nodes.Prepare | nodes.Cursor):
        return _inner(statement.statement)
    return statement if isinstance(statement, exp.Expression) else None


def _rewrapped(statement: Statement, tree: exp.Expression) -> Statement:
    wrapper = nodes.Explain | nodes.Prepare | nodes.Cursor
    if isinstance(statement, wrapper) and statement.statement is not None:
        return replace(statement, statement=_rewrapped(statement.statement, tree))
    return tree
