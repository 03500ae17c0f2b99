"""Who received which value: the keyed hash of a disclosed value, what a result column discloses,
and the thread that hands disclosures to their keepers (ledger, canaries).

Owns `value_key` (the one keyed hash every observer and `maskgate trace` share), `fold`, the
choice of which result columns are observed (`observed`), the per-column observing step row
plans splice in (`observing_fn`) and `Disclosures`, the observer that moves batches off the event
loop. Must not import a protocol package, store anything or log a value: the values it sees leave
it only as HMACs.
"""

from __future__ import annotations

import hashlib
import hmac
import queue
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from masking.classes import FREE_TEXT
from masking.native import load
from policies.decision import ColumnMask
from policies.names import ColumnName, TableName, column_matches, split_pattern

from .gate import Disclosed, Principal

CUSTOMER_KEY = "customer_key"  # the class the customer key column's values are disclosed under

# Separators people and systems put inside numbers (138-1234-5678, 6222 0000 …): not part of
# the value. Dashes of every script are folded to "-" by NFKC plus this table.
_DROP = frozenset(" \t\r\n-‐‑‒–—―−－ー()（）+")
_DROP_TABLE = {ord(c): None for c in _DROP}


def fold(value: str) -> str:
    """The normal form a value is hashed in, so that one number written two ways is one value:
    full-width and other scripts' digits become ASCII, separators go, letters are upper-case (the
    X of an ID card), and a mobile number's country code +86 is dropped.

    The class does not take part: a number found by a detector in free text and the same number
    in a phone column must hash alike, or `maskgate trace` would have to guess where it was seen.
    """
    if value.isdigit() and value.isascii():
        # The common case (a number column): nothing to fold but a country code.
        if len(value) == 13 and value.startswith("861"):
            return value[2:]
        return value
    if value.isascii():
        s = value
    else:
        s = "".join(str(unicodedata.digit(c)) if unicodedata.digit(c, None) is not None else c for c in value)
        s = unicodedata.normalize("NFKC", s)
    s = s.translate(_DROP_TABLE).upper()
    if len(s) == 13 and s.startswith("86") and s.isdigit() and s[2] == "1":
        s = s[2:]  # 86 13812345678: the same mobile as 13812345678
    return s


def value_key(masking_key: bytes, cls: str, value: str) -> bytes:
    """HMAC-SHA256 under the config's masking key of the folded value: the same on every replica
    that shares the key, and useless to anyone without it. `cls` is accepted for the callers'
    clarity and future classes with their own fold; today every class folds alike (see fold)."""
    del cls
    return hmac.new(masking_key, fold(value).encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def keyer(masking_key: bytes) -> Callable[[str], bytes]:
    """`value_key` under one key, for many values: HMAC (RFC 2104) from its two padded-key
    states, copied per value (hmac.new looks the digest up and pads the key on every call,
    which costs several times the hashing)."""
    block = (hashlib.sha256(masking_key).digest() if len(masking_key) > 64 else masking_key).ljust(64, b"\0")
    inner0 = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer0 = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def key(value: str) -> bytes:
        inner = inner0.copy()
        inner.update(fold(value).encode("utf-8", "surrogatepass"))
        outer = outer0.copy()
        outer.update(inner.digest())
        return outer.digest()

    return key


def _source_name(source: str, database: str, default_schema: str | None) -> ColumnName | None:
    parts = source.split(".")
    if len(parts) < 3:
        return None
    return ColumnName(TableName(database or None, ".".join(parts[:-2]), parts[-2]), parts[-1])


def observed(
    cm: ColumnMask | None, customer_key: str | None, database: str, default_schema: str | None
) -> tuple[str, str] | None:
    """(class, source column) of the values a result column discloses, or None when it discloses
    none: an unclassified column that is not the customer key, or one computed from its source
    (`length(phone)` tells nothing a trace could match), or a free-text note."""
    if cm is None or cm.derived or len(cm.sources) > 1:
        return None
    source = cm.sources[0] if cm.sources else ""
    if cm.cls == FREE_TEXT:
        # A note is no value a trace could be asked about; the numbers inside it would be
        # (detector findings), which the row paths do not report yet.
        return None
    if cm.cls:
        return cm.cls, source
    if customer_key and source:
        name = _source_name(source, database, default_schema)
        if name is not None and column_matches(split_pattern(customer_key), name, default_schema):
            return CUSTOMER_KEY, source
    return None


# How an observing step reads a wire value as text: the decoded text, or an integer's digits.
Reader = Callable[[bytes], str]


_TEXT_READERS: dict[str, Reader] = {}


def text_reader(enc: str) -> Reader:
    """Values in their text form (one reader per encoding: `keyed` recognises them, since ASCII
    digits are the same bytes in every client encoding PostgreSQL and MySQL speak)."""
    read = _TEXT_READERS.get(enc)
    if read is None:
        read = _TEXT_READERS[enc] = lambda raw: raw.decode(enc, "surrogateescape")
    return read


def int_reader(byteorder: str) -> Reader:
    """Binary integers: big-endian on PostgreSQL's wire, little-endian on MySQL's."""
    return lambda raw: str(int.from_bytes(raw, byteorder, signed=True))  # type: ignore[arg-type]


def observing_fn(
    fn: Callable[[bytes], bytes | None] | None,
    cls: str,
    column: str,
    read: Reader,
    sink: list[Disclosed],
) -> Callable[[bytes], bytes | None]:
    """`fn` (None: pass the value) that also notes each value in `sink`, with whether it reached
    the client unchanged (in clear). The row path drains `sink` once per run of rows."""
    append = sink.append

    def observe(raw: bytes) -> bytes | None:
        out = raw if fn is None else fn(raw)
        append(Disclosed(cls, column, read(raw), out is raw or out == raw))
        return out

    return observe


class Noted(Sequence[Disclosed]):
    """The Disclosed values of one batch, built when read: the row path hands over the values
    as they came, with the columns they belong to, so that decoding them and building records
    happens on the thread of whoever reads them (Disclosures: its own), not on the event loop."""

    __slots__ = ("_columns", "_raw")

    def __init__(
        self, columns: Mapping[int, tuple[str, str, bool, Reader]], raw: list[tuple[int, bytes]]
    ) -> None:
        self._columns = columns
        self._raw = raw

    def __len__(self) -> int:
        return len(self._raw)

    def _one(self, item: tuple[int, bytes]) -> Disclosed:
        cls, column, clear, read = self._columns[item[0]]
        return Disclosed(cls, column, read(item[1]), clear)

    @overload
    def __getitem__(self, i: int) -> Disclosed: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Disclosed]: ...
    def __getitem__(self, i: int | slice) -> Disclosed | Sequence[Disclosed]:
        if isinstance(i, slice):
            return [self._one(x) for x in self._raw[i]]
        return self._one(self._raw[i])

    def __iter__(self) -> Iterator[Disclosed]:
        one = self._one
        return (one(x) for x in self._raw)

    def keyed(
        self, key: Callable[[bytes, Reader], bytes], bulk: Callable[[list[bytes]], list[bytes | None]] | None
    ) -> tuple[tuple[str, bytes, bool], ...]:
        """(class, key, clear) of every value, without building Disclosed records. `bulk` keys
        the values of text columns that are plain ASCII digits in one native call (None for the
        others, and for every value of a binary column), `key` the rest."""
        cols = self._columns
        raws = self._raw
        fast: list[bytes | None] | None = None
        if bulk is not None:
            text = {i for i, c in cols.items() if c[3] in _TEXT_READERS.values()}
            fast = bulk([raw if i in text else b"" for i, raw in raws])
        out = []
        for n, (i, raw) in enumerate(raws):
            cls, _column, clear, read = cols[i]
            k = fast[n] if fast is not None else None
            out.append((cls, key(raw, read) if k is None else k, clear))
        return tuple(out)


