"""Audit before forwarding (issue 9, class 10), through the real proxy and a real PostgreSQL.

Statements used to run unrecorded: one followed by Terminate in the same write, one whose client
closed its socket mid-result, one whose backend was terminated upstream, one cut at shutdown,
and those forwarded in the ~50 ms before a full disk was noticed with `audit_required: true`.
Every statement now has a `start` record before it is forwarded (on disk first, with
audit_required) and an `end` record with the same id however it ended.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.pg import messages as m
from proxy.pg.auth import UpstreamAuth
from tests.conftest import start_crm
from tests.integration.harness import serve_demo

SVC_PW = "svc-secret-audit"
USERS = {
    "desk": ("desk_li", "desk-pass"),
    "dba": ("dba_wang", "dba-pass"),
    "vendor": ("vendor_zhang", "vendor-pass"),
}


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = start_crm(tmp_path_factory.mktemp("pg-audit"), SVC_PW, 300)
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("audit"), crm, SVC_PW) as s:
        yield s


def records(served: dict[str, Any]) -> list[dict[str, Any]]:
    path = served["dir"] / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(pred: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("timed out")


def statement(served: dict[str, Any], marker: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The start and end records of the statement whose SQL holds `marker`, once both exist."""

    def both() -> tuple[dict[str, Any], dict[str, Any]] | None:
        recs = records(served)
        starts = [r for r in recs if r["event"] == "start" and marker in r["sql"]]
        if not starts:
            return None
        ends = [r for r in recs if r["event"] == "end" and r["id"] == starts[0]["id"]]
        return (starts[0], ends[0]) if ends else None

    return wait_for(both)


class Raw:
    """A client on a raw socket: what no driver does (Terminate in the same write, vanishing)."""

    def __init__(self, port: int, who: str) -> None:
        user, password = USERS[who]
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.s.sendall(m.StartupMessage(m.PROTOCOL_3_0, (("user", user), ("database", "crm"))).serialize())
        auth = UpstreamAuth(user, password)
        while True:
            t, body = self.recv()
            if t == b"R" and (reply := auth.respond(m.parse_authentication(body))):
                self.s.sendall(reply)
            elif t == b"E":
                raise ConnectionRefusedError(m.ErrorResponse.parse(body).message)
            elif t == b"Z":
                return

    def recv(self) -> tuple[bytes, bytes]:
        while True:
            if len(self.buf) >= 5:
                ln = struct.unpack("!i", self.buf[1:5])[0]
                if len(self.buf) >= 1 + ln:
                    t, body = self.buf[:1], self.buf[5 : 1 + ln]
                    self.buf = self.buf[1 + ln :]
                    return t, body
            data = self.s.recv(65536)
            if not data:
                raise EOFError
            self.buf += data

    def send(self, *msgs: m.Message) -> None:  # type: ignore[name-defined]
        self.s.sendall(b"".join(x.serialize() for x in msgs))

    def close(self) -> None:
        self.s.close()


def direct(crm: EmbeddedPostgres, sql: str) -> str:
    return crm.psql(sql, "crm").strip()


def test_a_statement_followed_by_terminate_in_the_same_write_is_recorded(
    served: dict[str, Any], crm: EmbeddedPostgres
) -> None:
    marker = f"t{time.time_ns()}"
    w = Raw(served["port"], "desk")
    email = f"terminated{marker[-6:]}@example.cn"
    w.send(
        m.Query(f"UPDATE customers SET email = '{email}' WHERE id = 2 AND '{marker}' <> ''"), m.Terminate()
    )
    w.close()
    start, end = statement(served, marker)
    assert direct(crm, "SELECT email FROM customers WHERE id = 2") == email  # it ran
    assert (start["kind"], start["tables"], start["user"]) == ("update", ["public.customers"], "desk_li")
    assert (end["outcome"], end["error"], end["cancelled"]) == ("ok", None, False)


def backend(crm: EmbeddedPostgres, marker: str) -> str:
    """pid of the backend running the statement with `marker`, '' if none."""
    return direct(
        crm, f"SELECT pid FROM pg_stat_activity WHERE query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
    )


