"""The address and ip_address classes (PII.md §5.4, §6): display rules, every action, detection."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masking import (
    ACTIONS,
    CLASSES,
    PERSONAL_CLASSES,
    detect,
    make_masker,
    make_text_masker,
    mask_text,
    mask_value,
)
from tests.masking.strategies import FILLER, FULLWIDTH, addresses, ipv4s, ipv6s

PROFILE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = st.binary(min_size=1, max_size=32)
IPS = st.one_of(ipv4s(), ipv6s())


def test_every_policy_class_is_known() -> None:
    # policies/model.py BUILTIN_CLASSES must all have display rules here (restated, not imported:
    # masking must not depend on policies).
    builtin = {"mobile", "landline", "id_card", "bank_card", "person_name", "email", "address", "passport"}
    assert builtin | {"ip_address"} <= set(CLASSES)


def test_personal_classes_unchanged() -> None:
    assert PERSONAL_CLASSES == (
        "mobile",
        "id_card",
        "bank_card",
        "landline",
        "email",
        "person_name",
        "passport",
    )


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("北京市海淀区马连洼街道289号", "北京市海淀区********"),  # PII.md §5.4 vector
        ("浙江省杭州市桐庐县城南街道", "浙江省杭州市桐庐县****"),  # PII.md §5.4 vector
        ("北京市海淀区********", "北京市海淀区********"),
        ("新疆维吾尔自治区乌鲁木齐市天山区解放路1号", "新疆维吾尔自治区乌鲁木齐市天山区*****"),
        ("吉林省延边朝鲜族自治州延吉市河南街", "吉林省延边朝鲜族自治州延吉市***"),
        ("内蒙古自治区呼伦贝尔市新巴尔虎右旗阿拉坦额莫勒镇", "内蒙古自治区呼伦贝尔市新巴尔虎右旗*******"),
        ("山东省济南市市中区经十路", "山东省济南市市中区***"),
        ("中国广东省东莞市长安镇", "中国广东省东莞市***"),  # no district: city is the last kept part
        ("北京海淀区中关村大街1号", "北京海淀区*******"),
        # A compound or industrial park is not a district: it is hidden, not kept.
        ("浙江省杭州市城西银泰城小区3幢", "浙江省杭州市********"),
        ("江苏省苏州市工业园区星湖街328号", "江苏省苏州市********"),
        # No recognisable prefix: the generic rule, never clear.
        ("马连洼街道289号", "*********"),
        ("花市大街", "****"),
        ("中关村大街27号院3号楼502室", "中关村*********502室"),
        ("", ""),
    ],
)
def test_address_display_rule(value: str, masked: str) -> None:
    assert mask_value(value, "address", "mask") == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("10.12.34.56", "10.12.*.*"),
        ("10.12.*.*", "10.12.*.*"),
        ("192.168.1.1/24", "192.168.*.*/24"),
        ("１０.１２.３.４", "１０.１２.*.*"),
        ("2001:db8::1", "2001:db8::*"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:0db8:*:*:*:*:*:*"),
        ("2001:DB8:85A3::8A2E:370:7334", "2001:DB8:*::*:*:*"),
        ("fe80::1:2:3", "fe80::*:*:*"),  # '::' inside the first two groups: only fe80 is kept
        ("::ffff:10.1.2.3", "::*:*.*.*.*"),
        ("::1", "::*"),
        # Not an IP shape: the generic rule.
        ("1.2.3", "*****"),
        ("12:30:45", "********"),
        ("10.1.2.3:8080", "*************"),
    ],
)
def test_ip_display_rule(value: str, masked: str) -> None:
    assert mask_value(value, "ip_address", "mask") == masked


def test_ip_int_is_ipv4_with_last_two_octets_zeroed() -> None:
    ip = int(ipaddress.IPv4Address("10.12.34.56"))
    assert mask_value(ip, "ip_address", "mask") == int(ipaddress.IPv4Address("10.12.0.0"))
    assert mask_value(-5, "ip_address", "mask") == 0  # not an IPv4 value: generic rule


@pytest.mark.parametrize("cls", ["address", "ip_address"])
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize(
    "value", ["北京市海淀区马连洼街道289号", "10.12.34.56", 167772161, b"2001:db8::1", None]
)
def test_every_action_preserves_type(cls: str, action: str, value: str | int | bytes | None) -> None:
    out = make_masker(cls, action)(value)
    if action == "null" or value is None:
        assert out is None
    else:
        assert type(out) is type(value)
    if action == "clear":
        assert out == value
    elif action in ("mask", "hash", "fake", "redact") and value is not None:
        assert out != value


def test_hash_is_class_prefixed_and_format_insensitive() -> None:
    h = mask_value("2001:db8::1", "ip_address", "hash")
    assert isinstance(h, str) and h.startswith("ip_address_")
    assert mask_value("2001:0DB8:0000::0001", "ip_address", "hash") == h
    assert mask_value("北京市海淀区1号", "address", "hash").startswith("address_")  # type: ignore[union-attr]


def test_fake_address_is_faker_zh_cn() -> None:
    out = mask_value("北京市海淀区马连洼街道289号", "address", "fake")
    assert isinstance(out, str) and out and " " not in out  # no trailing postcode
    assert out != "北京市海淀区马连洼街道289号"
    assert any(s in out for s in ("省", "自治区", "市"))


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("登录IP 10.12.34.56，端口", ["10.12.34.56"]),
        ("host 192.168.1.1:8080.", ["192.168.1.1"]),
        ("IPv6: 2001:db8::1 ok", ["2001:db8::1"]),
        ("地址:fe80::1: refused", ["fe80::1"]),
        ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334。", ["2001:0db8:85a3:0000:0000:8a2e:0370:7334"]),
        ("mapped ::ffff:10.1.2.3 x", ["::ffff:10.1.2.3"]),
        ("range 10.0.0.1-10.0.0.9", ["10.0.0.1", "10.0.0.9"]),
        # Version strings, out-of-range octets, glued letters, timestamps, MACs, C++ scopes.
        ("ver 1.2.3.4.5 and v1.2.3.4 and 1.2.3.4a", []),
        ("256.1.1.1 1.2.3.04 1.2.3", []),
        ("2024-05-01 12:33:01 mac 00:1a:2b:3c:4d:5e std::cout dead::beef", []),
        ("already 10.12.*.* and 2001:db8::* and 2001:db8:*:*:*:*:*:*", []),
    ],
)
def test_ip_detection(text: str, found: list[str]) -> None:
    assert [s.text for s in detect(text, ["ip_address"])] == found
    assert all(s.cls == "ip_address" for s in detect(text, ["ip_address"]))


def test_address_is_column_only() -> None:
    assert detect("收件地址：北京市海淀区马连洼街道289号", ["address"]) == []
    masker = make_text_masker(["address", "mobile"])
    assert masker("北京市海淀区马连洼街道289号 13812345678") == "北京市海淀区马连洼街道289号 138****5678"
    text = "北京市海淀区马连洼街道289号"
    assert make_text_masker(["address"])(text) is text


def test_ip_in_text_only_when_asked_or_all() -> None:
    text = "客户13812345678 从 10.12.34.56 登录"
    assert mask_text(text, PERSONAL_CLASSES) == "客户138****5678 从 10.12.34.56 登录"
    assert mask_text(text) == "客户138****5678 从 10.12.*.* 登录"  # None: every class
    assert mask_text(text, ["ip_address"], "hash").count("ip_address_") == 1
    assert mask_text("ip 10.12.34.56", ["ip_address"]) == "ip 10.12.*.*"  # ASCII fast path still scans


# -- properties ------------------------------------------------------------------------------------


@PROFILE
@given(addresses())
def test_address_mask_keeps_prefix_and_hides_up_to_8(case: tuple[str, str]) -> None:
    value, prefix = case
    out = mask_value(value, "address", "mask")
    assert out == prefix + "*" * min(len(value) - len(prefix), 8)
    assert mask_value(out, "address", "mask") == out


@PROFILE
@given(ipv4s())
def test_ipv4_mask_keeps_two_octets(value: str) -> None:
    a, b, _c, _d = value.split(".")
    assert mask_value(value, "ip_address", "mask") == f"{a}.{b}.*.*"


@PROFILE
@given(ipv6s())
def test_ipv6_mask_keeps_two_groups(value: str) -> None:
    out = mask_value(value, "ip_address", "mask")
    assert isinstance(out, str)
    kept = value.split(":")[:2]
    assert out.startswith(":".join(kept) + ":")
    assert set(out[len(":".join(kept)) :]) <= {":", "*"}
    assert len(out) <= len(value)


@PROFILE
@given(
    st.sampled_from(["address", "ip_address"]), st.one_of(IPS, addresses().map(lambda c: c[0])), KEYS, KEYS
)
def test_hash_and_fake_deterministic_per_key(cls: str, value: str, k1: bytes, k2: bytes) -> None:
    for action in ("hash", "fake"):
        a = mask_value(value, cls, action, key=k1)
        assert a == mask_value(value, cls, action, key=k1)
        assert a != value
        if k1 != k2 and action == "hash":
            assert a != mask_value(value, cls, action, key=k2)


@PROFILE
@given(IPS, KEYS)
def test_ip_fake_is_same_family_and_network(value: str, key: bytes) -> None:
    out = mask_value(value, "ip_address", "fake", key=key)
    assert isinstance(out, str)
    real, fake = ipaddress.ip_address(value), ipaddress.ip_address(out)
    assert fake != real and fake.version == real.version
    low = 16 if real.version == 4 else 96
    assert int(fake) >> low == int(real) >> low


@PROFILE
@given(
    st.sampled_from(["address", "ip_address"]),
    st.sampled_from(["mask", "hash", "fake", "redact"]),
    st.one_of(st.text(max_size=30), st.integers(-(10**20), 10**20), st.binary(max_size=20), IPS),
)
def test_types_preserved_and_mask_idempotent(cls: str, action: str, value: str | int | bytes) -> None:
    out = mask_value(value, cls, action)
    assert type(out) is type(value)
    if action == "mask":
        assert mask_value(out, cls, "mask") == out
        if isinstance(value, int):
            assert len(str(abs(out))) <= len(str(abs(value)))  # type: ignore[arg-type]
    if action == "fake" and isinstance(value, int):
        assert len(str(abs(out))) == len(str(abs(value)))  # type: ignore[arg-type]


@PROFILE
@given(FILLER, IPS, st.booleans(), FILLER)
def test_planted_ip_is_found_and_masked(prefix: str, value: str, fullwidth: bool, suffix: str) -> None:
    planted = value.translate(FULLWIDTH) if fullwidth else value
    text = prefix + planted + suffix
    # Covered by a detected span: `：：0.0.0.0` may be read as the IPv6 address ::0.0.0.0 as a whole.
    start, end = len(prefix), len(prefix) + len(planted)
    assert any(s.start <= start and end <= s.end for s in detect(text, ["ip_address"]))
    once = mask_text(text, ["ip_address"])
    assert planted not in once and mask_text(once, ["ip_address"]) == once


@pytest.mark.parametrize("text", ["（：：2001:db8::1", "::2001:db8::1", "地址::fe80::1"])
def test_a_masked_ipv6_is_not_detected_again_from_its_visible_groups(text: str) -> None:
    # `::2001:db8` is itself a valid address: the masked `::2001:db8::*` must not be re-masked.
    once = mask_text(text, ["ip_address"])
    assert once != text and mask_text(once, ["ip_address"]) == once


@pytest.mark.parametrize("text", ["（：：010-20000000", "电话::10 号", "::1"])
def test_colons_before_one_group_are_no_address_in_text(text: str) -> None:
    """`::` and one group is punctuation before a number as often as an address: reporting it made
    masking a masked landline (（：：010-****0000) change it again (hypothesis, issue 12)."""
    assert [s for s in detect(text) if s.cls == "ip_address"] == []
    masker = make_text_masker(None, "mask")
    once = masker(text)
    assert masker(once) == once
