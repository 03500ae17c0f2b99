"""The C digit finders (masking/_digits.c) against the Python reference (masking.detectors).

Texts are built from the alphabet that matters to the six digit regexes: digits and full-width
digits, spaces, tabs, dashes, brackets and +, the 86 prefixes, the context words, letters next to
digits, and valid generated values, so that near-misses of every pattern are common. The native
answer must equal the reference's wherever it is not None ("unsure").
"""

from __future__ import annotations

import datetime
import re
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import masking.text
from masking import CLASSES as CLASSES_ALL
from masking import DEFAULT_KEY, detect
from masking import detectors as d
from masking.checksums import id18_check_char
from masking.native import load
from masking.normalize import DASHES, needs_folding, normalize
from tests.masking.strategies import FULLWIDTH, bank_cards, id15s, id18s, landlines, mobiles, usccs

native = load("masking._native")
pytestmark = pytest.mark.skipif(native is None, reason="masking._native not built or MASKGATE_PURE=1")

PROFILE = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLASSES = sorted(d.DIGIT_CLASSES)


def reference(norm: str, wanted: frozenset[str]) -> list[d.Candidate]:
    """The pure-Python digit candidates, resolved among themselves (what find_digits answers)."""
    out: list[d.Candidate] = []
    if d._DIGIT_GATE_RE.search(norm):
        for cls, finder in d._FINDERS:
            if cls in wanted:
                finder(norm, out)
    return d._resolve(out)


ATOMS = [
    *"0123456789０１２３４５６７８９ \t-()+xXEGKHMCPSDAa：，。、（）－—ー\u3000…",
    "86",
    "+86",
    "0086",
    "(+86)",
    "( 86 )",
    "(0)",
    "()",
    "010",
    "021",
    "0755",
    "400",
    "800",
    "1234",
    "2345",
    "19",
    "20",
    "18",
    "0229",
    "1231",
    "MA",
    "PE",
    "银行卡",
    "卡号",
    "账号",
    "账户",
    "信用卡",
    "card",
    "ACCOUNT",
    "护照",
    "Passport",
    "港澳",
    "台胞证",
    "台湾居民",
    "客户",
    "电话",
    "手机",
    "订单号",
    "身份证",
    "的",
]


def _grouped(value: str, sep: str) -> str:
    return sep.join(value[i : i + 4] for i in range(0, len(value), 4))


@st.composite
def values(draw: st.DrawFn) -> str:
    value = draw(st.one_of(mobiles(), id18s(), id15s(), bank_cards(), usccs(), landlines(), passports()))
    style = draw(
        st.sampled_from(["plain", "plain", "grouped", "grouped+tail", "mobile3-4-4", "fullwidth", "cut", "x"])
    )
    if style == "grouped":
        value = _grouped(value, draw(st.sampled_from([" ", "-", "\t", "  "])))
    elif style == "grouped+tail":  # 6222 0202 0011 2233445: the card regex's tail without a separator
        value = _grouped(value[:16], draw(st.sampled_from([" ", "-"]))) + value[16:]
    elif style == "mobile3-4-4":
        sep = draw(st.sampled_from([" ", "-", "\t", "－"]))
        value = f"{value[:3]}{sep}{value[3:7]}{sep}{value[7:]}"
    elif style == "fullwidth":
        value = value.translate(FULLWIDTH)
    elif style == "cut":
        value = value[: draw(st.integers(1, len(value)))]
    elif style == "x":
        value = value[:-1] + draw(st.sampled_from("Xx0"))
    return value


@st.composite
def passports(draw: st.DrawFn) -> str:
    shape = draw(st.sampled_from(["E8", "EL7", "G8", "PE7", "K8", "MA7", "H8", "H10", "CL7", "8", "10"]))
    digits = draw(st.text(st.sampled_from("0123456789"), min_size=10, max_size=10))
    letter = draw(st.sampled_from("ABCHJNPZIO"))
    head, n = {
        "E8": ("E", 8),
        "EL7": ("E" + letter, 7),
        "G8": ("G", 8),
        "PE7": (draw(st.sampled_from("PSD")) + "E", 7),
        "K8": ("K", 8),
        "MA7": ("MA", 7),
        "H8": (draw(st.sampled_from("HM")), 8),
        "H10": (draw(st.sampled_from("HM")), 10),
        "CL7": ("C" + letter, 7),
        "8": ("", 8),
        "10": ("", 10),
    }[shape]
    return head + digits[:n]


TEXTS = st.lists(st.one_of(st.sampled_from(ATOMS), values()), max_size=14).map("".join)
WANTED = st.sets(st.sampled_from(CLASSES), min_size=1).map(frozenset)


