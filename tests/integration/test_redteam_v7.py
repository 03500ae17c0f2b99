"""Red team v7: attacks on the real proxy in front of a real PostgreSQL, as an outsourced vendor
or a service-desk agent would try them. Each was a leak (a strict xfail until the proxy was fixed);
each asserts the secure behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.demo.embedded_pg import EmbeddedPostgres
from tests.integration.harness import connect_proxy, crm_database, serve_demo

SERVICE = "svc-red7"
DESK = ("desk_li", "desk-pass")
VENDOR = ("vendor_zhang", "vendor-pass")


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with crm_database(tmp_path_factory, "red7", SERVICE, 300) as pg:
        yield pg


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("red7-serve"), crm, SERVICE) as s:
        yield s


def truth(crm: EmbeddedPostgres, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(crm.dsn("maskgate_svc", SERVICE, "crm")) as conn:
        return conn.execute(sql).fetchall()


def test_desk_searches_mobile_by_writing_candidates_and_joining(
    served: dict[str, Any], crm: EmbeddedPostgres
) -> None:
    """The lookup budget counts equalities with values (eq_literal); an equality between two
    mobile columns (eq_column, same class) is free. The desk role may UPDATE customers, so in a
    transaction it sets the other 299 customers' phones to 299 candidates (computed from id, so
    no literal is compared), asks which of them equals customer 27's phone with a self-join, and
    rolls back: nothing is written, nothing is counted, and 34 transactions cover all 10,000
    candidates that the mask leaves."""
    real = truth(crm, "SELECT phone FROM customers WHERE id = 27")[0][0]
    found = None
    with connect_proxy(served, DESK, autocommit=True) as conn:
        masked = conn.execute("SELECT phone FROM customers WHERE id = 27").fetchone()[0]
        head, tail = masked[:3], masked[-4:]
        for base in range(0, 10_000, 299):
            try:
                with conn.transaction(force_rollback=True):
                    conn.execute(
                        "UPDATE customers SET phone = %s || lpad(((row_number) + %s)::text, 4, '0') || %s"
                        " FROM (SELECT id AS rid, row_number() OVER (ORDER BY id) - 1 AS row_number"
                        "       FROM customers WHERE id <> 27) r WHERE customers.id = r.rid",
                        (head, base, tail),
                    )
                    hit = conn.execute(
                        "SELECT b.id FROM customers a JOIN customers b ON a.phone = b.phone"
                        " WHERE a.id = 27 AND b.id <> 27"
                    ).fetchall()
            except psycopg.errors.InsufficientPrivilege:
                break  # refused: the search stops here
            if hit:
                # The masked echo does not show the digits; which row matched does.
                others = [i for i in range(1, 301) if i != 27]
                found = f"{head}{base + others.index(int(hit[0][0])):04d}{tail}"
                break
    assert found != real, f"found customer 27's mobile ({found}) without spending lookups"


def test_desk_searches_mobile_with_writable_cte_join(served: dict[str, Any], crm: EmbeddedPostgres) -> None:
    """The same search in single statements: `WITH u AS (UPDATE customers SET phone = <computed>
    … RETURNING id, phone) SELECT u.id FROM customers a JOIN u ON a.phone = u.phone`. The
    RETURNING column is a base mobile column, so the join is a same-class equality; the
    candidates never appear as literals. (Here each statement is rolled back so the module's
    data stays as it was; an attacker need not.)"""
    real = truth(crm, "SELECT phone FROM customers WHERE id = 27")[0][0]
    others = [i for i in range(1, 301) if i != 27]
    found = None
    with connect_proxy(served, DESK, autocommit=True) as conn:
        masked = conn.execute("SELECT phone FROM customers WHERE id = 27").fetchone()[0]
        head, tail = masked[:3], masked[-4:]
        for base in range(0, 10_000, 299):
            try:
                with conn.transaction(force_rollback=True):
                    hit = conn.execute(
                        "WITH u AS (UPDATE customers SET phone = %s || lpad((r.n + %s)::text, 4, '0') || %s"
                        " FROM (SELECT id AS rid, row_number() OVER (ORDER BY id) - 1 AS n"
                        "       FROM customers WHERE id <> 27) r WHERE customers.id = r.rid"
                        " RETURNING customers.id, customers.phone)"
                        " SELECT u.id FROM customers a JOIN u ON a.phone = u.phone WHERE a.id = 27",
                        (head, base, tail),
                    ).fetchall()
            except psycopg.errors.InsufficientPrivilege:
                break
            if hit:
                found = f"{head}{base + others.index(int(hit[0][0])):04d}{tail}"
                break
    assert found != real, f"found customer 27's mobile ({found}) without spending lookups"
