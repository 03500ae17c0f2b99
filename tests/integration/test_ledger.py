"""Issue 15 end to end: the disclosure ledger, `maskgate trace` and canaries, through the real
proxy in front of a real PostgreSQL.

Two people read the customers table: the vendor sees phone numbers masked, the DBA in clear.
A canary customer planted with `maskgate canary plant` is read by both; `maskgate trace` on its
number names exactly the DBA, the canary read is flagged in the audit log and counted.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from proxy.demo.embedded_pg import EmbeddedPostgres
from tests.conftest import CRM_DESK_PASSWORD, CRM_VENDOR_PASSWORD
from tests.integration.harness import connect_proxy, crm_database, serve_demo

SVC_PW = "svc-secret-ledger"
DBA = ("dba_wang", "dba-pass")
VENDOR = ("vendor_zhang", "vendor-pass")


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with crm_database(tmp_path_factory, "pg-ledger", SVC_PW, 30) as pg:
        yield pg


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(
        tmp_path_factory.mktemp("ledger"),
        crm,
        SVC_PW,
        config_lines="ledger_dir: ledger\nmasking_key: ledger-test-key\n",
    ) as s:
        yield s


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    # `maskgate trace --config` reads the same config file the proxy was started with.
    monkeypatch.setenv("T_UPSTREAM", SVC_PW)
    monkeypatch.setenv("T_VENDOR", CRM_VENDOR_PASSWORD)
    monkeypatch.setenv("T_DESK", CRM_DESK_PASSWORD)


def settle(served: dict[str, Any]) -> None:
    """Every disclosure so far keyed, written to the ledger and the audit log."""
    app = served["app"]
    app.disclosures.drain()
    app.ledger.flush()
    deadline = time.monotonic() + 5
    while app.audit._queue and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)


def trace(served: dict[str, Any], capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["trace", "--config", str(served["dir"] / "maskgate.yaml"), "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_trace_names_only_the_person_who_received_a_planted_number_in_clear(
    served: dict[str, Any], crm: EmbeddedPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    policy_dir = Path(served["policy"]).parent
    dsn = crm.dsn("maskgate_svc", SVC_PW, "crm")
    capsys.readouterr()
    assert (
        main(
            [
                "canary",
                "plant",
                "--schema",
                dsn,
                "--table",
                "crm.customers",
                "--count",
                "2",
                "--policy-dir",
                str(policy_dir),
                "--config",
                str(_canary_config(served)),
            ]
        )
        == 0
    )
    planted = capsys.readouterr().out.split("\n")[0]
    canary = dict(kv.split("=", 1) for kv in planted.split("  "))["phone"]
    assert canary.startswith("1700000") and len(canary) == 11
    # Per row: its phone, ID card and bank card, its e-mail and its key (id).
    planted_classes = [c["class"] for c in json.loads((policy_dir / "canaries.json").read_text())["canaries"]]
    assert sorted(planted_classes) == sorted(["mobile", "id_card", "bank_card", "email", "row_key"] * 2)
    assert canary not in (policy_dir / "canaries.json").read_text()
    served["app"].reloader.reload_now(force=True)  # as the file watcher would: canaries armed

    with connect_proxy(served, VENDOR) as conn:
        vendor_rows = conn.execute("SELECT id, phone FROM customers").fetchall()
    with connect_proxy(served, DBA) as conn:
        dba_rows = conn.execute("SELECT id, phone, id_card FROM customers ORDER BY id").fetchall()
    assert canary in {r[1] for r in dba_rows}
    assert all("*" in r[1] for r in vendor_rows)
    settle(served)

    out = trace(served, capsys, canary)
    (entry,) = out["numbers"]
    assert [p["user"] for p in entry["people"]] == ["dba_wang"]
    (day,) = entry["people"][0]["days"]
    assert day["clear"] and day["false_positive_rate"] < 1e-6
    (stmt,) = day["statements"]
    assert stmt["fingerprint"] and "customers" in ",".join(stmt["tables"])

    # A number the vendor saw masked is the DBA's alone too; one nobody read is nobody's.
    seeded = next(r[1] for r in dba_rows if not r[1].startswith("1700000"))
    assert [p["user"] for p in trace(served, capsys, seeded)["numbers"][0]["people"]] == ["dba_wang"]
    assert trace(served, capsys, "13999999999")["numbers"][0]["people"] == []

    # A complaints list: the DBA ranks first with both numbers.
    numbers = served["dir"] / "numbers.txt"
    numbers.write_text(f"{canary}\n{seeded}\n13999999999\n")
    ranked = trace(served, capsys, "--file", str(numbers))["ranking"]
    assert ranked == [{"user": "dba_wang", "numbers": 2, "of": 3}]

    # The canary read is flagged (both people read the canary row, masked or not), never with the value.
    audit = (served["dir"] / "audit.jsonl").read_text()
    flags = [json.loads(line) for line in audit.splitlines() if '"canary"' in line]
    assert {f["user"] for f in flags if f.get("event") == "canary"} >= {"dba_wang"}
    assert canary not in audit
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{served['metrics']}/metrics").read().decode()
    assert 'maskgate_canary_reads_total{role="dba"}' in metrics
    assert "maskgate_ledger_values_total" in metrics


def _canary_config(served: dict[str, Any]) -> Path:
    """A config naming the served policy and its masking key, for `maskgate canary plant` (the
    served config's upstream comes from variables only the harness sets)."""
    path = Path(served["dir"]) / "canary.yaml"
    path.write_text(f"policy: {served['policy']}\nmasking_key: ledger-test-key\n")
    return path
