"""mask_text / make_text_masker: spans replaced in place, everything else byte-for-byte."""

from __future__ import annotations

import pytest

from masking import make_text_masker, mask_text


def test_brief_example() -> None:
    assert (
        mask_text("客户电话13812345678，身份证11010519491231002X")
        == "客户电话138****5678，身份证110***********002X"
    )


def test_mixed_text_in_place() -> None:
    text = (
        "电话:+86 138 1234 5678；备用0086-139-8765-4321，(+86)19212345678；"
        "全角１３９１２３４５６７８；订单号2013812345678901"
    )
    assert mask_text(text) == (
        "电话:+86 138 **** 5678；备用0086-139-****-4321，(+86)192****5678；"
        "全角１３９****５６７８；订单号2013812345678901"
    )


def test_every_class_in_one_line() -> None:
    text = (
        "客户张三，身份证号11010519491231002X，银行卡号6222020200112233446，邮箱zhang.san@163.com，"
        "座机010-62345678，护照E12345678，代码91110000600037341L"
    )
    assert mask_text(text) == (
        "客户张*，身份证号110***********002X，银行卡号622202*********3446，邮箱z********@163.com，"
        "座机010-****5678，护照E******78，代码91110000********1L"
    )


def test_class_selection() -> None:
    text = "13812345678 zhang@163.com"
    assert mask_text(text, ["email"]) == "13812345678 z****@163.com"


def test_returns_same_object_when_nothing_found() -> None:
    masker = make_text_masker(None)
    for text in ["plain ascii line", "订单号2013812345678901", "没有数字的中文", "a@b", ""]:
        assert masker(text) is text


@pytest.mark.parametrize("action", ["hash", "fake", "redact", "null", "clear"])
def test_actions(action: str) -> None:
    text = "手机13812345678。"
    out = mask_text(text, ["mobile"], action)
    if action == "clear":
        assert out is text
    elif action == "null":
        assert out == "手机。"
    elif action == "redact":
        assert out == "手机***********。"
    elif action == "hash":
        assert out.startswith("手机mobile_") and out.endswith("。")
    else:
        assert out != text and len(out) == len(text)


def test_idempotent_on_masked_text() -> None:
    once = mask_text("客户张三丰 13812345678 zhang@163.com 6222020200112233446 (0755)83765432")
    assert mask_text(once) == once


def test_unknown_action() -> None:
    with pytest.raises(ValueError, match="unknown masking action"):
        mask_text("x", None, "scramble")


def test_a_value_too_long_to_scan_is_replaced_whole() -> None:
    from masking.text import MAX_SCANNED_CHARS, TOO_LONG

    dense = "13812345678 " * (MAX_SCANNED_CHARS // 12 + 1)
    assert mask_text(dense) == TOO_LONG
    assert mask_text("13812345678 " * 1000).count("138****5678") == 1000


def test_resolving_overlaps_is_linear_in_the_numbers_a_value_holds() -> None:
    from masking.detectors import find_candidates

    # 20,000 numbers: the old pairwise overlap check made this take tens of seconds.
    assert len(find_candidates("13812345678 " * 20_000, frozenset({"mobile"}))) == 20_000
