"""Checksum vectors from PII.md §2.6, §3.3, §4.3 and §5.5."""

from __future__ import annotations

import datetime

import pytest

from masking.checksums import (
    id15_to_18,
    id18_check_char,
    luhn_valid,
    org_code_check_char,
    validate_hkid,
    validate_id15,
    validate_id18,
    validate_taiwan_id,
    validate_uscc,
)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("11010519491231002X", True),
        ("440524188001010014", True),  # born 1880: the date range must start at 1800
        ("11010519491231002x", True),
        ("360426199101010071", True),
        ("513101198201130014", True),
        ("110105194912310021", False),  # wrong check character
        ("11010519490231002X", False),  # 1949-02-31 is not a date
        ("990105194912310027", False),  # 9: foreigner prefix is allowed, but check fails
        ("000105194912310021", False),  # province 00
        ("1101051949123100", False),
    ],
)
def test_id18(value: str, valid: bool) -> None:
    assert validate_id18(value) is valid


def test_id18_rejects_future_birth_date() -> None:
    body = "11010520991231002"
    assert not validate_id18(body + id18_check_char(body), today=datetime.date(2025, 1, 1))


def test_id18_check_char_worked_example() -> None:
    assert id18_check_char("51310119820113001") == "4"


def test_id15() -> None:
    assert validate_id15("110105491231002")
    assert not validate_id15("110105491331002")  # month 13
    assert id15_to_18("110105491231002") == "11010519491231002X"


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("6222020200112233446", True),
        ("6222020200112233445", False),
        ("6212260200000000006", True),
        ("4111111111111111", True),
        ("79927398713", True),
        ("79927398710", False),
    ],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        ("91110000600037341L", True),
        ("91330100799655058B", True),
        ("91440300708461136T", True),
        ("914403001922038216", True),
        ("91310000132200821H", True),
        ("N2110000MA00000014", True),
        ("91110000600037341M", False),
        ("91110000600037341I", False),
    ],
)
def test_uscc(code: str, valid: bool) -> None:
    assert validate_uscc(code) is valid


def test_org_code_check() -> None:
    assert org_code_check_char("60003734") == "1"


@pytest.mark.parametrize(
    ("value", "valid"), [("CA182361(1)", True), ("A123456(3)", True), ("CA182361(2)", False)]
)
def test_hkid(value: str, valid: bool) -> None:
    assert validate_hkid(value) is valid


def test_taiwan_id() -> None:
    assert validate_taiwan_id("A123456789")
    assert not validate_taiwan_id("A123456788")
