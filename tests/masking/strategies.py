"""Hypothesis strategies for valid (and deliberately invalid) values of each PII class."""

from __future__ import annotations

import datetime
import ipaddress

from hypothesis import strategies as st

from masking.checksums import (
    PROVINCES,
    USCC_CHARS,
    id18_check_char,
    luhn_check_digit,
    org_code_check_char,
    uscc_check_char,
)
from masking.segments import SEGMENTS

_PHONE_PREFIXES = sorted(p for p, seg in SEGMENTS.items() if seg.kind != "iot")
_DIGIT = st.sampled_from("0123456789")


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(_DIGIT, min_size=n, max_size=n)


@st.composite
def mobiles(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(_PHONE_PREFIXES))
    return prefix + draw(digits(11 - len(prefix)))


@st.composite
def id18s(draw: st.DrawFn) -> str:
    province = draw(st.sampled_from(sorted(PROVINCES)))
    born = draw(st.dates(datetime.date(1800, 1, 1), datetime.date.today()))
    body = f"{province}{draw(digits(4))}{born:%Y%m%d}{draw(digits(3))}"
    return body + id18_check_char(body)


@st.composite
def id15s(draw: st.DrawFn) -> str:
    province = draw(st.sampled_from(sorted(p for p in PROVINCES if p < 90)))
    born = draw(st.dates(datetime.date(1900, 1, 1), datetime.date(1999, 12, 31)))
    return f"{province}{draw(digits(4))}{born:%y%m%d}{draw(digits(3))}"


@st.composite
def bank_cards(draw: st.DrawFn) -> str:
    bin_ = draw(st.sampled_from(["622202", "621226", "622848", "427020", "530990", "955880", "436742"]))
    length = draw(st.integers(16, 19))
    body = bin_ + draw(digits(length - 7))
    return body + luhn_check_digit(body)


@st.composite
def usccs(draw: st.DrawFn) -> str:
    dept = draw(st.sampled_from("123456789ANY"))
    kind = draw(st.sampled_from("123"))
    org = draw(st.text(st.sampled_from(USCC_CHARS), min_size=8, max_size=8))
    # The organisation code carries its own GB 11714 check character, which detectors require of
    # all-digit codes (1 in 31 random 18-digit numbers passes the USCC check alone).
    body = dept + kind + draw(digits(6)) + org + org_code_check_char(org)
    return body + uscc_check_char(body)


@st.composite
def landlines(draw: st.DrawFn) -> str:
    area = draw(st.sampled_from(["010", "020", "021", "0571", "0755", "0951", "0898"]))
    sub_len = draw(st.sampled_from([7, 8])) if len(area) == 4 else 8
    sub = draw(st.sampled_from("23456789")) + draw(digits(sub_len - 1))
    return area + draw(st.sampled_from(["-", "", " "])) + sub


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = draw(st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789._"), min_size=1, max_size=16))
    local = local.strip("._") or "a"
    domain = draw(st.sampled_from(["163.com", "qq.com", "126.com", "example.com.cn", "gmail.com"]))
    return f"{local}@{domain}"


@st.composite
def ipv4s(draw: st.DrawFn) -> str:
    return str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1))))


@st.composite
def ipv6s(draw: st.DrawFn) -> str:
    """Real-looking IPv6 (a global or link-local network part, something after the first 2 groups)."""
    network = draw(st.sampled_from([0x20010DB8, 0xFE800000, 0x240E0001, 0x2409_8000]))
    host = draw(st.integers(1, 2**96 - 1))
    ip = ipaddress.IPv6Address(network << 96 | host)
    return draw(st.sampled_from([ip.compressed, ip.exploded, ip.compressed.upper()]))


# Province / city / district prefixes (PII.md §5.4) with the part the mask keeps.
ADDRESS_PREFIXES = [
    "北京市海淀区",
    "上海市浦东新区",
    "浙江省杭州市桐庐县",
    "广东省深圳市南山区",
    "四川省成都市武侯区",
    "内蒙古自治区呼伦贝尔市新巴尔虎右旗",
    "吉林省延边朝鲜族自治州延吉市",
    "新疆维吾尔自治区乌鲁木齐市天山区",
    "黑龙江省大兴安岭地区漠河市",
    "广东省东莞市",
]
_STREET = st.text(
    st.sampled_from("中山人民建设解放文化幸福和平路街道巷弄号栋幢单元室楼村镇0123456789-"), max_size=20
)


@st.composite
def addresses(draw: st.DrawFn) -> tuple[str, str]:
    """(address, kept prefix): the rest never starts with a district-like name."""
    prefix = draw(st.sampled_from(ADDRESS_PREFIXES))
    rest = draw(st.sampled_from(["马连洼街道", "解放路", "城南街道", "长安镇", "中山路", ""])) + draw(_STREET)
    return prefix + rest, prefix


VALUES = {
    "mobile": mobiles(),
    "id_card": st.one_of(id18s(), id15s()),
    "bank_card": bank_cards(),
    "uscc": usccs(),
    "landline": landlines(),
    "email": emails(),
    "ip_address": st.one_of(ipv4s(), ipv6s()),
}

# Surrounding text: CJK, punctuation and spaces but never an ASCII letter or digit, which would
# legitimately glue onto a planted value and change what it is.
FILLER = st.text(st.sampled_from("客户电话是的，。：；（）、 我们办理业务谢谢您好！\n\t"), max_size=20)

FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
