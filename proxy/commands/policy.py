"""`maskgate check | explain | test | passwd`: the policy commands DBAs run by hand or in CI.

Owns argument parsing and printing only; every judgement comes from policies/.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from policies import Engine, PolicyError, Schema, load_policy
from policies.cases import decide_http_case, run_suite
from policies.checks import row_filter_errors
from policies.decision import Allow, Block, Decision
from policies.http import binary_allowed, forward_path, split_target
from policies.names import ColumnName, TableName, column_matches, has_glob
from policies.passwords import scram_verifier
from policies.schema import DatabaseRole
from policies.sql.analysis import AnalysisError, Analyzer
from policies.sql.dialects import dialect_facts
from proxy.mysql import catalog as mysql_catalog
from proxy.mysql.auth import native_hash
from proxy.pg import catalog


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("check", help="validate a policy file or directory")
    p.add_argument("policy")
    p.add_argument(
        "--schema",
        help="PostgreSQL DSN, mysql:// URL or saved schema JSON, to warn about missing columns and views",
    )
    p.set_defaults(func=cmd_check)

    p = subparsers.add_parser(
        "explain", help="show the decision for one SQL string (or, with --http, one HTTP request)"
    )
    p.add_argument("--policy", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--schema")
    # Default: the dialect of the schema (mysql for a mysql:// --schema), else postgres.
    p.add_argument("--dialect", choices=["postgres", "mysql"])
    p.add_argument("--database")
    p.add_argument("--format", default="json", choices=["json", "table"])
    p.add_argument(
        "--http",
        action="store_true",
        help='the argument is an HTTP request line, "METHOD /path?query", for the policy\'s api',
    )
    p.add_argument("--api", help="with --http: the policy's api (default: its only one)")
    p.add_argument("--body", help="with --http: the request body as JSON")
    p.add_argument("sql", metavar="SQL|REQUEST")
    p.set_defaults(func=cmd_explain)

    p = subparsers.add_parser("test", help="run DBA policy test cases")
    p.add_argument("cases", nargs="+")
    p.add_argument("--policy", help="override the suite's `policy:`")
    p.add_argument("--schema", help="override the suite's `schema:`")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_test)

    p = subparsers.add_parser("passwd", help="print a SCRAM-SHA-256 verifier for a password")
    p.add_argument(
        "--mysql",
        action="store_true",
        help='print the MySQL mysql_native_password hash ("*HEX") for a user\'s `mysql_password` instead',
    )
    p.set_defaults(func=cmd_passwd)


def _load(path: str) -> Any:
    try:
        return load_policy(path)
    except PolicyError as e:
        for err in e.errors:
            print(err, file=sys.stderr)
        return None


def load_schema(source: str | Path | None, discover: bool = True) -> Schema:
    """The schema `--schema` names: a live database (its DSN) through its protocol's catalog
    loader, sampled for personal data in unclassified columns as `serve` does (unless
    `discover` is off), else a saved JSON file; none gives an empty schema."""
    if not source:
        return Schema()
    text = str(source)
    # MySQL first: a mysql:// URL with a query string also looks like a libpq `key=value` DSN.
    if mysql_catalog.is_dsn(text):
        return mysql_catalog.load_discovered(text) if discover else mysql_catalog.load_schema(text)
    if catalog.is_dsn(text):
        return catalog.load_discovered(text) if discover else catalog.load_schema(text)
    return Schema.load(text)


def cmd_check(args: argparse.Namespace) -> int:
    policy = _load(args.policy)
    if policy is None:
        return 1
    warnings: list[str] = []
    if args.schema:
        try:
            schema = load_schema(args.schema, discover=False)
        except Exception as e:
            print(f"cannot load schema {args.schema}: {e}", file=sys.stderr)
            return 1
        warnings = schema_warnings(policy, schema)
        if mysql_catalog.is_dsn(str(args.schema)):
            # MySQL shows an account only its own grants, so the service account cannot read
            # what the database roles may write: say so rather than pass silently.
            if database_roles(policy):
                warnings.append("database roles' write grants are not checked on MySQL")
        elif catalog.is_dsn(str(args.schema)):
            runs_as = database_roles(policy)
            try:
                rights = catalog.load_database_roles(args.schema, sorted(set(runs_as.values()) - {None}))
            except Exception as e:
                print(f"cannot read database roles from {args.schema}: {e}", file=sys.stderr)
                return 1
            warnings += role_warnings(policy, runs_as, rights)
        errors = row_filter_errors(policy, schema)
        if errors:
            for e in errors:
                print(f"error: {e}", file=sys.stderr)
            return 1
    for w in warnings:
        print(f"warning: {w}")
    apis = ""
    if policy.apis:
        fields = sum(len(a.fields) for a in policy.apis.values())
        apis = f", {len(policy.apis)} api{'s' if len(policy.apis) > 1 else ''} ({fields} field patterns)"
    print(
        f"ok: revision {policy.revision}, {len(policy.roles)} roles, {len(policy.users)} users, "
        f"{len(policy.columns)} classified column patterns{apis}"
    )
    return 0


def schema_warnings(policy: Any, schema: Schema) -> list[str]:
    facts = dialect_facts(schema.dialect or "postgres")
    out: list[str] = []
    columns = [
        ColumnName(TableName(schema.database, t.schema, t.name), c)
        for t in schema.tables.values()
        for c in t.columns
    ]
    for rule in policy.columns:
        if not any(column_matches(rule.pattern, c, facts.default_schema) for c in columns):
            kind = "pattern matches no column" if has_glob(rule.text) else "column does not exist"
            out.append(f"classified {rule.text} ({rule.cls}): {kind} in the schema")
    analyzer = Analyzer(schema, facts, facts.default_search_path, schema.database)
    for t in schema.tables.values():
        if not t.is_view:
            continue
        name = TableName(schema.database, t.schema, t.name)
        try:
            outs = analyzer.view_outputs(name) or []
        except AnalysisError as e:
            out.append(f"view {name}: cannot analyse its definition ({e})")
            continue
        classes = sorted(
            {c for o in outs for src in o.sources if (c := policy.classify(src, facts.default_schema))}
        )
        if classes:
            out.append(
                f"view {name} exposes classified columns ({', '.join(classes)}); its columns are "
                "masked through the view, but check that roles listing it in `tables` should see them"
            )
    return out


# The statement kind each database privilege lets a role use by itself (TRUNCATE and CREATE are
# `ddl` in a policy's `statements`; nextval/setval on a sequence need `update`).
PRIVILEGE_KINDS = {
    "INSERT": "insert",
    "UPDATE": "update",
    "DELETE": "delete",
    "TRUNCATE": "ddl",
    "USAGE": "update",
    "CREATE": "ddl",
}


def database_roles(policy: Any) -> dict[str, str | None]:
    """The database role each restricted role of the policy runs as upstream (None: the service
    account). A role with `all` may do anything anyway and is left out."""
    return {
        name: getattr(role, "database_role", None)
        for name, role in sorted(policy.roles.items())
        if not role.unrestricted_statements
    }


def role_warnings(policy: Any, runs_as: dict[str, str | None], rights: dict[str, DatabaseRole]) -> list[str]:
    """Defence in depth: the database should refuse what a restricted role may not do even when
    the proxy is fooled. Warns when such a role runs as the service account, as a superuser, as a
    role that bypasses row-level security, or as a role holding writes its `statements` do not
    allow."""
    out: list[str] = []
    for name, db_role in runs_as.items():
        role = policy.roles[name]
        if db_role is None:
            out.append(
                f"role {name} has no database_role: its statements run upstream as the service "
                "account, so the database refuses nothing the proxy lets through"
            )
            continue
        r = rights.get(db_role)
        if r is None or not r.exists:
            out.append(f"role {name} runs as database role {db_role}, which does not exist")
            continue
        if r.superuser:
            out.append(
                f"role {name} runs as database role {db_role}, a superuser: the database refuses "
                "it nothing; use a role with only the grants its statements need"
            )
            continue
        if r.bypass_rls:
            out.append(f"role {name} runs as database role {db_role}, which bypasses row-level security")
        extra: dict[str, list[str]] = {}
        for priv, obj in r.writes:
            kind = PRIVILEGE_KINDS.get(priv, "all")
            if not role.may(kind):
                extra.setdefault(priv, []).append(obj)
        for priv, objects in sorted(extra.items()):
            shown = ", ".join(objects[:5]) + (f" and {len(objects) - 5} more" if len(objects) > 5 else "")
            out.append(
                f"role {name} (statements: {', '.join(sorted(role.statements))}) runs as database "
                f"role {db_role}, which holds {priv} on {shown}: revoke it"
            )
    return out


def _role_of(policy: Any, user: str) -> str | None:
    u = policy.users.get(user)
    if u is not None:
        return u.role
    return user if user in policy.roles else None


def discovered_columns(policy: Any, role: str, schema: Schema) -> frozenset[str]:
    """`schema.table.column` of the columns whose class comes from discovery for this role: found
    by sampling, not named by the policy, and the role is restricted (an unrestricted role, which
    sees everything clear, reads unclassified columns as they are)."""
    if policy.unrestricted(policy.roles.get(role)):
        return frozenset()
    default_schema = dialect_facts(schema.dialect or "postgres").default_schema
    return frozenset(
        f"{s}.{t}.{c}"
        for (s, t, c) in schema.discovered
        if policy.classify(ColumnName(TableName(schema.database, s, t), c), default_schema) is None
    )


def decision_json(decision: Decision, discovered: frozenset[str] = frozenset()) -> dict[str, Any]:
    if isinstance(decision, Block):
        return {
            "decision": "block",
            "reason": decision.reason,
            "message": decision.message,
            "rewritten_sql": None,
            "columns": [],
            "max_rows": None,
            "kind": decision.kind,
            "tables": list(decision.tables),
            "classes": list(decision.classes),
        }
    parts = decision.parts()
    doc: dict[str, Any] = {
        "decision": "allow",
        "reason": None,
        "message": None,
        "rewritten_sql": decision.rewritten_sql,
        "columns": [
            {
                "name": c.name,
                "class": c.cls,
                "action": c.action,
                "sources": list(c.sources),
                "derived": c.derived,
                "discovered": bool(discovered.intersection(c.sources)),
            }
            for c in decision.columns or (parts[-1].columns if len(parts) > 1 else ())
        ],
        "max_rows": decision.row_limit,
        "kind": decision.kind,
        "tables": list(decision.tables),
        "classes": list(decision.classes),
        "detect": sorted(decision.detect),
    }
    if decision.search_path is not None:
        doc["search_path"] = list(decision.search_path)
    if decision.schema_changed:
        doc["schema_changed"] = True
    if len(parts) > 1:
        doc["statements"] = [decision_json(p, discovered) for p in parts]
    return doc


def decision_table(decision: Decision, discovered: frozenset[str] = frozenset()) -> str:
    if isinstance(decision, Block):
        return f"decision: block ({decision.reason})\nmessage:  {decision.message}\n"
    lines = [f"decision: allow ({decision.kind})", f"max_rows: {decision.row_limit or 'unlimited'}"]
    if decision.rewritten_sql:
        lines.append(f"upstream: {decision.rewritten_sql}")
    for part in decision.parts():
        for c in part.columns:
            src = ", ".join(c.sources) or "-"
            if c.derived and c.sources:
                src = f"f({src})"
            found = ", discovered" if discovered.intersection(c.sources) else ""
            cls = f" [{c.cls}{found}]" if c.cls else ""
            lines.append(f"col {c.index + 1} {c.name} ← {src}{cls} → {c.action}")
    return "\n".join(lines) + "\n"


def cmd_explain(args: argparse.Namespace) -> int:
    policy = _load(args.policy)
    if policy is None:
        return 1
    role = _role_of(policy, args.user)
    if role is None:
        print(f"unknown user {args.user}", file=sys.stderr)
        return 1
    if args.http:
        return _explain_http(policy, role, args)
    try:
        schema = load_schema(args.schema)
    except Exception as e:
        print(f"cannot load schema {args.schema}: {e}", file=sys.stderr)
        return 1
    engine = Engine(policy, schema)
    dialect = args.dialect or schema.dialect or "postgres"
    database = args.database
    if database is None and dialect == "mysql":
        database = schema.database  # the database a session on that URL starts in
    decision = engine.decide(role, args.sql, dialect=dialect, database=database)
    discovered = discovered_columns(policy, role, schema)
    if args.format == "table":
        sys.stdout.write(decision_table(decision, discovered))
    else:
        print(json.dumps(decision_json(decision, discovered), indent=2, ensure_ascii=False))
    return 0


def _explain_http(policy: Any, role: str, args: argparse.Namespace) -> int:
    case: dict[str, Any] = {"request": args.sql}
    if args.api:
        case["api"] = args.api
    if args.body is not None:
        try:
            case["body"] = json.loads(args.body)
        except ValueError as e:
            print(f"--body is not JSON: {e}", file=sys.stderr)
            return 1
    decision = decide_http_case(policy, role, case)
    if isinstance(decision, str):
        print(decision, file=sys.stderr)
        return 1
    method, _, target = args.sql.strip().partition(" ")
    path, _ = split_target(target.strip())
    if args.format == "table":
        sys.stdout.write(decision_table(decision))
        return 0
    doc = decision_json(decision)
    doc["fingerprint"] = decision.fingerprint
    doc["lookups"] = decision.lookups if isinstance(decision, Allow) else 0
    # What the upstream would receive, and whether binary downloads are allowed there.
    doc["forwarded_path"] = forward_path(path) if decision.allowed else None
    doc["binary"] = binary_allowed(policy.roles[role], method, path)
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    total = failed = 0
    for path in args.cases:
        suite = run_suite(path, args.policy, args.schema, load_schema=load_schema)
        if suite.error:
            print(f"ERROR {suite.error}")
            failed += 1
            continue
        for r in suite.results:
            total += 1
            if r.ok:
                if args.verbose:
                    print(f"ok    {r.location} {r.name}")
            else:
                failed += 1
                print(f"FAIL  {r.location} {r.name}")
                for p in r.problems:
                    print(f"      {p}")
    print(f"{total - failed if total >= failed else 0} passed, {failed} failed, {total} cases")
    if total == 0:
        print("no test cases found: an empty run proves nothing", file=sys.stderr)
        return 1
    return 1 if failed else 0


def cmd_passwd(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("passwords do not match", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("empty password", file=sys.stderr)
        return 1
    print(native_hash(password) if args.mysql else scram_verifier(password))
    return 0
