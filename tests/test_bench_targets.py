"""The issue-12 summary of `make bench` (targets, MET / NOT MET, the 16-core line) and the CPU
accounting of a proxy with worker processes; the workloads themselves run in `make bench`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest

from bench import mysql_bench
from bench.__main__ import report, sixteen_cores, targets


def run() -> dict[str, Any]:
    return {
        "machine": {"cores": 2},
        "scram_iterations": 4096,
        "big_rows": 1_000_000,
        "point_simple_tps": {"direct": 20000.0, "pgbouncer": 12000.0, "maskgate": 9500.0},
        "point_simple_cpu_us_per_tx": {"pgbouncer": 40.0, "maskgate": 50.0},
        "point_simple_maskgate_cpu_us_per_tx": 50.0,
        "point_prepared_tps": {"direct": 30000.0, "pgbouncer": 16000.0, "maskgate": 8000.0},
        "point_prepared_cpu_us_per_tx": {"pgbouncer": 40.0, "maskgate": 70.0},
        "point_prepared_maskgate_cpu_us_per_tx": 70.0,
        "stream_psql_rows_per_s": {"direct": 200000, "maskgate": 120000},
        "stream_psycopg_rows_per_s": {"direct": 100000, "maskgate": 40000},
        "stream_psql_proxy_rss_mb_max": 90.0,
        "stream_psycopg_proxy_rss_mb_max": 95.0,
        "masking": {
            "figures": {"text_mix_lines_per_s": 250000, "scan_lines_per_s": 150000, "other": 1},
            "targets": {"text_mix_lines_per_s": 200000, "scan_lines_per_s": 100000},
            "age_hours": 0.5,
        },
        "mysql": {
            "point_simple": {"maskgate": {"maskgate_cpu_us_per_tx": 55.0}},
            "point_prepared": {"maskgate": {"maskgate_cpu_us_per_tx": 100.0}},
        },
        "workers": {
            "clients": {"1": 4, "2": 8},
            "simple": {"tps": {"1": 5000.0, "2": 7000.0}, "cpu_us_per_tx": {"1": 50.0, "2": 52.0}},
        },
    }


def status(rows: list[dict[str, Any]], start: str) -> bool | None:
    [row] = [r for r in rows if r["target"].startswith(start)]
    return row["met"]  # type: ignore[no-any-return]


def test_each_target_is_judged_against_its_goal() -> None:
    rows = targets(run())
    assert status(rows, "point lookups, simple: TPS") is True  # 0.79
    assert status(rows, "point lookups, simple: proxy CPU") is True  # 1.25
    assert status(rows, "point lookups, prepared: TPS") is False  # 0.5
    assert status(rows, "point lookups, prepared: proxy CPU") is False  # 1.75
    assert status(rows, "stream 1,000,000 rows, psql") is True
    assert status(rows, "stream 1,000,000 rows, psycopg") is False
    assert status(rows, "streaming: proxy RSS") is True
    # Issue 12's 200k lines/s, whatever masking.json's own target says.
    assert status(rows, "masking: text_mix_lines_per_s") is True
    assert status(rows, "masking: scan_lines_per_s") is False
    assert status(rows, "MySQL point lookups, simple") is True  # 1.1
    assert status(rows, "MySQL point lookups, prepared") is False  # 1.43
    assert status(rows, "workers 2 / 1, simple: proxy CPU") is True
    assert status(rows, "workers 2 / 1, simple: TPS") is None


def test_what_was_not_measured_is_not_met_or_missed() -> None:
    rows = targets({"machine": {"cores": 2}})
    assert {r["met"] for r in rows} == {None}


def test_the_report_prints_the_targets_and_the_16_core_line(capsys: pytest.CaptureFixture[str]) -> None:
    r = run()
    r["targets"] = targets(r)
    report(r)
    out = capsys.readouterr().out
    assert (
        "| point lookups, simple: TPS maskgate / pgbouncer | 9500.0 / 12000.0 TPS | 0.79 | >= 0.75 | MET |"
        in out
    )
    assert (
        "| point lookups, prepared: TPS maskgate / pgbouncer | 8000.0 / 16000.0 TPS | 0.50 | >= 0.75 "
        "| NOT MET |" in out
    )
    line = sixteen_cores(r)
    assert line is not None and "16 workers" in line
    assert "307,692-320,000 TPS" in line  # 16 cores / 52 µs and / 50 µs
    assert line in out


def test_tree_cpu_counts_the_children_of_the_proxy() -> None:
    """With `workers: N` the proxy is a supervisor and its workers: all of their CPU counts."""
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert child.pid in mysql_bench.process_tree(os.getpid())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            extra = mysql_bench.tree_cpu_seconds(os.getpid()) - mysql_bench.cpu_seconds(os.getpid())
            if extra > 0.05:
                break
            time.sleep(0.05)
        assert extra > 0.05
    finally:
        child.kill()
        child.wait()


def test_context_switches_are_counted() -> None:
    before = mysql_bench.tree_context_switches(os.getpid())
    for _ in range(20):
        time.sleep(0.001)  # each sleep is a voluntary switch
    assert mysql_bench.tree_context_switches(os.getpid()) >= before + 10
