"""The compiled, immutable policy: roles, users, column and API field classes, their revision.

Owns: the value types a loaded policy is made of and the small pure questions asked of them
(which class a column or JSON field carries, what a role does with a class, whether now is
inside a role's hours, whether an HTTP route pattern matches a normalised path). Must not read
files (policies/loader.py does), look at SQL text, or normalise raw request paths
(policies/http.py does: a Route only ever sees a path already read the way the upstream reads it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, tzinfo
from fnmatch import fnmatchcase, translate
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import masking
from policies.names import ColumnName, TableName, column_matches, split_pattern, table_matches

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
# The methods a route may name (`*`: any method, including ones not listed here).
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Bounded caches of field classes per API: a body's key paths repeat across items and requests.
FIELD_CACHE_SIZE = 100_000
MAX_CACHED_DEPTH = 32  # deeper paths are rare; their long keys would only bloat the cache


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of a role's `routes`: a method and a path glob it may call.

    `pattern` holds the path's segments: `*` matches exactly one segment (other glob characters
    of fnmatch may be used inside a segment, e.g. `v*`), `**` any number of segments, zero
    included, so `/api/clients/**` matches `/api/clients` itself as well as everything below it.
    Matching is case-sensitive, as the upstream server reads its paths. `binary`: downloads of
    binary content types (spreadsheets, PDF, octet streams) are allowed on this route.
    """

    method: str  # upper case, or "*"
    pattern: tuple[str, ...]
    binary: bool
    text: str

    def matches(self, method: str, path: str) -> bool:
        """Whether this route admits `method` on `path`, a path as policies.http.normalise_path
        returns it (decoded once, dot segments resolved, no query). A GET route also admits
        HEAD, which returns the same headers and no body."""
        if self.method != "*":
            m = method.upper()
            if m != self.method and not (m == "HEAD" and self.method == "GET"):
                return False
        if not path.startswith("/") or "\\" in path or "\x00" in path:
            return False
        return segments_match(self.pattern, path_segments(path))


def path_segments(path: str) -> tuple[str, ...]:
    """The segments of a normalised path; a trailing slash names the same resource for routing
    (`/api/clients/` is matched as `/api/clients`; the upstream still receives it as sent)."""
    return tuple(part for part in path.split("/") if part)


def segments_match(pattern: tuple[str, ...], segments: tuple[str, ...]) -> bool:
    """Glob match of path segments: `**` any number of segments, anything else one segment."""
    return glob_steps(pattern, segments, _segment_matches)


def _segment_matches(token: str, segment: str | int) -> bool:
    return isinstance(segment, str) and fnmatchcase(segment, token)


def glob_steps(
    pattern: tuple[str, ...],
    steps: tuple[Any, ...],
    one: Callable[[str, Any], bool],
    prefix: bool = False,
) -> bool:
    """Whether `steps` (or, with `prefix`, any prefix of them) match `pattern`, where `**`
    matches any number of steps and every other token one step for which `one(token, step)`.

    Walked as a set of pattern positions, one step at a time: linear in the steps whatever the
    number of `**` (a request may send thousands of segments or nested lists)."""
    end = len(pattern)

    def closure(positions: set[int]) -> set[int]:
        out = set()
        for i in positions:
            out.add(i)
            while i < end and pattern[i] == "**":
                i += 1
                out.add(i)
        return out

    states = closure({0})
    for step in steps:
        if prefix and end in states:
            return True
        moved = set()
        for i in states:
            if i == end:
                continue
            token = pattern[i]
            if token == "**":
                moved.add(i)
            elif one(token, step):
                moved.add(i + 1)
        if not moved:
            return False
        states = closure(moved)
    return end in states


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One entry of an API's `fields`: a JSON path pattern and the class of what it names.

    `pattern` holds one token per step: a key glob (matched case-insensitively: APIs mix
    `mobile` and `Mobile`, and a wider match only masks more), `[]` for any list index, or `**`
    for any number of steps (keys and indexes, zero included). `data[].contact.phone` is
    ("data", "[]", "contact", "phone")."""

    pattern: tuple[str, ...]
    text: str
    cls: str


@lru_cache(maxsize=4096)
def _key_glob(pattern: str) -> re.Pattern[str]:
    return re.compile(translate(pattern.lower()), re.DOTALL)


def _step_matches(token: str, step: str | int) -> bool:
    if token == "[]":
        return isinstance(step, int) and not isinstance(step, bool)
    if not isinstance(step, str):
        return False
    return _key_glob(token).match(step.lower()) is not None


def field_pattern_matches(
    pattern: tuple[str, ...], path: tuple[str | int, ...], prefix: bool = False
) -> bool:
    """Whether `pattern` (FieldRule.pattern) names the value at `path` (with `prefix`: or one of
    the objects or lists holding it)."""
    return glob_steps(pattern, path, _step_matches, prefix)


@dataclass(frozen=True)
class Api:
    """An HTTP API's field classification (`apis: NAME: fields:`), in file order."""

    name: str
    fields: tuple[FieldRule, ...]
    _field_cache: dict[tuple[str | int, ...], str | None] = field(
        default_factory=dict, compare=False, repr=False
    )
    _name_cache: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    def field_class(self, path: tuple[str | int, ...]) -> str | None:
        """The class of the JSON value at `path` (dict keys as str, list indexes as int).

        The first rule in file order that names the value or any container of it wins: a rule
        naming an object or a list classifies everything inside it, so `**.contact: address`
        still masks `contact.lines[0]`."""
        try:
            return self._field_cache[path]
        except (KeyError, TypeError):
            pass
        found: str | None = None
        for rule in self.fields:
            if field_pattern_matches(rule.pattern, path, prefix=True):
                found = rule.cls
                break
        if len(path) <= MAX_CACHED_DEPTH:
            if len(self._field_cache) > FIELD_CACHE_SIZE:
                self._field_cache.clear()
            self._field_cache[path] = found
        return found

    def name_class(self, name: str) -> str | None:
        """The class of a flat name (query parameter, CSV header, form field): flat names are
        classified by their last key, so `data[].contact.phone` classifies a `phone` column and
        `**.mobile` a `mobile` parameter. First matching rule in file order wins."""
        try:
            return self._name_cache[name]
        except KeyError:
            pass
        found: str | None = None
        for rule in self.fields:
            keys = [t for t in rule.pattern if t != "[]"]
            last = keys[-1] if keys else "**"
            if last == "**" or _step_matches(last, name):
                found = rule.cls
                break
        if len(self._name_cache) > FIELD_CACHE_SIZE:
            self._name_cache.clear()
        self._name_cache[name] = found
        return found

    @property
    def classes(self) -> frozenset[str]:
        return frozenset(rule.cls for rule in self.fields)


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


