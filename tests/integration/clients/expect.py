"""What the demo policy's vendor role must see of a clear value, shared by the client tests."""

from __future__ import annotations

import re

MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
ID18 = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


def masked_mobile(clear: str) -> str:
    assert MOBILE.fullmatch(clear), clear
    return clear[:3] + "****" + clear[-4:]


def is_masked_id_card(masked: str, clear: str) -> bool:
    return (
        len(masked) == len(clear)
        and masked[:3] == clear[:3]
        and masked[-4:] == clear[-4:]
        and set(masked[3:-4]) == {"*"}
    )


def is_masked_name(masked: str, clear: str) -> bool:
    return masked != clear and masked[0] == clear[0] and "*" in masked


def check_customer(masked: tuple, clear: tuple) -> None:
    """(id, name, phone, id_card, branch_id) as the vendor got it, against the database's row."""
    mid, mname, mphone, mid_card, mbranch = masked
    cid, cname, cphone, cid_card, cbranch = clear
    assert (mid, mbranch) == (cid, cbranch) and mbranch == 12
    assert mphone == masked_mobile(cphone), (mphone, cphone)
    assert is_masked_id_card(mid_card, cid_card), (mid_card, cid_card)
    assert is_masked_name(mname, cname), (mname, cname)


CUSTOMERS_SQL = "SELECT id, name, phone, id_card, branch_id FROM customers"
