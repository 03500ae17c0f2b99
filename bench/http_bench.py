"""Workload 7 of `make bench`: a 50-item JSON list of customers from the demo CRM API, through
maskgate's HTTP side and directly, in requests/s and p99 latency.

Owns: a private PostgreSQL holding the demo `crm` data, the CRM API (proxy/demo/crm_api.py) and a
`maskgate serve` with only an `http:` listener, each a process of its own, and the load driver: one
httpx AsyncClient, HTTP/1.1 keep-alive, CONCURRENCY requests in flight, gzip accepted (as a
browser or a script would). The vendor authenticates with HTTP Basic over TLS (maskgate caches a
verified password, so PBKDF2 is paid once) or, with `--bearer`, a token over plain HTTP (the
proxy's own cost without TLS). Every server is private, on free ports of 127.0.0.1. Called by
bench/__main__.py; `python -m bench.http_bench` runs this workload alone.

Until maskgate's HTTP side is installed it measures the API directly and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.demo.embedded_pg import EmbeddedPostgres, free_port

SVC, SVC_PW = "maskgate_svc", "bench-http-svc-pass"
VENDOR_DB_PW = "bench-http-vendor-pass"  # crm_vendor is created as in the demo; unused here
USER, USER_PW = "bench_vendor", "bench-pass"
CUSTOMERS = 10_000
ITEMS = 50
PATH = f"/api/clients?limit={ITEMS}"
CONCURRENCY = 8
TARGETS = ("direct", "maskgate")
UNAVAILABLE = "maskgate HTTP side not available"


def unavailable() -> str | None:
    """Why maskgate cannot serve HTTP here (the addon or the policy's `apis` support missing), or
    None when it can."""
    try:
        import proxy.http.server  # noqa: F401
        from policies.model import Api  # noqa: F401
    except ImportError as exc:
        return f"{UNAVAILABLE} ({exc.name or exc} missing)"
    return None


def policy_yaml(token_digest: str | None = None) -> str:
    """The bench vendor: the demo vendor's masks, its API routes, no row limit below the list."""
    from bench.__main__ import verifier

    tokens = f'\n    tokens: ["sha256:{token_digest}"]' if token_digest else ""
    return f"""version: 1
columns:
  crm.customers.phone: mobile
  crm.customers.id_card: id_card
  crm.customers.bank_card: bank_card
  crm.customers.name: person_name
apis:
  crm-api:
    fields:
      "**.mobile": mobile
      "**.idNo": id_card
      "**.bankAcct": bank_card
      "**.contact.phone": mobile
      "**.name": person_name
roles:
  bench:
    statements: [select]
    tables: ["crm.*"]
    max_rows: 1000
    see: {{mobile: mask, id_card: mask, person_name: mask, bank_card: deny}}
    routes: ["GET /api/clients", "GET /api/clients/**"]
users:
  {USER}:
    role: bench
    password: "{verifier(USER_PW)}"{tokens}
"""


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values` by the nearest-rank method: p99 of 1,000 latencies is the
    990th smallest, a latency some request really had."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 1))  # ceil without floats drifting
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class RunResult:
    requests: int
    seconds: float
    latencies_ms: tuple[float, ...]
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, float]:
        lat = list(self.latencies_ms) or [0.0]
        return {
            "rps": round(self.rps, 1),
            "p50_ms": round(percentile(lat, 0.50), 2),
            "p99_ms": round(percentile(lat, 0.99), 2),
            "errors": self.errors,
        }


@contextlib.contextmanager
def _sniffio_stand_in() -> Iterator[None]:
    """httpcore imports `sniffio` on every request to learn which async library runs it; where
    sniffio is not installed that failed import searches sys.path each time (≈ 2 ms a request on
    this VM), a cost of the client that would be charged to both targets and take CPU from the
    servers. While the driver runs (only ever under asyncio) a stand-in answers instead; it is
    removed afterwards so nothing else in the process sees it."""
    if "sniffio" in sys.modules or importlib.util.find_spec("sniffio") is not None:
        yield
        return
    stand_in = types.ModuleType("sniffio")
    stand_in.current_async_library = lambda: "asyncio"  # type: ignore[attr-defined]
    sys.modules["sniffio"] = stand_in
    try:
        yield
    finally:
        if sys.modules.get("sniffio") is stand_in:
            del sys.modules["sniffio"]


async def drive(
    url: str,
    seconds: float,
    concurrency: int = CONCURRENCY,
    auth: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
    verify: ssl.SSLContext | bool = True,
    warmup: float = 0.5,
) -> RunResult:
    """`concurrency` workers GET `url` over keep-alive connections for `seconds` (after `warmup`
    unmeasured seconds); a response other than 200 counts as an error and its latency is kept
    out of the figures."""
    hdrs = {"Accept-Encoding": "gzip", **(headers or {})}
    with _sniffio_stand_in():
        return await _drive(url, seconds, concurrency, auth, hdrs, verify, warmup)


async def _drive(
    url: str,
    seconds: float,
    concurrency: int,
    auth: tuple[str, str] | None,
    hdrs: dict[str, str],
    verify: ssl.SSLContext | bool,
    warmup: float,
) -> RunResult:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(
        http1=True, http2=False, limits=limits, auth=auth, headers=hdrs, verify=verify, timeout=30
    ) as client:
        measuring = False
        start = time.perf_counter()
        stop_at = start + warmup + seconds

        async def worker() -> None:
            nonlocal errors
            while (t0 := time.perf_counter()) < stop_at:
                r = await client.get(url)
                await r.aread()
                if measuring:
                    if r.status_code == 200:
                        latencies.append((time.perf_counter() - t0) * 1000)
                    else:
                        errors += 1

        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.sleep(warmup)
        measuring = True
        measured_from = time.perf_counter()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - measured_from
    return RunResult(len(latencies), elapsed, tuple(latencies), errors)


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 60) -> None:
    """Until `proc` listens on `port`; a process that exits first is an error naming its log's
    last lines (rather than a minute of connection refusals)."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            state = f"exited with {proc.returncode}" if proc.returncode is not None else "is not listening"
            raise RuntimeError(f"{proc.args[2:4]} {state}: {tail}")
        time.sleep(0.1)


class HttpTargets:
    """The CRM API (direct) and maskgate in front of it, over a private PostgreSQL."""

    def __init__(self, work: Path, bearer: bool = False) -> None:
        self.work = work
        self.bearer = bearer
        self.pg: EmbeddedPostgres | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}
        self.token = "mgt_" + secrets.token_urlsafe(32)
        self.cert: Path | None = None

    def start_database(self) -> None:
        import psycopg

        from proxy.demo.data import database_roles_sql, seed

        self.pg = pg = EmbeddedPostgres(self.work / "pg").start()
        pg.psql(f"CREATE ROLE {SVC} LOGIN PASSWORD '{SVC_PW}'")
        pg.psql(database_roles_sql(SVC, VENDOR_DB_PW))
        pg.psql(f"CREATE DATABASE crm OWNER {SVC}")
        with psycopg.connect(pg.dsn(SVC, SVC_PW, "crm")) as conn:
            seed(conn, CUSTOMERS)

    def start_api(self) -> None:
        assert self.pg is not None, "start_database() first"
        port, dsn = free_port(), self.pg.dsn(SVC, SVC_PW, "crm")
        self.procs["api"] = subprocess.Popen(
            [sys.executable, "-m", "proxy.demo.crm_api", "--port", str(port), "--dsn", dsn],
            stdout=subprocess.DEVNULL,
            stderr=(self.work / "api.log").open("wb"),
        )
        _wait_listening(self.procs["api"], port, self.work / "api.log")
        self.urls["direct"] = f"http://127.0.0.1:{port}{PATH}"

    def start_maskgate(self) -> None:
        from proxy.demo.certs import demo_certificate
        from proxy.http.auth import token_digest

        api = self.urls["direct"].removesuffix(PATH)
        port = free_port()
        (self.work / "policy.yaml").write_text(policy_yaml(token_digest(self.token) if self.bearer else None))
        tls = ""
        if not self.bearer:
            cert, key, _ = demo_certificate(self.work / "tls")
            self.cert = cert
            tls = f"  tls: {{cert: {json.dumps(str(cert))}, key: {json.dumps(str(key))}}}\n"
        config = self.work / "maskgate-http.yaml"
        config.write_text(
            "policy: policy.yaml\n"
            "audit_log: audit-http.jsonl\n"
            "http:\n"
            f"  listen: 127.0.0.1:{port}\n"
            f"  upstream: {api}\n"
            "  api: crm-api\n" + tls
        )
        self.procs["maskgate"] = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve", "--config", str(config)],
            stderr=(self.work / "maskgate-http.log").open("wb"),
        )
        _wait_listening(self.procs["maskgate"], port, self.work / "maskgate-http.log")
        scheme = "http" if self.bearer else "https"
        self.urls["maskgate"] = f"{scheme}://127.0.0.1:{port}{PATH}"

    def client_args(self, name: str) -> dict[str, Any]:
        """drive()'s keyword arguments for a target: the vendor's credential and trust for maskgate."""
        if name != "maskgate":
            return {}
        if self.bearer:
            return {"headers": {"Authorization": f"Bearer {self.token}"}}
        assert self.cert is not None
        return {"auth": (USER, USER_PW), "verify": ssl.create_default_context(cafile=str(self.cert))}

    def cpu(self, name: str) -> float | None:
        from bench.mysql_bench import tree_cpu_seconds

        proc = self.procs.get(name)
        return tree_cpu_seconds(proc.pid) if proc is not None else None

    def stop(self) -> None:
        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.pg is not None:
            self.pg.destroy()


def check(t: HttpTargets, name: str) -> None:
    """One request per target before measuring: 50 items, and through maskgate masked ones (a
    bench of a proxy that passes clear numbers through would measure the wrong thing)."""
    import httpx

    kw = t.client_args(name)
    r = httpx.get(
        t.urls[name],
        auth=kw.get("auth"),
        headers=kw.get("headers"),
        verify=kw.get("verify", True),
        timeout=30,
    )
    if r.status_code != 200:
        raise RuntimeError(f"{name}: HTTP {r.status_code} {r.text[:300]}")
    items = r.json()["data"]
    if len(items) != ITEMS:
        raise RuntimeError(f"{name}: {len(items)} items, expected {ITEMS}")
    masked = "*" in items[0]["mobile"]
    if masked != (name == "maskgate"):
        raise RuntimeError(f"{name}: mobile {'masked' if masked else 'in clear'}: {items[0]['mobile'][:3]}…")


def run(
    work: Path, rounds: int = 3, seconds: float = 5, concurrency: int = CONCURRENCY, bearer: bool = False
) -> dict[str, Any]:
    """The workload's figures: per target the medians of `rounds` alternating runs (A B A B …) of
    requests/s, p50 and p99, maskgate's CPU per request, and the ratios maskgate / direct."""
    why_not = unavailable()
    t = HttpTargets(work, bearer=bearer)
    out: dict[str, Any] = {
        "items": ITEMS,
        "concurrency": concurrency,
        "auth": "bearer token, plain HTTP" if bearer else "Basic over TLS",
        "client": "httpx AsyncClient, HTTP/1.1 keep-alive, Accept-Encoding: gzip",
    }
    try:
        print("bench: workload 7, HTTP: starting PostgreSQL, the CRM API and maskgate…", flush=True)
        t.start_database()
        t.start_api()
        if why_not is None:
            t.start_maskgate()
        else:
            print(f"bench: workload 7: {why_not}; measuring the API directly only", flush=True)
            out["maskgate_unavailable"] = why_not
        names = [n for n in TARGETS if n in t.urls]
        for n in names:
            check(t, n)
        runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        cpu: list[float] = []
        for _ in range(rounds):
            for n in names:
                before = t.cpu(n)
                res = asyncio.run(drive(t.urls[n], seconds, concurrency, **t.client_args(n)))
                after = t.cpu(n)
                runs[n].append(res.summary())
                if n == "maskgate" and before is not None and after is not None and res.requests:
                    cpu.append((after - before) / res.requests * 1e6)
        med = statistics.median
        for n, rs in runs.items():
            out[n] = {k: round(med(r[k] for r in rs), 2) for k in ("rps", "p50_ms", "p99_ms", "errors")}
        if cpu:
            out["maskgate"]["cpu_us_per_req"] = round(med(cpu), 1)
        if "maskgate" in out and out["direct"]["rps"]:
            out["ratio_rps"] = round(out["maskgate"]["rps"] / out["direct"]["rps"], 3)
            out["ratio_p99"] = round(out["maskgate"]["p99_ms"] / out["direct"]["p99_ms"], 3)
    finally:
        t.stop()
    return out


def table_row(h: dict[str, Any]) -> str | None:
    """The workload's row in `make bench`'s table (direct | pgbouncer | maskgate | ratios)."""
    d, m = h.get("direct"), h.get("maskgate") or {}
    if not d:
        return None
    ratio = f"{h['ratio_rps']:.2f}" if "ratio_rps" in h else "n/a"
    return (
        f"| HTTP: {h.get('items')}-item JSON list, {h.get('auth')}, c={h.get('concurrency')} (req/s) "
        f"| {d.get('rps', '-')} | - | {m.get('rps', '-')} | n/a | {ratio} |"
    )


def detail_lines(h: dict[str, Any]) -> list[str]:
    """The workload's lines under the table: latencies and CPU, or why maskgate was not measured."""
    if "skipped" in h or "error" in h:
        return [
            f"HTTP workload {'skipped' if 'skipped' in h else 'failed'}: {h.get('skipped') or h.get('error')}"
        ]
    d, m = h.get("direct") or {}, h.get("maskgate") or {}
    if not d:
        return []
    if not m:
        why = h.get("maskgate_unavailable", UNAVAILABLE)
        return [f"HTTP p50 / p99: direct {d.get('p50_ms')} / {d.get('p99_ms')} ms; {why}"]
    return [
        f"HTTP p50 / p99: direct {d.get('p50_ms')} / {d.get('p99_ms')} ms, maskgate {m.get('p50_ms')} / "
        f"{m.get('p99_ms')} ms (p99 × {h.get('ratio_p99', 'n/a')}); maskgate CPU per request "
        f"{m.get('cpu_us_per_req', 'n/a')} µs ({h.get('client')})"
    ]


def report_lines(h: dict[str, Any]) -> list[str]:
    row = table_row(h)
    return ([row] if row else []) + detail_lines(h)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.http_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5, help="measured seconds per run")
    ap.add_argument("--concurrency", type=int, default=CONCURRENCY)
    ap.add_argument(
        "--bearer", action="store_true", help="a bearer token over plain HTTP, not Basic over TLS"
    )
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.concurrency < 1:
        ap.error("--rounds, --seconds and --concurrency must be positive")
    # With --json, stdout holds the figures alone: progress goes to stderr.
    progress = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix="maskgate-bench-http-") as tmp, progress:
        figures = run(Path(tmp), args.rounds, args.seconds, args.concurrency, args.bearer)
    if args.json:
        print(json.dumps(figures, indent=2, ensure_ascii=False))
    else:
        print("\n".join(report_lines(figures)))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
