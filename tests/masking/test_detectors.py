"""Detector vectors from PII.md §1.4, §2.6, §3.3, §4.3, §5 and the §0 pipeline rules."""

from __future__ import annotations

import pytest

from masking import CLASSES, Span, detect

MIXED = (
    "电话:+86 138 1234 5678；备用0086-139-8765-4321，(+86)19212345678,86-15012345678；"
    "全角１３９１２３４５６７８；订单号2013812345678901；固话010-12345678；无效19412345678"
)


def digits_of(span: Span) -> str:
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKC", span.text) if c.isdigit())


def test_mixed_text_finds_exactly_the_five_mobiles() -> None:
    spans = detect(MIXED)
    assert [s.cls for s in spans] == ["mobile"] * 5
    assert [digits_of(s)[-11:] for s in spans] == [
        "13812345678",
        "13987654321",
        "19212345678",
        "15012345678",
        "13912345678",
    ]
    for s in spans:
        assert MIXED[s.start : s.end] == s.text


def test_span_keeps_prefix_and_original_characters() -> None:
    spans = detect(MIXED, ["mobile"])
    assert spans[0].text == "+86 138 1234 5678"
    assert spans[1].text == "0086-139-8765-4321"
    assert spans[2].text == "(+86)19212345678"
    assert spans[3].text == "86-15012345678"
    assert spans[4].text == "１３９１２３４５６７８"


@pytest.mark.parametrize(
    "text",
    [
        "订单号2013812345678901",
        "138123456789",
        "1381234567",
        "已脱敏138****5678",
        "已脱敏0086138****5678",
        "已脱敏110***********002X",
        "已脱敏110105********002X",
        "已脱敏622202*********3446",
        "已脱敏z********@163.com",
        "身份证110105194912310021",  # bad check character
        "身份证11010519490231002X",  # not a date
        "银行卡号6222020200112233445",  # Luhn fails
        "热线400-820-8820 95588",
        "10086",
    ],
)
def test_no_false_positives(text: str) -> None:
    assert detect(text) == []


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("身份证11010519491231002X。", "11010519491231002X"),
        ("身份证11010519491231002x", "11010519491231002x"),
        ("GB example 440524188001010014", "440524188001010014"),
        ("旧证110105491231002号", "110105491231002"),
    ],
)
def test_id_card(text: str, found: str) -> None:
    assert [(s.cls, s.text) for s in detect(text)] == [("id_card", found)]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("银行卡号6222020200112233446", "6222020200112233446"),
        ("卡号 6222 0202 0011 2233 446", "6222 0202 0011 2233 446"),
        ("6212260200000000006", "6212260200000000006"),  # UnionPay BIN, no context
        ("visa 4111111111111111", "4111111111111111"),
        ("账号1234567890123452", "1234567890123452"),  # Luhn + context, weak prefix
    ],
)
def test_bank_card_hits(text: str, found: str) -> None:
    assert [(s.cls, s.text) for s in detect(text)] == [("bank_card", found)]


@pytest.mark.parametrize(
    "text",
    [
        "编号79927398713",  # Luhn-valid but 11 digits (and not a mobile prefix)
        "编号4111111111111",  # 13 digits
        "流水1234567890123452",  # Luhn-valid, weak prefix, no context
    ],
)
def test_bank_card_misses(text: str) -> None:
    assert detect(text, ["bank_card"]) == []


def test_uscc() -> None:
    text = "统一社会信用代码91110000600037341L，错码91110000600037341M，N2110000MA00000014"
    assert [s.text for s in detect(text)] == ["91110000600037341L", "N2110000MA00000014"]
    assert {s.cls for s in detect(text)} == {"uscc"}


def test_landline_vector() -> None:
    text = (
        "座机010-62345678，无效010-12345678，(0755)83765432转123，+86 21 6888 8888，"
        "0571-8888888，400-820-8820，13812345678"
    )
    spans = detect(text, ["landline"])
    assert [s.text for s in spans] == ["010-62345678", "(0755)83765432", "+86 21 6888 8888", "0571-8888888"]
    assert [s.cls for s in detect(text)] == ["landline"] * 4 + ["mobile"]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("邮箱zhang.san@163.com。", ["zhang.san@163.com"]),
        ("qq 12345678@qq.com, abc@qq.com", ["12345678@qq.com", "abc@qq.com"]),
        ("not an email: a@b, @163.com", []),
    ],
)
def test_email(text: str, found: list[str]) -> None:
    assert [s.text for s in detect(text, ["email"])] == found


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("姓名：张三，电话", ["张三"]),
        ("客户张三丰的电话", ["张三丰"]),
        ("收款人欧阳娜娜", ["欧阳娜娜"]),
        ("开户名: 阿依古丽·买买提。", ["阿依古丽·买买提"]),
        ("请联系李四先生", ["李四"]),
        ("没有上下文的张三", []),
        ("姓名：张*三", []),
    ],
)
def test_person_name_needs_context(text: str, found: list[str]) -> None:
    assert [s.text for s in detect(text, ["person_name"])] == found


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("护照号E12345678", ["E12345678"]),
        ("护照 EA1234567", ["EA1234567"]),
        ("港澳通行证C12345678", ["C12345678"]),
        ("回乡证H1234567801", ["H1234567801"]),
        ("台胞证12345678", ["12345678"]),
        ("编号E12345678", []),
        ("护照12345678", []),  # all digits needs a Taiwan-permit context word
    ],
)
def test_passport_needs_context(text: str, found: list[str]) -> None:
    assert [s.text for s in detect(text, ["passport"])] == found


def test_overlap_prefers_priority_then_length() -> None:
    # An 18-digit valid ID that is also Luhn-valid and starts with 4: the ID wins.
    text = "身份证440524188001010014"
    assert [s.cls for s in detect(text)] == ["id_card"]


def test_class_filter_and_unknown_class() -> None:
    text = "13812345678 zhang@163.com"
    assert [s.cls for s in detect(text, ["email"])] == ["email"]
    assert [s.cls for s in detect(text, "mobile")] == ["mobile"]
    with pytest.raises(ValueError, match="unknown PII class"):
        detect(text, ["phone"])
    assert set(CLASSES) >= {s.cls for s in detect(text)}


def test_offsets_map_back_through_expanding_characters() -> None:
    text = "㈱客户电话１３８１２３４５６７８"
    [span] = detect(text)
    assert text[span.start : span.end] == span.text == "１３８１２３４５６７８"


def test_colons_before_a_dotted_quad_are_punctuation() -> None:
    # Hypothesis found this planted IPv4 reported as the IPv4-compatible IPv6 `::0.0.0.0`.
    assert [(s.cls, s.text, s.start) for s in detect("（：：0.0.0.0", ["ip_address"])] == [
        ("ip_address", "0.0.0.0", 3)
    ]
    assert [s.text for s in detect("地址::ffff:1.2.3.4 或 fe80::1.2.3.4", ["ip_address"])] == [
        "::ffff:1.2.3.4",
        "fe80::1.2.3.4",
    ]
