"""The PostgreSQL point-lookup hot path, replayed without sockets: CPU per transaction of the session.

Drives one sans-IO `PgSession` over the real `Guard` (the bench policy, a static schema, optionally
a real audit log) with the bytes pgbench and PostgreSQL exchange for a point lookup of a masked
customer row (`SELECT id, name, phone, id_card FROM customers WHERE id = :id`), in simple or
prepared mode, and reports the Python work per transaction: CPU microseconds (process_time, all
threads, so the audit writer counts), function calls (cProfile) or a cProfile listing. No socket,
no event loop: what it measures is the session code the driver calls once per read.

Entry point: `python -m bench.pg_path_bench [--mode simple|prepared|both] [-n N] [--profile]
[--no-audit] [--replay-only]`; `run(mode, n)` for use from code. Instructions per transaction:
`valgrind --tool=callgrind` over `--replay-only` with two values of -n, the difference of the
totals divided by the difference of n (the machine is shared: instructions are steadier than time).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import scramp
from prometheus_client import CollectorRegistry

from policies import Schema, load_policy
from policies.schema import Table
from proxy.core.commands import SendClient, SendUpstream
from proxy.core.events import ClientData, UpstreamConnected, UpstreamData
from proxy.pg import messages as m
from proxy.pg.context import SessionConfig
from proxy.pg.framing import Framer
from proxy.pg.session import PgSession, Phase
from proxy.services.audit import AuditLog
from proxy.services.guard import Guard
from proxy.services.metrics import Metrics

USER, USER_PW = "bench_vendor", "bench-pass"
POINT_SQL = "SELECT id, name, phone, id_card FROM customers WHERE id = {}"
PREPARED_SQL = "SELECT id, name, phone, id_card FROM customers WHERE id = $1"
STATEMENT = "P_0"  # pgbench -M prepared names its statements P_<n>
CUSTOMERS = 10_000
POOL = 5_000  # distinct transactions replayed (the decision cache sees 5,000 distinct texts)
COLUMNS = ("id", "name", "phone", "id_card", "bank_card", "email", "branch_id", "address", "created_at")
CFG = SessionConfig(upstream_user="maskgate_svc", upstream_password="x", default_database="crm")

# The RowDescription PostgreSQL sends for the point lookup: bigint id, then three text columns
# of customers (table oid and attribute numbers as a real server gives them).
CUSTOMERS_OID = 16390
ROW_DESCRIPTION = m.RowDescription(
    (
        m.FieldDescription("id", CUSTOMERS_OID, 1, 20, 8, -1, 0),
        m.FieldDescription("name", CUSTOMERS_OID, 2, 25, -1, -1, 0),
        m.FieldDescription("phone", CUSTOMERS_OID, 3, 25, -1, -1, 0),
        m.FieldDescription("id_card", CUSTOMERS_OID, 4, 25, -1, -1, 0),
    )
).serialize()


def policy_text() -> str:
    from bench.__main__ import policy_yaml

    return policy_yaml()


def guard(work: Path, *, audit: bool) -> Guard:
    (work / "policy.yaml").write_text(policy_text())
    schema = Schema("crm", "postgres", {("public", "customers"): Table("public", "customers", COLUMNS)})
    log = AuditLog(work / "audit.jsonl") if audit else None
    g = Guard(
        load_policy(work / "policy.yaml"),
        metrics=Metrics(CollectorRegistry()),
        audit=log,
        schema_loaders={"postgres": lambda database: schema},
        default_databases={"postgres": "crm"},
    )
    if not g.load_schema("crm"):
        raise RuntimeError("schema did not load")
    return g


def _id_card(rng: random.Random) -> str:
    birth = f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = f"110105{birth}{rng.randint(0, 999):03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
    return body + check


def answer_rows(n: int = CUSTOMERS, seed: int = 12) -> list[bytes]:
    """The DataRow of each customer id (1..n), as the server sends it."""
    rng = random.Random(seed)
    surnames = "王李张刘陈杨黄赵吴周"
    rows = [b""]
    for i in range(1, n + 1):
        name = rng.choice(surnames) + rng.choice("伟芳娜敏静丽强磊军洋") + rng.choice(("", "华"))
        phone = f"1{rng.choice('3589')}{rng.randint(0, 999_999_999):09d}"
        rows.append(
            m.DataRow((str(i).encode(), name.encode(), phone.encode(), _id_card(rng).encode())).serialize()
        )
    return rows


def login(g: Guard) -> PgSession:
    """A session of the bench user through the whole SCRAM login, ready to relay."""
    s = PgSession(g, CFG, session_id="bench", cancel_key=(1, b"\0\0\0\1"))
    sc = scramp.ScramClient(["SCRAM-SHA-256"], USER, USER_PW)

    def client_bytes(cmds: list) -> bytes:  # type: ignore[type-arg]
        return b"".join(c.data for c in cmds if isinstance(c, SendClient))

    def sasl(data: bytes) -> str:
        f = Framer()
        buf, frames = f.feed(data)
        for t, st, en in frames:
            if t == b"R":
                return buf[st + 9 : en].decode()
        raise RuntimeError("no SASL message")

    s.handle(ClientData(m.StartupMessage(m.PROTOCOL_3_0, (("user", USER), ("database", "crm"))).serialize()))
    out = s.handle(
        ClientData(m.SASLInitialResponse("SCRAM-SHA-256", sc.get_client_first().encode()).serialize())
    )
    sc.set_server_first(sasl(client_bytes(out)))
    out = s.handle(ClientData(m.SASLResponse(sc.get_client_final().encode()).serialize()))
    sc.set_server_final(sasl(client_bytes(out)))
    s.handle(UpstreamConnected())
    # The bench role runs upstream as crm_desk: the login sends SET ROLE and expects its answer.
    ps = [m.ParameterStatus(k, v) for k, v in (("server_version", "17"), ("client_encoding", "UTF8"))]
    up = [m.AuthenticationOk(), *ps, m.BackendKeyData(5, b"\0\0\0\6"), m.ReadyForQuery(b"I")]
    out = s.handle(UpstreamData(b"".join(x.serialize() for x in up)))
    for _ in range(3):
        if s.phase is Phase.RELAY:
            break
        if not any(isinstance(c, SendUpstream) for c in out):
            break
        out = s.handle(UpstreamData(m.CommandComplete("SET").serialize() + m.ReadyForQuery(b"I").serialize()))
    if s.phase is not Phase.RELAY:
        raise RuntimeError(f"login did not finish: {s.phase} {out}")
    return s


def exchange(mode: str, rows: list[bytes], ids: list[int]) -> list[tuple[bytes, bytes]]:
    """(client bytes, server answer) per transaction, as pgbench and PostgreSQL send them."""
    tail = m.CommandComplete("SELECT 1").serialize() + m.ReadyForQuery(b"I").serialize()
    out = []
    for i in ids:
        if mode == "simple":
            client = m.Query(POINT_SQL.format(i)).serialize()
            server = ROW_DESCRIPTION + rows[i] + tail
        else:
            client = b"".join(
                x.serialize()
                for x in (
                    m.Bind("", STATEMENT, (), (str(i).encode(),), ()),
                    m.Describe(b"P", ""),
                    m.Execute("", 0),
                    m.Sync(),
                )
            )
            server = m.BindComplete().serialize() + ROW_DESCRIPTION + rows[i] + tail
        out.append((client, server))
    return out


def prepare_statement(s: PgSession) -> None:
    """pgbench -M prepared prepares its statement once per connection (Parse, Sync)."""
    s.handle(ClientData(m.Parse(STATEMENT, PREPARED_SQL, ()).serialize() + m.Sync().serialize()))
    s.handle(UpstreamData(m.ParseComplete().serialize() + m.ReadyForQuery(b"I").serialize()))


def replay(s: PgSession, txs: list[tuple[bytes, bytes]], check: Callable[[list], None] | None = None) -> None:  # type: ignore[type-arg]
    handle = s.handle
    for client, server in txs:
        handle(ClientData(client))
        out = handle(UpstreamData(server))
        if check is not None:
            check(out)


def _masked(out: list) -> None:  # type: ignore[type-arg]
    """The answer reached the client with its phone masked (guards the bench against measuring a refusal)."""
    data = b"".join(c.data for c in out if isinstance(c, SendClient))
    if b"C\0\0\0\rSELECT 1\0" not in data or b"****" not in data:
        raise RuntimeError(f"unexpected answer: {data!r}")


def setup(mode: str, n: int, *, audit: bool, work: Path) -> tuple[PgSession, list[tuple[bytes, bytes]]]:
    g = guard(work, audit=audit)
    s = login(g)
    if mode == "prepared":
        prepare_statement(s)
    rng = random.Random(7)
    # A pool of distinct lookups replayed in turn: building the exchange costs nothing per
    # replayed transaction (an instruction count of two values of n then holds the replay only).
    pool = exchange(mode, answer_rows(), [rng.randint(1, CUSTOMERS) for _ in range(min(n, POOL))])
    replay(s, pool[:50], _masked)  # warm: caches filled, answers checked
    return s, [pool[i % len(pool)] for i in range(n)]


def _close(s: PgSession) -> None:
    audit = getattr(s.ctx.gate, "audit", None)
    if audit is not None:
        audit.close()


def run(mode: str, n: int = 20_000, *, audit: bool = True) -> dict[str, float]:
    """CPU µs per transaction of `n` point lookups in `mode`, and cProfile's calls per transaction."""
    with tempfile.TemporaryDirectory(prefix="pgpath-") as d:
        s, txs = setup(mode, n, audit=audit, work=Path(d))
        t0 = time.process_time()
        replay(s, txs)
        cpu = time.process_time() - t0
        prof = cProfile.Profile()
        few = txs[: min(2000, n)]
        prof.runcall(replay, s, few)
        calls = pstats.Stats(prof).total_calls  # type: ignore[attr-defined]
        _close(s)
        return {"cpu_us_per_tx": cpu / n * 1e6, "calls_per_tx": calls / len(few)}


