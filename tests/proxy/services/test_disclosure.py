"""value_key, fold, which columns disclose, and the thread that keys batches."""

from __future__ import annotations

from policies.decision import ColumnMask
from proxy.services.disclosure import Batch, Disclosures, fold, observed, value_key
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
    assert observed(ident, "crm.accounts.id", "crm", "public") is None
    assert observed(ident, None, "crm", "public") is None
    assert observed(derived, None, "crm", "public") is None


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
