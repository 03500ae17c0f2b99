"""What the engine knows about the upstream database: tables, column order, views, functions.

Owns: the `Schema` value and its JSON file form. Must not talk to a database: live loaders
(proxy/pg/catalog.py, one per protocol) build a `Schema` and hand it over.
Column order matters: `SELECT *` is expanded with it and masks are applied by position. View
definitions are kept so lineage can follow a view to its base columns. User-defined functions
are listed so calls to them can be refused, and every function's volatility (the catalog's
built-in ones included) so that calls are judged by what they may do. Columns the detectors
found personal data in (`discovered`) are classified for restricted roles until the policy
names them. `DatabaseRole` is what a database role may do by itself (read for `maskgate check`,
never for decisions).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.names import TableName

FORMAT = 2
# A function's volatility, as the catalog states it, from the least to the most free to act:
# immutable (same result for the same arguments, no effect), stable (reads the database or the
# session, no effect), volatile (anything: writes, server actions, randomness).
VOLATILITIES = ("immutable", "stable", "volatile")


@dataclass(frozen=True, slots=True)
class Table:
    schema: str
    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...] = ()
    kind: str = "table"  # table | view | matview | foreign
    definition: str | None = None  # a view's SELECT

    @property
    def is_view(self) -> bool:
        return self.kind in ("view", "matview") and bool(self.definition)


@dataclass(frozen=True, slots=True)
class DatabaseRole:
    """What a database role may do by itself, whatever the proxy decides: its attributes and the
    writes it is granted (directly, through a role it belongs to, or through PUBLIC)."""

    name: str
    exists: bool = True
    superuser: bool = False
    bypass_rls: bool = False
    # (privilege, object) pairs: INSERT / UPDATE / DELETE / TRUNCATE on `schema.table`, USAGE or
    # UPDATE on a sequence `schema.name` (nextval, setval), CREATE on a schema or the database.
    writes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Schema:
    database: str | None = None
    dialect: str = "postgres"
    tables: Mapping[tuple[str, str], Table] = field(default_factory=dict)
    functions: frozenset[tuple[str, str]] = frozenset()  # user-defined (schema, name), lowercase
    # Every function of the database, catalog schemas included: (schema, name) as the server
    # stores them -> the most volatile class among its overloads. None: this schema was saved
    # without function data (the judge then uses the dialect's built-in table).
    volatility: Mapping[tuple[str, str], str] | None = None
    # (schema, table, column) -> the class the detectors found in a sample of its values.
    discovered: Mapping[tuple[str, str, str], str] = field(default_factory=dict)

    # --- questions ---
    def table(self, schema: str | None, name: str) -> Table | None:
        """The table of that exact schema and name (as the server stores them; a statement's names
        are folded before they get here)."""
        if schema is None:
            return None
        return self.tables.get((schema, name))

    def find(self, name: str, search_path: Iterable[str]) -> Table | None:
        for s in search_path:
            t = self.table(s, name)
            if t is not None:
                return t
        return None

    def lookup(self, table: TableName) -> Table | None:
        return self.table(table.schema, table.name)

    def function_volatility(self, schema: str, name: str) -> str | None:
        """The most volatile class of the function's overloads, or None when it is not known."""
        if self.volatility is None:
            return None
        return self.volatility.get((schema, name))

    def is_user_function(self, schema: str | None, name: str) -> bool:
        """Whether a user-defined function of that name exists. The list is kept in lower case
        and compared so: a refusal list may only grow by it ("Phone_Of" still counts)."""
        name = name.lower()
        if schema is not None:
            return (schema.lower(), name) in self.functions
        return any(n == name for _, n in self.functions)

    # --- files ---
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "database": self.database,
            "dialect": self.dialect,
            "tables": [
                {
                    "schema": t.schema,
                    "name": t.name,
                    "kind": t.kind,
                    "columns": [
                        {"name": c, "type": ty} for c, ty in zip(t.columns, t.types or (), strict=False)
                    ]
                    if t.types
                    else list(t.columns),
                    **({"definition": t.definition} if t.definition else {}),
                }
                for (_, _), t in sorted(self.tables.items())
            ],
            "functions": sorted(f"{s}.{n}" for s, n in self.functions),
            **({"volatility": _nested(self.volatility)} if self.volatility is not None else {}),
            **(
                {
                    "discovered": [
                        {"schema": s, "table": t, "column": c, "class": cls}
                        for (s, t, c), cls in sorted(self.discovered.items())
                    ]
                }
                if self.discovered
                else {}
            ),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Schema:
        tables: dict[tuple[str, str], Table] = {}
        for t in doc.get("tables", []):
            cols, types = [], []
            for col in t["columns"]:
                if isinstance(col, str):
                    cols.append(col)
                    types.append("text")
                else:
                    cols.append(col["name"])
                    types.append(col.get("type") or "text")
            tables[(t["schema"], t["name"])] = Table(
                t["schema"], t["name"], tuple(cols), tuple(types), t.get("kind", "table"), t.get("definition")
            )
        functions = frozenset(tuple(f.lower().rsplit(".", 1)) for f in doc.get("functions", []) if "." in f)
        volatility = None
        if doc.get("volatility") is not None:
            volatility = {}
            for schema, names in doc["volatility"].items():
                for name, v in names.items():
                    if v not in VOLATILITIES:
                        raise ValueError(f"schema file: volatility of {schema}.{name} is {v!r}")
                    volatility[(schema, name)] = v
        discovered = {(d["schema"], d["table"], d["column"]): d["class"] for d in doc.get("discovered") or []}
        return cls(
            doc.get("database"),
            doc.get("dialect", "postgres"),
            tables,
            functions,  # type: ignore[arg-type]
            volatility,  # type: ignore[arg-type]
            discovered,
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(
            json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def _nested(flat: Mapping[tuple[str, str], str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for (schema, name), v in sorted(flat.items()):
        out.setdefault(schema, {})[name] = v
    return out
