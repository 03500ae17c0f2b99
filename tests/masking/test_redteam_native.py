"""Red-team tests of the native digit core (masking/_digits.c, masking/_native.c) against the reference.

Two kinds of test live here. Attacks on the C fast path that held (native and pure-Python give the
same answer, and the planted number is masked) stay as cheap regression tests: they reach corners
the random property tests of test_native.py rarely build (more than 64 segments, more than 32
spans, birth dates next to today, context windows ending inside multi-byte text, binary input).
Findings that still leak are marked xfail(strict=True) with the reason; each asserts the SAFE
behaviour. The leaks found in the reference itself (invisible characters, marks, other scripts'
digits, compatibility ideographs, wider groupings) are fixed at their cause (normalize.py's fold,
the separators of detectors.py) and their tests are regression tests now, on both paths.
"""

from __future__ import annotations

import datetime
import itertools
import os
import re
import subprocess
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from unittest.mock import patch

import pytest

import masking.detectors as d
import masking.text
from masking.checksums import id18_check_char, luhn_check_digit
from masking.classes import DEFAULT_KEY

ALL = frozenset(d.DETECTABLE)
ROOT = Path(__file__).resolve().parents[2]
MOBILE = "13812345678"
ID18 = "110101199003071233"
CARD = "6222020200112233446"


def _maskers(wanted: frozenset[str] = ALL) -> tuple:
    """(masker as configured, pure-Python masker), built outside the lru_cache."""
    fast = masking.text._build.__wrapped__(wanted, "mask", DEFAULT_KEY)
    with patch.object(d, "_native", None):
        slow = masking.text._build.__wrapped__(wanted, "mask", DEFAULT_KEY)
    return fast, slow


def _reference_detect(text: str) -> list[d.Span]:
    with patch.object(d, "_native", None):
        return d.detect_in(text, ALL)


def _same_as_reference(text: str) -> str:
    """The masked text, after checking that detect() and the masker agree with the reference."""
    assert d.detect_in(text, ALL) == _reference_detect(text), repr(text)
    fast, slow = _maskers()
    masked = fast(text)
    assert masked == slow(text), repr(text)
    return masked


def _visible_digits(masked: str) -> str:
    """What a reader recovers: every decimal digit (any script), invisible characters ignored."""
    return "".join(str(unicodedata.digit(c)) for c in unicodedata.normalize("NFKC", masked) if c.isdecimal())


# ---- attacks that held: regression tests ------------------------------------------------------


def test_gate_opened_only_after_the_64th_segment() -> None:
    # The C core records 64 segments, then looks for the 7-digit gate in the rest and re-finds them.
    text = "编号12，" * 70 + f"手机{MOBILE}，" + "编号34，" * 10 + f"卡号{CARD}"
    masked = _same_as_reference(text)
    assert MOBILE not in masked and CARD not in masked


@pytest.mark.parametrize("before", [0, 3, 63, 64, 65, 70])
def test_wider_grouping_in_any_segment(before: int) -> None:
    # C checks each segment for a wider grouping (then it is unsure) in each of its three passes:
    # before the 64th segment, after it until the gate opens, and after the gate opened.
    grouped = f"手机 {MOBILE[:3]} - {MOBILE[3:7]} - {MOBILE[7:]}，"
    for text in (
        "编号12，" * before + grouped + "编号34，" * 5,
        "编号12，" * before + f"卡号{CARD}，" + "编号34，" * 3 + grouped,
    ):
        assert MOBILE not in _visible_digits(_same_as_reference(text))


@pytest.mark.parametrize("count", [31, 32, 33, 65, 200])
def test_more_spans_than_the_stack_buffers(count: int) -> None:
    # 32 spans fit on the C stack (candidates and kept spans); non-ASCII also exercises the heap copy.
    text = "".join(f"客户{i}手机{MOBILE[:-2]}{i % 100:02d}，身份证{ID18}；" for i in range(count))
    masked = _same_as_reference(text)
    assert ID18 not in masked and not re.search(r"1381234\d{4}", masked)


@pytest.mark.parametrize("days_ago", [-1, 0, 1, 2, 3, 365])
def test_birth_date_next_to_today(days_ago: int) -> None:
    # C is unsure within two days of today and leaves the decision to the reference's clock.
    born = datetime.date.today() - datetime.timedelta(days=days_ago)
    body = f"110105{born:%Y%m%d}123"
    number = body + id18_check_char(body)
    masked = _same_as_reference(f"身份证：{number}。")
    assert (number in masked) == (days_ago < 0)