# ------------------------------------------------------------------ off the event loop


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch of disclosures with their keys: what the keepers get, on the worker thread."""

    user: str
    role: str
    statement_id: str
    ts: float  # when it was disclosed (time.time())
    keys: tuple[tuple[str, bytes, bool], ...]  # (class, value key, clear)


Keeper = Callable[[Batch], None]
KEY_CACHE = 65536  # values whose keys the disclosure thread remembers


class Disclosures:
    """The Gate's observer for keepers that need value keys: batches are queued as they come
    (on the event loop, no hashing there), keyed and handed to every keeper on one thread.

    A full queue drops the batch and counts it (`dropped`): the proxy must not stall on its own
    bookkeeping, and the drop is visible in the log and the metric.
    """

    def __init__(
        self,
        masking_key: bytes,
        keepers: Sequence[Keeper],
        *,
        max_batches: int = 10000,
        on_drop: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.masking_key = masking_key
        self.keepers = list(keepers)
        self.dropped = 0
        self._on_drop = on_drop
        self._clock = clock
        self._q: queue.Queue[Any] = queue.Queue(max_batches)
        self._thread = threading.Thread(target=self._run, name="maskgate-disclosures", daemon=True)
        self._thread.start()

    def __call__(self, principal: Principal, statement_id: str, values: Sequence[Disclosed]) -> None:
        try:
            # Not copied: a caller hands its batch over (the row paths build a new one each time).
            self._q.put_nowait((principal.user, principal.role, statement_id, self._clock(), values))
        except queue.Full:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop(len(values))

    def _run(self) -> None:
        hmac_of = keyer(self.masking_key)
        # People read the same customers again and again: a value keyed once is not keyed again
        # (bounded: cleared when full). Only this thread touches it.
        cache: dict[str, bytes] = {}

        def key(value: str) -> bytes:
            k = cache.get(value)
            if k is None:
                if len(cache) >= KEY_CACHE:
                    cache.clear()
                k = cache[value] = hmac_of(value)
            return k

        native = load("proxy.services._bloom")
        masking_key = self.masking_key
        bulk = None if native is None else lambda values: native.keys(masking_key, values)  # type: ignore[no-any-return]

        # Values as they came off the wire, keyed by their bytes and reader: a hit skips decoding.
        raw_cache: dict[tuple[bytes, Reader], bytes] = {}

        def raw_key(raw: bytes, read: Reader) -> bytes:
            k = raw_cache.get((raw, read))
            if k is None:
                if len(raw_cache) >= KEY_CACHE:
                    raw_cache.clear()
                k = raw_cache[(raw, read)] = key(read(raw))
            return k

        while True:
            item = self._q.get()
            if item is None:
                self._q.task_done()
                return
            user, role, sid, ts, values = item
            try:
                if isinstance(values, Noted):
                    batch = Batch(user, role, sid, ts, values.keyed(raw_key, bulk))
                else:
                    batch = Batch(user, role, sid, ts, tuple((d.cls, key(d.value), d.clear) for d in values))
                for keeper in self.keepers:
                    keeper(batch)
            except Exception as exc:  # a keeper's bug must not end the thread: later batches still count
                print(f"maskgate: disclosure keeper failed: {exc!r}", file=sys.stderr)
            finally:
                self._q.task_done()

    def drain(self) -> None:
        """Wait until every batch queued so far went to the keepers (tests, shutdown)."""
        self._q.join()

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=10)
