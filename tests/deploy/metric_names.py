"""The sample names maskgate exports, and the metric names PromQL expressions use."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

from proxy.services.metrics import Metrics

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}
# Series that are not maskgate's own: Prometheus's per-target `up`, and the process metrics
# prometheus_client's default registry adds (proxy/app.py serves that registry).
OTHERS = frozenset({"up", "process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"})
_PROMQL_WORDS = frozenset(
    {
        "sum", "rate", "increase", "by", "without", "histogram_quantile", "count", "and", "or", "unless",
        "absent", "avg", "max", "min", "on", "ignoring", "group_left", "group_right", "le", "topk",
        "bottomk", "irate", "delta", "offset", "bool", "time", "vector", "scalar", "clamp_min", "clamp_max",
        "label_replace", "sort", "sort_desc", "abs", "round", "quantile",
    }
)  # fmt: skip


def exported() -> set[str]:
    """Every sample name a maskgate `Metrics` can export, histogram and counter suffixes included,
    read from each collector's describe() (so series that have no sample yet count too)."""
    m = Metrics(CollectorRegistry())
    names: set[str] = set()
    for value in vars(m).values():
        describe = getattr(value, "describe", None)
        if describe is None or value is m.registry:
            continue
        for family in describe():
            names.update(family.name + s for s in _SUFFIXES[family.type])
    return names


def used_in(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers not followed by `(` and not in a label
    matcher, a grouping clause or a string."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors, $__rate_interval
    out = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        name = m.group(0)
        after = expr[m.end() :].lstrip()
        if name in _PROMQL_WORDS or after.startswith("("):
            continue
        if re.fullmatch(r"\d.*", name):
            continue
        out.add(name)
    return out
