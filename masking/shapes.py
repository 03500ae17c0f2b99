"""Owns parsing a single value into its significant characters, and in-place rewriting of them.

A column value such as `+86 138-1234-5678` or a full-width `１３８…` is masked in place: only the
significant characters change, separators and prefixes stay. Both the display maskers and the
fakers build on the two helpers here.
"""

from __future__ import annotations

import ipaddress

from masking.normalize import fold_char

DIGITS = frozenset("0123456789")
DIGITS_STAR = DIGITS | {"*"}
ALNUM_UPPER_STAR = DIGITS_STAR | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
PHONE_SEPARATORS = frozenset(" \t-()+")
GROUP_SEPARATORS = frozenset(" \t-")


def scan(s: str, significant: frozenset[str], separators: frozenset[str]) -> tuple[list[int], str] | None:
    """Positions of significant characters and their folded text; None if any other character occurs."""
    positions: list[int] = []
    chars: list[str] = []
    for i, c in enumerate(s):
        f = c if c.isascii() else fold_char(c)
        if not f:
            continue  # invisible (ZWSP, a combining mark): the display rule still applies around it
        if f in significant:
            positions.append(i)
            chars.append(f)
        elif f not in separators:
            return None
    return positions, "".join(chars)


def hide(s: str, positions: list[int], lo: int, hi: int) -> str:
    """Replace the significant characters positions[lo:hi] with '*'."""
    chars = list(s)
    for i in positions[lo:hi]:
        chars[i] = "*"
    return "".join(chars)


def replace(s: str, positions: list[int], new: str) -> str:
    """Write `new` over the significant characters at the end of `positions` (len(new) of them)."""
    chars = list(s)
    for i, c in zip(positions[len(positions) - len(new) :], new, strict=True):
        chars[i] = c
    return "".join(chars)


def fold_same_length(s: str) -> str | None:
    """The per-character folded text when it keeps positions, else None."""
    if s.isascii():
        return s
    out = "".join(fold_char(c) for c in s)
    return out if len(out) == len(s) else None


def canonical(s: str, cls: str | None) -> str:
    """The form that identifies the same real value however it was written (joins survive formatting)."""
    folded = "".join(c if c.isascii() else fold_char(c) for c in s).strip()
    if cls in ("mobile", "bank_card", "landline"):
        digits = "".join(c for c in folded if c.isdigit())
        if cls == "mobile" and len(digits) >= 11:
            return digits[-11:]
        return digits or folded
    if cls in ("id_card", "uscc", "passport"):
        return folded.replace(" ", "").replace("-", "").upper()
    if cls == "email":
        return folded.lower()
    if cls == "ip_address":
        try:
            return str(ipaddress.ip_address(folded))  # 2001:DB8:0::1 and 2001:db8::1 are one address
        except ValueError:
            return folded.lower()
    return folded
