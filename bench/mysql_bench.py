"""Workload 5 of `make bench`: maskgate's MySQL listener measured against direct MariaDB.

Owns: a private MariaDB holding the demo `crm` data, a `maskgate serve` process with only a
`mysql:` listener, the load drivers (client processes, optionally mysqlslap) and the proxy's CPU
time per transaction. Must not touch the machine's shared MariaDB (3306): every server here is
private, on free ports of 127.0.0.1. Called by bench/__main__.py; `python -m bench.mysql_bench`
runs this workload alone.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import multiprocessing as mp
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from proxy.demo.embedded_mariadb import EmbeddedMariaDB
from proxy.demo.embedded_mariadb import available as mariadb_available
from proxy.demo.embedded_pg import free_port, wait_port

SVC, SVC_PW = "maskgate_svc", "bench-my-svc-pass"
VENDOR_DB_PW = "bench-my-vendor-pass"  # crm_vendor is created as in the demo; the bench runs as crm_desk
CUSTOMERS = 10_000
POINT_SQL = "SELECT id, name, phone, id_card FROM customers WHERE id = %s"
CLIENTS = 4
TARGETS = ("direct", "maskgate")
MODES = ("simple", "prepared")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds, from /proc/PID/stat."""
    return stat_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())


def process_tree(pid: int) -> list[int]:
    """`pid` and every process descended from it: with `workers: N` the proxy's CPU is the sum of
    the supervisor's and its workers' (which a restart may have replaced since the start)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier]
        tree += frontier
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its descendants, in seconds (a process that exits between the
    listing and the read counts as nothing)."""
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(p)
    return total


