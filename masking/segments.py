"""Owns the mainland mobile number-segment table (PII.md §1.1) and the longest-prefix lookup.

Carrier names are kept for information only: number portability (2019-12) means a prefix says
whether a number is valid, not who carries it today.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple


class Segment(NamedTuple):
    carrier: str
    kind: str  # phone | mvno | data | iot | special
    low_score: bool  # PII.md §1.1: 149, 14x IoT, 174x and libphonenumber-only prefixes


def _expand(spec: str) -> list[str]:
    """'1340-1348' -> ['1340', ..., '1348']; plain prefixes pass through."""
    if "-" not in spec:
        return [spec]
    lo, hi = spec.split("-")
    return [str(n).zfill(len(lo)) for n in range(int(lo), int(hi) + 1)]


_TABLE: tuple[tuple[str, str, bool, str], ...] = (
    ("mobile", "phone", False, "1340-1348 135-139 150-152 157-159 172 178 182-184 187 188 195 197 198"),
    ("unicom", "phone", False, "130-132 155 156 166 175 176 185 186 196"),
    ("telecom", "phone", False, "133 1349 153 173 17400-17405 177 180 181 189 190 191 193 199"),
    ("broadnet", "phone", False, "192"),
    ("special", "special", True, "1749 17406-17412"),
    ("mobile", "mvno", False, "165 1703 1705 1706"),
    ("unicom", "mvno", False, "167 171 1704 1707 1708 1709"),
    ("telecom", "mvno", False, "162 1700 1701 1702"),
    ("mobile", "data", False, "147"),
    ("unicom", "data", False, "145"),
    ("telecom", "data", True, "149"),
    ("mobile", "iot", True, "1440 1441 148"),
    ("unicom", "iot", True, "146"),
    ("telecom", "iot", True, "1410"),
    # libphonenumber accepts 1610 although no allocation source lists it (PII.md §1.1): union, low score.
    ("unknown", "phone", True, "1610"),
)

SEGMENTS: dict[str, Segment] = {}
for _carrier, _kind, _low, _specs in _TABLE:
    for _spec in _specs.split():
        for _prefix in _expand(_spec):
            SEGMENTS[_prefix] = Segment(_carrier, _kind, _low)


def mobile_prefix_info(digits: str) -> Segment | None:
    """Longest-prefix lookup (5, then 4, then 3 digits)."""
    for n in (5, 4, 3):
        seg = SEGMENTS.get(digits[:n])
        if seg is not None:
            return seg
    return None


def is_cn_mobile(digits: str, allow_data: bool = True, allow_iot: bool = False) -> bool:
    """True for a valid mainland mobile number given as bare ASCII digits."""
    if not digits.isascii() or not digits.isdigit():
        return False
    info = mobile_prefix_info(digits)
    if info is None:
        return False
    if info.kind == "iot":
        return allow_iot and len(digits) == 13
    if info.kind == "data" and not allow_data:
        return False
    return len(digits) == 11


@lru_cache(maxsize=1024)
def valid_prefixes5(prefix3: str) -> tuple[str, ...]:
    """All 5-digit prefixes under `prefix3` that start valid 11-digit numbers (used by fake)."""
    out = []
    for n in range(100):
        p5 = f"{prefix3}{n:02d}"
        seg = mobile_prefix_info(p5)
        if seg is not None and seg.kind != "iot":
            out.append(p5)
    return tuple(out)


# 3-digit prefixes under which at least one 11-digit number is valid; fake picks from these when
# the input has no usable prefix. Computed once, it is ~60 entries.
PHONE_PREFIXES3: tuple[str, ...] = tuple(
    p for p in (f"1{n:02d}" for n in range(30, 100)) if valid_prefixes5(p)
)
