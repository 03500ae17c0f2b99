"""The private MariaDB and the demo `crm` data in it: the grants are the database's own defence."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.demo.data import DESK_ROLE, VENDOR_ROLE, _mysql_value
from proxy.demo.embedded_mariadb import EmbeddedMariaDB
from tests.conftest import CRM_DESK_PASSWORD, CRM_VENDOR_PASSWORD, start_crm_mysql

SERVICE_PASSWORD = "svc-secret"


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedMariaDB]:
    db = start_crm_mysql(tmp_path_factory.mktemp("crm-mariadb"), SERVICE_PASSWORD, 200)
    try:
        yield db
    finally:
        db.destroy()


def _tcp(db: EmbeddedMariaDB, user: str, password: str) -> object:
    import pymysql

    return pymysql.connect(
        host=db.host, port=db.port, user=user, password=password, database="crm", autocommit=True
    )


def test_mysql_value_converts_only_utc_timestamps() -> None:
    assert _mysql_value("2026-01-01T00:01:00+00:00") == "2026-01-01 00:01:00.000000"
    assert _mysql_value("2019-05-04") == "2019-05-04"
    note = "客户来电咨询开户进度，回拨号码13812345678。"
    assert _mysql_value(note) == note
    assert _mysql_value(12) == 12


def test_session_server_is_private(embedded_mariadb: EmbeddedMariaDB) -> None:
    assert embedded_mariadb.is_running()
    assert embedded_mariadb.port not in (0, 3306)
    assert "MariaDB" in embedded_mariadb.version
    rows = embedded_mariadb.sql("SELECT @@port, @@datadir, @@log_bin")
    port, datadir, log_bin = rows[0]
    assert port == embedded_mariadb.port and log_bin == 0
    assert Path(datadir).resolve() == embedded_mariadb.datadir.resolve()
    # Root has no password and no way in over TCP.
    hosts = {h for (h,) in embedded_mariadb.sql("SELECT host FROM mysql.user WHERE user = 'root'")}
    assert hosts == {"localhost"}


def test_stop_and_start_again(tmp_path: Path, embedded_mariadb: EmbeddedMariaDB) -> None:
    db = EmbeddedMariaDB(tmp_path / "m", performance_schema=False).start()
    try:
        db.sql("CREATE DATABASE kept")
        db.stop()
        assert not db.is_running()
        db.start()
        assert ("kept",) in db.sql("SHOW DATABASES")
    finally:
        db.destroy()
    assert not (tmp_path / "m").exists()


def test_seeded(crm: EmbeddedMariaDB) -> None:
    counts = crm.sql(
        "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM call_records),"
        " (SELECT count(*) FROM accounts), (SELECT count(*) FROM audit_trail)",
        "crm",
    )
    assert counts == [(200, 400, 200, 1)]
    sql = "SELECT name, created_at, balance FROM customers JOIN accounts USING (id) WHERE id = 1"
    name, created, balance = crm.sql(sql, "crm")[0]
    assert name and not name.isascii()  # utf8mb4 end to end
    assert created == dt.datetime(2026, 1, 1, 0, 1)
    assert isinstance(balance, decimal.Decimal)


def test_vendor_reads_but_cannot_write(crm: EmbeddedMariaDB) -> None:
    import pymysql

    conn = _tcp(crm, VENDOR_ROLE, CRM_VENDOR_PASSWORD)
    try:
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute("SELECT count(*) FROM customers")
            assert cur.fetchone() == (200,)
            cur.execute("SELECT id, balance FROM accounts WHERE id = 1")
            assert cur.fetchone()[0] == 1
            with pytest.raises(pymysql.err.OperationalError) as e:
                cur.execute("UPDATE customers SET phone = '1' WHERE id = 1")
            assert e.value.args[0] == 1142  # ER_TABLEACCESS_DENIED_ERROR
            with pytest.raises(pymysql.err.OperationalError) as e:
                cur.execute("SELECT account_no FROM accounts")
            assert e.value.args[0] == 1143  # ER_COLUMNACCESS_DENIED_ERROR
            with pytest.raises(pymysql.err.OperationalError):
                cur.execute("SELECT * FROM audit_trail")
            with pytest.raises(pymysql.err.OperationalError):
                cur.execute(f"SET ROLE {DESK_ROLE}")
    finally:
        conn.close()  # type: ignore[attr-defined]


def test_desk_logs_in_as_itself_with_only_its_rights(crm: EmbeddedMariaDB) -> None:
    """crm_desk is an account of its own on MariaDB (a role taken with SET ROLE would add its
    rights to the service account's): it reads customers and updates only phone, email and
    address; the service account holds no role and no server-wide right."""
    import pymysql

    conn = _tcp(crm, DESK_ROLE, CRM_DESK_PASSWORD)
    try:
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute("SELECT phone FROM customers WHERE id = 1")
            assert cur.fetchone()[0]
            cur.execute("UPDATE customers SET email = email WHERE id = 1")
            with pytest.raises(pymysql.err.OperationalError) as e:
                cur.execute("UPDATE customers SET id_card = id_card WHERE id = 1")
            assert e.value.args[0] == 1143
            with pytest.raises(pymysql.err.OperationalError):
                cur.execute("SELECT * FROM audit_trail")
    finally:
        conn.close()  # type: ignore[attr-defined]
    svc = _tcp(crm, "maskgate_svc", SERVICE_PASSWORD)
    try:
        with svc.cursor() as cur:  # type: ignore[attr-defined]
            with pytest.raises(pymysql.err.OperationalError):
                cur.execute("SELECT user FROM mysql.user")
            with pytest.raises(pymysql.err.OperationalError):
                cur.execute("CREATE TABLE t (x int)")
            cur.execute("SHOW GRANTS")
            grants = " ".join(g for (g,) in cur.fetchall())
            assert "FILE" not in grants and "PROCESS" not in grants and "SUPER" not in grants
            assert DESK_ROLE not in grants
    finally:
        svc.close()  # type: ignore[attr-defined]


def test_seed_is_idempotent(crm: EmbeddedMariaDB) -> None:
    from proxy.demo.data import seed_mysql

    conn = crm.connect("crm", autocommit=False)
    try:
        assert seed_mysql(conn, 50) == 200
    finally:
        conn.close()
    # Grants re-run: crm_desk is still an account, not a role of the service account's.
    assert crm.sql("SELECT role FROM mysql.roles_mapping WHERE user = 'maskgate_svc'") == []
