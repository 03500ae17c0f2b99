"""Reading policy YAML into a compiled `Policy`, with every error located as file:line:col.

Owns: YAML parsing with position marks, validation of every key and value, merging a directory
of files, compiling row filters (parsed once here so a bad one is a load error), HTTP routes and
API field patterns, and the revision hash. A file with any error is not applied at all:
`load_policy` either returns a whole Policy or raises PolicyError listing every problem found.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlglot
import yaml
from sqlglot import exp

from policies.model import (
    ACTIONS,
    BUDGET_NAMES,
    BUILTIN_CLASSES,
    DAY_NAMES,
    DEFAULT_LOOKUPS_PER_HOUR,
    DEFAULT_MAX_ROWS,
    HTTP_METHODS,
    PREDICATE_MODES,
    STATEMENT_KINDS,
    Api,
    ColumnRule,
    FieldRule,
    HoursWindow,
    Policy,
    Role,
    RoleBudgets,
    Route,
    RowFilter,
    User,
)
from policies.names import has_glob, split_pattern
from policies.sql.dialects import POSTGRES
from policies.sql.parser import Unparsable, split


class PolicyError(Exception):
    """A policy that must not be applied. `errors` holds `file:line:col: message` entries."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


# --- YAML with marks -------------------------------------------------------------------------


class MarkedDict(dict):
    """A mapping that remembers where each key and value was written."""

    mark: yaml.Mark
    key_marks: dict[Any, yaml.Mark]
    value_marks: dict[Any, yaml.Mark]


class MarkedList(list):
    mark: yaml.Mark
    item_marks: list[yaml.Mark]


class MarkedLoader(yaml.SafeLoader):
    """SafeLoader that records marks on mappings and sequences and refuses duplicate keys
    (plain YAML silently keeps the last one, which would hide a DBA's mistake)."""

    duplicate_errors: list[tuple[yaml.Mark, str]]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> MarkedDict:  # type: ignore[override]
        self.flatten_mapping(node)
        out = MarkedDict()
        out.mark = node.start_mark
        out.key_marks = {}
        out.value_marks = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be plain scalars", key_node.start_mark
                )
            if key in out:
                self.duplicate_errors.append((key_node.start_mark, f"duplicate key `{key}`"))
            out[key] = self.construct_object(value_node, deep=True)
            out.key_marks[key] = key_node.start_mark
            out.value_marks[key] = value_node.start_mark
        return out

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> MarkedList:  # type: ignore[override]
        out = MarkedList(self.construct_object(child, deep=True) for child in node.value)
        out.mark = node.start_mark
        out.item_marks = [child.start_mark for child in node.value]
        return out


MarkedLoader.add_constructor("tag:yaml.org,2002:map", MarkedLoader.construct_mapping)
MarkedLoader.add_constructor("tag:yaml.org,2002:seq", MarkedLoader.construct_sequence)


# --- validation --------------------------------------------------------------------------------