def test_a_client_that_closes_its_socket_mid_result_has_its_statement_cancelled(
    served: dict[str, Any], crm: EmbeddedPostgres
) -> None:
    marker = f"c{time.time_ns()}"
    w = Raw(served["port"], "dba")
    # Rows come slowly: the client reads some, then vanishes without Terminate.
    w.send(m.Query(f"SELECT g, pg_sleep(0.02), '{marker}' FROM generate_series(1, 1000) g"))
    got = 0
    while got < 5:
        t, _ = w.recv()
        got += t == b"D"
    w.close()
    _, end = statement(served, marker)
    assert (end["outcome"], end["error"], end["cancelled"]) == ("cancelled", "57014", True)
    assert end["rows"] >= 5
    wait_for(lambda: backend(crm, marker) == "")  # nothing of it still runs upstream


def connect(port: int, who: str) -> psycopg.Connection[Any]:
    user, password = USERS[who]
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=user,
        password=password,
        dbname="crm",
        sslmode="disable",
        autocommit=True,
    )


def in_thread(port: int, who: str, sql: str) -> tuple[threading.Thread, list[BaseException]]:
    """Run `sql` in a thread of its own; the list receives what it raised."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            with connect(port, who) as c:
                c.execute(sql)
        except psycopg.Error as e:
            raised.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, raised


def test_a_session_killed_upstream_records_its_statement(
    served: dict[str, Any], crm: EmbeddedPostgres
) -> None:
    marker = f"k{time.time_ns()}"
    t, raised = in_thread(served["port"], "dba", f"SELECT pg_sleep(20), '{marker}'")
    pid = wait_for(lambda: backend(crm, marker))
    direct(crm, f"SELECT pg_terminate_backend({pid})")
    t.join(10)
    assert raised and isinstance(raised[0], psycopg.OperationalError)
    _, end = statement(served, marker)
    assert (end["outcome"], end["error"]) == ("error", "57P01")


def test_the_record_names_the_statement_not_its_comment(served: dict[str, Any]) -> None:
    marker = f"m{time.time_ns()}"
    sql = "/* " + "x" * 4100 + f" */ UPDATE customers SET address = address WHERE id = 3 AND '{marker}' <> ''"
    with psycopg.connect(
        host="127.0.0.1",
        port=served["port"],
        user="desk_li",
        password="desk-pass",
        dbname="crm",
        sslmode="disable",
    ) as c:
        c.execute(sql)
    start, end = statement(served, marker)
    assert start["sql"] == f"UPDATE customers SET address = address WHERE id = 3 AND '{marker}' <> ''"
    assert start["sql_length"] == len(sql) and len(start["sql_hash"]) == 32
    assert (start["kind"], start["tables"]) == ("update", ["public.customers"])
    assert end["outcome"] == "ok"


def test_the_start_record_is_there_while_the_statement_runs(served: dict[str, Any]) -> None:
    marker = f"s{time.time_ns()}"
    t, _ = in_thread(served["port"], "dba", f"SELECT pg_sleep(1.5), '{marker}'")
    wait_for(lambda: any(r["event"] == "start" and marker in r["sql"] for r in records(served)), timeout=1.2)
    assert t.is_alive()  # still running
    t.join()
    statement(served, marker)


def test_a_statement_cut_at_the_shutdown_grace_period_is_cancelled_and_recorded(
    crm: EmbeddedPostgres, tmp_path: Path
) -> None:
    marker = f"g{time.time_ns()}"
    with serve_demo(tmp_path, crm, SVC_PW) as s:
        t, raised = in_thread(s["port"], "dba", f"SELECT pg_sleep(30), '{marker}'")
        wait_for(lambda: backend(crm, marker))
        stopped = time.monotonic()
    # Leaving serve_demo stopped the App with a 2 s grace period: the statement still ran then.
    assert time.monotonic() - stopped < 10
    t.join(10)
    assert raised and "shutting down" in str(raised[0])
    recs = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    start = next(r for r in recs if r["event"] == "start" and marker in r["sql"])
    end = next(r for r in recs if r["event"] == "end" and r["id"] == start["id"])
    assert (end["outcome"], end["cancelled"]) == ("cancelled", True)
    wait_for(lambda: backend(crm, marker) == "")  # cancelled upstream, not left running


def ask(w: Raw, sql: str) -> list[tuple[bytes, bytes]]:
    w.send(m.Query(sql))
    answers = []
    while not answers or answers[-1][0] != b"Z":
        answers.append(w.recv())
    return answers


def test_with_a_full_disk_and_audit_required_no_statement_is_forwarded(
    crm: EmbeddedPostgres, tmp_path: Path
) -> None:
    before = direct(crm, "SELECT sum(duration_s) FROM call_records")
    log, real = tmp_path / "audit.jsonl", tmp_path / "audit.real"
    with serve_demo(tmp_path, crm, SVC_PW, config_lines="audit_required: true\n") as s:
        audit = s["app"].audit
        w = Raw(s["port"], "dba")
        try:
            assert [t for t, _ in ask(w, "SELECT 1")] == [b"T", b"D", b"C", b"Z"]
            # The disk fills up: every write of the audit log, and of a reopened one, gets ENOSPC.
            log.rename(real)
            log.symlink_to("/dev/full")
            saved = os.dup(audit._fd)
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, audit._fd)
            os.close(full)
            # 20 writes pipelined in one go, as the old bug needed to slip some through.
            updates = [
                m.Query(f"UPDATE call_records SET duration_s = duration_s + 1 WHERE id = {i}")
                for i in range(1, 21)
            ]
            w.send(*updates)
            answers: list[tuple[bytes, bytes]] = []
            while sum(t == b"Z" for t, _ in answers) < 20:
                answers.append(w.recv())
            refusals = [m.ErrorResponse.parse(b).message for t, b in answers if t == b"E"]
            assert len(refusals) == 20 and all("audit log cannot be written" in r for r in refusals)
            assert not [t for t, _ in answers if t == b"C"]  # none ran
            # The disk comes back: after a record is written again, statements go again.
            log.unlink()
            real.rename(log)
            os.dup2(saved, audit._fd)
            os.close(saved)
            wait_for(lambda: b"C" in [t for t, _ in ask(w, "SELECT 2")])
        finally:
            w.close()
    assert direct(crm, "SELECT sum(duration_s) FROM call_records") == before  # no UPDATE ran
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert not [r for r in recs if r["event"] == "start" and "UPDATE call_records" in r["sql"]]
    assert [r for r in recs if r["event"] == "start" and r["sql"] == "SELECT 2"]


# ---------------------------------------------------------------------------------------------
# A result refused after the server started it used to leave the rest of its string or batch
# running and committing upstream while the client was told it failed.
# ---------------------------------------------------------------------------------------------


def test_a_batch_whose_binary_result_cannot_be_masked_runs_nothing(
    served: dict[str, Any], crm: EmbeddedPostgres
) -> None:
    before = direct(crm, "SELECT email FROM customers WHERE id = 5")
    w = Raw(served["port"], "desk")
    try:
        # A record value computed from phone cannot be masked in binary; the UPDATE behind it is
        # in the same implicit transaction, so the server must not run it either.
        w.send(
            m.Parse("", "SELECT ROW(id, phone) FROM customers"),
            m.Bind("", "", (), (), (1,)),
            m.Execute("", 0),
            m.Parse("", "UPDATE customers SET email = 'gap@example.cn' WHERE id = 5"),
            m.Bind("", "", (), (), ()),
            m.Execute("", 0),
            m.Sync(),
        )
        answers = []
        while not answers or answers[-1][0] != b"Z":
            answers.append(w.recv())
    finally:
        w.close()
    errors = [m.ErrorResponse.parse(b) for t, b in answers if t == b"E"]
    assert [e.code for e in errors] == ["42501"] and "cannot be masked in binary" in errors[0].message
    assert not [t for t, _ in answers if t in (b"D", b"C")]
    assert direct(crm, "SELECT email FROM customers WHERE id = 5") == before


def test_a_copy_shares_its_string_with_nothing(served: dict[str, Any], crm: EmbeddedPostgres) -> None:
    before = direct(crm, "SELECT email FROM customers WHERE id = 6")
    with (
        connect(served["port"], "desk") as c,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="COPY"),
    ):
        c.execute(
            "COPY (SELECT id FROM customers) TO STDOUT; UPDATE customers SET email = 'g@x.cn' WHERE id = 6"
        )
    assert direct(crm, "SELECT email FROM customers WHERE id = 6") == before
