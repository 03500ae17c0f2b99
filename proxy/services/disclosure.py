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
import re
import struct
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from masking.classes import FREE_TEXT
from masking.detectors import text_finder
from masking.encoded import maybe_encoded, unhide, unhide_blobs, unhide_joined
from masking.native import load
from masking.normalize import to_original
from policies.decision import ColumnMask
from policies.names import ColumnName, TableName, column_matches, split_pattern

from .gate import Disclosed, Principal

CUSTOMER_KEY = "customer_key"  # the class the customer key column's values are disclosed under
# The class of a canary table's key column when it is not the policy's customer key: noted for
# the canaries alone (a canary is a planted customer, and reading its row without its numbers
# still discloses it). Budgets do not count these values and the ledger does not keep them.
ROW_KEY = "row_key"
KEY_CLASSES = frozenset({CUSTOMER_KEY, ROW_KEY})
# The class of a value noted for what it holds, not for where it came from: a computed column
# (phone || '', a cast, string_agg, row_to_json), free text, a column of a temp table, view or
# function, a body of an HTTP answer. The detectors name the numbers inside it (`found_in`) on
# the disclosure thread. Lineage cannot follow every way SQL moves a value; the content can be
# read whatever way it took.
SCAN = "*"
# The classes a trace is asked about: numbers a scam caller or fraudster uses.
SCAN_CLASSES = frozenset({"mobile", "id_card", "bank_card", "landline"})
_SHORTEST = 7  # a landline's subscriber number: no shorter value holds one
# Runs of digits (and the separators and ID check character numbers are written with), read
# backwards too: reverse(phone), or a reversed note, gives the number to anyone who reads it so.
_DIGIT_RUN = re.compile(r"[0-9Xx][0-9 \t()\-]{5,}[0-9Xx]")
_find = text_finder(SCAN_CLASSES)
_find_strict = text_finder(frozenset({"mobile", "id_card"}))
_JOINED_GATE = re.compile(r"[0-9](?:[._/]|\r?\n)[0-9]|[0-9] [0-9] [0-9]")
_LONG_DIGITS = re.compile(r"(?<![0-9])[0-9]{12,14}(?![0-9])")
_DIGITS_ALONE_UPTO = 64
_ANY_DIGIT = re.compile(r"\d")  # a decimal digit of any script
_NOT_DIGIT = re.compile(r"[^\dXx]")
_CJK_NUMERAL = re.compile("[〇零一壹二贰两三叁四肆五伍六陆七柒八捌九玖]")
_NUMERALS = str.maketrans("〇零一壹二贰两三叁四肆五伍六陆七柒八捌九玖", "001122233445566778899")
# A token masking/encoded.py may decode into digits: base64 or hex of 7 digits or more.
_BLOB = re.compile(r"[A-Za-z0-9+/=_-]{12,}")

# Separators people and systems put inside numbers (138-1234-5678, 6222 0000 …): not part of
# the value. Dashes of every script are folded to "-" by NFKC plus this table.
_DROP = frozenset(" \t\r\n-‐‑‒–—―−－ー()（）+") | frozenset(
    # Invisible marks a phone's UI puts round a number it copies (bidi, zero-width).
    "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2066\u2067\u2068\u2069\ufeff"
)
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
        return _national(value)
    if value.isascii():
        s = value
    else:
        s = "".join(str(unicodedata.digit(c)) if unicodedata.digit(c, None) is not None else c for c in value)
        s = unicodedata.normalize("NFKC", s)
    s = s.translate(_DROP_TABLE).upper()
    # A number as people paste it: a tel: link, groups joined by dots.
    t = s.removeprefix("TEL:").replace(".", "")
    if t.isdigit():
        return _national(t)
    if t[:-1].isdigit() and t.endswith("X") and len(t) in (15, 18):
        return t  # an ID card
    return s


def _national(digits: str) -> str:
    """A mobile without its country code and trunk prefix: 86 13812345678, 0086 13812345678
    (the international prefix a caller ID shows), 013812345678 (a mobile of another city as a
    landline shows it) and +86 (0) 138… are 13812345678. proxy/services/_bloom.c `keys` folds
    ASCII digits alike."""
    n = len(digits)
    if (n == 13 and digits.startswith("861")) or (n == 14 and digits.startswith("8601")):
        digits = digits[2:]
    elif (n == 15 and digits.startswith("00861")) or (n == 16 and digits.startswith("008601")):
        digits = digits[4:]
    if len(digits) == 12 and digits.startswith("01") and digits[2] in "3456789":
        digits = digits[1:]
    return digits


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


