"""Masking of MySQL result rows: text-protocol rows (COM_QUERY) and binary-protocol rows (prepared).

Owns the plan for one result set, built from its column definitions and the decision (what
services/rows.py decides per column, with the codecs of mysql/types.py), the per-session cache of
those plans keyed by what determines them, and the splicing of masked values into each row
packet. Knows nothing of sessions, sockets or policy: it is told which decision applies to which
result.
"""

from __future__ import annotations

from collections.abc import Sequence

from policies.decision import Allow, ColumnMask
from proxy.mysql import packets as p
from proxy.mysql import types
from proxy.services.disclosure import SCAN, float_reader, int_reader, observing_fn, text_reader
from proxy.services.gate import Disclosed, MaskerSource
from proxy.services.rows import Op, Unmaskable, ValueFn, ValueKind, check_shape, column_action, null_value

# Binary-protocol floats (phone + 0.0 is a number too); dates and times never hold one.
_BINARY_FLOATS = {types.MYSQL_TYPE_FLOAT: float_reader("<f"), types.MYSQL_TYPE_DOUBLE: float_reader("<d")}
_UNSCANNED = frozenset(
    {
        types.MYSQL_TYPE_TIMESTAMP,
        types.MYSQL_TYPE_DATE,
        types.MYSQL_TYPE_TIME,
        types.MYSQL_TYPE_DATETIME,
        types.MYSQL_TYPE_YEAR,
        types.MYSQL_TYPE_NEWDATE,
        types.MYSQL_TYPE_TIMESTAMP2,
        types.MYSQL_TYPE_DATETIME2,
        types.MYSQL_TYPE_TIME2,
        types.MYSQL_TYPE_NULL,
        # Integers too narrow for a number of 11 digits or more (a BIGINT is read).
        types.MYSQL_TYPE_TINY,
        types.MYSQL_TYPE_SHORT,
        types.MYSQL_TYPE_INT24,
        types.MYSQL_TYPE_LONG,
    }
)

# What a plan observes: per column, (class, source column) or None (services/disclosure.py).
Observed = tuple[tuple[str, str] | None, ...]

# A session's plan cache holds at most this many result shapes, and none whose column
# definitions are larger than this: the keys are the definitions' bytes, and a client that makes
# the server describe endless shapes must not make the proxy hold them.
PLAN_CACHE_ENTRIES = 64
PLAN_CACHE_HEAD_BYTES = 8192


class RowPlan:
    """Per-column functions for one result set; `apply` rewrites a row payload when needed.

    `consts[i]` is the value every row of a concealed column becomes (NULL included); `fns[i]`
    the function over a value's bytes (None: passed untouched)."""

    __slots__ = ("active", "binary", "consts", "fns", "layout", "ncols", "seen", "types")

    def __init__(
        self,
        fns: list[ValueFn | None],
        consts: list[bytes | None],
        binary: bool,
        col_types: Sequence[tuple[int, int]],
        seen: list[Disclosed] | None = None,
    ) -> None:
        # Values its observing columns noted since the relay last drained it (None: observes nothing).
        self.seen = seen
        self.fns = fns
        self.consts = consts
        self.ncols = len(fns)
        self.binary = binary
        self.types = tuple(col_types)
        self.layout = p.binary_layout(self.types) if binary else ()
        # Only these columns are looked at row by row: a cleared column is never copied.
        self.active = tuple(i for i in range(self.ncols) if fns[i] is not None or consts[i] is not None)

    def apply(self, payload: bytes) -> tuple[bytes | None, int]:
        """The masked row (None when nothing changed) and the number of values changed."""
        if self.binary:
            values = list(p.binary_row_values(payload, self.layout))
        else:
            # The row is walked whole (its shape checked) before any value is looked at.
            spans = p.text_row_spans(payload, self.ncols)
            values = [None if s is None else payload[s[0] : s[1]] for s in spans]
        changed = 0
        fns, consts = self.fns, self.consts
        for i in self.active:
            v = values[i]
            const = consts[i]
            if const is not None:
                out: bytes | None = const
            else:
                if v is None:
                    continue
                try:
                    out = fns[i](v)  # type: ignore[misc]  # active: a function or a constant
                except (ValueError, ArithmeticError) as e:
                    # Not a value of its declared type: fail closed, as for a malformed packet.
                    raise p.PacketError(f"column {i} value does not match its type") from e
            if out != v:
                values[i] = out
                changed += 1
        if not changed:
            return None, 0
        if self.binary:
            return p.binary_row_bytes(values, self.layout), changed
        return p.text_row_bytes(values), changed


