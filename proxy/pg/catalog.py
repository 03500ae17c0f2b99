"""The live-PostgreSQL schema loader: tables, columns in order, views and user functions.

Owns the catalog queries and turning their rows into a `policies.schema.Schema` (which owns the
data model and its JSON file form). Must not touch sessions or the wire: the guard calls it from
worker threads (start-up, after DDL, on the refresh timer), and the policy commands for
`--schema DSN`. psycopg is imported lazily, so nothing else pays for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from policies.schema import Schema, Table

_RELKINDS = {"r": "table", "p": "table", "v": "view", "m": "matview", "f": "foreign"}

_PG_COLUMNS = """
SELECT n.nspname, c.relname, c.relkind,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid, true) END,
       a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a
       ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  AND n.nspname NOT LIKE 'pg_temp_%' AND n.nspname NOT LIKE 'pg_toast_temp_%'
ORDER BY n.nspname, c.relname, a.attnum
"""

_PG_FUNCTIONS = """
SELECT n.nspname, p.proname
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
"""


def is_dsn(source: str) -> bool:
    """Whether `source` is a libpq connection string (URI or `key=value` form) rather than a file."""
    return source.startswith(("postgresql://", "postgres://")) or (
        "=" in source and not Path(source).exists()
    )


def load_schema(conn_or_dsn: Any) -> Schema:
    """Read tables, columns (in order), views and user functions of the connection's database."""
    import psycopg  # imported here: only schema loads need it

    own = isinstance(conn_or_dsn, str)
    conn = psycopg.connect(conn_or_dsn) if own else conn_or_dsn
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            database = cur.fetchone()[0]
            cur.execute(_PG_COLUMNS)
            rows = cur.fetchall()
            cur.execute(_PG_FUNCTIONS)
            funcs = cur.fetchall()
    finally:
        if own:
            conn.close()
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for schema, name, relkind, definition, column, typ in rows:
        entry = grouped.setdefault(
            (schema, name),
            {"kind": _RELKINDS.get(relkind, "table"), "definition": definition, "cols": [], "types": []},
        )
        if column is not None:
            entry["cols"].append(column)
            entry["types"].append(typ)
    tables = {
        key: Table(
            key[0], key[1], tuple(e["cols"]), tuple(e["types"]), e["kind"], _clean_view(e["definition"])
        )
        for key, e in grouped.items()
    }
    functions = frozenset((s.lower(), n.lower()) for s, n in funcs)
    return Schema(database, "postgres", tables, functions)


def _clean_view(definition: str | None) -> str | None:
    if definition is None:
        return None
    return definition.strip().rstrip(";").strip() or None
