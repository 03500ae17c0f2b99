"""`make bench`: maskgate measured side by side with direct PostgreSQL and pgbouncer, in one run.

Starts an embedded PostgreSQL, pgbouncer (Debian's package, if installed) and `maskgate serve`
as a separate process (so its memory can be read), then runs each workload against the three
targets in alternation (A B C A B C …) and reports medians and ratios. The machine is shared and
noisy: the ratios of one run are the figures that count, and of those the proxies' CPU time per
transaction (utime+stime from /proc/PID/stat, every worker process included) is the steadiest.
Workload 5 (MySQL, bench/mysql_bench.py) and workload 7 (HTTP: a 50-item JSON list through
maskgate's HTTP side against the demo CRM API directly, bench/http_bench.py) bring servers of
their own. At the end it prints each target of issue 12 with its measured ratio and MET / NOT MET.
Results: bench/results/bench.json.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.mysql_bench import process_tree, tree_context_switches, tree_cpu_seconds
from proxy.demo.embedded_pg import EmbeddedPostgres, bin_dir, free_port, wait_port

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
SVC, SVC_PW = "maskgate_svc", "bench-svc-pass"
VENDOR_DB_PW = "bench-crm-vendor-pass"  # crm_vendor is created as in the demo; the bench runs as crm_desk
USER, USER_PW = "bench_vendor", "bench-pass"
SCRAM_ITERATIONS = 4096

POINT_SCRIPT = "\\set id random(1, 10000)\nSELECT id, name, phone, id_card FROM customers WHERE id = :id;\n"
STREAM_SQL = "SELECT id, phone, id_card, note FROM big"


def verifier(password: str, iterations: int = SCRAM_ITERATIONS) -> str:
    import scramp

    salt, stored, server, it = scramp.ScramMechanism("SCRAM-SHA-256").make_auth_info(
        password, iteration_count=iterations
    )
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${it}:{b64(salt).decode()}${b64(stored).decode()}:{b64(server).decode()}"


def policy_yaml() -> str:
    from proxy.mysql.auth import native_hash

    return f"""version: 1
columns:
  crm.customers.phone: mobile
  crm.customers.id_card: id_card
  crm.customers.bank_card: bank_card
  crm.customers.name: person_name
  crm.big.phone: mobile
  crm.big.id_card: id_card
roles:
  bench:
    statements: [select]
    tables: ["crm.*"]
    max_rows: 2000000
    see: {{mobile: mask, id_card: mask, person_name: mask, bank_card: deny}}
    detect: [mobile, id_card, bank_card]
    # Runs upstream as crm_desk, taken with SET ROLE at login (prepare() grants it SELECT on
    # big too): the database would refuse a write whatever the proxy decided.
    database_role: crm_desk
users:
  {USER}:
    role: bench
    password: "{verifier(USER_PW)}"
    # The same user on the MySQL listener (workload 5); quoted: a bare `*…` is a YAML alias.
    mysql_password: "{native_hash(USER_PW)}"
