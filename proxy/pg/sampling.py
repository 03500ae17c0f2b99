"""Sampling column values from a live PostgreSQL for discovery (policies/discovery.py judges them).

Owns the reading only: which columns can hold an identifier (text, json and wide number types),
how many rows per table (TABLESAMPLE sized from the planner's row estimate), and how a table's
time bound is set (a statement_timeout), each table in a read-only transaction. The run's order
and deadline are proxy/services/discovery.py's.
Values are handed to the judge and never kept, logged or printed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from policies.schema import Schema, Table
from proxy.services.discovery import SampleRun, sample_tables

# Types whose values may be or hold an identifier. int2/int4 cannot hold 11 or more digits.
_TEXT_PREFIXES = ("text", "character varying", "character", "varchar", "json", "jsonb", "citext", "name")
_NUMBER_PREFIXES = ("bigint", "numeric", "decimal")


def sampled_type(type_name: str) -> bool:
    t = (type_name or "text").lower()
    if t.endswith("[]"):
        return True  # an array of phone numbers is as personal as one
    return t.startswith(_TEXT_PREFIXES + _NUMBER_PREFIXES)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sample_sql(table: Table, columns: list[str], rows: int, estimate: float) -> str:
    cols = ", ".join(f"{_quote(c)}::text" for c in columns)
    source = f"{_quote(table.schema)}.{_quote(table.name)}"
    # Pages at random, sized for about twice the rows wanted; small or never analysed tables are
    # read from the start (LIMIT stops the scan early either way).
    if estimate > 4 * rows:
        pct = min(100.0, 200.0 * rows / estimate)
        source += f" TABLESAMPLE SYSTEM ({pct:.6f})"
    return f"SELECT {cols} FROM {source} LIMIT {int(rows)}"


def sampled_columns(table: Table) -> list[str]:
    """The columns of `table` that sampling reads (none for views: they read their tables, which
    are sampled themselves)."""
    if table.kind not in ("table", "matview"):
        return []
    types = table.types or ("text",) * len(table.columns)
    return [c for c, ty in zip(table.columns, types, strict=False) if sampled_type(ty)]


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
    """Sample every table of `schema` (or the (schema, table) pairs of `tables`, in that order)
    through the psycopg connection `conn` and judge each sampled column. Reads only; an error on
    one table skips that table. `conn` must be in autocommit mode: each table is read in a
    read-only transaction of its own."""
    import psycopg

    def read(table: Table, cols: list[str], time_left: Callable[[], float]) -> list[tuple[Any, ...]]:
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            timeout_ms = max(1, int(time_left() * 1000))
            conn.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
            est = conn.execute(
                "SELECT reltuples FROM pg_catalog.pg_class WHERE oid = %s::regclass",
                (f"{_quote(table.schema)}.{_quote(table.name)}",),
            ).fetchone()
            estimate = float(est[0]) if est and est[0] is not None else -1.0
            return conn.execute(_sample_sql(table, cols, rows, estimate)).fetchall()

    return sample_tables(
        schema,
        read,
        sampled_columns=sampled_columns,
        errors=psycopg.Error,
        table_timeout_s=table_timeout_s,
        deadline_s=deadline_s,
        clock=clock,
        tables=tables,
    )
