"""The live MySQL/MariaDB schema loader: tables, columns in order, views, routines, discovery samples.

Owns the information_schema queries, turning their rows into a `policies.schema.Schema` (which
owns the data model) and sampling column values for discovery. Must not touch sessions or the
wire: the guard calls it from worker threads, and the policy commands for `--schema mysql://…`.
PyMySQL is imported lazily, so nothing else pays for it.

What the Schema holds, and why:
- Databases are schemas. One MySQL connection sees every database its account may use, and a
  statement may name any of them (`crm.customers`, or `customers` after `USE crm`), so a load
  reads ALL the non-system databases the account sees, keyed (database, table) exactly as the
  server stores the names (table names are case-sensitive on Linux; the dialect facts compare
  column names case-insensitively themselves). This is the key form the engine looks up with
  dialect "mysql" (`default_schema` None: `crm.customers` is database crm, table customers).
- `Schema.database` is the DSN's default database (`SELECT DATABASE()`; None when the DSN names
  none). The guard keys engines by (upstream, database), so a loader called for "crm" returns a
  schema named crm holding every database: a session that switches databases with USE is judged
  against the same tables.
- System databases (mysql, information_schema, performance_schema, sys) are not loaded as user
  relations; the catalog relations the dialect facts classify (MYSQL.catalog_relations) are
  read by name, as the PostgreSQL loader does for pg_stat_activity.
- Views come with their definitions (information_schema.VIEWS) so lineage follows them to their
  base columns. MySQL shows a definition only to an account with SHOW VIEW on it: a view whose
  definition the account cannot read fails the load (a view read as an opaque table would hand
  out its columns unclassified), naming the views and the grant that fixes it.
- `functions` are the routines of information_schema.ROUTINES (stored functions and procedures,
  the sys schema's included: anything not built in may act). `volatility` stays None: MySQL
  has no volatility class, and the judge then applies the dialect's function lists only.
  Loadable functions (CREATE FUNCTION … SONAME, mysql.func) are not visible without SELECT on
  mysql.*, which the service account does not get.

The service account therefore needs, on each database it serves: SELECT (tables and columns),
SHOW VIEW (view definitions) and EXECUTE (MySQL lists a routine only to an account with a right
on it); proxy/demo/data.py grants exactly these plus INSERT/UPDATE/DELETE for sessions.

Discovery samples the first n rows of each table (`LIMIT n`, no ORDER BY RAND(): that reads the
whole table), each in a read-only transaction with a statement time limit. Values are handed to
the detectors and never kept, logged or printed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from policies.schema import Schema, Table
from policies.sql.dialects import MYSQL
from proxy.services.discovery import RESAMPLE_S as RESAMPLE_S  # the loader's, named here too
from proxy.services.discovery import DiscoveringLoader, SampleRun, sample_tables

SCHEMES = ("mysql", "mariadb")
SYSTEM_DATABASES = ("mysql", "information_schema", "performance_schema", "sys")
_NOT_SYSTEM = "NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')"

_TABLES = f"""
SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES
WHERE TABLE_SCHEMA {_NOT_SYSTEM}
"""

# Joined with TABLES in Python, not SQL: information_schema compares names case-insensitively,
# and `Customers` and `customers` may be two tables of one database.
_COLUMNS = f"""
SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, ORDINAL_POSITION
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA {_NOT_SYSTEM}
"""

_VIEWS = f"""
SELECT TABLE_SCHEMA, TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS
WHERE TABLE_SCHEMA {_NOT_SYSTEM}
"""

_CATALOG_COLUMNS = """
SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, ORDINAL_POSITION
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s
"""

_ROUTINES = "SELECT ROUTINE_SCHEMA, ROUTINE_NAME FROM information_schema.ROUTINES"

# TABLE_TYPE values other than VIEW (BASE TABLE, SYSTEM VERSIONED, SEQUENCE, TEMPORARY) are all
# read with SELECT like a table.
_KINDS = {"VIEW": "view", "SYSTEM VIEW": "view"}


class UnreadableViews(RuntimeError):
    """Views whose definitions the account may not read: the schema would be wrong without them."""


def is_dsn(source: str) -> bool:
    """Whether `source` is a MySQL URL (`mysql://user:pass@host:port/db`) rather than a file."""
    return source.startswith(tuple(f"{s}://" for s in SCHEMES))


# DSN query parameters PyMySQL takes, by name. Anything else is refused rather than ignored: an
# unknown `ssl-mode=REQUIRED` dropped silently would send the service account's password in clear.
_PARAMS: dict[str, Callable[[str], Any]] = {
    "charset": str,
    "connect_timeout": int,
    "read_timeout": int,
    "ssl_ca": str,
    "ssl_cert": str,
    "ssl_key": str,
    "ssl_verify_cert": lambda v: v.lower() in ("1", "true", "yes", "on"),
    "ssl_verify_identity": lambda v: v.lower() in ("1", "true", "yes", "on"),
    "unix_socket": str,
}


def connect_args(dsn: str) -> dict[str, Any]:
    """PyMySQL keyword arguments for a `mysql://user:pass@host:port/db?param=value` URL.

    >>> args = connect_args("mysql://svc:p%40ss@127.0.0.1:3307/crm?ssl_ca=%2Fca.pem")
    >>> args["password"], args["port"], args["database"], args["ssl_ca"]
    ('p@ss', 3307, 'crm', '/ca.pem')
    """
    u = urlsplit(dsn)
    if u.scheme not in SCHEMES:
        raise ValueError(f"not a MySQL URL (expected {' or '.join(s + '://' for s in SCHEMES)})")
    args: dict[str, Any] = {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 3306,
        "user": unquote(u.username or ""),
        "password": unquote(u.password or ""),
        "charset": "utf8mb4",
    }
    database = unquote(u.path.lstrip("/"))
    if database:
        args["database"] = database
    for key, value in parse_qsl(u.query, keep_blank_values=True):
        if key not in _PARAMS:
            raise ValueError(f"unsupported MySQL URL parameter {key!r}")
        args[key] = _PARAMS[key](value)
    return args


def connect(dsn: str, *, connect_timeout: float | None = None) -> Any:
    import pymysql

    args = connect_args(dsn)
    if connect_timeout is not None:
        args.setdefault("connect_timeout", max(1, round(connect_timeout)))
    return pymysql.connect(autocommit=True, **args)


def load_schema(conn_or_dsn: Any) -> Schema:
    """Read tables, columns (in order), views with their definitions, the catalog relations the
    dialect classifies and the routines of every non-system database the account sees."""
    own = isinstance(conn_or_dsn, str)
    conn = connect(conn_or_dsn) if own else conn_or_dsn
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT DATABASE()")
            database = cur.fetchone()[0]
            cur.execute(_TABLES)
            tables = list(cur.fetchall())
            cur.execute(_COLUMNS)
            columns = list(cur.fetchall())
            cur.execute(_VIEWS)
            views = list(cur.fetchall())
            catalog: list[tuple[Any, ...]] = []
            for schema, name in MYSQL.catalog_relations:
                cur.execute(_CATALOG_COLUMNS, (schema, name))
                catalog += [(schema, name, *row[2:]) for row in cur.fetchall()]
            cur.execute(_ROUTINES)
            routines = list(cur.fetchall())
    finally:
        if own:
            conn.close()
    return build_schema(database, tables, columns, views, catalog, routines)


def build_schema(
    database: str | None,
    tables: Sequence[tuple[Any, ...]],
    columns: Sequence[tuple[Any, ...]],
    views: Sequence[tuple[Any, ...]],
    catalog: Sequence[tuple[Any, ...]],
    routines: Sequence[tuple[Any, ...]],
) -> Schema:
    """The Schema from the rows of the queries above (pure: tests feed it rows)."""
    kinds = {(s, n): _KINDS.get(str(t).upper(), "table") for s, n, t in tables}
    definitions = {(s, n): _clean_view(d) for s, n, d in views}
    unreadable = sorted(
        f"{s}.{n}" for (s, n), k in kinds.items() if k == "view" and not definitions.get((s, n))
    )
    if unreadable:
        raise UnreadableViews(
            "cannot read the definition of view(s) "
            + ", ".join(unreadable[:10])
            + (f" and {len(unreadable) - 10} more" if len(unreadable) > 10 else "")
            + ": grant the service account SHOW VIEW on their databases"
        )
    cols: dict[tuple[str, str], list[tuple[int, str, str]]] = {key: [] for key in kinds}
    for schema, name, column, typ, position in columns:
        if (schema, name) in cols:  # a table created between the two queries waits for the next load
            cols[(schema, name)].append((int(position), column, typ))
    out: dict[tuple[str, str], Table] = {}
    for key, entries in cols.items():
        entries.sort()
        kind = kinds[key]
        out[key] = Table(
            key[0],
            key[1],
            tuple(c for _, c, _ in entries),
            tuple(t for _, _, t in entries),
            kind,
            definitions.get(key) if kind == "view" else None,
        )
    by_catalog: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    for schema, name, column, typ, position in catalog:
        by_catalog.setdefault((schema, name), []).append((int(position), column, typ))
    for key, entries in by_catalog.items():
        entries.sort()
        # Read as opaque relations: lineage stops at them and the facts classify their columns.
        out[key] = Table(
            key[0], key[1], tuple(c for _, c, _ in entries), tuple(t for _, _, t in entries), "view"
        )
    functions = frozenset(
        (str(s).lower(), str(n).lower()) for s, n in routines if not MYSQL.is_catalog_schema(str(s))
    )
    return Schema(database, "mysql", out, functions, None)


def _clean_view(definition: str | None) -> str | None:
    if definition is None:
        return None
    return definition.strip().rstrip(";").strip() or None


# --- discovery sampling --------------------------------------------------------------------------
# Types whose values may be or hold an identifier (COLUMN_TYPE spelling, MariaDB's JSON is
# longtext). int and smaller cannot hold the 11 digits of a mobile number.
_TEXT_PREFIXES = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "json", "enum", "set(")
_NUMBER_PREFIXES = ("bigint", "decimal", "numeric")


def sampled_type(column_type: str) -> bool:
    return (column_type or "text").lower().startswith(_TEXT_PREFIXES + _NUMBER_PREFIXES)


def sampled_columns(table: Table) -> list[str]:
    """The columns of `table` that sampling reads (none for views: their tables are sampled)."""
    if table.kind != "table":
        return []
    types = table.types or ("text",) * len(table.columns)
    return [c for c, ty in zip(table.columns, types, strict=False) if sampled_type(ty)]


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def sample_sql(table: Table, columns: Sequence[str], rows: int, timeout_s: float, mariadb: bool) -> str:
    """The statement reading the first `rows` rows of `columns` as text, stopped by the server
    after `timeout_s` (MariaDB: SET STATEMENT max_statement_time; MySQL: the optimizer hint).

    >>> t = Table("crm", "customers", ("id", "phone"), ("bigint(20)", "varchar(32)"))
    >>> sample_sql(t, ["phone"], 1000, 2.0, True)[:60]
    'SET STATEMENT max_statement_time=2.000 FOR SELECT CAST(`phon'
    >>> sample_sql(t, ["phone"], 10, 0.5, False)
    'SELECT /*+ MAX_EXECUTION_TIME(500) */ CAST(`phone` AS CHAR) FROM `crm`.`customers` LIMIT 10'
    """
    cols = ", ".join(f"CAST({_quote(c)} AS CHAR)" for c in columns)
    source = f"{_quote(table.schema)}.{_quote(table.name)}"
    select = f"{cols} FROM {source} LIMIT {int(rows)}"
    if mariadb:
        return f"SET STATEMENT max_statement_time={timeout_s:.3f} FOR SELECT {select}"
    return f"SELECT /*+ MAX_EXECUTION_TIME({max(1, int(timeout_s * 1000))}) */ {select}"


def sample(
    conn: Any,
    schema: Schema,
    *,
    rows: int = 2000,
    table_timeout_s: float = 5.0,
    deadline_s: float = 60.0,
    clock: Any = time.monotonic,
    tables: Sequence[tuple[str, str]] | None = None,
) -> SampleRun:
    """Sample every table of `schema` (or the (database, table) pairs of `tables`, in that order)
    through the PyMySQL connection `conn` (autocommit) and judge each sampled column. Reads only,
    each table in a read-only transaction of its own; an error on one table skips that table."""
    import pymysql

    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        mariadb = "mariadb" in str(cur.fetchone()[0]).lower()

    def read(table: Table, cols: list[str], time_left: Callable[[], float]) -> list[tuple[Any, ...]]:
        timeout = max(0.001, time_left())
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION READ ONLY")
            try:
                cur.execute(sample_sql(table, cols, rows, timeout, mariadb))
                return list(cur.fetchall())
            finally:
                cur.execute("ROLLBACK")

    return sample_tables(
        schema,
        read,
        sampled_columns=sampled_columns,
        errors=pymysql.MySQLError,
        table_timeout_s=table_timeout_s,
        deadline_s=deadline_s,
        clock=clock,
        tables=tables,
    )


class SchemaLoader(DiscoveringLoader):
    """Loads the schema an upstream's service account sees, named after the database asked for;
    with `discover`, the columns a sample of their values shows to hold personal data too, with
    the memory of samples proxy/services/discovery.py keeps (as the PostgreSQL loader). Blocking:
    the guard calls it from worker threads."""

    sampled_columns = staticmethod(sampled_columns)

    def __call__(self, database: str) -> Schema:
        # Bounded: a server that accepts and says nothing must not hold the load forever.
        conn = connect(self.dsn_for(database), connect_timeout=self.connect_timeout_s)
        try:
            schema = load_schema(conn)
            if not self.discover:
                return schema
            return self.discovered(database, schema, lambda schema, **kw: sample(conn, schema, **kw))
        finally:
            conn.close()


def load_discovered(dsn: str) -> Schema:
    """The schema the account of `dsn` sees with its discovered columns, as `serve` loads it."""
    return SchemaLoader(lambda _database: dsn)("")
