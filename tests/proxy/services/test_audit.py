"""The audit log: start / end / refused records, the statement without its comments, the
synchronous write-ahead of audit_required and what a failed write leaves behind."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.decision import Allow, Block
from policies.sql.text import without_comments
from proxy.services import audit as audit_module
from proxy.services.audit import SQL_LIMIT, AuditLog, fingerprint, scrub_sql
from proxy.services.gate import StatementRecord


def rec(sql: str, decision: Allow | Block, event: str = "", **kw: object) -> StatementRecord:
    r = StatementRecord(
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
        id="s1-1",
        event=event,
        dialect="postgres",
    )
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_the_fallback_fingerprint_folds_case_and_spacing() -> None:
    # Only for records no engine decided; the engine's own ignores literals (tests/policies).
    assert fingerprint("<Bind  S1>") == fingerprint("<bind s1>") != fingerprint("<bind s2>")


def test_scrub_sql_masks_every_identifier() -> None:
    out = scrub_sql("SELECT 1 FROM t WHERE phone = '13812345678' OR id_card = '11010519491231002X'")
    assert "13812345678" not in out and "11010519491231002X" not in out
    assert "138****5678" in out


WHO = ("ts", "event", "id", "session", "user", "role", "client", "protocol", "database")


def test_a_statement_has_a_start_and_an_end_and_a_refusal_one_record(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    log = AuditLog(path, statement_text=without_comments)
    allow = Allow(kind="select", tables=("public.customers",), classes=("mobile",), revision="r")
    sql = "SELECT name FROM customers WHERE phone = '13812345678'"
    log.submit(rec(sql, allow, "start"), "rev1")
    log.submit(rec(sql, allow, "end", error="57014", outcome="cancelled", cancelled=True), "rev1")
    refusal = Block("class_denied", "bank_card is denied", kind="select", tables=("public.customers",))
    log.submit(rec("SELECT bank_card FROM customers", refusal, id="s1-2"), "rev1")
    log.close()
    start, end, refused = lines(path)
    assert all(set(WHO) <= set(r) for r in (start, end, refused))
    assert (start["event"], end["event"], refused["event"]) == ("start", "end", "refused")
    assert start["id"] == end["id"] == "s1-1" != refused["id"]
    assert (
        start["decision"] == "allow" and start["kind"] == "select" and start["tables"] == ["public.customers"]
    )
    assert start["classes"] == ["mobile"] and start["policy_revision"] == "r"
    assert "rows" not in start and "sql" not in end
    assert (end["outcome"], end["error"], end["cancelled"], end["rows"], end["duration_ms"]) == (
        "cancelled",
        "57014",
        True,
        3,
        1.2,
    )
    assert (refused["decision"], refused["reason"], refused["kind"]) == ("block", "class_denied", "select")
    assert "13812345678" not in path.read_text()


def test_the_sql_is_the_statement_without_comments_capped_with_its_length_and_a_keyed_hash(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, statement_text=without_comments, key=b"k1")
    padded = "/* " + "x" * 4100 + " */ UPDATE customers SET email = 'a' -- why\nWHERE id = 1"
    huge = "SELECT " + ", ".join(["1"] * 3000)
    log.submit(rec(padded, Allow(kind="update", tables=("public.customers",)), "start"), "r")
    log.submit(rec(huge, Allow(kind="select"), "start"), "r")
    log.submit(rec(padded, Allow(kind="update"), "start"), "r")
    log.close()
    first, second, third = lines(path)
    # A long comment cannot push the statement out of its record.
    assert first["sql"] == "UPDATE customers SET email = 'a' WHERE id = 1"
    assert first["sql_length"] == len(padded) and first["kind"] == "update"
    assert first["tables"] == ["public.customers"]
    assert len(second["sql"]) == SQL_LIMIT + 1 and second["sql"].endswith("…")  # type: ignore[arg-type]
    assert second["sql_length"] == len(huge)
    assert first["sql_hash"] == third["sql_hash"] != second["sql_hash"]
    other = tmp_path / "other.jsonl"
    log = AuditLog(other, statement_text=without_comments, key=b"k2")
    log.submit(rec(padded, Allow(kind="update"), "start"), "r")
    log.close()
    assert lines(other)[0]["sql_hash"] != first["sql_hash"]  # keyed: not a plain hash of the text


def test_write_now_is_on_disk_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, interval=60)  # the writer thread would not get to it for a minute
    try:
        assert log.write_now(rec("SELECT 1", Allow(kind="select"), "start"), "r")
        assert lines(path)[0]["event"] == "start"
    finally:
        log.close()


def test_a_failed_write_returns_false_and_leaves_no_half_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    failures: list[int] = []
    log = AuditLog(path, interval=60, on_failure=lambda: failures.append(1))
    assert log.write_now(rec("SELECT 1", Allow(kind="select"), "start"), "r")
    size = path.stat().st_size
    real_write = os.write

    def disk_full(fd: int, data: bytes) -> int:
        if len(data) > 10:
            real_write(fd, bytes(data[:10]))  # part of it gets in, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit_module.os, "write", disk_full)
    assert not log.write_now(rec("SELECT 2", Allow(kind="select"), "start"), "r")
    assert not log.healthy and failures == [1]
    assert path.stat().st_size == size  # cut back: no half line for the next record to run into
    monkeypatch.setattr(audit_module.os, "write", real_write)
    assert log.write_now(rec("SELECT 3", Allow(kind="select"), "start"), "r")  # the disk came back
    assert log.healthy
    log.close()
    assert [r["sql"] for r in lines(path)] == ["SELECT 1", "SELECT 3"]


def test_unwritable_log_reports_unhealthy(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    failures: list[int] = []
    log = AuditLog(blocker / "audit.jsonl", on_failure=lambda: failures.append(1))
    assert not log.healthy and failures
    assert not log.write_now(rec("SELECT 1", Allow(kind="select"), "start"), "r")
    log.submit(rec("SELECT 1", Allow(kind="select")), "r")
    log.close()
    assert not log.healthy


def test_sql_that_is_not_utf8_is_still_recorded(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, statement_text=without_comments)
    odd = b"SELECT 1 /* \x95\x40 */".decode("utf-8", "surrogateescape")
    log.submit(rec(odd, Allow(kind="select"), "start"), "r")
    log.submit(rec(odd + "\x95", Allow(kind="select"), "start"), "r")
    log.submit(rec("SELECT 2", Allow(kind="select"), "start"), "r")
    log.close()
    recorded = path.read_text(errors="replace").splitlines()
    assert len(recorded) == 3
    assert json.loads(recorded[0])["sql"] == "SELECT 1"
    assert json.loads(recorded[2])["sql"] == "SELECT 2"


def test_the_decisions_own_revision_and_fingerprint_win(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    decided = Allow(kind="select", revision="made-it", fingerprint="0123456789abcdef")
    log.submit(rec("SELECT 1", decided, "start"), "in-force")
    log.submit(rec("SELECT 1", Allow(kind="empty"), "start"), "in-force")  # no policy decided it
    broken = rec("SELECT 1", Block("class_denied", "no", revision="made-it"))
    broken.sql = 5  # type: ignore[assignment]  # the record cannot be rendered
    log.submit(broken, "in-force")
    log.close()
    first, second, fallback = lines(path)
    assert (first["policy_revision"], first["fingerprint"]) == ("made-it", "0123456789abcdef")
    assert second["policy_revision"] == "in-force" and second["fingerprint"] == fingerprint("SELECT 1")
    assert fallback["audit_error"] and fallback["policy_revision"] == "made-it"
    assert fallback["event"] == "refused"


def test_sighup_reopens_the_file_logrotate_moved(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, interval=60)
    try:
        assert log.write_now(rec("SELECT 1", Allow(kind="select"), "start"), "r")
        path.rename(tmp_path / "audit.jsonl.1")
        log.reopen()
        assert path.exists()  # created at once, not at the next record
        assert log.write_now(rec("SELECT 2", Allow(kind="select"), "start"), "r")
    finally:
        log.close()
    assert [r["sql"] for r in lines(tmp_path / "audit.jsonl.1")] == ["SELECT 1"]
    assert [r["sql"] for r in lines(path)] == ["SELECT 2"]


@pytest.mark.parametrize("how", ["rm", "mv then create"])
def test_a_file_replaced_without_sighup_is_noticed_at_the_next_write(tmp_path: Path, how: str) -> None:
    """`rm` (or a rotation whose postrotate did not run): the writer sees that the path names
    another file, or none, and reopens it instead of writing into a file no one can read."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, interval=0.01)
    try:
        assert log.write_now(rec("SELECT 0", Allow(kind="select"), "start"), "r")
        if how == "rm":
            path.unlink()
        else:
            path.rename(tmp_path / "audit.jsonl.1")
            path.touch(mode=0o640)  # logrotate's `create`
        log.submit(rec("SELECT 2", Allow(kind="select"), "start"), "r")
        assert log.write_now(rec("SELECT 3", Allow(kind="select"), "start"), "r")
    finally:
        log.close()
    assert [r["sql"] for r in lines(path)][-2:] in (["SELECT 2", "SELECT 3"], ["SELECT 3", "SELECT 2"])