def profile(mode: str, n: int, *, audit: bool, limit: int = 45) -> None:
    with tempfile.TemporaryDirectory(prefix="pgpath-") as d:
        s, txs = setup(mode, n, audit=audit, work=Path(d))
        prof = cProfile.Profile()
        prof.runcall(replay, s, txs)
        _close(s)
        st = pstats.Stats(prof, stream=sys.stdout)
        print(f"--- {mode}: {st.total_calls / n:.1f} calls per transaction")  # type: ignore[attr-defined]
        st.sort_stats("tottime").print_stats(limit)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--mode", choices=("simple", "prepared", "both"), default="both")
    ap.add_argument("-n", type=int, default=20_000, help="transactions per mode")
    ap.add_argument("--profile", action="store_true", help="print a cProfile listing instead")
    ap.add_argument("--no-audit", action="store_true", help="no audit log (the guard's metrics stay)")
    ap.add_argument(
        "--replay-only",
        action="store_true",
        help="set up, replay n transactions, exit: run under callgrind with two values of n and "
        "divide the difference of the instruction counts by the difference of n",
    )
    args = ap.parse_args(argv)
    modes = ("simple", "prepared") if args.mode == "both" else (args.mode,)
    for mode in modes:
        if args.replay_only:
            with tempfile.TemporaryDirectory(prefix="pgpath-") as d:
                s, txs = setup(mode, args.n, audit=not args.no_audit, work=Path(d))
                replay(s, txs)
                _close(s)
            continue
        if args.profile:
            profile(mode, args.n, audit=not args.no_audit)
            continue
        r = run(mode, args.n, audit=not args.no_audit)
        print(f"{mode:9s} {r['cpu_us_per_tx']:7.1f} µs CPU/tx  {r['calls_per_tx']:6.1f} calls/tx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
