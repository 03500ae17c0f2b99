"""The disclosure ledger: which person received which value on which day, without the values.

Owns the ledger's storage: per person and UTC day a Bloom filter of the value keys (HMACs,
services/disclosure.py) they received, and per statement an index of its keys' prefixes, kept
in `ledger_dir` as append-only segment files (one per process and day, every record with a
CRC-32), written by one thread; retention by whole day files; and the reading side `maskgate
trace` uses. Must not see a value in clear or touch the event loop: it gets keys, on the
disclosure thread, and writes on its own.

Files: `<ledger_dir>/ledger-YYYYMMDD-<host>-<pid>.seg`, so replicas and workers sharing a
directory never write the same file; a reader merges them all (Bloom filters OR together).
A file is the magic `MGLEDG1\\n`, then records: `>II` (payload length, CRC-32 of payload) and
the payload: a JSON header line, `\\n`, then the zlib-compressed filter bits. Record kinds:
- `day`: {user, day, clear, m, k}: the bits set in that person's day filter since the last
  flush (a delta: the reader ORs them; a day filter is never rewritten). Values received masked
  (`ledger_masked: true`) go to a filter of their own (clear false).
- `stmt`: {user, day, sid, n}: the statement index: the sorted first 4 bytes of the n distinct
  keys a statement disclosed since the last flush (4 bytes a value, chance n/2^32 that another
  value matches; cheaper to build than a second Bloom filter, which would cost k hash
  positions per value for 2 bytes saved). `trace` names a statement only when
  the person's day filter matched, so its false-positive rate multiplies the day filter's.
A record whose CRC fails is skipped and counted; a torn last record (a crash mid-write) ends
the reading of that file.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masking.native import load

from .disclosure import ROW_KEY, Batch

# The native insertion (proxy/services/_bloom.c); None: add_keys below is all there is.
_native = load("proxy.services._bloom")

MAGIC = b"MGLEDG1\n"
_REC = struct.Struct(">II")
MAX_RECORD = 64 << 20  # a longer length field is corruption, not a record
PREFIX = 4  # bytes of a key kept in the statement index
DEFAULT_EXPECTED = 20000  # distinct values per person-day a filter is sized for
DEFAULT_FP = 1e-4
DEFAULT_RETENTION_DAYS = 180


def bloom_size(n: int, p: float) -> tuple[int, int]:
    """(bits, hash count) for n keys at false-positive rate p: m = -n ln p / ln²2, k = m/n ln 2."""
    n = max(1, n)
    m = max(64, math.ceil(-n * math.log(p) / (math.log(2) ** 2)))
    m = (m + 7) // 8 * 8
    k = max(1, round(m / n * math.log(2)))
    return m, k


def positions(key: bytes, m: int, k: int) -> list[int]:
    """The k bit positions of a key (Kirsch–Mitzenmacher double hashing over the HMAC's first
    16 bytes: they are already uniform, no further hashing is needed)."""
    h1 = int.from_bytes(key[:8], "big")
    h2 = int.from_bytes(key[8:16], "big") | 1
    return [(h1 + i * h2) % m for i in range(k)]


def add_keys(bits: bytearray, delta: bytearray, keys: bytes, width: int, m: int, k: int) -> int:
    """Set the bits of the `width`-byte keys concatenated in `keys` in `bits` and in `delta`;
    how many keys set a bit not set before. The reference of _bloom.c's `add`."""
    changed = 0
    for j in range(0, len(keys), width):
        h1 = int.from_bytes(keys[j : j + 8], "big")
        h2 = int.from_bytes(keys[j + 8 : j + 16], "big") | 1
        new = False
        for i in range(k):
            pos = (h1 + i * h2) % m
            byte, bit = pos >> 3, 1 << (pos & 7)
            if not bits[byte] & bit:
                bits[byte] |= bit
                delta[byte] |= bit
                new = True
        changed += new
    return changed


_add = _native.add if _native is not None else add_keys