def test_a_batch_that_hits_a_full_disk_is_cut_back_and_every_record_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import CollectorRegistry

    from proxy.services.metrics import Metrics

    metrics = Metrics(CollectorRegistry())
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, interval=60, on_failure=metrics.audit_failures.inc)
    assert log.write_now(rec("SELECT 1", Allow(kind="select"), "start"), "r")
    size = path.stat().st_size
    real_write = os.write

    def disk_full(fd: int, data: bytes) -> int:
        n = real_write(fd, bytes(data[: len(data) // 2]))  # half the batch gets in
        if n:
            raise OSError(errno.ENOSPC, "No space left on device")
        return n

    monkeypatch.setattr(audit_module.os, "write", disk_full)
    for i in range(3):
        log.submit(rec(f"SELECT {i + 2}", Allow(kind="select"), "start"), "r")
    log.close()  # the writer thread writes its last batch
    assert path.stat().st_size == size
    assert metrics.registry.get_sample_value("maskgate_audit_write_failures_total") == 3


# Records are rendered from cached pieces; `to_json` is the reference they are held to.
_TEXT = st.text(
    st.one_of(st.characters(), st.sampled_from(['"', "\\", "\n", "\x00", "\udc95", "张", "\u2028"]))
)
_DECISIONS = st.one_of(
    st.builds(
        Allow,
        kind=st.sampled_from(["select", "update", "empty"]),
        tables=st.lists(_TEXT, max_size=3).map(tuple),
        classes=st.lists(st.sampled_from(["mobile", "id_card", "person_name"]), max_size=3).map(tuple),
        revision=st.sampled_from(["", "made-it"]),
        fingerprint=st.sampled_from(["", "0123456789abcdef"]),
    ),
    st.builds(
        Block,
        reason=st.sampled_from(["class_denied", "unparsable", "other"]),
        message=_TEXT,
        tables=st.lists(_TEXT, max_size=2).map(tuple),
        revision=st.sampled_from(["", "made-it"]),
        fingerprint=st.sampled_from(["", "fedcba9876543210"]),
    ),
)
_TIMES = st.one_of(
    st.floats(0, 4e9, allow_nan=False),
    st.integers(0, 4 * 10**9).map(lambda s: s + 0.9995),
    st.integers(0, 4 * 10**9).map(lambda s: s + 0.9999995),
    st.integers(0, 4 * 10**9).map(float),
    st.just(None),
)


@settings(max_examples=400, deadline=None)
@given(
    sql=st.one_of(_TEXT, st.sampled_from(["SELECT 1 -- c\nFROM t WHERE phone = '13812345678'", "SELECT 1"])),
    decision=_DECISIONS,
    event=st.sampled_from(["", "start", "end", "refused"]),
    who=st.tuples(_TEXT, _TEXT, _TEXT),
    rows=st.integers(0, 10**12),
    duration=st.one_of(st.floats(0, 1e6, allow_nan=False), st.sampled_from([0.0012, 0.0000005, 1e-9])),
    error=st.one_of(st.none(), _TEXT),
    outcome=st.sampled_from(["", "cancelled", "prepared"]),
    flags=st.tuples(st.booleans(), st.booleans()),
    ts=_TIMES,
)
def test_a_rendered_line_is_json_dumps_of_the_reference_record(
    sql: str,
    decision: Allow | Block,
    event: str,
    who: tuple[str, str, str],
    rows: int,
    duration: float,
    error: str | None,
    outcome: str,
    flags: tuple[bool, bool],
    ts: float | None,
) -> None:
    r = rec(sql, decision, event, rows=rows, duration_s=duration, error=error, outcome=outcome)
    r.session, r.user, r.client = who
    r.truncated, r.cancelled = flags
    texts = audit_module._Texts(b"k", without_comments)
    lines_ = audit_module._Lines(texts)
    for _ in range(2):  # rendered, then from the caches
        got = lines_.line(r, "in-force", ts)
        if ts is None:  # now: the same second at most a tick apart; compare the rest
            got = got[got.index('"event"') :]
            want = json.dumps(audit_module.to_json(r, "in-force", None, texts), ensure_ascii=False)
            assert got == want[want.index('"event"') :]
        else:
            assert got == json.dumps(audit_module.to_json(r, "in-force", ts, texts), ensure_ascii=False)


def test_write_now_takes_the_records_queued_before_it_in_the_same_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, interval=60)  # the writer thread would not get to them for a minute
    writes: list[bytes] = []
    real_write = os.write

    def counted(fd: int, data: bytes) -> int:
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(audit_module.os, "write", counted)
    try:
        log.submit(rec("SELECT 1", Allow(kind="select"), "end", id="s1-1"), "r")
        log.submit(rec("SELECT 2", Block("class_denied", "no")), "r")
        assert log.write_now(rec("SELECT 3", Allow(kind="select"), "start", id="s1-3"), "r")
        assert [(r["event"], r["id"]) for r in lines(path)] == [
            ("end", "s1-1"),
            ("refused", "s1-1"),
            ("start", "s1-3"),
        ]
        assert len(writes) == 1 and log.written == 3
    finally:
        log.close()


def test_a_durable_log_syncs_what_was_written_within_a_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(audit_module.os, "fdatasync", synced.append)
    log = AuditLog(tmp_path / "audit.jsonl", interval=0.01, durable=True)
    try:
        assert log.write_now(rec("SELECT 1", Allow(kind="select"), "start"), "r")
        for _ in range(200):
            if synced:
                break
            time.sleep(0.01)
        assert synced
        n = len(synced)
        time.sleep(0.05)
        assert len(synced) == n  # nothing new written: nothing synced
    finally:
        log.close()


def test_a_record_the_cached_pieces_cannot_key_is_rendered_by_the_reference(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    odd = rec("SELECT 1", Allow(kind="select", tables=["public.t"]), "start")  # type: ignore[arg-type]
    log.submit(odd, "r")
    log.close()
    (line,) = lines(path)
    assert line["tables"] == ["public.t"] and line["sql"] == "SELECT 1"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=300))
def test_the_keyed_hash_is_hmac_sha256(key: bytes, raw: bytes) -> None:
    texts = audit_module._Texts(key, None)
    assert texts.keyed_hash(raw) == hmac.new(key, raw, hashlib.sha256).hexdigest()[:32]


def test_a_shared_log_is_never_cut_back_on_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `workers: N` every worker appends to one file: cutting it back to the size seen before
    a failed write would delete records another worker appended meanwhile."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, interval=60, shared=True)
    assert log.write_now(rec("SELECT 1", Allow(kind="select"), "start"), "r")
    real_write = os.write

    def disk_full(fd: int, data: bytes) -> int:
        if len(data) > 10:
            real_write(fd, bytes(data[:10]))
            with open(path, "a") as other:  # another worker's record lands meanwhile
                other.write('{"event": "other-worker"}\n')
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit_module.os, "write", disk_full)
    assert not log.write_now(rec("SELECT 2", Allow(kind="select"), "start"), "r")
    monkeypatch.setattr(audit_module.os, "write", real_write)
    assert log.write_now(rec("SELECT 3", Allow(kind="select"), "start"), "r")
    log.close()
    text = path.read_text()
    assert '{"event": "other-worker"}' in text
    # Only the broken line is lost to a reader: the records before and after it are whole lines.
    whole = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            whole.append(json.loads(line))
    assert [r.get("sql") for r in whole if "sql" in r] == ["SELECT 1", "SELECT 3"]


