"""Owns text normalisation for detection (NFKC + dash folding) and the offset map back to the original.

Only characters whose fold a detector can see (digits, Latin letters, phone and e-mail symbols,
spaces, dashes, the ideographs of context words) trigger folding; text without them is returned as is.

Beyond NFKC, the fold defeats the ways a number is hidden from a [0-9] regex while staying
readable (a red-team finding): invisible characters (format characters such as ZWSP, WJ, BOM and
the soft hyphen; combining marks and variation selectors) are deleted, and every character with a
digit value (other scripts' decimal digits, which NFKC keeps; ⑴ ⒈ 🄁, which NFKC turns into
digit plus punctuation) becomes its ASCII digit.

Detectors match on normalised text but must report offsets into the text they were given, so
every normalisation here is done per character and remembers where each output character came
from. Imports nothing outside the standard library.
"""

from __future__ import annotations

import re
import unicodedata

# PII.md §0.1: dash variants that people (and word processors) put into phone and card numbers.
DASHES = "‐‑‒–—―−－ー"


class _FoldTable(dict[int, str]):
    """str.translate table that computes and caches the per-character fold on first sight.

    Per-character NFKC rather than whole-string NFKC: it loses canonical composition of
    combining sequences, which no detector needs, and in exchange every output character has a
    known source position.
    """

    def __missing__(self, cp: int) -> str:
        ch = chr(cp)
        if ch in DASHES:
            folded = "-"
        elif 0xD800 <= cp <= 0xDFFF:
            folded = ch  # lone surrogate (surrogateescape input): no character properties to read
        else:
            folded = "".join(_fold_one(c) for c in unicodedata.normalize("NFKC", ch))
            digit = unicodedata.digit(ch, None)
            if digit is not None:
                folded = str(digit)  # ⑴ -> 1, not (1): the punctuation would split the digit run
        self[cp] = folded
        return folded


def _fold_one(c: str) -> str:
    """One character of an NFKC form: deleted when invisible, an ASCII digit when it is a digit."""
    if unicodedata.category(c) in _INVISIBLE:
        return ""
    digit = unicodedata.digit(c, None)
    return c if digit is None else str(digit)


# Format characters (ZWSP, ZWJ, WJ, BOM, soft hyphen, bidi controls, tags) and nonspacing or
# enclosing marks (combining accents, variation selectors, the keycap): they render as nothing
# or on top of the previous character, so a reader sees through them and a detector must too.
_INVISIBLE = frozenset({"Cf", "Mn", "Me"})


_FOLD = _FoldTable()


def fold_char(ch: str) -> str:
    """The normalised form of one character (may be longer than one character)."""
    return _FOLD[ord(ch)]


# Characters whose fold matters to a detector: ASCII letters, digits, separators and the symbols of
# phone prefixes and e-mail addresses, plus deletions (an invisible character may split a number or
# a context word) and folds onto CJK ideographs (compatibility ideographs in context words: 旅\ufa08证).
# Other folds (，-> ,) change nothing a detector looks at, so text containing none of these skips
# folding entirely.
_RELEVANT = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ@+-().%_ \t")
_foldable_re: re.Pattern[str] | None = None


def _build_foldable_re() -> re.Pattern[str]:
    """A character class of every non-ASCII BMP character whose fold yields a relevant character,
    plus all astral characters (mathematical digits and the like); built once, on first use."""
    chars = []
    for cp in range(0x80, 0x10000):
        if 0x4E00 <= cp <= 0x9FFF or 0xD800 <= cp <= 0xDFFF:
            continue  # unified ideographs are NFKC-stable; surrogates are not characters
        folded = _FOLD[cp]
        if folded != chr(cp) and (not folded or any(c in _RELEVANT or _is_ideograph(c) for c in folded)):
            chars.append(re.escape(chr(cp)))
    return re.compile("[" + "".join(chars) + "\U00010000-\U0010ffff]")


def _is_ideograph(c: str) -> bool:
    return "\u3400" <= c <= "\u4dbf" or "\u4e00" <= c <= "\u9fff"


def needs_folding(text: str) -> bool:
    """True when folding `text` could change what a detector sees."""
    global _foldable_re
    if _foldable_re is None:
        _foldable_re = _build_foldable_re()
    return _foldable_re.search(text) is not None


def normalize(text: str) -> tuple[str, list[int] | None]:
    """Return (normalised text, offsets).

    `offsets` is None when every character folded to exactly one character, in which case
    positions coincide. Otherwise offsets[i] is the index in `text` of the character that
    produced normalised character i, with a final sentinel equal to len(text). Deleted
    characters produce no entry, so a span mapped back covers the invisible characters inside
    it (and none around it).
    """
    if text.isascii() or not needs_folding(text):
        return text, None
    folded = text.translate(_FOLD)
    if len(folded) == len(text) and all(len(_FOLD[ord(ch)]) == 1 for ch in text):
        return folded, None
    offsets: list[int] = []
    for i, ch in enumerate(text):
        offsets.extend([i] * len(_FOLD[ord(ch)]))
    offsets.append(len(text))
    return folded, offsets


def to_original(offsets: list[int] | None, start: int, end: int) -> tuple[int, int]:
    """Map a [start, end) range of the normalised text back to the original text."""
    if offsets is None:
        return start, end
    return offsets[start], offsets[end - 1] + 1 if end > start else offsets[start]
