"""The audit log: JSON lines, written before a statement reaches the database and after it ends.

Owns the record format, literal scrubbing, the writer thread and a fallback fingerprint. The log
must never hold a full customer number: every SQL text passes through the value detectors before
it is written, and no row value is ever recorded.

A statement the proxy forwards gets two records with one id: `start`, submitted before the
statement is forwarded (who, the decision, the statement without its comments, its tables and
classes), and `end` (outcome, rows, duration, error, cancelled). A refused statement gets one,
`refused`.

Records are rendered when they are submitted, on the caller's thread, from pieces rendered once:
who (per session), the decision part (fingerprint, kind, tables, classes, revision: per decision
shape), the statement part (scrubbed SQL, length, keyed hash: per text) and the second of the
timestamp; only the id, the milliseconds and an `end`'s counts are rendered per record, by hand,
byte for byte what `json.dumps(to_json(...))` gives (`to_json` stays the reference, and
tests/proxy/services/test_audit.py holds the two equal).

With `audit_required` a `start` record is written before the statement is forwarded
(`write_now`), together with every record queued since the last write: one write(2), O_APPEND,
so several worker processes can share the file; a failed write refuses the statement. A batch
timer (`interval`) then fdatasyncs what was written (`durable`). Durability: once `write_now`
returned, its record survives a crash of the process (it is in the kernel's page cache); a power
loss or kernel crash can lose what was written in the last `interval` (50 ms) before it, though
those statements were forwarded. Without `audit_required` records are queued (an append to a
deque, no lock, no wake-up) and the writer thread writes each tick's batch with one write(2): a
process crash can lose up to `interval` of records, a failed write does not stop statements.

Scrubbing is cached per SQL text, since clients repeat their statements (not per shape: the
detectors read digits across a literal's edges and context words around it, so a shape's
scrubbed text cannot be assembled from its literals' without reading the whole text again).
Fingerprints and policy revisions come with the decisions, and the statement text without
comments from the function the process gives (policies/sql/text), so this module reads no SQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import masking
from policies.decision import Block, Decision

from .disclosure import found_in
from .gate import StatementRecord

# Every class: an auditor reading the log is not entitled to any customer identifier.
_detect_scrub = masking.make_text_masker(None, "mask")
# A run of digits a number could be written in backwards (reverse('87654321831') searches for
# 13812345678): masked too, whatever the detectors read forwards.
_BACKWARDS = re.compile(r"(?<![0-9])[0-9Xx][0-9]{10,18}(?![0-9])")


def _scrub(text: str) -> str:
    out = _detect_scrub(text)
    if not _BACKWARDS.search(out):
        return out

    def backwards(m: re.Match[str]) -> str:
        run = m.group()
        # Mobiles and ID cards only: their checks make a reversed hit rare (a long id or
        # timestamp read backwards passes a card's Luhn digit one time in ten).
        if any(c in ("mobile", "id_card") for c, _v in found_in(run[::-1], deep=False)):
            return run[:2] + "*" * (len(run) - 4) + run[-2:]
        return run

    return _BACKWARDS.sub(backwards, out)


# The `sql` of a record holds at most this many characters of the statement without comments;
# `sql_length` and `sql_hash` describe the whole statement as received.
SQL_LIMIT = 4096
# Longer than any number the detectors know, with its separators and context word.
_CUT_MARGIN = 256

# (sql, dialect) -> the statement without comments (injected: this module reads no SQL).
StatementText = Callable[[str, str], str]

# What json.dumps(..., ensure_ascii=False) writes for a str (the same C function).
_enc: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


_INF = float("inf")


def _val(v: object) -> str:
    """One JSON value as json.dumps writes it, for the per-record fields."""
    if type(v) is str:
        return _enc(v)
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if type(v) is int:
        return int.__repr__(v)
    if type(v) is float and -_INF < v < _INF:  # json writes NaN and Infinity its own way
        return float.__repr__(v)
    return json.dumps(v, ensure_ascii=False)


def _inner(d: dict[str, Any]) -> str:
    """The members of a JSON object without its braces: pieces rendered once, by json itself."""
    return json.dumps(d, ensure_ascii=False)[1:-1]


def _utf8(text: str) -> bytes:
    """Bytes to hash: undecodable client bytes (surrogate escapes) as they came; any other lone
    surrogate, which no wire decoding makes, encoded all the same rather than failing the record."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def fingerprint(sql: str) -> str:
    """An id for the text of a record no engine decided (a fast-path call, an unknown portal):
    case and spacing folded. Decisions carry their own fingerprint, read in their dialect with
    every literal taken out, so this module needs no SQL knowledge."""
    shape = " ".join(sql.split()).lower()
    # SQL sent in another client encoding arrives with undecodable bytes as surrogates.
    return hashlib.sha256(_utf8(shape)).hexdigest()[:16]