"""


class Targets:
    """The three ways to reach the same database: direct, pgbouncer, maskgate."""

    def __init__(self, work: Path, pg: EmbeddedPostgres) -> None:
        self.work = work
        self.pg = pg
        self.ports: dict[str, int] = {"direct": pg.port}
        self.users: dict[str, tuple[str, str]] = {"direct": (SVC, SVC_PW)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start_pgbouncer(self) -> bool:
        exe = shutil.which("pgbouncer") or (
            "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
        )
        if exe is None:
            print(
                "pgbouncer not found: install it with `apt-get install pgbouncer` to compare against it",
                file=sys.stderr,
            )
            return False
        port = free_port()
        d = self.work / "pgbouncer"
        d.mkdir(exist_ok=True)
        (d / "userlist.txt").write_text(f'"{SVC}" "{SVC_PW}"\n')
        (d / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"crm = host=127.0.0.1 port={self.pg.port} dbname=crm\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = scram-sha-256\nauth_file = {d / 'userlist.txt'}\n"
            "pool_mode = session\nmax_client_conn = 1000\ndefault_pool_size = 50\n"
            f"logfile = {d / 'pgbouncer.log'}\npidfile = {d / 'pgbouncer.pid'}\n"
        )
        cmd = [exe, str(d / "pgbouncer.ini")]
        kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            from proxy.demo.embedded_pg import SYSTEM_USER

            os.system(f"chown -R {SYSTEM_USER} {d}")
            kwargs["user"] = SYSTEM_USER
        self.procs["pgbouncer"] = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs
        )
        wait_port("127.0.0.1", port)
        self.ports["pgbouncer"] = port
        self.users["pgbouncer"] = (SVC, SVC_PW)
        return True

    def start_maskgate(self, name: str = "maskgate", workers: int = 1) -> None:
        port = free_port()
        (self.work / "policy.yaml").write_text(policy_yaml())
        config = self.work / f"{name}.yaml"
        config.write_text(
            "policy: policy.yaml\n"
            f"audit_log: audit-{name}.jsonl\n"
            f"workers: {workers}\n"
            "postgres:\n"
            f"  listen: 127.0.0.1:{port}\n"
            f"  upstream: postgresql://{SVC}:${{BENCH_UPSTREAM}}@127.0.0.1:{self.pg.port}/crm\n"
        )
        env = dict(os.environ, BENCH_UPSTREAM=SVC_PW)
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve", "--config", str(config)],
            env=env,
            stderr=(self.work / f"{name}.log").open("wb"),
        )
        wait_port("127.0.0.1", port, timeout=60)
        if workers > 1:
            # The port answers once the first worker listens; wait for all of them.
            log = self.work / f"{name}.log"
            deadline = time.monotonic() + 60
            while "workers (pids" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
        self.ports[name] = port
        self.users[name] = (USER, USER_PW)

    def stop_one(self, name: str) -> None:
        p = self.procs.pop(name)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(40)
        except subprocess.TimeoutExpired:
            p.kill()
        self.ports.pop(name, None)

    def cpu(self, name: str) -> float | None:
        """CPU seconds the proxy has used so far (None for direct PostgreSQL): pgbouncer's one
        process, maskgate's process and, with workers, every worker's."""
        proc = self.procs.get(name)
        return tree_cpu_seconds(proc.pid) if proc is not None else None

    def switches(self, name: str) -> int | None:
        proc = self.procs.get(name)
        return tree_context_switches(proc.pid) if proc is not None else None

    def names(self) -> list[str]:
        return [n for n in ("direct", "pgbouncer", "maskgate") if n in self.ports]

    def env(self, name: str) -> dict[str, str]:
        user, pw = self.users[name]
        return dict(
            os.environ,
            PGHOST="127.0.0.1",
            PGPORT=str(self.ports[name]),
            PGUSER=user,
            PGPASSWORD=pw,
            PGDATABASE="crm",
            PGSSLMODE="disable",
        )

    def conninfo(self, name: str) -> str:
        user, pw = self.users[name]
        return f"host=127.0.0.1 port={self.ports[name]} user={user} password={pw} dbname=crm sslmode=disable"

    def maskgate_rss(self) -> tuple[int, int]:
        """(current RSS, peak RSS) of the proxy process, in bytes; with `--workers`, of its
        largest process (a session, and so a stream, lives in one worker)."""
        rss = hwm = 0
        for pid in process_tree(self.procs["maskgate"].pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            vals = {
                k: int(v.split()[0]) * 1024
                for k, v in (ln.split(":", 1) for ln in status.splitlines())
                if k in ("VmRSS", "VmHWM")
            }
            rss, hwm = max(rss, vals.get("VmRSS", 0)), max(hwm, vals.get("VmHWM", 0))
        return rss, hwm

    def stop(self) -> None:
        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def prepare(pg: EmbeddedPostgres, big_rows: int) -> None:
    import psycopg

    from proxy.demo.data import DESK_ROLE, database_roles_sql, seed

    pg.psql(f"CREATE ROLE {SVC} LOGIN PASSWORD '{SVC_PW}'")
    pg.psql(database_roles_sql(SVC, VENDOR_DB_PW))
    pg.psql(f"CREATE DATABASE crm OWNER {SVC}")

    with psycopg.connect(pg.dsn(SVC, SVC_PW, "crm")) as conn:
        seed(conn, 10_000)
        # Valid-looking mobiles and IDs, plus free text that carries a number for the detectors.
        conn.execute(
            "CREATE TABLE big AS SELECT g AS id,"
            " '138' || lpad((g % 100000000)::text, 8, '0') AS phone,"
            " '11010519491231002X'::text AS id_card,"
            " '客户回拨电话 139' || lpad((g % 100000000)::text, 8, '0') || ' 已处理' AS note"
            f" FROM generate_series(1, {big_rows}) g"
        )
        conn.execute(f"GRANT SELECT ON big TO {DESK_ROLE}")
        conn.execute("ANALYZE big")


def pgbench(t: Targets, name: str, mode: str, seconds: float, clients: int) -> tuple[float, int]:
    """(TPS, transactions processed) of one pgbench run of point lookups."""
    script = t.work / "point.sql"
    script.write_text(POINT_SCRIPT)
    res = subprocess.run(
        [
            str(bin_dir() / "pgbench"),
            "-n",
            "-f",
            str(script),
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(int(seconds)),
            "-M",
            mode,
        ],
        env=t.env(name),
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    tps = transactions = None
    for line in res.stdout.splitlines():
        if line.startswith("tps = "):
            tps = float(line.split()[2])
        elif line.startswith("number of transactions actually processed:"):
            transactions = int(line.split(":")[1].split("/")[0])
    if tps is not None and transactions is not None:
        return tps, transactions
    raise RuntimeError(f"pgbench against {name} failed: {res.stderr.strip()[-500:]}")


def point(
    t: Targets,
    name: str,
    mode: str,
    seconds: float,
    cpu_us_per_tx: dict[str, list[float]],
    clients: int = 4,
    switches_per_tx: dict[str, list[float]] | None = None,
) -> float:
    """pgbench's TPS; against a proxy also its CPU time (utime+stime) per transaction, and on
    request its context switches per transaction."""
    before, switched = t.cpu(name), t.switches(name)
    tps, transactions = pgbench(t, name, mode, seconds, clients)
    after = t.cpu(name)
    if before is not None and after is not None and transactions:
        cpu_us_per_tx.setdefault(name, []).append((after - before) / transactions * 1e6)
        if switches_per_tx is not None and switched is not None:
            now = t.switches(name) or 0
            switches_per_tx.setdefault(name, []).append((now - switched) / transactions)
    return tps


def stream_psql(t: Targets, name: str) -> tuple[float, int]:
    start = time.perf_counter()
    rows = 0
    with subprocess.Popen(
        [str(bin_dir() / "psql"), "-X", "-At", "-c", STREAM_SQL],
        env=t.env(name),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            rows += chunk.count(b"\n")
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"psql against {name} exited {proc.returncode}")
    return elapsed, rows


def stream_psycopg(t: Targets, name: str) -> tuple[float, int]:
    import psycopg

    start = time.perf_counter()
    n = 0
    with psycopg.connect(t.conninfo(name)) as conn, conn.cursor() as cur:
        for _ in cur.stream(STREAM_SQL):
            n += 1
    return time.perf_counter() - start, n


def churn(t: Targets, name: str, seconds: float) -> float:
    import psycopg

    deadline = time.perf_counter() + seconds
    n = 0
    start = time.perf_counter()
    info = t.conninfo(name)
    while time.perf_counter() < deadline:
        with psycopg.connect(info) as conn:
            conn.execute("SELECT 1").fetchone()
        n += 1
    return n / (time.perf_counter() - start)


def idle_connections(t: Targets, count: int) -> dict[str, Any]:
    """Hold `count` authenticated idle clients on the proxy; report its RSS."""
    import psycopg

    conns = []
    before = t.maskgate_rss()[0]
    try:
        for _ in range(count):
            conns.append(psycopg.connect(t.conninfo("maskgate")))
        time.sleep(1)
        rss = t.maskgate_rss()[0]
    finally:
        for c in conns:
            c.close()
    return {
        "connections": len(conns),
        "rss_mb": round(rss / 2**20, 1),
        "rss_before_mb": round(before / 2**20, 1),
    }


def alternate(names: list[str], rounds: int, fn: Callable[[str], float]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for n in names:
            out[n].append(fn(n))
    return out


@contextlib.contextmanager
def rss_sampler(t: Targets) -> Iterator[list[int]]:
    samples: list[int] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                samples.append(t.maskgate_rss()[0])
            stop.wait(0.05)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    try:
        yield samples
    finally:
        stop.set()
        th.join()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8, help="pgbench duration per run")
    ap.add_argument("--big-rows", type=int, default=1_000_000)
    ap.add_argument("--idle", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="`workers` of the maskgate of workloads 1-3 (workload 6 compares 1 and 2 anyway)",
    )
    ap.add_argument("--skip-mysql", action="store_true", help="leave out workload 5 (MySQL)")
    ap.add_argument("--skip-http", action="store_true", help="leave out workload 7 (HTTP)")
    ap.add_argument(
        "--http-bearer",
        action="store_true",
        help="workload 7 with a bearer token over plain HTTP instead of Basic over TLS",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.big_rows, args.idle = 1, 2, 20_000, 50
    RESULTS.mkdir(exist_ok=True)
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count()},
        "scram_iterations": SCRAM_ITERATIONS,
        "big_rows": args.big_rows,
    }
    with tempfile.TemporaryDirectory(prefix="maskgate-bench-") as tmp:
        work = Path(tmp)
        pg = EmbeddedPostgres(work / "pg").start()
        t = Targets(work, pg)
        try:
            print("bench: preparing data…", flush=True)
            prepare(pg, args.big_rows)
            t.start_pgbouncer()
            t.start_maskgate(workers=args.workers)
            results["maskgate_workers"] = args.workers
            names = t.names()
            med = statistics.median
            for mode in ("simple", "prepared"):
                print(f"bench: workload 1, point lookups ({mode})…", flush=True)
                cpu_per_tx: dict[str, list[float]] = {}
                runs = alternate(
                    names, args.rounds, lambda n, m=mode, c=cpu_per_tx: point(t, n, m, args.seconds, c)
                )
                results[f"point_{mode}_tps"] = {n: round(med(v), 1) for n, v in runs.items()}
                results[f"point_{mode}_cpu_us_per_tx"] = {n: round(med(v), 1) for n, v in cpu_per_tx.items()}
                # The same figure as the MySQL side's (workload 5): the proxy's CPU per lookup.
                if "maskgate" in cpu_per_tx:
                    results[f"point_{mode}_maskgate_cpu_us_per_tx"] = round(med(cpu_per_tx["maskgate"]), 1)
            for reader, fn in (("psql", stream_psql), ("psycopg", stream_psycopg)):
                print(f"bench: workload 2, streaming {args.big_rows} rows ({reader})…", flush=True)
                rates: dict[str, list[float]] = {n: [] for n in names}
                with rss_sampler(t) as samples:
                    for _ in range(args.rounds):
                        for n in names:
                            elapsed, rows = fn(t, n)
                            if rows < args.big_rows:
                                raise RuntimeError(f"{reader} via {n}: {rows} rows, expected {args.big_rows}")
                            rates[n].append(rows / elapsed)
                results[f"stream_{reader}_rows_per_s"] = {n: round(med(v)) for n, v in rates.items()}
                results[f"stream_{reader}_proxy_rss_mb_max"] = (
                    round(max(samples) / 2**20, 1) if samples else None
                )
            print("bench: workload 3, connection churn…", flush=True)
            runs = alternate(names, args.rounds, lambda n: churn(t, n, max(2, args.seconds // 2)))
            results["churn_conn_per_s"] = {n: round(med(v), 1) for n, v in runs.items()}
            print(f"bench: {args.idle} idle connections…", flush=True)
            results["idle"] = idle_connections(t, args.idle)
            results["maskgate_peak_rss_mb"] = round(t.maskgate_rss()[1] / 2**20, 1)
            print("bench: workload 6, point lookups with workers: 1 and workers: 2…", flush=True)
            try:
                results["workers"] = workers_figures(t, args)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                # The other workloads' figures still count: report this one as failed.
                print(f"bench: workload 6 failed: {e}", file=sys.stderr, flush=True)
                results["workers"] = {"error": str(e)[:300]}
        finally:
            t.stop()
            pg.destroy()
    print("bench: workload 4, decision engine…", flush=True)
    results["decision"] = decision_figures()
    results["mysql"] = mysql_figures(args)
    results["http"] = http_figures(args)
    results["masking"] = masking_figures(run=not args.quick)
    results["targets"] = targets(results)
    results["sixteen_cores"] = sixteen_cores(results)
    report(results)
    (RESULTS / "bench.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


# Clients per worker in workload 6: the same load on each worker whatever their number. A busy
# event loop handles several statements per wake-up and costs less per statement than one that
# sleeps between them (measured here: 0.1 against 0.6-0.9 voluntary context switches per lookup,
# ~20 % less CPU), so comparing 1 and 2 workers under the same total clients would charge the
# second worker for being less busy rather than for being a second process.
CLIENTS_PER_WORKER = 4


def workers_figures(t: Targets, args: argparse.Namespace) -> dict[str, Any]:
    """Workload 6: the same point lookups through `workers: 1` (the maskgate of workloads 1-3
    unless --workers said otherwise) and a second `maskgate serve` with `workers: 2`,
    alternating, with CLIENTS_PER_WORKER clients per worker. CPU per transaction counts the
    supervisor and both workers."""
    one = "maskgate" if args.workers == 1 else "maskgate-w1"
    started = ["maskgate-w2"] + ([one] if one != "maskgate" else [])
    for name in started:
        t.start_maskgate(name, workers=int(name[-1]))
    clients = {one: CLIENTS_PER_WORKER, "maskgate-w2": 2 * CLIENTS_PER_WORKER}
    out: dict[str, Any] = {"clients": {"1": clients[one], "2": clients["maskgate-w2"]}}
    try:
        for mode in ("simple", "prepared"):
            # New workers' caches (decisions, row plans, audit texts) start cold, where those of
            # the maskgate of workloads 1-3 are warm: one unmeasured run first.
            for name in started:
                pgbench(t, name, mode, max(2, args.seconds // 2), clients[name])
            cpu: dict[str, list[float]] = {}
            sw: dict[str, list[float]] = {}
            runs = alternate(
                [one, "maskgate-w2"],
                args.rounds,
                lambda n, m=mode, c=cpu, s=sw: point(t, n, m, args.seconds, c, clients[n], s),
            )
            med = statistics.median
            out[mode] = {
                "tps": {"1": round(med(runs[one]), 1), "2": round(med(runs["maskgate-w2"]), 1)},
                "cpu_us_per_tx": {"1": round(med(cpu[one]), 1), "2": round(med(cpu["maskgate-w2"]), 1)},
                "context_switches_per_tx": {
                    "1": round(med(sw[one]), 2),
                    "2": round(med(sw["maskgate-w2"]), 2),
                },
            }
    finally:
        for name in started:
            t.stop_one(name)
    return out


def masking_figures(run: bool = True) -> dict[str, Any] | None:
    """bench/masking_bench.py's results: run now (`make bench` measures every target in one run),
    or with `run` False its last results, with their age."""
    if run:
        from bench import masking_bench

        print("bench: masking (mask_text, scan)…", flush=True)
        masking_bench.main()
    path = RESULTS / "masking.json"
    if not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except ValueError:
        return None
    data["age_hours"] = round((time.time() - path.stat().st_mtime) / 3600, 1)
    return data


def decision_figures() -> dict[str, Any] | None:
    """Workload 4 comes from the engine's own benchmark (bench/policy_bench.py)."""
    try:
        from bench import policy_bench
    except ImportError:
        return None
    policy_bench.main()
    return json.loads((RESULTS / "policy.json").read_text())


