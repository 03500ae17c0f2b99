"""Decision-engine latency: cache hit µs, shape hit µs and cache miss p50/p99 ms on OLTP-size
statements. A shape hit is a statement seen before with other literals (`-M simple`, ORMs that
inline values): its decision is reused and its rewritten SQL rendered with its own literals.

Run: python -m bench.policy_bench   (writes bench/results/policy.json)
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from policies import Engine, Schema, load_policy

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "policies" / "examples"

STATEMENTS = [
    "SELECT id, name, phone FROM customers WHERE id = $1",
    "SELECT c.id, c.name, r.caller, r.started_at FROM customers c "
    "JOIN call_records r ON r.customer_id = c.id WHERE c.id = $1 ORDER BY r.started_at DESC LIMIT 20",
    "UPDATE customers SET email = $1 WHERE id = $2",
    "SELECT count(*) FROM call_records WHERE started_at > now() - interval '1 day'",
    "WITH recent AS (SELECT customer_id, max(started_at) AS last FROM call_records GROUP BY customer_id) "
    "SELECT c.id, c.phone, recent.last FROM customers c JOIN recent ON recent.customer_id = c.id",
    "SELECT * FROM customer_contacts "
    "WHERE id IN (SELECT customer_id FROM call_records WHERE duration_s > 600)",
    "SELECT id, upper(phone) AS p, (SELECT count(*) FROM call_records r WHERE r.customer_id = c.id) AS n "
    "FROM customers c WHERE branch_id = 12",
    "SELECT id, name FROM customers UNION ALL SELECT id, notes FROM call_records",
]
ROLES = ["vendor", "service_desk"]
# An OLTP point lookup with an inlined key; for the vendor role it is rewritten (row filter, LIMIT).
POINT_LOOKUP = "SELECT id, name, phone, id_card FROM customers WHERE id = {}"


def main() -> None:
    policy = load_policy(EXAMPLES / "demo.yaml")
    schema = Schema.load(EXAMPLES / "demo_schema.json")
    engine = Engine(policy, schema)
    for role in ROLES:  # warm imports and sqlglot's lazy tables
        for sql in STATEMENTS:
            engine.decide(role, sql)

    misses: list[float] = []
    for i in range(60):
        for role in ROLES:
            for sql in STATEMENTS:
                text = f"{sql} /* {i} */"  # a new cache key, same work
                t = time.perf_counter()
                engine.decide(role, text)
                misses.append((time.perf_counter() - t) * 1000)

    n = 200_000
    sql = STATEMENTS[1]
    engine.decide("vendor", sql)
    t = time.perf_counter()
    for _ in range(n):
        engine.decide("vendor", sql)
    hit_us = (time.perf_counter() - t) / n * 1e6

    n_shape = 100_000
    texts = [POINT_LOOKUP.format(4711 + i) for i in range(n_shape)]
    for text in texts[:2]:  # seen twice with different literals: learned and verified
        engine.decide("vendor", text)
    before = engine.shape_hits
    t = time.perf_counter()
    for text in texts[2:]:
        engine.decide("vendor", text)
    shape_us = (time.perf_counter() - t) / (n_shape - 2) * 1e6
    assert engine.shape_hits - before == n_shape - 2, "the point lookup should hit by shape"

    misses.sort()
    p50 = statistics.median(misses)
    p99 = misses[int(len(misses) * 0.99) - 1]
    result = {
        "cache_hit_us": round(hit_us, 2),
        "shape_hit_us": round(shape_us, 2),
        "cache_miss_p50_ms": round(p50, 3),
        "cache_miss_p99_ms": round(p99, 3),
        "cache_miss_max_ms": round(misses[-1], 3),
        "miss_samples": len(misses),
        "targets": {"cache_hit_us": 20, "shape_hit_us": 50, "cache_miss_p99_ms": 5},
    }
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "policy.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"policy decision: cache hit {hit_us:.2f} µs; shape hit {shape_us:.2f} µs; "
        f"cache miss p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    )


if __name__ == "__main__":
    main()
