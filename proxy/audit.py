"""The audit log: one JSON object a line per statement (shared/DESIGN.md §7), written off the event loop.

Owns the record format, SQL fingerprinting, literal scrubbing and the writer thread. The log must
never hold a full customer number: every SQL text passes through the value detectors before it is
written, and no row value is ever recorded. Sessions hand records over through a queue; a slow or
broken disk never stalls a client, and a failure is reported (stderr, metric, `healthy`) so that
`audit_required: true` can refuse statements rather than run them unrecorded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from sqlglot.errors import TokenError
from sqlglot.tokens import Tokenizer, TokenType

import masking
from policies.decision import Block

from .gate import StatementRecord

_LITERALS = {TokenType.STRING, TokenType.NUMBER, TokenType.NATIONAL_STRING, TokenType.HEX_STRING}
_tokenizer = Tokenizer()
# Every class: an auditor reading the log is not entitled to any customer identifier.
_scrub = masking.make_text_masker(None, "mask")


def fingerprint(sql: str) -> str:
    """A stable id for the statement's shape: literals replaced by `?`, case and spacing folded.

    Two runs of the same query with different customer numbers get the same fingerprint, so a
    DBA can count who ran what without the log holding the numbers.
    """
    try:
        tokens = _tokenizer.tokenize(sql)
    except TokenError:
        shape = " ".join(sql.split()).lower()
    else:
        shape = " ".join("?" if t.token_type in _LITERALS else t.text.lower() for t in tokens)
    return hashlib.sha256(shape.encode()).hexdigest()[:16]


def scrub_sql(sql: str, limit: int = 4096) -> str:
    """The SQL text with every detected identifier masked, cut to `limit` characters."""
    if len(sql) > limit:
        sql = sql[:limit] + "…"
    return _scrub(sql)


def to_json(rec: StatementRecord, revision: str) -> dict[str, Any]:
    d = rec.decision
    blocked = isinstance(d, Block)
    return {
        "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "session": rec.session,
        "user": rec.user,
        "role": rec.role,
        "client": rec.client,
        "protocol": rec.protocol,
        "database": rec.database,
        "sql": scrub_sql(rec.sql),
        "fingerprint": fingerprint(rec.sql),
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
        "policy_revision": revision,
    }


class AuditLog:
    """Queue + writer thread. `submit` never blocks; `close` drains what is queued."""

    def __init__(
        self,
        path: Path | None,
        *,
        on_failure: Callable[[], None] | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.path = path
        self._on_failure = on_failure
        self._queue: queue.SimpleQueue[tuple[StatementRecord, str] | None] = queue.SimpleQueue()
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
            self._stream = self.path.open("a", encoding="utf-8")
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
            self._queue.put((rec, revision))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            # Drain what is already queued so one flush covers a burst of statements.
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = False
            lines = []
            for entry in batch:
                if entry is None:
                    stop = True
                    continue
                lines.append(json.dumps(to_json(*entry), ensure_ascii=False))
            if lines:
                self._write("\n".join(lines) + "\n", len(lines))
            if stop:
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
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None
        if self._stream is not None and self.path is not None:
            self._stream.close()
