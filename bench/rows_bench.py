"""Micro-benchmark of streamed row masking: CPU per DataRow through the PostgreSQL session.

    .venv/bin/python -m bench.rows_bench [--rows 100000] [--profile]

Drives a logged-in PgSession (the sans-IO session the proxy runs, no sockets) with workload 2's
result: `SELECT id, phone, id_card, note FROM big`, phone and id_card masked, note scanned for
mobile / id_card / bank_card, values shaped as bench/__main__.py seeds them. The upstream's rows
arrive in 64 KiB reads, as from a socket. The maskers are the real Guard's (demo policy), the
decision is canned. Prints the CPU time (time.process_time) per row, which a shared machine
measures more steadily than throughput; run it once normally and once with MASKGATE_PURE=1 to
compare the native row walker with the reference.

With `--ledger`, the same rows with the disclosure ledger on (proxy/services/ledger.py, masked
values recorded too: `ledger_masked: true`, the costlier setting, so that every phone and ID
number is a ledger value): the CPU per row then includes the disclosure and ledger threads
(process time counts every thread), and it prints the ledger's bytes per million values.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from masking.native import PURE
from policies import load_policy
from policies.decision import Allow, ColumnMask, Decision
from proxy.core.commands import SendClient
from proxy.core.events import ClientData, UpstreamData
from proxy.pg import messages as m
from proxy.pg import rowmask
from proxy.services.gate import Principal
from proxy.services.guard import Guard
from proxy.services.metrics import Metrics
from tests.proxy.pg.fakegate import FakeGate
from tests.proxy.pg.transcripts import login

DEMO = Path(__file__).resolve().parents[1] / "policies" / "examples" / "demo.yaml"
SQL = "SELECT id, phone, id_card, note FROM big"
DETECT = frozenset({"mobile", "id_card", "bank_card"})
ALLOW = Allow(
    kind="select",
    columns=(
        ColumnMask(0, "id", None, "clear"),
        ColumnMask(1, "phone", "mobile", "mask"),
        ColumnMask(2, "id_card", "id_card", "mask"),
        # Unclassified in the policy, but its sampled values carry mobiles: the proxy's discovery
        # classifies it free_text for restricted roles, as it does in `make bench`.
        ColumnMask(3, "note", "free_text", "mask"),
    ),
    detect=DETECT,
)
READ = 64 * 1024


class BenchGate(FakeGate):
    """The test Gate with the real Guard's maskers (counting wrappers included)."""

    def __init__(self) -> None:
        super().__init__(self._decision)
        self.guard = Guard(load_policy(DEMO), metrics=Metrics(CollectorRegistry()), default_databases={})
        self.masking_key = self.guard.masking_key

    @staticmethod
    def _decision(p: Principal, sql: str) -> Decision:
        return ALLOW

    def value_masker(self, cls: str | None, action: str) -> Callable[[Any], Any]:
        return self.guard.value_masker(cls, action)

    def text_masker(self, classes: frozenset[str]) -> Callable[[str], str]:
        return self.guard.text_masker(classes)


def upstream_reads(rows: int) -> list[bytes]:
    fields = tuple(
        m.FieldDescription(n, 0, 0, oid, -1, -1, 0)
        for n, oid in (("id", 23), ("phone", 25), ("id_card", 25), ("note", 25))
    )
    data = bytearray(m.RowDescription(fields).serialize())
    for g in range(1, rows + 1):
        v = f"{g % 100000000:08d}"
        note = f"客户回拨电话 139{v} 已处理".encode()
        data += m.DataRow((str(g).encode(), f"138{v}".encode(), b"11010519491231002X", note)).serialize()
    data += m.CommandComplete(f"SELECT {rows}").serialize() + m.ReadyForQuery(b"I").serialize()
    return [bytes(data[i : i + READ]) for i in range(0, len(data), READ)]


def run(rows: int, profile: bool, unrestricted: bool = False, ledger: bool = False) -> dict[str, float]:
    gate = BenchGate()
    keep: Any = None
    if ledger:
        from proxy.services.disclosure import Disclosures
        from proxy.services.ledger import Ledger

        tmp = tempfile.TemporaryDirectory(prefix="mg-ledger-bench-")
        keep = Ledger(Path(tmp.name), masked=True, interval=3600)
        disclosures = Disclosures(gate.masking_key, [keep.keep])
        gate.observing = True
        gate.disclose = disclosures  # type: ignore[method-assign]
    s, _, _ = login(gate, unrestricted=unrestricted)
    s.handle(ClientData(m.Query(SQL).serialize()))
    reads = upstream_reads(rows)
    prof = cProfile.Profile() if profile else None
    out = 0
    digest = hashlib.sha256()
    t0 = time.process_time()
    if prof:
        prof.enable()
    for chunk in reads:
        for cmd in s.handle(UpstreamData(chunk)):
            if isinstance(cmd, SendClient):
                out += len(cmd.data)
                digest.update(cmd.data)
    if keep is not None:
        disclosures.drain()
        keep.flush()
    if prof:
        prof.disable()
    cpu = time.process_time() - t0
    walker = "reference (MASKGATE_PURE=1)" if PURE or rowmask._walker is None else "native walker"
    walker += ", unrestricted" if unrestricted else ", masked"
    walker += ", ledger on" if ledger else ""
    print(f"rows_bench: {rows} rows, {walker}: {cpu * 1e6 / rows:.2f} µs CPU per row")
    result = {"us_per_row": cpu * 1e6 / rows}
    if keep is not None:
        per_million = keep.bytes_written / max(1, keep.values) * 1e6
        size = f"{keep.values} values, {keep.bytes_written} bytes"
        print(f"rows_bench: ledger: {size}: {per_million:,.0f} bytes per million values")
        result["bytes_per_million_values"] = per_million
        keep.close()
        disclosures.close()
        tmp.cleanup()
    print(f"rows_bench: {out} bytes to the client, sha256 {digest.hexdigest()[:16]}")
    print(f"rows_bench: masked values counted: {gate.guard._masked_counts}")
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--unrestricted", action="store_true", help="a role that sees every class clear")
    ap.add_argument(
        "--ledger", action="store_true", help="also run with the disclosure ledger on, and compare"
    )
    args = ap.parse_args()
    off = run(args.rows, args.profile, args.unrestricted)
    if args.ledger:
        on = run(args.rows, args.profile, args.unrestricted, ledger=True)
        print(
            f"rows_bench: ledger on costs {on['us_per_row'] - off['us_per_row']:.2f} µs CPU per row "
            f"({off['us_per_row'] / on['us_per_row']:.0%} of the rows/s without it)"
        )


if __name__ == "__main__":
    main()
