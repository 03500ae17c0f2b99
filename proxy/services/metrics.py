"""Every Prometheus metric maskgate exports, defined in this one module.

Labels are bounded: protocol, role, decision, reason, class, result. Never a user name or SQL.
Metrics live in a `Metrics` object bound to a registry so tests can use a fresh CollectorRegistry
and read values with `get_sample_value`; the server uses the process-wide default registry.

The per-statement metrics are plain numbers in dictionaries (`Tally`, `Buckets`), turned into
Prometheus samples only when scraped: a prometheus_client child takes a lock and several calls
per `inc`, and the guard made about ten of them per statement (8 % of a point lookup's CPU). They
export exactly what a prometheus_client Counter / Histogram of the same name and labels would
(`_total` and `_created`; `_bucket`, `_count`, `_sum`, `_created`). Increments happen on the
event loop's thread only; a scrape copies each dictionary (one C call, atomic under the GIL)
before reading it.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import INF, floatToGoString

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


class Tally:
    """A labelled counter of plain numbers: `values[labels] += n` on the hot path, exported as a
    prometheus_client Counter named `name` would be. `labels(...).inc(n)` is kept for callers off
    the hot path (and tests)."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], registry: Any) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.values: dict[tuple[str, ...], float] = {}
        self.created: dict[tuple[str, ...], float] = {}
        if registry is not None:
            registry.register(self)

    def add(self, key: tuple[str, ...], n: float = 1) -> None:
        v = self.values.get(key)
        if v is None:
            self.created[key] = time.time()
            self.values[key] = n
        else:
            self.values[key] = v + n

    def labels(self, *values: str, **kw: str) -> _TallyChild:
        if kw:
            values = tuple(kw[n] for n in self.labelnames)
        if len(values) != len(self.labelnames):
            raise ValueError("incorrect label count")
        key = tuple(str(v) for v in values)
        if key not in self.values:
            self.add(key, 0)
        return _TallyChild(self, key)

    def describe(self) -> list[Metric]:
        return [Metric(self.name, self.documentation, "counter")]

    def collect(self) -> Iterator[Metric]:
        m = Metric(self.name, self.documentation, "counter")
        created = self.created
        for key, value in list(self.values.items()):
            labels = dict(zip(self.labelnames, key, strict=True))
            m.add_sample(self.name + "_total", labels, float(value))
            m.add_sample(self.name + "_created", dict(labels), created.get(key, 0.0))
        yield m


class _TallyChild:
    __slots__ = ("key", "tally")

    def __init__(self, tally: Tally, key: tuple[str, ...]) -> None:
        self.tally = tally
        self.key = key

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.tally.add(self.key, amount)

    def get(self) -> float:
        return self.tally.values.get(self.key, 0)


