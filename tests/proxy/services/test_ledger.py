"""The disclosure ledger: Bloom filters, segment files, checksums, retention, reading."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from proxy.services import ledger
from proxy.services.disclosure import Batch, value_key
from proxy.services.ledger import Bloom, Ledger, bloom_size

KEY = b"k" * 32
DAY = 1_780_000_000.0  # 2026-05-28 UTC


def key(v: str) -> bytes:
    return value_key(KEY, "mobile", v)


def batch(user: str, values: list[str], *, clear: bool = True, sid: str = "s-1", ts: float = DAY) -> Batch:
    return Batch(user, "role", sid, ts, tuple(("mobile", key(v), clear) for v in values))


def test_bloom_size_follows_the_formula() -> None:
    m, k = bloom_size(20000, 1e-4)
    assert 383_000 < m < 384_000 and k == 13


@given(st.sets(st.text(min_size=1, max_size=12), max_size=50))
def test_a_bloom_filter_never_forgets(values: set[str]) -> None:
    b = Bloom(*bloom_size(100, 1e-4))
    for v in values:
        b.add(key(v))
    assert all(key(v) in b for v in values)


def test_the_false_positive_rate_is_about_what_it_was_sized_for() -> None:
    b = Bloom(*bloom_size(2000, 1e-2))
    for i in range(2000):
        b.add(key(f"1380000{i:04d}"))
    false = sum(key(f"1390000{i:04d}") in b for i in range(5000))
    assert false < 5000 * 0.03 and 0.005 < b.fp_rate() < 0.02


def write(tmp_path: Path, *batches: Batch, masked: bool = False) -> Ledger:
    lg = Ledger(tmp_path, expected=1000, fp_rate=1e-4, interval=3600, masked=masked, clock=lambda: DAY)
    for b in batches:
        lg.keep(b)
    lg.flush()
    lg.close()
    return lg


def test_written_segments_answer_who_received_a_value_and_in_which_statement(tmp_path: Path) -> None:
    write(
        tmp_path,
        batch("li", ["13800000001", "13800000002"], sid="t-1"),
        batch("wang", ["13800000003"], sid="t-7"),
    )
    (path,) = tmp_path.glob("ledger-20260528-*.seg")
    assert f"-{os.getpid()}.seg" in path.name
    contents = ledger.read(tmp_path)
    assert contents.corrupt == 0 and contents.torn == 0
    (hit,) = ledger.lookup(contents, key("138 0000 0002"))  # folded like the value was
    assert (hit.user, hit.day, hit.clear, hit.statements) == ("li", "20260528", True, ("t-1",))
    assert hit.fp_rate < 1e-9
    assert [h.user for h in ledger.lookup(contents, key("13800000003"))] == ["wang"]
    assert ledger.lookup(contents, key("13800000009")) == []


def test_masked_values_are_kept_only_when_asked_and_apart(tmp_path: Path) -> None:
    write(tmp_path / "a", batch("li", ["13800000001"], clear=False))
    assert ledger.lookup(ledger.read(tmp_path / "a"), key("13800000001")) == []
    write(tmp_path / "b", batch("li", ["13800000001"], clear=False), masked=True)
    (hit,) = ledger.lookup(ledger.read(tmp_path / "b"), key("13800000001"))
    assert not hit.clear


def test_canary_row_keys_are_not_kept_but_customer_keys_are(tmp_path: Path) -> None:
    row_key, customer = value_key(KEY, "row_key", "41"), value_key(KEY, "customer_key", "42")
    write(
        tmp_path,
        Batch("li", "dba", "t-1", DAY, (("row_key", row_key, True), ("customer_key", customer, True))),
    )
    contents = ledger.read(tmp_path)
    assert ledger.lookup(contents, row_key) == []
    assert [h.user for h in ledger.lookup(contents, customer)] == ["li"]


def test_flushes_append_deltas_that_the_reader_merges_across_processes(tmp_path: Path) -> None:
    lg = Ledger(tmp_path, expected=1000, interval=3600, clock=lambda: DAY)
    lg.keep(batch("li", ["13800000001"]))
    first = lg.flush()
    lg.keep(batch("li", ["13800000001"]))  # nothing new: no day record (the statement's only)
    lg.keep(batch("li", ["13800000002"], sid="s-2"))
    lg.flush()
    lg.close()
    assert first > 0
    # Another replica's file in the same directory.
    other = tmp_path / "ledger-20260528-otherhost-1.seg"
    (tmp_path / "x").mkdir()
    w = Ledger(tmp_path / "x", expected=1000, interval=3600, clock=lambda: DAY)
    w.keep(batch("zhao", ["13800000001"], sid="o-1"))
    w.flush()
    w.close()
    next((tmp_path / "x").glob("*.seg")).rename(other)
    contents = ledger.read(tmp_path)
    assert contents.files == 2
    assert [h.user for h in ledger.lookup(contents, key("13800000001"))] == ["li", "zhao"]
    assert ledger.lookup(contents, key("13800000002"))[0].statements == ("s-2",)


def test_a_corrupt_record_is_skipped_and_a_torn_tail_ends_the_file(tmp_path: Path) -> None:
    write(tmp_path, batch("li", ["13800000001"], sid="a"), batch("wang", ["13800000002"], sid="b"))
    (path,) = tmp_path.glob("*.seg")
    data = bytearray(path.read_bytes())
    # The first record's payload: flip a byte inside it (after its 8-byte frame).
    data[len(ledger.MAGIC) + 12] ^= 0xFF
    path.write_bytes(bytes(data) + b"\x00\x00\x10")  # and a record cut short at the end
    contents = ledger.read(tmp_path)
    assert contents.corrupt == 1 and contents.torn == 1
    # The other person's records are intact.
    assert [h.user for h in ledger.lookup(contents, key("13800000002"))] == ["wang"]


def test_retention_removes_whole_day_files(tmp_path: Path) -> None:
    old = tmp_path / "ledger-20250101-h-1.seg"
    new = tmp_path / "ledger-20260527-h-1.seg"
    for p in (old, new):
        p.write_bytes(ledger.MAGIC)
    gone = ledger.prune(tmp_path, 180, DAY)
    assert gone == [old] and new.exists()


def test_read_since_skips_older_days(tmp_path: Path) -> None:
    write(tmp_path, batch("li", ["13800000001"], ts=DAY - 40 * 86400))
    assert ledger.lookup(ledger.read(tmp_path, since="20260501"), key("13800000001")) == []
    assert len(ledger.lookup(ledger.read(tmp_path), key("13800000001"))) == 1


def test_the_flush_thread_writes_without_being_asked(tmp_path: Path) -> None:
    lg = Ledger(tmp_path, expected=100, interval=0.05)
    lg.keep(batch("li", ["13800000001"], ts=time.time()))
    deadline = time.time() + 5
    while not list(tmp_path.glob("*.seg")) and time.time() < deadline:
        time.sleep(0.02)
    lg.close()
    assert ledger.lookup(ledger.read(tmp_path), key("13800000001"))


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=40), st.integers(64, 5000), st.integers(1, 16))
def test_the_native_insertion_sets_the_bits_the_reference_sets(keys: list[bytes], m: int, k: int) -> None:
    if ledger._native is None:
        return  # MASKGATE_PURE=1 or no compiler: the reference is all there is
    m = (m + 7) // 8 * 8
    a, da, b, db = (bytearray(m // 8) for _ in range(4))
    joined = b"".join(keys)
    half = joined[: len(joined) // 64 * 32]
    ledger.add_keys(a, da, half, 32, m, k)  # some bits already set
    ledger._native.add(b, db, half, 32, m, k)
    assert ledger._native.add(b, db, joined, 32, m, k) == ledger.add_keys(a, da, joined, 32, m, k)
    assert (a, da) == (b, db)
