"""Judging sampled column values: which classes fire, when a column *is* a class, the snippet."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from policies.discovery import judge_column, snippet, unclassified

PHONES = [f"1381234{i:04d}" for i in range(50)]
IDS = ["11010519491231002X", "110105194912310021"]


def test_a_column_of_mobiles_is_mobile() -> None:
    f = judge_column("public", "t", "contact", [*PHONES, None, "n/a"])
    assert f is not None and f.cls == "mobile" and f.sampled == 51
    assert f.hits == (("mobile", 50),)


def test_numbers_inside_text_make_free_text() -> None:
    notes = [f"客户来电号码{p}，要求回电" for p in PHONES[:10]] + ["无"] * 90
    f = judge_column("public", "t", "remark", notes)
    assert f is not None and f.cls == "free_text"
    assert "10% mobile in 100 sampled rows" in f.comment()


def test_mixed_classes_make_free_text() -> None:
    f = judge_column("public", "t", "ref", [*PHONES[:10], *(IDS * 5)])
    assert f is not None and f.cls == "free_text"
    assert {c for c, _ in f.hits} == {"mobile", "id_card"}


def test_numbers_stored_as_integers_count() -> None:
    f = judge_column("public", "t", "phone_num", [int(p) for p in PHONES])
    assert f is not None and f.cls == "mobile"


def test_a_single_coincidence_is_not_a_finding() -> None:
    assert judge_column("public", "t", "order_no", ["13812345678"] + [str(i) for i in range(1000)]) is None
    assert judge_column("public", "t", "empty", []) is None


@given(st.lists(st.integers(min_value=0, max_value=10**9), max_size=200))
def test_short_counters_never_fire(values: list[int]) -> None:
    assert judge_column("public", "t", "id", values) is None


def test_snippet_names_columns_as_policies_do() -> None:
    a = judge_column("public", "clients", "remark", [f"电话{p}" for p in PHONES])
    b = judge_column("brokerage", "accounts", "mobile", PHONES)
    assert a is not None and b is not None
    text = snippet([a, b], "crm", "public")
    assert text.splitlines() == [
        "columns:",
        "  brokerage.accounts.mobile: mobile  # 100% mobile in 50 sampled rows",
        "  crm.clients.remark: free_text  # 100% mobile in 50 sampled rows",
    ]
    assert "1381234" not in text  # never a sampled value
    assert unclassified([a, b], {("public", "clients", "remark"): "free_text"}) == [b]
    assert "no unclassified column" in snippet([], "crm", "public")
