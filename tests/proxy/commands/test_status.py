"""`maskgate status --config FILE`: asks the metrics listener for /status and prints it."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from proxy.cli import main
from proxy.commands.status import render, status_url
from proxy.operator import OperatorEndpoints, OperatorServer, UpstreamProbe
from proxy.services.metrics import Metrics


def test_status_url_asks_a_wildcard_listener_on_loopback() -> None:
    assert status_url("0.0.0.0", 9187) == "http://127.0.0.1:9187/status"
    assert status_url("::", 9187) == "http://[::1]:9187/status"
    assert status_url("10.0.0.5", 9187) == "http://10.0.0.5:9187/status"


def test_render_is_a_table_an_operator_reads() -> None:
    text = render(
        {
            "ready": False,
            "not_ready": ["mysql upstream db:3306 unreachable: Connection refused"],
            "listeners": {"postgres": "0.0.0.0:6432", "mysql": "0.0.0.0:6033"},
            "metrics": "0.0.0.0:9187",
            "policy": {"revisions": ["9f2c"]},
            "connections": {"postgres": 4},
            "sessions": [{"protocol": "postgres", "role": "vendor", "sessions": 3}],
            "upstreams": {
                "postgres": {"address": "db:5432", "reachable": True, "error": None, "latency_ms": 0.3},
                "mysql": {"address": "db:3306", "reachable": False, "error": "Connection refused"},
            },
            "workers": {"configured": 4, "ready": 4},
        }
    )
    lines = text.splitlines()
    assert lines[0] == "maskgate: NOT READY"
    assert "  - mysql upstream db:3306 unreachable: Connection refused" in lines
    assert "workers: 4 of 4 ready" in lines and "policy revision: 9f2c" in lines
    assert any(line.split() == ["postgres", "0.0.0.0:6432", "4"] for line in lines)
    assert any(line.split() == ["postgres", "vendor", "3"] for line in lines)
    assert any(line.split()[:3] == ["mysql", "db:3306", "UNREACHABLE:"] for line in lines)
    assert any(line.split()[:3] == ["postgres", "db:5432", "reachable"] for line in lines)


def config(tmp_path: Path, metrics_port: int, upstream_port: int) -> Path:
    (tmp_path / "policy.yaml").write_text("version: 1\n")
    cfg = tmp_path / "maskgate.yaml"
    # ${UPSTREAM_PASSWORD} is not set in the test's environment: status must not need it.
    cfg.write_text(
        "policy: policy.yaml\n"
        f"metrics: 127.0.0.1:{metrics_port}\n"
        "postgres:\n  listen: 127.0.0.1:6432\n"
        f"  upstream: postgresql://svc:${{UPSTREAM_PASSWORD}}@127.0.0.1:{upstream_port}/crm\n"
    )
    return cfg


def test_status_command_prints_what_the_listener_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UPSTREAM_PASSWORD", raising=False)
    up = socket.socket()
    up.bind(("127.0.0.1", 0))
    up.listen(4)
    m = Metrics(CollectorRegistry())
    m.set_policy_revision("rev7")
    m.sessions.source = lambda: {("postgres", "vendor"): 2}
    app = OperatorEndpoints(
        m.registry,
        probe=UpstreamProbe({"postgres": ("127.0.0.1", up.getsockname()[1])}),
        not_ready=list,
        listeners=lambda: {"postgres": "127.0.0.1:6432"},
        metrics_address="127.0.0.1:x",
    )
    server = OperatorServer(app, "127.0.0.1", 0)
    try:
        cfg = config(tmp_path, server.port, up.getsockname()[1])
        assert main(["status", "--config", str(cfg)]) == 0
        out = capsys.readouterr().out
        assert out.startswith("maskgate: ready\n") and "policy revision: rev7" in out
        assert main(["status", "--config", str(cfg), "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["sessions"] == [{"protocol": "postgres", "role": "vendor", "sessions": 2}]
        up.close()  # the upstream goes away: not ready (after the probe's cache expires)
        app.probe.ttl = 0
        assert main(["status", "--config", str(cfg)]) == 1
        assert "UNREACHABLE" in capsys.readouterr().out
    finally:
        server.close()
        up.close()


def test_status_without_an_answer_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert main(["status", "--config", str(config(tmp_path, port, 5432))]) == 1
    assert "no answer from http://127.0.0.1:" in capsys.readouterr().err


def test_status_needs_a_metrics_listener(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path, 1, 5432)
    cfg.write_text(cfg.read_text().replace("metrics: 127.0.0.1:1\n", ""))
    assert main(["status", "--config", str(cfg)]) == 2
    assert "no `metrics` listener" in capsys.readouterr().err
