"""deploy/grafana/maskgate.json and the alert rules name only metrics maskgate exports."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.deploy.metric_names import OTHERS, exported, used_in

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def dashboard_exprs() -> list[str]:
    dash = json.loads((DEPLOY / "grafana" / "maskgate.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def rule_exprs() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "maskgate.rules.yml").read_text())
    return [str(r["expr"]) for g in rules["groups"] for r in g["rules"]]


def test_exported_names_include_histogram_and_counter_suffixes() -> None:
    names = exported()
    assert {
        "maskgate_query_duration_seconds_bucket",
        "maskgate_query_duration_seconds_sum",
        "maskgate_query_duration_seconds_count",
        "maskgate_blocked_queries_total",
        "maskgate_auth_failures_total",
        "maskgate_connections",
        "maskgate_sessions",
        "maskgate_policy_info",
    } <= names
    assert "maskgate_query_duration_seconds" not in names  # a histogram has no bare sample


def test_used_in_reads_metric_names_only() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (instance, le) (rate(maskgate_query_duration_seconds_bucket"
        '{kind="overhead"}[5m]))) > 0.010 and on (instance) up{job="maskgate"} == 1'
    )
    assert used_in(expr) == {"maskgate_query_duration_seconds_bucket", "up"}


def test_every_metric_a_panel_names_is_exported() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    unknown = {name for e in exprs for name in used_in(e)} - exported() - OTHERS
    assert not unknown, f"the dashboard names metrics maskgate does not export: {sorted(unknown)}"


def test_every_metric_a_rule_names_is_exported() -> None:
    unknown = {name for e in rule_exprs() for name in used_in(e)} - exported() - OTHERS
    assert not unknown, f"the alert rules name metrics maskgate does not export: {sorted(unknown)}"


def test_the_dashboard_covers_what_the_issue_lists() -> None:
    used = {name for e in dashboard_exprs() for name in used_in(e)}
    assert {
        "maskgate_queries_total",
        "maskgate_blocked_queries_total",
        "maskgate_masked_values_total",
        "maskgate_rows_returned_total",
        "maskgate_query_duration_seconds_bucket",
        "maskgate_connections",
        "maskgate_policy_reloads_total",
        "maskgate_audit_write_failures_total",
    } <= used
    dash = json.loads((DEPLOY / "grafana" / "maskgate.json").read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"] == "maskgate"
