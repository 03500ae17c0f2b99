"""DBA-written policy test cases (`maskgate test`): load suites, run them, report.

Owns: the case file format and the comparison of a decision against expectations. A suite is
YAML:

    policy: demo.yaml            # relative to this file
    schema: demo_schema.json     # optional saved schema (see `Schema.save`)
    cases:
      - name: vendor sees phone masked
        user: vendor_zhang
        sql: SELECT id, phone FROM crm.customers
        expect: allow            # allow | block
        reason: masked_predicate # for blocks (optional)
        masked: {phone: mask}    # result column name -> action (optional)
        rewritten: "SELECT …"    # exact rewritten SQL, or null for "unchanged" (optional)
        dialect: postgres        # optional
      - name: vendor may not search clients by mobile (HTTP)
        user: vendor_zhang
        request: GET /api/clients?mobile=13812345678   # METHOD /path?query, as sent
        body: {"filter": {"idNo": "x"}}                # optional parsed JSON body or form fields
        api: crm-api             # optional: default the policy's only api
        expect: block
        reason: masked_predicate

`lookups` (values compared with masked classes) and `classes` (sorted) may be expected of
either kind of case.

Zero cases is a failure: an empty test run proves nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from policies.decision import Allow, Decision
from policies.engine import Engine
from policies.http import decide_request, split_target
from policies.loader import MarkedLoader, PolicyError, load_policy
from policies.model import Policy
from policies.schema import Schema

CASE_KEYS = {
    "name",
    "user",
    "role",
    "sql",
    "expect",
    "reason",
    "masked",
    "rewritten",
    "dialect",
    "search_path",
    "database",
    "row_limit",
    "request",
    "body",
    "api",
    "lookups",
    "classes",
}


@dataclass
class CaseResult:
    name: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    location: str = ""


@dataclass
class SuiteResult:
    path: str
    results: list[CaseResult] = field(default_factory=list)
    error: str | None = None

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]


def check_case(case: dict[str, Any], decision: Decision) -> list[str]:
    """Differences between what the case expects and what the engine decided."""
    problems: list[str] = []
    expect = str(case.get("expect", "allow")).lower()
    got = "allow" if decision.allowed else "block"
    if expect != got:
        detail = f" ({decision.reason}: {decision.message})" if not isinstance(decision, Allow) else ""
        problems.append(f"expected {expect}, got {got}{detail}")
        return problems
    if not isinstance(decision, Allow):
        want = case.get("reason")
        if want and want != decision.reason:
            problems.append(f"expected reason {want}, got {decision.reason} ({decision.message})")
        return problems
    parts = decision.parts()
    columns = [c for p in parts for c in p.columns]
    for name, action in (case.get("masked") or {}).items():
        found = [c for c in columns if c.name.lower() == str(name).lower()]
        if not found and isinstance(name, int):
            found = [c for c in columns if c.index == name]
        if not found:
            problems.append(f"no result column {name!r} (columns: {[c.name for c in columns]})")
        elif all(c.action != action for c in found):
            problems.append(f"column {name}: expected {action}, got {found[0].action}")
    if "rewritten" in case:
        want = case["rewritten"]
        if (want or None) != decision.rewritten_sql:
            problems.append(f"rewritten SQL: expected {want!r}, got {decision.rewritten_sql!r}")
    if "row_limit" in case and case["row_limit"] != decision.row_limit:
        problems.append(f"row limit: expected {case['row_limit']}, got {decision.row_limit}")
    if "lookups" in case and case["lookups"] != decision.lookups:
        problems.append(f"lookups: expected {case['lookups']}, got {decision.lookups}")
    if "classes" in case and sorted(case["classes"] or []) != list(decision.classes):
        problems.append(f"classes: expected {sorted(case['classes'] or [])}, got {list(decision.classes)}")
    return problems


def default_api(policy: Policy) -> str | None:
    """The API an HTTP case or `explain --http` means when it names none: the policy's only one."""
    return next(iter(policy.apis)) if len(policy.apis) == 1 else None


