"""`maskgate trace` over a ledger and an audit log written here: text and JSON answers, --file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

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


def test_computed_reads_of_the_numbers_class_are_listed_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A statement that returned mobiles in clear in a computed form is listed for a mobile,
    not for an ID card, and not when it is older than --since."""
    import datetime as dt

    from policies.decision import Allow, Block, ColumnMask
    from proxy.services.audit import computed_classes

    cfg = setup(tmp_path)
    today = dt.date.today().isoformat()
    with (tmp_path / "audit.jsonl").open("a") as f:
        for rid, ts, computed in (("c-1", today, ["mobile"]), ("c-2", "2001-01-01", ["mobile"])):
            rec = {"event": "start", "id": rid, "ts": f"{ts}T10:00:00.000+00:00", "user": "zhao"}
            f.write(
                json.dumps(
                    rec | {"decision": "allow", "sql": "SELECT phone::bigint + 1", "computed": computed}
                )
            )
            f.write("\n")
    assert main(["trace", "--config", str(cfg), "--json", "13800000009", "11010519491231002X"]) == 0
    mobile, id_card = json.loads(capsys.readouterr().out)["numbers"]
    assert mobile["people"] == [] and [p["user"] for p in mobile["computed"]] == ["zhao"]
    assert [s["id"] for s in mobile["computed"][0]["days"][0]["statements"]] == ["c-1"]
    assert id_card["computed"] == []
    assert main(["trace", "--config", str(cfg), "13800000009"]) == 0
    assert "computed form" in capsys.readouterr().out

    cols = (
        ColumnMask(0, "p", "mobile", "clear", ("public.c.phone",), derived=True),
        ColumnMask(1, "q", "id_card", "mask", ("public.c.id_card",), derived=True),  # masked: not clear
        ColumnMask(2, "r", "bank_card", "clear", ("public.c.card",)),  # as it is: the ledger matches it
    )
    assert computed_classes(Allow(kind="select", columns=cols)) == ("mobile",)
    assert computed_classes(Block("statement_not_allowed", "no")) == ()


def test_statements_that_hide_lineage_are_computed_reads() -> None:
    """Moving classified values where later statements' lineage cannot follow them, a value
    computed from a whole row, and statements whose result is not known are computed reads."""
    from policies.decision import Allow, ColumnMask
    from proxy.services.audit import ANY_CLASS, computed_classes

    moved = Allow(kind="ddl", tables=("public.customers",), classes=("mobile",))  # CREATE TEMP TABLE AS
    assert computed_classes(moved) == ("mobile",)
    into = Allow(kind="select", tables=("public.customers",), classes=("mobile",))  # SELECT … INTO @v
    assert computed_classes(into) == ("mobile",)
    row = ColumnMask(0, "j", "address", "clear", ("public.c.address", "public.c.phone"), derived=True)
    whole = Allow(kind="select", columns=(row,), classes=("address", "mobile"))  # to_jsonb(c)
    assert computed_classes(whole) == ("address", "mobile")
    assert computed_classes(Allow(kind="unparsed")) == (ANY_CLASS,)
    assert computed_classes(Allow(kind="prepare")) == (ANY_CLASS,)  # PREPARE s FROM @v
    assert computed_classes(Allow(kind="ddl")) == (ANY_CLASS,)  # CREATE FUNCTION: body unread
    assert computed_classes(Allow(kind="ddl", tables=("public.x",))) == ()  # CREATE TABLE x (a int)
    literal = Allow(kind="select", columns=(ColumnMask(0, "p", "mobile", "clear", ("public.c.phone",)),))
    assert computed_classes(replace_prepared(literal)) == ()  # PREPARE s FROM 'SELECT phone …'
    plain = Allow(kind="select", columns=(ColumnMask(0, "id", None, "clear", ("public.c.id",)),))
    assert computed_classes(plain) == ()


def replace_prepared(allow: Any) -> Any:
    from dataclasses import replace

    from policies.decision import PreparedEffect

    return replace(allow, prepared=PreparedEffect(action="prepare", name="s"))