def scrub_sql(sql: str, limit: int = SQL_LIMIT) -> str:
    """The SQL text with every detected identifier masked, cut to `limit` characters.

    Scrubbed before it is cut, over a margin past the cut: a number the cut would split is no
    longer a number the detectors know (17 digits of an ID, a card without its Luhn digit), yet
    its missing digit is computable from the rest."""
    if len(sql) <= limit:
        return _scrub(sql)
    return _scrub(sql[: limit + _CUT_MARGIN])[:limit] + "…"


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
        # HMAC-SHA256 (RFC 2104) from its two padded-key states, copied per text: hmac.digest
        # looks the digest up in OpenSSL on every call, which cost twice the hashing itself.
        block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self._cache: dict[tuple[str, str], tuple[str, int, str]] = {}
        self._fragments: dict[tuple[str, str], str] = {}

    def get(self, sql: str, dialect: str) -> tuple[str, int, str]:
        k = (sql, dialect)
        hit = self._cache.get(k)
        if hit is None:
            text = self.statement_text(sql, dialect) if self.statement_text and dialect else sql
            raw = _utf8(sql)
            # Keyed (masking_key): a plain hash of a statement with a phone number in it could be
            # reversed by trying every number.
            digest = self.keyed_hash(raw)
            hit = (scrub_sql(text), len(sql), digest)
            if len(self._cache) >= self.MAX:
                self._cache.clear()
            self._cache[k] = hit
        return hit

    def keyed_hash(self, raw: bytes) -> str:
        """hmac.new(key, raw, sha256).hexdigest()[:32]."""
        inner = self._inner.copy()
        inner.update(raw)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[:32]

    def fragment(self, sql: str, dialect: str) -> str:
        """The record's `"sql": …, "sql_length": …, "sql_hash": …` members, rendered once per text."""
        k = (sql, dialect)
        hit = self._fragments.get(k)
        if hit is None:
            text, length, digest = self.get(sql, dialect)
            # By hand (json.dumps of the three costs as much as the keyed hash): every text is new.
            hit = f'"sql": {_enc(text)}, "sql_length": {_val(length)}, "sql_hash": {_enc(digest)}'
            if len(self._fragments) >= self.MAX:
                self._fragments.clear()
            self._fragments[k] = hit
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
        "computed": list(computed_classes(d)),
        # The revision that made the decision, which a reload may have replaced since.
        "policy_revision": d.revision or revision,
    }


# Statements that put what they read somewhere the analysis of later statements cannot follow:
# a table, view, function, variable, setting, prepared statement or cursor.
_MOVING_KINDS = frozenset(
    {"insert", "update", "merge", "ddl", "session", "prepare", "do", "call", "cursor", "copy"}
)


def computed_classes(d: Decision) -> tuple[str, ...]:
    """The classes a statement returns in clear in a computed form (reverse(phone), phone::bigint
    + 1, substr pieces), or moves where later statements' lineage cannot follow them (CREATE
    TEMP TABLE … AS SELECT phone, SET @v = …, a cursor): values the disclosure ledger can match
    only when they still read as a number, so `maskgate trace` lists such statements beside
    what the ledger matched."""
    if isinstance(d, Block):
        return ()
    found: set[str] = set()
    for part in d.parts():
        for cm in part.columns:
            if cm.cls and cm.action == "clear" and (cm.derived or len(cm.sources) > 1):
                # One class names a value computed from many columns (to_jsonb(c), row(c.*)):
                # any class the statement reads may be in it.
                found.update(part.classes if len(cm.sources) > 1 else (cm.cls,))
        # Conditions that compute over a class (substr(phone, p, 1) = d joined with a series)
        # infer its values without returning them.
        found.update(part.probed)
        if part.kind in _MOVING_KINDS or (part.kind == "select" and not part.columns):
            # (A select without result columns that reads classes put them somewhere: INTO @v.)
            found.update(part.classes)
        if (
            part.kind in _OPAQUE_KINDS
            or (part.kind == "prepare" and part.prepared is None)  # PREPARE s FROM @v: unseen SQL
            # DDL on no table: a function or procedure, whose body the analysis does not read.
            or (part.kind == "ddl" and not part.tables)
        ):
            # What it reads and returns is not known (a statement only an unrestricted role may
            # send unanalysed, a procedural block): any class.
            found.add(ANY_CLASS)
    return tuple(sorted(found))