def decide_http_case(policy: Policy, role: str, case: dict[str, Any]) -> Decision | str:
    """The decision for a case with `request: METHOD /path?query`, or what is wrong with it."""
    method, _, target = str(case["request"]).strip().partition(" ")
    target = target.strip()
    if not method or not target.startswith("/"):
        return f"`request` must be `METHOD /path?query`, got {case['request']!r}"
    if role not in policy.roles:
        return f"unknown role {role!r}"
    api = case.get("api", default_api(policy))
    if api is not None and api not in policy.apis:
        return f"unknown api {api!r} (the policy has {sorted(policy.apis)})"
    path, query = split_target(target)
    return decide_request(policy, policy.roles[role], api, method, path, query, case.get("body"))


def _role_for(policy: Policy, case: dict[str, Any]) -> str | None:
    if "role" in case:
        return str(case["role"])
    user = policy.users.get(str(case.get("user")))
    return user.role if user else None


def run_suite(
    path: str | Path,
    policy_path: str | Path | None = None,
    schema_path: str | Path | None = None,
    *,
    load_schema: Callable[[str | Path], Schema] = Schema.load,
) -> SuiteResult:
    """Run one cases file. `load_schema` reads its `schema:` (a saved JSON file by default; the
    CLI passes a loader that also reads live databases, which policies/ must not talk to)."""
    path = Path(path)
    result = SuiteResult(str(path))
    try:
        loader = MarkedLoader(path.read_text(encoding="utf-8"))
        loader.duplicate_errors = []
        try:
            doc = loader.get_single_data() or {}
        finally:
            loader.dispose()
    except (OSError, yaml.YAMLError) as e:
        result.error = f"{path}: cannot read cases: {e}"
        return result
    if not isinstance(doc, dict):
        result.error = f"{path}: a cases file is a mapping with `policy`, `cases`"
        return result
    base = path.parent
    pol: Any = policy_path
    if pol is None and "policy" in doc:
        pol = [base / p for p in doc["policy"]] if isinstance(doc["policy"], list) else base / doc["policy"]
    if pol is None:
        result.error = f"{path}: no `policy:` given (or pass --policy)"
        return result
    try:
        policy = load_policy(pol)
    except PolicyError as e:
        result.error = "\n".join(e.errors)
        return result
    sch = schema_path or (base / doc["schema"] if doc.get("schema") else None)
    try:
        schema = load_schema(sch) if sch else Schema()
    except Exception as e:  # a broken schema file fails the suite, with the reason
        result.error = f"{path}: cannot load schema {sch}: {e}"
        return result
    engine = Engine(policy, schema)
    cases = doc.get("cases") or []
    for i, case in enumerate(cases):
        marks = getattr(cases, "item_marks", None)
        where = f"{path}:{marks[i].line + 1}" if marks else f"{path}#{i + 1}"
        name = (
            str(case.get("name") or case.get("sql") or case.get("request", ""))[:80]
            if isinstance(case, dict)
            else f"case {i + 1}"
        )
        if not isinstance(case, dict) or ("sql" in case) == ("request" in case):
            problem = "a case needs `user` and one of `sql` or `request`"
            result.results.append(CaseResult(name, False, [problem], where))
            continue
        unknown = set(case) - CASE_KEYS
        if unknown:
            result.results.append(CaseResult(name, False, [f"unknown keys {sorted(unknown)}"], where))
            continue
        role = _role_for(policy, case)
        if role is None:
            result.results.append(CaseResult(name, False, [f"unknown user {case.get('user')!r}"], where))
            continue
        if "request" in case:
            http = decide_http_case(policy, role, case)
            if isinstance(http, str):
                result.results.append(CaseResult(name, False, [http], where))
                continue
            problems = check_case(case, http)
            result.results.append(CaseResult(name, not problems, problems, where))
            continue
        sp = case.get("search_path")
        decision = engine.decide(
            role,
            str(case["sql"]),
            dialect=str(case.get("dialect", "postgres")),
            search_path=tuple(sp) if sp else None,
            database=case.get("database"),
        )
        problems = check_case(case, decision)
        result.results.append(CaseResult(name, not problems, problems, where))
    return result