# What a role's `budgets` may bound (policies/loader.py validates against it).
BUDGET_NAMES = ("rows_per_hour", "distinct_customers_per_day")


@dataclass(frozen=True, slots=True)
class RoleBudgets:
    """A role's `budgets`: how much one person of the role may read, over every replica.

    A person who has used one up is refused (reason `row_budget`) until its window has passed:
    `rows_per_hour` counts the rows sent to them in the current clock hour, and
    `distinct_customers_per_day` the customers whose values reached them today (by the policy's
    `customer_key`, or by every classified value when it names none). None: no such budget."""

    rows_per_hour: int | None = None
    distinct_customers_per_day: int | None = None

    def items(self) -> tuple[tuple[str, int], ...]:
        """(budget name, limit) of each budget set, in BUDGET_NAMES order."""
        return tuple((name, limit) for name in BUDGET_NAMES if (limit := getattr(self, name)) is not None)


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
    # HTTP: the methods and paths this role may call (none: every HTTP request is refused).
    routes: tuple[Route, ...] = ()
    # Per-person reading budgets shared by every replica (proxy/services/budgets.py); None: none.
    budgets: RoleBudgets | None = None

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
    # Lower-case hex SHA-256 digests of the user's HTTP bearer tokens (`maskgate token`); the
    # policy never holds a token itself.
    tokens: tuple[str, ...] = ()


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
    apis: Mapping[str, Api] = field(default_factory=dict)
    # `customer_key`: the column whose value is one customer for `distinct_customers_per_day`
    # budgets, as written ("crm.customers.id"); None: every classified value counts as one.
    customer_key: str | None = None
    _class_cache: dict[tuple[ColumnName, str | None], str | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", MappingProxyType(dict(self.roles)))
        object.__setattr__(self, "users", MappingProxyType(dict(self.users)))
        object.__setattr__(self, "apis", MappingProxyType(dict(self.apis)))

    def moment(self, now: datetime | None = None) -> datetime:
        """`now` (default: the current time) in the policy's timezone, for `hours` windows; a
        naive `now` is read as that timezone's wall clock."""
        tz = self.timezone
        if now is None:
            return datetime.now(tz) if tz else datetime.now().astimezone()
        if now.tzinfo is None:
            return now.replace(tzinfo=tz) if tz else now.astimezone()
        return now.astimezone(tz) if tz else now

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

    def is_customer_key(self, column: ColumnName, default_schema: str | None) -> bool:
        """Whether `column` is the policy's `customer_key`, matched as column classes are."""
        key = self.customer_key
        return key is not None and column_matches(split_pattern(key), column, default_schema)

    def unrestricted(self, role: Role | None) -> bool:
        """Whether `role` may run anything, sees every class the policy writes clear and scans
        nothing: its results need no masking at all. Every other role is restricted, and the
        classes the policy does not write itself (catalog columns, discovered columns) bind it."""
        if role is None or not role.unrestricted_statements or role.detect:
            return False
        return all(role.action_for(rule.cls) == "clear" for rule in self.columns)

    def http_unrestricted(self, role: Role | None) -> bool:
        """`unrestricted` (which is about SQL) and, over HTTP, every class an API's fields name
        is clear too: responses to this role need no masking. A role that sees a field class
        masked is restricted for HTTP even when it reads every column clear."""
        if role is None or not self.unrestricted(role):
            return False
        return all(role.action_for(rule.cls) == "clear" for api in self.apis.values() for rule in api.fields)

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
