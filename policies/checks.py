"""Checks of a policy against a database schema that loading alone cannot make.

Owns the errors `maskgate check --schema` reports as errors (the policy would break or mislead
once deployed), as plain strings. Pure: the schema is handed in.
"""

from __future__ import annotations

from sqlglot import exp

from policies.model import Policy
from policies.names import TableName, table_matches
from policies.schema import Schema
from policies.sql.dialects import POSTGRES


def _filter_columns(expression: exp.Expression) -> set[str]:
    """The columns a row filter reads from its own table (not those of its subqueries), folded
    as PostgreSQL folds them."""
    out = set()
    for col in expression.find_all(exp.Column):
        if col.table or col.find_ancestor(exp.Query) is not None:
            continue
        ident = col.this
        quoted = isinstance(ident, exp.Identifier) and bool(ident.args.get("quoted"))
        out.add(POSTGRES.fold_identifier(col.name, quoted=quoted))
    return out


def row_filter_errors(policy: Policy, schema: Schema) -> list[str]:
    """Row filters that name a column their table does not have: PostgreSQL would refuse every
    statement on that table for the role (or, with a same-named column elsewhere in a join,
    filter on the wrong one)."""
    out: list[str] = []
    default = POSTGRES.default_schema
    for role in sorted(policy.roles.values(), key=lambda r: r.name):
        for f in role.row_filters:
            wanted = _filter_columns(f.expression)
            for t in sorted(schema.tables.values(), key=lambda t: (t.schema, t.name)):
                if not table_matches(f.pattern, TableName(schema.database, t.schema, t.name), default):
                    continue
                missing = sorted(wanted - set(t.columns))
                if missing:
                    out.append(
                        f"role {role.name}: row filter `{f.sql}` names {', '.join(missing)}, which "
                        f"{t.schema}.{t.name} does not have"
                    )
    return out
