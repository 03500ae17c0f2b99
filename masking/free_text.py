"""Owns the `free_text` container class: whole note columns that may hold personal numbers anywhere.

Support-ticket notes, call notes and comments are not values of one class, so no display rule
applies to them. A DBA classifies such a column `free_text`; the policy engine then redacts any
value derived from it (reverse, translate, substr, regexp_match ... defeat detectors) and refuses
predicates on it, and a plain pass-through value is masked here by running the detectors over it.

Detectors: every class with a free-text finder (`DETECTABLE`: the personal classes plus uscc and
ip_address). In a note, erring toward masking is right: a sole trader's USCC or a customer's login
IP is hidden too. So `mask` on a str is exactly `mask_text(value)` with every class: detected
spans get their class display rule in place (`来电号码138****5678`), the rest stays, and masking is
idempotent because masked spans are no longer detected.

Per action:
- `mask`: str as above. bytes are masked as UTF-8 text; undecodable bytes are redacted whole, as for
  every class (decoding with surrogateescape was rejected: digits in another encoding, such as
  GBK full-width digits, would pass the detectors unseen). An int is read as its decimal digits,
  masked, and the hidden digits are zeroed (13812345678 -> 13800005678); zeroing can make new
  digit runs valid (a Luhn pass), so this is repeated until nothing changes, which keeps int
  masking idempotent. A float is masked the same way through repr() and stays a float.
- `redact`: as for every class ('*' per character, an int 0, a float 0.0).
- `hash`: the class-prefixed HMAC token of the whole value (`free_text_<hex>`); an int gets an
  HMAC-derived int with the same digit count, as for every class.
- `fake`: each detected span becomes a format-valid fake of its class (the text fakers), the rest
  stays. When nothing is detected the text would equal its input, which a fake never does: the value
  is replaced by Faker zh_CN sentences of the same length seeded from HMAC(key, value). An int
  keeps its digit count (span fakes when they are all digits, else a digit-for-digit generic fake).
  Fakes replace what the detectors find; text nobody may read should be redacted or hashed.
- `null`, `clear`: as for every class (handled by column.make_masker).
Other types (and floats under hash and fake) are masked through str() and returned as str.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from masking.classes import FREE_TEXT
from masking.detectors import DETECTABLE
from masking.fake import fake_generic, fake_sentence
from masking.maskers import make_hash_int, make_hash_str, to_int_like, typed_masker
from masking.text import make_text_masker

# Every class the detectors can find in text (address has no free-text finder).
FREE_TEXT_DETECTORS = DETECTABLE

StrFn = Callable[[str], str]


def _zero_until_stable(s: str, text_mask: StrFn) -> str:
    """Mask a digit string and zero what was hidden, until a pass changes nothing.

    Each pass only turns digits into '0', so the loop ends after at most len(s) passes.
    """
    for _ in range(len(s) + 1):
        out = text_mask(s)
        if out == s:
            return s
        if len(out) != len(s):  # a display rule that shortens (ip_address) cannot be zeroed in place
            return "".join("0" if c.isdigit() else c for c in s)
        s = "".join("0" if c == "*" else c for c in out)
    return s


def _make_fns(action: str, key: bytes) -> tuple[StrFn, Callable[[int], int], Callable[[float], Any]]:
    if action == "mask":
        text_mask = make_text_masker(FREE_TEXT_DETECTORS, "mask", key=key)

        def mask_int(v: int) -> int:
            s = str(abs(v))
            out = _zero_until_stable(s, text_mask)
            return v if out == s else to_int_like(out, v)

        def mask_float(v: float) -> float:
            s = repr(v)
            out = _zero_until_stable(s, text_mask)
            return v if out == s else float(out)

        return text_mask, mask_int, mask_float
    if action == "redact":

        def redact(s: str) -> str:
            return "*" * len(s)

        return redact, lambda v: 0, lambda v: 0.0
    if action == "hash":
        hash_str = make_hash_str(FREE_TEXT, key)
        return hash_str, make_hash_int(FREE_TEXT, key), lambda v: hash_str(str(v))
    if action == "fake":
        text_fake = make_text_masker(FREE_TEXT_DETECTORS, "fake", key=key)

        def fake_text(s: str) -> str:
            out = text_fake(s)
            return out if out != s else fake_sentence(s, FREE_TEXT, key)

        def fake_int(v: int) -> int:
            s = str(abs(v))
            out = text_fake(s)
            if out == s or not (out.isascii() and out.isdigit() and len(out) == len(s)):
                out = fake_generic(s, FREE_TEXT, key, digits_only=True)
            return to_int_like(out, v)

        return fake_text, fake_int, lambda v: fake_text(str(v))
    raise ValueError(f"no free_text function for action {action!r}")


def build_free_text_masker(action: str, key: bytes) -> Callable[[Any], Any]:
    """The per-column masker of a free_text column for mask/hash/fake/redact (validated by the caller)."""
    return typed_masker(*_make_fns(action, key))
