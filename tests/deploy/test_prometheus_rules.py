"""deploy/prometheus: the alert rules pass `promtool check rules` and their unit tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL_MISSING = "promtool not installed (apt-get install prometheus)"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(PROMTOOL_MISSING)
    return path


def test_rules_pass_promtool_check() -> None:
    out = subprocess.run(
        [promtool(), "check", "rules", str(RULES / "maskgate.rules.yml")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_rules_pass_their_unit_tests() -> None:
    out = subprocess.run(
        [promtool(), "test", "rules", "maskgate.rules.test.yml"],
        capture_output=True,
        text=True,
        cwd=RULES,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_unit_test() -> None:
    import yaml

    rules = yaml.safe_load((RULES / "maskgate.rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((RULES / "maskgate.rules.test.yml").read_text())
    tested = {
        t["alertname"]
        for case in tests["tests"]
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    assert alerts == tested
    # The list: each concern has its alert.
    for name in (
        "MaskgateRefusalBurst",
        "MaskgateMaskedPredicateProbing",
        "MaskgateAuthFailures",
        "MaskgatePolicyReloadFailed",
        "MaskgateAuditWriteFailures",
        "MaskgateDown",
        "MaskgateOverheadHigh",
        "MaskgateDecisionCacheMissRate",
        "MaskgateBudgetCrossed",
        "MaskgateBudgetStoreDown",
    ):
        assert name in alerts
