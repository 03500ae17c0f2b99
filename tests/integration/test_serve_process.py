"""`maskgate serve` as an operator runs it: a separate process, SIGHUP reloads, SIGTERM stops
cleanly, a broken policy keeps the last good one, audit_required refuses when auditing fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proxy.demo.embedded_pg import EmbeddedPostgres, free_port, wait_port
from tests.conftest import CRM_VENDOR_PASSWORD, start_crm

REPO = Path(__file__).resolve().parents[2]
SVC_PW = "svc-process-secret"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = start_crm(tmp_path_factory.mktemp("pg-process"), SVC_PW, 300)
    try:
        yield pg
    finally:
        pg.destroy()


def start(
    tmp: Path,
    pg: EmbeddedPostgres,
    *,
    audit_log: str = "audit.jsonl",
    extra: str = "",
    policy_text: str | None = None,
) -> dict[str, Any]:
    """`maskgate serve` as a process; `policy_text` replaces the demo policy."""
    policy = tmp / "policy.yaml"
    policy.write_text(policy_text or (REPO / "policies/examples/demo.yaml").read_text())
    port = free_port()
    (tmp / "maskgate.yaml").write_text(
        f"policy: policy.yaml\naudit_log: {audit_log}\n{extra}"
        f"postgres:\n  listen: 127.0.0.1:{port}\n"
        f"  upstream: postgresql://maskgate_svc:${{UP}}@127.0.0.1:{pg.port}/crm?sslmode=disable\n"
        '  database_roles: {crm_vendor: "${VENDOR_DB}"}\n'
    )
    log = (tmp / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--config", str(tmp / "maskgate.yaml")],
        env=dict(os.environ, UP=SVC_PW, VENDOR_DB=CRM_VENDOR_PASSWORD),
        stderr=log,
        cwd=REPO,
    )
    try:
        wait_port("127.0.0.1", port, timeout=30)
    except OSError:
        proc.kill()
        raise AssertionError((tmp / "stderr.log").read_text()) from None
    return {"proc": proc, "port": port, "policy": policy, "stderr": tmp / "stderr.log"}


def rows_as_vendor(port: int) -> int:
    with psycopg.connect(
        host="127.0.0.1",
        port=port,
        user="vendor_zhang",
        password="vendor-pass",
        dbname="crm",
        sslmode="disable",
    ) as c:
        return len(c.execute("SELECT id FROM call_records").fetchall())


def wait_for(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_sighup_reload_and_sigterm_shutdown(upstream: EmbeddedPostgres, tmp_path: Path) -> None:
    s = start(tmp_path, upstream)
    proc, port, policy = s["proc"], s["port"], s["policy"]
    try:
        assert rows_as_vendor(port) == 200
        good = policy.read_text()
        # A broken policy: rejected with file:line:col, the last good one keeps serving.
        policy.write_text(good.replace("max_rows: 200", "max_rows: [oops]"))
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "policy reload rejected" in s["stderr"].read_text())
        assert "policy.yaml:" in s["stderr"].read_text()
        assert rows_as_vendor(port) == 200
        # A good change is applied (by the file watcher or the SIGHUP, whichever comes first).
        policy.write_text(good.replace("max_rows: 200", "max_rows: 30"))
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: rows_as_vendor(port) == 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, s["stderr"].read_text()
    assert "shutting down" in s["stderr"].read_text()


def test_audit_required_refuses_when_the_log_cannot_be_written(
    upstream: EmbeddedPostgres, tmp_path: Path
) -> None:
    (tmp_path / "not-a-dir").write_text("a file where the audit folder should be")
    s = start(tmp_path, upstream, audit_log="not-a-dir/audit.jsonl", extra="audit_required: true\n")
    try:
        with psycopg.connect(
            host="127.0.0.1",
            port=s["port"],
            user="dba_wang",
            password="dba-pass",
            dbname="crm",
            sslmode="disable",
            autocommit=True,
        ) as c:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="audit"):
                c.execute("SELECT count(*) FROM customers")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute("SELECT 1")
        assert "audit" in s["stderr"].read_text()
    finally:
        s["proc"].send_signal(signal.SIGTERM)
        s["proc"].wait(20)


def test_the_audit_file_is_reopened_after_rotation(upstream: EmbeddedPostgres, tmp_path: Path) -> None:
    """logrotate moves the file and sends SIGHUP; an operator removes it without one. Either
    way the records that follow land in a new file at the configured path."""
    s = start(tmp_path, upstream)
    audit = tmp_path / "audit.jsonl"

    def sqls(path: Path) -> list[str]:
        if not path.exists():
            return []
        return [json.loads(line).get("sql") or "" for line in path.read_text().splitlines()]

    def has(path: Path, marker: str) -> bool:
        return any(marker in sql for sql in sqls(path))

    def query(marker: str) -> None:
        with psycopg.connect(
            host="127.0.0.1",
            port=s["port"],
            user="vendor_zhang",
            password="vendor-pass",
            dbname="crm",
            sslmode="disable",
        ) as c:
            c.execute(f"SELECT '{marker}' AS marker").fetchall()

    try:
        query("m_before")
        assert wait_for(lambda: has(audit, "m_before"))
        audit.rename(tmp_path / "audit.jsonl.1")  # logrotate's rename, then its postrotate
        s["proc"].send_signal(signal.SIGHUP)
        assert wait_for(audit.exists)
        query("m_after_mv")
        assert wait_for(lambda: has(audit, "m_after_mv"))
        assert not has(tmp_path / "audit.jsonl.1", "m_after_mv")
        audit.unlink()  # no SIGHUP: the writer notices the path names no file
        query("m_after_rm")
        assert wait_for(lambda: has(audit, "m_after_rm"))
    finally:
        s["proc"].send_signal(signal.SIGTERM)
        s["proc"].wait(20)


def test_a_database_down_at_start_is_loaded_when_it_comes_up(
    upstream: EmbeddedPostgres, tmp_path: Path
) -> None:
    """The upstream is down when maskgate starts: its schema cannot be loaded. Clients are told
    the database is unreachable (not refused tables as unknown), and once it is up the load is
    retried in the background, without waiting for the 5-minute refresh or a restart."""
    upstream.stop()
    try:
        s = start(tmp_path, upstream)
        with pytest.raises(psycopg.OperationalError) as down:
            rows_as_vendor(s["port"])
        assert "could not connect to the database: upstream unreachable" in str(down.value)
        assert "retrying in" in s["stderr"].read_text()
    finally:
        upstream.start()
    try:
        # Until the retry lands, a session gets 57P03 (starting up), never a wrong refusal.
        def served() -> bool:
            try:
                return rows_as_vendor(s["port"]) == 200
            except psycopg.OperationalError as e:
                # (libpq does not report the SQLSTATE of a failed connection: 57P03's text.)
                assert "the database system is starting up" in str(e), e
                return False

        assert wait_for(served, timeout=40)
    finally:
        s["proc"].send_signal(signal.SIGTERM)
        s["proc"].wait(20)