def mysql_figures(args: argparse.Namespace) -> dict[str, Any] | None:
    """Workload 5: the MySQL listener against direct MariaDB (bench/mysql_bench.py)."""
    from bench import mysql_bench

    if args.skip_mysql:
        print("bench: workload 5 (MySQL) skipped: --skip-mysql", flush=True)
        return None
    reason = mysql_bench.skip_reason()
    if reason:
        print(f"bench: workload 5 (MySQL) skipped: {reason}", flush=True)
        return {"skipped": reason}
    with tempfile.TemporaryDirectory(prefix="maskgate-bench-my-") as tmp:
        return mysql_bench.run(Path(tmp), USER, USER_PW, policy_yaml(), args.rounds, args.seconds)


def http_figures(args: argparse.Namespace) -> dict[str, Any] | None:
    """Workload 7: a 50-item JSON list through maskgate's HTTP side against the CRM API directly
    (bench/http_bench.py); direct only while the HTTP side is not installed."""
    from bench import http_bench

    if args.skip_http:
        print("bench: workload 7 (HTTP) skipped: --skip-http", flush=True)
        return None
    seconds = max(2, args.seconds // 2)
    with tempfile.TemporaryDirectory(prefix="maskgate-bench-http-") as tmp:
        try:
            return http_bench.run(Path(tmp), args.rounds, seconds, bearer=args.http_bearer)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            # The other workloads' figures still count: report this one as failed.
            print(f"bench: workload 7 failed: {e}", file=sys.stderr, flush=True)
            return {"error": str(e)[:300]}


ISSUE_LINES_PER_S = 200_000  # issue 12: `maskgate scan` and `mask_text` on digit-heavy short lines
WORKERS_CPU_GROWTH = 1.1  # 2 workers may cost at most this much more CPU per lookup than 1


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 12 with what this run measured: ratio, goal, met (None: not measured)."""
    rows: list[dict[str, Any]] = []

    def add(target: str, measured: str, ratio: float | None, goal: str, met: bool | None) -> None:
        rows.append(
            {
                "target": target,
                "measured": measured,
                "ratio": None if ratio is None else round(ratio, 2),
                "goal": goal,
                "met": met,
            }
        )

    n = r.get("maskgate_workers", 1)
    workers = f" (maskgate with workers: {n})" if n != 1 else ""
    for mode in ("simple", "prepared"):
        tps = r.get(f"point_{mode}_tps", {})
        q = _ratio(tps.get("maskgate"), tps.get("pgbouncer"))
        add(
            f"point lookups, {mode}: TPS maskgate / pgbouncer{workers}",
            f"{tps.get('maskgate')} / {tps.get('pgbouncer')} TPS",
            q,
            ">= 0.75",
            None if q is None else q >= 0.75,
        )
        cpu = r.get(f"point_{mode}_cpu_us_per_tx", {})
        q = _ratio(cpu.get("maskgate"), cpu.get("pgbouncer"))
        add(
            f"point lookups, {mode}: proxy CPU/tx maskgate / pgbouncer{workers}",
            f"{cpu.get('maskgate')} / {cpu.get('pgbouncer')} µs",
            q,
            "<= 1.5",
            None if q is None else q <= 1.5,
        )
    for reader in ("psql", "psycopg"):
        d = r.get(f"stream_{reader}_rows_per_s", {})
        q = _ratio(d.get("maskgate"), d.get("direct"))
        add(
            f"stream {r.get('big_rows', 0):,} rows, {reader}: rows/s maskgate / direct",
            f"{d.get('maskgate')} / {d.get('direct')} rows/s",
            q,
            ">= 0.5",
            None if q is None else q >= 0.5,
        )
    rss = [r[k] for k in ("stream_psql_proxy_rss_mb_max", "stream_psycopg_proxy_rss_mb_max") if r.get(k)]
    add(
        "streaming: proxy RSS (largest sample)",
        f"{max(rss)} MB" if rss else "n/a",
        None,
        "< 150 MB",
        max(rss) < 150 if rss else None,
    )
    m = r.get("masking") or {}
    figures = m.get("figures", {})
    before = len(rows)
    for name in m.get("targets", {}):
        if name.endswith("lines_per_s") and name in figures:
            add(
                f"masking: {name} (masking.json, {m.get('age_hours')} h old)",
                f"{figures[name]:,} lines/s",
                figures[name] / ISSUE_LINES_PER_S,
                f">= {ISSUE_LINES_PER_S:,}/s",
                figures[name] >= ISSUE_LINES_PER_S,
            )
    if len(rows) == before:
        why = "no lines/s figure in bench/results/masking.json" if m else "no bench/results/masking.json"
        add("masking: mask_text and scan lines/s (python -m bench.masking_bench)", why, None, "", None)
    my = r.get("mysql") or {}
    for mode in ("simple", "prepared"):
        mine = my.get(f"point_{mode}", {}).get("maskgate", {}).get("maskgate_cpu_us_per_tx")
        pg = r.get(f"point_{mode}_maskgate_cpu_us_per_tx")
        q = _ratio(mine, pg)
        add(
            f"MySQL point lookups, {mode}: proxy CPU/tx MySQL / PostgreSQL",
            f"{mine} / {pg} µs",
            q,
            "<= 1.2",
            None if q is None else q <= 1.2,
        )
    h = r.get("http") or {}
    if h.get("direct"):
        q = h.get("ratio_rps")
        add(
            f"HTTP {h.get('items')}-item JSON list ({h.get('auth')}): req/s maskgate / direct",
            f"{(h.get('maskgate') or {}).get('rps', h.get('maskgate_unavailable', 'n/a'))} / "
            f"{h['direct']['rps']} req/s",
            q,
            "(shown)",
            None,
        )
    w = r.get("workers") or {}
    for mode in ("simple", "prepared"):
        if mode not in w:
            continue
        tps, cpu = w[mode]["tps"], w[mode]["cpu_us_per_tx"]
        add(
            f"workers 2 / 1, {mode}: TPS ({CLIENTS_PER_WORKER} clients per worker; all on "
            f"{r['machine']['cores']} cores)",
            f"{tps['2']} / {tps['1']} TPS",
            _ratio(tps["2"], tps["1"]),
            "(shown)",
            None,
        )
        q = _ratio(cpu["2"], cpu["1"])
        add(
            f"workers 2 / 1, {mode}: proxy CPU/tx (flat = scales with cores)",
            f"{cpu['2']} / {cpu['1']} µs",
            q,
            f"<= {WORKERS_CPU_GROWTH}",
            None if q is None else q <= WORKERS_CPU_GROWTH,
        )
    return rows


def sixteen_cores(r: dict[str, Any]) -> str | None:
    """What a 16-core host should expect, reasoned from this run's CPU per lookup. A worker is
    one core, so workers with cores to themselves carry cores / (CPU per lookup). Which CPU per
    lookup: a worker that is kept busy handles several statements per event-loop wake-up and
    costs what one worker costs here; two workers sharing this machine's 2 cores with pgbench
    and PostgreSQL are each less busy and cost more per lookup. Both bound the estimate. On a
    host shared with PostgreSQL and the clients, their CPU per lookup (direct TPS on this
    machine's cores, which they saturate) adds to the proxy's."""
    w = (r.get("workers") or {}).get("simple")
    if not w or not w["cpu_us_per_tx"].get("1") or not w["cpu_us_per_tx"].get("2"):
        return None
    c1, c2 = w["cpu_us_per_tx"]["1"], w["cpu_us_per_tx"]["2"]
    lo, hi = max(c1, c2), min(c1, c2)
    line = (
        f"16-core host: a worker spends {c1} µs (1 worker) to {c2} µs (2 workers) of CPU per simple "
        f"point lookup here, so 16 workers with 16 cores to themselves carry about "
        f"{16e6 / lo:,.0f}-{16e6 / hi:,.0f} TPS"
    )
    direct = r.get("point_simple_tps", {}).get("direct")
    if direct:
        other = r["machine"]["cores"] * 1e6 / direct
        line += (
            f"; on one 16-core host with PostgreSQL and the clients (≈ {other:.0f} µs/tx here) about "
            f"{16e6 / (lo + other):,.0f}-{16e6 / (hi + other):,.0f} TPS, against ≈ {16e6 / other:,.0f} direct"
        )
    return line + "."


def report(r: dict[str, Any]) -> None:
    from bench import http_bench

    def ratio(d: dict[str, float], a: str, b: str) -> str:
        return f"{d[a] / d[b]:.2f}" if a in d and b in d and d[b] else "n/a"

    print("\n| workload | direct | pgbouncer | maskgate | maskgate/pgbouncer | maskgate/direct |")
    print("|---|---|---|---|---|---|")
    for key, label in (
        ("point_simple_tps", "point lookups, simple (TPS)"),
        ("point_prepared_tps", "point lookups, prepared (TPS)"),
        ("stream_psql_rows_per_s", f"stream {r.get('big_rows', 1_000_000):,} masked rows, psql (rows/s)"),
        (
            "stream_psycopg_rows_per_s",
            f"stream {r.get('big_rows', 1_000_000):,} masked rows, psycopg (rows/s)",
        ),
        ("churn_conn_per_s", "connect+auth+query+close (conn/s)"),
    ):
        d = r.get(key, {})
        print(
            f"| {label} | {d.get('direct', '-')} | {d.get('pgbouncer', '-')} | {d.get('maskgate', '-')} "
            f"| {ratio(d, 'maskgate', 'pgbouncer')} | {ratio(d, 'maskgate', 'direct')} |"
        )
    my = r.get("mysql") or {}
    for key, label in (
        ("point_simple", f"MySQL point lookups, text protocol, {my.get('driver_simple')} (TPS)"),
        ("point_prepared", f"MySQL point lookups, prepared, {my.get('driver_prepared')} (TPS)"),
        ("point_mysqlslap", "MySQL point lookups, text protocol, mysqlslap (TPS)"),
    ):
        d = {n: v["tps"] for n, v in my.get(key, {}).items() if isinstance(v, dict) and "tps" in v}
        if d:
            print(
                f"| {label} | {d.get('direct', '-')} | - | {d.get('maskgate', '-')} "
                f"| n/a | {ratio(d, 'maskgate', 'direct')} |"
            )
    http = r.get("http") or {}
    if row := http_bench.table_row(http):
        print(row)
    cpu = [
        f"PostgreSQL {mode} {r[f'point_{mode}_maskgate_cpu_us_per_tx']} µs"
        for mode in ("simple", "prepared")
        if f"point_{mode}_maskgate_cpu_us_per_tx" in r
    ]
    cpu += [
        f"MySQL {key.removeprefix('point_')} {my[key]['maskgate']['maskgate_cpu_us_per_tx']} µs"
        for key in ("point_simple", "point_prepared", "point_mysqlslap")
        if "maskgate" in my.get(key, {})
    ]
    if cpu:
        print(f"\nproxy CPU (user+system) per point lookup: {', '.join(cpu)}")
    if my.get("skipped"):
        print(f"MySQL workload skipped: {my['skipped']}")
    elif my:
        print(f"MySQL: MariaDB {my.get('mariadb_version')}; {my.get('proxysql_maxscale')}")
    print(
        f"\nproxy RSS while streaming (max): psql {r.get('stream_psql_proxy_rss_mb_max')} MB, "
        f"psycopg {r.get('stream_psycopg_proxy_rss_mb_max')} MB; idle: {r.get('idle')}; "
        f"SCRAM iterations: {r['scram_iterations']}"
    )
    for line in http_bench.detail_lines(http):
        print(line)
    if r.get("decision"):
        print(f"decision engine: {r['decision']}")
    w = r.get("workers") or {}
    for mode in ("simple", "prepared"):
        if mode in w:
            tps, cpu = w[mode]["tps"], w[mode]["cpu_us_per_tx"]
            sw = w[mode].get("context_switches_per_tx", {})
            print(
                f"workers ({mode}, {CLIENTS_PER_WORKER} clients per worker): "
                f"1 worker {tps['1']} TPS, {cpu['1']} µs/tx, "
                f"{sw.get('1')} context switches/tx; 2 workers {tps['2']} TPS, {cpu['2']} µs/tx, "
                f"{sw.get('2')} context switches/tx"
            )
    if rows := r.get("targets"):
        print("\n| issue 12 target | measured | ratio | goal | status |")
        print("|---|---|---|---|---|")
        for row in rows:
            status = {True: "MET", False: "NOT MET", None: "n/a"}[row["met"]]
            ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
            print(f"| {row['target']} | {row['measured']} | {ratio} | {row['goal']} | {status} |")
    if line := sixteen_cores(r):
        print(f"\n{line}")


if __name__ == "__main__":
    sys.exit(main())
