"""Red team v5: attacks on the features of r10 (SQL cursors, SQL PREPARE, COPY options, limits).

Each test demonstrated a leak through the real proxy in front of a real PostgreSQL (a strict
xfail until the proxy was fixed); each asserts the secure behaviour, a refusal included.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.pg import messages as m
from tests.conftest import start_crm
from tests.integration.harness import serve_demo
from tests.integration.test_redteam import Wire

pytestmark = pytest.mark.integration

SVC_PW = "svc-secret-red5"
VENDOR = ("vendor_zhang", "vendor-pass")
DESK = ("desk_li", "desk-pass")
DIGITS = str.maketrans("abcdefghij", "0123456789")


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = start_crm(tmp_path_factory.mktemp("pg-red5"), SVC_PW, 300)
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("red5"), crm, SVC_PW) as s:
        yield s


@pytest.fixture(scope="module")
def truth(crm: EmbeddedPostgres) -> dict[str, Any]:
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as c:
        cust = c.execute(
            "SELECT id, phone, id_card, bank_card, branch_id FROM customers ORDER BY id"
        ).fetchall()
    return {
        "phones": {r[1] for r in cust},
        "id_cards": {r[2] for r in cust},
        "bank_cards": {r[3] for r in cust if r[3]},
        "branch12": {r[0] for r in cust if r[4] == 12},
    }


def connect(served: dict[str, Any], user: tuple[str, str], **kw: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1", port=served["port"], user=user[0], password=user[1], dbname="crm", **kw
    )


# A cursor name the server cuts to 63 bytes while the proxy keeps it whole: CLOSE and DECLARE
# under the long name act, on the server, on the cursor of the short one, whose decision the
# proxy keeps (a text literal: nothing masked). FETCH from the short name then returns the
# long DECLARE's rows under the literal's decision. translate() keeps the digits out of reach
# of the detectors that scan unclassified text.
SHORT = "c" * 63
LONG = SHORT + "x"


def test_truncated_cursor_name_fetches_under_another_decision(
    served: dict[str, Any], truth: dict[str, Any]
) -> None:
    with connect(served, VENDOR) as conn:
        conn.execute(f"DECLARE {SHORT} CURSOR FOR SELECT 'hello'::text AS t")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"CLOSE {LONG}")  # a name the server would cut is refused
        conn.rollback()
        got: set[str] = set()
        try:
            conn.execute(f"DECLARE {SHORT} CURSOR FOR SELECT 'hello'::text AS t")
            conn.execute(
                f"DECLARE {LONG} CURSOR FOR "
                "SELECT translate(phone, '0123456789', 'abcdefghij') FROM customers"
            )
            got = {r[0].translate(DIGITS) for r in conn.execute(f"FETCH 5 FROM {SHORT}").fetchall()}
        except psycopg.errors.InsufficientPrivilege:
            pass
    assert not got & truth["phones"]


def test_truncated_cursor_name_desk_bank_card(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served, DESK) as conn:
        conn.execute(f"DECLARE {SHORT} CURSOR FOR SELECT 'hello'::text AS t")
        got: set[str] = set()
        try:
            conn.execute(f"CLOSE {LONG}")
            conn.execute(
                f"DECLARE {LONG} CURSOR FOR SELECT translate(bank_card, '0123456789', 'abcdefghij') "
                "FROM customers WHERE bank_card IS NOT NULL"
            )
            got = {r[0].translate(DIGITS) for r in conn.execute(f"FETCH 5 FROM {SHORT}").fetchall()}
        except psycopg.errors.InsufficientPrivilege:
            pass  # refused: a name the server would cut
    assert not got & truth["bank_cards"]


def test_equality_candidates_across_statements_of_one_query(
    served: dict[str, Any], truth: dict[str, Any]
) -> None:
    """service_desk may compare phone with at most 10 values per statement; the 4 digits the mask
    hides are 10,000 candidates, tested 10 by 10 in one simple Query of 1,000 statements (one
    round trip, a few seconds), then 10 more to pick the digit."""
    with connect(served, DESK, autocommit=True) as conn:
        cid, masked = conn.execute("SELECT id, phone FROM customers ORDER BY id LIMIT 1").fetchone()
        pre, suf = masked[:3], masked[-4:]

        def hits(groups: list[list[str]]) -> list[int]:
            sql = " ".join(
                f"SELECT {k} FROM customers WHERE id = {cid} AND phone IN ({','.join(repr(v) for v in g)});"
                for k, g in enumerate(groups)
            )
            cur = conn.cursor()
            cur.execute(sql)
            out: list[int] = []
            while True:
                out += [r[0] for r in cur.fetchall()]
                if not cur.nextset():
                    return out

        candidates = [f"{pre}{i:04d}{suf}" for i in range(10000)]
        blocks = [candidates[j : j + 10] for j in range(0, 10000, 10)]
        try:
            found = [blocks[k][0] for k in hits(blocks)]
        except psycopg.errors.InsufficientPrivilege:
            return  # refused: the string compares phone with more than 10 values
        block = blocks[candidates.index(found[0]) // 10] if found else []
        phone = {block[k] for k in hits([[v] for v in block])} if block else set()
    assert not phone & truth["phones"]


def test_parsed_statement_without_sync_is_audited(served: dict[str, Any]) -> None:
    """v4 audits a statement parsed but not executed in its batch (outcome `prepared`) at Sync;
    a client that sends Parse, Describe and Flush, reads the server's answers and terminates
    without a Sync leaves no record of a statement the server parsed and described."""
    marker = f"red5_unaudited_{time.time_ns()}"
    w = Wire(served["port"])
    w.s.sendall(
        m.Parse("", f"SELECT phone AS {marker} FROM customers", ()).serialize()
        + m.Describe(b"S", "").serialize()
        + m.frame(b"H", b"")
    )
    got = b""
    while marker.encode() not in got:  # the server described it: ParseComplete, T
        got += w.s.recv(65536)
    w.s.sendall(m.frame(b"X", b""))
    w.s.close()
    audit = served["dir"] / "audit.jsonl"
    deadline = time.monotonic() + 5
    sqls: list[str] = []
    while time.monotonic() < deadline:
        sqls = [json.loads(line).get("sql", "") for line in audit.read_text().splitlines() if line.strip()]
        if any(marker in q for q in sqls):
            break
        time.sleep(0.1)
    assert any(marker in q for q in sqls)


def _doubling(levels: int) -> str:
    """A query whose every level appends to each row the value `2**k` rows on (one window value
    per level): the row of the outermost level holds 2**levels records of call_records."""
    q = "SELECT id, id::text || ':' || duration_s::text || ':' || customer_id::text AS x0 FROM call_records"
    for k in range(levels):
        q = (
            f"SELECT id, x{k} || ';' || coalesce(lead(x{k}, {2**k}) OVER (ORDER BY id), '') AS x{k + 1} "
            f"FROM ({q}) t{k}"
        )
    return f"SELECT x{levels} FROM ({q}) z ORDER BY id"


def test_nested_windows_pack_records_beyond_max_rows(served: dict[str, Any]) -> None:
    """max_rows counts one record per window value of a row, summed over the levels of nested
    derived tables; each level's lead() of the level below carries that level's whole value, so
    the records double per level: 9 levels (10 records a row, as counted) hold 512 in one row,
    and the 20 rows allowed hold every call record, against vendor's 200."""
    with connect(served, VENDOR) as conn:
        try:
            rows = conn.execute(_doubling(9)).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            return  # refused: a row may carry more records than the limit
    ids = {rec.split(":")[0] for (x,) in rows for rec in x.split(";") if rec}
    assert len(ids) <= 200
