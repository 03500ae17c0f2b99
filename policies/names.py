"""Qualified names and the one rule that matches them against policy patterns.

Owns: `TableName`/`ColumnName` and pattern matching. A policy pattern is dotted, with shell globs
per part (`*` never crosses a dot). A table `db.schema.table` matches a 2-part pattern written as
`schema.table` OR as `db.table` when the schema is the dialect's default one (PostgreSQL
`public`), and a 3-part pattern as `db.schema.table`. Columns add one part. Matching is
case-insensitive: it can only make a pattern cover more names, which is the safe direction for
classes and denials.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True, slots=True, order=True)
class TableName:
    db: str | None
    schema: str | None
    name: str

    def __str__(self) -> str:
        return ".".join(p for p in (self.schema, self.name) if p)

    def candidates(self, default_schema: str | None) -> tuple[tuple[str, ...], ...]:
        """Every dotted spelling (as lowercase parts) a policy may use for this table."""
        name = self.name.lower()
        schema = (self.schema or "").lower()
        db = (self.db or "").lower()
        out: list[tuple[str, ...]] = []
        if schema:
            out.append((schema, name))
        if (
            db
            and (default_schema is None or schema == default_schema or not schema)
            and (db, name) not in out
        ):
            out.append((db, name))
        if db and schema:
            out.append((db, schema, name))
        if not out:
            out.append((name,))
        return tuple(out)


@dataclass(frozen=True, slots=True, order=True)
class ColumnName:
    table: TableName
    column: str

    def __str__(self) -> str:
        return f"{self.table}.{self.column}"


def split_pattern(pattern: str) -> tuple[str, ...]:
    return tuple(p.lower() for p in pattern.split("."))


def has_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def parts_match(pattern: tuple[str, ...], name: tuple[str, ...]) -> bool:
    return len(pattern) == len(name) and all(fnmatchcase(n, p) for p, n in zip(pattern, name, strict=True))


def table_matches(pattern: tuple[str, ...], table: TableName, default_schema: str | None) -> bool:
    return any(parts_match(pattern, cand) for cand in table.candidates(default_schema))


def column_matches(pattern: tuple[str, ...], column: ColumnName, default_schema: str | None) -> bool:
    if len(pattern) < 2 or not fnmatchcase(column.column.lower(), pattern[-1]):
        return False
    return table_matches(pattern[:-1], column.table, default_schema)
