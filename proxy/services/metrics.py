"""Every Prometheus metric maskgate exports, defined in this one module.

Labels are bounded: protocol, role, decision, reason, class, result. Never a user name or SQL.
Metrics live in a `Metrics` object bound to a registry so tests can use a fresh CollectorRegistry
and read values with `get_sample_value`; the server uses the process-wide default registry.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from policies.decision import REASONS

# Proxy overhead is sub-millisecond on the hot path; total latency spans the database's own time.
_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else REGISTRY
        self.registry = r
        self.queries = Counter(
            "maskgate_queries", "Statements decided", ["protocol", "role", "decision"], registry=r
        )
        self.blocked = Counter(
            "maskgate_blocked_queries",
            "Statements refused, by reason",
            ["protocol", "role", "reason"],
            registry=r,
        )
        self.masked_values = Counter(
            "maskgate_masked_values", "Values masked on the way back, by data class", ["class"], registry=r
        )
        self.rows_returned = Counter("maskgate_rows_returned", "Rows sent to clients", ["role"], registry=r)
        self.truncated = Counter(
            "maskgate_truncated_results", "Results cut at the role's row limit", ["role"], registry=r
        )
        # A masked number shows most of its digits; equality lookups can test the rest one
        # candidate at a time. A burst of them from one role is brute force: alert on its rate.
        self.masked_lookups = Counter(
            "maskgate_masked_lookups",
            "Values compared with masked classes (masked_predicates: equality)",
            ["role"],
            registry=r,
        )
        self.duration = Histogram(
            "maskgate_query_duration_seconds",
            "Statement latency: `overhead` is time spent in maskgate, `total` what the client waited",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.decision_cache = Counter(
            "maskgate_decision_cache", "Decision cache lookups", ["result"], registry=r
        )
        self.connections = Gauge("maskgate_connections", "Open client connections", ["protocol"], registry=r)
        self.auth_failures = Counter(
            "maskgate_auth_failures", "Failed client authentications", ["protocol"], registry=r
        )
        self.policy_reloads = Counter(
            "maskgate_policy_reloads", "Policy reload attempts", ["result"], registry=r
        )
        self.policy_info = Gauge(
            "maskgate_policy_info", "The policy revision in force (value 1)", ["revision"], registry=r
        )
        self.audit_failures = Counter(
            "maskgate_audit_write_failures", "Audit records that could not be written", registry=r
        )
        self.schema_reloads = Counter(
            "maskgate_schema_reloads", "Upstream schema loads", ["result"], registry=r
        )
        self.discovered_columns = Gauge(
            "maskgate_discovered_columns",
            "Columns the policy does not classify in which schema-load sampling found personal data "
            "(classified for restricted roles), by the class they are treated as",
            ["class"],
            registry=r,
        )
        self._revision: str | None = None
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, cached: `.labels()` costs microseconds per call (argument
        checks, a lock, a dict) and runs several times per statement. Labels are bounded, so is
        the cache. Not for metrics whose children get removed (policy_info)."""
        key = (id(metric), labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)
        return c

    def set_policy_revision(self, revision: str) -> None:
        if self._revision is not None:
            self.policy_info.remove(self._revision)
        self.policy_info.labels(revision=revision).set(1)
        self._revision = revision

    @staticmethod
    def reason_label(reason: str) -> str:
        # A reason outside the fixed set must not create a new time series.
        return reason if reason in REASONS else "other"
