"""Discovery bookkeeping the schema loaders share: a sampling run's bounds, which tables to sample when.

Protocol-neutral: it never connects, quotes or reads. A protocol's catalog module says which
columns it samples and hands over a callable that reads one table (the sampling loop below) or
samples a list of tables (the loader's memory); this module decides the order, the deadlines
and what findings stand. Values go from the reader to the detectors and are never kept here.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from policies.discovery import Finding, judge_column
from policies.schema import Schema, Table

Key = tuple[str, str]  # (schema, table); a MySQL database is its schema
SampledColumns = Callable[[Table], list[str]]
# Reads the first rows of `columns` of a table, each value as text, within the seconds the
# third argument returns when called (called once the reader is ready to send, so the time its
# own set-up takes counts against the run's deadline).
ReadTable = Callable[[Table, list[str], Callable[[], float]], Sequence[Sequence[Any]]]


@dataclass(frozen=True, slots=True)
class SampleRun:
    findings: tuple[Finding, ...]
    tables: int  # tables sampled
    skipped: tuple[str, ...]  # tables not sampled (timeout, error, deadline), with the reason
    sampled: tuple[Key, ...] = ()  # the tables sampled, in order


def tables_to_sample(
    schema: Schema, order: Sequence[Key] | None, sampled_columns: SampledColumns
) -> Iterator[tuple[Table, list[str]]]:
    """The tables of `order` (all of `schema` by name when None) that have columns to sample."""
    keys = sorted(schema.tables) if order is None else order
    for key in keys:
        t = schema.tables.get(key)
        cols = sampled_columns(t) if t is not None else []
        if t is not None and cols:
            yield t, cols


def sample_tables(
    schema: Schema,
    read: ReadTable,
    *,
    sampled_columns: SampledColumns,
    errors: type[BaseException] | tuple[type[BaseException], ...],
    table_timeout_s: float,
    deadline_s: float,
    clock: Callable[[], float],
    tables: Sequence[Key] | None,
) -> SampleRun:
    """Read each table with `read` until the deadline and judge each sampled column. A table
    whose read raises one of `errors` (the driver's) is skipped with the error's name: the
    message could quote a value."""
    end = clock() + deadline_s
    findings: list[Finding] = []
    skipped: list[str] = []
    done: list[Key] = []
    for table, cols in tables_to_sample(schema, tables, sampled_columns):
        name = f"{table.schema}.{table.name}"
        if clock() >= end:
            skipped.append(f"{name}: deadline")
            continue
        try:
            data = read(table, cols, lambda: min(table_timeout_s, end - clock()))
        except errors as e:
            skipped.append(f"{name}: {type(e).__name__}")
            continue
        done.append((table.schema, table.name))
        for i, col in enumerate(cols):
            f = judge_column(table.schema, table.name, col, (r[i] for r in data))
            if f is not None:
                findings.append(f)
    return SampleRun(tuple(findings), len(done), tuple(skipped), tuple(done))


# Discovery at schema load (`discover: true`): each load samples within these bounds, tables never
# sampled (or whose columns changed) first, then those sampled longest ago. A table's findings
# stand until it is sampled again, which happens once they are RESAMPLE_S old.
DISCOVER_ROWS = 1000
DISCOVER_DEADLINE_S = 10.0
DISCOVER_TABLE_TIMEOUT_S = 2.0
RESAMPLE_S = 3600.0


class SampleDue(Protocol):
    """A protocol's `sample` bound to an open connection: samples `tables` of `schema`, in order."""

    def __call__(
        self,
        schema: Schema,
        *,
        rows: int,
        table_timeout_s: float,
        deadline_s: float,
        clock: Callable[[], float],
        tables: Sequence[Key],
    ) -> SampleRun: ...


@dataclass(frozen=True, slots=True)
class _Sampled:
    columns: tuple[str, ...]  # the columns read when the table was sampled
    findings: tuple[Finding, ...]
    at: float


_Seen = dict[Key, _Sampled]


class DiscoveringLoader:
    """What a protocol's SchemaLoader shares: its settings and its memory of samples.

    Sampling is bounded per load (DISCOVER_DEADLINE_S), so it remembers, per database, what each
    table's last sample found and when: a load samples the tables it has not seen (or whose
    columns changed) first, then those whose sample is older than RESAMPLE_S, and keeps the
    findings of the tables it did not reach. A subclass connects, loads the schema and calls
    `discovered`; it sets `sampled_columns` to its protocol's rule. Thread-safe: the guard loads
    from worker threads."""

    sampled_columns: SampledColumns

    def __init__(
        self,
        dsn_for: Callable[[str], str],
        *,
        discover: bool = True,
        rows: int = DISCOVER_ROWS,
        deadline_s: float = DISCOVER_DEADLINE_S,
        table_timeout_s: float = DISCOVER_TABLE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.dsn_for = dsn_for
        self.connect_timeout_s = connect_timeout_s
        self.discover = discover
        self.rows = rows
        self.deadline_s = deadline_s
        self.table_timeout_s = table_timeout_s
        self.clock = clock
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def discovered(self, database: str, schema: Schema, sample: SampleDue) -> Schema:
        """`schema` with the columns the samples of `database` found (`Schema.discovered`),
        sampling with `sample` the tables due now."""
        with self._lock:
            seen = dict(self._seen.get(database, {}))
        now = self.clock()
        run = sample(
            schema,
            rows=self.rows,
            table_timeout_s=self.table_timeout_s,
            deadline_s=self.deadline_s,
            clock=self.clock,
            tables=self._due(schema, seen, now),
        )
        if run.skipped:
            shown = ", ".join(run.skipped[:5]) + (
                f" and {len(run.skipped) - 5} more" if len(run.skipped) > 5 else ""
            )
            print(f"maskgate: discovery in database {database!r} did not sample {shown}", file=sys.stderr)
        for key in run.sampled:
            seen[key] = _Sampled(
                tuple(self.sampled_columns(schema.tables[key])),
                tuple(f for f in run.findings if (f.schema, f.table) == key),
                now,
            )
        seen = {key: entry for key, entry in seen.items() if key in schema.tables}  # dropped tables
        with self._lock:
            self._seen[database] = seen
        found = {}
        for key, entry in seen.items():
            columns = set(schema.tables[key].columns)
            for f in entry.findings:
                if f.column in columns:
                    found[(f.schema, f.table, f.column)] = f.cls
        return replace(schema, discovered=found)

    def _due(self, schema: Schema, seen: _Seen, now: float) -> list[Key]:
        new, stale = [], []
        for key, table in sorted(schema.tables.items()):
            columns = tuple(self.sampled_columns(table))
            if not columns:
                continue
            entry = seen.get(key)
            if entry is None or entry.columns != columns:
                new.append(key)
            elif now - entry.at >= RESAMPLE_S:
                stale.append((entry.at, key))
        return new + [key for _, key in sorted(stale)]
