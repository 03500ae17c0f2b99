"""Owns PII detection in free text: per-class finders with checksum validation and overlap resolution.

Pipeline (PII.md §0): normalise (NFKC, dashes, invisible characters deleted, every script's digits
as ASCII: masking/normalize.py) with an offset map, run each requested finder on the normalised
text, validate candidates (checksums, real dates, segment table), resolve overlaps by priority then
length, and report spans in the caller's original text. Digit groups may be separated by up to
three spaces, tabs or dashes (and brackets for phones), as people write them.

Bank-card policy: Luhn passes for 10 % of random 16-digit strings, so Luhn alone is not a hit.
A run is reported when Luhn passes and either a context word (银行卡, 卡号, 账号 …) precedes it or
it starts like a payment card (62 UnionPay, 4 Visa, 5 Mastercard, 9 legacy domestic, 35 JCB, or a
known BIN). A masking proxy should err toward masking, so such runs are hidden even without context;
the price is that one in ten long order numbers starting 4/5/9/62 is masked too.

Card runs need alphanumeric boundaries: a digit run glued to letters is a code (a USCC with a bad
check character, a reference number), not a card.

Landline spans cover area code and subscriber number only: an extension (转123) is left in the clear.

IP addresses: IPv4 dotted quads with octets 0-255 that are not part of a longer dotted or
alphanumeric run (`1.2.3.4.5`, `v1.2.3.4` and `1.2.3.4a` are not addresses; a trailing sentence
period or a `:port` is fine), and IPv6 addresses validated by `ipaddress` that contain a digit
(`::`-compressed, full eight-group or with an embedded IPv4). A bare `1.2.3.4` version string is
indistinguishable from an address and is reported. Both are cheap-gated: IPv4 needs three dots in
the text, IPv6 a `::` or seven colons, so timestamps and MAC addresses never reach the regexes.

Addresses (`address`) are masked per column only: there is no free-text detector, so requesting the
class is accepted everywhere but finds nothing in text. A postal-address grammar that is reliable
in running text is future work (PII.md §5.4).

The six digit finders, their gate and their overlap resolution also exist in C (masking/_digits.c,
loaded through masking.native): the functions here are the reference it is tested against, and they
run wherever the C code answers "unsure" (text that normalisation changes, a birth date next to
today) or `MASKGATE_PURE=1`. Digit classes outrank every other class, so the C result, already
resolved among them, is resolved once more with the e-mail, IP and name candidates, as one pass would.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from masking.checksums import luhn_valid, org_code_check_char, validate_id15, validate_id18, validate_uscc
from masking.classes import resolve_classes
from masking.names import NAME_DOTS, SINGLE_SURNAMES, surname_length
from masking.native import load
from masking.normalize import normalize, to_original
from masking.segments import is_cn_mobile, mobile_prefix_info


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    cls: str
    confidence: float
    text: str


# PII.md §0.3: lower number wins an overlap.
# A number valid as two classes is masked by the first: the personal classes come before uscc
# (an organisation's code), so a card number that is also a valid all-digit USCC hides what a
# card's display rule hides, not the USCC's other digits.
PRIORITY = {
    "id_card": 0,
    "bank_card": 1,
    "mobile": 2,
    "uscc": 3,
    "landline": 4,
    "passport": 5,
    "email": 6,
    "person_name": 6,
    "ip_address": 7,
}

_A = re.ASCII

# Separators between digit groups: up to three spaces, tabs, dashes or (for phones) brackets, as
# people write them (138 - 1234 - 5678, (138)1234-5678, 6222  0202 ...). A number is no less a
# number for wider gaps; the checksums, dates and segments still decide. masking/_digits.c keeps
# the single-separator grammar and answers "unsure" for any text with a wider gap (mg_wide_gap).
_PHONE_SEP = r"[ \t()-]{1,3}"
_GROUP_SEP = r"[ \t-]{1,3}"
_DATE18 = r"(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
_DATE15 = r"[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"

MOBILE_RE = re.compile(
    r"""
    (?<![0-9+])
    (?:(?:\([ \t]*(?:\+|00)?86[ \t]*\)|(?:\+|00)?86)[ \t-]?)?   # optional country code
    (?P<nat>1[3-9][0-9](?:SEP)?[0-9]{4}(?:SEP)?[0-9]{4})      # 11-digit national number
    (?![0-9])
    """.replace("SEP", _PHONE_SEP),
    re.X | _A,
)
# IDs also in their customary region-date-sequence groups (110101 19900307 1233).
ID18_RE = re.compile(
    rf"(?<![0-9A-Za-z])(?:[1-9][0-9]{{5}}{_DATE18}[0-9]{{3}}[0-9Xx]"
    rf"|[1-9][0-9]{{5}}{_GROUP_SEP}{_DATE18}{_GROUP_SEP}[0-9]{{3}}[0-9Xx])(?![0-9A-Za-z])",
    _A,
)
ID15_RE = re.compile(
    rf"(?<![0-9A-Za-z])(?:[1-8][0-9]{{5}}{_DATE15}[0-9]{{3}}"
    rf"|[1-8][0-9]{{5}}{_GROUP_SEP}{_DATE15}{_GROUP_SEP}[0-9]{{3}})(?![0-9A-Za-z])",
    _A,
)
BANK_RE = re.compile(
    r"(?<![0-9A-Za-z])(?:[0-9]{16,19}|[0-9]{4}(?:[ -]{1,3}[0-9]{4}){3}(?:[ -]{0,3}[0-9]{1,3})?"
    r"(?![ -]{1,3}[0-9]))(?![0-9A-Za-z])",
    _A,
)
BANK_CONTEXT_RE = re.compile(
    r"银行|卡号|账号|帐号|借记卡|信用卡|储蓄卡|收款账户|账户|帐户|card|acct|account", re.I
)
# Prefixes strong enough to mask without context (see the module docstring).
BANK_STRONG_PREFIXES = ("62", "4", "5", "9", "35")
KNOWN_BINS = frozenset({"427020", "427030", "530990", "955880", "621226", "622200", "601382", "603367"})
USCC_RE = re.compile(
    r"(?<![0-9A-Za-z])[1-9ANY][0-9A-HJ-NP-RTUW-Y][0-9]{6}[0-9A-HJ-NP-RTUW-Y]{10}(?![0-9A-Za-z])", _A
)
LANDLINE_RE = re.compile(
    r"""
    (?<![0-9+])
    (?:
        (?:\+|00)86(?:[ \t-]?\(0?\)[ \t]?|SEP)?(?P<ac1>10|2[0-9]|[3-9][0-9]{2})
      | (?P<open>\()?(?P<ac2>0(?:10|2[0-9]|[3-9][0-9]{2}))(?(open)\))
    )
    (?(open)[ \t-]{0,3}|(?:SEP)?)
    (?P<sub>[2-9][0-9]{2,3}(?:SEP)?[0-9]{4})
    (?![0-9])
    """.replace("SEP", _GROUP_SEP),
    re.X | _A,
)
# Freephone / shared-cost numbers are public service numbers, not anyone's phone.
_NOT_AREA_CODES = frozenset({"400", "800", "0400", "0800"})
EMAIL_RE = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![\w-])", _A)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4_RE = re.compile(rf"(?<![\w.*])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w*]|\.\w)", _A)
IPV6_RE = re.compile(
    # 39 characters at most, plus colons glued on either side (trimmed in _find_ip_address).
    r"(?<![\w.*])[0-9A-Fa-f:]{2,43}(?:(?<=:)[0-9]{1,3}(?:\.[0-9]{1,3}){3})?(?![\w*]|\.\w)",
    _A,
)
PASSPORT_RE = re.compile(
    r"(?<![0-9A-Za-z])(?:E[0-9]{8}|E[A-HJ-NP-Z][0-9]{7}|G[0-9]{8}|[PSD]E[0-9]{7}|K[0-9]{8}|MA[0-9]{7}"
    r"|[HM][0-9]{8}(?:[0-9]{2})?|C[0-9A-HJ-NP-Z][0-9]{7}|[0-9]{8}(?:[0-9]{2})?)(?![0-9A-Za-z])",
    _A,
)
PASSPORT_CONTEXT_RE = re.compile(r"护照|回乡证|通行证|台胞证|港澳|旅行证|passport", re.I)
# An all-digit candidate is only a Taiwan compatriot permit with this narrower context.
TAIWAN_PERMIT_CONTEXT_RE = re.compile(r"台胞证|台湾居民|台湾通行证")
NAME_CONTEXT_RE = re.compile(
    r"(?:姓名|开户名|户名|客户(?:姓名|名称)?|收款人(?:姓名)?|付款人|联系人|持卡人|收件人|患者|本人)"
    r"[ \t:：]*(?:为|是)?[ \t:：]*"
    r"(?<![*])(?P<name>[\u3400-\u4dbf\u4e00-\u9fff" + NAME_DOTS + r"]{2,12})"
)
HONORIFIC_RE = re.compile(r"(?P<run>[\u3400-\u4dbf\u4e00-\u9fff]{1,3})(?:先生|女士|小姐)")
# Characters that end a name when a context word is followed by running text (客户张三的电话).
_NAME_STOP = frozenset("的电手身先女小在是和与及于说已要来去住称为等办申联地号证卡账帐您你我他她了到从向给于")
# Words that commonly follow 客户/联系人 in call-centre and ticket text and are not names
# (客户来电咨询…, 客户要求…): without this, every 客户来电 masks 来电 as a name.
_NOT_NAMES = (
    "来电",
    "致电",
    "咨询",
    "反映",
    "要求",
    "表示",
    "投诉",
    "办理",
    "申请",
    "询问",
    "满意",
    "收到",
    "回访",
    "需要",
    "已经",
    "说明",
    "提供",
    "信息",
    "资料",
    "经理",
    "服务",
    "账户",
    "账号",
    "本人",
    "同意",
    "拒绝",
    "确认",
    "希望",
    "认为",
    "联系",
    "电话",
    "手机",
    "地址",
    "身份",
)
CONTEXT_WINDOW = 16

# Every digit class contains seven consecutive digits (USCC positions 2-8, passports, IDs, cards),
# a grouped number such as 138 1234 5678, or an ID in 6-6-3 groups. Text without any of them skips
# every digit regex: the common case for log and message text, whose dates, times and short ids
# fail this gate.
_DIGIT_GATE_RE = re.compile(
    r"[0-9]{7}|[0-9]{2}[ \t()+-]{1,4}[0-9]{3,4}[ \t()-]{1,3}[0-9]{4}|[0-9]{6}[ \t-]{1,3}[0-9]{6}", _A
)
_NAME_GATE_RE = re.compile(r"姓名|户名|客户|收款人|付款人|联系人|持卡人|收件人|患者|本人|先生|女士|小姐")
DIGIT_CLASSES = frozenset({"mobile", "id_card", "bank_card", "uscc", "landline", "passport"})
# Classes whose every span contains an ASCII digit (in normalised text): ASCII text without a digit
# cannot hold one. IPv6 spans without a digit (dead::beef) are not reported for that reason.
DIGIT_TRIGGERED = DIGIT_CLASSES | {"ip_address"}
# Classes with a free-text finder; the others (address) are column-only.
DETECTABLE = DIGIT_TRIGGERED | {"email", "person_name"}

Candidate = tuple[int, int, str, float]  # start, end (normalised text), class, confidence


_NOT_DIGITS = str.maketrans("", "", " \t-()")


def _find_mobile(norm: str, out: list[Candidate]) -> None:
    for m in MOBILE_RE.finditer(norm):
        digits = m.group("nat").translate(_NOT_DIGITS)
        if is_cn_mobile(digits):
            seg = mobile_prefix_info(digits)
            out.append((m.start(), m.end(), "mobile", 0.5 if seg is not None and seg.low_score else 0.85))


def _find_id_card(norm: str, out: list[Candidate]) -> None:
    for m in ID18_RE.finditer(norm):
        if validate_id18(m.group().translate(_NOT_DIGITS)):
            out.append((m.start(), m.end(), "id_card", 0.95))
    for m in ID15_RE.finditer(norm):
        if validate_id15(m.group().translate(_NOT_DIGITS)):
            # No check digit: region and date pass for ~1.4 % of random 15-digit runs.
            out.append((m.start(), m.end(), "id_card", 0.6))


def _find_bank_card(norm: str, out: list[Candidate]) -> None:
    for m in BANK_RE.finditer(norm):
        digits = m.group().translate(_NOT_DIGITS)
        if not 16 <= len(digits) <= 19 or not luhn_valid(digits):
            continue
        start = m.start()
        if BANK_CONTEXT_RE.search(norm, max(0, start - CONTEXT_WINDOW), start):
            conf = 0.9
        elif digits.startswith("62") or digits[:6] in KNOWN_BINS:
            conf = 0.7
        elif digits.startswith(BANK_STRONG_PREFIXES):
            conf = 0.5
        else:
            continue
        out.append((start, m.end(), "bank_card", conf))


def _find_uscc(norm: str, out: list[Candidate]) -> None:
    for m in USCC_RE.finditer(norm):
        code = m.group()
        # 1 in 31 random 18-digit numbers passes the USCC check; an all-digit candidate must also
        # pass the GB 11714 organisation-code check (PII.md §4.2), as real all-digit codes do.
        if validate_uscc(code) and (not code.isdigit() or org_code_check_char(code[8:16]) == code[16]):
            out.append((m.start(), m.end(), "uscc", 0.9))


def _find_landline(norm: str, out: list[Candidate]) -> None:
    for m in LANDLINE_RE.finditer(norm):
        area = m.group("ac1") or m.group("ac2")
        if area not in _NOT_AREA_CODES:
            out.append((m.start(), m.end(), "landline", 0.7))


def _find_email(norm: str, out: list[Candidate]) -> None:
    for m in EMAIL_RE.finditer(norm):
        out.append((m.start(), m.end(), "email", 0.9))


def _find_passport(norm: str, out: list[Candidate]) -> None:
    for m in PASSPORT_RE.finditer(norm):
        start = m.start()
        lo = max(0, start - CONTEXT_WINDOW)
        context_re = TAIWAN_PERMIT_CONTEXT_RE if norm[start].isdigit() else PASSPORT_CONTEXT_RE
        if context_re.search(norm, lo, start):
            out.append((start, m.end(), "passport", 0.6))


_HEX_OR_COLON = frozenset("0123456789abcdefABCDEF:")


def _find_ip_address(norm: str, out: list[Candidate]) -> None:
    if norm.count(".") >= 3:
        for m in IPV4_RE.finditer(norm):
            out.append((m.start(), m.end(), "ip_address", 0.8))
    if "::" in norm or norm.count(":") >= 7:
        for m in IPV6_RE.finditer(norm):
            start, end = m.span()
            if not any(c.isdigit() for c in m.group()):
                continue
            run_end = end
            while run_end < len(norm) and norm[run_end] in _HEX_OR_COLON:
                run_end += 1
            if norm[run_end : run_end + 1] == "*":
                # A masked address (2001:db8::*) is not re-detected from its visible groups
                # (the regex backs off the '*': `::2001:db8` is a valid address too).
                continue
            # Colons glued on by punctuation (地址:fe80::1, fe80::1: refused, ：：) are not part of it.
            cand = norm[start:end]
            lead = min(2, len(cand) - len(cand.lstrip(":")))
            trail = min(2, len(cand) - len(cand.rstrip(":")))
            for a, b in sorted(((a, b) for a in range(lead + 1) for b in range(trail + 1)), key=sum):
                if _is_ipv6(norm[start + a : end - b]) and not _IPV4_COMPATIBLE_RE.fullmatch(
                    norm, start + a, end - b
                ):
                    out.append((start + a, end - b, "ip_address", 0.8))
                    break


# `::1.2.3.4` (RFC 4291's deprecated IPv4-compatible form) is in text a dotted quad behind
# punctuation (端口：：1.2.3.4 folds to that): it is left to the IPv4 finder, which reports the quad.
_IPV4_COMPATIBLE_RE = re.compile(rf"::(?:{_OCTET}\.){{3}}{_OCTET}", _A)


def _is_ipv6(cand: str) -> bool:
    if cand.count(":") < 2 or not any(c.isdigit() for c in cand):
        return False
    # In running text `::` followed by one group (（：：010-…, 电话::10) is punctuation before a
    # number as often as an address, and masking it as one made masking a masked text change it
    # again: an address in text needs two groups (::1 and ::10 carry nobody's identity anyway).
    if sum(1 for g in cand.split(":") if g) < 2:
        return False
    try:
        ipaddress.IPv6Address(cand)
    except ValueError:
        return False
    return True


def _trim_name(run: str) -> str:
    """Cut running text after a name: stop words end it, and names are 2-3 chars (4 with compound)."""
    if any(c in NAME_DOTS for c in run):
        return run.strip(NAME_DOTS)
    for i, c in enumerate(run):
        if i >= 2 and c in _NAME_STOP:
            run = run[:i]
            break
    limit = 4 if surname_length(run) == 2 else 3
    return run[:limit]


def _find_person_name(norm: str, out: list[Candidate]) -> None:
    for m in NAME_CONTEXT_RE.finditer(norm):
        end_run = m.end("name")
        if end_run < len(norm) and norm[end_run] == "*":
            continue  # already masked (张*三): leave it alone
        if m.group("name").startswith(_NOT_NAMES):
            continue
        name = _trim_name(m.group("name"))
        if len(name) >= 2 and (surname_length(name) or any(c in NAME_DOTS for c in name)):
            start = m.start("name")
            out.append((start, start + len(name), "person_name", 0.6))
    if "先生" not in norm and "女士" not in norm and "小姐" not in norm:
        return  # HONORIFIC_RE needs one of them; `in` is ten times cheaper than the regex's scan
    for m in HONORIFIC_RE.finditer(norm):
        run = m.group("run")
        # The longest tail of the run that starts with a surname: 联系张三先生 -> 张三.
        for k in range(len(run), 0, -1):
            if run[-k] in SINGLE_SURNAMES:
                end = m.end("run")
                out.append((end - k, end, "person_name", 0.5))
                break


_FINDERS = (
    ("id_card", _find_id_card),
    ("uscc", _find_uscc),
    ("bank_card", _find_bank_card),
    ("mobile", _find_mobile),
    ("landline", _find_landline),
    ("passport", _find_passport),
)


def _resolve(cands: list[Candidate]) -> list[Candidate]:
    if len(cands) < 2:
        return cands
    cands.sort(key=lambda c: (PRIORITY[c[2]], c[0] - c[1], c[0]))
    # Kept spans never overlap, so ordered by start they are ordered by end too: one bisection
    # finds the only two neighbours a candidate could overlap. (Comparing with every kept span
    # was quadratic: a value holding thousands of numbers stalled the proxy.)
    starts: list[int] = []
    kept: list[Candidate] = []
    for c in cands:
        i = bisect.bisect_right(starts, c[0])
        if (i and kept[i - 1][1] > c[0]) or (i < len(kept) and kept[i][0] < c[1]):
            continue
        starts.insert(i, c[0])
        kept.insert(i, c)
    return kept


_native = load("masking._native")
# masking/_digits.h MG_* bits
_NATIVE_BITS = {"mobile": 1, "id_card": 2, "bank_card": 4, "uscc": 8, "landline": 16, "passport": 32}


@lru_cache(maxsize=256)
def _native_bits(wanted: frozenset[str]) -> int:
    return sum(_NATIVE_BITS[c] for c in wanted & DIGIT_CLASSES)


def _digit_candidates(norm: str, wanted: frozenset[str]) -> list[Candidate]:
    """The digit classes' candidates, resolved among themselves (C when it is sure, else Python)."""
    if _native is not None:
        found: list[Candidate] | None = _native.find_digits(norm, _native_bits(wanted), True)
        if found is not None:
            return found
    out: list[Candidate] = []
    if _DIGIT_GATE_RE.search(norm):
        for cls, finder in _FINDERS:
            if cls in wanted:
                finder(norm, out)
    return _resolve(out)


