"""Owns numbers hidden behind character references, escapes and markup (`&#49;`, `&#x31;`, `%31`,
`\\u0031`, `&ZeroWidthSpace;`, `138<em>1234</em>5678`), inside base64/hex tokens (`unhide_blobs`)
and behind separators the detectors do not read (`138.1234.5678`, `unhide_joined`): finds them and
masks them in place. Must not know body formats, headers, policies or I/O.

A browser, URL decoder or JavaScript engine turns `&#49;&#51;&#56;...` back into digits, so a detector
that reads only the raw text would pass a number the person then sees in full. Each run of such
tokens and plain digits/separators is decoded into a shadow text for the detectors; when the shadow
holds a number, the characters the detectors masked are written out masked and every other token
keeps its original form. Only tokens that decode to digits, separators or invisible characters
enter the shadow: anything else (`%3C`, `&#60;`) is a hole that no number spans, and is never
written out decoded, so masking never turns an escaped `<` into markup.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from functools import lru_cache
from html.entities import html5

from masking.normalize import fold_char

# Tokens a client decodes: numeric and named character references (any number of leading zeros),
# percent-encoded bytes, JavaScript escapes, `+` (a space in form encoding) and markup tags, which
# render as nothing between two digits (`138<em>1234</em>5678`, a search hit highlighted).
MAX_TAG = 256
_TOKEN_RE = re.compile(
    r"&#0*[0-9]{1,7};?|&#[xX]0*[0-9a-fA-F]{1,6};?|&[A-Za-z][A-Za-z0-9]{1,31};?|%[0-9a-fA-F]{2}"
    r"|\\u\{0*[0-9a-fA-F]{1,6}\}|\\u[0-9a-fA-F]{4}|\\x[0-9a-fA-F]{2}|\+"
    r"|<(?:/?[A-Za-z][^<>]{0,MAX}|!--[^<>]{0,MAX}?--)>".replace("MAX", str(MAX_TAG))
)
# Characters a run of digits may hold in plain form: digits, what detectors accept between digit
# groups, and an ID card's check character.
_PLAIN = frozenset("0123456789 \t()-Xx")
# What a decoded character must fold to (or to nothing) to be written out decoded.
_SAFE = frozenset("0123456789 \t()+-Xx")
_TAG_NAME_RE = re.compile(r"</?([A-Za-z][A-Za-z0-9]*)")
# Tags that render inline, as nothing between the characters around them.
_INLINE = frozenset(
    {
        *("a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "del", "dfn", "em", "font", "i"),
        *("ins", "kbd", "mark", "q", "s", "samp", "small", "span", "strong", "sub", "sup", "time"),
        *("tt", "u", "var", "wbr"),
    }
)
# A stretch of plain characters (one item) or one token.
_ITEM_RE = re.compile(f"(?P<plain>[{re.escape(''.join(sorted(_PLAIN)))}]+)|(?P<tok>{_TOKEN_RE.pattern})")
# A digit, or a named reference (`&sup1;` is a superscript one, NFKC a digit): what any encoding of
# a digit contains.
_DIGITISH_RE = re.compile(r"[0-9]|&[A-Za-z]")
# Stands in the shadow text for a token that is left encoded: no detector reads it as part of a number.
_HOLE = "\ue000"


def maybe_encoded(text: str) -> bool:
    """Cheap gate: could `text` hold a token at all?"""
    return "%" in text or "&" in text or "\\" in text or "+" in text or "<" in text


def unhide(text: str, mask: Callable[[str], str]) -> str:
    """`text` with every run of encoded digits that decodes to a detected number masked (by `mask`,
    the detectors' text masker); the same object when nothing was found."""
    out: list[str] = []
    pos = 0  # text[:pos] is decided (copied to `out`)
    n = len(text)
    changed = False
    while True:
        m = _TOKEN_RE.search(text, pos)
        if m is None:
            break
        start = m.start()
        while start > pos and text[start - 1] in _PLAIN:
            start -= 1
        end = m.end()
        while end < n:
            if text[end] in _PLAIN:
                end += 1
                continue
            nxt = _TOKEN_RE.match(text, end)
            if nxt is None:
                break
            end = nxt.end()
        run = text[start:end]
        masked = _mask_run(run, mask)
        if masked is not run:
            out.append(text[pos:start])
            out.append(masked)
            pos = end
            changed = True
        else:
            out.append(text[pos:end])
            pos = end
    if not changed:
        return text
    out.append(text[pos:])
    return "".join(out)


def _mask_run(run: str, mask: Callable[[str], str]) -> str:
    if _DIGITISH_RE.search(run) is None:
        return run  # only tags, `+` or spaces: no digit to hide (every digit's encoding holds one)
    if _PLUS_RUN_RE.fullmatch(run):
        return _mask_plus_run(run, mask)
    items = _decode_run(run)
    pieces: list[str] = []  # per item, what the shadow holds for it
    for orig, dec in items:
        if dec is None or not _safe(dec):
            pieces.append(_HOLE)
        else:
            pieces.append(" " if orig == "+" else dec)
    shadow = "".join(pieces)
    if not any(c.isdigit() for c in shadow):
        return run
    masked = mask(shadow)
    if masked is shadow or masked == shadow:
        return run
    if len(masked) == len(shadow):
        # Display masking keeps lengths: every item keeps its original form (its encoding, a
        # tag) unless a character of it was masked, which is then written out masked.
        out = []
        at = 0
        for (orig, _), piece in zip(items, pieces, strict=True):
            new = masked[at : at + len(piece)]
            at += len(piece)
            out.append(orig if new == piece else new)
        return "".join(out)
    # Another length (a masker that does not keep it): the masked shadow with the holes put back;
    # zero-width items (tags) are dropped, nothing hidden is written out decoded.
    kept = [orig for (orig, _), piece in zip(items, pieces, strict=True) if piece == _HOLE]
    parts = masked.split(_HOLE)
    if len(parts) != len(kept) + 1:
        return masked.replace(_HOLE, "")
    out = [parts[0]]
    for tok, part in zip(kept, parts[1:], strict=True):
        out.append(tok)
        out.append(part)
    return "".join(out)


# A run of plain characters and `+` only (`138+1234+5678`, or `1+1+1+…` a page echoes back): its
# shadow is the run with `+` read as a space, one character for one, so it is built and written
# back at C speed instead of item by item (which costs a tuple per token: seconds on 190 KB).
_PLUS_RUN_RE = re.compile(f"[{re.escape(''.join(sorted(_PLAIN)))}+]+")
_PLUS_TO_SPACE = str.maketrans("+", " ")


def _mask_plus_run(run: str, mask: Callable[[str], str]) -> str:
    shadow = run.translate(_PLUS_TO_SPACE)
    masked = mask(shadow)
    if masked is shadow or masked == shadow:
        return run
    if len(masked) != len(shadow):
        return masked  # every character of the run was plain or a space: nothing stays hidden
    # Characters the masker kept keep their original form (a `+` stays a `+`).
    return "".join(o if m == s else m for o, s, m in zip(run, shadow, masked, strict=True))


def _decode_run(run: str) -> list[tuple[str, str | None]]:
    """(original text, decoded character or None) per character or token of a run. Consecutive
    `%HH` bytes are read as UTF-8 (`%EF%BC%91` is a full-width 1) and `\\uD835\\uDFCF` surrogate
    pairs as one character (a mathematical digit), as decoders do."""
    items: list[tuple[str, str | None]] = []
    pct: list[tuple[str, int]] = []

    def flush() -> None:
        i = 0
        while i < len(pct):
            b = pct[i][1]
            size = (
                1
                if b < 0x80
                else 2
                if 0xC0 <= b < 0xE0
                else 3
                if 0xE0 <= b < 0xF0
                else 4
                if 0xF0 <= b < 0xF8
                else 0
            )
            if size and i + size <= len(pct):
                try:
                    ch = bytes(p[1] for p in pct[i : i + size]).decode("utf-8")
                except UnicodeDecodeError:
                    ch = None
                if ch is not None:
                    items.append(("".join(p[0] for p in pct[i : i + size]), ch))
                    i += size
                    continue
            items.append((pct[i][0], None))
            i += 1
        pct.clear()

    i = 0
    while i < len(run):
        m = _ITEM_RE.match(run, i)
        if m is None:  # not reached: a run holds plain stretches and tokens only
            flush()
            items.append((run[i], None))
            i += 1
            continue
        i = m.end()
        if m.lastgroup == "plain":
            if pct:
                flush()
            stretch = m.group()
            items.append((stretch, stretch))
            continue
        tok = m.group()
        if tok[0] == "%":
            pct.append((tok, int(tok[1:], 16)))
            continue
        if pct:
            flush()
        items.append((tok, _decode_token(tok)))
    if pct:
        flush()
    # Join surrogate pairs written as two \u escapes.
    joined: list[tuple[str, str | None]] = []
    for orig, ch in items:
        if (
            ch is not None
            and "\udc00" <= ch <= "\udfff"
            and joined
            and joined[-1][1] is not None
            and "\ud800" <= joined[-1][1] <= "\udbff"  # type: ignore[operator]
        ):
            prev_orig, hi = joined.pop()
            pair = chr(0x10000 + ((ord(hi) - 0xD800) << 10) + (ord(ch) - 0xDC00))  # type: ignore[arg-type]
            joined.append((prev_orig + orig, pair))
        else:
            joined.append((orig, ch))
    return joined


@lru_cache(maxsize=1024)
def _safe(decoded: str) -> bool:
    """Whether a decoded token may enter the shadow (and the output): it folds to digits,
    separators, an ID's X, or to nothing."""
    return all(c in _SAFE for ch in decoded for c in fold_char(ch))


def _decode_token(tok: str) -> str | None:
    c = tok[0]
    if c == "+":
        return "+"  # a space in form encoding: the shadow reads it as one
    if c == "<":
        # An inline tag renders as nothing between two characters, any other (a table cell, a
        # line break) as a gap: a reader still reads 138 1234 5678 across three cells.
        m = _TAG_NAME_RE.match(tok)
        return "" if m is None or m.group(1).lower() in _INLINE else " "
    if tok.startswith("&#"):
        body = tok[2:].rstrip(";")
        cp = int(body[1:], 16) if body[0] in "xX" else int(body)
    elif c == "&":
        name = tok[1:]
        return html5.get(name if name.endswith(";") else name + ";") or html5.get(name)
    elif tok.startswith("\\u{"):
        cp = int(tok[3:-1], 16)
    else:  # \uHHHH, \xHH
        cp = int(tok[2:], 16)
    return chr(cp) if cp <= 0x10FFFF else None


# -------------------------------------------------------------------------- base64 and hex blobs
#
# An opaque cursor (`eyJtb2JpbGUiOiAi...`), a hex-encoded memo or a base64 field carries a number
# any client decodes in one call. A token of the base64 or hex alphabet long enough to hold seven
# digits (what every detected class has) is decoded; when the decoded bytes hold a detected number,
# the token is replaced by the same encoding of the masked bytes, so a cursor stays a cursor.
_BLOB_RE = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{10,}={0,2}(?![A-Za-z0-9+/_=-])")
_HEX = frozenset("0123456789abcdefABCDEF")
_DIGIT_BYTES = b"0123456789"


def unhide_blobs(text: str, mask: Callable[[str], str]) -> str:
    """`text` with every base64/base64url/hex token whose decoded bytes hold a number the
    detectors find (`mask`, the text masker) replaced by the encoding of the masked bytes; the same
    object when nothing was found."""
    if len(text) < 10:
        return text
    out: list[str] = []
    pos = 0
    for m in _BLOB_RE.finditer(text):
        new = _mask_blob(m.group(), mask)
        if new is not None:
            out.append(text[pos : m.start()])
            out.append(new)
            pos = m.end()
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def _mask_blob(tok: str, mask: Callable[[str], str]) -> str | None:
    body = tok.rstrip("=")
    if len(body) % 2 == 0 and len(body) >= 14 and all(c in _HEX for c in body) and tok == body:
        masked = _mask_bytes(bytes.fromhex(body), mask)
        if masked is not None:
            return masked.hex().upper() if body.isupper() else masked.hex()
    url = "-" in body or "_" in body
    if url and ("+" in body or "/" in body):
        return None  # two alphabets: not base64
    if len(body) % 4 == 1:
        return None
    std = body.replace("-", "+").replace("_", "/") if url else body
    try:
        raw = base64.b64decode(std + "=" * (-len(std) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    masked = _mask_bytes(raw, mask)
    if masked is None:
        return None
    enc = base64.urlsafe_b64encode(masked) if url else base64.b64encode(masked)
    s = enc.decode("ascii")
    return s if tok != body or len(body) % 4 == 0 else s.rstrip("=")


def _mask_bytes(raw: bytes, mask: Callable[[str], str]) -> bytes | None:
    """The masked bytes when `raw` read as text holds a detected number, else None."""
    if len(raw) - len(raw.translate(None, _DIGIT_BYTES)) < 7:
        return None
    try:
        text, codec = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, codec = raw.decode("latin-1"), "latin-1"  # byte for byte: digits stay where they are
    masked = mask(text)
    if maybe_encoded(masked):
        masked = unhide(masked, mask)
    if masked is text or masked == text:
        return None
    return masked.encode(codec, errors="replace")


# ---------------------------------------------------------------------- digits joined unusually
#
# Digit groups joined by characters the detectors do not read between groups (`138.1234.5678`,
# `138_1234_5678`, `138/1234/5678`, a line break) or written one digit per space (`1 3 8 1 …`): a
# reader joins them at a glance. The detectors (shared with SQL, not changed here) read the digits
# alone; the masked digits are written back in place, the joining characters stay.
_JOINED_RE = re.compile(
    r"(?<![0-9])[0-9]+(?:(?:[._/]|\r?\n)[0-9]+)+(?![0-9])|(?<![0-9])[0-9](?: [0-9]){6,}(?![0-9])"
)
_DIGITS = frozenset("0123456789")


def unhide_joined(text: str, mask: Callable[[str], str]) -> str:
    """`text` with every run of digit groups joined by `.`, `_`, `/`, line breaks, or single
    spaces between single digits, whose digits hold a detected number, masked in place; the same
    object when nothing was found."""
    out: list[str] = []
    pos = 0
    for m in _JOINED_RE.finditer(text):
        run = m.group()
        digits = "".join(c for c in run if c in _DIGITS)
        if len(digits) < 7:  # every detected class has seven digits or more
            continue
        masked = mask(digits)
        if masked is digits or masked == digits:
            continue
        if len(masked) == len(digits):
            chars = iter(masked)
            new = "".join(next(chars) if c in _DIGITS else c for c in run)
        else:
            new = masked
        out.append(text[pos : m.start()])
        out.append(new)
        pos = m.end()
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


_GLUED_RE = re.compile(r"(?<![0-9])[0-9]{12,16}(?![0-9])")


def unhide_glued(text: str, mask: Callable[[str], str]) -> str:
    """`text` with every run of 12 to 16 digits that holds a number glued to other digits
    (`00` before a phone, the hex digits of an escape a client decodes, `%2522` + a phone) masked
    in place: the detectors read a whole run, and a run one digit too long is no number to them,
    while its reader sees the number in it. The same object when nothing was found."""
    out: list[str] = []
    pos = 0
    for m in _GLUED_RE.finditer(text):
        run = m.group()
        for i in range(len(run) - 10):
            window = run[i : i + 11]
            masked = mask(window)
            if masked != window and len(masked) == len(window):
                out.append(text[pos : m.start()])
                out.append(run[:i] + masked + run[i + 11 :])
                pos = m.end()
                break
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def scanner(tm: Callable[[str], str]) -> Callable[[str], str]:
    """The detectors' text masker `tm`, extended to what encodings hide: `tm` also sees (and
    masks in place) the numbers behind references, escapes, markup, blobs and separators, and
    numbers glued to other digits."""

    def scan(s: str) -> str:
        out = tm(s)
        if maybe_encoded(out):
            out = unhide(out, tm)
        return unhide_glued(unhide_blobs(unhide_joined(out, tm), tm), tm)

    return scan
