"""Red team, fourth round: an outsourced vendor (and a service-desk agent) who knows PostgreSQL.

Attacker: `vendor_zhang` of policies/examples/demo.yaml (select only, mobile / id_card /
person_name masked, bank_card denied, `masked_predicates: deny`, `branch_id = 12` on customers,
200 rows per statement, runs upstream as crm_vendor) and `desk_li` (service_desk: mobile /
id_card / bank_card masked, `masked_predicates: equality`, 50 rows). Every test asserts the
SECURE behaviour; each was a leak confirmed against the real proxy in front of a real PostgreSQL
(an xfail until the proxy was fixed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.pg import messages as m
from tests.integration.harness import connect_proxy, crm_database, serve_demo
from tests.integration.test_redteam import Wire

SVC_PW = "svc-secret-redteam-v4"
VENDOR = ("vendor_zhang", "vendor-pass")
DESK = ("desk_li", "desk-pass")
VENDOR_MAX_ROWS = 200  # policies/examples/demo.yaml


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with crm_database(tmp_path_factory, "pg-redteam-v4", SVC_PW, 500) as pg:
        yield pg


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("redteam-v4"), crm, SVC_PW) as s:
        yield s


@pytest.fixture(scope="module")
def truth(crm: EmbeddedPostgres) -> dict[str, Any]:
    """Ground truth, read as the service account straight from PostgreSQL (never via the proxy)."""
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as c:
        cust = c.execute(
            "SELECT id, phone, id_card, bank_card, branch_id FROM customers ORDER BY id"
        ).fetchall()
        calls = c.execute("SELECT id, duration_s FROM call_records ORDER BY id").fetchall()
    return {"customers": cust, "durations": dict(calls)}


def connect(served: dict[str, Any], who: tuple[str, str] = VENDOR) -> psycopg.Connection[Any]:
    return connect_proxy(served, who, autocommit=True)


def _records_out(served: dict[str, Any], sql: str) -> set[tuple[int, int]]:
    """Run `sql` as the vendor; the (call id, duration) records it carries, whatever the layout:
    every row holds (id, d0, d1, …) where dk is the duration of call id + k * VENDOR_MAX_ROWS."""
    with connect(served) as c:
        got = c.execute(sql).fetchall()
    out: set[tuple[int, int]] = set()
    for r in got:
        for k, d in enumerate(r[1:]):
            if d is not None:
                out.add((int(r[0]) + k * VENDOR_MAX_ROWS, int(d)))
    return out


# ---------------------------------------------------------------------------------------------
# 1. service_desk: `equality` mode accepts an IN list of any length, a set-membership oracle
# ---------------------------------------------------------------------------------------------
#
# policies/sql/analysis.py `_role_of` classifies `phone IN ('a', 'b', …)` with all-literal items
# as "eq_literal", however many items there are. The desk sees `195****7668`: four digits are
# hidden, 10 000 candidates. Fourteen scalar subqueries, each `count(*) … WHERE phone IN (the
# candidates whose bit k is set)`, return the fourteen bits of the hidden digits as unclassified
# counts in ONE statement: the full mobile number. Bank cards (six hidden digits, Luhn) and id
# cards (birth date + region) fall the same way with longer lists. `WHERE phone = $1` tests one
# candidate per statement; an IN list tests thousands, and a bit split turns it into a read.


def test_desk_reads_a_full_mobile_through_in_list_bit_oracle(
    served: dict[str, Any], truth: dict[str, Any]
) -> None:
    cid, phone = next((r[0], r[1]) for r in truth["customers"] if len(r[1]) == 11 and r[1].isdigit())
    head, tail = phone[:3], phone[-4:]  # what the desk's mask shows anyway
    subs = []
    for bit in range(14):
        cands = ",".join(f"'{head}{g:04d}{tail}'" for g in range(10_000) if g >> bit & 1)
        subs.append(f"(SELECT count(*) FROM customers WHERE id = {cid} AND phone IN ({cands}))")
    sql = "SELECT " + ", ".join(subs)
    try:
        with connect(served, DESK) as c:
            bits = c.execute(sql).fetchone()
    except psycopg.Error:
        return  # refused: the oracle is closed
    middle = sum(int(b) << k for k, b in enumerate(bits or ()))
    assert f"{head}{middle:04d}{tail}" != phone, "the desk read a full mobile number in one statement"


# ---------------------------------------------------------------------------------------------
# 2. vendor: max_rows is counted per result row, but a row can carry many records
# ---------------------------------------------------------------------------------------------
#
# The row limit divides max_rows by the relation reads one row carries (self-joins, scalar
# subqueries), and refuses array_agg/json_agg/ARRAY(SELECT …). Window functions with an offset
# (lead/lag), aggregates with FILTER (a pivot) and arithmetic packing into one aggregate carry
# other rows' records into a row without any of those: one statement returns all 1000 calls.


def test_lead_offsets_carry_more_records_than_max_rows(served: dict[str, Any], truth: dict[str, Any]) -> None:
    cols = ", ".join(f"lead(duration_s, {k * VENDOR_MAX_ROWS}) OVER (ORDER BY id)" for k in range(5))
    got = _records_out(served, f"SELECT id, {cols} FROM call_records ORDER BY id")
    real = {(i, d) for i, d in truth["durations"].items()}
    assert len(got & real) <= VENDOR_MAX_ROWS, f"{len(got & real)} records in one statement"


def test_filter_pivot_carries_more_records_than_max_rows(
    served: dict[str, Any], truth: dict[str, Any]
) -> None:
    n = len(truth["durations"])
    cols = ", ".join(f"max(duration_s) FILTER (WHERE id = {i})" for i in range(1, n + 1))
    with connect(served) as c:
        try:
            (row,) = c.execute(f"SELECT {cols} FROM call_records").fetchall()
        except psycopg.errors.InsufficientPrivilege:
            return  # refused: the row budget holds
    got = {(i + 1, int(d)) for i, d in enumerate(row) if d is not None}
    real = set(truth["durations"].items())
    assert len(got & real) <= VENDOR_MAX_ROWS, f"{len(got & real)} records in one row"


def test_sum_packing_carries_more_records_than_max_rows(
    served: dict[str, Any], truth: dict[str, Any]
) -> None:
    with connect(served) as c:
        try:
            (packed,) = c.execute(
                "SELECT sum(duration_s::numeric * power(1000::numeric, id))::text FROM call_records"
            ).fetchone()
        except psycopg.errors.InsufficientPrivilege:
            return  # refused: the row budget holds
    v = int(str(packed).split(".")[0])
    got = {(i, v // 1000**i % 1000) for i in truth["durations"]}
    real = set(truth["durations"].items())
    assert len(got & real) <= VENDOR_MAX_ROWS, f"{len(got & real)} records in one value"


def test_percentile_disc_literal_array_gathers_rows(served: dict[str, Any], truth: dict[str, Any]) -> None:
    n = len(truth["durations"])
    fractions = ",".join(f"{i / (n - 1):.9f}" for i in range(n))
    with connect(served) as c:
        try:
            (arr,) = c.execute(
                f"SELECT percentile_disc('{{{fractions}}}'::float8[]) "
                "WITHIN GROUP (ORDER BY id * 1000 + duration_s) FROM call_records"
            ).fetchone()
        except psycopg.errors.InsufficientPrivilege:
            return  # refused: the row budget holds
    got = {(int(x) // 1000, int(x) % 1000) for x in arr}
    real = set(truth["durations"].items())
    assert len(got & real) <= VENDOR_MAX_ROWS, f"{len(got & real)} records in one value"


# ---------------------------------------------------------------------------------------------
# 3. The extended protocol: Parse and Bind reach the database before any audit record
# ---------------------------------------------------------------------------------------------
#
# proxy/pg/relay.py forwards an allowed Parse and its Bind upstream at once, and writes the
# statement's audit record (`tracker.begin`) only at Execute. A client that never sends Execute
# has its statement parsed, analysed and planned by the server (planning folds constants, so
# `1/0` fails there and the server's error comes back) with no record at all in the audit log:
# the server's own log holds the statement, maskgate's does not.


def _audit(served: dict[str, Any]) -> str:
    path = served["dir"] / "audit.jsonl"
    return path.read_text() if path.exists() else ""


def test_parse_and_bind_without_execute_reach_the_server_unaudited(served: dict[str, Any]) -> None:
    marker = "rt4_unaudited_plan"
    w = Wire(served["port"])
    try:
        out = w.run(
            m.Parse("", f"SELECT 1/0 AS {marker} FROM call_records"),
            m.Bind("", ""),
            m.Describe(b"P", ""),
            m.Sync(),
        )
        w.query("SELECT 1 AS rt4_control")  # executed: audited, so the log is being written
    finally:
        w.close()
    # The server planned it: its error (division by zero, raised while folding constants) came back.
    assert ("E", "22012", "division by zero") in out, out
    deadline = time.monotonic() + 5
    while "rt4_control" not in _audit(served) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "rt4_control" in _audit(served)
    assert marker in _audit(served), "a statement the server planned has no audit record"


def test_parse_without_sync_is_audited_when_the_client_goes(served: dict[str, Any]) -> None:
    marker = "rt4_parsed_then_gone"
    w = Wire(served["port"])
    w.s.sendall(m.Parse("", f"SELECT id AS {marker} FROM call_records").serialize() + m.Flush().serialize())
    assert w._recv()[0] == b"1"  # ParseComplete: the server has it
    w.s.close()  # no Sync, no Terminate
    deadline = time.monotonic() + 5
    while marker not in _audit(served) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker in _audit(served), "a statement the server parsed has no audit record"


# ---------------------------------------------------------------------------------------------
# 4. One statement's analysis stalls every other session
# ---------------------------------------------------------------------------------------------
#
# proxy/pg/relay.py decides a statement (sqlglot parse + policy analysis) synchronously on the
# event loop that serves every session. The analysis of nested CASE expressions grows faster
# than linearly: 400 levels (about 10 KB of SQL) take seconds to decide, and a fresh alias in each
# statement keeps the shape cache from answering. While it runs, another person's `SELECT 1` on
# an already-open session waits; a vendor sending such statements back to back stalls the proxy
# for everyone.


def test_one_heavy_statement_does_not_stall_other_sessions(served: dict[str, Any]) -> None:
    n = 400
    sql = (
        "SELECT "
        + "CASE WHEN id = 1 THEN " * n
        + "1"
        + " END" * n
        + " AS rt4_stall FROM call_records LIMIT 1"
    )
    assert len(sql) < 11_000
    with connect(served, DESK) as victim:
        victim.execute("SELECT 1").fetchone()  # logged in and warmed up before the attack

        def attack() -> None:
            try:
                with connect(served) as c:
                    c.execute(sql).fetchall()
            except psycopg.Error:
                pass

        t = threading.Thread(target=attack, daemon=True)
        t.start()
        time.sleep(0.5)  # the statement has arrived and is being decided
        started = time.monotonic()
        victim.execute("SELECT 1").fetchone()
        waited = time.monotonic() - started
        t.join(120)
    assert waited < 3.0, f"another session's SELECT 1 waited {waited:.1f}s behind one vendor statement"


# ---------------------------------------------------------------------------------------------
# 5. A 40-byte statement whose result makes the value detectors run for hours
# ---------------------------------------------------------------------------------------------
#
# Every text value a restricted role receives is scanned by the detectors (masking/text.py), on
# the event loop that serves every session. masking/detectors.py `_resolve` drops overlapping
# candidates by comparing each one with every candidate kept so far: quadratic in how many
# numbers a value holds. `repeat('13812345678 ', n)` is computed by the server from a literal
# (no classified column, so nothing refuses it): n = 8 000 takes seconds, n = 1 000 000 keeps
# the proxy busy for days, and no other session gets an answer meanwhile (seen: the proxy had to
# be killed). The test uses n = 10 000 so that it ends.


def test_a_value_full_of_numbers_does_not_stall_other_sessions(served: dict[str, Any]) -> None:
    sql = "SELECT repeat('13812345678 ', 10000) AS rt4_numbers"
    with connect(served, DESK) as victim:
        victim.execute("SELECT 1").fetchone()

        def attack() -> None:
            try:
                with connect(served) as c:
                    c.execute(sql).fetchall()
            except psycopg.Error:
                pass

        t = threading.Thread(target=attack, daemon=True)
        t.start()
        time.sleep(0.5)  # the result is being scanned
        started = time.monotonic()
        victim.execute("SELECT 1").fetchone()
        waited = time.monotonic() - started
        t.join(300)
    assert waited < 3.0, f"another session's SELECT 1 waited {waited:.1f}s behind one 120 KB value"
