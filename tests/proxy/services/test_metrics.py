from prometheus_client import CollectorRegistry, generate_latest

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
