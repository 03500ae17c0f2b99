"""`make bench`: maskgate measured side by side with direct PostgreSQL and pgbouncer, in one run.

Starts an embedded PostgreSQL, pgbouncer (Debian's package, if installed) and `maskgate serve`
as a separate process (so its memory can be read), then runs each workload against the three
targets in alternation (A B C A B C …) and reports medians and ratios. The machine is shared and
noisy: the ratios of one run are the figures that count. Results: bench/results/bench.json.
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

from bench.mysql_bench import cpu_seconds
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

    def start_maskgate(self) -> None:
        port = free_port()
        (self.work / "policy.yaml").write_text(policy_yaml())
        (self.work / "maskgate.yaml").write_text(
            "policy: policy.yaml\n"
            "audit_log: audit.jsonl\n"
            "postgres:\n"
            f"  listen: 127.0.0.1:{port}\n"
            f"  upstream: postgresql://{SVC}:${{BENCH_UPSTREAM}}@127.0.0.1:{self.pg.port}/crm\n"
        )
        env = dict(os.environ, BENCH_UPSTREAM=SVC_PW)
        self.procs["maskgate"] = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve", "--config", str(self.work / "maskgate.yaml")],
            env=env,
            stderr=(self.work / "maskgate.log").open("wb"),
        )
        wait_port("127.0.0.1", port, timeout=30)
        self.ports["maskgate"] = port
        self.users["maskgate"] = (USER, USER_PW)

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
        """(current RSS, peak RSS) of the proxy process, in bytes."""
        status = Path(f"/proc/{self.procs['maskgate'].pid}/status").read_text()
        vals = {
            k: int(v.split()[0]) * 1024
            for k, v in (ln.split(":", 1) for ln in status.splitlines())
            if k in ("VmRSS", "VmHWM")
        }
        return vals["VmRSS"], vals["VmHWM"]

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


def pgbench(t: Targets, name: str, mode: str, seconds: int, clients: int) -> tuple[float, int]:
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
            str(seconds),
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


def point(t: Targets, name: str, mode: str, seconds: int, maskgate_cpu_us_per_tx: list[float]) -> float:
    """pgbench's TPS; against maskgate also the proxy's CPU time (utime+stime) per transaction."""
    pid = t.procs["maskgate"].pid if name == "maskgate" else None
    before = cpu_seconds(pid) if pid else 0.0
    tps, transactions = pgbench(t, name, mode, seconds, 4)
    if pid and transactions:
        maskgate_cpu_us_per_tx.append((cpu_seconds(pid) - before) / transactions * 1e6)
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
    ap.add_argument("--skip-mysql", action="store_true", help="leave out workload 5 (MySQL)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.big_rows, args.idle = 1, 2, 20_000, 50
    RESULTS.mkdir(exist_ok=True)
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count()}, "scram_iterations": SCRAM_ITERATIONS}
    with tempfile.TemporaryDirectory(prefix="maskgate-bench-") as tmp:
        work = Path(tmp)
        pg = EmbeddedPostgres(work / "pg").start()
        t = Targets(work, pg)
        try:
            print("bench: preparing data…", flush=True)
            prepare(pg, args.big_rows)
            t.start_pgbouncer()
            t.start_maskgate()
            names = t.names()
            med = statistics.median
            for mode in ("simple", "prepared"):
                print(f"bench: workload 1, point lookups ({mode})…", flush=True)
                cpu_per_tx: list[float] = []
                runs = alternate(
                    names, args.rounds, lambda n, m=mode, c=cpu_per_tx: point(t, n, m, args.seconds, c)
                )
                results[f"point_{mode}_tps"] = {n: round(med(v), 1) for n, v in runs.items()}
                # The same figure as the MySQL side's (workload 5): the proxy's CPU per lookup.
                results[f"point_{mode}_maskgate_cpu_us_per_tx"] = round(med(cpu_per_tx), 1)
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
        finally:
            t.stop()
            pg.destroy()
    print("bench: workload 4, decision engine…", flush=True)
    results["decision"] = decision_figures()
    results["mysql"] = mysql_figures(args)
    report(results)
    (RESULTS / "bench.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


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


def report(r: dict[str, Any]) -> None:
    def ratio(d: dict[str, float], a: str, b: str) -> str:
        return f"{d[a] / d[b]:.2f}" if a in d and b in d and d[b] else "n/a"

    print("\n| workload | direct | pgbouncer | maskgate | maskgate/pgbouncer | maskgate/direct |")
    print("|---|---|---|---|---|---|")
    for key, label in (
        ("point_simple_tps", "point lookups, simple (TPS)"),
        ("point_prepared_tps", "point lookups, prepared (TPS)"),
        ("stream_psql_rows_per_s", "stream 1M masked rows, psql (rows/s)"),
        ("stream_psycopg_rows_per_s", "stream 1M masked rows, psycopg (rows/s)"),
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
    if r.get("decision"):
        print(f"decision engine: {r['decision']}")


if __name__ == "__main__":
    sys.exit(main())
