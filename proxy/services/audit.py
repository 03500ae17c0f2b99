"""The audit log: one JSON object a line per statement, written off the event loop.

Owns the record format, literal scrubbing, the writer thread and a fallback fingerprint. The log must
never hold a full customer number: every SQL text passes through the value detectors before it is
written, and no row value is ever recorded. Sessions hand records over through a queue; a slow or
broken disk never stalls a client, and a failure is reported (stderr, metric, `healthy`) so that
`audit_required: true` can refuse statements rather than run them unrecorded.

The hot path is `submit`: an append to a deque, with no lock and no wake-up. The writer thread
wakes on a timer and formats a whole batch; waking it per statement cost two futex calls and a
GIL hand-over per statement, which halved point-lookup throughput. Scrubbing is cached per SQL
text, since clients repeat their statements. Fingerprints and policy revisions come with the
decisions (the engine stamps them, reading the SQL in its dialect), so this module knows none.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
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


def fingerprint(sql: str) -> str:
    """An id for the text of a record no engine decided (a fast-path call, an unknown portal):
    case and spacing folded. Decisions carry their own fingerprint, read in their dialect with
    every literal taken out, so this module needs no SQL knowledge."""
    shape = " ".join(sql.split()).lower()
    # SQL sent in another client encoding arrives with undecodable bytes as surrogates.
    return hashlib.sha256(shape.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def scrub_sql(sql: str, limit: int = 4096) -> str:
    """The SQL text with every detected identifier masked, cut to `limit` characters."""
    if len(sql) > limit:
        sql = sql[:limit] + "…"
    return _scrub(sql)


# Scrubbed text per SQL text. Bounded: cleared when full (statements that differ only in their
# literals, e.g. simple-protocol point lookups, would otherwise grow it forever).
_SCRUB_CACHE_MAX = 4096
_scrubbed: dict[str, str] = {}


def scrubbed_sql(sql: str) -> str:
    """`scrub_sql`, cached per SQL text. Only the writer thread calls this."""
    out = _scrubbed.get(sql)
    if out is None:
        if len(_scrubbed) >= _SCRUB_CACHE_MAX:
            _scrubbed.clear()
        out = _scrubbed[sql] = scrub_sql(sql)
    return out


def _who(rec: StatementRecord, ts: float | None) -> dict[str, Any]:
    """Who did it, when and where: the part of a record that can always be rendered."""
    when = dt.datetime.now(dt.UTC) if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC)
    return {
        "ts": when.isoformat(timespec="milliseconds"),
        "session": rec.session,
        "user": rec.user,
        "role": rec.role,
        "client": rec.client,
        "protocol": rec.protocol,
        "database": rec.database,
    }


def to_json(rec: StatementRecord, revision: str, ts: float | None = None) -> dict[str, Any]:
    """The audit record; `ts` is when the statement was submitted (default: now). `revision` is
    the policy in force when recorded, for decisions that carry none (no policy made them)."""
    d = rec.decision
    blocked = isinstance(d, Block)
    return _who(rec, ts) | {
        "sql": scrubbed_sql(rec.sql),
        # The engine's fingerprint reads the statement with its own dialect; the generic one is
        # only for what no engine decided (fast-path calls, unknown portals).
        "fingerprint": d.fingerprint or fingerprint(rec.sql),
        "decision": "block" if blocked else ("error" if rec.error else "allow"),
        "reason": d.reason if blocked else None,
        "error": rec.error,
        "kind": d.kind,
        "tables": list(d.tables),
        "classes": list(d.classes),
        "rows": rec.rows,
        "masked": rec.masked,
        "truncated": rec.truncated,
        "duration_ms": round(rec.duration_s * 1000, 3),
        # The revision that made the decision, which a reload may have replaced since.
        "policy_revision": d.revision or revision,
    }


def _line(rec: StatementRecord, revision: str, ts: float) -> str:
    """One record as JSON. A record that cannot be rendered is still written, without its SQL:
    one odd statement must never cost the batch (or an attacker, his trace)."""
    try:
        return json.dumps(to_json(rec, revision, ts), ensure_ascii=False)
    except Exception as exc:
        fallback = _who(rec, ts) | {
            "sql": None,
            "decision": "block" if isinstance(rec.decision, Block) else "allow",
            "policy_revision": rec.decision.revision or revision,
            "audit_error": type(exc).__name__,
        }
        return json.dumps(fallback, ensure_ascii=True, default=str)


class AuditLog:
    """Queue + writer thread. `submit` never blocks; `close` drains what is queued.

    Records reach the file within `interval` seconds of being submitted.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        on_failure: Callable[[], None] | None = None,
        stream: TextIO | None = None,
        interval: float = 0.05,
    ) -> None:
        self.path = path
        self.interval = interval
        self._on_failure = on_failure
        # deque.append/popleft are atomic under the GIL: no lock and no wake-up per record.
        self._queue: deque[tuple[StatementRecord, str, float]] = deque()
        self._closing = threading.Event()
        self._stream = stream
        self.healthy = True
        self.written = 0
        self._thread: threading.Thread | None = None
        if path is not None or stream is not None:
            self._open()
            self._thread = threading.Thread(target=self._run, name="maskgate-audit", daemon=True)
            self._thread.start()

    def _open(self) -> None:
        if self._stream is not None and self.path is None:
            return
        assert self.path is not None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # backslashreplace: a statement whose bytes are not UTF-8 must still be recorded.
            self._stream = self.path.open("a", encoding="utf-8", errors="backslashreplace")
            self.healthy = True
        except OSError as exc:
            self._fail(f"cannot open audit log {self.path}: {exc.strerror}")

    def _fail(self, message: str) -> None:
        if self.healthy:
            print(f"maskgate: audit: {message}", file=sys.stderr, flush=True)
        self.healthy = False
        if self._on_failure is not None:
            self._on_failure()

    def submit(self, rec: StatementRecord, revision: str) -> None:
        if self._thread is not None:
            self._queue.append((rec, revision, time.time()))

    def _run(self) -> None:
        q = self._queue
        while True:
            stop = self._closing.wait(self.interval)
            # One batch per tick: everything queued so far, one write and one flush.
            lines = []
            while q:
                rec, revision, ts = q.popleft()
                lines.append(_line(rec, revision, ts))
            if lines:
                self._write("\n".join(lines) + "\n", len(lines))
            if stop and not q:
                return

    def _write(self, text: str, count: int) -> None:
        if self._stream is None or not self.healthy:
            self._open()  # retry: the disk may have come back
        if self._stream is None:
            for _ in range(count):
                self._fail("audit log is not writable")
            return
        try:
            self._stream.write(text)
            self._stream.flush()
            self.written += count
            self.healthy = True
        except (OSError, ValueError) as exc:
            self._stream = None
            for _ in range(count):
                self._fail(f"write failed: {exc}")

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        self._closing.set()
        self._thread.join(timeout)
        self._thread = None
        if self._stream is not None and self.path is not None:
            self._stream.close()