def _other_candidates(norm: str, wanted: frozenset[str], out: list[Candidate]) -> list[Candidate]:
    """Adds the IP, e-mail and name candidates to `out` (digit candidates) and resolves them all."""
    resolved = len(out)
    # Inline cheap gate (C-level scans, `in` before `count`): most log lines fail it and skip the call.
    if "ip_address" in wanted and (
        ("." in norm and norm.count(".") >= 3) or (":" in norm and ("::" in norm or norm.count(":") >= 7))
    ):
        _find_ip_address(norm, out)
    if "email" in wanted and "@" in norm:
        _find_email(norm, out)
    if "person_name" in wanted and not norm.isascii() and _NAME_GATE_RE.search(norm):
        _find_person_name(norm, out)
    # Nothing added: the digit candidates are already resolved (and sorted by start).
    return out if len(out) == resolved else _resolve(out)


def find_candidates(norm: str, wanted: frozenset[str]) -> list[Candidate]:
    """Validated, overlap-resolved candidates in normalised text for the `wanted` classes."""
    out = _digit_candidates(norm, wanted) if not wanted.isdisjoint(DIGIT_CLASSES) else []
    return _other_candidates(norm, wanted, out)


def _normalize(text: str) -> tuple[str, list[int] | None]:
    """normalize(), by C where it knows every character's fold (one character each, so no offset
    map): ASCII, CJK, full-width forms, the ideographic space and the dashes."""
    if _native is not None:
        norm: str | None = _native.fold_simple(text)
        if norm is not None:
            return norm, None
    return normalize(text)


