"""`workers: 2` as an operator runs it: both workers serve one port, /metrics is their sum, a
policy change reaches both, their audit records share one file whole, a killed worker is
restarted, SIGTERM stops them all."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.demo.embedded_pg import EmbeddedPostgres, free_port
from tests.conftest import start_crm
from tests.integration.test_serve_process import SVC_PW, start, wait_for

CONNECTIONS = 24


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = start_crm(tmp_path_factory.mktemp("pg-workers"), SVC_PW, 300)
    try:
        yield pg
    finally:
        pg.destroy()


def vendor(port: int) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user="vendor_zhang",
        password="vendor-pass",
        dbname="crm",
        sslmode="disable",
        autocommit=True,
    )


def worker_pids(stderr: Path) -> list[int]:
    m = re.findall(r"workers \(pids ([\d, ]+)\)", stderr.read_text())
    return [int(p) for p in m[-1].split(", ")] if m else []


def sockets(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return n


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_two_workers_share_the_port_the_metrics_the_policy_and_the_audit_log(
    upstream: EmbeddedPostgres, tmp_path: Path
) -> None:
    mport = free_port()
    s = start(tmp_path, upstream, extra=f"workers: 2\nmetrics: 127.0.0.1:{mport}\n")
    proc, port, policy, stderr = s["proc"], s["port"], s["policy"], s["stderr"]
    ran = 0  # statements run, each of which must have its one `start` record in the shared file

    def select(c: psycopg.Connection[Any]) -> int:
        nonlocal ran
        rows = len(c.execute("SELECT id FROM call_records").fetchall())
        ran += 1
        return rows

    try:
        assert wait_for(lambda: len(worker_pids(stderr)) == 2, 30), stderr.read_text()
        pids = worker_pids(stderr)
        before = {pid: sockets(pid) for pid in pids}

        # Many connections held open at once: the kernel spreads them over both workers.
        conns = [vendor(port) for _ in range(CONNECTIONS)]
        try:
            for c in conns:
                assert select(c) == 200
            grown = {pid: sockets(pid) - before[pid] for pid in pids}
            assert all(g > 0 for g in grown.values()), grown  # both workers hold sessions
            # /metrics is the sum: neither worker alone holds every connection.
            m = scrape(mport)
            assert value(m, "maskgate_connections", protocol="postgres") == CONNECTIONS
            assert value(m, "maskgate_rows_returned_total", role="vendor") >= 200 * CONNECTIONS
            # The supervisor's /status sums the workers' sessions by role; /readyz says ready.
            st = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{mport}/status", timeout=10).read())
            assert st["ready"] and st["workers"] == {"configured": 2, "ready": 2}, st
            assert st["sessions"] == [{"protocol": "postgres", "role": "vendor", "sessions": CONNECTIONS}]
            assert urllib.request.urlopen(f"http://127.0.0.1:{mport}/readyz", timeout=10).status == 200
        finally:
            for c in conns:
                c.close()

        # A policy change reaches both workers (each watches the file).
        policy.write_text(policy.read_text().replace("max_rows: 200", "max_rows: 30"))

        def everywhere(rows: int) -> bool:
            cs = [vendor(port) for _ in range(CONNECTIONS)]
            try:
                return [select(c) for c in cs] == [rows] * len(cs)
            finally:
                for c in cs:
                    c.close()

        assert wait_for(lambda: everywhere(30), 20)
        assert wait_for(lambda: value(scrape(mport), "maskgate_policy_reloads_total", result="success") == 2)
        m = scrape(mport)
        assert len([k for k in m if k[0] == "maskgate_policy_info"]) == 1  # one revision, once
        queries = value(m, "maskgate_queries_total", protocol="postgres", role="vendor", decision="allow")
        assert queries >= 2 * CONNECTIONS

        # A killed worker is restarted and logged; the sum of counters does not go back. (Its
        # records are in the file first: without audit_required, SIGKILL loses what is queued.)
        assert wait_for(lambda: len(starts(tmp_path / "audit.jsonl")) == ran, 10)
        os.kill(pids[0], signal.SIGKILL)
        assert wait_for(lambda: "killed by SIGKILL; restarting" in stderr.read_text(), 10)
        assert wait_for(lambda: "worker 0 (pid" in stderr.read_text().split("SIGKILL")[-1], 60)
        assert everywhere(30)
        m = scrape(mport)
        assert (
            value(m, "maskgate_queries_total", protocol="postgres", role="vendor", decision="allow")
            >= queries + CONNECTIONS
        )

        # A second maskgate on the same address is refused, as with one process: SO_REUSEPORT
        # must not let it take half of the connections.
        second = subprocess.run(
            [sys.executable, "-m", "proxy.cli", "serve", "--config", str(tmp_path / "maskgate.yaml")],
            env=dict(os.environ, UP=SVC_PW, VENDOR_DB="x"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1 and "in use" in second.stderr, second.stderr

        # SIGHUP reaches every worker: a policy without users, which the file watchers refuse,
        # is applied by it everywhere.
        text = policy.read_text()
        policy.write_text(text[: text.index("\nusers:")] + "\nusers: {}\n")
        assert wait_for(lambda: stderr.read_text().count("would remove every user") >= 2, 20)
        proc.send_signal(signal.SIGHUP)

        def refused_everywhere() -> bool:
            for _ in range(CONNECTIONS):
                try:
                    vendor(port).close()
                    return False
                except psycopg.OperationalError:
                    pass
            return True

        assert wait_for(refused_everywhere, 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, stderr.read_text()
    for pid in worker_pids(stderr):
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()

    # One audit file; every line whole JSON; every statement's record is there, once.
    recorded = starts(tmp_path / "audit.jsonl")
    assert len(recorded) == ran >= 3 * CONNECTIONS
    assert len({r["session"] for r in recorded}) == ran


def starts(audit: Path) -> list[dict[str, Any]]:
    """The `start` records of the test's statement; every line of the file must be whole JSON.
    (Read while workers write, the file may end in the part of a batch copied so far.)"""
    text = audit.read_text() if audit.exists() else ""
    records = [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]
    return [r for r in records if r.get("event") == "start" and r.get("sql") == "SELECT id FROM call_records"]


def test_a_bad_policy_at_start_stops_every_worker(upstream: EmbeddedPostgres, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    port = free_port()
    policy.write_text("version: 1\nroles: {r: {max_rows: [oops]}}\n")
    (tmp_path / "maskgate.yaml").write_text(
        f"policy: policy.yaml\nworkers: 2\npostgres:\n  listen: 127.0.0.1:{port}\n"
        f"  upstream: postgresql://maskgate_svc:x@127.0.0.1:{upstream.port}/crm\n"
    )
    res = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "serve", "--config", str(tmp_path / "maskgate.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2, res.stderr
    assert "policy.yaml:" in res.stderr
