"""`maskgate explain --http "METHOD /path?query"`: the HTTP decision as JSON, like SQL explain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.cli import main

DEMO = str(Path(__file__).parents[3] / "policies" / "examples" / "demo.yaml")


def explain(capsys: pytest.CaptureFixture[str], user: str, request: str, *extra: str) -> dict:
    assert main(["explain", "--policy", DEMO, "--user", user, "--http", request, *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_allow(capsys: pytest.CaptureFixture[str]) -> None:
    doc = explain(capsys, "vendor_zhang", "GET /api/%63lients//4")
    assert doc["decision"] == "allow" and doc["kind"] == "http" and doc["max_rows"] == 200
    assert doc["forwarded_path"] == "/api/clients/4" and doc["fingerprint"] == "GET /api/clients/?"
    assert "mobile" in doc["classes"] and "mobile" in doc["detect"] and doc["binary"] is False


def test_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    doc = explain(capsys, "vendor_zhang", "GET /api/clients?mobile=13812345678")
    assert doc["decision"] == "block" and doc["reason"] == "masked_predicate"
    assert doc["forwarded_path"] is None and "13812345678" not in json.dumps(doc)
    doc = explain(capsys, "vendor_zhang", "GET /api/clients/%2e%2e/admin")
    assert doc["reason"] == "route_denied"
    doc = explain(capsys, "vendor_zhang", "POST /api/calls", "--body", '{"phone": "1"}')
    assert doc["reason"] == "route_denied"


def test_body_and_lookups(capsys: pytest.CaptureFixture[str]) -> None:
    doc = explain(capsys, "desk_li", "GET /api/clients", "--body", '{"filter": {"mobile": ["1", "2"]}}')
    assert doc["decision"] == "allow" and doc["lookups"] == 2


def test_errors(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["explain", "--policy", DEMO, "--user", "vendor_zhang", "--http"]
    assert main([*base, "/api/clients"]) == 1
    assert "METHOD /path" in capsys.readouterr().err
    assert main([*base, "GET /x", "--api", "nope"]) == 1
    assert "unknown api" in capsys.readouterr().err
    assert main([*base, "GET /x", "--body", "{"]) == 1
    assert "not JSON" in capsys.readouterr().err