def tree_context_switches(pid: int) -> int:
    """Voluntary and involuntary context switches of `pid` and its descendants: a proxy that
    goes back to sleep after each statement instead of handling several per wake-up pays a
    switch (and an event-loop turn) per statement."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if "ctxt_switches:" in line:
                    total += int(line.split()[1])
    return total


def stat_cpu_seconds(stat: str) -> float:
    """utime + stime, in seconds, of one /proc/PID/stat line."""
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis don't.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


# --- client drivers --------------------------------------------------------------------------
def simple_driver() -> str:
    """The fastest text-protocol client importable here: the load must come from the clients
    without them being the bottleneck more than necessary."""
    for name, module in (
        ("mysqlclient", "MySQLdb"),
        ("mysql-connector-c", "_mysql_connector"),
        ("pymysql", "pymysql"),
    ):
        try:
            importlib.import_module(module)
        except Exception:  # an ImportError, or an OSError from a C extension's shared library
            continue
        return name
    raise RuntimeError("no MySQL client library: pip install mysqlclient or PyMySQL")


def prepared_driver() -> str:
    """mysql-connector-python drives COM_STMT_PREPARE/EXECUTE; its C extension when it loads."""
    try:
        import mysql.connector
    except ImportError as e:
        raise RuntimeError("mysql-connector-python is needed for the prepared runs") from e
    return "mysql-connector-c" if mysql.connector.HAVE_CEXT else "mysql-connector-pure"


def _connect(driver: str, port: int, user: str, password: str) -> Any:
    if driver == "mysqlclient":
        import MySQLdb

        return MySQLdb.connect(
            host="127.0.0.1", port=port, user=user, passwd=password, db="crm", charset="utf8mb4"
        )
    if driver == "pymysql":
        import pymysql

        return pymysql.connect(
            host="127.0.0.1", port=port, user=user, password=password, database="crm", charset="utf8mb4"
        )
    import mysql.connector

    return mysql.connector.connect(
        host="127.0.0.1",
        port=port,
        user=user,
        password=password,
        database="crm",
        charset="utf8mb4",
        use_pure=driver == "mysql-connector-pure",
        ssl_disabled=True,
    )


def _client(
    driver: str,
    prepared: bool,
    port: int,
    user: str,
    password: str,
    seconds: float,
    seed: int,
    barrier: Any,
    out: Any,
) -> None:
    """One load process: connect, wait for the others, then point lookups for `seconds`."""
    try:
        conn = _connect(driver, port, user, password)
        cur = conn.cursor(prepared=True) if prepared else conn.cursor()
        rnd = random.Random(seed)
        # The same statement every time: the prepared cursor prepares it once per connection.
        cur.execute(POINT_SQL, (1,))
        cur.fetchall()
    except BaseException as e:
        barrier.abort()
        out.put(("error", f"{type(e).__name__}: {e}"))
        return
    barrier.wait()
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    try:
        while time.perf_counter() < deadline:
            cur.execute(POINT_SQL, (rnd.randint(1, CUSTOMERS),))
            if len(cur.fetchall()) != 1:
                raise RuntimeError("a point lookup did not return one row")
            n += 1
        out.put(("ok", n, time.perf_counter() - start))
    except BaseException as e:
        out.put(("error", f"{type(e).__name__}: {e}"))
    finally:
        with contextlib.suppress(Exception):
            conn.close()


class MySQLTargets:
    """Direct MariaDB and maskgate's MySQL listener in front of it, on the same `crm` data."""

    def __init__(self, work: Path, user: str, user_password: str, policy: str) -> None:
        self.work = work
        self.user, self.user_password, self.policy = user, user_password, policy
        self.db = EmbeddedMariaDB(work / "mariadb", performance_schema=False)
        self.ports: dict[str, int] = {}
        self.users: dict[str, tuple[str, str]] = {}
        self.proxy: subprocess.Popen[bytes] | None = None

    def start(self, customers: int = CUSTOMERS) -> None:
        from proxy.demo.data import mysql_database_roles_sql, seed_mysql

        self.db.start()
        self.db.sql("CREATE DATABASE IF NOT EXISTS crm CHARACTER SET utf8mb4")
        self.db.sql(mysql_database_roles_sql(SVC, SVC_PW, VENDOR_DB_PW))
        conn = self.db.connect("crm", autocommit=False)
        try:
            seed_mysql(conn, customers)
        finally:
            conn.close()
        self.ports["direct"] = self.db.port
        self.users["direct"] = (SVC, SVC_PW)

        port = free_port()
        (self.work / "my-policy.yaml").write_text(self.policy)
        (self.work / "my-maskgate.yaml").write_text(
            "policy: my-policy.yaml\n"
            "audit_log: my-audit.jsonl\n"
            "mysql:\n"
            f"  listen: 127.0.0.1:{port}\n"
            f"  upstream: mysql://{SVC}:${{BENCH_MY_UPSTREAM}}@127.0.0.1:{self.db.port}/crm\n"
        )
        self.proxy = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve", "--config", str(self.work / "my-maskgate.yaml")],
            env=dict(os.environ, BENCH_MY_UPSTREAM=SVC_PW),
            stderr=(self.work / "my-maskgate.log").open("wb"),
        )
        try:
            wait_port("127.0.0.1", port, timeout=30)
        except Exception as e:
            raise RuntimeError(f"maskgate (MySQL) did not start: {self.proxy_log()}") from e
        self.ports["maskgate"] = port
        self.users["maskgate"] = (self.user, self.user_password)

    def proxy_log(self) -> str:
        path = self.work / "my-maskgate.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def pids(self) -> dict[str, int]:
        """The processes whose CPU is counted: the proxy and the database server."""
        out: dict[str, int] = {}
        if self.proxy is not None:
            out["maskgate"] = self.proxy.pid
        with contextlib.suppress(OSError, ValueError):
            out["mariadbd"] = int(self.db.pid_file.read_text().strip())
        return out

    def check_masking(self) -> dict[str, Any]:
        """One row both ways: the bench is meaningless if the proxy's row is not masked."""
        import pymysql

        rows = {}
        for name in TARGETS:
            user, pw = self.users[name]
            conn = pymysql.connect(
                host="127.0.0.1", port=self.ports[name], user=user, password=pw, database="crm"
            )
            try:
                with conn.cursor() as cur:
                    cur.execute(POINT_SQL, (1,))
                    rows[name] = cur.fetchone()
            finally:
                conn.close()
        if rows["direct"] is None or rows["maskgate"] is None:
            raise RuntimeError("customer 1 is missing")
        if rows["direct"][2] == rows["maskgate"][2] or rows["direct"][3] == rows["maskgate"][3]:
            raise RuntimeError("maskgate returned customer 1's phone or id_card unmasked")
        return {"phone_direct_len": len(rows["direct"][2]), "phone_maskgate": "masked"}

    def stop(self) -> None:
        if self.proxy is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proxy.send_signal(signal.SIGTERM)
            try:
                self.proxy.wait(15)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
                self.proxy.wait()
        self.db.destroy()