def found_in(text: str, deep: bool = True) -> list[tuple[str, str]]:
    """(class, value) of each number of SCAN_CLASSES the detectors find in `text`, a value a
    person received, read as its reader can read it:

    - as written, and through character references, escapes, markup, base64 and hex tokens and
      digit groups joined by `.`, `_` or `/` (masking/encoded.py);
    - its runs of digits backwards (reverse(phone));
    - a short value by its digits alone, other scripts' numerals included (`{1,3,8,…}`,
      `138.1234.5678`, 一三八…), and a run of 12 to 14 digits by each 11 in it (`phone || '0'`),
      for the classes whose checks make a chance hit rare (mobiles, ID cards).

    The findings are the numbers read forwards, each once. `deep` False reads the text as
    written only: what a masked value's masker read (its reader gets the rest masked)."""
    if len(text) < _SHORTEST:
        return []
    if not deep:
        found, offsets = _find(text)
        return [(cls, text[slice(*to_original(offsets, a, b))]) for a, b, cls, _conf in found]
    digit = _ANY_DIGIT.search(text) is not None
    numerals = not text.isascii() and _CJK_NUMERAL.search(text) is not None
    blob = _BLOB.search(text) is not None
    encoded = maybe_encoded(text)
    if not (digit or numerals or blob or encoded):
        return []  # nothing a number could be written in
    out: list[tuple[str, str]] = []

    def record(piece: str) -> str:
        found, offsets = _find(piece)
        for start, end, cls, _conf in found:
            s, e = to_original(offsets, start, end)
            out.append((cls, piece[s:e]))
        return piece

    forward: set[str] = set()
    if digit:
        record(text)
        forward = {v for _c, v in out}
        if _JOINED_GATE.search(text):
            unhide_joined(text, record)
        for run in _DIGIT_RUN.findall(text):
            if run.strip() not in forward:  # a number read forwards is no other one backwards
                _strict_in(run[::-1], out)
        for run in _LONG_DIGITS.findall(text):
            for i in range(len(run) - 10):
                _strict_in(run[i : i + 11], out)
    if encoded:
        unhide(text, record)
    if blob:
        unhide_blobs(text, record)
    # A short value's digits alone hold at most 18 digits: no second number beside one read
    # forwards already.
    if (digit or numerals) and len(text) <= _DIGITS_ALONE_UPTO and not forward:
        digits = _NOT_DIGIT.sub("", text.translate(_NUMERALS) if numerals else text)
        if not digits.isascii():
            digits = "".join(_digit(c) for c in digits)
        if 11 <= len(digits) <= 18:
            _strict_in(digits, out)
    return _once(out)


