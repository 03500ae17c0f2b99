"""The free_text container class: note columns masked by running every detector over the value."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masking import CLASSES, PERSONAL_CLASSES, detect, make_masker, make_text_masker, mask_text, mask_value
from tests.masking.strategies import FILLER, FULLWIDTH, VALUES, bank_cards, id18s, mobiles

PROFILE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = st.binary(min_size=1, max_size=32)

NOTE = "客户称收到陌生来电推荐股票，来电号码13812345678，已提醒防骗。"


def test_free_text_is_a_class_but_not_personal_or_detectable() -> None:
    assert "free_text" in CLASSES
    assert "free_text" not in PERSONAL_CLASSES
    assert detect(NOTE, ["free_text"]) == []
    assert make_text_masker(["free_text", "mobile"])(NOTE) == mask_text(NOTE, ["mobile"])
    assert make_text_masker(["free_text"])(NOTE) == NOTE
    for action in ("hash", "fake", "redact", "null"):
        assert make_text_masker(["free_text"], action)(NOTE) == NOTE


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        (NOTE, "客户称收到陌生来电推荐股票，来电号码138****5678，已提醒防骗。"),
        (
            "工单备注：客户身份证11010519491231002X，银行卡6222021234567890128，要求退款。",
            "工单备注：客户身份证110***********002X，银行卡622202*********0128，要求退款。",
        ),
        (
            "联系人张伟，电话021-62345678，邮箱zhangwei@example.com，护照E12345678",
            "联系人张*，电话021-****5678，邮箱z*******@example.com，护照E******78",
        ),
        ("回拨 +86 138-1234-5678 未接通", "回拨 +86 138-****-5678 未接通"),
        ("来电号码１３８１２３４５６７８", "来电号码１３８****５６７８"),
        ("用户从 10.12.34.56 登录", "用户从 10.12.*.* 登录"),
        ("客户表示满意，无其他诉求。", "客户表示满意，无其他诉求。"),
        ("", ""),
    ],
)
def test_mask_masks_every_detected_span_in_place(value: str, masked: str) -> None:
    assert mask_value(value, "free_text", "mask") == masked
    assert mask_value(masked, "free_text", "mask") == masked


def test_bytes() -> None:
    assert mask_value(NOTE.encode(), "free_text", "mask") == mask_value(NOTE, "free_text", "mask").encode()  # type: ignore[union-attr]
    assert mask_value(bytearray(b"tel 13812345678"), "free_text", "mask") == b"tel 138****5678"
    # Not UTF-8 (here GBK): redacted whole, as for every class; digits in another encoding could hide.
    gbk = "来电号码１３８１２３４５６７８".encode("gbk")
    assert mask_value(gbk, "free_text", "mask") == b"*" * len(gbk)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        (13812345678, 13800005678),
        (-13812345678, -13800005678),
        (110105198001010016, 110000000000000016),  # an ID: first 3 and last 4 stay
        (6222021234567890128, 6222020000000000128),
        (42, 42),
        (0, 0),
        (13812345678.0, 13800005678.0),
        (2.5, 2.5),
    ],
)
def test_numbers_keep_their_type_with_hidden_digits_zeroed(value: float, masked: float) -> None:
    out = mask_value(value, "free_text", "mask")  # type: ignore[arg-type]
    assert type(out) is type(value) and out == masked
    assert mask_value(out, "free_text", "mask") == out


def test_hash_is_a_class_prefixed_token_of_the_whole_value() -> None:
    token = mask_value(NOTE, "free_text", "hash")
    assert isinstance(token, str) and re.fullmatch(r"free_text_[0-9a-f]{32}", token)
    assert token != mask_value(NOTE, "free_text", "hash", key=b"other")
    assert token != mask_value(NOTE, "mobile", "hash")
    out = mask_value(13812345678, "free_text", "hash")
    assert isinstance(out, int) and len(str(out)) == 11


def test_fake_replaces_detected_spans_and_keeps_the_rest() -> None:
    out = mask_value(NOTE, "free_text", "fake")
    assert isinstance(out, str) and out != NOTE
    head, tail = NOTE.split("13812345678")
    assert out.startswith(head) and out.endswith(tail)
    fake = out[len(head) : len(out) - len(tail)]
    assert re.fullmatch(r"138[0-9]{8}", fake) and fake != "13812345678"
    assert detect(out, ["mobile"])[0].text == fake


def test_fake_without_detected_spans_is_a_sentence_of_the_same_length() -> None:
    text = "客户表示满意，无其他诉求。"
    out = mask_value(text, "free_text", "fake")
    assert isinstance(out, str) and out != text and len(out) == len(text)
    assert out == mask_value(text, "free_text", "fake")
    assert out != mask_value(text, "free_text", "fake", key=b"other")
    assert mask_value("", "free_text", "fake") == ""
    assert len(str(mask_value(42, "free_text", "fake"))) == 2


def test_redact_null_clear() -> None:
    assert mask_value(NOTE, "free_text", "redact") == "*" * len(NOTE)
    assert mask_value(13812345678, "free_text", "redact") == 0
    assert mask_value(NOTE, "free_text", "null") is None
    assert mask_value(NOTE, "free_text", "clear") == NOTE
    assert make_masker("free_text", "mask") is make_masker("free_text", "mask")


# -- properties ------------------------------------------------------------------------------------


def _styled(cls: str, value: str, fullwidth: bool) -> str:
    return value.translate(FULLWIDTH) if fullwidth and cls != "email" else value


@st.composite
def notes(draw: st.DrawFn) -> tuple[str, list[str]]:
    """(note, planted values): filler with up to three planted values of any detectable class."""
    parts: list[str] = [draw(FILLER)]
    planted: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        cls = draw(st.sampled_from(sorted(VALUES)))
        value = _styled(cls, draw(VALUES[cls]), draw(st.booleans()))
        planted.append(value)
        parts += [value, "，", draw(FILLER)]
    return "".join(parts), planted


@PROFILE
@given(notes())
def test_planted_numbers_never_survive_mask(case: tuple[str, list[str]]) -> None:
    text, planted = case
    once = mask_value(text, "free_text", "mask")
    assert isinstance(once, str)
    for value in planted:
        assert value not in once
    assert mask_value(once, "free_text", "mask") == once
    assert once.encode() == mask_value(text.encode(), "free_text", "mask")
    # Nothing left that a detector reads as a full number.
    assert all("*" in s.text for s in detect(once))


@PROFILE
@given(st.one_of(mobiles(), id18s().filter(lambda s: s[-1] != "X"), bank_cards()).map(int))
def test_int_numbers_are_zeroed_and_idempotent(value: int) -> None:
    out = mask_value(value, "free_text", "mask")
    assert isinstance(out, int)
    assert mask_value(out, "free_text", "mask") == out
    s, o = str(value), str(out)
    assert len(o) == len(s)  # every display rule keeps the leading digits
    # Mobile hides digits 4-7, ID 4-14, card BIN+1 to the last 4: all hide 7..len-4, all keep 3 and 4.
    assert o[:3] == s[:3] and set(o[6:-4]) == {"0"}
    # The last 4 stay, unless the zeroed number happened to be a valid number of another class
    # (an all-digit USCC, say) and the second pass hid more: masking more is never the leak.
    assert o[-4:] == s[-4:] or set(o[6:-2]) == {"0"}


ANY = st.one_of(
    st.text(max_size=30), st.integers(-(10**20), 10**20), st.binary(max_size=20), notes().map(lambda c: c[0])
)


@PROFILE
@given(st.sampled_from(["mask", "hash", "fake", "redact"]), ANY)
def test_types_are_preserved(action: str, value: str | int | bytes) -> None:
    out = mask_value(value, "free_text", action)
    assert type(out) is type(value)
    if isinstance(value, int) and action in ("fake", "hash"):
        assert len(str(abs(out))) == len(str(abs(value)))  # type: ignore[arg-type]


@PROFILE
@given(st.one_of(st.text(max_size=30), notes().map(lambda c: c[0])))
def test_mask_is_idempotent(value: str) -> None:
    once = mask_value(value, "free_text", "mask")
    assert mask_value(once, "free_text", "mask") == once


@PROFILE
@given(notes(), KEYS, KEYS)
def test_hash_and_fake_deterministic_per_key(case: tuple[str, list[str]], k1: bytes, k2: bytes) -> None:
    text = case[0]
    for action in ("hash", "fake"):
        a = mask_value(text, "free_text", action, key=k1)
        assert a == mask_value(text, "free_text", action, key=k1)
        if text:
            assert a != text
        if k1 != k2 and action == "hash":
            assert a != mask_value(text, "free_text", action, key=k2)


@PROFILE
@given(notes(), KEYS)
def test_fake_replaces_every_planted_value(case: tuple[str, list[str]], key: bytes) -> None:
    text, planted = case
    out = mask_value(text, "free_text", "fake", key=key)
    assert isinstance(out, str)
    for value in planted:
        if sum(c.isdigit() for c in value) >= 7:  # short e-mails (0@163.com) may recur by chance
            assert value not in out
