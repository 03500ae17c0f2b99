"""Operator endpoints: /healthz, /readyz, /status and /metrics on the metrics listener."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from proxy.config import load_config
from proxy.operator import (
    OperatorEndpoints,
    OperatorServer,
    UpstreamHealth,
    UpstreamProbe,
    config_listeners,
    not_ready_reasons,
    readiness,
    sessions_by_role,
    status_document,
    upstream_targets,
)
from proxy.services.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_probe_is_cached_for_its_ttl() -> None:
    calls: list[tuple[str, int]] = []

    def connect(addr: tuple[str, int], timeout: float) -> socket.socket:
        calls.append(addr)
        if addr[1] == 2:
            raise ConnectionRefusedError(111, "Connection refused")
        a, b = socket.socketpair()
        b.close()
        return a

    clock = Clock()
    probe = UpstreamProbe({"postgres": ("db", 1), "mysql": ("my", 2)}, ttl=2.0, connect=connect, clock=clock)
    first = probe.results()
    assert first["postgres"].reachable and first["postgres"].address == "db:1"
    assert not first["mysql"].reachable and first["mysql"].error == "Connection refused"
    clock.now += 1.0
    assert probe.results() == first and len(calls) == 2  # cached
    clock.now += 1.5
    probe.results()
    assert len(calls) == 4


def test_a_timeout_is_said_in_words() -> None:
    def connect(addr: tuple[str, int], timeout: float) -> socket.socket:
        raise TimeoutError()

    h = UpstreamProbe({"postgres": ("::1", 5432)}, timeout=0.5, connect=connect).results()["postgres"]
    assert h.address == "[::1]:5432" and h.error == "no answer within 0.5 s"


def test_readiness_names_what_is_not_ready() -> None:
    ups = {"postgres": UpstreamHealth("db:5432", False, "Connection refused")}
    reasons = not_ready_reasons(["starting: listeners not up yet"], ups)
    code, body = readiness(reasons)
    assert code == 503 and body["ready"] is False
    assert body["not_ready"] == [
        "starting: listeners not up yet",
        "postgres upstream db:5432 unreachable: Connection refused",
    ]
    assert readiness([]) == (200, {"ready": True})


def test_status_reads_revision_connections_and_sessions_from_the_registry() -> None:
    m = Metrics(CollectorRegistry())
    m.set_policy_revision("abc123")
    m.connections.labels("postgres").inc(3)
    m.sessions.source = lambda: {("postgres", "vendor"): 2, ("mysql", "dba"): 1}
    doc = status_document(
        listeners={"postgres": "127.0.0.1:6432"},
        metrics="127.0.0.1:9187",
        registry=m.registry,
        upstreams={"postgres": UpstreamHealth("db:5432", True, None, 0.4)},
        reasons=[],
    )
    assert doc["ready"] is True and doc["policy"] == {"revisions": ["abc123"]}
    assert doc["connections"] == {"postgres": 3}
    assert doc["sessions"] == [
        {"protocol": "mysql", "role": "dba", "sessions": 1},
        {"protocol": "postgres", "role": "vendor", "sessions": 2},
    ]
    assert doc["upstreams"]["postgres"] == {
        "address": "db:5432",
        "reachable": True,
        "error": None,
        "latency_ms": 0.4,
    }
    assert json.loads(json.dumps(doc)) == doc


def test_sessions_are_counted_by_role_and_never_by_user() -> None:
    class P:
        def __init__(self, role: str) -> None:
            self.role = role
            self.user = "someone"

    def conn(role: str | None) -> Any:
        tracker = type("T", (), {"principal": P(role) if role else None})()
        ctx = type("C", (), {"tracker": tracker})()
        return type("Conn", (), {"session": type("S", (), {"ctx": ctx})()})()

    pg = type(
        "L", (), {"protocol": "postgres", "connections": {conn("vendor"), conn("vendor"), conn(None)}}
    )()
    my = type("L", (), {"protocol": "mysql", "connections": {conn("dba")}})()
    assert sessions_by_role([pg, my]) == {("postgres", "vendor"): 2, ("mysql", "dba"): 1}
    m = Metrics(CollectorRegistry())
    m.sessions.source = lambda: sessions_by_role([pg, my])
    assert m.registry.get_sample_value("maskgate_sessions", {"protocol": "postgres", "role": "vendor"}) == 2


@pytest.fixture
def listening() -> Iterator[int]:
    """A port that accepts TCP connections (an upstream that is up)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def serve(upstreams: dict[str, tuple[str, int]], own: list[str]) -> tuple[OperatorServer, Metrics]:
    m = Metrics(CollectorRegistry())
    m.set_policy_revision("rev1")
    m.queries.labels("postgres", "vendor", "allow").inc()
    app = OperatorEndpoints(
        m.registry,
        probe=UpstreamProbe(upstreams, timeout=0.5),
        not_ready=lambda: own,
        listeners=lambda: {"postgres": "127.0.0.1:6432"},
        metrics_address="127.0.0.1:0",
    )
    return OperatorServer(app, "127.0.0.1", 0), m


