"""Hypothesis strategies for valid (and deliberately invalid) values of each PII class."""

from __future__ import annotations

import datetime

from hypothesis import strategies as st

from masking.checksums import PROVINCES, USCC_CHARS, id18_check_char, luhn_check_digit, uscc_check_char
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
    org = draw(st.text(st.sampled_from(USCC_CHARS), min_size=9, max_size=9))
    body = dept + kind + draw(digits(6)) + org
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


VALUES = {
    "mobile": mobiles(),
    "id_card": st.one_of(id18s(), id15s()),
    "bank_card": bank_cards(),
    "uscc": usccs(),
    "landline": landlines(),
    "email": emails(),
}

# Surrounding text: CJK, punctuation and spaces but never an ASCII letter or digit, which would
# legitimately glue onto a planted value and change what it is.
FILLER = st.text(st.sampled_from("客户电话是的，。：；（）、 我们办理业务谢谢您好！\n\t"), max_size=20)

FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
