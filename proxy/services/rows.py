"""Protocol-neutral row masking: what to do with one result column, and the value helpers every
wire protocol's text form shares.

Owns `ValueKind` (what a column's values are, whatever a protocol calls their type), the pure
`column_action` (clear / detect / mask / null / refuse) and the functions that apply a masker to
a value in its text form. Must not know a protocol's type codes, binary layouts or messages:
each protocol maps its types to a `ValueKind` (proxy/pg/types.py) and brings its binary codecs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from policies.decision import Allow, ColumnMask

from .gate import MaskerSource

# One value on the wire (text or binary form) -> its replacement; None sends NULL.
ValueFn = Callable[[bytes], bytes | None]


class Unmaskable(Exception):
    """A masked column arrives in an encoding maskgate cannot mask: the statement is refused."""

    def __init__(self, column: str, why: str = "cannot be masked in binary format") -> None:
        super().__init__(f'column "{column}" {why}' if column else why)
        self.column = column


def check_shape(allow: Allow, ncols: int) -> None:
    """Masks apply by position: when the result has another number of columns than the decision
    describes (a column alias list shorter than its source, `*` over a source of unknown shape,
    a table changed behind the schema), which value is which cannot be known, and a decision that
    masks anything or reads classified data is refused rather than applied to the wrong columns.
    Raises Unmaskable."""
    if len(allow.columns) == ncols:
        return
    if allow.classes or any(c.action != "clear" or c.cls for c in allow.columns):
        raise Unmaskable(
            "",
            f"the result has {ncols} columns where {len(allow.columns)} were decided; "
            "list the columns (or alias every column of a source)",
        )


class ValueKind(Enum):
    """What a column's values are, as far as masking cares."""

    TEXT = "text"  # character strings: masked as text, scanned by detectors in either format
    JSON = "json"  # documents: scanned by detectors only, a mask would break the document
    INT = "int"  # fixed-width integers: masked as integers, kept within the type's range
    NUMERIC = "numeric"  # exact decimals: integer digits masked, fraction zeroed
    BYTES = "bytes"  # binary strings: masked byte for byte, never scanned
    # Booleans, floats, money, dates and times, uuids: their text carries no free text and
    # cannot hold a mask (`138****5678` is no date), so a masked value is sent as NULL.
    SCALAR = "scalar"
    # Arrays and network addresses: their text may carry free text (scanned when clear) but
    # cannot hold a mask (NULL when masked).
    STRUCTURED = "structured"
    # Any other type (enum, composite, domain): its text is scanned and masked as text. A typed
    # driver may fail to parse a masked value, which is preferable to passing it clear.
    OTHER = "other"


# Kinds whose text form may carry free text, and those whose binary form is that same text.
_FREE_TEXT = frozenset({ValueKind.TEXT, ValueKind.JSON, ValueKind.STRUCTURED, ValueKind.OTHER})
_BINARY_IS_TEXT = frozenset({ValueKind.TEXT, ValueKind.JSON})
# Kinds every protocol can mask in their binary form too (with its own codec).
_TYPED_MASK = frozenset({ValueKind.TEXT, ValueKind.INT, ValueKind.NUMERIC, ValueKind.BYTES})


class Op(Enum):
    """What a column's values go through on their way to the client."""

    CLEAR = "clear"  # pass the value untouched
    DETECT = "detect"  # run the value detectors over its text
    MASK = "mask"  # apply the column's masker, keeping the value's type
    NULL = "null"  # send NULL
    # One constant of the column's type for every value, NULL included: a value computed from a
    # classified column must not reveal its length, its NULL-ness or anything else of its source.
    CONSTANT = "constant"
    REFUSE = "refuse"  # the value cannot be masked in this format: refuse the statement


@dataclass(frozen=True, slots=True)
class ColumnAction:
    """What happens to every value of one result column."""

    op: Op
    cls: str | None = None  # MASK: the column's class
    action: str = ""  # MASK: mask | hash | fake | redact
    classes: frozenset[str] = frozenset()  # DETECT: what the detectors look for

    def masker(self, src: MaskerSource) -> Callable[[Any], Any]:
        """The function for decoded values: detectors for DETECT, the column's masker for MASK."""
        if self.op is Op.DETECT:
            return src.text_masker(self.classes)
        if self.op is Op.MASK:
            return src.value_masker(self.cls, self.action)
        raise ValueError(f"a {self.op.value} column has no masker")


