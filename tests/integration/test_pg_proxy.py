"""The PostgreSQL proxy against a real server with real clients: psycopg, asyncpg, psql, pgbench.

A canned Gate (tests/proxy/pg/fakegate.py) stands in for the policy engine so these tests pin
the protocol behaviour: masking in text and binary formats, refusals that leave the connection
usable, row limits, authentication failures.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import threading
from collections.abc import Iterator

import asyncpg
import psycopg
import pytest

from policies.decision import Allow, Block, ColumnMask, Decision
from proxy.demo.embedded_pg import EmbeddedPostgres, bin_dir
from proxy.pg.server import PgProxyServer
from proxy.services.gate import Principal
from tests.integration.harness import self_signed_cert
from tests.proxy.pg.fakegate import FakeGate

pytestmark = pytest.mark.integration

SVC_PASSWORD = "svc-pw-1"
CLASSES = {"phone": "mobile", "id_card": "id_card", "phone_num": "mobile", "balance": "money"}
LIMIT = 50


def canned_decide(p: Principal, sql: str) -> Decision:
    s = sql.lower()
    if "secrets" in s:
        return Block("table_denied", "table crm.public.secrets is not allowed")
    if p.unrestricted:
        return Allow(kind="all")
    cols: tuple[ColumnMask, ...] = ()
    mo = re.search(r"select\s+(.*?)\s+from\s+customers", s, re.S)
    if mo:
        names = [c.strip() for c in mo.group(1).split(",")]
        cols = tuple(
            ColumnMask(i, n, CLASSES.get(n), "mask" if n in CLASSES else "clear") for i, n in enumerate(names)
        )
    return Allow(kind="select", columns=cols, row_limit=LIMIT, detect=frozenset({"mobile", "id_card"}))


@pytest.fixture(scope="module")
def proxy(embedded_pg: EmbeddedPostgres) -> Iterator[tuple[PgProxyServer, FakeGate]]:
    pg = embedded_pg
    pg.psql(
        f"""
        DO $$BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'maskgate_svc') THEN
            CREATE ROLE maskgate_svc LOGIN PASSWORD '{SVC_PASSWORD}';
          END IF;
        END$$;
        """
    )
    if not pg.psql("SELECT 1 FROM pg_database WHERE datname = 'crm'").strip():
        pg.psql("CREATE DATABASE crm OWNER maskgate_svc")
    pg.psql(
        """
        DROP TABLE IF EXISTS customers, secrets;
        CREATE TABLE customers (id int PRIMARY KEY, name text, phone text, id_card varchar(18),
                                phone_num bigint, balance numeric(12,2), note text);
        INSERT INTO customers
          SELECT i, 'name' || i, '138' || lpad(i::text, 8, '0'), '11010519491231' || lpad(i::text, 4, '0'),
                 13900000000 + i, i * 1.5, 'call me at 1370000' || lpad(i::text, 4, '0')
          FROM generate_series(1, 200) i;
        CREATE TABLE secrets (k text);
        ALTER TABLE customers OWNER TO maskgate_svc;
        ALTER TABLE secrets OWNER TO maskgate_svc;
        """,
        "crm",
    )
    gate = FakeGate(canned_decide)
    gate.add_user("alice", "alice-pw")
    gate.add_user("dba", "dba-pw", role="dba", unrestricted=True)
    gate.add_user("maskgate_svc", SVC_PASSWORD, unrestricted=True)  # must still be refused

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    url = f"postgresql://maskgate_svc:{SVC_PASSWORD}@{pg.host}:{pg.port}/crm?sslmode=disable"
    server = asyncio.run_coroutine_threadsafe(PgProxyServer(gate, "127.0.0.1", 0, url).start(), loop).result(
        10
    )
    try:
        yield server, gate
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(2.0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def dsn(server: PgProxyServer, user: str = "alice", password: str = "alice-pw", db: str = "crm") -> str:
    return f"postgresql://{user}:{password}@127.0.0.1:{server.port}/{db}?sslmode=disable"


SELECT = "SELECT id, name, phone, id_card, phone_num, balance, note FROM customers"


def _check_masked(rows: list[tuple]) -> None:
    assert rows
    for _id, name, phone, id_card, phone_num, balance, note in rows:
        assert name.startswith("name")
        assert re.fullmatch(r"138\*{4}\d{4}", phone), phone
        assert re.fullmatch(r"110\*{11}\d{4}", id_card), id_card
        assert str(phone_num).startswith("139") and str(phone_num)[3:7] == "0000"
        assert float(balance) >= 0
        assert "1370000" not in note and "*" in note  # detectors on an unclassified column


@pytest.mark.parametrize("binary", [False, True])
def test_psycopg_masks_and_limits(proxy, binary: bool) -> None:
    server, _ = proxy
    notices: list[str] = []
    with psycopg.connect(dsn(server)) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        with conn.cursor(binary=binary) as cur:
            cur.execute(SELECT + " ORDER BY id")
            rows = cur.fetchall()
            assert len(rows) == LIMIT
            assert cur.rowcount == LIMIT
            _check_masked(rows)
            cur.execute(SELECT + " WHERE id = %s", (7,))
            rows = cur.fetchall()
            _check_masked(rows)
            assert rows[0][0] == 7
    assert any("truncated to 50 rows" in n for n in notices)


def test_psycopg_prepared_statements(proxy) -> None:
    server, _ = proxy
    with psycopg.connect(dsn(server)) as conn, conn.cursor(binary=True) as cur:
        for i in (3, 4, 5, 6):
            cur.execute(SELECT + " WHERE id = %s", (i,), prepare=True)
            rows = cur.fetchall()
            _check_masked(rows)
            assert rows[0][0] == i


def test_refusal_keeps_connection_usable(proxy) -> None:
    server, _ = proxy
    with psycopg.connect(dsn(server), autocommit=True) as conn:
        refused = r"maskgate: table crm\.public\.secrets"
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=refused):
            conn.execute("SELECT * FROM secrets")
        assert conn.execute("SELECT 1").fetchone() == (1,)
        # Extended protocol (parameters force Parse/Bind).
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM secrets WHERE k = %s", ("x",))
        assert conn.execute("SELECT %s::int", (2,)).fetchone() == (2,)


def test_refusal_inside_transaction(proxy) -> None:
    server, _ = proxy
    with psycopg.connect(dsn(server)) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM secrets")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        # The upstream agrees: the block is failed there too.
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_pipeline_with_refusal(proxy) -> None:
    server, _ = proxy
    with psycopg.connect(dsn(server), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.pipeline():
            c1 = conn.execute("SELECT %s::int", (1,))
            conn.execute("SELECT * FROM secrets WHERE k = %s", ("x",))
            conn.execute("SELECT %s::int", (3,))
        assert c1.fetchone() == (1,)
        with conn.pipeline():
            a = conn.execute(SELECT + " WHERE id = %s", (9,))
            b = conn.execute("SELECT %s::text", ("ok",))
        _check_masked(a.fetchall())
        assert b.fetchone() == ("ok",)


def test_named_cursor_and_copy(proxy) -> None:
    server, _ = proxy
    with psycopg.connect(dsn(server)) as conn:
        with conn.cursor() as cur:
            out = []
            with cur.copy("COPY (SELECT id, phone, note FROM customers ORDER BY id) TO STDOUT") as copy:
                for row in copy.rows():
                    out.append(row)
            assert len(out) == LIMIT
            assert all(re.fullmatch(r"138\*{4}\d{4}", r[1]) for r in out)
            assert all("1370000" not in r[2] for r in out)
            # The wire does not say a COPY is CSV; a decision without a layout (this canned one)
            # means text, so CSV rows are refused, not guessed.
            with (
                pytest.raises(psycopg.errors.InsufficientPrivilege),
                cur.copy(
                    "COPY (SELECT id, phone FROM customers ORDER BY id) TO STDOUT WITH (FORMAT csv)"
                ) as copy,
            ):
                for _ in copy:
                    pass
        conn.rollback()
        binary_copy = "COPY (SELECT id, phone FROM customers) TO STDOUT (FORMAT binary)"
        with (
            pytest.raises(psycopg.errors.InsufficientPrivilege, match="binary COPY"),
            conn.cursor() as cur,
            cur.copy(binary_copy) as copy,
        ):
            for _ in copy:
                pass
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_auth_failures(proxy) -> None:
    server, gate = proxy
    before = gate.auth_failures
    for user, pw in (("alice", "wrong"), ("nobody", "x"), ("maskgate_svc", SVC_PASSWORD)):
        with pytest.raises(psycopg.OperationalError) as ei:
            psycopg.connect(dsn(server, user, pw)).close()
        assert "password authentication failed" in str(ei.value)
    assert gate.auth_failures == before + 3


def test_unrestricted_passthrough(proxy) -> None:
    server, _ = proxy
    with psycopg.connect(dsn(server, "dba", "dba-pw")) as conn:
        rows = conn.execute("SELECT phone FROM customers ORDER BY id").fetchall()
        assert len(rows) == 200 and rows[0] == ("13800000001",)


def test_asyncpg(proxy) -> None:
    server, _ = proxy

    async def run() -> None:
        conn = await asyncpg.connect(dsn(server))
        try:
            rows = await conn.fetch(SELECT + " WHERE id < $1 ORDER BY id", 10)
            _check_masked([tuple(r) for r in rows])
            stmt = await conn.prepare(SELECT + " WHERE id = $1")
            for i in (1, 2):
                _check_masked([tuple(await stmt.fetchrow(i))])
            async with conn.transaction():
                got = [tuple(r) async for r in conn.cursor(SELECT + " ORDER BY id", prefetch=7)]
            assert len(got) == LIMIT
            _check_masked(got)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch("SELECT * FROM secrets")
            assert await conn.fetchval("SELECT 41 + 1") == 42
        finally:
            await conn.close()

    asyncio.run(run())


def test_psql(proxy) -> None:
    server, _ = proxy
    env = dict(os.environ, PGPASSWORD="alice-pw", PGSSLMODE="disable")
    res = subprocess.run(
        [
            str(bin_dir() / "psql"),
            "-X",
            "-At",
            "-h",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-U",
            "alice",
            "-d",
            "crm",
            "-c",
            "SELECT id, phone FROM customers ORDER BY id LIMIT 3",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["1|138****0001", "2|138****0002", "3|138****0003"]


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench(proxy, embedded_pg: EmbeddedPostgres, mode: str) -> None:
    server, _ = proxy
    if not embedded_pg.psql("SELECT 1 FROM pg_tables WHERE tablename = 'pgbench_accounts'", "crm").strip():
        env = dict(os.environ, PGPASSWORD=SVC_PASSWORD)
        subprocess.run(
            [
                str(bin_dir() / "pgbench"),
                "-i",
                "-s",
                "1",
                "-q",
                "-h",
                embedded_pg.host,
                "-p",
                str(embedded_pg.port),
                "-U",
                "maskgate_svc",
                "crm",
            ],
            check=True,
            capture_output=True,
            env=env,
            timeout=120,
        )
    env = dict(os.environ, PGPASSWORD="dba-pw", PGSSLMODE="disable")
    res = subprocess.run(
        [
            str(bin_dir() / "pgbench"),
            "-n",
            "-M",
            mode,
            "-c",
            "2",
            "-t",
            "20",
            "-h",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-U",
            "dba",
            "crm",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr + res.stdout
    assert "number of failed transactions: 0" in res.stdout


def test_cancel_is_mapped_to_the_upstream_backend(proxy) -> None:
    server, _ = proxy
    with psycopg.connect(dsn(server, "dba", "dba-pw")) as conn:
        timer = threading.Timer(0.3, conn.cancel_safe)
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(10)")
        timer.join()
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_tls_listener(proxy, embedded_pg: EmbeddedPostgres, tmp_path) -> None:
    _, gate = proxy
    url = (
        f"postgresql://maskgate_svc:{SVC_PASSWORD}@{embedded_pg.host}:{embedded_pg.port}/crm?sslmode=disable"
    )

    async def run() -> None:
        server = await PgProxyServer(gate, "127.0.0.1", 0, url, tls=self_signed_cert(tmp_path)).start()
        try:
            conn = await psycopg.AsyncConnection.connect(
                dsn(server).replace("sslmode=disable", "sslmode=require")
            )
            async with conn:
                assert conn.info.pgconn.ssl_in_use
                cur = await conn.execute("SELECT id, phone FROM customers WHERE id = 1")
                assert await cur.fetchone() == (1, "138****0001")
        finally:
            await server.stop(1.0)

    asyncio.run(run())


def test_named_cursor(proxy) -> None:
    server, _ = proxy
    with psycopg.connect(dsn(server)) as conn, conn.cursor("c1") as cur:
        cur.itersize = 7
        cur.execute("SELECT id, phone, note FROM customers ORDER BY id")
        rows = cur.fetchmany(20)
        # FETCH results carry no column decision from the canned gate: detectors still apply.
        assert len(rows) == 20
        assert all(re.fullmatch(r"138\*{4}\d{4}", r[1]) and "1370000" not in r[2] for r in rows)


def test_an_internal_error_costs_only_that_connection(proxy) -> None:
    """A bug inside the session (here: a masker that raises) closes that connection with a
    generic FATAL error; other sessions go on."""
    server, gate = proxy
    real = gate.value_masker

    def broken(cls: str | None, action: str):  # type: ignore[no-untyped-def]
        if cls == "id_card":
            raise RuntimeError("boom: secret detail")
        return real(cls, action)

    with psycopg.connect(dsn(server)) as other:
        gate.value_masker = broken  # type: ignore[method-assign]
        try:
            with psycopg.connect(dsn(server)) as c:
                with pytest.raises(psycopg.errors.InternalError_, match="internal error") as info:
                    c.execute("SELECT id, id_card FROM customers").fetchall()
                assert "boom" not in str(info.value)
                with pytest.raises(psycopg.OperationalError):
                    c.execute("SELECT 1")
        finally:
            gate.value_masker = real  # type: ignore[method-assign]
        assert other.execute("SELECT 1").fetchone() == (1,)


def test_a_second_startup_packet_after_login_is_refused_at_once(proxy) -> None:
    """After login a StartupMessage looks like a message of type 0 whose length reads as
    kilobytes: it is answered at once (08P01, closed), not after the client sends 7 KB more."""
    import socket
    import struct
    import time

    from proxy.pg import messages as m
    from proxy.pg.auth import UpstreamAuth

    server, _ = proxy
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    startup = m.StartupMessage(m.PROTOCOL_3_0, (("user", "alice"), ("database", "crm"))).serialize()
    s.sendall(startup)
    auth, buf = UpstreamAuth("alice", "alice-pw"), b""

    def message() -> tuple[bytes, bytes]:
        nonlocal buf
        while len(buf) < 5 or len(buf) < 1 + struct.unpack("!i", buf[1:5])[0]:
            data = s.recv(65536)
            if not data:
                raise EOFError
            buf += data
        n = 1 + struct.unpack("!i", buf[1:5])[0]
        out, buf = (buf[:1], buf[5:n]), buf[n:]
        return out

    while (msg := message())[0] != b"Z":
        if msg[0] == b"R" and (reply := auth.respond(m.parse_authentication(msg[1]))):
            s.sendall(reply)
    started = time.monotonic()
    s.sendall(startup)
    t, body = message()
    assert t == b"E" and m.ErrorResponse.parse(body).code == "08P01"
    assert time.monotonic() - started < 2
    assert s.recv(100) == b""  # closed
    s.close()