def build_plan(
    cols: Sequence[p.ColumnDefinition41],
    allow: Allow,
    src: MaskerSource,
    *,
    binary: bool,
    observe: Observed | None = None,
    mask: bool = True,
) -> RowPlan | None:
    """The plan for a result with these columns under `allow`; None when no value can change.
    Raises Unmaskable when a column cannot be masked (the result is then refused). `observe`
    names the columns whose values are noted for the Gate's observers; `mask` False (an
    unrestricted session) only observes."""
    if mask:
        check_shape(allow, len(cols))
    seen: list[Disclosed] | None = [] if observe and any(o is not None for o in observe) else None
    fns: list[ValueFn | None] = []
    consts: list[bytes | None] = []
    detect = allow.detect
    for i, c in enumerate(cols):
        cm = allow.columns[i] if i < len(allow.columns) else None
        kind = types.value_kind(c.type, c.charset, c.flags)
        act = (
            column_action(kind, cm, detect, binary)
            if mask
            else column_action(kind, None, frozenset(), binary)
        )
        name = c.name.decode("utf-8", "replace")
        fn: ValueFn | None = None
        const: bytes | None = None
        if act.op is Op.NULL:
            fn = null_value
        elif act.op is Op.CONSTANT:
            const = types.constant(c.type, binary)
            if const is None:
                raise Unmaskable(name)
        elif act.op is Op.REFUSE:
            raise Unmaskable(name)
        elif act.op in (Op.MASK, Op.DETECT):
            enc = types.charset_encoding(c.charset)
            if enc is None:
                raise Unmaskable(name, "is in a character set maskgate cannot read")
            masker = act.masker(src)
            if binary:
                fn = types.binary_value_fn(c.type, c.charset, c.flags, masker, enc)
            else:
                fn = types.text_value_fn(c.type, c.charset, c.flags, masker, enc)
        obs = observe[i] if seen is not None and observe is not None and i < len(observe) else None
        if obs is not None and obs[0] == SCAN and c.type in _UNSCANNED:
            obs = None
        if obs is not None and const is None and fn is not null_value:
            # Values that reach the client (clear, masked or scanned) are noted. A SCAN column's
            # numbers reached the client in clear when no masker touched the value.
            enc = types.charset_encoding(c.charset) or "utf-8"
            read = (
                int_reader("little")
                if binary and kind is ValueKind.INT
                else _BINARY_FLOATS[c.type]
                if binary and c.type in _BINARY_FLOATS
                else text_reader(enc)
            )
            clear = (fn is None) if obs[0] == SCAN else None
            fn = observing_fn(fn, obs[0], obs[1], read, seen, clear)  # type: ignore[arg-type]
        fns.append(fn)
        consts.append(const)
    if all(f is None for f in fns) and all(c is None for c in consts):
        return None
    return RowPlan(fns, consts, binary, [(c.type, c.flags) for c in cols], seen)


def parse_columns(heads: Sequence[bytes]) -> list[p.ColumnDefinition41]:
    """Each column definition parsed: each must be the definition it claims to be, since a row
    relayed in its place would reach the client unmasked."""
    return [p.ColumnDefinition41.parse(h) for h in heads]


class PlanCache:
    """The plans of one session, keyed by what determines a plan: the column definitions as the
    server sent them (their bytes: type, character set, flags and names), the decision's column
    masks, detector classes and whether it reads classified data, the row format and the policy
    generation (a reload may give a class another masker). A simple query gets a new decision
    each time; its plan does not change with it. A hit also stands for the parse of the
    definitions, which are the bytes of definitions parsed before."""

    __slots__ = ("_columns", "_plans", "_signature", "src")

    def __init__(self, src: MaskerSource) -> None:
        self.src = src
        self._plans: dict[tuple[object, ...], RowPlan | None] = {}
        # The last decision's column masks and what of them a plan depends on: decisions of
        # one statement shape share their masks, which are then not walked again.
        self._columns: tuple[ColumnMask, ...] | None = None
        self._signature: tuple[tuple[str | None, str, bool], ...] = ()

    def _masks(self, columns: tuple[ColumnMask, ...]) -> tuple[tuple[str | None, str, bool], ...]:
        if columns is not self._columns:
            self._signature = tuple((c.cls, c.action, c.derived) for c in columns)
            self._columns = columns
        return self._signature

    def plan(
        self,
        heads: Sequence[bytes],
        allow: Allow | None,
        binary: bool,
        generation: int,
        observe: Observed | None = None,
        *,
        mask: bool = True,
    ) -> RowPlan | None:
        """The plan for a result with the column definitions `heads` under `allow` (None: the
        session masks nothing, the definitions are only checked). `observe` and `mask` as for
        build_plan. Raises Unmaskable, PacketError."""
        heads = tuple(heads)
        if allow is None:
            key: tuple[object, ...] = (binary, generation, None, heads)
        elif observe is None:
            key = (binary, generation, self._masks(allow.columns), allow.detect, bool(allow.classes), heads)
        else:
            masks = self._masks(allow.columns) if mask else None
            key = (binary, generation, masks, allow.detect, bool(allow.classes), heads, observe)
        try:
            return self._plans[key]
        except KeyError:
            pass
        cols = parse_columns(heads)
        plan = (
            None
            if allow is None
            else build_plan(cols, allow, self.src, binary=binary, observe=observe, mask=mask)
        )
        if sum(map(len, heads)) <= PLAN_CACHE_HEAD_BYTES:
            if len(self._plans) >= PLAN_CACHE_ENTRIES:
                self._plans.clear()
            self._plans[key] = plan
        return plan