CLEAR = ColumnAction(Op.CLEAR)
NULL = ColumnAction(Op.NULL)
CONSTANT = ColumnAction(Op.CONSTANT)
REFUSE = ColumnAction(Op.REFUSE)


def column_action(
    kind: ValueKind, column: ColumnMask | None, detect: frozenset[str], binary: bool
) -> ColumnAction:
    """The action for one output column of `kind`, sent in binary or text form.

    `column` is the decision's mask for it (None: unclassified, so clear); `detect` the classes
    the role's detectors scan for in every value it receives. A redacted *derived* column
    (`ColumnMask.derived`) is CONSTANT: the protocol sends its type's constant for every value.
    """
    if column is None or column.action == "clear":
        if not detect or kind not in _FREE_TEXT:
            return CLEAR
        if binary and kind not in _BINARY_IS_TEXT:
            # An array, composite, enum or domain in its binary form: its text is inside a
            # structure the detectors cannot read, and passing it clear would pass a number
            # the same value in text form has masked. Ask for text format instead.
            return REFUSE
        return ColumnAction(Op.DETECT, classes=detect)
    action = column.action
    if action == "null":
        return NULL
    if column.derived and action == "redact":
        # Computed from a classified column (nullif(substr(phone, 4, 1), '8'), length(phone),
        # json_build_object('p', reverse(phone))): a redaction that kept the length or the NULLs
        # would spell the value out over a few queries, so every value is one constant.
        return CONSTANT
    if kind is ValueKind.JSON:
        if action == "redact" or column.cls is None:
            # Detectors cannot tell what a redacted document hides: nothing of it is sent.
            return NULL
        # A classified document column is scanned for its own class too: masked inside, never broken.
        return ColumnAction(Op.DETECT, classes=detect | frozenset({column.cls}))
    if kind in _TYPED_MASK or (kind is ValueKind.OTHER and not binary):
        return ColumnAction(Op.MASK, cls=column.cls, action=action)
    if binary:
        return REFUSE
    return NULL  # SCALAR, STRUCTURED: no text form can hold the mask, NULL reveals nothing


# ------------------------------------------------------------------ values in their text form


def null_value(_raw: bytes) -> None:
    return None


def on_text(fn: Callable[[str], Any], enc: str) -> ValueFn:
    """`fn` over the value decoded in the client's encoding; the same bytes back when unchanged."""

    def apply(raw: bytes) -> bytes | None:
        s = raw.decode(enc, "surrogateescape")
        out = fn(s)
        if out is None:
            return None
        if out is s:
            return raw
        return str(out).encode(enc, "surrogateescape")

    return apply


def int_masker(vm: Callable[[Any], Any], lo: int, hi: int) -> Callable[[int], int | None]:
    """The int masker kept within [lo, hi], so the masked value still fits the column's type."""

    def masked(v: int) -> int | None:
        out = vm(v)
        return None if out is None else max(lo, min(hi, int(out)))

    return masked


def on_int_text(fn: Callable[[int], int | None]) -> ValueFn:
    """`fn` over an integer in its ASCII decimal form."""

    def apply(raw: bytes) -> bytes | None:
        out = fn(int(raw))
        return None if out is None else str(out).encode()

    return apply


def mask_decimal_text(s: str, int_masker: Callable[[int], int]) -> str:
    """Mask a decimal's integer digits with the int masker, zero its fraction, keep its shape."""
    if s in ("NaN", "Infinity", "-Infinity"):
        return s
    neg = s.startswith("-")
    body = s[1:] if neg else s
    ipart, dot, frac = body.partition(".")
    if not ipart.isdigit() or (frac and not frac.isdigit()):
        return s  # exponent forms do not occur in decimal output; leave anything odd alone
    masked = str(abs(int(int_masker(int(ipart))))).zfill(len(ipart))[-len(ipart) :]
    return ("-" if neg else "") + masked + dot + "0" * len(frac)


def decimal_masker(vm: Callable[[Any], Any]) -> Callable[[str], str]:
    """The masker for a decimal's text: a NULL from the int masker becomes zero digits, since a
    decimal column must still read as a number."""

    def to_int(v: int) -> int:
        out = vm(v)
        return 0 if out is None else int(out)

    return lambda s: mask_decimal_text(s, to_int)
