"""The audit log: JSON lines, written before a statement reaches the database and after it ends.

Owns the record format, literal scrubbing, the writer thread and a fallback fingerprint. The log
must never hold a full customer number: every SQL text passes through the value detectors before
it is written, and no row value is ever recorded.

A statement the proxy forwards gets two records with one id: `start`, submitted before the
statement is forwarded (who, the decision, the statement without its comments, its tables and
classes), and `end` (outcome, rows, duration, error, cancelled). A refused statement gets one,
`refused`. With `audit_required` the `start` record is written and handed to the operating
system (`write_now`) before the statement is forwarded, and a failed write refuses it; otherwise
records are queued and a writer thread writes them in batches off the event loop.

The queued path is an append to a deque, with no lock and no wake-up: the writer thread wakes on
a timer and formats a whole batch (waking it per statement cost two futex calls and a GIL
hand-over per statement, which halved point-lookup throughput). Scrubbing is cached per SQL text,
since clients repeat their statements. Fingerprints and policy revisions come with the decisions,
and the statement text without comments from the function the process gives (policies/sql/text),
so this module reads no SQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import masking
from policies.decision import Block

from .gate import StatementRecord

# Every class: an auditor reading the log is not entitled to any customer identifier.
_scrub = masking.make_text_masker(None, "mask")

# The `sql` of a record holds at most this many characters of the statement without comments;
# `sql_length` and `sql_hash` describe the whole statement as received.
SQL_LIMIT = 4096

# (sql, dialect) -> the statement without comments (injected: this module reads no SQL).
StatementText = Callable[[str, str], str]


def fingerprint(sql: str) -> str:
    """An id for the text of a record no engine decided (a fast-path call, an unknown portal):
    case and spacing folded. Decisions carry their own fingerprint, read in their dialect with
    every literal taken out, so this module needs no SQL knowledge."""
    shape = " ".join(sql.split()).lower()
    # SQL sent in another client encoding arrives with undecodable bytes as surrogates.
    return hashlib.sha256(shape.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def scrub_sql(sql: str, limit: int = SQL_LIMIT) -> str:
    """The SQL text with every detected identifier masked, cut to `limit` characters."""
    if len(sql) > limit:
        sql = sql[:limit] + "…"
    return _scrub(sql)


def _who(rec: StatementRecord, ts: float | None) -> dict[str, Any]:
    """Who did it, when and where: the part of a record that can always be rendered."""
    when = dt.datetime.now(dt.UTC) if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC)
    return {
        "ts": when.isoformat(timespec="milliseconds"),
        "event": event_of(rec),
        "id": rec.id,
        "session": rec.session,
        "user": rec.user,
        "role": rec.role,
        "client": rec.client,
        "protocol": rec.protocol,
        "database": rec.database,
    }


def event_of(rec: StatementRecord) -> str:
    """start | end | refused: a record that does not say is a refusal or an end."""
    return rec.event or ("refused" if isinstance(rec.decision, Block) else "end")


class _Texts:
    """The recorded form of each SQL text: without comments, scrubbed, capped, with its length
    and keyed hash. Cached per text (bounded: cleared when full), since clients repeat theirs."""

    MAX = 4096

    def __init__(self, key: bytes, statement_text: StatementText | None) -> None:
        self.key = key
        self.statement_text = statement_text
        self._cache: dict[tuple[str, str], tuple[str, int, str]] = {}

    def get(self, sql: str, dialect: str) -> tuple[str, int, str]:
        k = (sql, dialect)
        hit = self._cache.get(k)
        if hit is None:
            text = self.statement_text(sql, dialect) if self.statement_text and dialect else sql
            raw = sql.encode("utf-8", "surrogateescape")
            # Keyed (masking_key): a plain hash of a statement with a phone number in it could be
            # reversed by trying every number.
            digest = hmac.new(self.key, raw, hashlib.sha256).hexdigest()[:32]
            hit = (scrub_sql(text), len(sql), digest)
            if len(self._cache) >= self.MAX:
                self._cache.clear()
            self._cache[k] = hit
        return hit


def to_json(
    rec: StatementRecord, revision: str, ts: float | None = None, texts: _Texts | None = None
) -> dict[str, Any]:
    """The audit record; `ts` is when it was submitted (default: now). `revision` is the policy in
    force when recorded, for decisions that carry none (no policy made them)."""
    d = rec.decision
    out = _who(rec, ts)
    if out["event"] == "end":
        return out | {
            "outcome": rec.outcome or ("error" if rec.error else "ok"),
            "error": rec.error,
            "cancelled": rec.cancelled,
            "rows": rec.rows,
            "masked": rec.masked,
            "truncated": rec.truncated,
            "duration_ms": round(rec.duration_s * 1000, 3),
        }
    sql, length, digest = (texts or _Texts(b"", None)).get(rec.sql, rec.dialect)
    blocked = isinstance(d, Block)
    return out | {
        "sql": sql,
        "sql_length": length,
        "sql_hash": digest,
        # The engine's fingerprint reads the statement with its own dialect; the generic one is
        # only for what no engine decided (fast-path calls, unknown portals).
        "fingerprint": d.fingerprint or fingerprint(rec.sql),
        "decision": "block" if blocked else "allow",
        "reason": d.reason if blocked else None,
        "kind": d.kind,
        "tables": list(d.tables),
        "classes": list(d.classes),
        # The revision that made the decision, which a reload may have replaced since.
        "policy_revision": d.revision or revision,
    }


class AuditLog:
    """Queue + writer thread, and the synchronous write-ahead of `audit_required`.

    `submit` never blocks; `write_now` writes on the caller's thread; `close` drains the queue.
    Queued records reach the file within `interval` seconds of being submitted.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        on_failure: Callable[[], None] | None = None,
        stream: TextIO | None = None,
        interval: float = 0.05,
        key: bytes = b"",
        statement_text: StatementText | None = None,
    ) -> None:
        self.path = path
        self.interval = interval
        self._on_failure = on_failure
        self._texts = _Texts(key or masking.DEFAULT_KEY, statement_text)
        # deque.append/popleft are atomic under the GIL: no lock and no wake-up per record.
        self._queue: deque[tuple[StatementRecord, str, float]] = deque()
        self._closing = threading.Event()
        self._stream = stream  # a text stream given by the caller (tests), else the file below
        self._fd: int | None = None
        self._lock = threading.Lock()  # one writer at a time: the thread or a write_now
        self.healthy = True
        self.written = 0
        self._thread: threading.Thread | None = None
        if path is not None or stream is not None:
            self._open()
            self._thread = threading.Thread(target=self._run, name="maskgate-audit", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self._thread is not None

    def _open(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: a failed write leaves nothing behind in a buffer to be written later.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            self.healthy = True
        except OSError as exc:
            self._fail(f"cannot open audit log {self.path}: {exc.strerror}")

    def reopen(self) -> None:
        """Close the file and open the path again: after logrotate moved or removed it (SIGHUP).
        Records already queued go to the new file; none is lost or split between the two."""
        with self._lock:
            self._reopen()

    def _reopen(self) -> None:
        """(The caller holds the lock.)"""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        self._open()

    def _rotated(self, st: os.stat_result) -> bool:
        """Whether the path no longer names the open file (moved or removed without a SIGHUP):
        one stat per batch, against the fstat the write takes anyway."""
        if self.path is None:
            return False
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return True
        except OSError:
            return False  # cannot tell (permissions): keep writing where we are
        return (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev)

    def _fail(self, message: str) -> None:
        if self.healthy:
            print(f"maskgate: audit: {message}", file=sys.stderr, flush=True)
        self.healthy = False
        if self._on_failure is not None:
            self._on_failure()

    def submit(self, rec: StatementRecord, revision: str) -> None:
        if self._thread is not None:
            self._queue.append((rec, revision, time.time()))

    def write_now(self, rec: StatementRecord, revision: str) -> bool:
        """Write one record now, on the caller's thread, and hand it to the operating system
        before returning (no fsync). False when it could not be written (it is then lost)."""
        if self._thread is None:
            return False
        line = self._line(rec, revision, time.time()) + "\n"
        with self._lock:
            return self._write(line, 1)

    def _line(self, rec: StatementRecord, revision: str, ts: float) -> str:
        """One record as JSON. A record that cannot be rendered is still written, without its
        SQL: one odd statement must never cost the batch (or an attacker, his trace)."""
        try:
            return json.dumps(to_json(rec, revision, ts, self._texts), ensure_ascii=False)
        except Exception as exc:
            fallback = _who(rec, ts) | {
                "sql": None,
                "decision": "block" if isinstance(rec.decision, Block) else "allow",
                "policy_revision": rec.decision.revision or revision,
                "audit_error": type(exc).__name__,
            }
            return json.dumps(fallback, ensure_ascii=True, default=str)

    def _run(self) -> None:
        q = self._queue
        while True:
            stop = self._closing.wait(self.interval)
            # One batch per tick: everything queued so far, one write.
            lines = []
            while q:
                rec, revision, ts = q.popleft()
                lines.append(self._line(rec, revision, ts))
            if lines:
                with self._lock:
                    self._write("\n".join(lines) + "\n", len(lines))
            if stop and not q:
                return

    def _write(self, text: str, count: int) -> bool:
        """Write whole lines (the caller holds the lock). A write that fails part-way is cut
        back, so the file never holds half a record that the next write would run into."""
        if self._stream is not None:
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError) as exc:
                for _ in range(count):
                    self._fail(f"write failed: {exc}")
                return False
            self.written += count
            self.healthy = True
            return True
        if self._fd is None or not self.healthy:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._open()  # retry: the disk may have come back
        fd = self._fd
        if fd is None:
            for _ in range(count):
                self._fail("audit log is not writable")
            return False
        data = memoryview(text.encode("utf-8", "backslashreplace"))
        size = -1
        try:
            st = os.fstat(fd)
            if self._rotated(st):
                print(f"maskgate: audit: {self.path} was moved or removed; reopened", file=sys.stderr)
                self._reopen()
                if self._fd is None:
                    for _ in range(count):
                        self._fail("audit log is not writable")
                    return False
                fd = self._fd
                st = os.fstat(fd)
            size = st.st_size
            while data:
                data = data[os.write(fd, data) :]
        except OSError as exc:
            if size >= 0:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
            for _ in range(count):
                self._fail(f"write failed: {exc.strerror or exc}")
            return False
        self.written += count
        self.healthy = True
        return True

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        self._closing.set()
        self._thread.join(timeout)
        self._thread = None
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
