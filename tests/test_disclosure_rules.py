"""The disclosure alert rules (deploy/prometheus/maskgate-disclosure.rules.yml) pass their
promtool unit tests, and name only metrics maskgate exports."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from proxy.services.metrics import Metrics

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_unit_tests_pass() -> None:
    r = subprocess.run(
        ["promtool", "test", "rules", "maskgate-disclosure.rules.test.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_rules_use_exported_metrics() -> None:
    m = Metrics(CollectorRegistry())
    m.canary_reads.labels(role="dba").inc()
    m.disclosures_dropped.inc()
    text = generate_latest(m.registry).decode()
    rules = (RULES / "maskgate-disclosure.rules.yml").read_text()
    for name in ("maskgate_canary_reads_total", "maskgate_disclosures_dropped_total"):
        assert name in rules and name in text