@pytest.mark.parametrize("gap", [12, 13, 14, 15, 16])
def test_context_window_counted_in_characters(gap: int) -> None:
    # 6011... is not a strong card prefix: only a context word within 16 characters masks it. The
    # window is counted in characters of text whose characters are 1 to 3 UTF-8 bytes long.
    body = "601100099013942"
    card = body + luhn_check_digit(body)
    for filler in ("的" * gap, "é" * gap, "x " * (gap // 2) + "x" * (gap % 2), "，" * gap):
        _same_as_reference(f"账号{filler}{card}")
        _same_as_reference(f"card{filler}{card}")
        _same_as_reference(f"护照{filler}E12345678")


@pytest.mark.parametrize(
    "sep", [" ", "-", "\t", "－", "—", "ー", "\u3000", "\u00a0", "\u2009", "\u2212", "\u2010", "  ", " - "]
)
def test_separators_and_folds_inside_numbers(sep: str) -> None:
    for text in (
        f"手机{MOBILE[:3]}{sep}{MOBILE[3:7]}{sep}{MOBILE[7:]}",
        "卡号" + sep.join(CARD[i : i + 4] for i in range(0, 19, 4)),
        f"电话+86{sep}10{sep}2345{sep}6789",
        f"身份证{ID18.translate(str.maketrans('0123456789', '０１２３４５６７８９'))}{sep}",
    ):
        _same_as_reference(text)


def test_lone_surrogates_and_mixed_scripts() -> None:
    # surrogateescape input (invalid UTF-8 from a database in another encoding) goes to the reference.
    for text in (
        f"手机{MOBILE}\udcff",
        f"\udce6\udc89{MOBILE}",
        f"卡号{CARD}\ud800",
        f"𝟏𝟑𝟖𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖·{ID18}",
        f"ſ card {CARD} K",
    ):
        masked = _same_as_reference(text)
        assert MOBILE not in masked and CARD not in masked and ID18 not in masked


def test_scan_of_binary_input_is_the_reference(tmp_path: Path) -> None:
    lines = [
        f"手机{MOBILE}".encode(),
        f"手机{MOBILE}".encode("gbk"),
        f"卡号{CARD}".encode("utf-16-le"),
        b"\xff\xfe" + f"身份证{ID18}".encode(),
        f"身份证{ID18}".encode()[:-1] + b"\xe6\x89",
        f"电话010-23456789，{MOBILE}".encode() + b"\x00\x80",
    ]
    data = b"\n".join(lines) + b"\r\n"
    outputs = []
    for pure in ("0", "1"):
        env = {**os.environ, "MASKGATE_PURE": pure}
        done = subprocess.run(
            [sys.executable, "-c", "import sys; from proxy.cli import main; sys.exit(main(['scan']))"],
            input=data,
            capture_output=True,
            env=env,
            cwd=ROOT,
            check=True,
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert MOBILE.encode() not in outputs[0] and ID18.encode() not in outputs[0]


# ---- findings fixed in the reference: numbers hidden from a [0-9] regex but not from a reader ----


@pytest.mark.parametrize("hidden", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"])
def test_invisible_characters_inside_a_number_do_not_hide_it(hidden: str) -> None:
    for text, number in (
        (f"手机{MOBILE[:3]}{hidden}{MOBILE[3:7]}{hidden}{MOBILE[7:]}", MOBILE),
        (f"身份证{ID18[:14]}{hidden}{ID18[14:]}", ID18),
        (f"卡号{CARD[:6]}{hidden}{CARD[6:]}", CARD),
    ):
        masked = _same_as_reference(text)
        assert number not in _visible_digits(masked), repr(masked)


@pytest.mark.parametrize("mark", ["\u0301", "\u0332", "\ufe0f", "\u20e3"])
def test_combining_marks_on_digits_do_not_hide_a_number(mark: str) -> None:
    text = "手机" + "".join(c + mark for c in MOBILE)
    masked = _same_as_reference(text)
    assert MOBILE not in _visible_digits(masked), repr(masked)


# chr(zero + d) is digit d: other scripts' zeros, then the bases of ⑴, ⒈ and 🄁 (which have no zero;
# MOBILE has none either).
@pytest.mark.parametrize("zero", [0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0x2473, 0x2487, 0x1F101])
def test_other_script_digits_are_masked(zero: int) -> None:
    number = "".join(chr(zero + int(c)) for c in MOBILE)
    masked = _same_as_reference(f"手机{number}")
    assert MOBILE not in _visible_digits(masked), repr(masked)


@pytest.mark.parametrize(
    "text, number",
    [
        ("旅\ufa08证：E12345678", "12345678"),
        ("\uf983行证：E12345678", "12345678"),
        ("银\ufa08：6011000990139424", "6011000990139424"),
    ],
)
def test_compatibility_ideographs_in_context_words(text: str, number: str) -> None:
    plain = unicodedata.normalize("NFKC", text)
    assert number not in _same_as_reference(plain)  # the plain spelling is masked
    assert number not in _visible_digits(_same_as_reference(text))


@pytest.mark.parametrize(
    "text, number",
    [
        (f"身份证 {ID18[:6]} {ID18[6:14]} {ID18[14:]}", ID18),
        (f"身份证 {ID18[:6]}-{ID18[6:14]}-{ID18[14:]}", ID18),
        (f"手机 {MOBILE[:3]} - {MOBILE[3:7]} - {MOBILE[7:]}", MOBILE),
        (f"手机 ({MOBILE[:3]}){MOBILE[3:7]}-{MOBILE[7:]}", MOBILE),
        ("卡号 " + "  ".join(CARD[i : i + 4] for i in range(0, 19, 4)), CARD),
        ("电话 010 - 2345 - 6789", "23456789"),
        ("电话 (010) - 2345-6789", "23456789"),
        ("电话 +86 - 10 - 2345  6789", "23456789"),
    ],
)
def test_customary_groupings_are_masked(text: str, number: str) -> None:
    assert number not in _visible_digits(_same_as_reference(text))


@pytest.mark.parametrize("hidden", ["\u200b", "\u2060", "\u00ad", "\ufe0f"])
def test_invisible_characters_inside_a_context_word(hidden: str) -> None:
    # 6011... is no strong card prefix: only the context word 卡号 masks it.
    assert "6011000990139424" not in _visible_digits(_same_as_reference(f"卡{hidden}号：6011000990139424"))
    assert "12345678" not in _visible_digits(_same_as_reference(f"护{hidden}照：E12345678"))


@pytest.mark.xfail(
    d._native is not None,
    strict=True,
    reason="divergence: detect() on a non-str value raises TypeError from the C binding where the "
    "reference raises AttributeError (int, None, list); callers catching one would miss the other",
)
@pytest.mark.parametrize("value", [13812345678, None, ["13812345678"]])
def test_non_str_values_fail_like_the_reference(value: object) -> None:
    def error(run: Callable[[], object]) -> type[BaseException] | None:
        try:
            run()
        except Exception as exc:  # the type is what is compared
            return type(exc)
        return None

    native_error = error(lambda: d.detect(value))  # type: ignore[arg-type]
    with patch.object(d, "_native", None):
        reference_error = error(lambda: d.detect(value))  # type: ignore[arg-type]
    assert native_error is reference_error


# masking/_digits.c wide_gap(): the texts where C leaves the wider groupings to the reference.
_WIDE_GAP_RE = re.compile(
    r"[0-9][ \t-]{2,}[0-9]|[0-9](?=[ \t-]*[()])[ \t()-]{3,}[0-9]"
    r"|(?<![0-9])(?:(?:[0-9]{2}){0,2}1[0-9]{2}|[0-9]{4}|[0-9]{7}|[0-9]{9}|[0-9]{11})"
    r"(?=[ \t()-]*[()])[ \t()-]+[0-9]{4}"
    r"|[0-9]{6}[ \t()-]{1,3}[0-9]{6}"
)


@pytest.mark.skipif(d._native is None, reason="masking._native not built or MASKGATE_PURE=1")
def test_phone_prefix_grammar_exhaustively() -> None:
    # Every country-code, area-code, parenthesis and separator arrangement of up to three pieces in
    # front of a subscriber-like tail: the backtracking of MOBILE_RE and LANDLINE_RE, hand-compiled
    # in C, against the regexes themselves. (Four pieces, 688k texts, also held; too slow to keep.)
    pieces = [
        "+",
        "00",
        "86",
        "(",
        ")",
        " ",
        "-",
        "0",
        "10",
        "21",
        "755",
        "400",
        "138",
        "1",
        "2345",
        "(0)",
        "x",
    ]
    tails = ["2345678", "12345678", "1234 5678", "-2345-6789"]
    wanted = frozenset(d.DIGIT_CLASSES)
    bits = d._native_bits(wanted)
    for k in range(1, 4):
        for combo in itertools.product(pieces, repeat=k):
            for tail in tails:
                text = "".join(combo) + tail
                expected: list[d.Candidate] = []
                if d._DIGIT_GATE_RE.search(text):
                    for _cls, finder in d._FINDERS:
                        finder(text, expected)
                got = d._native.find_digits(text, bits, True)
                if got is None:  # a wider grouping: the reference's alone (mg_wide_gap)
                    assert _WIDE_GAP_RE.search(text), repr(text)
                    continue
                assert got == d._resolve(expected), repr(text)


@pytest.mark.xfail(
    strict=True,
    reason="leak (reference and native alike): a separator after every single digit (1 3 8 1 2 ...) "
    "matches no group grammar; accepting it needs a spread-digit form per class and its own decoy "
    "study (lists of single digits), left for a later round",
)
@pytest.mark.parametrize("sep", [" ", "-", " - "])
def test_a_separator_after_every_digit(sep: str) -> None:
    assert MOBILE not in _visible_digits(_same_as_reference("手机 " + sep.join(MOBILE)))
