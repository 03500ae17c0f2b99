"""Sampling column values from a live PostgreSQL for discovery (policies/discovery.py judges them).

Owns the reading only: which columns can hold an identifier (text, json and wide number types),
how many rows per table (TABLESAMPLE sized from the planner's row estimate), and the time bounds
(a statement_timeout per table and a deadline for the whole run), all in read-only transactions.
Values are handed to the judge and never kept, logged or printed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from policies.discovery import Finding, judge_column
from policies.schema import Schema, Table

# Types whose values may be or hold an identifier. int2/int4 cannot hold 11 or more digits.
_TEXT_PREFIXES = ("text", "character varying", "character", "varchar", "json", "jsonb", "citext", "name")
_NUMBER_PREFIXES = ("bigint", "numeric", "decimal")


def sampled_type(type_name: str) -> bool:
    t = (type_name or "text").lower()
    if t.endswith("[]"):
        return True  # an array of phone numbers is as personal as one
    return t.startswith(_TEXT_PREFIXES + _NUMBER_PREFIXES)


@dataclass(frozen=True, slots=True)
class SampleRun:
    findings: tuple[Finding, ...]
    tables: int  # tables sampled
    skipped: tuple[str, ...]  # tables not sampled (timeout, error, deadline), with the reason
    sampled: tuple[tuple[str, str], ...] = ()  # (schema, table) of the tables sampled, in order


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


def _tables(schema: Schema, order: Sequence[tuple[str, str]] | None) -> Iterator[tuple[Table, list[str]]]:
    keys = sorted(schema.tables) if order is None else order
    for key in keys:
        t = schema.tables.get(key)
        cols = sampled_columns(t) if t is not None else []
        if t is not None and cols:
            yield t, cols


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

    end = clock() + deadline_s
    findings: list[Finding] = []
    skipped: list[str] = []
    done: list[tuple[str, str]] = []
    for table, cols in _tables(schema, tables):
        name = f"{table.schema}.{table.name}"
        if clock() >= end:
            skipped.append(f"{name}: deadline")
            continue
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION READ ONLY")
                timeout_ms = max(1, int(min(table_timeout_s, end - clock()) * 1000))
                conn.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
                est = conn.execute(
                    "SELECT reltuples FROM pg_catalog.pg_class WHERE oid = %s::regclass",
                    (f"{_quote(table.schema)}.{_quote(table.name)}",),
                ).fetchone()
                estimate = float(est[0]) if est and est[0] is not None else -1.0
                data = conn.execute(_sample_sql(table, cols, rows, estimate)).fetchall()
        except psycopg.Error as e:
            skipped.append(f"{name}: {type(e).__name__}")
            continue
        done.append((table.schema, table.name))
        for i, col in enumerate(cols):
            f = judge_column(table.schema, table.name, col, (r[i] for r in data))
            if f is not None:
                findings.append(f)
    return SampleRun(tuple(findings), len(done), tuple(skipped), tuple(done))
