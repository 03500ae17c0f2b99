"""Numbers disguised for a [0-9] regex but not for a reader are still masked, native and reference.

The class of the red team's findings (test_redteam_native.py): invisible format characters, combining
marks and variation selectors between digits, decimal digits of other scripts (mixed digit by digit)
and enclosed digits, and separator runs of up to three characters between the customary groups. Each
example plants one valid number so disguised after its context word and checks that a reader cannot
recover it from the masked text, on the C path and on the pure-Python path alike.
"""

from __future__ import annotations

import re
import unicodedata
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import masking.detectors as d
import masking.text
from masking.classes import DEFAULT_KEY
from tests.masking.strategies import bank_cards, id18s, mobiles

ALL = frozenset(d.DETECTABLE)
PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200e", "\u2061", "\U000e0031"]
MARKS = ["\u0301", "\u0332", "\u0308", "\ufe0f", "\ufe00", "\u20e3", "\u20dd", "\U000e0100"]
# Zeros of decimal digit sets (digit d is chr(zero + d)); NFKC folds only the last two.
ZEROS = [0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0x1040, 0x17E0, 0xFF10, 0x1D7CE]
# Digits without a zero in their set: ⑴ (parenthesised), ⒈ (full stop), 🄂 (comma); for d >= 1.
ENCLOSED_ONE = [0x2474, 0x2488, 0x1F102]

# (context word, strategy, group lengths, separator alphabet): the groups people write.
KINDS = [
    ("手机", mobiles(), (3, 4, 4), " -()\t"),
    ("身份证", id18s(), (6, 8, 4), " -"),
    ("卡号", bank_cards(), (4, 4, 4, 4, 3), " -"),
]


def _maskers() -> tuple:
    fast = masking.text._build.__wrapped__(ALL, "mask", DEFAULT_KEY)
    with patch.object(d, "_native", None):
        slow = masking.text._build.__wrapped__(ALL, "mask", DEFAULT_KEY)
    return fast, slow


FAST, SLOW = _maskers()


def _visible_digits(masked: str) -> str:
    """What a reader recovers: every character with a digit value, in order; the rest ignored."""
    return "".join(str(unicodedata.digit(c)) for c in masked if unicodedata.digit(c, None) is not None)


@st.composite
def disguised(draw: st.DrawFn) -> tuple[str, str]:
    """(text, the digits of the planted number)."""
    word, values, groups, seps = draw(st.sampled_from(KINDS))
    number = draw(values)
    bounds = set()
    pos = 0
    for g in groups:
        pos += g
        bounds.add(pos)
    grouped = draw(st.booleans())
    out = []
    for i, c in enumerate(number):
        if c.isdigit():
            how = draw(st.sampled_from(["ascii", "ascii", "zero", "enclosed"]))
            if how == "zero":
                c = chr(draw(st.sampled_from(ZEROS)) + int(c))
            elif how == "enclosed" and c != "0":
                c = chr(draw(st.sampled_from(ENCLOSED_ONE)) + int(c) - 1)
        out.append(c)
        out.extend(draw(st.lists(st.sampled_from(MARKS), max_size=2)))
        out.extend(draw(st.lists(st.sampled_from(INVISIBLE), max_size=1)))
        if grouped and i + 1 in bounds and i + 1 < len(number):
            out.append(draw(st.text(st.sampled_from(seps), min_size=1, max_size=3)))
    return f"{word}{''.join(out)}。", re.sub(r"[^0-9]", "", number)


@PROFILE
@given(disguised())
def test_disguised_numbers_are_masked_on_both_paths(case: tuple[str, str]) -> None:
    text, number = case
    assert d.detect_in(text, ALL) == _reference_detect(text), repr(text)
    masked = FAST(text)
    assert masked == SLOW(text), repr(text)
    assert number not in _visible_digits(masked), (text, masked)


def _reference_detect(text: str) -> list[d.Span]:
    with patch.object(d, "_native", None):
        return d.detect_in(text, ALL)


def test_display_rule_applies_through_invisible_characters_and_other_scripts() -> None:
    # shapes.scan skips what the fold deletes and reads other scripts' digits, so the class's
    # display rule (not the generic all-stars) hides the same digits it hides in plain ASCII.
    assert FAST("手机138\u200b1234\u200b5678") == "手机138\u200b****\u200b5678"
    assert FAST("手机١٣٨١٢٣٤٥٦٧٨") == "手机١٣٨****٥٦٧٨"
    assert FAST("身份证 110101 19900307 1233") == "身份证 110*** ******** 1233"
    assert FAST("手机 (138)1234-5678") == "手机 (138)****-5678"
