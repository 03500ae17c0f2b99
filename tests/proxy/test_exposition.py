"""Summing worker expositions (proxy/exposition.py): counters, histograms and gauges add up by
name and labels, info and time gauges do not, and a restarted worker's counts are kept."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy.exposition import WorkerExpositions, combine_rule, merge, parse


def exposition(queries: float, conns: float, observed: list[float], revision: str = "r1") -> str:
    r = CollectorRegistry()
    Counter("maskgate_queries", "q", ["role"], registry=r).labels("vendor").inc(queries)
    Gauge("maskgate_connections", "c", ["protocol"], registry=r).labels("postgres").set(conns)
    Gauge("maskgate_policy_info", "p", ["revision"], registry=r).labels(revision).set(1)
    h = Histogram("maskgate_query_duration_seconds", "d", ["kind"], buckets=(0.001, 0.01), registry=r)
    for v in observed:
        h.labels("overhead").observe(v)
    return generate_latest(r).decode()


def samples(metrics: Iterable[object]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = CollectorRegistry()

    class C:
        def collect(self) -> Iterable[object]:
            return metrics

    r.register(C())  # type: ignore[arg-type]
    text = generate_latest(r).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_counters_histograms_and_gauges_add_up_info_does_not() -> None:
    a = parse(exposition(3, 2, [0.0005, 0.005]))
    b = parse(exposition(4, 5, [0.0005, 0.5]))
    s = samples(
        WorkerExpositions(
            lambda: [
                (0, 1, lambda: exposition(3, 2, [0.0005, 0.005])),
                (1, 2, lambda: exposition(4, 5, [0.0005, 0.5])),
            ]
        ).collect()
    )
    assert s[("maskgate_queries_total", (("role", "vendor"),))] == 7
    assert s[("maskgate_connections", (("protocol", "postgres"),))] == 7
    assert s[("maskgate_policy_info", (("revision", "r1"),))] == 1
    ov = (("kind", "overhead"),)
    assert s[("maskgate_query_duration_seconds_bucket", (("kind", "overhead"), ("le", "0.001")))] == 2
    assert s[("maskgate_query_duration_seconds_bucket", (("kind", "overhead"), ("le", "0.01")))] == 3
    assert s[("maskgate_query_duration_seconds_bucket", (("kind", "overhead"), ("le", "+Inf")))] == 4
    assert s[("maskgate_query_duration_seconds_count", ov)] == 4
    created = min(v for f in (a, b) for k, v in f["maskgate_queries_created"].samples.items())
    assert (
        merge([a, b])["maskgate_queries_created"].samples[("maskgate_queries_created", (("role", "vendor"),))]
        == created
    )


def test_two_revisions_during_a_reload_both_show() -> None:
    m = merge([parse(exposition(1, 1, [], "r1")), parse(exposition(1, 1, [], "r2"))])
    info = m["maskgate_policy_info"].samples
    assert set(info.values()) == {1.0} and len(info) == 2


def test_rules() -> None:
    assert combine_rule("maskgate_queries", "counter") == "sum"
    assert combine_rule("maskgate_connections", "gauge") == "sum"
    assert combine_rule("python_info", "gauge") == "max"
    assert combine_rule("process_start_time_seconds", "gauge") == "min"
    assert combine_rule("maskgate_queries_created", "gauge") == "min"


def test_a_restarted_worker_keeps_the_sum_from_going_back() -> None:
    live: dict[int, tuple[int, Callable[[], str]]] = {
        0: (100, lambda: exposition(10, 1, [])),
        1: (200, lambda: exposition(5, 1, [])),
    }
    col = WorkerExpositions(lambda: [(slot, pid, f) for slot, (pid, f) in live.items()])
    key = ("maskgate_queries_total", (("role", "vendor"),))
    conns = ("maskgate_connections", (("protocol", "postgres"),))
    assert samples(col.collect())[key] == 15
    del live[1]  # died: its counts stay, its connections do not
    s = samples(col.collect())
    assert s[key] == 15 and s[conns] == 1
    live[1] = (201, lambda: exposition(2, 1, []))  # restarted, counting from zero
    s = samples(col.collect())
    assert s[key] == 17 and s[conns] == 2

    def down() -> str:
        raise OSError("not answering")

    live[0] = (100, down)  # same process, not answering this time: its last counts stand in
    assert samples(col.collect())[key] == 17
