"""The live-PostgreSQL schema loader: tables, columns in order, views and functions.

Owns the catalog queries and turning their rows into a `policies.schema.Schema` (which owns the
data model and its JSON file form). Must not touch sessions or the wire: the guard calls it from
worker threads (start-up, after DDL, on the refresh timer), and the policy commands for
`--schema DSN`. psycopg is imported lazily, so nothing else pays for it.

Besides the user's relations it reads the columns of the catalog relations the dialect facts
classify or filter (pg_stat_activity, pg_stats) and every function's volatility (pg_catalog's
included).
`python -m proxy.pg.catalog DSN` prints policies/sql/postgres_functions.py from a server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from policies.schema import Schema, Table
from policies.sql.dialects import POSTGRES

_RELKINDS = {"r": "table", "p": "table", "v": "view", "m": "matview", "f": "foreign"}
_VOLATILITY = {"i": "immutable", "s": "stable", "v": "volatile"}

# A view an extension installed (pg_stat_statements) is read as a relation of its own, without
# its definition: it is built over the extension's C functions, which lineage cannot see into,
# and the dialect facts classify its columns by the view's name.
_PG_COLUMNS = """
SELECT n.nspname, c.relname, c.relkind,
       CASE WHEN c.relkind IN ('v', 'm') AND NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_depend d
                WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
            THEN pg_catalog.pg_get_viewdef(c.oid, true) END,
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

# The catalog relations whose columns the schema must know so lineage reaches them.
_PG_CATALOG_COLUMNS = """
SELECT n.nspname, c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname || '.' || c.relname = ANY(%s)
ORDER BY n.nspname, c.relname, a.attnum
"""

# Every function by (schema, name), with the most volatile class among its overloads ('i' < 's'
# < 'v'). Temporary schemas hold the functions of one session only.
_PG_FUNCTIONS = """
SELECT n.nspname, p.proname, max(p.provolatile::text)
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT LIKE 'pg_temp_%' AND n.nspname NOT LIKE 'pg_toast%'
GROUP BY n.nspname, p.proname
"""


def is_dsn(source: str) -> bool:
    """Whether `source` is a libpq connection string (URI or `key=value` form) rather than a file."""
    return source.startswith(("postgresql://", "postgres://")) or (
        "=" in source and not Path(source).exists()
    )


def load_schema(conn_or_dsn: Any) -> Schema:
    """Read tables, columns (in order), views, the catalog relations the dialect classifies and
    every function's volatility, of the connection's database."""
    import psycopg  # imported here: only schema loads need it

    own = isinstance(conn_or_dsn, str)
    conn = psycopg.connect(conn_or_dsn) if own else conn_or_dsn
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            database = cur.fetchone()[0]
            cur.execute(_PG_COLUMNS)
            rows = cur.fetchall()
            cur.execute(_PG_CATALOG_COLUMNS, ([f"{s}.{n}" for s, n in POSTGRES.catalog_relations],))
            catalog_rows = cur.fetchall()
            cur.execute(_PG_FUNCTIONS)
            funcs = cur.fetchall()
    finally:
        if own:
            conn.close()
    rows += [(s, n, "v", None, col, typ) for s, n, col, typ in catalog_rows]
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
    functions = frozenset((s.lower(), n.lower()) for s, n, _ in funcs if s not in POSTGRES.catalog_schemas)
    volatility = {(s, n): _VOLATILITY.get(v, "volatile") for s, n, v in funcs}
    return Schema(database, "postgres", tables, functions, volatility)


def builtin_functions_source(conn_or_dsn: Any) -> str:
    """The text of policies/sql/postgres_functions.py: the volatility of every function of the
    server's catalog schemas, for schemas saved without function data."""
    import psycopg

    own = isinstance(conn_or_dsn, str)
    conn = psycopg.connect(conn_or_dsn) if own else conn_or_dsn
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0].split()[0]
            cur.execute(_PG_FUNCTIONS)
            funcs = cur.fetchall()
    finally:
        if own:
            conn.close()
    by: dict[str, dict[str, list[str]]] = {}
    for schema, name, v in sorted(funcs):
        if schema in POSTGRES.catalog_schemas:
            by.setdefault(schema, {}).setdefault(_VOLATILITY.get(v, "volatile"), []).append(name)
    lines = [
        f'"""The built-in functions of PostgreSQL {version} by volatility (the most volatile class of',
        "each name's overloads), read from its catalog schemas. The judge uses them for schemas saved",
        "without function data; a schema loaded from a live database carries its own.",
        "",
        "Generated: `python -m proxy.pg.catalog DSN > policies/sql/postgres_functions.py`.",
        '"""',
        "",
        f'SERVER_VERSION = "{version}"',
        "",
        "# schema -> volatility -> names separated by white space",
        "FUNCTIONS = {",
    ]
    for schema in sorted(by):
        lines.append(f'    "{schema}": {{')
        for v in ("immutable", "stable", "volatile"):
            names = by[schema].get(v, [])
            lines.append(f'        "{v}": """')
            row = ""
            for n in names:
                if row and len(row) + 1 + len(n) > 100:
                    lines.append(row)
                    row = ""
                row = f"{row} {n}" if row else n
            if row:
                lines.append(row)
            lines.append('""",')
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _clean_view(definition: str | None) -> str | None:
    if definition is None:
        return None
    return definition.strip().rstrip(";").strip() or None


if __name__ == "__main__":
    import sys

    sys.stdout.write(builtin_functions_source(sys.argv[1]))
