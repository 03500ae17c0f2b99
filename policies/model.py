"""The compiled, immutable policy: roles, users, column classes and their revision.

Owns: the value types a loaded policy is made of and the small pure questions asked of them
(which class a column carries, what a role does with a class, whether now is inside a role's
hours). Must not read files (policies/loader.py does) nor look at SQL text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, tzinfo
from types import MappingProxyType
from typing import Any

import masking
from policies.names import ColumnName, TableName, column_matches, table_matches

ACTIONS = ("clear", "mask", "hash", "fake", "redact", "deny")
STATEMENT_KINDS = ("select", "insert", "update", "delete", "ddl", "dcl", "admin", "all")
PREDICATE_MODES = ("deny", "equality", "allow")
# Classes masking has detectors and display rules for (one list, owned by masking/); a policy
# may add its own under a top-level `classes:` key.
BUILTIN_CLASSES = frozenset(masking.CLASSES)
DEFAULT_MAX_ROWS = 1000
# A service-desk agent looks up a caller or two a minute; 10,000 lookups read a masked mobile.
DEFAULT_LOOKUPS_PER_HOUR = 300
DEFAULT_ACTION = "mask"  # DESIGN.md §3: classes a role does not name are masked
# Output actions from least to most destructive; a column mixing classes takes the strongest.
ACTION_STRENGTH = {"clear": 0, "mask": 1, "hash": 2, "fake": 3, "redact": 4, "null": 5, "deny": 6}
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class RowFilter:
    """A predicate ANDed into every read and write of the tables matching `pattern`.

    `expression` is the parsed (dialect-neutral) sqlglot tree, parsed once at load time.
    """

    pattern: tuple[str, ...]
    sql: str
    expression: Any = field(compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class HoursWindow:
    days: frozenset[int]  # 0 = Monday
    start: time
    end: time | None  # None: until midnight (written 24:00)
    text: str

    def contains(self, moment: datetime) -> bool:
        t = moment.timetz().replace(tzinfo=None)
        if self.end is None or self.start < self.end:
            inside = t >= self.start and (self.end is None or t < self.end)
            return inside and moment.weekday() in self.days
        # Overnight window (22:00-06:00): the evening belongs to the listed day, the early
        # morning to the day after it.
        if t >= self.start:
            return moment.weekday() in self.days
        return t < self.end and (moment.weekday() - 1) % 7 in self.days


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    statements: frozenset[str] = frozenset({"select"})
    tables_allow: tuple[tuple[str, ...], ...] = ()
    tables_deny: tuple[tuple[str, ...], ...] = ()
    max_rows: int | None = DEFAULT_MAX_ROWS
    see: Mapping[str, str] = field(default_factory=dict)
    detect: frozenset[str] = frozenset()
    masked_predicates: str = "deny"
    row_filters: tuple[RowFilter, ...] = ()
    hours: tuple[HoursWindow, ...] = ()
    functions: frozenset[str] = frozenset()  # allow-listed functions/procedures (lowercase names)
    # The database role this role's statements run as upstream (None: the service account).
    database_role: str | None = None
    # Values a person of this role may compare masked classes with per hour (`equality` mode);
    # None: no budget. The mask shows most digits, so lookups can brute-force the rest.
    lookups_per_hour: int | None = DEFAULT_LOOKUPS_PER_HOUR

    @property
    def unrestricted_statements(self) -> bool:
        return "all" in self.statements

    def may(self, kind: str) -> bool:
        return "all" in self.statements or kind in self.statements

    def action_for(self, cls: str | None) -> str:
        if cls is None:
            return "clear"
        return self.see.get(cls, DEFAULT_ACTION)

    def table_allowed(self, table: TableName, default_schema: str | None) -> bool:
        if any(table_matches(p, table, default_schema) for p in self.tables_deny):
            return False
        return any(table_matches(p, table, default_schema) for p in self.tables_allow)

    def row_filters_for(self, table: TableName, default_schema: str | None) -> tuple[RowFilter, ...]:
        return tuple(f for f in self.row_filters if table_matches(f.pattern, table, default_schema))

    def within_hours(self, moment: datetime) -> bool:
        return not self.hours or any(w.contains(moment) for w in self.hours)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    password: str  # PostgreSQL SCRAM-SHA-256 verifier
    # MySQL's "*" + 40 upper-case hex digits (SHA1(SHA1(password))), for mysql_native_password
    # logins; None: this user cannot log in with that plugin.
    mysql_password: str | None = None


@dataclass(frozen=True, slots=True)
class ColumnRule:
    pattern: tuple[str, ...]
    text: str
    cls: str
    exact: bool


@dataclass(frozen=True)
class Policy:
    """A whole validated policy. `revision` is a short hash of its normalised content."""

    columns: tuple[ColumnRule, ...]
    roles: Mapping[str, Role]
    users: Mapping[str, User]
    classes: frozenset[str]
    revision: str
    timezone: tzinfo | None = None
    timezone_name: str | None = None
    sources: tuple[str, ...] = ()
    _class_cache: dict[tuple[ColumnName, str | None], str | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", MappingProxyType(dict(self.roles)))
        object.__setattr__(self, "users", MappingProxyType(dict(self.users)))

    def classify(self, column: ColumnName, default_schema: str | None) -> str | None:
        """The class of `column`: exact patterns win over globs, then the first glob in file order."""
        key = (column, default_schema)
        try:
            return self._class_cache[key]
        except KeyError:
            pass
        found: str | None = None
        for rule in sorted(self.columns, key=lambda r: not r.exact):
            if column_matches(rule.pattern, column, default_schema):
                found = rule.cls
                break
        if len(self._class_cache) > 100_000:
            self._class_cache.clear()
        self._class_cache[key] = found
        return found

    def unrestricted(self, role: Role | None) -> bool:
        """Whether `role` may run anything, sees every class the policy writes clear and scans
        nothing: its results need no masking at all. Every other role is restricted, and the
        classes the policy does not write itself (catalog columns, discovered columns) bind it."""
        if role is None or not role.unrestricted_statements or role.detect:
            return False
        return all(role.action_for(rule.cls) == "clear" for rule in self.columns)

    def nothing_masked(self, role: Role | None) -> bool:
        """Whether nothing at all stands between `role` and the data: unrestricted (above), no
        row limit, no row filter, every table. Only such a role may run a statement the parser
        does not understand: there is nothing a misread statement could get past."""
        if role is None or not self.unrestricted(role) or role.max_rows is not None or role.row_filters:
            return False
        every = any(all(part == "*" for part in p) for p in role.tables_allow)
        return every and not role.tables_deny

    def table_has_classes(self, table: TableName, default_schema: str | None) -> bool:
        """Whether any column rule could apply to a column of `table` (for tables the schema lacks)."""
        return any(table_matches(rule.pattern[:-1], table, default_schema) for rule in self.columns)
