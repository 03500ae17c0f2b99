"""Red team v6: attacks on the real proxy in front of a real PostgreSQL, as an outsourced vendor
or a service-desk agent would try them. Each was a leak (a strict xfail until the proxy was
fixed); each asserts the secure behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.demo.embedded_pg import EmbeddedPostgres
from tests.integration.harness import connect_proxy, crm_database, serve_demo

SERVICE = "svc-red6"
DESK = ("desk_li", "desk-pass")
VENDOR = ("vendor_zhang", "vendor-pass")


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with crm_database(tmp_path_factory, "red6", SERVICE, 300) as pg:
        yield pg


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("red6-serve"), crm, SERVICE) as s:
        yield s


def truth(crm: EmbeddedPostgres, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(crm.dsn("maskgate_svc", SERVICE, "crm")) as conn:
        return conn.execute(sql).fetchall()


def test_desk_recovers_full_mobile_from_mask_and_equality(
    served: dict[str, Any], crm: EmbeddedPostgres
) -> None:
    """The desk role's mobile mask keeps the first 3 and last 4 digits, and `masked_predicates:
    equality` lets it ask `phone IN (10 values)`: 10,000 candidates are 1,000 statements, each
    within the per-string cap, and the hit names the whole number. Bank cards (6 hidden digits,
    Luhn leaves 10^5) fall the same way in about 10 s."""
    real = truth(crm, "SELECT phone FROM customers WHERE id = 27")[0][0]
    tested = 0
    found = None
    with connect_proxy(served, DESK, autocommit=True) as conn:
        masked = conn.execute("SELECT phone FROM customers WHERE id = 27").fetchone()[0]
        head, tail = masked[:3], masked[-4:]
        candidates = [f"{head}{i:04d}{tail}" for i in range(10_000)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="lookups"):
            for k in range(0, len(candidates), 10):
                batch = candidates[k : k + 10]
                inlist = ",".join(f"'{c}'" for c in batch)
                hit = conn.execute(
                    f"SELECT 1 FROM customers WHERE id = 27 AND phone IN ({inlist})"
                ).fetchall()
                tested += len(batch)
                if hit:
                    found = next(c for c in batch if c == real)  # the attacker's next 10 lookups
        assert conn.execute("SELECT 1").fetchone() == (1,)  # refused, and the session goes on
    # The hourly budget (the demo role's default lookups_per_hour, 300) stops the search: a person
    # tests at most 3 % of the candidates an hour, and finds the number only if it is among them.
    assert tested <= 300
    assert found is None or candidates.index(real) < 300


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
        rows = conn.execute(sql).fetchall()  # each row carries three records: 66 rows
    records = {int(v) for r in rows for v in r[:3]}
    assert len(records) <= 200, f"one statement returned {len(records)} distinct call records"