def bits(wanted: frozenset[str]) -> int:
    return d._native_bits(wanted)


@PROFILE
@given(TEXTS, WANTED)
def test_native_equals_reference_on_normalised_text(text: str, wanted: frozenset[str]) -> None:
    norm, _ = normalize(text)
    got = native.find_digits(norm, bits(wanted), True)
    if got is not None:  # unsure only for birth dates next to today
        assert got == reference(norm, wanted)


@PROFILE
@given(TEXTS, WANTED)
def test_native_on_raw_text_is_sure_only_where_normalising_changes_nothing(
    text: str, wanted: frozenset[str]
) -> None:
    got = native.find_digits(text, bits(wanted), False)
    if got is not None:
        assert normalize(text) == (text, None)
        assert got == reference(text, wanted)


@PROFILE
@given(TEXTS)
def test_detect_is_the_reference(text: str) -> None:
    """detect() as a whole (digits in C, the rest in Python) equals the pure-Python pipeline."""
    norm, offsets = normalize(text)
    expected_digits = reference(norm, d.DIGIT_CLASSES)
    others: list[d.Candidate] = []
    d._other_candidates(norm, frozenset({"email", "ip_address", "person_name"}), others)
    expected = d._resolve(expected_digits + others)
    got = detect(text)
    assert [(s.start, s.end, s.cls, s.confidence) for s in got] == [
        (*d.to_original(offsets, a, b), c, conf) for a, b, c, conf in expected
    ]


@PROFILE
@given(TEXTS, st.sampled_from(["mask", "redact", "hash"]))
def test_text_masker_is_the_reference(text: str, action: str) -> None:
    wanted = frozenset(CLASSES_ALL)
    fast = masking.text._build.__wrapped__(wanted, action, DEFAULT_KEY)(text)
    with patch.object(d, "_native", None):
        slow = masking.text._build.__wrapped__(wanted, action, DEFAULT_KEY)(text)
    assert fast == slow


def test_every_mobile_prefix_matches_the_segment_table() -> None:
    for prefix in range(13000, 20000):
        for text in (f"手机{prefix}123456。", f"+86 {prefix}1234567", f"{prefix}1234"):
            assert native.find_digits(text, 1, False) == reference(text, frozenset({"mobile"})), text


def test_fold_stable_characters_are_left_alone_by_normalisation() -> None:
    """Raw-text answers rely on this list: any character on it leaves normalize() a no-op."""
    stable = [cp for cp in range(0x80, 0x110000) if native.fold_stable(cp)]
    assert 0x4E00 in stable and 0xFF0C in stable  # CJK ideographs and ， are on it
    for cp in stable:
        ch = chr(cp)
        assert not needs_folding(ch) and ch not in DASHES, hex(cp)
        # No case-insensitive context word (card, account, passport) can see it as an ASCII letter.
        assert re.fullmatch("[a-z]", ch, re.I) is None, hex(cp)


@PROFILE
@given(TEXTS)
def test_simple_fold_is_normalize(text: str) -> None:
    folded = native.fold_simple(text)
    if folded is not None:
        assert normalize(text) == (folded, None)


def test_simple_fold_of_every_character_is_normalize() -> None:
    known = 0
    for cp in range(0x80, 0x10000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        for text in (chr(cp), chr(cp) + "１"):  # alone, and next to a fold that makes normalize() fold
            folded = native.fold_simple(text)
            if folded is not None:
                known += 1
                assert normalize(text) == (folded, None), hex(cp)
    assert known > 2 * 20000  # the CJK ideographs at least


def test_unstable_characters_make_raw_text_unsure() -> None:
    for ch in "\u3000１－—ー…（＋＠ａ\U0001d7ce\u00a0ſ\u212a":
        assert native.find_digits(f"手机13812345678{ch}", 1, False) is None, hex(ord(ch))


def test_birth_date_next_to_today_is_unsure() -> None:
    today = datetime.date.today()
    for born in (today - datetime.timedelta(days=1), today, today + datetime.timedelta(days=1)):
        body = f"110105{born:%Y%m%d}123"
        text = f"身份证{body}{id18_check_char(body)}"
        assert native.find_digits(text, 2, True) is None
        assert [s.text for s in detect(text)] == [s.text for s in d.detect(text)]


def test_surrogates_and_other_classes_fall_back() -> None:
    assert native.find_digits("手机13812345678\udcff", 1, True) is None
    assert native.find_digits("手机13812345678", 0, False) == []


def test_many_values_in_one_text() -> None:
    text = "卡号6222020200112233445，手机13812345678；" * 2000
    wanted = frozenset(CLASSES)
    assert native.find_digits(text, bits(wanted), False) == reference(text, wanted)
