from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from proxy.services import metrics as metrics_module
from proxy.services.metrics import Metrics


def test_names_and_policy_revision_swap() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.queries.labels("postgres", "vendor", "allow").inc()
    m.masked_lookups.labels("service_desk").inc(3)
    m.blocked.labels("postgres", "vendor", m.reason_label("class_denied")).inc()
    m.set_policy_revision("aaa")
    m.set_policy_revision("bbb")
    assert (
        reg.get_sample_value(
            "maskgate_queries_total", {"protocol": "postgres", "role": "vendor", "decision": "allow"}
        )
        == 1
    )
    assert reg.get_sample_value("maskgate_policy_info", {"revision": "bbb"}) == 1
    assert reg.get_sample_value("maskgate_policy_info", {"revision": "aaa"}) is None
    text = generate_latest(reg).decode()
    for name in (
        "maskgate_blocked_queries_total",
        "maskgate_masked_values_total",
        "maskgate_rows_returned_total",
        "maskgate_truncated_results_total",
        "maskgate_masked_lookups_total",
        "maskgate_query_duration_seconds",
        "maskgate_decision_cache_total",
        "maskgate_connections",
        "maskgate_auth_failures_total",
        "maskgate_policy_reloads_total",
    ):
        assert name in text or f"# HELP {name.removesuffix('_total')}" in text, name


def test_unknown_reason_is_bounded() -> None:
    assert Metrics.reason_label("something new") == "other"
    assert Metrics.reason_label("whole_row") == "whole_row"


# The per-statement metrics are plain numbers exported at scrape time; they must export what the
# prometheus_client Counter / Histogram they replaced would, sample for sample.
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("queries"), st.sampled_from(["postgres", "mysql"]), st.sampled_from(["a", "b"])),
        st.tuples(st.just("rows"), st.sampled_from(["a", "b"]), st.integers(0, 10**6)),
        st.tuples(
            st.just("duration"),
            st.sampled_from(["total", "overhead"]),
            st.one_of(
                st.sampled_from([0.0, 0.0001, 0.00025, 0.5, 10.0, 11.0]),
                st.floats(0, 20, allow_nan=False),
            ),
        ),
    ),
    max_size=60,
)


def _samples(reg: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in reg.collect():
        for s in fam.samples:
            # `_created` is a timestamp: present for the same series, its value differs.
            value = 0.0 if s.name.endswith("_created") else s.value
            out[(s.name, tuple(sorted(s.labels.items())))] = value
    return out


@settings(max_examples=150, deadline=None)
@given(_OPS)
def test_plain_counters_export_what_prometheus_client_would(ops: list[tuple]) -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    ref_reg = CollectorRegistry()
    ref_q = Counter(
        "maskgate_queries", "Statements decided", ["protocol", "role", "decision"], registry=ref_reg
    )
    ref_rows = Counter("maskgate_rows_returned", "Rows sent to clients", ["role"], registry=ref_reg)
    ref_d = Histogram(
        "maskgate_query_duration_seconds",
        "d",
        ["kind"],
        buckets=metrics_module._LATENCY_BUCKETS,
        registry=ref_reg,
    )
    for op in ops:
        if op[0] == "queries":
            m.queries.add((op[1], op[2], "allow"))
            ref_q.labels(op[1], op[2], "allow").inc()
        elif op[0] == "rows":
            m.rows_returned.add((op[1],), op[2])
            ref_rows.labels(op[1]).inc(op[2])
        else:
            m.duration.observe(op[1], op[2])
            ref_d.labels(op[1]).observe(op[2])
    mine = {
        k: v
        for k, v in _samples(reg).items()
        if k[0].startswith(("maskgate_queries", "maskgate_rows_", "maskgate_query_d"))
    }
    assert mine == _samples(ref_reg)
    # And the text a scrape reads, but for the created timestamps.
    for sample in ("maskgate_queries_total", "maskgate_rows_returned_total"):
        assert (sample in generate_latest(reg).decode()) == (sample in generate_latest(ref_reg).decode())
