"""The live-PostgreSQL schema loader: tables, columns in order, views, functions, database roles.

Owns the catalog queries and turning their rows into a `policies.schema.Schema` (which owns the
data model and its JSON file form). Must not touch sessions or the wire: the guard calls it from
worker threads (start-up, after DDL, on the refresh timer), and the policy commands for
`--schema DSN`. psycopg is imported lazily, so nothing else pays for it.

Besides the user's relations it reads the columns of the catalog relations the dialect facts
classify or filter (pg_stat_activity, pg_stats) and every function's volatility (pg_catalog's
included); for `maskgate check`, the attributes and write grants of database roles.
`SchemaLoader` is what `maskgate serve` loads schemas with: with discovery on, each load also
samples column values (proxy/pg/sampling.py) within a time bound and records the columns the
detectors fire on. `python -m proxy.pg.catalog DSN` prints policies/sql/postgres_functions.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from policies.schema import DatabaseRole, Schema, Table
from policies.sql.dialects import POSTGRES
from proxy.services.discovery import RESAMPLE_S as RESAMPLE_S  # the loader's, named here too
from proxy.services.discovery import DiscoveringLoader

from .sampling import sample, sampled_columns

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


_PG_ROLES = """
SELECT rolname, rolsuper, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)
"""

# Writes a role holds in the connection's database, however granted (directly, through a role it
# belongs to, to PUBLIC; an owner holds them all). INSERT and UPDATE count column grants too.
_PG_ROLE_WRITES = """
SELECT r.rolname, p.priv, n.nspname || '.' || c.relname
FROM pg_catalog.pg_roles r
CROSS JOIN pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p(priv)
WHERE r.rolname = ANY(%(roles)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%%'
  AND CASE WHEN p.priv IN ('INSERT', 'UPDATE')
           THEN pg_catalog.has_any_column_privilege(r.oid, c.oid, p.priv)
           ELSE pg_catalog.has_table_privilege(r.oid, c.oid, p.priv) END
UNION ALL
SELECT r.rolname,
       CASE WHEN pg_catalog.has_sequence_privilege(r.oid, c.oid, 'UPDATE') THEN 'UPDATE' ELSE 'USAGE' END,
       n.nspname || '.' || c.relname
FROM pg_catalog.pg_roles r
CROSS JOIN pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE r.rolname = ANY(%(roles)s) AND c.relkind = 'S'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%%'
  AND pg_catalog.has_sequence_privilege(r.oid, c.oid, 'USAGE, UPDATE')
UNION ALL
SELECT r.rolname, 'CREATE', 'database ' || pg_catalog.current_database()
FROM pg_catalog.pg_roles r
WHERE r.rolname = ANY(%(roles)s)
  AND pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(), 'CREATE')
UNION ALL
SELECT r.rolname, 'CREATE', n.nspname
FROM pg_catalog.pg_roles r
CROSS JOIN pg_catalog.pg_namespace n
WHERE r.rolname = ANY(%(roles)s)
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%%'
  AND pg_catalog.has_schema_privilege(r.oid, n.oid, 'CREATE')
ORDER BY 1, 3, 2
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


class SchemaLoader(DiscoveringLoader):
    """Loads the schema of one upstream's databases (by name) for the guard; with `discover`, the
    columns a sample of their values shows to hold personal data too (`Schema.discovered`, with
    the memory of samples proxy/services/discovery.py keeps). Blocking: the guard calls it from
    worker threads."""

    sampled_columns = staticmethod(sampled_columns)

    def __call__(self, database: str) -> Schema:
        import psycopg

        # Bounded: a server that accepts and says nothing must not hold the load forever.
        timeout = max(1, round(self.connect_timeout_s))
        with psycopg.connect(self.dsn_for(database), autocommit=True, connect_timeout=timeout) as conn:
            schema = load_schema(conn)
            if not self.discover:
                return schema
            # `sample` is looked up at call time: tests replace it.
            return self.discovered(database, schema, lambda schema, **kw: sample(conn, schema, **kw))


def load_database_roles(conn_or_dsn: Any, names: list[str]) -> dict[str, DatabaseRole]:
    """The attributes and write grants of the named database roles (one entry per name; a role
    the server does not have is `exists=False`)."""
    import psycopg

    own = isinstance(conn_or_dsn, str)
    conn = psycopg.connect(conn_or_dsn) if own else conn_or_dsn
    try:
        with conn.cursor() as cur:
            cur.execute(_PG_ROLES, (names,))
            attrs = {name: (sup, bypass) for name, sup, bypass in cur.fetchall()}
            cur.execute(_PG_ROLE_WRITES, {"roles": names})
            writes: dict[str, list[tuple[str, str]]] = {}
            for name, priv, obj in cur.fetchall():
                writes.setdefault(name, []).append((priv, obj))
    finally:
        if own:
            conn.close()
    out = {}
    for name in names:
        if name not in attrs:
            out[name] = DatabaseRole(name, exists=False)
            continue
        sup, bypass = attrs[name]
        out[name] = DatabaseRole(name, True, bool(sup), bool(bypass), tuple(writes.get(name, ())))
    return out


def load_discovered(dsn: str) -> Schema:
    """The schema of the database `dsn` names with its discovered columns, as `serve` loads it."""
    return SchemaLoader(lambda _database: dsn)("")


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
    sys.stdout.write(builtin_functions_source(sys.argv[1]))
