"""Masking of PostgreSQL result rows: DataRow columns (text and binary formats) and COPY rows.

Owns the splicing of masked values into DataRow and CopyData messages. A plan is built once per
result description (RowDescription or CopyOutResponse) from what services/rows.py decides per
column and the codecs of pg/types.py, then applied to every row. Knows nothing of sessions,
sockets or policy: it is told which action applies to which output position.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from typing import Any

import masking
from masking.classes import CLASSES, FREE_TEXT
from masking.detectors import DETECTABLE, DIGIT_CLASSES
from masking.names import COMPOUND_SURNAMES, SINGLE_SURNAMES
from masking.native import load
from policies.decision import Allow, ColumnMask, CopyFraming
from proxy.pg import types
from proxy.pg.messages import FieldDescription, MessageError
from proxy.services.disclosure import SCAN, Reader, float_reader, int_reader, text_reader
from proxy.services.gate import Disclosed, MaskerSource
from proxy.services.rows import (
    ColumnAction,
    Op,
    Unmaskable,
    ValueFn,
    ValueKind,
    check_shape,
    column_action,
    null_value,
)

# The native row walker (proxy/pg/_rowwalk.c); None: RowPlan.apply row by row is all there is.
_walker = load("proxy.pg._rowwalk")
if _walker is not None:
    # The name finder keeps a candidate only where a known surname starts it: the walker's gate
    # needs their first characters (the table lives in masking/names.py).
    _walker.set_name_starts("".join(sorted({s[0] for s in SINGLE_SURNAMES | COMPOUND_SURNAMES})))

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_HDR_D = struct.Struct("!ci")
# What RowPlan.apply turns into MessageError when a column's function raises it.
_VALUE_ERRORS = (ValueError, ArithmeticError, struct.error)


def column_fn(
    f: FieldDescription, fmt: int, cm: ColumnMask | None, detect: frozenset[str], src: MaskerSource, enc: str
) -> ValueFn | bytes | None:
    """The function for one output column, None to pass its values untouched, or the bytes every
    value (NULL included) becomes."""
    binary = fmt == 1
    act = column_action(types.value_kind(f.type_oid), cm, detect, binary)
    if act.op is Op.CLEAR:
        return None
    if act.op is Op.NULL:
        return null_value
    if act.op is Op.CONSTANT:
        const = types.constant(f.type_oid, binary)
        if const is None:
            raise Unmaskable(f.name)
        return const
    if act.op is Op.REFUSE:
        raise Unmaskable(f.name)
    return types.value_fn(f.type_oid, act.masker(src), binary, enc)


# A column's op for the native walker: (op, detector gate bits, constant, value function), and
# the function that adds values a native mask changed to the masker's metrics (None: none needed).
NativeOp = tuple[int, int, bytes | None, ValueFn | None]
Tally = Callable[[int], None] | None

# Column classes whose display rule the walker applies itself, to values of the exact shape of
# masking/maskers.py's first branch (11 digits, 17 digits + check character, 16-19 digits).
_NATIVE_MASKS = {"mobile": "MOBILE", "id_card": "ID", "bank_card": "CARD"}
_ALL_CLASSES = frozenset(CLASSES)
# masking/_digits.h MG_* bits: the digit finders the walker runs itself.
_MG_CLASSES = {"mobile": 1, "id_card": 2, "bank_card": 4, "uscc": 8, "landline": 16, "passport": 32}
_NATIVE_KINDS = frozenset({ValueKind.TEXT, ValueKind.JSON, ValueKind.STRUCTURED, ValueKind.OTHER})


def _unwrap(vm: Callable[[Any], Any]) -> tuple[Callable[[Any], Any], Tally, bool]:
    """(the masker inside the Gate's counting wrapper, the wrapper's tally, whether it is one)."""
    inner = getattr(vm, "inner", None)
    if inner is None:
        return vm, None, False
    return inner, getattr(vm, "tally", None), True


def _gate_bits(wanted: frozenset[str]) -> int | None:
    """The walker's detector gate for the classes a text masker looks for; None for any class it
    does not know the gate of."""
    if _walker is None:
        raise RuntimeError("the native row walker is not loaded")
    bits = 0
    for cls in wanted:
        if cls in DIGIT_CLASSES:
            bits |= _walker.G_DIGITS | _MG_CLASSES[cls] << _walker.G_MG_SHIFT
        elif cls == "ip_address":
            bits |= _walker.G_IP
        elif cls == "email":
            bits |= _walker.G_EMAIL
        elif cls == "person_name":
            bits |= _walker.G_NAME
        else:
            return None
    return bits


def native_op(
    f: FieldDescription,
    fmt: int,
    cm: ColumnMask | None,
    detect: frozenset[str],
    src: MaskerSource,
    enc: str,
    fn: ValueFn | bytes | None,
) -> tuple[NativeOp, Tally]:
    """The walker's op for one column whose function (column_fn) is `fn`.

    A native mask or gate is used only when the column's masker is *the* reference masker of
    masking/ (checked by identity, with the Gate's masking key): a Gate with other maskers gets
    its own functions called for every value. Everything else is PYFN: the same ValueFn as
    RowPlan.apply calls.
    """
    w = _walker
    if w is None:
        raise RuntimeError("the native row walker is not loaded")
    if fn is None:
        return (w.PASS, 0, None, None), None
    if isinstance(fn, bytes):
        return (w.CONST, 0, fn, None), None
    if fn is null_value:
        return (w.NULL, 0, None, None), None
    pyfn = (w.PYFN, 0, None, fn), None
    binary = fmt == 1
    kind = types.value_kind(f.type_oid)
    key = getattr(src, "masking_key", None)
    # Only values decoded as UTF-8 text (types.value_fn's on_text) are what the walker reads.
    if enc != "utf-8" or key is None or kind not in _NATIVE_KINDS or (binary and f.type_oid == types.JSONB):
        return pyfn
    act = column_action(kind, cm, detect, binary)
    if act.op is Op.MASK and act.action == "mask" and act.cls in _NATIVE_MASKS:
        inner, tally, wrapped = _unwrap(act.masker(src))
        if inner is masking.make_masker(act.cls, "mask", key=key) and (tally is not None or not wrapped):
            return (getattr(w, _NATIVE_MASKS[act.cls]), 0, None, fn), tally
        return pyfn
    if act.op is Op.MASK and act.action == "mask" and act.cls == FREE_TEXT:
        # A note column's masker is the text masker over every detectable class (masking/free_text.py)
        # for the str it gets here: the same answer as DETECT over those classes.
        inner, tally, wrapped = _unwrap(act.masker(src))
        bits = _gate_bits(DETECTABLE)
        if (
            bits is not None
            and inner is masking.make_masker(FREE_TEXT, "mask", key=key)
            and (tally is not None or not wrapped)
        ):
            return (w.DETECT, bits, None, fn), tally
        return pyfn
    if act.op is Op.DETECT:
        inner, tally, wrapped = _unwrap(act.masker(src))
        wanted = act.classes & _ALL_CLASSES
        bits = _gate_bits(wanted & DETECTABLE)
        if (
            bits is not None
            and inner is masking.make_text_masker(wanted, "mask", key=key)
            and (tally is not None or not wrapped)
        ):
            return (w.DETECT, bits, None, fn), tally
    return pyfn


class RowPlan:
    """Per-column functions for one result; `apply` rewrites a DataRow body when needed.

    `consts` holds, per column, the bytes every value of a concealed column becomes (NULL
    included), or None; a column with a constant has no function. `native`, when the walker is
    built, is the same plan compiled for it (see `walk`).
    """

    __slots__ = ("consts", "fns", "native", "ncols", "observe", "observe_mask", "seen", "tallies")

    def __init__(
        self,
        fns: list[ValueFn | None],
        consts: list[bytes | None] | None = None,
        ops: list[tuple[NativeOp, Tally]] | None = None,
        observe: dict[int, tuple[str, str, bool, Reader]] | None = None,
    ) -> None:
        # Observed columns: index -> (class, source column, sent in clear, how to read a value).
        # Their values are read from the rows as they came (`note`), so masking itself, native
        # or not, is the same with or without observers.
        self.observe = observe or None
        # Per column up to the last observed one: 1 when observed (the walker's `column_values`).
        self.observe_mask = bytes(int(i in observe) for i in range(max(observe) + 1)) if observe else b""
        # (column, value as it came) noted since the row path last drained them (None: the plan
        # observes nothing). Disclosed values are built from them off the event loop (Noted).
        self.seen: list[tuple[int, bytes]] | None = [] if observe else None
        self.fns = fns
        self.ncols = len(fns)
        self.consts = consts if consts is not None and any(c is not None for c in consts) else None
        self.native: Any = None
        self.tallies: tuple[Tally, ...] = ()
        if _walker is not None:
            if ops is None:  # no column information: every function is called as it is
                cs = consts or [None] * len(fns)
                ops = [
                    ((_walker.PASS, 0, None, None), None)
                    if fn is None and c is None
                    else ((_walker.CONST, 0, c, None), None)
                    if fn is None
                    else ((_walker.PYFN, 0, None, fn), None)
                    for fn, c in zip(fns, cs, strict=True)
                ]
            self.native = _walker.Plan([op for op, _ in ops], _VALUE_ERRORS)
            if any(t is not None for _, t in ops):
                self.tallies = tuple(t for _, t in ops)

    def walk(
        self, buf: bytes, start: int, end: int, max_rows: int, ncols: int, max_len: int
    ) -> tuple[bytes | None, int, int, int]:
        """Mask the run of DataRow messages starting at buf[start:end] with the native walker
        (only when `native` is set).

        Returns (the masked messages, or None when no value changed; the offset after the last
        message walked; rows walked; values changed). Stops at the first message that is not a
        DataRow, is incomplete or longer than `max_len`, has another column count than `ncols`
        (-1: any), is malformed or has a value its function rejects (the caller's `apply` then
        raises the error for it), or after `max_rows` rows (-1: no limit).
        """
        r = self.native.walk(buf, start, end, max_rows, ncols, max_len)
        if self.tallies:
            counts = self.native.take_counts()
            if counts is not None:
                for tally, n in zip(self.tallies, counts, strict=True):
                    if n and tally is not None:
                        tally(n)
        return r  # type: ignore[no-any-return]

    def note(self, buf: bytes, start: int, end: int) -> None:
        """Note the observed columns' values of the DataRow messages at buf[start:end] (whole,
        well-formed messages: rows the walker or `apply` already went through)."""
        seen = self.seen
        if seen is None:
            return
        # Rows that do not frame are the masking path's to refuse (it has parsed them already);
        # observation itself never fails a result.
        with contextlib.suppress(ValueError, IndexError, struct.error):
            self._note(seen, buf, start, end)

    def _note(self, seen: list[tuple[int, bytes]], buf: bytes, start: int, end: int) -> None:
        if _walker is not None:
            seen += _walker.column_values(buf, start, end, self.observe_mask)
            return
        append = seen.append
        i32 = _I32.unpack_from
        wanted = self.observe_mask
        upto = len(wanted)
        pos = start
        while pos < end:
            mend = pos + 1 + i32(buf, pos + 1)[0]
            p = pos + 7
            for i in range(min(upto, _I16.unpack_from(buf, pos + 5)[0])):
                ln = i32(buf, p)[0]
                p += 4
                if wanted[i] and ln >= 0:
                    append((i, buf[p : p + ln]))
                if ln > 0:
                    p += ln
            pos = mend

    def apply(self, buf: bytes, start: int, end: int) -> tuple[bytes | None, int]:
        """Mask the DataRow message at buf[start:end] (type byte included).

        Returns (the new whole message, or None if no value changed; number of values changed).
        Works on offsets: only values with a masker are sliced out, and the new message is the
        untouched byte ranges spliced around the changed values.
        """
        i32 = _I32.unpack_from
        if end - start < 7:
            raise MessageError("truncated DataRow")
        n = _I16.unpack_from(buf, start + 5)[0]
        pos = start + 7
        last = start + 5
        fns = self.fns
        consts = self.consts
        ncols = self.ncols
        pieces: list[bytes] | None = None
        changed = 0
        size = end - start - 1  # the new body length, adjusted as values change
        for i in range(n):
            if pos + 4 > end:
                raise MessageError("truncated DataRow")
            ln = i32(buf, pos)[0]
            vstart = pos + 4
            if ln < 0:
                if ln != -1:
                    raise MessageError("bad value length")
                out = consts[i] if consts is not None and i < ncols else None
                if out is not None:  # a concealed column hides NULL too
                    if pieces is None:
                        pieces = [b""]
                    pieces.append(buf[last:pos])
                    pieces.append(_I32.pack(len(out)))
                    pieces.append(out)
                    size += len(out)
                    last = vstart
                    changed += 1
                pos = vstart
                continue
            vend = vstart + ln
            if vend > end:
                raise MessageError("truncated DataRow")
            if i >= ncols:
                pos = vend
                continue
            fn = fns[i]
            if fn is not None:
                v = buf[vstart:vend]
                try:
                    out = fn(v)
                except _VALUE_ERRORS as e:
                    # Not a value of its declared type (b"abc" as int8): fail closed, as for any
                    # message that does not match its layout.
                    raise MessageError(f"column {i} value does not match its type") from e
            elif consts is not None and consts[i] is not None:
                v = buf[vstart:vend]
                out = consts[i]
            else:
                pos = vend
                continue
            if out is not v and out != v:
                if pieces is None:
                    pieces = [b""]  # the header, filled in below: one join builds the row
                pieces.append(buf[last:pos])
                if out is None:
                    pieces.append(b"\xff\xff\xff\xff")
                    size -= ln
                else:
                    pieces.append(_I32.pack(len(out)))
                    pieces.append(out)
                    size += len(out) - ln
                last = vend
                changed += 1
            pos = vend
        if pos != end:
            raise MessageError("trailing bytes in DataRow")
        if pieces is None:
            return None, 0
        pieces.append(buf[last:end])
        pieces[0] = _HDR_D.pack(b"D", size)
        return b"".join(pieces), changed


# The walker's plan for rows nothing is done to (an unrestricted session, a result without masks):
# it only counts them, in one call per run instead of a Python step per row.
PASS_THROUGH: RowPlan | None = RowPlan([]) if _walker is not None else None


# What a plan observes: per output column, (class, source column) or None (services/disclosure.py
# `observed`); None for a plan that observes nothing.
Observed = tuple[tuple[str, str] | None, ...]


def _reader(f: FieldDescription, fmt: int, enc: str) -> Reader:
    """How an observed column's values are read as text: as a client decodes them (a binary
    integer, float or numeric by its value, a bytea by its bytes, an array or record by its
    elements), so that the detectors read what the person can."""
    if fmt == 0:
        return _bytea_text(enc) if f.type_oid == types.BYTEA else text_reader(enc)
    if types.value_kind(f.type_oid) is ValueKind.INT:
        return int_reader("big")
    if f.type_oid in _BINARY_READERS:
        return _BINARY_READERS[f.type_oid]
    if f.type_oid in types.ARRAYS or types.value_kind(f.type_oid) is ValueKind.OTHER:
        return _structured(enc)
    return text_reader(enc)


_BYTEA_READERS: dict[str, Reader] = {}


def _bytea_text(enc: str) -> Reader:
    """A bytea in text format (`\\x3133…`, PostgreSQL's hex output) as the text its bytes hold."""
    read = _BYTEA_READERS.get(enc)
    if read is None:

        def read(raw: bytes) -> str:
            if raw[:2] == b"\\x":
                with contextlib.suppress(ValueError):
                    raw = bytes.fromhex(raw[2:].decode("ascii"))
            return raw.decode(enc, "surrogateescape")

        _BYTEA_READERS[enc] = read
    return read


_STRUCTURED_READERS: dict[str, Reader] = {}


def _structured(enc: str) -> Reader:
    """A binary array or record (a composite, ROW(...)) as its elements' text, one a line: each
    element read by its own type's reader. A value that does not parse as either is read as
    text."""
    read = _STRUCTURED_READERS.get(enc)
    if read is None:

        def read(raw: bytes) -> str:
            out: list[str] = []
            try:
                _elements(raw, enc, out, 0)
            except (struct.error, ValueError, IndexError, RecursionError):
                return raw.decode(enc, "surrogateescape")
            return "\n".join(out)

        _STRUCTURED_READERS[enc] = read
    return read


def _element(oid: int, raw: bytes, enc: str, out: list[str], depth: int) -> None:
    if types.value_kind(oid) is ValueKind.INT:
        out.append(int_reader("big")(raw))
    elif oid in _BINARY_READERS:
        out.append(_BINARY_READERS[oid](raw))
    elif oid in types.ARRAYS or oid == _RECORD or types.value_kind(oid) is ValueKind.OTHER:
        try:
            _elements(raw, enc, out, depth + 1)
        except (struct.error, ValueError, IndexError):
            out.append(raw.decode(enc, "surrogateescape"))
    else:
        out.append(raw.decode(enc, "surrogateescape"))


def _elements(raw: bytes, enc: str, out: list[str], depth: int) -> None:
    """Parse `raw` as a binary array (array_send) or record (record_send), appending each
    element's text; raises when it is neither."""
    if depth > 8:
        raise ValueError("nested too deep")
    ndim, _flags, elem = struct.unpack_from("!iiI", raw) if len(raw) >= 12 else (-1, 0, 0)
    if 0 <= ndim <= 6 and _flags in (0, 1) and len(raw) >= 12 + 8 * ndim:
        # An array: ndim, has-nulls, element type, (size, lower bound) per dimension, elements.
        count = 1
        for d in range(ndim):
            count *= struct.unpack_from("!i", raw, 12 + 8 * d)[0]
        pos = 12 + 8 * ndim
        items: list[tuple[int, bytes]] = []
        for _ in range(count if ndim else 0):
            (n,) = struct.unpack_from("!i", raw, pos)
            pos += 4
            if n >= 0:
                items.append((elem, raw[pos : pos + n]))
                pos += n
        if pos == len(raw):
            for oid, value in items:
                _element(oid, value, enc, out, depth)
            return
    # A record: column count, then (type, length, value) per column.
    (ncols,) = struct.unpack_from("!i", raw)
    pos = 4
    items = []
    for _ in range(ncols):
        oid, n = struct.unpack_from("!Ii", raw, pos)
        pos += 8
        if n >= 0:
            items.append((oid, raw[pos : pos + n]))
            pos += n
    if ncols < 0 or pos != len(raw):
        raise ValueError("not an array or record")
    for oid, value in items:
        _element(oid, value, enc, out, depth)


_RECORD = 2249


def _numeric(raw: bytes) -> str:
    """A binary NUMERIC as its digits (PostgreSQL's base-10000 form): phone::numeric is a number."""
    n, weight, sign, scale = struct.unpack_from("!hhHh", raw)
    if sign == 0xC000:
        return "NaN"
    groups = struct.unpack_from(f"!{n}h", raw, 8)
    whole = "".join(f"{g:04d}" for g in groups[: weight + 1]).lstrip("0") or "0"
    whole += "0000" * max(0, weight + 1 - n)
    frac = "".join(f"{g:04d}" for g in groups[weight + 1 :])[:scale]
    return ("-" if sign == 0x4000 else "") + whole + ("." + frac if frac else "")


_BINARY_READERS: dict[int, Reader] = {
    types.FLOAT4: float_reader("!f"),
    types.FLOAT8: float_reader("!d"),
    types.NUMERIC: _numeric,
}
# Types whose values never hold a number a trace is asked about: not scanned (SCAN).
_UNSCANNED = frozenset(
    {types.BOOL, types.DATE, types.TIME, types.TIMETZ, types.TIMESTAMP, types.TIMESTAMPTZ}
    | {types.INTERVAL, types.UUID}
    # Integers too narrow for a number of 11 digits or more (a bigint is read).
    | {types.INT2, types.INT4, types.OID}
)


def plan_rows(
    fields: tuple[FieldDescription, ...],
    formats: tuple[int, ...] | None,
    allow: Allow,
    src: MaskerSource,
    enc: str = "utf-8",
    observe: Observed | None = None,
    *,
    mask: bool = True,
) -> RowPlan | None:
    """Build the plan for a result, or None when no column needs work. Raises Unmaskable.

    `formats` are the result format codes from Bind (none: all text; one: applies to all;
    else per column); None means use the RowDescription's own format codes. `observe` names the
    columns whose values are noted for the Gate's observers (RowPlan.note); `mask` False (an
    unrestricted session) only observes.
    """
    if mask:
        check_shape(allow, len(fields))
    noted: dict[int, tuple[str, str, bool, Reader]] = {}
    fns: list[ValueFn | None] = []
    consts: list[bytes | None] = []
    ops: list[tuple[NativeOp, Tally]] | None = [] if _walker is not None else None
    for i, f in enumerate(fields):
        if formats is None:
            fmt = f.format
        elif not formats:
            fmt = 0
        elif len(formats) == 1:
            fmt = formats[0]
        else:
            fmt = formats[i] if i < len(formats) else 0
        cm = allow.columns[i] if i < len(allow.columns) else None
        fn = column_fn(f, fmt, cm, allow.detect, src, enc) if mask else None
        obs = observe[i] if observe is not None and i < len(observe) else None
        if obs is not None and obs[0] == SCAN and f.type_oid in _UNSCANNED:
            obs = None
        if obs is not None and not isinstance(fn, bytes) and fn is not null_value:
            # Values that reach the client (clear, masked or scanned) are noted; a NULLed or
            # concealed column discloses nothing. In clear: what the decision sends clear; for
            # a SCAN column, a value no masker touches (what a masker left is not known here).
            clear = fn is None if obs[0] == SCAN else (not mask or cm is None or cm.action == "clear")
            noted[i] = (obs[0], obs[1], clear, _reader(f, fmt, enc))
        if ops is not None:
            ops.append(native_op(f, fmt, cm, allow.detect, src, enc, fn))
        if isinstance(fn, bytes):
            fns.append(None)
            consts.append(fn)
        else:
            fns.append(fn)
            consts.append(None)
    if all(fn is None for fn in fns) and all(c is None for c in consts) and not noted:
        return None
    return RowPlan(fns, consts, ops, noted)


# ------------------------------------------------------------------ COPY TO STDOUT (text, CSV)

_COPY_UNESCAPE = {
    ord("b"): "\b",
    ord("f"): "\f",
    ord("n"): "\n",
    ord("r"): "\r",
    ord("t"): "\t",
    ord("v"): "\v",
}


def _copy_unescape(s: str) -> str:
    if "\\" not in s:
        return s
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            out.append(_COPY_UNESCAPE.get(ord(n), n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _copy_escape(s: str, delimiter: str = "\t") -> str:
    out = (
        s.replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\b", "\\b")
        .replace("\f", "\\f")
        .replace("\v", "\\v")
    )
    # The server backslashes the delimiter inside a value; a tab is written \t above.
    return out.replace(delimiter, "\\" + delimiter) if delimiter != "\t" else out


def _split_text(body: str, delimiter: str) -> list[str]:
    """The raw fields of a text-format row: a backslash escapes the character after it (the
    delimiter included), so only a bare delimiter ends a field."""
    if "\\" not in body:
        return body.split(delimiter)
    fields: list[str] = []
    start = i = 0
    n = len(body)
    while i < n:
        c = body[i]
        if c == "\\":
            i += 2
            continue
        if c == delimiter:
            fields.append(body[start:i])
            start = i + 1
        i += 1
    fields.append(body[start:])
    return fields


def split_csv(body: str, framing: CopyFraming) -> list[tuple[str, str, bool]]:
    """The fields of one CSV row as the server reads CSV (copyfromparse.c
    CopyReadAttributesCSV): (raw text, value, quoted). Inside quotes the escape character
    followed by the quote or the escape character is that character; a doubled quote is the
    same rule with escape = quote. Raises Unmaskable for an unterminated quote."""
    delim, quote, escape = framing.delimiter, framing.quote, framing.escape
    fields: list[tuple[str, str, bool]] = []
    i, n = 0, len(body)
    while True:
        start = i
        value: list[str] = []
        quoted = in_quote = False
        while i < n:
            c = body[i]
            if in_quote:
                if c == escape and i + 1 < n and body[i + 1] in (quote, escape):
                    value.append(body[i + 1])
                    i += 2
                    continue
                if c == quote:
                    in_quote = False
                else:
                    value.append(c)
            elif c == delim:
                break
            elif c == quote:
                in_quote = quoted = True
            else:
                value.append(c)
            i += 1
        if in_quote:
            raise Unmaskable("COPY row")
        fields.append((body[start:i], "".join(value), quoted))
        if i >= n:
            return fields
        i += 1  # the delimiter


def quote_csv(value: str, framing: CopyFraming) -> str:
    """A value as one quoted CSV field: quote and escape characters inside it are escaped."""
    q, e = framing.quote, framing.escape
    body = "".join(e + c if c in (q, e) else c for c in value)
    return q + body + q


def _copy_fn(act: ColumnAction, src: MaskerSource) -> Callable[[str], str | None] | None:
    if act.op is Op.CLEAR:
        return None
    if act.op is Op.NULL:
        return _null
    if act.op is Op.REFUSE:
        raise Unmaskable("COPY row")
    if act.op is Op.CONSTANT:
        return _concealed
    return act.masker(src)


_CONCEALED = types.CONCEALED_TEXT.decode()


def _null(_s: str | None) -> None:
    return None


def _concealed(_s: str | None) -> str:
    return _CONCEALED


class CopyPlan:
    """Masks COPY TO STDOUT rows (one CopyData per row, as PostgreSQL sends them).

    The wire says only that a COPY is textual, not its layout, and a guessed layout can be
    steered (a digit delimiter plus tabs inside a value shifts the columns). The layout is the
    one the engine read from the statement's options (Allow.copy: text or CSV, delimiter, NULL
    string, quote, escape, header), the statement the server runs. A row that does not split into
    the announced columns raises Unmaskable. A masked CSV value is always written quoted, so
    whatever a masker returns stays one field.
    """

    def __init__(
        self,
        ncols: int,
        allow: Allow,
        src: MaskerSource,
        enc: str = "utf-8",
        observe: Observed | None = None,
        *,
        mask: bool = True,
    ) -> None:
        if mask:
            check_shape(allow, ncols)
        self.ncols = ncols
        self.framing = allow.copy or CopyFraming()
        if mask and self.framing.format not in ("text", "csv"):
            raise Unmaskable("COPY format")
        columns = [allow.columns[i] if i < len(allow.columns) else None for i in range(ncols)]
        self.enc = enc
        self.header = self.framing.header  # the first row is the column names
        # COPY announces no column types: every column is read as text of an OTHER type.
        self.fns: list[Callable[[str], str | None] | None] = (
            [_copy_fn(column_action(ValueKind.OTHER, cm, allow.detect, False), src) for cm in columns]
            if mask
            else [None] * ncols
        )
        self.mask = mask
        # Observed columns, as RowPlan's: index -> (class, source column, sent in clear); their
        # values as they came are noted in `seen` (Disclosed), drained by the relay per message.
        self.observe: dict[int, tuple[str, str, bool]] = {}
        for i, obs in enumerate(observe or ()):
            fn = self.fns[i] if i < ncols else None
            if i < ncols and fn is not _concealed and fn is not _null:
                cm = columns[i]
                clear = fn is None if obs[0] == SCAN else (not mask or cm is None or cm.action == "clear")
                self.observe[i] = (obs[0], obs[1], clear)
        self.seen: list[Disclosed] | None = [] if self.observe else None

    def apply(self, data: bytes) -> tuple[bytes, int]:
        line = data.decode(self.enc, "surrogateescape")
        nl = "\n" if line.endswith("\n") else ""
        body = line[:-1] if nl else line
        if self.header:
            # The column names the statement gave, not values read from a table.
            self.header = False
            return data, 0
        if not self.mask:
            self._note_line(body)
            return data, 0
        if self.framing.format == "csv":
            fields = split_csv(body, self.framing)
            if len(fields) != self.ncols:
                raise Unmaskable("COPY row")
            if self.seen is not None:
                self._note([None if not q and raw == self.framing.null else v for raw, v, q in fields])
            out, changed = self._csv(fields)
        else:
            cells = _split_text(body, self.framing.delimiter)
            if len(cells) != self.ncols:
                raise Unmaskable("COPY row")
            if self.seen is not None:
                self._note([None if raw == "\\N" else _copy_unescape(raw) for raw in cells])
            out, changed = self._text(cells)
        if not changed:
            return data, 0
        return (self.framing.delimiter.join(out) + nl).encode(self.enc, "surrogateescape"), changed

    def _note(self, values: list[str | None]) -> None:
        seen = self.seen
        assert seen is not None
        for i, (cls, column, clear) in self.observe.items():
            v = values[i]
            if v:
                seen.append(Disclosed(cls, column, v, clear))

    def _note_line(self, body: str) -> None:
        """An unrestricted session's row: its columns when the row splits as the statement
        said, else the whole line read for the numbers it holds (observation never refuses)."""
        if self.seen is None:
            return
        try:
            if self.framing.format == "csv":
                fields = split_csv(body, self.framing)
                values = [None if not q and raw == self.framing.null else v for raw, v, q in fields]
            elif self.framing.format == "text":
                cells = _split_text(body, self.framing.delimiter)
                values = [None if raw == "\\N" else _copy_unescape(raw) for raw in cells]
            else:
                values = []
        except (Unmaskable, ValueError):
            values = []
        if len(values) == self.ncols:
            self._note(values)
        else:
            self.seen.append(Disclosed(SCAN, "", body, True))

    def _text(self, fields: list[str]) -> tuple[list[str], int]:
        out = []
        changed = 0
        null = self.framing.null
        # Text format writes a value equal to a NULL string of the client's choosing as it is
        # (CSV quotes it): passing that as a NULL would pass the value, an equality oracle.
        # Only the default \N, which no value is written as, is a NULL for sure.
        null_is_sure = null == "\\N"
        for fn, raw in zip(self.fns, fields, strict=True):
            if fn is None or (raw == null and null_is_sure and fn is not _concealed):  # concealed: hidden too
                out.append(raw)
                continue
            v = _copy_unescape(raw)
            m = fn(v)
            if m is v:
                out.append(raw)
                continue
            changed += 1
            out.append(null if m is None else _copy_escape(str(m), self.framing.delimiter))
        return out, changed

    def _csv(self, fields: list[tuple[str, str, bool]]) -> tuple[list[str], int]:
        out = []
        changed = 0
        null = self.framing.null
        for fn, (raw, value, quoted) in zip(self.fns, fields, strict=True):
            is_null = not quoted and raw == null
            if fn is None or (is_null and fn is not _concealed):
                out.append(raw)
                continue
            m = fn(value)
            if m is value:
                out.append(raw)
                continue
            changed += 1
            out.append(null if m is None else quote_csv(str(m), self.framing))
        return out, changed
