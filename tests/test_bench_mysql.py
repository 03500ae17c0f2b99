"""The pieces of `make bench` workload 5 (MySQL) that need no server: the proxy's CPU accounting,
the bench policy's MySQL login, and the report's MySQL rows. The workload itself runs in
`make bench` (it starts MariaDB and maskgate and takes a minute or more)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import mysql_bench
from bench.__main__ import USER, USER_PW, policy_yaml, report
from policies.loader import load_policy
from proxy.mysql.auth import native_hash


def test_cpu_seconds_grows_with_work() -> None:
    before = mysql_bench.cpu_seconds(os.getpid())
    # About 0.1-0.3 s of CPU: well above the clock tick (10 ms) that /proc/PID/stat counts in.
    sum(i * i for i in range(3_000_000))
    assert mysql_bench.cpu_seconds(os.getpid()) - before > 0.02


def test_stat_cpu_seconds_skips_a_command_name_with_spaces() -> None:
    # Field 2 of /proc/PID/stat is "(comm)", and comm may hold spaces and parentheses.
    fields = ["S"] + ["0"] * 10 + ["250", "50"] + ["0"] * 30
    line = "42 (a b) c) " + " ".join(fields)
    assert mysql_bench.stat_cpu_seconds(line) == pytest.approx(300 / mysql_bench.CLK_TCK)


def test_bench_policy_lets_the_bench_user_in_over_mysql(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml())
    user = load_policy(path).users[USER]
    assert user.mysql_password == native_hash(USER_PW)


def test_report_has_the_mysql_rows(capsys: pytest.CaptureFixture[str]) -> None:
    def side(direct: float, proxy: float) -> dict[str, dict[str, float]]:
        return {
            "direct": {"tps": direct, "maskgate_cpu_us_per_tx": 0.0},
            "maskgate": {"tps": proxy, "maskgate_cpu_us_per_tx": 210.0},
        }

    report(
        {
            "scram_iterations": 4096,
            "point_simple_tps": {"direct": 100.0, "maskgate": 50.0},
            "point_simple_maskgate_cpu_us_per_tx": 190.0,
            "mysql": {
                "driver_simple": "mysqlclient",
                "driver_prepared": "mysql-connector-pure",
                "point_simple": side(1000.0, 250.0),
                "point_prepared": side(800.0, 400.0),
                "point_mysqlslap": {**side(2000.0, 500.0), "queries": {"direct": 1, "maskgate": 1}},
                "mariadb_version": "10.11",
                "proxysql_maxscale": "ProxySQL/MaxScale not available from this machine's package sources",
            },
        }
    )
    out = capsys.readouterr().out
    assert (
        "| MySQL point lookups, text protocol, mysqlclient (TPS) | 1000.0 | - | 250.0 | n/a | 0.25 |" in out
    )
    assert (
        "| MySQL point lookups, prepared, mysql-connector-pure (TPS) | 800.0 | - | 400.0 | n/a | 0.50 |"
        in out
    )
    assert "mysqlslap (TPS) | 2000.0 | - | 500.0 | n/a | 0.25 |" in out
    assert "PostgreSQL simple 190.0 µs" in out
    assert "MySQL simple 210.0 µs" in out
    assert "ProxySQL/MaxScale not available" in out


def test_report_says_when_mysql_was_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    report({"scram_iterations": 4096, "mysql": {"skipped": "mariadbd / mariadb-install-db not found"}})
    assert "MySQL workload skipped: mariadbd" in capsys.readouterr().out


def test_workload_5_is_skipped_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from bench.__main__ import mysql_figures

    monkeypatch.setattr(mysql_bench, "mariadb_available", lambda: False)
    reason = mysql_bench.skip_reason()
    assert reason is not None and "mariadbd" in reason
    assert mysql_figures(argparse.Namespace(skip_mysql=False)) == {"skipped": reason}
    assert mysql_figures(argparse.Namespace(skip_mysql=True)) is None