ANY_CLASS = "*"  # `computed` of a statement whose result's lineage is unknown
_OPAQUE_KINDS = frozenset({"unparsed", "do", "call"})


_WHO_KEYS = ("session", "user", "role", "client", "protocol", "database")


class _Lines:
    """Renders records as JSON lines, byte for byte `json.dumps(to_json(...), ensure_ascii=False)`,
    from pieces cached per session, per decision shape, per text and per second (see the module
    note). The caches are bounded: each is cleared when full."""

    MAX = 4096

    def __init__(self, texts: _Texts) -> None:
        self.texts = texts
        self._who: dict[tuple[object, ...], str] = {}
        self._decisions: dict[tuple[object, ...], str] = {}
        # An end record's outcome, error and cancelled members, which nearly every statement
        # shares ("ok", null, false): one lookup instead of rendering three values.
        self._ends: dict[tuple[object, ...], str] = {}
        # (second, its date and time of day): one attribute, so a reader never pairs a second with
        # another one's text.
        self._second: tuple[int, str] = (-1, "")

    def ts(self, ts: float | None) -> str:
        """`datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")`, with the date and
        time of day rendered once per second: the same rounding (to the microsecond, half to even,
        as datetime does) and truncation to milliseconds."""
        if ts is None:
            ts = time.time()
        if not 0 <= ts < 2**53:
            return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")
        sec = int(ts)
        us = round((ts - sec) * 1e6)
        if us >= 1_000_000:
            sec += 1
            us -= 1_000_000
        second = self._second
        if second[0] != sec:
            second = self._second = (sec, dt.datetime.fromtimestamp(sec, dt.UTC).isoformat()[:19])
        return f"{second[1]}.{us // 1000:03d}+00:00"

    def who(self, rec: StatementRecord) -> str:
        k = (rec.session, rec.user, rec.role, rec.client, rec.protocol, rec.database)
        hit = self._who.get(k)
        if hit is None:
            hit = _inner(dict(zip(_WHO_KEYS, k, strict=True)))
            if len(self._who) >= self.MAX:
                self._who.clear()
            self._who[k] = hit
        return hit

    def decision(self, rec: StatementRecord, revision: str) -> str:
        d = rec.decision
        blocked = isinstance(d, Block)
        k = (
            blocked,
            d.fingerprint or fingerprint(rec.sql),
            d.reason if isinstance(d, Block) else None,
            d.kind,
            d.tables,
            d.classes,
            d.revision or revision,
            computed_classes(d),
        )
        hit = self._decisions.get(k)
        if hit is None:
            hit = _inner(
                {
                    "fingerprint": k[1],
                    "decision": "block" if blocked else "allow",
                    "reason": k[2],
                    "kind": k[3],
                    "tables": list(k[4]),
                    "classes": list(k[5]),
                    "computed": list(k[7]),
                    "policy_revision": k[6],
                }
            )
            if len(self._decisions) >= self.MAX:
                self._decisions.clear()
            self._decisions[k] = hit
        return hit

    def line(self, rec: StatementRecord, revision: str, ts: float | None) -> str:
        event = rec.event or ("refused" if isinstance(rec.decision, Block) else "end")
        head = f'{{"ts": "{self.ts(ts)}", "event": {_enc(event)}, "id": {_val(rec.id)}, {self.who(rec)}'
        if event == "end":
            outcome = rec.outcome or ("error" if rec.error else "ok")
            error, cancelled = rec.error, rec.cancelled
            # Only exact types are keys: True == 1 == 1.0 must not share a rendering.
            if type(cancelled) is bool and type(outcome) is str and (error is None or type(error) is str):
                k = (outcome, error, cancelled)
                status = self._ends.get(k)
                if status is None:
                    status = (
                        f'"outcome": {_val(outcome)}, "error": {_val(error)}, "cancelled": {_val(cancelled)}'
                    )
                    if len(self._ends) >= self.MAX:
                        self._ends.clear()
                    self._ends[k] = status
            else:
                status = f'"outcome": {_val(outcome)}, "error": {_val(error)}, "cancelled": {_val(cancelled)}'
            t = rec.truncated
            truncated = "true" if t is True else "false" if t is False else _val(t)
            return (
                f'{head}, {status}, "rows": {_val(rec.rows)}, "masked": {_val(rec.masked)}, '
                f'"truncated": {truncated}, '
                f'"duration_ms": {_val(round(rec.duration_s * 1000, 3))}}}'
            )
        return f"{head}, {self.texts.fragment(rec.sql, rec.dialect)}, {self.decision(rec, revision)}}}"


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
        durable: bool = False,
        shared: bool = False,
    ) -> None:
        self.path = path
        # Other processes (workers) append to the same file: a failed write must never cut the
        # file back, which could take their records with it.
        self.shared = shared
        self.interval = interval
        self._on_failure = on_failure
        # Without a configured key, a key of this process alone: the development key is public,
        # and a statement's keyed hash under it gives back a masked number in 10^4 guesses. The
        # hashes then compare only within one process's records (set masking_key for more).
        self._texts = _Texts(key or os.urandom(32), statement_text)
        self._lines = _Lines(self._texts)
        # Rendered lines waiting for a write. deque.append/popleft are atomic under the GIL: no
        # lock and no wake-up per record.
        self._queue: deque[str] = deque()
        # fdatasync each tick whatever was written since the last one (audit_required's choice).
        self.durable = durable
        self._unsynced = False
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
            self._queue.append(self._line(rec, revision, time.time()))

    def submit_event(self, event: str, statement_id: str, user: str, role: str, **extra: Any) -> None:
        """A record that is not a statement's (e.g. `canary`): who, when, which statement, and
        `extra` fields the caller vouches hold no values. Safe from any thread."""
        if self._thread is not None:
            ts = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
            rec = {"ts": ts, "event": event, "id": statement_id, "user": user, "role": role, **extra}
            self._queue.append(json.dumps(rec, ensure_ascii=False, default=str))

    def write_now(self, rec: StatementRecord, revision: str) -> bool:
        """Write one record now, on the caller's thread, and hand it to the operating system
        before returning (fsync follows within `interval` when `durable`). Records queued before
        it go in the same write(2), ahead of it. False when it could not be written (it is then
        lost; the queued ones stay queued for the writer thread)."""
        if self._thread is None:
            return False
        line = self._line(rec, revision, time.time())
        q = self._queue
        with self._lock:
            batch = []
            while q:
                batch.append(q.popleft())
            batch.append(line)
            if self._write("\n".join(batch) + "\n", 1):
                self.written += len(batch) - 1
                return True
            # Cut back whole (see _write): the queued records were not written either.
            q.extendleft(reversed(batch[:-1]))
            return False

    def _line(self, rec: StatementRecord, revision: str, ts: float) -> str:
        """One record as JSON. A record that cannot be rendered is still written, without its
        SQL: one odd statement must never cost the batch (or an attacker, his trace)."""
        try:
            try:
                return self._lines.line(rec, revision, ts)
            except Exception:  # e.g. an unhashable field: the reference renders it uncached
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
                lines.append(q.popleft())
            if lines:
                with self._lock:
                    self._write("\n".join(lines) + "\n", len(lines))
            if self.durable and self._unsynced:
                self._sync()
            if stop and not q:
                return

    def _sync(self) -> None:
        """fdatasync what was written (outside the lock: a write_now must not wait for the disk)."""
        self._unsynced = False
        fd = self._fd
        if fd is None:
            return
        try:
            os.fdatasync(fd)
        except OSError as exc:  # closed by a reopen meanwhile, or the disk failed
            if exc.errno != errno.EBADF:
                print(f"maskgate: audit: fdatasync failed: {exc.strerror or exc}", file=sys.stderr)

    def _write(self, text: str, count: int) -> bool:
        """Write whole lines (the caller holds the lock). A write that fails part-way is cut
        back, so the file never holds half a record that the next write would run into; in a
        file shared with other workers it is ended with a newline instead (see `shared`)."""
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
        written = 0
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
                n = os.write(fd, data)
                written += n
                data = data[n:]
        except OSError as exc:
            if self.shared:
                # Records of other workers may follow ours: end our half line instead, so the
                # next record starts on a line of its own and readers skip only the broken one.
                if written:
                    with contextlib.suppress(OSError):
                        os.write(fd, b"\n")
            elif size >= 0:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
            for _ in range(count):
                self._fail(f"write failed: {exc.strerror or exc}")
            return False
        self.written += count
        self.healthy = True
        self._unsynced = True
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