TOP_KEYS = ("version", "timezone", "classes", "columns", "apis", "roles", "users", "customer_key")
API_KEYS = ("fields", "description")
ROLE_KEYS = (
    "statements",
    "tables",
    "max_rows",
    "see",
    "detect",
    "masked_predicates",
    "row_filters",
    "hours",
    "functions",
    "database_role",
    "lookups_per_hour",
    "routes",
    "budgets",
    "description",
)
USER_KEYS = ("role", "password", "mysql_password", "tokens", "description")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]*$")
# A PostgreSQL role name as pg_roles stores it; maskgate quotes it when it names it upstream.
DATABASE_ROLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
PATTERN_PART_RE = re.compile(r"^[A-Za-z0-9_$*?\[\]!-]+$")
SCRAM_RE = re.compile(r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$")
# MySQL's mysql_native_password hash as PASSWORD('x') prints it: "*" + hex(SHA1(SHA1(password))).
HEX40_RE = re.compile(r"^[0-9A-Fa-f]{40}$")
# A bearer token's hash as `maskgate token` prints it.
TOKEN_RE = re.compile(r"^sha256:([0-9A-Fa-f]{64})$")
# What a route's path may not hold: it is written decoded, without a query, as the upstream
# reads paths (policies/http.py normalises requests to the same form).
ROUTE_PATH_BAD = re.compile(r"[%?#\\\s\x00-\x1f\x7f]")
# One step of a field pattern: a key glob, then any number of `[]` (list elements).
FIELD_STEP_RE = re.compile(r"^(?P<key>.*?)(?P<lists>(?:\[\])*)$")
HOURS_RE = re.compile(
    r"^\s*(?P<days>[A-Za-z,\- ]+?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$"
)


def _hint(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


class _Collector:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, path: str, mark: yaml.Mark | None, message: str) -> None:
        if mark is None:
            self.errors.append(f"{path}:1:1: {message}")
        else:
            self.errors.append(f"{path}:{mark.line + 1}:{mark.column + 1}: {message}")


def _km(mapping: Any, key: Any) -> yaml.Mark | None:
    return getattr(mapping, "key_marks", {}).get(key) or getattr(mapping, "mark", None)


def _vm(mapping: Any, key: Any) -> yaml.Mark | None:
    return getattr(mapping, "value_marks", {}).get(key) or getattr(mapping, "mark", None)


def _im(seq: Any, i: int) -> yaml.Mark | None:
    marks = getattr(seq, "item_marks", None)
    return marks[i] if marks and i < len(marks) else getattr(seq, "mark", None)


def _mysql_password(c: _Collector, path: str, body: MarkedDict, user: str) -> str | None:
    """A user's `mysql_password`, upper-cased, or None after recording why it is not one."""
    value = body.get("mysql_password")
    mark = _vm(body, "mysql_password")
    where = (
        f'user `{user}`: mysql_password must be MySQL\'s "*" + 40 hex digits (run `maskgate passwd --mysql`)'
    )
    if not isinstance(value, str):
        c.add(path, mark, f"{where}; got {type(value).__name__}")
        return None
    if not value.startswith("*"):
        c.add(path, mark, f"{where}; it does not start with `*`")
        return None
    digits = value[1:]
    if len(digits) != 40:
        c.add(path, mark, f"{where}; it has {len(digits)} characters after `*`")
        return None
    if not HEX40_RE.match(digits):
        c.add(path, mark, f"{where}; it has characters that are not hex digits")
        return None
    # MariaDB prints upper case; some tools lower. One stored form keeps the revision stable.
    return "*" + digits.upper()


def _check_keys(c: _Collector, path: str, mapping: MarkedDict, allowed: tuple[str, ...], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            c.add(path, _km(mapping, key), f"unknown key `{key}` in {where}{_hint(key, allowed)}")


def _pattern_ok(pattern: str, min_parts: int, max_parts: int) -> str | None:
    parts = pattern.split(".")
    if not (min_parts <= len(parts) <= max_parts):
        want = "schema.table" if min_parts == 2 and max_parts == 3 else "schema.table.column"
        return f"bad pattern `{pattern}`: expected {want} (globs allowed)"
    for part in parts:
        if not part or not PATTERN_PART_RE.match(part) or part.count("[") != part.count("]"):
            return f"bad pattern `{pattern}`: empty or invalid part `{part}`"
    return None


def _parse_hours(text: str) -> HoursWindow | str:
    m = HOURS_RE.match(text)
    if not m:
        return f"bad hours `{text}`: expected e.g. `Mon-Fri 09:00-18:00`"
    days: set[int] = set()
    for chunk in m["days"].replace(" ", "").lower().split(","):
        if chunk in ("daily", "*", "all"):
            days.update(range(7))
            continue
        ends = chunk.split("-")
        if len(ends) > 2 or any(e not in DAY_NAMES for e in ends):
            return f"bad day `{chunk}` in hours `{text}`: use Mon..Sun, ranges like Mon-Fri, or daily"
        a, b = DAY_NAMES.index(ends[0]), DAY_NAMES.index(ends[-1])
        i = a
        while True:
            days.add(i)
            if i == b:
                break
            i = (i + 1) % 7
    try:
        sh, sm = (int(x) for x in m["start"].split(":"))
        eh, em = (int(x) for x in m["end"].split(":"))
        start = time(sh, sm)
        end = None if (eh, em) == (24, 0) else time(eh, em)
    except ValueError:
        return f"bad time in hours `{text}`"
    if end == start:
        return f"empty hours window `{text}`"
    return HoursWindow(frozenset(days), start, end, text.strip())


def _glob_segment_error(part: str) -> str | None:
    """Why `part` is not a usable glob of one name (a path segment, a JSON key), or None."""
    if "**" in part and part != "**":
        return f"`**` must be a whole segment, not part of `{part}`"
    depth = 0
    for ch in part:
        if ch == "[":
            if depth:
                return f"unbalanced `[` in `{part}`"
            depth = 1
        elif ch == "]" and depth:
            depth = 0
        elif ch == "]":
            return f"unbalanced `]` in `{part}`"
    if depth:
        return f"unbalanced `[` in `{part}`"
    if "[]" in part:
        return f"empty character class `[]` in `{part}`"
    return None


def parse_route(text: str) -> Route | str:
    """A role's route (`GET /api/clients/**`, `GET /api/reports/** binary`, `* /api/ping`), or
    the reason it is not one."""
    parts = text.split()
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "binary"):
        return (
            f"bad route `{text}`: expected `METHOD /path` with an optional ` binary`, "
            "e.g. `GET /api/clients/**`"
        )
    raw_method, path = parts[0], parts[1]
    method = raw_method.upper()
    if method != "*" and method not in HTTP_METHODS:
        return (
            f"bad method `{raw_method}` in route `{text}`: use one of {', '.join(HTTP_METHODS)} or `*`"
            + _hint(method, HTTP_METHODS)
        )
    if not path.startswith("/"):
        return f"bad path `{path}` in route `{text}`: a path starts with `/`"
    if bad := ROUTE_PATH_BAD.search(path):
        return (
            f"bad path `{path}` in route `{text}`: `{bad.group()!s}` is not allowed (write the path "
            "decoded, without query, `%` escapes or backslashes)"
        )
    segments = path[1:].split("/")
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash names the same resource (policies.model.path_segments)
    for segment in segments:
        if segment == "":
            return f"bad path `{path}` in route `{text}`: empty segment (`//`)"
        if segment in (".", ".."):
            return f"bad path `{path}` in route `{text}`: `{segment}` segments are not allowed"
        if err := _glob_segment_error(segment):
            return f"bad path `{path}` in route `{text}`: {err}"
    return Route(method, tuple(segments), len(parts) == 3, " ".join(parts))


def parse_field_pattern(text: str) -> tuple[str, ...] | str:
    """An API field pattern (`**.mobile`, `data[].contact.phone`, `[].idNo`) as FieldRule
    tokens, or the reason it is not one."""
    if not text or text != text.strip():
        return f"bad field pattern `{text}`: empty or surrounded by spaces"
    tokens: list[str] = []
    for step in text.split("."):
        m = FIELD_STEP_RE.match(step)
        assert m is not None  # the expression matches every string
        key, lists = m["key"], len(m["lists"]) // 2
        if not key and not lists:
            return f"bad field pattern `{text}`: empty step (two dots, or a leading or trailing dot)"
        if key == "**" and lists:
            return f"bad field pattern `{text}`: `**` already covers list elements; write `**` alone"
        if any(ch.isspace() for ch in key):
            return f"bad field pattern `{text}`: spaces in `{key}`"
        if key and (err := _glob_segment_error(key)):
            return f"bad field pattern `{text}`: {err}"
        if key:
            tokens.append(key)
        tokens.extend(["[]"] * lists)
    return tuple(tokens)


def parse_row_filter(sql: str) -> exp.Expression:
    """Parse a row filter once: exactly one condition over the table's columns (what follows WHERE).
    Raises ValueError with a message in the policy author's terms."""
    try:
        chunks = split(sql, POSTGRES)
    except Unparsable as e:
        raise ValueError(f"row filter `{sql}` cannot be read: {e}") from None
    if len(chunks) != 1:
        raise ValueError(
            f"row filter `{sql}` must be one condition (such as `branch_id = 12`), not several statements"
        )
    try:
        tree = sqlglot.parse_one(chunks[0].text, read="postgres", into=exp.Condition)
    except sqlglot.errors.SqlglotError:
        raise ValueError(
            f"row filter `{sql}` is not a condition over the table's columns (such as `branch_id = 12`)"
        ) from None
    if isinstance(tree, exp.Command | exp.Query | exp.DDL | exp.DML) or tree.find(exp.Command):
        raise ValueError(f"row filter `{sql}` must be a condition, not a statement")
    return tree


class _FileData:
    def __init__(self, path: str, data: MarkedDict) -> None:
        self.path = path
        self.data = data


def _read_file(c: _Collector, path: Path) -> _FileData | None:
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        c.add(shown, None, f"cannot read policy file: {e}")
        return None
    loader = MarkedLoader(text)
    loader.duplicate_errors = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        if problem.startswith("found undefined alias"):
            # YAML reads an unquoted `*…` as an alias: the likely cause is a bare mysql_password.
            problem += ' (a value starting with `*`, such as a mysql_password, must be quoted: "*…")'
        c.add(shown, mark, f"YAML syntax error: {problem}")
        return None
    finally:
        loader.dispose()
    for mark, msg in loader.duplicate_errors:
        c.add(shown, mark, msg)
    if data is None:
        data = MarkedDict()
        data.mark, data.key_marks, data.value_marks = None, {}, {}  # type: ignore[assignment]
    if not isinstance(data, dict):
        c.add(shown, getattr(data, "mark", None), "a policy file must be a mapping with `version: 1`")
        return None
    return _FileData(shown, data)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def load_policy(path: str | Path | list[str | Path]) -> Policy:
    """Load a policy file, a directory whose *.yaml files are merged, or a list of either;
    raise PolicyError listing every problem."""
    roots = [Path(p) for p in path] if isinstance(path, list | tuple) else [Path(path)]
    c = _Collector()
    paths: list[Path] = []
    for root in roots:
        if not root.exists():
            raise PolicyError([f"{root}:1:1: no such policy file or directory"])
        paths += _files(root)
    files = [f for f in (_read_file(c, p) for p in paths) if f is not None]
    if not files and not c.errors:
        raise PolicyError([f"{roots[0]}:1:1: no *.yaml policy files found"])
    return _compile(c, files)


def _compile(c: _Collector, files: list[_FileData]) -> Policy:
    # First pass: top-level keys, declared classes, timezone.
    custom_classes: set[str] = set()
    tz_name: str | None = None
    for f in files:
        d = f.data
        _check_keys(c, f.path, d, TOP_KEYS, "the policy")
        if "version" not in d:
            c.add(f.path, d.mark, "missing `version: 1`")
        elif d["version"] != 1:
            c.add(f.path, _vm(d, "version"), f"unsupported version `{d['version']}`: expected 1")
        if "timezone" in d:
            name = d["timezone"]
            try:
                ZoneInfo(str(name))
                if tz_name is not None and tz_name != name:
                    c.add(f.path, _vm(d, "timezone"), f"timezone `{name}` conflicts with `{tz_name}`")
                tz_name = str(name)
            except (ZoneInfoNotFoundError, ValueError):
                c.add(f.path, _vm(d, "timezone"), f"unknown timezone `{name}`")
        if "classes" in d:
            cl = d["classes"]
            if not isinstance(cl, list):
                c.add(f.path, _vm(d, "classes"), "`classes` must be a list of class names")
            else:
                for i, name in enumerate(cl):
                    if not isinstance(name, str) or not NAME_RE.match(name):
                        c.add(f.path, _im(cl, i), f"bad class name `{name}`")
                    else:
                        custom_classes.add(name)
    known_classes = BUILTIN_CLASSES | custom_classes
    customer_key = _customer_key(c, files)

    # APIs: JSON field classification for the HTTP side.
    apis: dict[str, Api] = {}
    for f in files:
        section = f.data.get("apis")
        if section is None:
            continue
        if not isinstance(section, dict):
            c.add(f.path, _vm(f.data, "apis"), "`apis` must map an API name to its `fields`")
            continue
        for name, body in section.items():
            if not isinstance(name, str) or not NAME_RE.match(name):
                c.add(f.path, _km(section, name), f"bad api name `{name}`")
                continue
            if name in apis:
                c.add(f.path, _km(section, name), f"api `{name}` is defined twice")
                continue
            api = _compile_api(c, f.path, name, body, _vm(section, name), known_classes)
            if api is not None:
                apis[name] = api

    # Columns.
    rules: list[ColumnRule] = []
    seen_columns: dict[str, str] = {}
    for f in files:
        cols = f.data.get("columns")
        if cols is None:
            continue
        if not isinstance(cols, dict):
            c.add(f.path, _vm(f.data, "columns"), "`columns` must map schema.table.column to a class")
            continue
        for pat, cls in cols.items():
            if not isinstance(pat, str) or (err := _pattern_ok(pat, 3, 4)):
                c.add(f.path, _km(cols, pat), err if isinstance(pat, str) else f"bad column pattern `{pat}`")
                continue
            if not isinstance(cls, str) or cls not in known_classes:
                hint = _hint(cls, sorted(known_classes))
                c.add(
                    f.path,
                    _vm(cols, pat),
                    f"unknown class `{cls}`{hint}; declare custom classes under `classes:`",
                )
                continue
            key = pat.lower()
            if key in seen_columns and seen_columns[key] != cls:
                c.add(f.path, _km(cols, pat), f"column `{pat}` already classified as `{seen_columns[key]}`")
                continue
            seen_columns[key] = cls
            rules.append(ColumnRule(split_pattern(pat), pat, cls, not has_glob(pat)))

    # Roles.
    roles: dict[str, Role] = {}
    for f in files:
        rs = f.data.get("roles")
        if rs is None:
            continue
        if not isinstance(rs, dict):
            c.add(f.path, _vm(f.data, "roles"), "`roles` must be a mapping of role name to settings")
            continue
        for name, body in rs.items():
            if not isinstance(name, str) or not NAME_RE.match(name):
                c.add(f.path, _km(rs, name), f"bad role name `{name}`")
                continue
            if name in roles:
                c.add(f.path, _km(rs, name), f"role `{name}` is defined twice")
                continue
            role = _compile_role(c, f.path, name, body, _vm(rs, name), known_classes)
            if role is not None:
                roles[name] = role

    # Users.
    users: dict[str, User] = {}
    token_owner: dict[str, str] = {}
    for f in files:
        us = f.data.get("users")
        if us is None:
            continue
        if not isinstance(us, dict):
            c.add(f.path, _vm(f.data, "users"), "`users` must be a mapping of user name to settings")
            continue
        for name, body in us.items():
            if not isinstance(name, str) or not NAME_RE.match(name):
                c.add(f.path, _km(us, name), f"bad user name `{name}`")
                continue
            if name in users:
                c.add(f.path, _km(us, name), f"user `{name}` is defined twice")
                continue
            if not isinstance(body, dict):
                c.add(f.path, _vm(us, name), f"user `{name}` must be a mapping with `role` and `password`")
                continue
            _check_keys(c, f.path, body, USER_KEYS, f"user `{name}`")
            role = body.get("role")
            if role is None:
                c.add(f.path, body.mark, f"user `{name}` has no `role`")
                continue
            if role not in roles:
                all_roles = [r for f2 in files for r in (f2.data.get("roles") or {})]
                if role not in all_roles:
                    c.add(f.path, _vm(body, "role"), f"unknown role `{role}`{_hint(role, all_roles)}")
                continue
            pw = body.get("password")
            if not isinstance(pw, str) or not SCRAM_RE.match(pw):
                c.add(
                    f.path,
                    _vm(body, "password") if "password" in body else body.mark,
                    f"user `{name}`: password must be a SCRAM-SHA-256 verifier (run `maskgate passwd`)",
                )
                continue
            mysql_pw: str | None = None
            if "mysql_password" in body:
                mysql_pw = _mysql_password(c, f.path, body, name)
                if mysql_pw is None:
                    continue
            tokens: list[str] = []
            if "tokens" in body:
                before = len(c.errors)
                for token, m in _string_list(c, f.path, body, "tokens", 'hashes like "sha256:<64 hex>"'):
                    found = TOKEN_RE.match(token)
                    if not found:
                        c.add(
                            f.path,
                            m,
                            f'user `{name}`: a token must be "sha256:" and 64 hex digits (run '
                            "`maskgate token USER`; the policy holds only the hash)",
                        )
                        continue
                    digest = found[1].lower()
                    if digest in token_owner:
                        # One token naming two people (or one twice) is a copy-paste slip that
                        # would make a login ambiguous.
                        c.add(
                            f.path, m, f"user `{name}`: token already given to user `{token_owner[digest]}`"
                        )
                        continue
                    token_owner[digest] = name
                    tokens.append(digest)
                if len(c.errors) > before:
                    continue
            users[name] = User(name, role, pw, mysql_pw, tuple(tokens))

    if c.errors:
        raise PolicyError(c.errors)
    tz = ZoneInfo(tz_name) if tz_name else None
    revision = _revision(rules, roles, users, custom_classes, tz_name, apis, customer_key)
    return Policy(
        columns=tuple(rules),
        roles=roles,
        users=users,
        classes=frozenset(known_classes),
        revision=revision,
        timezone=tz,
        timezone_name=tz_name,
        sources=tuple(f.path for f in files),
        apis=apis,
        customer_key=customer_key,
    )


def _customer_key(c: _Collector, files: list[_FileData]) -> str | None:
    """The top-level `customer_key`: one column, named without globs (one customer is one value
    of one column), given once across the merged files."""
    found: tuple[str, str] | None = None  # (key, file it came from)
    for f in files:
        if "customer_key" not in f.data:
            continue
        value = f.data["customer_key"]
        mark = _vm(f.data, "customer_key")
        if not isinstance(value, str) or (err := _pattern_ok(value, 3, 4)):
            c.add(
                f.path,
                mark,
                err
                if isinstance(value, str)
                else "`customer_key` must name one column: database.table.column",
            )
            continue
        if has_glob(value):
            c.add(f.path, mark, f"`customer_key` must name one column, without globs: `{value}`")
            continue
        if found is not None and found[0].lower() != value.lower():
            c.add(f.path, mark, f"`customer_key` `{value}` conflicts with `{found[0]}` in {found[1]}")
            continue
        found = found or (value, f.path)
    return found[0] if found else None


def _budgets(c: _Collector, path: str, body: MarkedDict) -> RoleBudgets | None:
    """A role's `budgets` mapping, or None after recording why it is not one."""
    raw = body["budgets"]
    if not isinstance(raw, dict) or not raw:
        c.add(
            path,
            _vm(body, "budgets"),
            "`budgets` must map a budget (rows_per_hour, distinct_customers_per_day) to a "
            "positive whole number",
        )
        return None
    before = len(c.errors)
    _check_keys(c, path, raw, BUDGET_NAMES, "`budgets`")
    limits: dict[str, int] = {}
    for name in BUDGET_NAMES:
        if name not in raw:
            continue
        v = raw[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            c.add(path, _vm(raw, name), f"`{name}` must be a positive whole number, got `{v}`")
            continue
        limits[name] = v
    if len(c.errors) > before:
        return None
    return RoleBudgets(**limits)


def _string_list(c: _Collector, path: str, body: MarkedDict, key: str, what: str) -> list[tuple[str, Any]]:
    value = body.get(key)
    if isinstance(value, str):
        return [(value, _vm(body, key))]
    if not isinstance(value, list):
        c.add(path, _vm(body, key), f"`{key}` must be a list of {what}")
        return []
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            c.add(path, _im(value, i), f"`{key}` entries must be strings, got `{item}`")
        else:
            out.append((item, _im(value, i)))
    return out


def _compile_api(
    c: _Collector, path: str, name: str, body: Any, mark: Any, known_classes: frozenset[str]
) -> Api | None:
    if not isinstance(body, dict) or "fields" not in body:
        c.add(path, mark, f"api `{name}` must be a mapping with `fields` (JSON path pattern -> class)")
        return None
    before = len(c.errors)
    _check_keys(c, path, body, API_KEYS, f"api `{name}`")
    fields = body["fields"]
    if not isinstance(fields, dict):
        c.add(path, _vm(body, "fields"), f"api `{name}`: `fields` must map JSON path patterns to classes")
        return None
    rules: list[FieldRule] = []
    seen: dict[tuple[str, ...], str] = {}
    for pat, cls in fields.items():
        parsed = parse_field_pattern(pat) if isinstance(pat, str) else f"bad field pattern `{pat}`"
        if isinstance(parsed, str):
            c.add(path, _km(fields, pat), parsed)
            continue
        if not isinstance(cls, str) or cls not in known_classes:
            c.add(
                path,
                _vm(fields, pat),
                f"unknown class `{cls}`{_hint(cls, sorted(known_classes))}; "
                "declare custom classes under `classes:`",
            )
            continue
        # Keys match case-insensitively, so `**.Mobile` repeats `**.mobile`.
        key = tuple(t.lower() for t in parsed)
        if key in seen:
            c.add(path, _km(fields, pat), f"field pattern `{pat}` repeats `{seen[key]}` in api `{name}`")
            continue
        seen[key] = str(pat)
        rules.append(FieldRule(parsed, str(pat), cls))
    if len(c.errors) > before:
        return None
    return Api(name, tuple(rules))


def _compile_role(
    c: _Collector, path: str, name: str, body: Any, mark: Any, known_classes: frozenset[str]
) -> Role | None:
    if not isinstance(body, dict):
        c.add(path, mark, f"role `{name}` must be a mapping")
        return None
    before = len(c.errors)
    _check_keys(c, path, body, ROLE_KEYS, f"role `{name}`")

    statements: set[str] = {"select"}
    if "statements" in body:
        statements = set()
        for kind, m in _string_list(c, path, body, "statements", "statement kinds"):
            if kind.lower() not in STATEMENT_KINDS:
                c.add(path, m, f"unknown statement kind `{kind}`{_hint(kind.lower(), STATEMENT_KINDS)}")
            statements.add(kind.lower())

    allow: list[tuple[str, ...]] = []
    deny: list[tuple[str, ...]] = []
    if "tables" in body:
        for pat, m in _string_list(c, path, body, "tables", "table globs"):
            negative = pat.startswith("!")
            raw = pat[1:] if negative else pat
            if raw == "*":
                # A lone `*` means every table, as a DBA reads it (every schema, every name).
                raw = "*.*"
            if err := _pattern_ok(raw, 2, 3):
                c.add(path, m, err)
                continue
            (deny if negative else allow).append(split_pattern(raw))

    max_rows: int | None = DEFAULT_MAX_ROWS
    if "max_rows" in body:
        v = body["max_rows"]
        if v is None or v == "unlimited":
            max_rows = None
        elif isinstance(v, bool) or not isinstance(v, int) or v < 1:
            c.add(
                path,
                _vm(body, "max_rows"),
                f"`max_rows` must be a positive integer or `unlimited`, got `{v}`",
            )
        else:
            max_rows = v

    lookups: int | None = DEFAULT_LOOKUPS_PER_HOUR
    if "lookups_per_hour" in body:
        v = body["lookups_per_hour"]
        if v is None or v == "unlimited":
            lookups = None
        elif isinstance(v, bool) or not isinstance(v, int) or v < 0:
            c.add(
                path,
                _vm(body, "lookups_per_hour"),
                f"`lookups_per_hour` must be a whole number or `unlimited`, got `{v}`",
            )
        else:
            lookups = v

    see: dict[str, str] = {}
    if "see" in body:
        s = body["see"]
        if not isinstance(s, dict):
            c.add(path, _vm(body, "see"), "`see` must map a class to an action")
        else:
            for cls, action in s.items():
                if cls not in known_classes:
                    c.add(path, _km(s, cls), f"unknown class `{cls}`{_hint(cls, sorted(known_classes))}")
                    continue
                if action not in ACTIONS:
                    c.add(path, _vm(s, cls), f"unknown action `{action}`{_hint(action, ACTIONS)}")
                    continue
                see[cls] = action

    if "detect" in body:
        detect: set[str] = set()
        for cls, m in _string_list(c, path, body, "detect", "classes"):
            if cls not in known_classes:
                c.add(path, m, f"unknown class `{cls}`{_hint(cls, sorted(known_classes))}")
            detect.add(cls)
    else:
        # Default: scan for every class this role does not see in clear.
        detect = {cls for cls in known_classes if see.get(cls, "mask") != "clear"}

    mode = body.get("masked_predicates", "deny")
    if mode not in PREDICATE_MODES:
        c.add(
            path,
            _vm(body, "masked_predicates"),
            f"unknown masked_predicates `{mode}`{_hint(mode, PREDICATE_MODES)}",
        )

    filters: list[RowFilter] = []
    if "row_filters" in body:
        rf = body["row_filters"]
        if not isinstance(rf, dict):
            c.add(path, _vm(body, "row_filters"), "`row_filters` must map schema.table to a SQL predicate")
        else:
            for table, sql in rf.items():
                if not isinstance(table, str) or (err := _pattern_ok(table, 2, 3)):
                    c.add(path, _km(rf, table), err if isinstance(table, str) else f"bad table `{table}`")
                    continue
                if not isinstance(sql, str) or not sql.strip():
                    c.add(path, _vm(rf, table), f"row filter for `{table}` must be a SQL predicate string")
                    continue
                try:
                    tree = parse_row_filter(sql)
                except ValueError as e:
                    c.add(path, _vm(rf, table), str(e))
                    continue
                filters.append(RowFilter(split_pattern(table), sql, tree))

    hours: list[HoursWindow] = []
    if "hours" in body:
        for text, m in _string_list(c, path, body, "hours", "windows like `Mon-Fri 09:00-18:00`"):
            w = _parse_hours(text)
            if isinstance(w, str):
                c.add(path, m, w)
            else:
                hours.append(w)

    functions: set[str] = set()
    if "functions" in body:
        for fn, m in _string_list(c, path, body, "functions", "function names"):
            if not all(NAME_RE.match(p) for p in fn.split(".")):
                c.add(path, m, f"bad function name `{fn}`")
            functions.add(fn.lower())

    database_role: str | None = None
    if "database_role" in body:
        v = body["database_role"]
        if not isinstance(v, str) or not DATABASE_ROLE_RE.match(v) or len(v.encode()) > 63:
            c.add(
                path,
                _vm(body, "database_role"),
                f"`database_role` must be a database role name (letters, digits, _ and $, at most "
                f"63 bytes, as stored in pg_roles), got `{v}`",
            )
        else:
            database_role = v

    routes: list[Route] = []
    if "routes" in body:
        seen_routes: dict[tuple[str, tuple[str, ...]], str] = {}
        for text, m in _string_list(c, path, body, "routes", "routes like `GET /api/clients/**`"):
            route = parse_route(text)
            if isinstance(route, str):
                c.add(path, m, route)
                continue
            key = (route.method, route.pattern)
            if key in seen_routes:
                c.add(path, m, f"route `{text}` repeats `{seen_routes[key]}` in role `{name}`")
                continue
            seen_routes[key] = text
            routes.append(route)

    budgets: RoleBudgets | None = None
    if "budgets" in body:
        budgets = _budgets(c, path, body)

    if len(c.errors) > before:
        return None
    return Role(
        name=name,
        statements=frozenset(statements),
        tables_allow=tuple(allow),
        tables_deny=tuple(deny),
        max_rows=max_rows,
        lookups_per_hour=lookups,
        see=see,
        detect=frozenset(detect),
        masked_predicates=str(mode),
        row_filters=tuple(filters),
        hours=tuple(hours),
        functions=frozenset(functions),
        database_role=database_role,
        routes=tuple(routes),
        budgets=budgets,
    )


def _revision(
    rules: list[ColumnRule],
    roles: dict[str, Role],
    users: dict[str, User],
    classes: set[str],
    tz: str | None,
    apis: dict[str, Api] | None = None,
    customer_key: str | None = None,
) -> str:
    """Hash of the compiled content: formatting, comments and key order do not change it."""
    doc = {
        "classes": sorted(classes),
        "timezone": tz,
        "columns": sorted((".".join(r.pattern), r.cls) for r in rules),
        "roles": {
            name: {
                "statements": sorted(r.statements),
                "allow": sorted(".".join(p) for p in r.tables_allow),
                "deny": sorted(".".join(p) for p in r.tables_deny),
                "max_rows": r.max_rows,
                "see": dict(sorted(r.see.items())),
                "detect": sorted(r.detect),
                "masked_predicates": r.masked_predicates,
                "row_filters": sorted((".".join(f.pattern), f.expression.sql()) for f in r.row_filters),
                "hours": sorted(w.text for w in r.hours),
                "functions": sorted(r.functions),
            }
            # Only when set, so that policies without them keep their revision.
            | ({"database_role": r.database_role} if r.database_role else {})
            | (
                {"routes": sorted([rt.method, "/".join(rt.pattern), rt.binary] for rt in r.routes)}
                if r.routes
                else {}
            )
            | ({"budgets": dict(r.budgets.items())} if r.budgets else {})
            for name, r in sorted(roles.items())
        },
        # mysql_password only when set, so that policies without it keep their revision.
        "users": {
            n: [
                u.role,
                u.password,
                *([u.mysql_password] if u.mysql_password else []),
                *([{"tokens": sorted(u.tokens)}] if u.tokens else []),
            ]
            for n, u in sorted(users.items())
        },
    }
    if apis:
        # Field order matters (the first matching rule wins), so it is kept as written.
        doc["apis"] = {n: [[list(r.pattern), r.cls] for r in a.fields] for n, a in sorted(apis.items())}
    if customer_key:
        doc["customer_key"] = customer_key.lower()
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
