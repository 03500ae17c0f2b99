"""Masking of MySQL result rows: text-protocol rows (COM_QUERY) and binary-protocol rows (prepared).

Owns the plan for one result set, built once from its column definitions and the decision (what
services/rows.py decides per column, with the codecs of mysql/types.py), and the splicing of
masked values into each row packet. Knows nothing of sessions, sockets or policy: it is told
which decision applies to which result.
"""

from __future__ import annotations

from collections.abc import Sequence

from policies.decision import Allow
from proxy.mysql import packets as p
from proxy.mysql import types
from proxy.services.gate import MaskerSource
from proxy.services.rows import Op, Unmaskable, ValueFn, check_shape, column_action, null_value


class RowPlan:
    """Per-column functions for one result set; `apply` rewrites a row payload when needed.

    `consts[i]` is the value every row of a concealed column becomes (NULL included); `fns[i]`
    the function over a value's bytes (None: passed untouched)."""

    __slots__ = ("binary", "consts", "fns", "ncols", "types")

    def __init__(
        self,
        fns: list[ValueFn | None],
        consts: list[bytes | None],
        binary: bool,
        col_types: Sequence[tuple[int, int]],
    ) -> None:
        self.fns = fns
        self.consts = consts
        self.ncols = len(fns)
        self.binary = binary
        self.types = tuple(col_types)

    def apply(self, payload: bytes) -> tuple[bytes | None, int]:
        """The masked row (None when nothing changed) and the number of values changed."""
        if self.binary:
            values = list(p.BinaryRow.parse(payload, self.types).values)
        else:
            values = list(p.TextRow.parse(payload, self.ncols).values)
        changed = 0
        fns, consts = self.fns, self.consts
        for i, v in enumerate(values):
            const = consts[i]
            if const is not None:
                out: bytes | None = const
            else:
                fn = fns[i]
                if fn is None or v is None:
                    continue
                try:
                    out = fn(v)
                except (ValueError, ArithmeticError) as e:
                    # Not a value of its declared type: fail closed, as for a malformed packet.
                    raise p.PacketError(f"column {i} value does not match its type") from e
            if out != v:
                values[i] = out
                changed += 1
        if not changed:
            return None, 0
        if self.binary:
            return p.BinaryRow(tuple(values)).serialize(self.types), changed
        return p.TextRow(tuple(values)).serialize(), changed


def build_plan(
    cols: Sequence[p.ColumnDefinition41], allow: Allow, src: MaskerSource, *, binary: bool
) -> RowPlan | None:
    """The plan for a result with these columns under `allow`; None when no value can change.
    Raises Unmaskable when a column cannot be masked (the result is then refused)."""
    check_shape(allow, len(cols))
    fns: list[ValueFn | None] = []
    consts: list[bytes | None] = []
    detect = allow.detect
    for i, c in enumerate(cols):
        cm = allow.columns[i] if i < len(allow.columns) else None
        kind = types.value_kind(c.type, c.charset, c.flags)
        act = column_action(kind, cm, detect, binary)
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
        fns.append(fn)
        consts.append(const)
    if all(f is None for f in fns) and all(c is None for c in consts):
        return None
    return RowPlan(fns, consts, binary, [(c.type, c.flags) for c in cols])