class Bloom:
    __slots__ = ("bits", "k", "m")

    def __init__(self, m: int, k: int, bits: bytearray | None = None) -> None:
        self.m = m
        self.k = k
        self.bits = bits if bits is not None else bytearray(m // 8)

    def add(self, key: bytes) -> bool:
        """Set the key's bits; True when any was new (the key was surely not in before)."""
        bits = self.bits
        new = False
        for pos in positions(key, self.m, self.k):
            byte, bit = pos >> 3, 1 << (pos & 7)
            if not bits[byte] & bit:
                bits[byte] |= bit
                new = True
        return new

    def __contains__(self, key: bytes) -> bool:
        bits = self.bits
        return all(bits[pos >> 3] & (1 << (pos & 7)) for pos in positions(key, self.m, self.k))

    def merge(self, bits: bytes) -> None:
        n = len(self.bits)
        self.bits = bytearray(
            (int.from_bytes(self.bits, "big") | int.from_bytes(bits, "big")).to_bytes(n, "big")
        )

    def fill(self) -> float:
        return int.from_bytes(self.bits, "big").bit_count() / self.m

    def fp_rate(self) -> float:
        """The chance a key never added tests present: (fraction of bits set)^k."""
        return float(self.fill() ** self.k)


def day_of(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y%m%d")


def _record(header: dict[str, Any], bits: bytes, level: int = 6) -> bytes:
    # Level 0 for key prefixes: random bytes do not compress.
    payload = json.dumps(header, separators=(",", ":")).encode() + b"\n" + zlib.compress(bits, level)
    return _REC.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass
class _Day:
    """One person's filter for one day in this process: the whole, and the bits set since flush."""

    bloom: Bloom
    delta: bytearray
    dirty: bool = False


@dataclass
class _Stmt:
    user: str
    day: str
    keys: set[bytes] = field(default_factory=set)


class Ledger:
    """The writer: `keep` (a Disclosures keeper) adds keys under the disclosure thread; a flush
    thread appends the changes to this process's segment file every `interval` seconds, and
    prunes day files past `retention_days`."""

    def __init__(
        self,
        directory: Path,
        *,
        expected: int = DEFAULT_EXPECTED,
        fp_rate: float = DEFAULT_FP,
        masked: bool = False,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        on_values: Callable[[int], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.m, self.k = bloom_size(expected, fp_rate)
        self.masked = masked
        self.retention_days = retention_days
        self.interval = interval
        self._clock = clock
        self._on_values = on_values
        self._days: dict[tuple[str, str, bool], _Day] = {}
        self._stmts: dict[str, _Stmt] = {}
        self._lock = threading.Lock()  # between the disclosure thread and the flush thread
        self._tag = f"{socket.gethostname().replace('-', '_')}-{os.getpid()}"
        self.bytes_written = 0
        self.values = 0
        self._closing = threading.Event()
        self._pruned_day = ""
        self._thread = threading.Thread(target=self._run, name="maskgate-ledger", daemon=True)
        self._thread.start()

    # -- the disclosure thread

    def keep(self, batch: Batch) -> None:
        """Record the keys a person received (in clear; masked too with `masked`). Not the
        values of canary key columns (ROW_KEY): they are noted for the canaries alone, and
        would fill the person's filters with every row id they read. The policy's customer key
        is kept: `maskgate trace 41` answers who looked up customer 41."""
        day = day_of(batch.ts)
        keys = [(key, clear) for cls, key, clear in batch.keys if (clear or self.masked) and cls != ROW_KEY]
        if not keys:
            return
        with self._lock:
            m, k = self.m, self.k
            for clear in (True, False):
                group = b"".join(key for key, c in keys if c is clear)
                if not group:
                    continue
                entry = self._days.get((batch.user, day, clear))
                if entry is None:
                    entry = self._days[(batch.user, day, clear)] = _Day(Bloom(m, k), bytearray(m // 8))
                # Bits not set yet go to the delta too (what the next flush appends).
                if _add(entry.bloom.bits, entry.delta, group, 32, m, k):
                    entry.dirty = True
            if batch.statement_id:
                st = self._stmts.get(batch.statement_id)
                if st is None:
                    st = self._stmts[batch.statement_id] = _Stmt(batch.user, day)
                st.keys.update(key[:PREFIX] for key, _clear in keys)
            self.values += len(keys)
        if self._on_values is not None:
            self._on_values(len(keys))

    # -- the flush thread

    def _run(self) -> None:
        while not self._closing.wait(self.interval):
            self._safely(self.flush)
            self._safely(self.prune)
        self._safely(self.flush)

    @staticmethod
    def _safely(fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as exc:  # a full disk must not end the thread: the next tick retries
            print(f"maskgate: ledger: {exc!r}", file=sys.stderr)

    def flush(self) -> int:
        """Append what changed since the last flush; the bytes written."""
        today = day_of(self._clock())
        out: dict[str, list[bytes]] = {}
        with self._lock:
            for (user, day, clear), entry in list(self._days.items()):
                if entry.dirty:
                    header = {"t": "day", "user": user, "day": day, "clear": clear, "m": self.m, "k": self.k}
                    out.setdefault(day, []).append(_record(header, bytes(entry.delta)))
                    entry.delta = bytearray(self.m // 8)
                    entry.dirty = False
                if day != today:
                    del self._days[(user, day, clear)]  # yesterday's is complete on disk
            stmts, self._stmts = self._stmts, {}
        for sid, st in stmts.items():
            header = {"t": "stmt", "user": st.user, "day": st.day, "sid": sid, "n": len(st.keys)}
            out.setdefault(st.day, []).append(_record(header, b"".join(sorted(st.keys)), level=0))
        written = 0
        for day, records in out.items():
            path = self.directory / f"ledger-{day}-{self._tag}.seg"
            data = b"".join(records)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                if os.fstat(fd).st_size == 0:
                    data = MAGIC + data
                os.write(fd, data)
            finally:
                os.close(fd)
            written += len(data)
        self.bytes_written += written
        return written

    def prune(self) -> list[Path]:
        """Delete day files older than the retention period (once a day is enough)."""
        today = day_of(self._clock())
        if today == self._pruned_day:
            return []
        self._pruned_day = today
        return prune(self.directory, self.retention_days, self._clock())

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=10)


def prune(directory: Path, retention_days: int, now: float) -> list[Path]:
    """Remove whole day files older than `retention_days` days before `now`."""
    cutoff = day_of(now - retention_days * 86400)
    gone = []
    for path in directory.glob("ledger-*.seg"):
        day = path.name.split("-")[1]
        if day < cutoff:
            path.unlink(missing_ok=True)
            gone.append(path)
    return gone


# ------------------------------------------------------------------ reading


@dataclass
class Contents:
    """Every filter of a ledger directory (from `since` on), merged across files."""

    # (user, day, clear): one filter per size met (a config change mid-day starts another)
    days: dict[tuple[str, str, bool], list[Bloom]] = field(default_factory=dict)
    # (user, day) -> [(sid, key prefixes)]
    statements: dict[tuple[str, str], list[tuple[str, set[bytes]]]] = field(default_factory=dict)
    corrupt: int = 0  # records skipped: CRC mismatch or unreadable
    torn: int = 0  # files whose last record was cut short
    files: int = 0


def records(path: Path) -> Iterator[tuple[dict[str, Any], bytes] | None]:
    """The records of one segment file: (header, bits), or None for one that failed its check."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        yield None
        return
    pos = len(MAGIC)
    while pos < len(data):
        if pos + _REC.size > len(data):
            raise EOFError(path)
        length, crc = _REC.unpack_from(data, pos)
        start, end = pos + _REC.size, pos + _REC.size + length
        if length > MAX_RECORD:
            yield None  # the length itself is damaged: nothing after it can be framed
            return
        if end > len(data):
            raise EOFError(path)
        payload = data[start:end]
        pos = end
        if zlib.crc32(payload) != crc:
            yield None
            continue
        try:
            head, _, blob = payload.partition(b"\n")
            yield json.loads(head), zlib.decompress(blob)
        except (ValueError, zlib.error):
            yield None


def read(directory: Path, since: str = "") -> Contents:
    """Merge every segment file of `directory` for days >= `since` (YYYYMMDD)."""
    out = Contents()
    for path in sorted(Path(directory).glob("ledger-*.seg")):
        if path.name.split("-")[1] < since:
            continue
        out.files += 1
        try:
            for rec in records(path):
                if rec is None:
                    out.corrupt += 1
                    continue
                head, bits = rec
                where = (str(head["user"]), str(head["day"]))
                if head.get("t") == "stmt":
                    prefixes = {bits[i : i + PREFIX] for i in range(0, len(bits), PREFIX)}
                    out.statements.setdefault(where, []).append((str(head["sid"]), prefixes))
                    continue
                m, k = int(head["m"]), int(head["k"])
                if len(bits) != m // 8:
                    out.corrupt += 1
                    continue
                if head.get("t") == "day":
                    blooms = out.days.setdefault((where[0], where[1], bool(head.get("clear", True))), [])
                    same = next((b for b in blooms if b.m == m and b.k == k), None)
                    if same is None:
                        blooms.append(Bloom(m, k, bytearray(bits)))
                    else:
                        same.merge(bits)
        except EOFError:
            out.torn += 1
        except OSError:
            out.corrupt += 1
    return out


@dataclass(frozen=True)
class Hit:
    user: str
    day: str
    clear: bool  # from the filter of values received in clear (else of masked ones)
    fp_rate: float  # of the day filter that matched: the chance this hit is false
    statements: tuple[str, ...]


def lookup(contents: Contents, key: bytes) -> list[Hit]:
    """Every (person, day) whose filter holds `key`, with the statements whose filters do too."""
    hits = []
    for (user, day, clear), blooms in sorted(contents.days.items()):
        for bloom in blooms:
            if key in bloom:
                stmts = contents.statements.get((user, day), ())
                sids = tuple(sorted({sid for sid, prefixes in stmts if key[:PREFIX] in prefixes}))
                hits.append(Hit(user, day, clear, bloom.fp_rate(), sids))
                break
    return hits


def filters(contents: Contents) -> Iterable[Bloom]:
    return (b for blooms in contents.days.values() for b in blooms)
