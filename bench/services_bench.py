"""CPU per statement of the Gate's per-statement services, without sockets: the decision of a
statement whose shape is learned (every text new, as pgbench -M simple sends them), the audit
`start` record (queued, or written before forwarding with audit_required) and the metrics and
`end` record of `record`. Audit rows include the writer's batch work, done inline here.

    .venv/bin/python -m bench.services_bench [-n 20000]

CPU time is time.process_time (all threads); under callgrind, pass `--only OP` and count
instructions with `--toggle-collect=functools_reduce` for steadier figures on a shared machine.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from policies import Schema, load_policy
from policies.schema import Table
from policies.sql.text import without_comments
from proxy.services.audit import AuditLog
from proxy.services.gate import StatementRecord
from proxy.services.guard import Guard
from proxy.services.metrics import Metrics

POLICY = Path(__file__).resolve().parents[1] / "policies" / "examples" / "demo.yaml"
COLUMNS = ("id", "name", "phone", "id_card", "branch_id")
OPS = ("decide", "begin", "begin_required", "record", "record_no_audit")


def run(op: str, n: int) -> float:
    """µs of CPU per operation `op`, over `n` statements after a warm-up of 200."""
    schema = Schema("crm", "postgres", {("public", "customers"): Table("public", "customers", COLUMNS)})
    audit = AuditLog(
        Path(tempfile.mkdtemp()) / "audit.jsonl",
        key=b"k" * 32,
        statement_text=without_comments,
        interval=3600,
    )
    guard = Guard(
        load_policy(POLICY),
        metrics=Metrics(CollectorRegistry()),
        audit=None if op == "record_no_audit" else audit,
        audit_required=op == "begin_required",
        schema_loaders={"postgres": lambda db: schema},
        default_databases={"postgres": "crm"},
    )
    p = guard.lookup("desk_li")
    assert p is not None
    sqls = [
        f"SELECT id, name, phone, id_card FROM customers WHERE id = {i * 7919 % 1000003 + 1};"
        for i in range(200 + n)
    ]

    def decide(sql: str):  # type: ignore[no-untyped-def]
        return guard.decide(p, sql, dialect="postgres", search_path=("public",), database="crm")

    warm = [decide(s) for s in sqls[:200]]
    if op == "decide":
        items: list[object] = sqls[200:]
        fn = decide
    else:
        event = "start" if op.startswith("begin") else "end"
        decisions = warm + [decide(s) for s in sqls[200:]]
        recs = [
            StatementRecord(
                "postgres", "s", p.user, p.role, "127.0.0.1", "crm", s, d,
                id=f"s-{i}", event=event, dialect="postgres", rows=1, duration_s=3e-4, overhead_s=1e-4,
            )
            for i, (s, d) in enumerate(zip(sqls, decisions, strict=True))
        ]  # fmt: skip
        fn = guard.begin if op.startswith("begin") else guard.record  # type: ignore[assignment]
        for r in recs[:200]:
            fn(r)
        items = recs[200:]

    def drain() -> None:
        lines = []
        while audit._queue:
            lines.append(audit._queue.popleft())
        if lines:
            with audit._lock:
                audit._write("\n".join(lines) + "\n", len(lines))

    drain()
    t0 = time.process_time()
    functools.reduce(lambda _, x: drain() if x is None else fn(x), [*items, None], None)
    spent = time.process_time() - t0
    audit.close()
    return spent / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--only", choices=OPS)
    args = ap.parse_args()
    for op in [args.only] if args.only else OPS:
        print(f"{op:16} {run(op, args.n):7.2f} µs CPU per statement")


if __name__ == "__main__":
    main()
