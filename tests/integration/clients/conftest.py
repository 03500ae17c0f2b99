"""One demo `crm` cluster and one `maskgate serve` (TLS offered) shared by every client module here.

The client tests only read, and none edits the policy, so sharing is safe and keeps the run short.
`clear` gives a test what the database itself holds (as the service account, not through the
proxy), to compare masked values with.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.demo.embedded_pg import EmbeddedPostgres
from tests.conftest import start_crm
from tests.integration.harness import serve_demo

SVC_PW = "svc-secret-for-client-tests"
CUSTOMERS = 400


@pytest.fixture(scope="package")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = start_crm(tmp_path_factory.mktemp("pg-clients"), SVC_PW, CUSTOMERS)
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="package")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("serve-clients"), crm, SVC_PW, tls=True) as s:
        yield s


@pytest.fixture(scope="package")
def service_account(crm: EmbeddedPostgres) -> tuple[str, str, int]:
    """(user, password, port) of the database itself, for clients that compare with it."""
    return "maskgate_svc", SVC_PW, crm.port


@pytest.fixture(scope="package")
def clear(crm: EmbeddedPostgres) -> Any:
    """Run a query straight against the database (no proxy) and return its rows."""

    def run(sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as conn:
            return conn.execute(sql, params or None).fetchall()

    return run