class Buckets:
    """A histogram of plain numbers with one label: per label value, how many observations fell
    in each bucket (not cumulative, as prometheus_client keeps them) and their sum. Exported as a
    prometheus_client Histogram of the same name, label and buckets would be."""

    def __init__(
        self, name: str, documentation: str, labelname: str, buckets: tuple[float, ...], registry: Any
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelname = labelname
        bounds = [float(b) for b in buckets]
        if bounds[-1] != INF:
            bounds.append(INF)
        self.bounds = tuple(bounds)
        self._les = tuple(floatToGoString(b) for b in self.bounds)
        # label value -> [sum, count in bucket 0, bucket 1, ...]; created separately.
        self.series: dict[str, list[float]] = {}
        self.created: dict[str, float] = {}
        if registry is not None:
            registry.register(self)

    def new(self, label: str) -> list[float]:
        """The series of `label` (created on first use): `[sum, n0, n1, ...]`."""
        s = self.series.get(label)
        if s is None:
            self.created[label] = time.time()
            s = self.series[label] = [0.0] + [0] * len(self.bounds)
        return s

    def observe(self, label: str, amount: float) -> None:
        s = self.series.get(label) or self.new(label)
        s[0] += amount
        # bisect_left: the first bound >= amount, the bucket prometheus_client's `<=` scan picks.
        s[1 + bisect_left(self.bounds, amount)] += 1

    def labels(self, *values: str, **kw: str) -> _BucketsChild:
        label = kw[self.labelname] if kw else values[0]
        self.new(str(label))
        return _BucketsChild(self, str(label))

    def describe(self) -> list[Metric]:
        return [Metric(self.name, self.documentation, "histogram")]

    def collect(self) -> Iterator[Metric]:
        m = Metric(self.name, self.documentation, "histogram")
        name, les = self.name, self._les
        for label, series in list(self.series.items()):
            s = list(series)
            acc = 0.0
            for le, n in zip(les, s[1:], strict=True):
                acc += n
                m.add_sample(name + "_bucket", {self.labelname: label, "le": le}, acc)
            m.add_sample(name + "_count", {self.labelname: label}, acc)
            m.add_sample(name + "_sum", {self.labelname: label}, float(s[0]))
            m.add_sample(name + "_created", {self.labelname: label}, self.created.get(label, 0.0))
        yield m


class _BucketsChild:
    __slots__ = ("buckets", "label")

    def __init__(self, buckets: Buckets, label: str) -> None:
        self.buckets = buckets
        self.label = label

    def observe(self, amount: float) -> None:
        self.buckets.observe(self.label, amount)


class Computed:
    """A labelled gauge computed when scraped: `source()` returns {labels: value}. For values
    that are cheaper to work out on demand than to keep current (budget usage per role)."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], registry: Any) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.source: Callable[[], Mapping[tuple[str, ...], float]] | None = None
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[Metric]:
        return [Metric(self.name, self.documentation, "gauge")]

    def collect(self) -> Iterator[Metric]:
        m = Metric(self.name, self.documentation, "gauge")
        source = self.source
        for key, value in sorted((source() if source is not None else {}).items()):
            m.add_sample(self.name, dict(zip(self.labelnames, key, strict=True)), float(value))
        yield m


class SessionCount:
    """`maskgate_sessions{protocol,role}`: authenticated sessions, counted when scraped by
    `source()` (the app walks its listeners' connections, proxy/operator.py), so logins and
    logouts cost nothing. Roles are bounded by the policy; users are never a label."""

    def __init__(self, name: str, documentation: str, registry: Any) -> None:
        self.name = name
        self.documentation = documentation
        self.source: Callable[[], Mapping[tuple[str, str], int]] = dict
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[Metric]:
        return [Metric(self.name, self.documentation, "gauge")]

    def collect(self) -> Iterator[Metric]:
        m = Metric(self.name, self.documentation, "gauge")
        for (protocol, role), n in sorted(self.source().items()):
            m.add_sample(self.name, {"protocol": protocol, "role": role}, float(n))
        yield m


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else REGISTRY
        self.registry = r
        # The per-statement ones: plain numbers, exported at scrape time (see the module note).
        self.queries = Tally("maskgate_queries", "Statements decided", ("protocol", "role", "decision"), r)
        self.blocked = Tally(
            "maskgate_blocked_queries", "Statements refused, by reason", ("protocol", "role", "reason"), r
        )
        self.masked_values = Tally(
            "maskgate_masked_values", "Values masked on the way back, by data class", ("class",), r
        )
        self.rows_returned = Tally("maskgate_rows_returned", "Rows sent to clients", ("role",), r)
        self.truncated = Tally(
            "maskgate_truncated_results", "Results cut at the role's row limit", ("role",), r
        )
        # A masked number shows most of its digits; equality lookups can test the rest one
        # candidate at a time. A burst of them from one role is brute force: alert on its rate.
        self.masked_lookups = Tally(
            "maskgate_masked_lookups",
            "Values compared with masked classes (masked_predicates: equality)",
            ("role",),
            r,
        )
        self.duration = Buckets(
            "maskgate_query_duration_seconds",
            "Statement latency: `overhead` is time spent in maskgate, `total` what the client waited",
            "kind",
            _LATENCY_BUCKETS,
            r,
        )
        self.decision_cache = Tally("maskgate_decision_cache", "Decision cache lookups", ("result",), r)
        self.sessions = SessionCount("maskgate_sessions", "Authenticated client sessions, by role", r)
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
        # Disclosures (issue 15), counted on the disclosure thread: prometheus counters, which
        # lock, rather than Tallies, which the event loop owns.
        self.canary_reads = Counter(
            "maskgate_canary_reads",
            "Statements whose rows gave a person a planted canary value (clear or masked)",
            ["role"],
            registry=r,
        )
        self.ledger_values = Counter(
            "maskgate_ledger_values", "Values recorded in the disclosure ledger", registry=r
        )
        self.disclosures_dropped = Counter(
            "maskgate_disclosures_dropped",
            "Disclosed values not recorded because the disclosure queue was full",
            registry=r,
        )
        # Per-person budgets (proxy/services/budgets.py). Labelled by role and budget name, never
        # by the person: the audit log says who (reason row_budget).
        self.budget_refusals = Counter(
            "maskgate_budget_refusals",
            "Statements refused because their person had used up a budget of their role",
            ["role", "budget"],
            registry=r,
        )
        self.budget_usage = Computed(
            "maskgate_budget_usage_ratio",
            "Per role and budget, the largest share of it one person has used in the current window "
            "(1 or more: crossed; every replica's reads when a Redis store is configured)",
            ("role", "budget"),
            r,
        )
        # Exported only when a store is configured: no series, no alert, for a lone replica.
        self.budget_store_up = Computed(
            "maskgate_budget_store_up",
            "1 while the shared budget store (Redis) answers; 0 while each replica counts alone",
            (),
            r,
        )
        self.budget_store_errors = Counter(
            "maskgate_budget_store_errors",
            "Failed round trips to the shared budget store (counting went on in the replica)",
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