def find_in_text(text: str, wanted: frozenset[str]) -> tuple[list[Candidate], list[int] | None]:
    """find_candidates() on normalize(text), and normalize's offset map back to `text`.

    The C finders check whether normalising `text` could change anything they or the other finders
    look at; when it cannot, `text` is its own normalisation and normalize() is skipped.
    """
    if _native is not None and not wanted.isdisjoint(DIGIT_CLASSES):
        found: list[Candidate] | None = _native.find_digits(text, _native_bits(wanted), False)
        if found is not None:
            return _other_candidates(text, wanted, found), None
    norm, offsets = _normalize(text)
    return find_candidates(norm, wanted), offsets


def text_finder(wanted: frozenset[str]) -> Callable[[str], tuple[list[Candidate], list[int] | None]]:
    """find_in_text() for a fixed class set, with the per-call set arithmetic done once (the text
    masker's per-value hot path)."""
    if _native is None or wanted.isdisjoint(DIGIT_CLASSES):
        return lambda text: find_in_text(text, wanted)
    find_digits = _native.find_digits
    bits = _native_bits(wanted)
    others = not wanted.isdisjoint({"ip_address", "email", "person_name"})

    def find(text: str) -> tuple[list[Candidate], list[int] | None]:
        found: list[Candidate] | None = find_digits(text, bits, False)
        if found is None:  # normalising may change the text (or C is unsure): the long way
            norm, offsets = _normalize(text)
            return find_candidates(norm, wanted), offsets
        return (_other_candidates(text, wanted, found) if others else found), None

    return find


def detect_in(text: str, wanted: frozenset[str]) -> list[Span]:
    """detect() with an already validated class set (the text masker's hot path)."""
    cands, offsets = find_in_text(text, wanted)
    spans = []
    for start, end, cls, conf in cands:
        s, e = to_original(offsets, start, end)
        spans.append(Span(s, e, cls, conf, text[s:e]))
    return spans


def detect(text: str, classes: Iterable[str] | None = None) -> list[Span]:
    """Non-overlapping PII spans in `text`, sorted by position, with offsets into `text` itself.

    `classes` None means every class. `address` is accepted but never reported: addresses are
    masked per column only (see the module docstring).
    """
    return detect_in(text, resolve_classes(classes))
