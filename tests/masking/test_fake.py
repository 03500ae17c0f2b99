"""Fakes are deterministic, format-valid, keep the documented parts and never equal their input."""

from __future__ import annotations

import re

import pytest

from masking import mask_value
from masking.checksums import luhn_valid, validate_id15, validate_id18, validate_uscc
from masking.segments import is_cn_mobile


def fake(value: str, cls: str, key: bytes = b"k1") -> str:
    out = mask_value(value, cls, "fake", key=key)
    assert isinstance(out, str)
    return out


@pytest.mark.parametrize(
    "number", ["13812345678", "19212345678", "16212345678", "17400012345", "13490000000"]
)
def test_mobile_keeps_prefix_and_is_valid(number: str) -> None:
    out = fake(number, "mobile")
    assert out != number and out[:3] == number[:3] and is_cn_mobile(out)


def test_mobile_keeps_layout() -> None:
    out = fake("+86 138-1234-5678", "mobile")
    assert re.fullmatch(r"\+86 138-\d{4}-\d{4}", out)
    # Same underlying number, same fake digits.
    assert out.replace(" ", "").replace("-", "")[3:] == fake("13812345678", "mobile")


def test_id_keeps_region_birth_date_and_sex() -> None:
    out = fake("11010519491231002X", "id_card")
    assert validate_id18(out) and out[:14] == "11010519491231" and out != "11010519491231002X"
    assert int(out[16]) % 2 == 0
    legacy = fake("110105491231002", "id_card")
    assert validate_id15(legacy) and legacy[:12] == "110105491231"


def test_id_int_fake_has_no_x() -> None:
    for v in (110105194912310021, 440524188001010014, 360426199101010071):
        out = mask_value(v, "id_card", "fake")
        assert isinstance(out, int) and validate_id18(str(out))


def test_bank_card_keeps_bin_and_length() -> None:
    out = fake("6222020200112233446", "bank_card")
    assert out[:6] == "622202" and len(out) == 19 and luhn_valid(out) and out != "6222020200112233446"


def test_uscc_valid() -> None:
    out = fake("91110000600037341L", "uscc")
    assert validate_uscc(out) and out[:8] == "91110000" and out != "91110000600037341L"


def test_landline_keeps_area_code() -> None:
    out = fake("010-62345678", "landline")
    assert re.fullmatch(r"010-[2-9]\d{7}", out) and out != "010-62345678"


def test_email_keeps_domain() -> None:
    out = fake("zhang.san@163.com", "email")
    assert out.endswith("@163.com") and out != "zhang.san@163.com"


def test_name_from_faker() -> None:
    out = fake("张三", "person_name")
    assert out != "张三" and 2 <= len(out) <= 4
    assert fake("张三", "person_name") == out
    assert fake("张三", "person_name", key=b"k2") != out


def test_passport_keeps_letters() -> None:
    out = fake("EA1234567", "passport")
    assert re.fullmatch(r"EA\d{7}", out) and out != "EA1234567"


def test_garbage_gets_a_shape_preserving_fake() -> None:
    out = fake("ab-12", "mobile")
    assert re.fullmatch(r"[a-z]{2}-\d{2}", out) and out != "ab-12"


def test_int_fake_keeps_digit_count() -> None:
    out = mask_value(13812345678, "mobile", "fake")
    assert isinstance(out, int) and is_cn_mobile(str(out)) and out != 13812345678
    out = mask_value(1234, None, "fake")
    assert isinstance(out, int) and len(str(out)) == 4
