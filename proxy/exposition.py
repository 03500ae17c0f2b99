"""One Prometheus exposition for several worker processes: their texts parsed and summed.

Owns only arithmetic on exposition text (what `generate_latest` renders); it opens no socket and
defines no metric (every metric is defined in proxy/services/metrics.py). Working on the text
keeps it independent of how each worker keeps its counters.

Counters, histogram buckets, sums and counts and most gauges add up across workers (connections,
resident memory, open files). A few gauges describe something every worker has once and are not
additive: `*_info` series (value 1; with two policy revisions in force during a reload, both
series show), start times and `*_created` timestamps (the earliest), limits (the largest).

A worker that is replaced (it died and was restarted) would take its counts with it, and the sum
would go down, which Prometheus reads as a counter reset and counts again. So the last counts
seen from a replaced worker are kept as `retired` and added to the sum: counters stay monotonic
(short of what the dead worker counted after its last scrape).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

# (sample name, sorted label pairs)
SampleKey = tuple[str, tuple[tuple[str, str], ...]]
# (slot, pid, fetch): one live worker and how to read its exposition
WorkerSource = tuple[int, int, Callable[[], str]]

# The budget store is up only while every worker reaches it; a role's budget use is the most any
# worker knows of (with Redis they all read the same totals).
_MIN = ("process_start_time_seconds", "maskgate_budget_store_up")
_MAX = ("process_max_fds", "maskgate_budget_usage_ratio")
# Types whose samples only grow within one process: what a retired worker counted stays counted.
_MONOTONIC = frozenset({"counter", "histogram", "summary"})


def combine_rule(family: str, kind: str) -> str:
    """How one family's samples from several workers combine: sum | max | min."""
    if family.endswith("_created") or family in _MIN:
        return "min"
    if kind == "gauge" and (family.endswith("_info") or family in _MAX):
        return "max"
    return "sum"


@dataclass
class Family:
    name: str
    kind: str
    documentation: str
    rule: str
    samples: dict[SampleKey, float] = field(default_factory=dict)


def _key(name: str, labels: Mapping[str, str]) -> SampleKey:
    return name, tuple(sorted(labels.items()))


def parse(text: str) -> dict[str, Family]:
    out: dict[str, Family] = {}
    for m in text_string_to_metric_families(text):
        fam = out.setdefault(m.name, Family(m.name, m.type, m.documentation, combine_rule(m.name, m.type)))
        for s in m.samples:
            fam.samples[_key(s.name, s.labels)] = s.value
    return out


def merge(parts: Iterable[Mapping[str, Family]]) -> dict[str, Family]:
    """The families of every part, samples combined by name and labels; first-seen order (the
    histogram buckets of every worker come in the same order)."""
    out: dict[str, Family] = {}
    for part in parts:
        for name, fam in part.items():
            acc = out.get(name)
            if acc is None:
                out[name] = Family(fam.name, fam.kind, fam.documentation, fam.rule, dict(fam.samples))
                continue
            for k, v in fam.samples.items():
                old = acc.samples.get(k)
                if old is None:
                    acc.samples[k] = v
                elif acc.rule == "sum":
                    acc.samples[k] = old + v
                elif acc.rule == "max":
                    acc.samples[k] = max(old, v)
                else:
                    acc.samples[k] = min(old, v)
    return out


def monotonic_part(families: Mapping[str, Family]) -> dict[str, Family]:
    """What of one worker's last exposition outlives it: counters and histograms."""
    return {
        n: Family(f.name, f.kind, f.documentation, f.rule, dict(f.samples))
        for n, f in families.items()
        if f.kind in _MONOTONIC and f.rule == "sum"
    }


def to_metrics(families: Mapping[str, Family]) -> list[Metric]:
    out = []
    for fam in families.values():
        m = Metric(fam.name, fam.documentation, fam.kind)
        for (name, labels), value in fam.samples.items():
            m.add_sample(name, dict(labels), value)
        out.append(m)
    return out


class WorkerExpositions:
    """The summed exposition of the workers a supervisor reports, as a prometheus_client
    collector (register it in a registry of its own and serve that registry).

    `workers()` gives (slot, pid, fetch) for each live worker, fetch() returning its exposition
    text or raising OSError. A slot whose pid changed since the last scrape was restarted: what
    it had counted by then is retired into the sum."""

    def __init__(self, workers: Callable[[], Iterable[WorkerSource]]) -> None:
        self._workers = workers
        self._lock = threading.Lock()  # the HTTP server may serve two scrapes at once
        self._last: dict[int, tuple[int, dict[str, Family]]] = {}
        self._retired: dict[str, Family] = {}

    def _retire(self, slot: int) -> None:
        gone = self._last.pop(slot, None)
        if gone is not None:
            self._retired = merge([self._retired, monotonic_part(gone[1])])

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            return self._collect()

    def _collect(self) -> list[Metric]:
        parts = []
        live = set()
        for slot, pid, fetch in self._workers():
            live.add(slot)
            last = self._last.get(slot)
            if last is not None and last[0] != pid:
                self._retire(slot)
            try:
                fams = parse(fetch())
            except (OSError, ValueError):
                # Not answering (starting, stopping): its last counts stand in for it.
                if slot in self._last:
                    parts.append(monotonic_part(self._last[slot][1]))
                continue
            self._last[slot] = (pid, fams)
            parts.append(fams)
        for slot in [s for s in self._last if s not in live]:
            self._retire(slot)
        return to_metrics(merge([*parts, self._retired]))
