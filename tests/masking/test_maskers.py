"""Display rules, the generic fallback, hashing and type preservation (PII.md §1.3, §2.5, §3.2, §5, §6)."""

from __future__ import annotations

import pytest

from masking import ACTIONS, DEFAULT_KEY, make_masker, mask_value


@pytest.mark.parametrize(
    ("cls", "value", "masked"),
    [
        ("mobile", "13812345678", "138****5678"),
        ("mobile", "+86 138-1234-5678", "+86 138-****-5678"),
        ("mobile", "008613812345678", "0086138****5678"),
        ("mobile", "１３８１２３４５６７８", "１３８****５６７８"),
        ("mobile", "138****5678", "138****5678"),
        ("id_card", "11010519491231002X", "110***********002X"),
        ("id_card", "110105491231002", "110********1002"),
        ("bank_card", "6222020200112233446", "622202*********3446"),
        ("bank_card", "6222 0202 0011 2233", "6222 02** **** 2233"),
        ("uscc", "91110000600037341L", "91110000********1L"),
        ("landline", "010-62345678", "010-****5678"),
        ("landline", "(0755)83765432转123", "(0755)****5432转123"),
        ("landline", "0571-8888888", "0571-***8888"),
        ("email", "zhang.san@163.com", "z********@163.com"),
        ("email", "abc@qq.com", "a**@qq.com"),
        ("person_name", "张三", "张*"),
        ("person_name", "张三丰", "张*丰"),
        ("person_name", "欧阳娜娜", "欧阳*娜"),
        ("person_name", "欧阳娜", "欧阳*"),
        ("person_name", "阿依古丽·买买提", "阿***·买**"),
        ("person_name", "John Smith", "J*** S****"),
        ("passport", "E12345678", "E******78"),
        ("passport", "EA1234567", "EA*****67"),
    ],
)
def test_display_rules(cls: str, value: str, masked: str) -> None:
    assert mask_value(value, cls, "mask") == masked


@pytest.mark.parametrize(
    ("cls", "value", "masked"),
    [
        ("mobile", "garbage", "*******"),
        ("mobile", "1381234567", "**********"),  # wrong length: short, so all hidden
        ("id_card", "not an id at all!", "not**********all!"),
        ("bank_card", "12-34", "*****"),
        ("email", "no at sign", "**********"),
        ("person_name", "user_1234", "*********"),
        (None, "13812345678", "***********"),
        (None, "a fairly long free text", "a f****************text"),
    ],
)
def test_generic_rule_for_values_without_the_class_shape(cls: str | None, value: str, masked: str) -> None:
    assert mask_value(value, cls, "mask") == masked


def test_id_card_mask_always_hides_birth_date() -> None:
    masked = mask_value("11010519491231002X", "id_card", "mask")
    assert isinstance(masked, str)
    assert "19491231" not in masked
    assert set(masked[3:14]) == {"*"}


@pytest.mark.parametrize(
    ("value", "masked"),
    [(13812345678, 13800005678), (-13812345678, -13800005678), (12345, 0), (0, 0)],
)
def test_int_mobile_zeroes_hidden_digits(value: int, masked: int) -> None:
    assert mask_value(value, "mobile", "mask") == masked


def test_int_id_card() -> None:
    assert mask_value(110105194912310021, "id_card", "mask") == 110000000000000021


def test_bytes_round_trip_and_undecodable() -> None:
    assert mask_value(b"13812345678", "mobile", "mask") == b"138****5678"
    assert mask_value("张三".encode(), "person_name", "mask") == "张*".encode()
    assert mask_value(b"\xff\xfe1381234", "mobile", "mask") == b"*********"


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("value", ["13812345678", 13812345678, b"13812345678"])
def test_type_preserved(action: str, value: str | int | bytes) -> None:
    out = mask_value(value, "mobile", action)
    if action == "null":
        assert out is None
    else:
        assert type(out) is type(value)
    if action == "clear":
        assert out is value


@pytest.mark.parametrize("action", ACTIONS)
def test_none_stays_none(action: str) -> None:
    assert mask_value(None, "mobile", action) is None


def test_redact() -> None:
    assert mask_value("13812345678", "mobile", "redact") == "***********"
    assert mask_value(-123, "mobile", "redact") == 0
    assert mask_value(b"abc", "email", "redact") == b"***"


def test_hash_token_is_class_prefixed_keyed_and_format_insensitive() -> None:
    token = mask_value("13812345678", "mobile", "hash")
    assert isinstance(token, str)
    assert token.startswith("mobile_") and len(token) == len("mobile_") + 32
    assert mask_value("+86 138-1234-5678", "mobile", "hash") == token
    assert mask_value("13812345678", "mobile", "hash", key=b"other key") != token
    assert mask_value("13812345678", None, "hash").startswith("value_")  # type: ignore[union-attr]


def test_hash_int_keeps_digit_count() -> None:
    out = mask_value(13812345678, "mobile", "hash")
    assert isinstance(out, int) and len(str(out)) == 11 and out != 13812345678
    assert mask_value(13812345678, "mobile", "hash") == out
    assert mask_value(-5, "mobile", "hash") <= 0  # type: ignore[operator]


def test_other_types_are_masked_through_str() -> None:
    assert mask_value(3.5, None, "mask") == "***"  # type: ignore[arg-type]


def test_unknown_class_or_action() -> None:
    with pytest.raises(ValueError, match="unknown PII class"):
        make_masker("phone", "mask")
    with pytest.raises(ValueError, match="unknown masking action"):
        make_masker("mobile", "scramble")


def test_masker_is_cached_per_column_spec() -> None:
    assert make_masker("mobile", "mask") is make_masker("mobile", "mask", key=DEFAULT_KEY)


@pytest.mark.parametrize(
    ("cls", "value"),
    [
        # Generic-rule output (first 3 + last 4) that has another class's shape must not be re-masked.
        ("uscc", "0000000000000:0000"),
        ("bank_card", "123x5678901234"),
        ("passport", "abcdefgh:ijklmn12"),
        ("passport", "2001:0db8:0000:0000:0000:0000:0000:0001"),
    ],
)
def test_generic_output_is_not_remasked_by_the_class_rule(cls: str, value: str) -> None:
    once = mask_value(value, cls, "mask")
    assert mask_value(once, cls, "mask") == once