def test_without_a_key_the_sql_hash_is_not_under_the_public_key(tmp_path: Path) -> None:
    """The development key is public: a statement's hash under it would give back a masked
    number in 10^4 guesses. Without a configured key, each process keys its own."""
    import hashlib
    import hmac

    from masking import DEFAULT_KEY
    from proxy.services.audit import _Texts

    log = AuditLog(tmp_path / "a.jsonl", key=b"")
    sql = "SELECT 1 FROM customers WHERE phone = '13812345678'"
    digest = log._texts.get(sql, "")[2]
    assert digest != hmac.new(DEFAULT_KEY, sql.encode(), hashlib.sha256).hexdigest()[:32]
    assert _Texts(b"k", None).get(sql, "")[2] == hmac.new(b"k", sql.encode(), hashlib.sha256).hexdigest()[:32]
    log.close()


def test_a_number_written_backwards_is_scrubbed_too() -> None:
    """reverse('87654321831') searches for 13812345678: the audit keeps neither."""
    from proxy.services.audit import scrub_sql

    out = scrub_sql("SELECT id FROM customers WHERE phone = reverse('87654321831')")
    assert "87654321831" not in out and "13812345678" not in out
    assert scrub_sql("SELECT 12345678901234") == "SELECT 12345678901234"  # no number either way
