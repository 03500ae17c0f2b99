import json
from pathlib import Path

from policies.decision import Allow, Block
from proxy.services.audit import AuditLog, fingerprint, scrub_sql
from proxy.services.gate import StatementRecord


def rec(sql: str, decision: Allow | Block) -> StatementRecord:
    return StatementRecord(
        protocol="postgres",
        session="s1",
        user="vendor_zhang",
        role="vendor",
        client="127.0.0.1:5555",
        database="crm",
        sql=sql,
        decision=decision,
        rows=3,
        masked=2,
        duration_s=0.0012,
    )


def test_the_fallback_fingerprint_folds_case_and_spacing() -> None:
    # Only for records no engine decided; the engine's own ignores literals (tests/policies).
    assert fingerprint("<Bind  S1>") == fingerprint("<bind s1>") != fingerprint("<bind s2>")


def test_scrub_sql_masks_every_identifier() -> None:
    out = scrub_sql("SELECT 1 FROM t WHERE phone = '13812345678' OR id_card = '11010519491231002X'")
    assert "13812345678" not in out and "11010519491231002X" not in out
    assert "138****5678" in out


def test_records_are_jsonl_without_pii(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    log = AuditLog(path)
    log.submit(
        rec(
            "SELECT name FROM customers WHERE phone = '13812345678'",
            Allow(kind="select", tables=("crm.public.customers",)),
        ),
        "rev1",
    )
    log.submit(
        rec("SELECT bank_card FROM customers", Block("class_denied", "bank_card is denied", kind="select")),
        "rev1",
    )
    log.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["decision"] for x in lines] == ["allow", "block"]
    assert lines[1]["reason"] == "class_denied"
    assert lines[0]["policy_revision"] == "rev1" and lines[0]["duration_ms"] == 1.2
    assert "13812345678" not in path.read_text()
    for key in (
        "ts",
        "session",
        "user",
        "role",
        "client",
        "protocol",
        "database",
        "sql",
        "fingerprint",
        "decision",
        "reason",
        "tables",
        "classes",
        "rows",
        "masked",
        "truncated",
        "duration_ms",
    ):
        assert key in lines[0]


def test_unwritable_log_reports_unhealthy(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    failures: list[int] = []
    log = AuditLog(blocker / "audit.jsonl", on_failure=lambda: failures.append(1))
    assert not log.healthy and failures
    log.submit(rec("SELECT 1", Allow(kind="select")), "r")
    log.close()
    assert not log.healthy


def test_sql_that_is_not_utf8_is_still_recorded(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    odd = b"SELECT 1 /* \x95\x40 */".decode("utf-8", "surrogateescape")
    log.submit(rec(odd, Allow(kind="select")), "r")
    log.submit(rec("SELECT 2", Allow(kind="select")), "r")
    log.close()
    lines = path.read_text(errors="replace").splitlines()
    assert len(lines) == 2
    assert json.loads(lines[1])["sql"] == "SELECT 2"


def test_the_decisions_own_revision_and_fingerprint_win(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    decided = Allow(kind="select", revision="made-it", fingerprint="0123456789abcdef")
    log.submit(rec("SELECT 1", decided), "in-force")
    log.submit(rec("SELECT 1", Allow(kind="empty")), "in-force")  # no policy decided it
    broken = rec("SELECT 1", Block("class_denied", "no", revision="made-it"))
    broken.duration_s = "not a number"  # type: ignore[assignment]  # the record cannot be rendered
    log.submit(broken, "in-force")
    log.close()
    first, second, fallback = (json.loads(x) for x in path.read_text().splitlines())
    assert (first["policy_revision"], first["fingerprint"]) == ("made-it", "0123456789abcdef")
    assert second["policy_revision"] == "in-force" and second["fingerprint"] == fingerprint("SELECT 1")
    assert fallback["audit_error"] == "TypeError" and fallback["policy_revision"] == "made-it"
