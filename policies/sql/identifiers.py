"""Identifiers folded once, the way the server resolves names.

Owns: folding every identifier of a parsed statement with its dialect's rule (sqlglot's
`normalize_identifiers`, which calls `Dialect.normalize_identifier`: PostgreSQL folds unquoted
names to lower case and keeps quoted ones; MySQL keeps table names as written and compares column
names case-insensitively, which is folded on top), function names, search paths named in SET or
USE, and the sqlglot schema mapping built from the schema file, whose names are exact (the
server's own spelling: a quoted "Customers" is not customers). After this pass every comparison of
names in policies/sql/ is plain equality. Never parses statements nor judges.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.schema import MappingSchema

from policies.schema import Schema
from policies.sql.dialects import DialectFacts
from policies.sql.nodes import Node, Statement


def normalize(tree: Statement, facts: DialectFacts) -> Statement:
    """Fold the identifiers of `tree` in place (a node's expressions and inner statements too)."""
    if isinstance(tree, Node):
        for child in tree.expressions():
            normalize(child, facts)
        return tree
    if isinstance(tree, exp.Copy):
        # sqlglot keeps COPY's STDOUT / STDIN / PROGRAM as identifiers; they are keywords.
        for dest in tree.args.get("files") or []:
            if isinstance(dest, exp.Identifier) and not dest.quoted:
                dest.meta["case_sensitive"] = True
    normalize_identifiers(tree, dialect=facts.sqlglot)
    if facts.case_insensitive_columns:
        _fold_column_names(tree, facts)
    return tree


def _column_name(node: exp.Identifier) -> bool:
    parent = node.parent
    key = node.arg_key
    return (
        (isinstance(parent, exp.Column) and key == "this")
        or (isinstance(parent, exp.Alias) and key == "alias")
        or (isinstance(parent, exp.TableAlias) and key == "columns")
        or (isinstance(parent, exp.Schema) and key == "expressions")
        or (isinstance(parent, exp.ColumnDef) and key == "this")
    )


def _fold_column_names(tree: exp.Expression, facts: DialectFacts) -> None:
    for node in tree.find_all(exp.Identifier):
        if _column_name(node):
            node.set("this", facts.column_key(node.this))


def function_name(node: exp.Func, facts: DialectFacts) -> str:
    """A function's name as the server looks it up: sqlglot's canonical name for the functions it
    types (their names are unquoted), the folded name for the others."""
    if isinstance(node, exp.Anonymous):
        this = node.this
        if isinstance(this, exp.Identifier):
            return facts.fold_function(this.this, this.quoted)
        return facts.fold_function(str(this), quoted=False)
    return node.sql_name().lower()


def search_path(values: Iterable[exp.Expression], facts: DialectFacts) -> tuple[str, ...]:
    """The schemas a SET search_path (or MySQL's USE) names. A bare word folds; a quoted name and
    a string keep their case (PostgreSQL quotes a string element as an identifier: `SET
    search_path = 'Sales'` reads "Sales")."""
    out: list[str] = []
    for v in values:
        if isinstance(v, exp.Var):
            out.append(facts.fold_identifier(v.name, quoted=False))
        elif isinstance(v, exp.Identifier):
            out.append(facts.fold_identifier(v.name, quoted=v.quoted))
        elif isinstance(v, exp.Literal):
            out.append(v.name)
    return tuple(p for p in out if p)


def mapping(schema: Schema, facts: DialectFacts) -> MappingSchema:
    """The schema as sqlglot's qualify reads it. Names are the server's own spelling, so sqlglot
    must not fold them again (`normalize=False`); only MySQL's column names compare folded."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for (s, n), t in schema.tables.items():
        types = t.types or ("text",) * len(t.columns)
        out.setdefault(s, {})[n] = {
            facts.column_key(c): (ty or "text") for c, ty in zip(t.columns, types, strict=False)
        }
    return MappingSchema(out, dialect=facts.sqlglot, normalize=False)
