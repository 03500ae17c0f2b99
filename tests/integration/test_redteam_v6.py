"""Red team v6: attacks on the real proxy in front of a real PostgreSQL, as an outsourced vendor
or a service-desk agent would try them. Each test is a leak that still works (xfail, strict): it
passes once the proxy is fixed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.demo.embedded_pg import EmbeddedPostgres
from tests.conftest import start_crm
from tests.integration.harness import connect_proxy, serve_demo

SERVICE = "svc-red6"
DESK = ("desk_li", "desk-pass")
VENDOR = ("vendor_zhang", "vendor-pass")


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = start_crm(tmp_path_factory.mktemp("red6"), SERVICE, 300)
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("red6-serve"), crm, SERVICE) as s:
        yield s


def truth(crm: EmbeddedPostgres, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(crm.dsn("maskgate_svc", SERVICE, "crm")) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.xfail(
    strict=True,
    reason="LEAK: desk mask shows 7 of 11 mobile digits; 1000 equality IN-lists recover the rest",
)
def test_desk_recovers_full_mobile_from_mask_and_equality(
    served: dict[str, Any], crm: EmbeddedPostgres
) -> None:
    """The desk role's mobile mask keeps the first 3 and last 4 digits, and `masked_predicates:
    equality` lets it ask `phone IN (10 values)`: 10,000 candidates are 1,000 statements, each
    within the per-string cap, and the hit names the whole number. Bank cards (6 hidden digits,
    Luhn leaves 10^5) fall the same way in about 10 s."""
    real = truth(crm, "SELECT phone FROM customers WHERE id = 27")[0][0]
    with connect_proxy(served, DESK, autocommit=True) as conn:
        masked = conn.execute("SELECT phone FROM customers WHERE id = 27").fetchone()[0]
        head, tail = masked[:3], masked[-4:]
        candidates = [f"{head}{i:04d}{tail}" for i in range(10_000)]
        found = None
        for k in range(0, len(candidates), 10):
            batch = candidates[k : k + 10]
            inlist = ",".join(f"'{c}'" for c in batch)
            if conn.execute(f"SELECT 1 FROM customers WHERE id = 27 AND phone IN ({inlist})").fetchall():
                for c in batch:
                    if conn.execute("SELECT 1 FROM customers WHERE id = 27 AND phone = %s", (c,)).fetchall():
                        found = c
                        break
                break
    assert found != real, "desk recovered the full mobile number through the proxy"


@pytest.mark.xfail(
    strict=True,
    reason="LEAK: LATERAL subqueries are not counted as joins: 200 rows carry 600 call records",
)
def test_lateral_subqueries_carry_more_records_than_max_rows(served: dict[str, Any]) -> None:
    """A join halves the vendor's row limit (each row carries two records), and a scalar subquery
    too; a `, LATERAL (SELECT … LIMIT 1)` source is a join of the same shape but is not counted,
    so every lateral adds max_rows more records (here 3 × 200 call records, with their callers)."""
    sql = (
        "SELECT a.id, b.id, c.id, c.caller FROM call_records a,"
        " LATERAL (SELECT id FROM call_records b WHERE b.id = a.id + 200 LIMIT 1) b,"
        " LATERAL (SELECT id, caller FROM call_records c WHERE c.id = a.id + 400 LIMIT 1) c"
    )
    with connect_proxy(served, VENDOR, autocommit=True) as conn:
        rows = conn.execute(sql).fetchall()
    records = {int(v) for r in rows for v in r[:3]}
    assert len(records) <= 200, f"one statement returned {len(records)} distinct call records"