def _once(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each number once (the first spelling of it): passes find one number in several forms."""
    if len(found) < 2:
        return found
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for cls, v in found:
        seen.setdefault((cls, fold(v)), (cls, v))
    return list(seen.values())


def _digit(c: str) -> str:
    """A decimal digit of any script as its ASCII digit, an ID card's X as X, else nothing."""
    if c.isdecimal():
        return str(unicodedata.decimal(c))
    return "X" if c in "Xx" else ""


def _strict_in(text: str, out: list[tuple[str, str]]) -> None:
    found, offsets = _find_strict(text)
    for start, end, cls, _conf in found:
        s, e = to_original(offsets, start, end)
        out.append((cls, text[s:e]))


def may_hold_number(text: str) -> bool:
    """Whether `text` may hold a number found_in finds (cheap: a run of digits, or characters
    other scripts' digits fold from). False means it holds none."""
    return len(text) >= _SHORTEST and (not text.isascii() or _DIGIT_RUN.search(text) is not None)


def expand(cls: str, value: str, clear: bool = True) -> list[tuple[str, str]]:
    """The (class, value) pairs a noted value stands for: itself, or what a SCAN value holds
    (read deeply when it reached its reader in clear)."""
    return found_in(value, clear) if cls == SCAN else [(cls, value)]


def _source_name(source: str, database: str, default_schema: str | None) -> ColumnName | None:
    parts = source.split(".")
    if len(parts) < 3:
        return None
    return ColumnName(TableName(database or None, ".".join(parts[:-2]), parts[-2]), parts[-1])


def observed(
    cm: ColumnMask | None,
    customer_key: str | None,
    database: str,
    default_schema: str | None,
    row_keys: Sequence[str] = (),
) -> tuple[str, str]:
    """(class, source column) of the values a result column discloses: its class when it is a
    classified column passed as it is, CUSTOMER_KEY for the customer key (also through a cast
    or any computation of the key alone: counting one customer too many is the safe side of a
    budget), ROW_KEY for a key column canaries were planted under (`row_keys`, patterns as
    `customer_key`), else SCAN: whatever else it is (computed, free text, unknown lineage), the
    numbers it holds are what it discloses."""
    if cm is None:
        return SCAN, ""
    source = cm.sources[0] if len(cm.sources) == 1 else ""
    if cm.cls and cm.cls != FREE_TEXT and not cm.derived and len(cm.sources) <= 1:
        return cm.cls, source
    if (customer_key or row_keys) and source and not cm.cls:
        name = _source_name(source, database, default_schema)
        if name is not None:
            if customer_key and column_matches(split_pattern(customer_key), name, default_schema):
                return CUSTOMER_KEY, source
            if any(column_matches(split_pattern(k), name, default_schema) for k in row_keys):
                return ROW_KEY, source
    return SCAN, source


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


def float_reader(layout: str) -> Reader:
    """Binary floats (`struct` layout): an integral one as its digits, phone::float8 is a number."""
    unpack = struct.Struct(layout).unpack

    def read(raw: bytes) -> str:
        x = unpack(raw)[0]
        return str(int(x)) if x == x and abs(x) < 1e19 and x == int(x) else repr(x)

    return read


def observing_fn(
    fn: Callable[[bytes], bytes | None] | None,
    cls: str,
    column: str,
    read: Reader,
    sink: list[Disclosed],
    clear: bool | None = None,
) -> Callable[[bytes], bytes | None]:
    """`fn` (None: pass the value) that also notes each value in `sink`, with whether it reached
    the client in clear: `clear`, or (None) whether it reached the client unchanged. The row
    path drains `sink` once per run of rows."""
    append = sink.append

    def observe(raw: bytes) -> bytes | None:
        out = raw if fn is None else fn(raw)
        append(Disclosed(cls, column, read(raw), (out is raw or out == raw) if clear is None else clear))
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
        self,
        key: Callable[[bytes, Reader], bytes],
        bulk: Callable[[list[bytes]], list[bytes | None]] | None,
        scan: Callable[[bytes, Reader, bool], Sequence[tuple[str, bytes]]],
    ) -> tuple[tuple[str, bytes, bool], ...]:
        """(class, key, clear) of every value, without building Disclosed records. `bulk` keys
        the values of text columns that are plain ASCII digits in one native call (None for the
        others, and for every value of a binary column), `key` the rest; `scan` gives the
        (class, key) of each number a SCAN column's value holds."""
        cols = self._columns
        raws = self._raw
        fast: list[bytes | None] | None = None
        if bulk is not None:
            text = {i for i, c in cols.items() if c[3] in _TEXT_READERS.values() and c[0] != SCAN}
            fast = bulk([raw if i in text else b"" for i, raw in raws])
        out = []
        for n, (i, raw) in enumerate(raws):
            cls, _column, clear, read = cols[i]
            if cls == SCAN:
                out += [(c, k, clear) for c, k in scan(raw, read, clear)]
                continue
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

        def zip_keys(pairs: list[tuple[str, str]]) -> Iterator[tuple[str, bytes]]:
            """(class, key) of found values: folded, and keyed natively where they are digits."""
            if not pairs:
                return iter(())
            folded = [fold(v) for _c, v in pairs]
            fast = bulk([f.encode() if f.isascii() else b"" for f in folded]) if bulk is not None else None
            return ((c, (fast[n] if fast else None) or key(folded[n])) for n, (c, _v) in enumerate(pairs))

        text_readers = set(_TEXT_READERS.values())

        def raw_scan(raw: bytes, read: Reader, clear: bool) -> tuple[tuple[str, bytes], ...]:
            # Not cached: the values read for their content are mostly each other's strangers
            # (notes, computed cells), and one without digits costs less than a lookup would.
            if len(raw) < _SHORTEST and read in text_readers:
                return ()  # too short to hold a number as text
            found = found_in(read(raw), clear)
            return tuple(zip_keys(found)) if found else ()

        while True:
            item = self._q.get()
            if item is None:
                self._q.task_done()
                return
            user, role, sid, ts, values = item
            try:
                if isinstance(values, Noted):
                    keys = values.keyed(raw_key, bulk, raw_scan)
                else:
                    keys = tuple(
                        (c, key(v), d.clear) for d in values for c, v in expand(d.cls, d.value, d.clear)
                    )
                if keys:
                    batch = Batch(user, role, sid, ts, keys)
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
