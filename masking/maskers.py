"""Owns per-value masking: display rules per class, the generic fallback, keyed hashing, and type plumbing.

Display rules (PII.md §1.3, §2.5, §3.2, §5, §6): mobile 138****5678; ID first 3 + last 4 so the
birth date is always hidden; bank card BIN + last 4; USCC first 8 + last 2; landline area code + last 4;
email first character of the local part; names keep surname and (for 3+ chars) the last character;
passports leading letters + last 2; addresses province, city and district/county, then up to 8 '*'
(§5.4); IPv4 the first two octets (10.12.*.*) and IPv6 the first two groups, each hidden octet or
group becoming one '*' (so the output is never longer than the input, and never shows widths).
A value that does not have its class's shape is masked by the generic rule instead, never passed through.

A value "has the shape" when its characters are right even if checksums fail: the display rule then
hides exactly what it hides for a valid value, and '*' counts as a digit so that masking is idempotent.

Type preservation: str stays str; int stays int with hidden digits zeroed (13812345678 ->
13800005678); bytes are masked as UTF-8 text and undecodable bytes are redacted whole. An int cannot
carry a class prefix, so `hash` on an int yields an HMAC-derived integer with the same digit count.
An int ip_address is read as a 32-bit IPv4 value, and `mask` zeroes its last two octets.
Types other than these are masked through str() and returned as str.

`free_text` is a container class (whole note columns) with its own masker: masking/free_text.py.
Which masker a (class, action) pair gets is masking/column.py's business; this module is a leaf
that the text scanner and the free-text masker build on.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any

from masking.fake import fake_generic, fake_str
from masking.names import NAME_DOTS, is_cjk, split_name
from masking.shapes import (
    ALNUM_UPPER_STAR,
    DIGITS_STAR,
    GROUP_SEPARATORS,
    PHONE_SEPARATORS,
    canonical,
    fold_same_length,
    hide,
    scan,
)

StrFn = Callable[[str], str]


# -- generic ---------------------------------------------------------------------------------------


def mask_generic(s: str) -> str:
    """Keep first 3 and last 4 only when that still hides at least half, else hide everything."""
    n = len(s)
    if n >= 14:
        return s[:3] + "*" * (n - 7) + s[-4:]
    return "*" * n


# -- display rules per class (None: the value does not have the class's shape) ---------------------


def mask_mobile(s: str) -> str | None:
    if len(s) == 11 and s.isascii() and s.isdigit() and s[0] == "1":
        return s[:3] + "****" + s[7:]  # the column hot path
    parsed = scan(s, DIGITS_STAR, PHONE_SEPARATORS)
    if parsed is None:
        return None
    pos, d = parsed
    n = len(d)
    if n == 13 and d.startswith("14"):  # IoT number: keep 3 + last 4
        return hide(s, pos, 3, n - 4)
    if (n == 11 and d[0] == "1") or (n == 13 and d.startswith("861")) or (n == 15 and d.startswith("00861")):
        return hide(s, pos, n - 8, n - 4)  # national digits 4-7
    return None


def mask_id_card(s: str) -> str | None:
    if len(s) == 18 and s.isascii() and s[:17].isdigit() and s[17] in "0123456789Xx":
        return s[:3] + "***********" + s[14:]  # the common case, without a character scan
    parsed = scan(s, DIGITS_STAR | {"X", "x"}, GROUP_SEPARATORS)
    if parsed is None:
        return None
    pos, d = parsed
    body_ok = all(c in DIGITS_STAR for c in d[:-1])
    if (len(d) == 18 and body_ok) or (len(d) == 15 and body_ok and d[-1] in DIGITS_STAR):
        return hide(s, pos, 3, len(d) - 4)
    return None


def mask_bank_card(s: str) -> str | None:
    n = len(s)
    if 16 <= n <= 19 and s.isascii() and s.isdigit():
        return s[:6] + "*" * (n - 10) + s[-4:]
    parsed = scan(s, DIGITS_STAR, GROUP_SEPARATORS)
    if parsed is None:
        return None
    pos, d = parsed
    if 16 <= len(d) <= 19:
        return hide(s, pos, 6, len(d) - 4)
    if 12 <= len(d) <= 15:  # not a PAN length: show only the last 4
        if d[3:-4] == "*" * (len(d) - 7):
            return s  # the generic rule's output (first 3 + last 4): re-hiding would break idempotence
        return hide(s, pos, 0, len(d) - 4)
    return None


def mask_uscc(s: str) -> str | None:
    parsed = scan(s, ALNUM_UPPER_STAR, GROUP_SEPARATORS)
    if parsed is None or len(parsed[1]) != 18:
        return None
    if parsed[1][3:14] == "*" * 11:
        # The generic rule's output for an 18-character value (first 3 + last 4) has this shape and
        # already hides more than first 8 + last 2 would show; re-hiding 14-15 would break idempotence.
        return s
    return hide(s, parsed[0], 8, 16)


LANDLINE_SHAPE_RE = re.compile(
    r"[ \t]*(?:(?:\+|00)86[ \t-]?(?:\(0?\)[ \t]?)?(?:10|2[0-9]|[3-9][0-9]{2})[ \t-]?"
    r"|\(?0(?:10|2[0-9]|[3-9][0-9]{2})\)?[ \t-]?)?"
    r"(?P<sub>[0-9*]{3,4}[ \t-]?[0-9*]{4})"
    r"(?:[ \t]*(?:-|转|ext\.?|x|#)[ \t]*[0-9*]{1,6})?[ \t]*",
    re.I | re.A,
)


def mask_landline(s: str) -> str | None:
    folded = fold_same_length(s)
    m = LANDLINE_SHAPE_RE.fullmatch(folded) if folded is not None else None
    if m is None:
        return None
    lo, hi = m.span("sub")
    pos = [i for i in range(lo, hi) if folded[i] in DIGITS_STAR]  # type: ignore[index]
    return hide(s, pos, 0, len(pos) - 4)


def mask_email(s: str) -> str | None:
    folded = fold_same_length(s)
    if folded is None:
        return None
    at = folded.rfind("@")
    domain = folded[at + 1 :]
    if at <= 0 or "." not in domain or any(c.isspace() for c in folded):
        return None
    if at == 1:
        return "*" + s[at:]  # keeping the only character would hide nothing
    return s[0] + "*" * (at - 1) + s[at:]


def _mask_name_part(part: str) -> str:
    surname, given = split_name(part)
    if len(given) >= 2:
        return surname + "*" * (len(given) - 1) + given[-1]
    if given:
        return surname + "*"
    return "*" * len(part)


_LATIN_NAME_RE = re.compile(
    r"(?:[^\W\d_][^\W\d_'.-]*|[^\W\d_]\*+)(?:[ .'-]+(?:[^\W\d_][^\W\d_'.-]*|[^\W\d_]\*+))*"
)


def mask_person_name(s: str) -> str | None:
    # Longer than the generic rule's threshold is not a name; the bound also keeps generic output
    # (3 + stars + 4) from looking like a name, which idempotency needs.
    if not s or s != s.strip() or len(s) >= 14:
        return None
    if all(is_cjk(c) or c in NAME_DOTS or c == "*" for c in s):
        if any(c in NAME_DOTS for c in s):
            # Transliterated names (阿依古丽·买买提): each part keeps its first character.
            out = []
            for c in s:
                out.append(c if c in NAME_DOTS or not out or out[-1] in NAME_DOTS else "*")
            return "".join(out)
        return _mask_name_part(s)
    if _LATIN_NAME_RE.fullmatch(s):
        # Latin-script names: each word keeps its initial.
        return re.sub(r"(?<=[^\s.\-'])[^\s.\-']", "*", s)
    return None


def mask_passport(s: str) -> str | None:
    # Documents are at most 11 characters (H1234567890); like names, a value as long as the generic
    # rule's threshold is not one, which also keeps generic output from being re-masked as a passport.
    if len(s) >= 14:
        return None
    parsed = scan(s, ALNUM_UPPER_STAR | frozenset("abcdefghijklmnopqrstuvwxyz"), GROUP_SEPARATORS)
    if parsed is None:
        return None
    pos, d = parsed
    letters = 0
    while letters < min(2, len(d)) and d[letters].isalpha():
        letters += 1
    keep_first = max(letters, 1)
    n = len(d)
    if n < 7 or not any(c.isdigit() or c == "*" for c in d[letters:]):
        return None
    return hide(s, pos, keep_first, n - 2)


# PII.md §5.4: province (or municipality), prefecture-level city, district/county. Component names
# are CJK runs that never contain street-level characters, so a compound or road name is not taken
# for a district (城西银泰城小区 is hidden, not kept); when in doubt less is kept, never more.
_ADDR_NAME = r"(?:(?![路街巷弄号栋幢室楼村镇乡])[\u3400-\u4dbf\u4e00-\u9fff])"
_ADDRESS_PREFIX_RE = re.compile(
    r"(?:中华人民共和国|中国)?"
    r"(?P<province>(?:北京|上海|天津|重庆)市|NAME{2,7}?(?:省|自治区|特别行政区))?"
    r"(?P<city>NAME{2,9}?(?:自治州|地区|盟|市))?"
    r"(?P<district>NAME{1,8}?(?:(?<![小社园校景厂营])区|县|旗|市))?".replace("NAME", _ADDR_NAME)
)
ADDRESS_MAX_STARS = 8


def mask_address(s: str) -> str | None:
    """Keep province, city and district/county; the rest becomes up to 8 '*' (PII.md §5.4, §6)."""
    m = _ADDRESS_PREFIX_RE.match(s)
    if m is None or m.end() == 0:
        return None
    province, city, district = m.group("province", "city", "district")
    if province is None and city is None and (district is None or len(district) < 3):
        return None  # a lone district with a one-character name (城区, 花市) is too weak a prefix
    rest = len(s) - m.end()
    return s[: m.end()] + "*" * min(rest, ADDRESS_MAX_STARS)


_IPV4_PART_RE = re.compile(r"[0-9]{1,3}|\*", re.A)
_IPV6_GROUP_RE = re.compile(r"[0-9A-Fa-f]{1,4}|\*", re.A)


def _ipv4_parts(body: str) -> list[str] | None:
    parts = body.split(".")
    if len(parts) == 4 and all(_IPV4_PART_RE.fullmatch(p) for p in parts):
        return parts
    return None


def _mask_ipv6(body: str) -> tuple[str, int] | None:
    """(masked, length of the kept head) of an IPv6 shape: 2 groups stay, each other one becomes '*'."""
    if body.count("::") > 1 or ":::" in body:
        return None
    head, dc, tail = body.partition("::")
    hs = head.split(":") if head else []
    ts = tail.split(":") if tail else []
    groups = hs + ts
    # An embedded IPv4 (::ffff:10.1.2.3) may only be the last token, and counts as two groups.
    v4 = bool(groups) and "." in groups[-1] and (ts or not dc)
    if v4 and _ipv4_parts(groups[-1]) is None:
        return None
    if not all(_IPV6_GROUP_RE.fullmatch(g) for g in (groups[:-1] if v4 else groups)):
        return None
    n = len(groups) + (1 if v4 else 0)
    if (dc and n > 7) or (not dc and n != 8):
        return None
    keep = min(2, len(hs))

    def star(g: str) -> str:
        return "*.*.*.*" if "." in g else "*"

    out = ":".join(hs[:keep] + [star(g) for g in hs[keep:]])
    if dc:
        out += "::" + ":".join(star(g) for g in ts)
    return out, len(":".join(hs[:keep]))


def mask_ip_address(s: str) -> str | None:
    """IPv4 keeps the first two octets (10.12.*.*), IPv6 the first two groups; a /prefix stays."""
    folded = fold_same_length(s)
    if folded is None:
        return None
    body, slash, plen = folded.partition("/")
    if slash and not (plen.isascii() and plen.isdigit() and len(plen) <= 3):
        return None
    suffix = s[len(body) :]
    parts = _ipv4_parts(body)
    if parts is not None:
        kept = len(parts[0]) + 1 + len(parts[1])
        return s[:kept] + ".*.*" + suffix
    if ":" not in body:
        return None
    masked = _mask_ipv6(body)
    if masked is None:
        return None
    out, kept = masked
    return s[:kept] + out[kept:] + suffix


DISPLAY: dict[str, Callable[[str], str | None]] = {
    "mobile": mask_mobile,
    "id_card": mask_id_card,
    "bank_card": mask_bank_card,
    "uscc": mask_uscc,
    "landline": mask_landline,
    "email": mask_email,
    "person_name": mask_person_name,
    "passport": mask_passport,
    "address": mask_address,
    "ip_address": mask_ip_address,
}


# -- hashing ---------------------------------------------------------------------------------------


def _hmac_base(key: bytes) -> Any:
    return hmac.new(key, digestmod=hashlib.sha256)


def make_hash_str(cls: str | None, key: bytes) -> StrFn:
    base = _hmac_base(key)
    tag = cls or "value"

    def hash_str(s: str) -> str:
        h = base.copy()
        h.update(f"{tag}|{canonical(s, cls)}".encode("utf-8", "surrogatepass"))
        return f"{tag}_{h.hexdigest()[:32]}"

    return hash_str


def make_hash_int(cls: str | None, key: bytes) -> Callable[[int], int]:
    base = _hmac_base(key)
    tag = cls or "value"

    def hash_int(v: int) -> int:
        digits = str(abs(v))
        h = base.copy()
        h.update(f"{tag}|{digits}".encode())
        n = len(digits)
        x = int.from_bytes(h.digest(), "big")
        out = x % 10**n
        if n > 1:
            # A leading zero would shorten the number; pin the first digit to 1-9.
            out = (1 + (x >> 200) % 9) * 10 ** (n - 1) + out % 10 ** (n - 1)
        return -out if v < 0 else out

    return hash_int


# -- building per-column functions -----------------------------------------------------------------


def make_str_fn(cls: str | None, action: str, key: bytes) -> StrFn:
    """str -> str for every action except clear/null (handled by the callers)."""
    if action == "mask":
        display = DISPLAY.get(cls) if cls else None
        if display is None:
            return mask_generic

        def mask_str(s: str) -> str:
            out = display(s)
            return mask_generic(s) if out is None else out

        return mask_str
    if action == "redact":
        return lambda s: "*" * len(s)
    if action == "hash":
        return make_hash_str(cls, key)
    if action == "fake":
        return lambda s: fake_str(s, cls, key)
    raise ValueError(f"no string function for action {action!r}")


def to_int_like(s: str, like: int) -> int:
    out = int("".join(c if c.isdigit() else "0" for c in s) or "0")
    return -out if like < 0 else out


def make_int_fn(cls: str | None, action: str, key: bytes) -> Callable[[int], int]:
    if action == "redact":
        return lambda v: 0  # every digit zeroed; a sign on zero is not representable
    if action == "hash":
        return make_hash_int(cls, key)
    if action == "fake":

        def fake_int(v: int) -> int:
            s = str(abs(v))
            out = fake_str(s, cls, key, digits_only=True)
            if not (out.isascii() and out.isdigit() and len(out) == len(s)):
                out = fake_generic(s, cls, key, digits_only=True)
            return to_int_like(out, v)

        return fake_int
    str_fn = make_str_fn(cls, action, key)
    if cls == "ip_address":
        # An int IP column holds the 32-bit IPv4 value (INET_ATON): zero the last two octets.
        return lambda v: v & 0xFFFF0000 if 0 <= v <= 0xFFFFFFFF else to_int_like(str_fn(str(abs(v))), v)
    return lambda v: to_int_like(str_fn(str(abs(v))), v)


def typed_masker(
    str_fn: StrFn, int_fn: Callable[[int], int], float_fn: Callable[[float], Any] | None = None
) -> Callable[[Any], Any]:
    """Dispatch a value to the function for its type, so masking keeps the type: text stays
    text, an int stays an int, bytes stay bytes (undecodable bytes are redacted whole)."""

    def masker(value: Any) -> Any:
        t = type(value)
        if t is str:
            return str_fn(value)
        if value is None:
            return None
        if t is int:
            return int_fn(value)
        if t is bytes or t is bytearray or t is memoryview:
            raw = bytes(value)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                return b"*" * len(raw)
            return str_fn(text).encode("utf-8")
        if t is float and float_fn is not None:
            return float_fn(value)
        return str_fn(str(value))

    return masker