def test_the_listener_serves_all_four_endpoints(listening: int) -> None:
    server, _ = serve({"postgres": ("127.0.0.1", listening)}, [])
    try:
        assert get(server.port, "/healthz") == (200, "text/plain", "ok\n")
        code, ctype, body = get(server.port, "/readyz")
        assert (code, ctype, json.loads(body)) == (200, "application/json", {"ready": True})
        code, _, body = get(server.port, "/metrics")
        assert code == 200
        assert 'maskgate_queries_total{decision="allow",protocol="postgres",role="vendor"} 1.0' in body
        code, _, body = get(server.port, "/status")
        doc = json.loads(body)
        assert code == 200 and doc["ready"] and doc["policy"]["revisions"] == ["rev1"]
        assert doc["listeners"] == {"postgres": "127.0.0.1:6432"}
        assert get(server.port, "/nope")[0] == 404
    finally:
        server.close()


def test_readyz_is_503_with_reasons_while_an_upstream_is_down() -> None:
    port = closed_port()
    server, _ = serve({"postgres": ("127.0.0.1", port)}, ["starting: listeners not up yet"])
    try:
        code, _, body = get(server.port, "/readyz")
        assert code == 503
        reasons = json.loads(body)["not_ready"]
        assert reasons[0] == "starting: listeners not up yet"
        assert reasons[1].startswith(f"postgres upstream 127.0.0.1:{port} unreachable: ")
        # Liveness does not depend on the database: a restart would not bring it back.
        assert get(server.port, "/healthz")[0] == 200
        status = json.loads(get(server.port, "/status")[2])
        assert status["ready"] is False and status["upstreams"]["postgres"]["reachable"] is False
    finally:
        server.close()


def test_upstream_targets_and_listeners_come_from_every_configured_side(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("version: 1\n")
    (tmp_path / "maskgate.yaml").write_text(
        "policy: policy.yaml\n"
        "postgres: {listen: '127.0.0.1:6432', upstream: 'postgresql://svc:pw@db.internal/crm'}\n"
        "mysql: {listen: '127.0.0.1:6033', upstream: 'mysql://svc:pw@10.0.0.9:3307/crm'}\n"
        "http: {listen: '127.0.0.1:8080', upstream: 'https://api.internal'}\n"
    )
    cfg = load_config(tmp_path / "maskgate.yaml")
    assert upstream_targets(cfg) == {
        "postgres": ("db.internal", 5432),
        "mysql": ("10.0.0.9", 3307),
        "http": ("api.internal", 443),
    }
    assert config_listeners(cfg) == {
        "postgres": "127.0.0.1:6432",
        "mysql": "127.0.0.1:6033",
        "http": "127.0.0.1:8080",
    }
