"""The pieces of `make bench` workload 7 (HTTP) that need no database: the driver against a tiny
local app, its percentile, the report's rows and the command line. The workload itself runs in
`make bench` (it starts PostgreSQL, the CRM API and maskgate)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest
from aiohttp import web

from bench import http_bench
from bench.__main__ import report, targets


def test_percentile_is_a_latency_some_request_had() -> None:
    values = [float(v) for v in range(1, 1001)]
    assert http_bench.percentile(values, 0.99) == 990.0
    assert http_bench.percentile(values, 0.5) == 500.0
    assert http_bench.percentile([7.0], 0.99) == 7.0
    assert http_bench.percentile([3.0, 1.0, 2.0], 1.0) == 3.0
    with pytest.raises(ValueError):
        http_bench.percentile([], 0.5)


def test_the_driver_counts_answers_and_errors() -> None:
    async def scenario() -> tuple[http_bench.RunResult, http_bench.RunResult]:
        async def ok(request: web.Request) -> web.Response:
            return web.json_response({"data": [1, 2, 3]})

        async def broken(request: web.Request) -> web.Response:
            return web.json_response({"error": "no"}, status=500)

        app = web.Application()
        app.router.add_get("/ok", ok)
        app.router.add_get("/broken", broken)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = next(a[1] for a in runner.addresses)
        try:
            good = await http_bench.drive(f"http://127.0.0.1:{port}/ok", 0.3, concurrency=2, warmup=0.05)
            bad = await http_bench.drive(f"http://127.0.0.1:{port}/broken", 0.2, concurrency=2, warmup=0.05)
        finally:
            await runner.cleanup()
        return good, bad

    had_sniffio = "sniffio" in sys.modules
    good, bad = asyncio.run(scenario())
    # The driver's stand-in for a missing sniffio does not outlive the run.
    assert ("sniffio" in sys.modules) == had_sniffio or importlib.util.find_spec("sniffio") is not None
    assert good.requests > 0 and good.errors == 0 and good.rps > 0
    assert len(good.latencies_ms) == good.requests
    s = good.summary()
    assert s["p50_ms"] <= s["p99_ms"] and s["errors"] == 0
    assert bad.requests == 0 and bad.errors > 0


def test_report_rows_with_both_targets(capsys: pytest.CaptureFixture[str]) -> None:
    h = {
        "items": 50,
        "concurrency": 8,
        "auth": "Basic over TLS",
        "client": "httpx",
        "direct": {"rps": 400.0, "p50_ms": 15.0, "p99_ms": 40.0, "errors": 0},
        "maskgate": {"rps": 200.0, "p50_ms": 30.0, "p99_ms": 80.0, "errors": 0, "cpu_us_per_req": 900.0},
        "ratio_rps": 0.5,
        "ratio_p99": 2.0,
    }
    r = {"scram_iterations": 4096, "machine": {"cores": 2}, "http": h}
    r["targets"] = targets(r)
    report(r)
    out = capsys.readouterr().out
    assert "| HTTP: 50-item JSON list, Basic over TLS, c=8 (req/s) | 400.0 | - | 200.0 | n/a | 0.50 |" in out
    assert "maskgate 30.0 / 80.0 ms (p99 × 2.0)" in out and "900.0 µs" in out
    assert "req/s maskgate / direct | 200.0 / 400.0 req/s | 0.50 | (shown) | n/a |" in out


def test_report_says_when_maskgate_was_not_measured(capsys: pytest.CaptureFixture[str]) -> None:
    h = {
        "items": 50,
        "concurrency": 8,
        "auth": "Basic over TLS",
        "direct": {"rps": 400.0, "p50_ms": 15.0, "p99_ms": 40.0, "errors": 0},
        "maskgate_unavailable": http_bench.UNAVAILABLE,
    }
    report({"scram_iterations": 4096, "http": h})
    out = capsys.readouterr().out
    assert "| 400.0 | - | - | n/a | n/a |" in out
    assert "direct 15.0 / 40.0 ms; maskgate HTTP side not available" in out
    assert http_bench.detail_lines({"error": "boom"}) == ["HTTP workload failed: boom"]
    assert http_bench.table_row({"error": "boom"}) is None


def test_command_line_refuses_nonsense() -> None:
    for argv in (["--rounds", "0"], ["--seconds", "0"], ["--concurrency", "0"], ["--nope"]):
        with pytest.raises(SystemExit):
            http_bench.main(argv)


def test_bench_policy_gives_the_vendor_the_list_route(tmp_path: Path) -> None:
    model = pytest.importorskip("policies.model")
    if not hasattr(model, "Api"):
        pytest.skip("the policy model has no `apis` yet")
    from policies.loader import load_policy

    path = tmp_path / "policy.yaml"
    path.write_text(http_bench.policy_yaml("0" * 64))
    policy = load_policy(path)
    role = policy.roles[policy.users[http_bench.USER].role]
    assert any(r.matches("GET", "/api/clients") for r in role.routes)
    assert "crm-api" in policy.apis


def test_a_server_that_dies_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    import subprocess

    from proxy.demo.embedded_pg import free_port

    log = tmp_path / "server.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stderr.write('no policy here'); sys.exit(3)"], stderr=err
        )
    with pytest.raises(RuntimeError, match="exited with 3: no policy here"):
        http_bench._wait_listening(proc, free_port(), log, timeout=30)


def test_make_bench_runs_the_workload_with_its_own_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from bench.__main__ import http_figures

    seen: list[tuple[object, ...]] = []

    def fake_run(work: Path, rounds: int, seconds: float, *, bearer: bool) -> dict[str, object]:
        seen.append((rounds, seconds, bearer, work.is_dir()))
        return {"direct": {"rps": 1.0}}

    monkeypatch.setattr(http_bench, "run", fake_run)
    args = argparse.Namespace(skip_http=False, http_bearer=True, rounds=3, seconds=8)
    assert http_figures(args) == {"direct": {"rps": 1.0}}
    assert seen == [(3, 4, True, True)]
    assert http_figures(argparse.Namespace(skip_http=True)) is None

    def broken(*a: object, **k: object) -> dict[str, object]:
        raise RuntimeError("maskgate exited with 1")

    monkeypatch.setattr(http_bench, "run", broken)
    assert http_figures(args) == {"error": "maskgate exited with 1"}
