"""Owns deterministic fake values: format-valid replacements derived from HMAC(key, class|value).

Choice: digits come from HMAC-SHA256 output (PII.md §8.2 "cheap" row), not FF1. The mapping is
deterministic per key and never returns its input, but it is not injective: two real values can
map to the same fake, so fakes are fine for display and test data, not as join keys (use `hash`).

Per class: a mobile keeps its 3-digit network prefix and gets a valid 11-digit number under it; an
ID keeps region and birth date (and sex parity) and gets a new sequence and check character; a bank
card keeps its BIN and gets a new account part and Luhn digit; a USCC keeps department, type and
region and gets a new organisation code with both check characters; a landline keeps its area code;
an e-mail keeps its domain; names and addresses come from Faker zh_CN seeded by the HMAC (addresses
without Faker's postcode); an IP address keeps its family and the network part its mask shows
(IPv4 first two octets, IPv6 first two groups). Separators, country
prefixes and layout of the input are kept. A value without its class's shape gets a shape-preserving
generic fake (digits for digits, letters for letters) so column widths still fit.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import re
import string
import threading
from collections.abc import Callable
from typing import Any

from masking.checksums import (
    PROVINCES,
    USCC_DEPARTMENTS,
    birth_date_ok,
    id18_check_char,
    luhn_check_digit,
    org_code_check_char,
    uscc_check_char,
)
from masking.names import NAME_DOTS, is_cjk
from masking.segments import PHONE_PREFIXES3, valid_prefixes5
from masking.shapes import (
    DIGITS,
    GROUP_SEPARATORS,
    PHONE_SEPARATORS,
    canonical,
    fold_same_length,
    replace,
    scan,
)

# Give up on "different from the input" after this many derivations; each try is independent, so
# reaching it means the input admits (almost) no other value of its shape.
_MAX_TRIES = 64


class _Stream:
    """Deterministic integers for one (key, class, value): try n uses HMAC(key, class|value|n)."""

    __slots__ = ("_key", "_msg")

    def __init__(self, key: bytes, cls: str | None, value: str) -> None:
        self._key = key
        self._msg = f"fake|{cls or 'value'}|{value}|".encode("utf-8", "surrogatepass")

    def int(self, n: int, blocks: int = 1) -> int:
        """A 256*blocks-bit integer for try n."""
        digest = b"".join(
            hmac.new(self._key, self._msg + f"{n}.{b}".encode(), hashlib.sha256).digest()
            for b in range(blocks)
        )
        return int.from_bytes(digest, "big")


def _digits(x: int, n: int) -> str:
    return f"{x % 10**n:0{n}d}" if n else ""


def _fake_mobile(s: str, stream: _Stream, digits_only: bool) -> str | None:
    parsed = scan(s, DIGITS, PHONE_SEPARATORS)
    if parsed is None:
        return None
    pos, d = parsed
    if not (len(d) == 11 or (len(d) == 13 and d.startswith("86")) or (len(d) == 15 and d.startswith("0086"))):
        return None
    nat = d[-11:]
    if nat[0] != "1":
        return None
    prefix3 = nat[:3]
    for n in range(_MAX_TRIES):
        x = stream.int(n)
        p3 = prefix3 if valid_prefixes5(prefix3) else PHONE_PREFIXES3[x % len(PHONE_PREFIXES3)]
        options = valid_prefixes5(p3)
        x //= 97
        out = options[x % len(options)] + _digits(x // len(options), 6)
        if out != nat:
            return replace(s, pos, out)
    return None


def _fake_id_card(s: str, stream: _Stream, digits_only: bool) -> str | None:
    parsed = scan(s, DIGITS | {"X", "x"}, GROUP_SEPARATORS)
    if parsed is None:
        return None
    pos, d = parsed
    d = d.upper()
    if not ((len(d) == 18 and d[:17].isdigit()) or (len(d) == 15 and d.isdigit())):
        return None
    legacy = len(d) == 15
    region, birth = d[:6], (("19" + d[6:12]) if legacy else d[6:14])
    x0 = stream.int(1000)
    if not (d[0] == "9" and not legacy) and int(region[:2]) not in PROVINCES:
        region = "110105"  # an unknown region cannot be kept valid; use a real one
    if not birth_date_ok(int(birth[:4]), int(birth[4:6]), int(birth[6:8])):
        day = datetime.date(1950, 1, 1) + datetime.timedelta(days=x0 % 20000)
        birth = day.strftime("%Y%m%d")
    parity = int(d[16 if not legacy else 14]) % 2
    for n in range(_MAX_TRIES):
        seq = f"{(stream.int(n) % 500) * 2 + parity:03d}"
        if legacy:
            out = region + birth[2:] + seq
        else:
            body = region + birth + seq
            check = id18_check_char(body)
            if digits_only and check == "X":
                continue
            out = body + check
        if out != d:
            return replace(s, pos, out)
    return None


def _fake_bank_card(s: str, stream: _Stream, digits_only: bool) -> str | None:
    parsed = scan(s, DIGITS, GROUP_SEPARATORS)
    if parsed is None or not 16 <= len(parsed[1]) <= 19:
        return None
    pos, d = parsed
    for n in range(_MAX_TRIES):
        body = d[:6] + _digits(stream.int(n), len(d) - 7)
        out = body + luhn_check_digit(body)
        if out != d:
            return replace(s, pos, out)
    return None


_USCC_BODY_RE = re.compile(r"[1-9ANY][0-9A-HJ-NP-RTUW-Y][0-9]{6}[0-9A-HJ-NP-RTUW-Y]{10}")


def _fake_uscc(s: str, stream: _Stream, digits_only: bool) -> str | None:
    folded = fold_same_length(s.strip())
    if folded is None or not _USCC_BODY_RE.fullmatch(folded) or folded[0] not in USCC_DEPARTMENTS:
        return None
    for n in range(_MAX_TRIES):
        org8 = _digits(stream.int(n), 8)
        body = folded[:8] + org8 + org_code_check_char(org8)
        out = body + uscc_check_char(body)
        if out != folded:
            return s[: len(s) - len(s.lstrip())] + out + s[len(s.rstrip()) :]
    return None


_LANDLINE_FAKE_RE = re.compile(
    r"[ \t]*(?:(?:\+|00)86[ \t-]?(?:\(0?\)[ \t]?)?(?:10|2[0-9]|[3-9][0-9]{2})[ \t-]?"
    r"|\(?0(?:10|2[0-9]|[3-9][0-9]{2})\)?[ \t-]?)?"
    r"(?P<sub>[0-9]{3,4}[ \t-]?[0-9]{4})"
    r"(?:[ \t]*(?:-|转|ext\.?|x|#)[ \t]*[0-9]{1,6})?[ \t]*",
    re.I | re.A,
)


def _fake_landline(s: str, stream: _Stream, digits_only: bool) -> str | None:
    folded = fold_same_length(s)
    m = _LANDLINE_FAKE_RE.fullmatch(folded) if folded is not None else None
    if m is None:
        return None
    lo, hi = m.span("sub")
    pos = [i for i in range(lo, hi) if folded[i].isdigit()]  # type: ignore[index]
    old = "".join(folded[i] for i in pos)  # type: ignore[index]
    for n in range(_MAX_TRIES):
        x = stream.int(n)
        # Subscriber numbers never start with 0 or 1.
        out = str(2 + x % 8) + _digits(x // 8, len(pos) - 1)
        if out != old:
            return replace(s, pos, out)
    return None


_LOCAL_CHARS = string.ascii_lowercase + string.digits


def _fake_email(s: str, stream: _Stream, digits_only: bool) -> str | None:
    at = s.rfind("@")
    if at <= 0 or "." not in s[at:] or any(c.isspace() for c in s):
        return None
    local = s[:at]
    for n in range(_MAX_TRIES):
        x = stream.int(n)
        length = 6 + x % 5
        x //= 5
        chars = [string.ascii_lowercase[x % 26]]
        x //= 26
        for _ in range(length - 1):
            chars.append(_LOCAL_CHARS[x % 36])
            x //= 36
        out = "".join(chars)
        if out != local:
            return out + s[at:]
    return None


# One Faker for the process: building one costs milliseconds, seeding an existing one microseconds.
_faker: Any = None
_faker_lock = threading.Lock()


def _from_faker(s: str, stream: _Stream, make: Callable[[Any], str]) -> str | None:
    """make(faker) with the shared Faker seeded from try n of `stream`; the first result other than s."""
    global _faker
    with _faker_lock:
        if _faker is None:
            from faker import Faker  # deferred: importing Faker costs ~0.1 s

            _faker = Faker("zh_CN")
        for n in range(_MAX_TRIES):
            _faker.seed_instance(stream.int(n))
            out = str(make(_faker))
            if out != s:
                return out
    return None


def _fake_person_name(s: str, stream: _Stream, digits_only: bool) -> str | None:
    if not s.strip() or not all(is_cjk(c) or c in NAME_DOTS or c.isalpha() or c in " .-'" for c in s):
        return None
    return _from_faker(s, stream, lambda f: f.name())


def _fake_address(s: str, stream: _Stream, digits_only: bool) -> str | None:
    if digits_only or not s.strip():
        return None
    # zh_CN address() ends in " <postcode>"; a street address column rarely holds one.
    return _from_faker(s, stream, lambda f: f.address().rsplit(" ", 1)[0])


def _fake_ip_address(s: str, stream: _Stream, digits_only: bool) -> str | None:
    """Same family and the same network part the mask shows (IPv4 /16, IPv6 /32); a /prefix stays."""
    folded = fold_same_length(s)
    if digits_only or folded is None:
        return None
    body, slash, plen = folded.partition("/")
    try:
        ip = ipaddress.ip_address(body)
    except ValueError:
        return None
    low = 16 if ip.version == 4 else 96
    old = int(ip)
    for n in range(_MAX_TRIES):
        new = (old >> low << low) | (stream.int(n) % (1 << low))
        if new == old:
            continue
        if ip.version == 4:
            out = str(ipaddress.IPv4Address(new))
        else:
            fake6 = ipaddress.IPv6Address(new)
            out = fake6.exploded if len(body) == 39 else fake6.compressed
            if body != body.lower():
                out = out.upper()
        return out + slash + plen
    return None


_FAKERS: dict[str, Callable[[str, _Stream, bool], str | None]] = {
    "mobile": _fake_mobile,
    "id_card": _fake_id_card,
    "bank_card": _fake_bank_card,
    "uscc": _fake_uscc,
    "landline": _fake_landline,
    "email": _fake_email,
    "person_name": _fake_person_name,
    "address": _fake_address,
    "ip_address": _fake_ip_address,
    # passport: no entry; the generic fake keeps letters and replaces digits, which is its shape
}


def fake_generic(s: str, cls: str | None, key: bytes, *, digits_only: bool = False) -> str:
    """Shape-preserving fake: each digit becomes a digit, each ASCII letter a letter of the same case.

    Passport numbers (letters kept, digits replaced) use this too. A value with nothing to replace
    cannot differ from itself in shape and is redacted instead.
    """
    stream = _Stream(key, cls, s)
    keep_letters = cls == "passport"
    slots = [i for i, c in enumerate(s) if c.isascii() and c.isalnum() and not (keep_letters and c.isalpha())]
    if not slots:
        return "*" * len(s) if s and set(s) != {"*"} else s
    blocks = 1 + len(slots) // 48  # 256 bits give ~50 digits or letters
    for n in range(_MAX_TRIES):
        x = stream.int(n, blocks)
        chars = list(s)
        for i in slots:
            c = s[i]
            if c.isdigit():
                lo = 1 if digits_only and i == 0 and len(s) > 1 else 0  # keep an int's digit count
                chars[i] = str(lo + x % (10 - lo))
                x //= 10 - lo
            else:
                letters = string.ascii_uppercase if c.isupper() else string.ascii_lowercase
                chars[i] = letters[x % 26]
                x //= 26
        out = "".join(chars)
        if out != s:
            return out
    return "*" * len(s)


def fake_sentence(s: str, cls: str | None, key: bytes) -> str:
    """Faker zh_CN sentences seeded from HMAC(key, class|s), cut to len(s); never equal to a non-empty s."""
    if not s:
        return s
    n = len(s)

    def make(f: Any) -> str:
        out = ""
        while len(out) < n:
            out += f.sentence()
        return out[:n]

    out = _from_faker(s, _Stream(key, cls, s), make)
    return out if out is not None else fake_generic(s, cls, key)


def fake_str(s: str, cls: str | None, key: bytes, *, digits_only: bool = False) -> str:
    """A deterministic fake for `s` of class `cls` (None: generic); never equal to `s` when non-empty."""
    fn = _FAKERS.get(cls) if cls else None
    if fn is not None:
        out = fn(s, _Stream(key, cls, canonical(s, cls)), digits_only)
        if out is not None:
            return out
    return fake_generic(s, cls, key, digits_only=digits_only)