def point_run(
    t: MySQLTargets, name: str, driver: str, prepared: bool, seconds: float, clients: int = CLIENTS
) -> dict[str, float]:
    """`clients` processes of point lookups against one target: TPS and CPU seconds per
    transaction of the proxy and of mariadbd, counted from when all clients are connected."""
    ctx = mp.get_context("spawn")  # no inherited sockets or threads from the bench process
    barrier = ctx.Barrier(clients + 1)
    out = ctx.Queue()
    user, pw = t.users[name]
    port = t.ports[name]
    procs = [
        ctx.Process(
            target=_client,
            args=(driver, prepared, port, user, pw, seconds, random.randrange(1 << 30), barrier, out),
            daemon=True,
        )
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    pids = t.pids()
    try:
        barrier.wait(timeout=60)
    except Exception:
        errors = [out.get(timeout=5) for _ in range(out.qsize())] if not out.empty() else []
        # A client that died before it could report (an import error under spawn) shows its exit code.
        codes = [p.exitcode for p in procs]
        for p in procs:
            p.kill()
        raise RuntimeError(
            f"{driver} clients against {name} failed to start: {errors} (exit codes {codes})"
        ) from None
    cpu0 = {k: tree_cpu_seconds(pid) for k, pid in pids.items()}
    results = [out.get(timeout=seconds + 60) for _ in procs]
    cpu1 = {k: tree_cpu_seconds(pid) for k, pid in pids.items()}
    for p in procs:
        p.join(30)
    errors = [r[1] for r in results if r[0] != "ok"]
    if errors:
        raise RuntimeError(f"{driver} against {name}: {errors[0]}")
    tx = sum(r[1] for r in results)
    run: dict[str, float] = {"tps": sum(r[1] / r[2] for r in results), "transactions": tx}
    for k in pids:
        run[f"{k}_cpu_us_per_tx"] = (cpu1[k] - cpu0[k]) / tx * 1e6 if tx else float("nan")
    return run


def slap_run(t: MySQLTargets, name: str, queries: int, clients: int = CLIENTS) -> dict[str, float]:
    """mysqlslap (C, libmariadb) as a second text-protocol driver: `queries` random point lookups
    shared among `clients` connections; TPS from its average run time."""
    exe = shutil.which("mariadb-slap") or shutil.which("mysqlslap")
    assert exe is not None
    script = t.work / "slap.sql"
    rnd = random.Random(7)
    script.write_text(
        "".join(POINT_SQL.replace("%s", str(rnd.randint(1, CUSTOMERS))) + ";\n" for _ in range(2000))
    )
    user, pw = t.users[name]
    pids = t.pids()
    cpu0 = {k: tree_cpu_seconds(pid) for k, pid in pids.items()}
    res = subprocess.run(
        [
            exe,
            "--no-defaults",  # never read the shared server's my.cnf
            "--protocol=tcp",
            "--host=127.0.0.1",
            f"--port={t.ports[name]}",
            f"--user={user}",
            f"--password={pw}",
            "--create-schema=crm",
            f"--query={script}",
            "--delimiter=;",
            f"--concurrency={clients}",
            f"--number-of-queries={queries}",
            "--iterations=1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    cpu1 = {k: tree_cpu_seconds(pid) for k, pid in pids.items()}
    seconds = None
    for line in res.stdout.splitlines():
        if "Average number of seconds to run all queries" in line:
            seconds = float(line.split(":")[1].split()[0])
    if res.returncode != 0 or not seconds:
        raise RuntimeError(f"mysqlslap against {name} failed: {(res.stderr or res.stdout).strip()[-500:]}")
    # mysqlslap runs `--number-of-queries` in total, spread over the clients.
    run: dict[str, float] = {"tps": queries / seconds, "transactions": queries}
    for k in pids:
        run[f"{k}_cpu_us_per_tx"] = (cpu1[k] - cpu0[k]) / queries * 1e6
    return run


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    med = statistics.median
    keys = [k for k in runs[0] if k != "transactions"]
    out = {k: round(med(r[k] for r in runs), 1) for k in keys}
    out["runs"] = len(runs)
    out["tps_runs"] = [round(r["tps"], 1) for r in runs]  # type: ignore[assignment]
    return out


def run(
    work: Path, user: str, user_password: str, policy: str, rounds: int, seconds: float, slap: bool = True
) -> dict[str, Any]:
    """Workload 5, alternating direct and maskgate (A B A B …) for each mode."""
    simple, prepared = simple_driver(), prepared_driver()
    results: dict[str, Any] = {
        "clients": CLIENTS,
        "customers": CUSTOMERS,
        "driver_simple": simple,
        "driver_prepared": prepared,
        "proxysql_maxscale": apt_availability(),
    }
    t = MySQLTargets(work, user, user_password, policy)
    try:
        print("bench: workload 5, MySQL: preparing MariaDB…", flush=True)
        t.start()
        results["mariadb_version"] = t.db.version
        t.check_masking()
        for mode, driver in (("simple", simple), ("prepared", prepared)):
            print(f"bench: workload 5, MySQL point lookups ({mode}, {driver})…", flush=True)
            runs: dict[str, list[dict[str, float]]] = {n: [] for n in TARGETS}
            for _ in range(rounds):
                for n in TARGETS:
                    runs[n].append(point_run(t, n, driver, mode == "prepared", seconds))
            results[f"point_{mode}"] = {n: _summary(v) for n, v in runs.items()}
        if slap and (shutil.which("mariadb-slap") or shutil.which("mysqlslap")):
            print("bench: workload 5, MySQL point lookups (mysqlslap)…", flush=True)
            # Sized per target from its simple runs, so one mysqlslap run lasts about `seconds`
            # against each (a fixed count would give direct MariaDB a fraction of a second).
            queries = {
                n: max(1000, int(results["point_simple"][n]["tps"] * seconds) // 100 * 100) for n in TARGETS
            }
            try:
                runs = {n: [] for n in TARGETS}
                for _ in range(rounds):
                    for n in TARGETS:
                        runs[n].append(slap_run(t, n, queries[n]))
                results["point_mysqlslap"] = {n: _summary(v) for n, v in runs.items()}
                results["point_mysqlslap"]["queries"] = queries
            except RuntimeError as e:
                print(f"bench: mysqlslap skipped: {e}", file=sys.stderr)
                results["point_mysqlslap"] = {"error": str(e)[:300]}
    finally:
        t.stop()
    return results


def apt_availability() -> str:
    """Whether ProxySQL or MaxScale could be compared against: only if this machine's package
    sources have them."""
    found = []
    for pkg in ("proxysql", "maxscale"):
        with contextlib.suppress(Exception):
            res = subprocess.run(
                ["apt-cache", "policy", pkg], capture_output=True, text=True, timeout=30, check=False
            )
            if "Candidate:" in res.stdout and "Candidate: (none)" not in res.stdout:
                found.append(pkg)
    if not found:
        return "ProxySQL/MaxScale not available from this machine's package sources"
    return f"available from the package sources but not benchmarked: {', '.join(found)}"


def skip_reason() -> str | None:
    if not mariadb_available():
        return "mariadbd / mariadb-install-db not found (apt-get install mariadb-server)"
    try:
        simple_driver()
        prepared_driver()
    except RuntimeError as e:
        return str(e)
    return None


def main(argv: list[str] | None = None) -> int:
    from bench.__main__ import USER, USER_PW, policy_yaml

    ap = argparse.ArgumentParser(prog="python -m bench.mysql_bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-slap", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 2
    reason = skip_reason()
    if reason:
        print(f"bench: MySQL workload skipped: {reason}")
        return 0
    with tempfile.TemporaryDirectory(prefix="maskgate-bench-my-") as tmp:
        r = run(Path(tmp), USER, USER_PW, policy_yaml(), args.rounds, args.seconds, slap=not args.no_slap)
    import json

    print(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
