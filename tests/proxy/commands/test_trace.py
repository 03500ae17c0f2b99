"""`maskgate trace` over a ledger and an audit log written here: text and JSON answers, --file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.services.disclosure import Batch, value_key
from proxy.services.ledger import Ledger

KEY = b"trace-key"


def setup(tmp_path: Path) -> Path:
    (tmp_path / "maskgate.yaml").write_text(
        "policy: p.yaml\naudit_log: audit.jsonl\nledger_dir: ledger\nmasking_key: trace-key\n"
    )
    now = time.time()
    lg = Ledger(tmp_path / "ledger", interval=3600)
    for user, sid, numbers in (
        ("li", "s-1", ["13800000001", "13800000002"]),
        ("wang", "s-2", ["13800000002"]),
    ):
        lg.keep(
            Batch(user, "r", sid, now, tuple(("mobile", value_key(KEY, "mobile", n), True) for n in numbers))
        )
    lg.flush()
    lg.close()
    records = [
        {"event": "start", "id": "s-1", "ts": "t1", "fingerprint": "f1", "tables": ["public.customers"]},
        {"event": "end", "id": "s-1", "ts": "t2", "rows": 2},
        {"event": "start", "id": "s-9", "fingerprint": "other"},
    ]
    (tmp_path / "audit.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return tmp_path / "maskgate.yaml"


def test_text_answer_names_people_days_and_statements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = setup(tmp_path)
    assert main(["trace", "--config", str(cfg), "138-0000-0001", "13900000000"]) == 0
    out = capsys.readouterr().out
    assert "138-0000-0001: 1 person" in out and "  li  " in out and "statement s-1  t1" in out
    assert "fingerprint f1" in out and "13900000000: 0 people" in out


def test_json_and_file_rank_people(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = setup(tmp_path)
    numbers = tmp_path / "n.txt"
    numbers.write_text("# scam calls\n13800000001\n13800000002\n\n")
    assert main(["trace", "--config", str(cfg), "--file", str(numbers), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ranking"] == [{"user": "li", "numbers": 2, "of": 2}, {"user": "wang", "numbers": 1, "of": 2}]
    (stmt,) = out["numbers"][0]["people"][0]["days"][0]["statements"]
    assert stmt == {
        "id": "s-1",
        "ts": "t1",
        "fingerprint": "f1",
        "tables": ["public.customers"],
        "database": None,
        "rows": 2,
        "sql": None,
    }
    assert out["corrupt_records"] == 0 and out["max_false_positive_rate"] < 1e-6


def test_no_ledger_or_no_numbers_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("policy: p.yaml\n")
    assert main(["trace", "--config", str(tmp_path / "m.yaml"), "1"]) == 1
    assert main(["trace", "--config", str(setup(tmp_path))]) == 2
    assert main(["trace", "--config", str(setup(tmp_path)), "1", "--since", "soon"]) == 2
