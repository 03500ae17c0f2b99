"""value_key, fold, which columns disclose, and the thread that keys batches."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from masking.native import load
from policies.decision import ColumnMask
from proxy.services.disclosure import (
    ROW_KEY,
    SCAN,
    Batch,
    Disclosures,
    Noted,
    expand,
    fold,
    found_in,
    int_reader,
    observed,
    text_reader,
    value_key,
)
from proxy.services.gate import Disclosed, Principal


def test_one_number_written_many_ways_is_one_key() -> None:
    k = b"k" * 32
    same = {
        value_key(k, "mobile", v)
        for v in (
            "13812345678",
            "138-1234-5678",
            "138 1234 5678",
            "１３８１２３４５６７８",
            "+86 138 1234 5678",
        )
    }
    assert len(same) == 1
    assert fold("11010519491231002x") == "11010519491231002X"
    assert value_key(k, "mobile", "13812345678") != value_key(b"other", "mobile", "13812345678")


def test_observed_columns() -> None:
    phone = ColumnMask(0, "phone", "mobile", "mask", sources=("public.customers.phone",))
    ident = ColumnMask(1, "id", None, "clear", sources=("public.customers.id",))
    derived = ColumnMask(2, "l", "mobile", "redact", sources=("public.customers.phone",), derived=True)
    assert observed(phone, None, "crm", "public") == ("mobile", "public.customers.phone")
    assert observed(ident, "crm.customers.id", "crm", "public") == ("customer_key", "public.customers.id")
    assert observed(ident, "public.customers.id", "crm", "public") == ("customer_key", "public.customers.id")
    # Anything else is read for the numbers it holds: lineage cannot follow every way SQL
    # moves a value (a cast, a concatenation, a temp table), the detectors read what arrived.
    assert observed(ident, "crm.accounts.id", "crm", "public") == (SCAN, "public.customers.id")
    assert observed(ident, None, "crm", "public") == (SCAN, "public.customers.id")
    assert observed(derived, None, "crm", "public") == (SCAN, "public.customers.phone")
    assert observed(None, None, "crm", "public") == (SCAN, "")
    # The key through a cast (id::text) still names the customer.
    cast = ColumnMask(3, "id", None, "clear", sources=("public.customers.id",), derived=True)
    assert observed(cast, "crm.customers.id", "crm", "public") == ("customer_key", "public.customers.id")


def test_canary_key_columns_are_observed_as_row_keys() -> None:
    ident = ColumnMask(1, "id", None, "clear", sources=("public.customers.id",))
    other = ColumnMask(2, "id", None, "clear", sources=("public.accounts.id",))
    rows = ("crm.public.customers.id",)
    assert observed(ident, None, "crm", "public", rows) == (ROW_KEY, "public.customers.id")
    assert observed(other, None, "crm", "public", rows) == (SCAN, "public.accounts.id")
    # The policy's customer key wins: budgets count it, and the canary keeper takes both.
    assert observed(ident, "crm.customers.id", "crm", "public", rows) == (
        "customer_key",
        "public.customers.id",
    )
    # Another database's table of the same name is not the canaries'.
    assert observed(ident, None, "sales", "public", rows) == (SCAN, "public.customers.id")


def test_numbers_are_found_in_what_a_person_received() -> None:
    assert found_in("call back on 138-1234-5678 please") == [("mobile", "138-1234-5678")]
    assert found_in("87654321831") == [("mobile", "13812345678")]  # reverse(phone)
    assert found_in('{"id": 9, "phone": "13812345678"}') == [("mobile", "13812345678")]
    assert found_in("12345") == []
    assert expand("mobile", "13812345678") == [("mobile", "13812345678")]
    assert expand(SCAN, "x 13812345678") == [("mobile", "13812345678")]


def test_scanned_values_are_keyed_by_the_numbers_they_hold() -> None:
    got: list[Batch] = []
    k = b"k" * 32
    d = Disclosures(k, [got.append], clock=lambda: 5.0)
    p = Principal("li", "dba")
    d(p, "t-1", [Disclosed(SCAN, "", "note: 13812345678 and 13900001111", True)])
    d(p, "t-2", [Disclosed(SCAN, "", "nothing here", True)])  # no keys: no batch
    cols = {0: (SCAN, "", True, text_reader("utf-8")), 1: ("mobile", "c", True, text_reader("utf-8"))}
    d(p, "t-3", Noted(cols, [(0, b"87654321831"), (1, b"13700001111"), (0, b"42")]))
    d.drain()
    d.close()
    assert [b.statement_id for b in got] == ["t-1", "t-3"]
    assert {key for _c, key, _clear in got[0].keys} == {
        value_key(k, "mobile", "13812345678"),
        value_key(k, "mobile", "13900001111"),
    }
    assert got[1].keys == (
        ("mobile", value_key(k, "mobile", "13812345678"), True),
        ("mobile", value_key(k, "mobile", "13700001111"), True),
    )


def test_the_international_prefix_folds_away() -> None:
    k = b"k"
    assert value_key(k, "mobile", "0086 138 1234 5678") == value_key(k, "mobile", "13812345678")
    assert value_key(k, "mobile", "008613812345678") == value_key(k, "mobile", "13812345678")
    native = load("proxy.services._bloom")
    if native is not None:  # the native fast path folds alike
        assert native.keys(k, [b"008613812345678", b"8613812345678"]) == [value_key(k, "", "13812345678")] * 2


def test_batches_are_keyed_off_the_calling_thread_and_reach_every_keeper() -> None:
    got: list[Batch] = []
    d = Disclosures(b"k" * 32, [got.append], clock=lambda: 5.0)
    d(Principal("li", "dba"), "t-1", [Disclosed("mobile", "c", "13812345678", True)])
    d.drain()
    d.close()
    (b,) = got
    assert (b.user, b.role, b.statement_id, b.ts) == ("li", "dba", "t-1", 5.0)
    assert b.keys == (("mobile", value_key(b"k" * 32, "mobile", "13812345678"), True),)


def test_a_full_queue_drops_and_counts() -> None:
    import threading

    gate = threading.Event()
    dropped: list[int] = []
    d = Disclosures(b"k", [lambda b: gate.wait(5)], max_batches=1, on_drop=dropped.append)
    p = Principal("li", "dba")
    for _ in range(5):
        d(p, "s", [Disclosed("mobile", "", "1", True)])
    gate.set()
    d.drain()
    d.close()
    assert d.dropped >= 3 and dropped


@given(
    st.binary(max_size=70),
    st.lists(st.one_of(st.from_regex(r"\A[0-9]{1,45}\Z"), st.text(max_size=15)), max_size=20),
)
def test_native_keys_are_value_keys(masking_key: bytes, values: list[str]) -> None:
    native = load("proxy.services._bloom")
    if native is None:
        return  # MASKGATE_PURE=1
    raw = [v.encode("utf-8", "surrogatepass") for v in values]
    for v, k in zip(values, native.keys(masking_key, raw), strict=True):
        assert k is None or k == value_key(masking_key, "", v)
        if v.isascii() and v.isdigit() and len(v) <= 40:
            assert k is not None


def test_batches_of_noted_rows_are_keyed_natively_and_in_python_alike() -> None:
    read = text_reader("utf-8")
    cols = {
        0: ("mobile", "c", True, read),
        1: ("id_card", "d", False, read),
        2: ("mobile", "e", True, int_reader("big")),
    }
    noted = Noted(
        cols, [(0, b"13812345678"), (1, b"11010519491231002x"), (2, (13812345678).to_bytes(8, "big"))]
    )
    got: list[Batch] = []
    d = Disclosures(b"k", [got.append])
    d(Principal("li", "dba"), "t-1", noted)
    d.drain()
    d.close()
    assert got[0].keys == tuple((x.cls, value_key(b"k", x.cls, x.value), x.clear) for x in noted)
    assert [x.value for x in noted] == ["13812345678", "11010519491231002x", "13812345678"]


_MOBILES = st.builds(
    lambda p, rest: p + rest,
    st.sampled_from(["138", "139", "150", "186", "199", "177"]),
    st.from_regex(r"\A[0-9]{8}\Z"),
)
_FORMS = {
    "plain": lambda n: f"call {n} now",
    "reversed": lambda n: f"note {n[::-1]} x",
    "base64": lambda n: __import__("base64").b64encode(n.encode()).decode(),
    "hex": lambda n: n.encode().hex(),
    "entities": lambda n: "".join(f"&#{ord(c)};" for c in n),
    "dotted": lambda n: f"{n[:3]}.{n[3:7]}.{n[7:]}",
    "array": lambda n: "{" + ",".join(n) + "}",
    "numerals": lambda n: n.translate(str.maketrans("0123456789", "〇一二三四五六七八九")),
    "padded": lambda n: n + "0",
    "prefixed": lambda n: "00" + n,
    "full-width": lambda n: n.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
}


@given(_MOBILES, st.sampled_from(sorted(_FORMS)))
def test_a_number_is_found_in_every_form_its_reader_can_read_back(number: str, form: str) -> None:
    from masking.segments import is_cn_mobile

    if not is_cn_mobile(number):
        return
    found = {fold(v) for c, v in found_in(_FORMS[form](number)) if c == "mobile"}
    assert number in found, (form, _FORMS[form](number))


def test_masked_values_are_read_as_written_only() -> None:
    """A masked value's reader got what its masker left: read as written (a number hidden in a
    form the masker did not read is no clear disclosure, and reading deeply costs)."""
    assert found_in("note 87654321831 x", deep=False) == []
    assert found_in("call 13812345678", deep=False) == [("mobile", "13812345678")]
    assert found_in("MTM4MTIzNDU2Nzg=", deep=False) == []
