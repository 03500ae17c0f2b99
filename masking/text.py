"""Owns masking of free text: every detected span is replaced, everything else is left byte-for-byte.

`make_text_masker` is the proxy's per-value hot path. Most values hold no PII, so it returns the
very same str object when nothing is found, and ASCII values without a digit or '@' (and, for names,
without any CJK context) are rejected before any detector regex runs.

Per span, `mask` applies the class display rule in place (separators and country prefixes stay:
`+86 138-****-5678`), `hash` replaces the whole span with a class-prefixed token, `fake` writes a
format-valid fake in place, `redact` writes '*' over every character, and `null` removes the span.
A value longer than MAX_SCANNED_CHARS is replaced whole by `****`, since it is too long to scan.
Display masking keeps lengths for every class except ip_address, whose hidden octets and groups
become one '*' each (`10.12.*.*`), as in column masking. `address` is accepted but, having no
free-text detector, masks nothing in text; `free_text` (a column container class, not something
found inside text) is accepted and ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache

from masking.classes import DEFAULT_KEY, check_action, resolve_classes
from masking.detectors import DETECTABLE, DIGIT_TRIGGERED, find_candidates, text_finder
from masking.maskers import make_str_fn
from masking.normalize import to_original

_ASCII_TRIGGER = {
    (True, True): re.compile(r"[0-9@]"),
    (True, False): re.compile(r"[0-9]"),
    (False, True): re.compile(r"@"),
}


# Scanning costs up to ~1.2 µs per character on text dense with numbers, and it runs where every
# session waits on it: a longer value is not scanned but replaced whole (fail closed), so one
# computed value (`repeat('13812345678 ', 10^6)`) cannot stall the proxy.
MAX_SCANNED_CHARS = 256 * 1024
TOO_LONG = "****"


def _identity(text: str) -> str:
    return text


@lru_cache(maxsize=128)
def _build(wanted: frozenset[str], action: str, key: bytes) -> Callable[[str], str]:
    check_action(action)
    wanted = wanted & DETECTABLE  # address and free_text: accepted, never found in text
    if action == "clear" or not wanted:
        return _identity  # nothing to find (address alone is column-only)
    if action == "null":
        replacers: dict[str, Callable[[str], str]] = {cls: (lambda s: "") for cls in wanted}
    else:
        replacers = {cls: make_str_fn(cls, action, key) for cls in wanted}
    need_digits = not wanted.isdisjoint(DIGIT_TRIGGERED)
    need_at = "email" in wanted
    # Names are found only next to CJK context words, so pure-ASCII text can skip them.
    trigger = _ASCII_TRIGGER.get((need_digits, need_at))
    search = trigger.search if trigger is not None else None
    find = text_finder(wanted)

    def mask(text: str) -> str:
        if len(text) > MAX_SCANNED_CHARS:
            return TOO_LONG
        if text.isascii():
            if search is None or search(text) is None:
                return text
            cands, offsets = find_candidates(text, wanted), None
        else:
            cands, offsets = find(text)
        if not cands:
            return text
        parts = []
        pos = 0
        for start, end, cls, _conf in cands:
            s, e = (start, end) if offsets is None else to_original(offsets, start, end)
            parts.append(text[pos:s])
            parts.append(replacers[cls](text[s:e]))
            pos = e
        parts.append(text[pos:])
        return "".join(parts)

    return mask


def make_text_masker(
    classes: Iterable[str] | None, action: str = "mask", *, key: bytes = DEFAULT_KEY
) -> Callable[[str], str]:
    """A function masking every detected span of `classes` (None: all) in a text value."""
    return _build(resolve_classes(classes), action, key)


def mask_text(
    text: str, classes: Iterable[str] | None = None, action: str = "mask", *, key: bytes = DEFAULT_KEY
) -> str:
    """Mask every detected span of `classes` (None: all) in `text`, leaving the rest intact."""
    return make_text_masker(classes, action, key=key)(text)
