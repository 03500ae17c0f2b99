"""Mobile segment vectors from PII.md §1.4."""

from __future__ import annotations

import pytest

from masking.segments import PHONE_PREFIXES3, is_cn_mobile, mobile_prefix_info

VALID = [
    *("13812345678", "19212345678", "19012345678", "19612345678", "19712345678", "19512345678"),
    *("19312345678", "16212345678", "17012345678", "17112345678", "17212345678", "17400012345"),
    *("14712345678", "14912345678", "13490000000"),
]
INVALID = [
    *("12012345678", "15412345678", "19412345678", "16012345678", "16112345678", "17912345678"),
    *("14012345678", "17420012345", "11012345678", "1381234567", "138123456789", "10086"),
]


@pytest.mark.parametrize("number", VALID)
def test_valid_mobiles(number: str) -> None:
    assert is_cn_mobile(number)


@pytest.mark.parametrize("number", INVALID)
def test_invalid_mobiles(number: str) -> None:
    assert not is_cn_mobile(number)


def test_iot_only_when_allowed() -> None:
    assert not is_cn_mobile("1440123456789")
    assert is_cn_mobile("1440123456789", allow_iot=True)


def test_longest_prefix_wins() -> None:
    assert mobile_prefix_info("13490000000").carrier == "telecom"  # type: ignore[union-attr]
    assert mobile_prefix_info("13480000000").carrier == "mobile"  # type: ignore[union-attr]
    assert mobile_prefix_info("19212345678").carrier == "broadnet"  # type: ignore[union-attr]


def test_fake_prefix_pool_covers_new_segments() -> None:
    assert {"192", "196", "162", "170", "199"} <= set(PHONE_PREFIXES3)
    assert "154" not in PHONE_PREFIXES3
