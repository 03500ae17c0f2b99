"""`maskgate discover --schema DSN`: which unclassified columns hold personal data, as a policy snippet.

Owns argument parsing and printing only: proxy/pg/sampling.py reads the samples and
policies/discovery.py judges them. Prints class names and shares, never a sampled value.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from policies import PolicyError, load_policy
from policies.discovery import snippet
from policies.names import ColumnName, TableName


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "discover", help="sample a live database and list columns holding personal data"
    )
    p.add_argument("--schema", required=True, help="PostgreSQL DSN of the database to sample")
    p.add_argument("--policy", help="leave out columns this policy already classifies")
    p.add_argument("--rows", type=int, default=2000, help="rows sampled per table (default 2000)")
    p.add_argument("--seconds", type=float, default=60.0, help="time bound for the whole run (default 60)")
    p.set_defaults(func=cmd_discover)


def cmd_discover(args: argparse.Namespace) -> int:
    import psycopg

    from proxy.pg.catalog import load_schema
    from proxy.pg.sampling import sample

    policy = None
    if args.policy:
        try:
            policy = load_policy(args.policy)
        except PolicyError as e:
            for err in e.errors:
                print(err, file=sys.stderr)
            return 1
    try:
        with psycopg.connect(args.schema, autocommit=True) as conn:
            schema = load_schema(conn)
            run = sample(conn, schema, rows=max(1, args.rows), deadline_s=max(1.0, args.seconds))
    except psycopg.Error as e:
        print(f"cannot sample {args.schema.split('@')[-1]}: {str(e).strip()}", file=sys.stderr)
        return 1
    findings = list(run.findings)
    if policy is not None:
        findings = [
            f
            for f in findings
            if policy.classify(ColumnName(TableName(schema.database, f.schema, f.table), f.column), "public")
            is None
        ]
    sys.stdout.write(snippet(findings, schema.database, "public"))
    print(f"# sampled {run.tables} tables of {schema.database}", file=sys.stderr)
    for s in run.skipped:
        print(f"# not sampled: {s}", file=sys.stderr)
    return 0
