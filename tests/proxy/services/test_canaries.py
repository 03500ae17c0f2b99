"""Canary numbers are valid numbers of their class; their file holds keys, never values; a
canary's key value trips it only where it was noted as a key."""

from __future__ import annotations

import json
from pathlib import Path

import masking
from masking.checksums import luhn_valid, validate_id18
from proxy.services import canaries
from proxy.services.disclosure import Batch, value_key

KEY = b"k" * 32


def test_canary_numbers_are_format_and_checksum_valid_and_detected() -> None:
    for _ in range(50):
        mobile, id_card, card = canaries.mobile(), canaries.id_card(), canaries.bank_card()
        assert mobile.startswith("1700000") and len(mobile) == 11
        assert id_card.startswith("99999918000101") and validate_id18(id_card)
        assert card.startswith("629999") and len(card) == 16 and luhn_valid(card)
        text = f"call {mobile}, id {id_card}, card {card}"
        assert {s.cls for s in masking.detect(text)} >= {"mobile", "id_card", "bank_card"}


def test_the_file_keeps_keys_and_a_reload_reads_them(tmp_path: Path) -> None:
    path = tmp_path / canaries.FILE_NAME
    number = canaries.mobile()
    c = canaries.Canary("mobile", value_key(KEY, "mobile", number), "public.customers", "2026-11-30")
    canaries.save(path, [c])
    canaries.save(path, [c])  # planted twice: kept once
    assert number not in path.read_text()
    assert canaries.load(path) == {c.key: c}
    hits: list[tuple[str, int]] = []
    keeper = canaries.Canaries({}, lambda b, found: hits.append((b.user, len(found))))
    keeper.reload(path)
    keeper.keep(Batch("li", "dba", "t-1", 0.0, (("mobile", c.key, False), ("mobile", b"x" * 32, True))))
    keeper.keep(Batch("wang", "dba", "t-2", 0.0, (("mobile", b"y" * 32, True),)))
    assert hits == [("li", 1)]
    path.write_text("{broken")
    keeper.reload(path)  # a broken file keeps the last good set
    assert c.key in keeper.keys


def test_a_key_canary_trips_on_a_key_column_only(tmp_path: Path) -> None:
    rid = canaries.Canary(
        "row_key",
        value_key(KEY, "row_key", "41"),
        "public.customers",
        "2026-11-30",
        "crm.public.customers.id",
    )
    mail = canaries.Canary(
        "email", value_key(KEY, "email", "canary-1@example.invalid"), "public.customers", "2026-11-30"
    )
    hits: list[list[str]] = []
    keeper = canaries.Canaries(
        {rid.key: rid, mail.key: mail}, lambda b, found: hits.append([c.cls for c in found])
    )
    # "41" in a column that is no key (a quantity, a branch) is not the planted customer.
    keeper.keep(Batch("li", "dba", "t-1", 0.0, (("mobile", rid.key, True),)))
    assert hits == []
    keeper.keep(Batch("li", "dba", "t-2", 0.0, (("row_key", rid.key, True),)))
    keeper.keep(Batch("li", "dba", "t-3", 0.0, (("customer_key", rid.key, True),)))
    keeper.keep(Batch("li", "dba", "t-4", 0.0, (("email", mail.key, False),)))
    assert hits == [["row_key"], ["row_key"], ["email"]]
    assert canaries.key_columns(keeper.keys) == ("crm.public.customers.id",)


def test_the_key_column_is_written_and_files_without_it_still_load(tmp_path: Path) -> None:
    path = tmp_path / canaries.FILE_NAME
    old = {
        "class": "mobile",
        "key": value_key(KEY, "mobile", "17000001234").hex(),
        "table": "public.customers",
    }
    path.write_text(json.dumps({"version": 1, "canaries": [old]}))
    (loaded,) = canaries.load(path).values()
    assert loaded.column == "" and loaded.planted == ""
    rid = canaries.Canary(
        "customer_key",
        value_key(KEY, "customer_key", "7"),
        "public.customers",
        "2026-11-30",
        "crm.public.customers.id",
    )
    canaries.save(path, [rid])
    rows = json.loads(path.read_text())["canaries"]
    assert "column" not in rows[0] and rows[1]["column"] == "crm.public.customers.id"
    assert canaries.load(path)[rid.key] == rid
