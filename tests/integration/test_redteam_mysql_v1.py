"""Red team v1 of the MySQL listener: attacks by the demo's vendor and desk on maskgate in front
of a real MariaDB.

Each attack that works today is a test marked xfail(strict=True) that asserts the SAFE outcome
(a refusal, error 1142, or a masked value both count as safe), so it fails now and will start
passing, and must be unmarked, when the hole is closed. Unmarked tests are attacks that are
stopped today; they guard against regressions.
"""

from __future__ import annotations

import hashlib
import json
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from tests.conftest import start_crm_mysql
from tests.integration.harness import serve_demo

pytestmark = pytest.mark.integration

SERVICE_PASSWORD = "svc-redteam-mysql"
VENDOR = ("vendor_zhang", "vendor-pass")
DESK = ("desk_li", "desk-pass")
DBA = ("dba_wang", "dba-pass")
REFUSED = 1142
FULL_MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
FULL_ID_CARD = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
HEX_RUN = re.compile(r"(?:[0-9A-Fa-f]{2}){8,}")


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    db = start_crm_mysql(tmp_path_factory.mktemp("redteam-mysql"), SERVICE_PASSWORD, 300)
    try:
        yield db
    finally:
        db.destroy()


@pytest.fixture(scope="module")
def served(mariadb: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("redteam-serve"), None, SERVICE_PASSWORD, mysql=mariadb) as s:
        yield s


def connect(served: dict[str, Any], who: tuple[str, str], **kw: Any) -> pymysql.connections.Connection:
    return pymysql.connect(
        host="127.0.0.1",
        port=served["mysql_port"],
        user=who[0],
        password=who[1],
        database=kw.pop("database", "crm"),
        charset="utf8mb4",
        autocommit=True,
        **kw,
    )


def direct(served: dict[str, Any]) -> pymysql.connections.Connection:
    """The test's own root connection to the private MariaDB: the truth to compare with."""
    db = served["mysql"]
    return db.connect("crm", autocommit=True)


def run(cur: Any, sql: str) -> list[tuple[Any, ...]] | int:
    """The rows of `sql`, or the error code when it is refused or fails."""
    try:
        cur.execute(sql)
    except pymysql.err.MySQLError as e:
        return int(e.args[0])
    return list(cur.fetchall())


def texts(rows: Any) -> str:
    """Every value of `rows` as one text, hex runs decoded too (a value read as hex is as good as
    the value itself)."""
    out: list[str] = []
    for row in rows if isinstance(rows, list) else []:
        for v in row:
            s = v.decode("utf-8", "replace") if isinstance(v, bytes | bytearray) else str(v)
            out.append(s)
            for h in HEX_RUN.findall(s):
                out.append(bytes.fromhex(h).decode("utf-8", "replace"))
    return "\n".join(out)


def leaks_number(text: str) -> bool:
    return bool(FULL_MOBILE.search(text) or FULL_ID_CARD.search(text))


# ---------------------------------------------------------------- attacks that work today


def test_warning_quotes_hex_of_masked_column(served: dict[str, Any]) -> None:
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        first = run(
            cur, "SELECT CAST(HEX(phone) AS CHAR(1)), CAST(HEX(id_card) AS CHAR(1)) FROM customers LIMIT 1"
        )
        if isinstance(first, int):
            assert first == REFUSED
            return
        warnings = run(cur, "SHOW WARNINGS")
    assert isinstance(warnings, list | int)
    assert not leaks_number(texts(warnings)), warnings


SMUGGLED_ANSI = (
    # maskgate reads "…\" …" as one string (a backslash escapes the quote) in a query of the
    # catalog alone, which needs no rewrite and goes as written; under ANSI_QUOTES the server reads
    # "a\" as a name (no escapes in names) and runs the subqueries after it, the line comment
    # hiding the rest.
    'SELECT 1 AS "a\\", (SELECT group_concat(id, 0x3a, branch_id, 0x3a, hex(phone), 0x3a, '
    'hex(id_card), 0x3a, hex(bank_card) SEPARATOR 0x0a) FROM customers) AS q -- " '
    "FROM information_schema.tables LIMIT 1"
)


def test_sql_mode_number_ansi_quotes_smuggles_sql(served: dict[str, Any]) -> None:
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        got = run(cur, "SET sql_mode = 4")
        if isinstance(got, int):
            assert got == REFUSED
            return
        try:
            rows = run(cur, SMUGGLED_ANSI)
        except pymysql.err.MySQLError:
            return  # the session was closed: safe
    assert not leaks_number(texts(rows)), str(rows)[:300]


def test_sql_mode_as_number_turns_on_lexical_flags(served: dict[str, Any]) -> None:
    bad = {"ANSI_QUOTES", "PIPES_AS_CONCAT", "IGNORE_SPACE", "NO_BACKSLASH_ESCAPES", "ANSI"}
    for value in ("4", "2", "8", "262144", "'4'"):
        with connect(served, VENDOR) as conn, conn.cursor() as cur:
            got = run(cur, f"SET sql_mode = {value}")
            if isinstance(got, int):
                continue  # refused, or the session closed
            mode = run(cur, "SELECT @@sql_mode")
            if isinstance(mode, int):
                continue
            assert not bad & set(str(mode[0][0]).split(",")), (value, mode)


def _truth(served: dict[str, Any], sql: str) -> tuple[Any, ...]:
    conn = direct(served)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return tuple(cur.fetchone())
    finally:
        conn.close()


def test_warnings_quote_halves_of_masked_column(served: dict[str, Any]) -> None:
    first_id = _truth(served, "SELECT min(id) FROM customers WHERE branch_id = 12")[0]
    phone, id_card = _truth(served, f"SELECT phone, id_card FROM customers WHERE id = {first_id}")
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        got = run(
            cur,
            "SELECT CAST(SUBSTR(phone, 1, 6) AS CHAR(1)), CAST(SUBSTR(phone, 7) AS CHAR(1)), "
            "CAST(SUBSTR(id_card, 1, 9) AS CHAR(1)), CAST(SUBSTR(id_card, 10) AS CHAR(1)) "
            f"FROM customers WHERE id = {first_id}",
        )
        if isinstance(got, int):
            assert got == REFUSED
            return
        warnings = run(cur, "SHOW WARNINGS")
    quoted = "".join(re.findall(r"value: '([^']*)'", texts(warnings)))
    assert phone not in quoted and id_card not in quoted, warnings


def test_explain_extended_note_prints_const_row(served: dict[str, Any]) -> None:
    other_id, name, address = _truth(
        served, "SELECT id, name, address FROM customers WHERE branch_id <> 12 ORDER BY id LIMIT 1"
    )
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        got = run(cur, f"EXPLAIN EXTENDED SELECT name, address FROM customers WHERE id = {other_id}")
        if isinstance(got, int):
            assert got == REFUSED
            return
        warnings = run(cur, "SHOW WARNINGS")
    seen = texts(warnings)
    assert name not in seen and address not in seen, warnings


def test_desk_writes_audit_trail_through_ansi_quotes(served: dict[str, Any]) -> None:
    marker = "redteam-v1-desk"
    smuggled = (
        'SELECT 1 AS "a\\"; INSERT INTO audit_trail (actor, action) VALUES '
        f'(0x{marker.encode().hex()}, 0x70776e6564) -- " FROM information_schema.tables LIMIT 1'
    )
    try:
        with connect(served, DESK, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS) as conn:
            cur = conn.cursor()
            if not isinstance(run(cur, "SET sql_mode = 4"), int):
                try:
                    cur.execute(smuggled)
                    while cur.nextset():
                        pass
                except pymysql.err.MySQLError:
                    pass
        (written,) = _truth(served, f"SELECT count(*) FROM audit_trail WHERE actor = '{marker}'")
        assert written == 0
    finally:
        conn = direct(served)
        try:
            with conn.cursor() as c:
                c.execute("DELETE FROM audit_trail WHERE actor = %s", (marker,))
        finally:
            conn.close()


def _raw_session(served: dict[str, Any], who: tuple[str, str]) -> tuple[Any, socket.socket]:
    """A logged-in PyMySQL connection and its socket, for packets PyMySQL would not send."""
    conn = connect(served, who)
    sock = conn._sock
    assert sock is not None
    return conn, sock


def _frame(payload: bytes, seq: int = 0) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def test_pipelined_flood_is_not_buffered_without_bound(served: dict[str, Any]) -> None:
    conn, sock = _raw_session(served, VENDOR)
    try:
        # A statement that runs for seconds keeps a command in flight.
        sock.sendall(_frame(b"\x03SELECT count(*) FROM call_records a, call_records b, customers c"))
        pad = b"\x03SELECT 1 /*" + b"x" * (4 * 1024 * 1024 - 20) + b"*/"
        packet = _frame(pad)
        sock.setblocking(False)
        sent, limit, start = 0, 96 * 2**20, time.monotonic()
        while time.monotonic() - start < 6 and sent < limit:
            _, writable, _ = select.select([], [sock], [], 0.5)
            if not writable:
                continue
            try:
                sent += sock.send(packet[sent % len(packet) :])
            except BlockingIOError:
                continue
            except OSError:
                break  # closed by the proxy: safe
    finally:
        sock.close()
        conn._sock = None
    assert sent < 64 * 2**20, f"the proxy took {sent / 2**20:.0f} MB from a client that reads nothing"


class Raw:
    """Packets over a logged-in connection's socket, read back one at a time."""

    def __init__(self, served: dict[str, Any], who: tuple[str, str]) -> None:
        self.conn, self.sock = _raw_session(served, who)
        self.sock.settimeout(10)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()
        self.conn._sock = None

    def send(self, payload: bytes) -> None:
        self.sock.sendall(_frame(payload))

    def read(self) -> bytes:
        while len(self.buf) < 4 or len(self.buf) < 4 + int.from_bytes(self.buf[:3], "little"):
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("closed")
            self.buf += data
        n = int.from_bytes(self.buf[:3], "little")
        payload, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
        return payload

    @staticmethod
    def ends(payload: bytes) -> bool:
        return payload[:1] == b"\xff" or (payload[:1] == b"\xfe" and len(payload) < 9)

    def until_end(self) -> list[bytes]:
        out = []
        while True:
            payload = self.read()
            out.append(payload)
            if self.ends(payload):
                return out

    def query(self, sql: str) -> list[bytes]:
        """A text query's row payloads (raises on an error)."""
        self.send(b"\x03" + sql.encode())
        head = self.read()
        assert head[:1] not in (b"\xff", b"\x00"), head
        for _ in range(head[0]):
            self.read()
        assert self.ends(self.read())
        rows = self.until_end()
        assert rows[-1][:1] == b"\xfe", rows[-1]
        return rows[:-1]


def _audit_sql(served: dict[str, Any], user: str) -> list[str]:
    audit = served["dir"] / "audit.jsonl"
    app = served["app"]
    if hasattr(app.audit, "flush"):
        app.audit.flush()
    out = []
    for line in audit.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get("user") == user and rec.get("protocol") == "mysql" and rec.get("sql"):
                out.append(rec["sql"])
    return out


def test_field_list_is_audited(served: dict[str, Any]) -> None:
    raw = Raw(served, DESK)
    try:
        raw.send(b"\x04call_records\x00")
        answer = raw.until_end()
    finally:
        raw.close()
    if answer[-1][:1] == b"\xff":
        return  # refused: nothing served
    time.sleep(0.3)
    assert any("call_records" in sql for sql in _audit_sql(served, DESK[0]))


@pytest.mark.xfail(
    strict=True,
    reason="a statement under the 64 KiB analysis limit (thousands of `id = n OR …`) takes seconds "
    "to analyse on the event loop every session shares: one vendor stalls everyone's queries",
)
def test_long_or_chain_does_not_stall_other_sessions(served: dict[str, Any]) -> None:
    heavy = "SELECT id FROM customers WHERE " + " OR ".join(f"id = {i}" for i in range(3000))
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with connect(served, DESK) as conn, conn.cursor() as cur:
            while not stop.is_set():
                t = time.monotonic()
                cur.execute("SELECT 1")
                cur.fetchall()
                latencies.append(time.monotonic() - t)
                time.sleep(0.02)

    worker = threading.Thread(target=probe)
    worker.start()
    try:
        time.sleep(0.3)
        with connect(served, VENDOR) as conn, conn.cursor() as cur:
            run(cur, heavy)
        time.sleep(0.2)
    finally:
        stop.set()
        worker.join()
    assert latencies
    assert max(latencies) < 1.0, f"another session waited {max(latencies):.1f} s"


def test_desk_writes_before_the_backslash_backstop(served: dict[str, Any]) -> None:
    marker = "redteam-v1-nbe"
    smuggled = (
        "SET sql_mode = 1048576; SELECT 'a\\'; INSERT INTO audit_trail (actor, action) VALUES "
        f"(0x{marker.encode().hex()}, 0x70776e6564) -- ' FROM information_schema.tables LIMIT 1"
    )
    try:
        with connect(served, DESK, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS) as conn:
            cur = conn.cursor()
            try:
                cur.execute(smuggled)
                while cur.nextset():
                    pass
            except pymysql.err.MySQLError:
                pass
        time.sleep(0.3)
        (written,) = _truth(served, f"SELECT count(*) FROM audit_trail WHERE actor = '{marker}'")
        assert written == 0
    finally:
        conn = direct(served)
        try:
            with conn.cursor() as c:
                c.execute("DELETE FROM audit_trail WHERE actor = %s", (marker,))
        finally:
            conn.close()


def test_desk_database_role_is_a_backstop(served: dict[str, Any]) -> None:
    with connect(served, DESK) as conn, conn.cursor() as cur:
        got = run(cur, "UPDATE customers SET bank_card = NULL WHERE id = -1")
    # maskgate's refusal (1142) or the database's column-privilege error (1143) are both safe.
    assert got in (REFUSED, 1143), got


@pytest.mark.xfail(
    strict=True,
    reason="maskgate puts no bound on one person's sessions and each opens its own upstream "
    "connection: the vendor holding max_connections (151) of them locks every other person out",
)
def test_one_person_cannot_take_every_upstream_connection(served: dict[str, Any]) -> None:
    held: list[Any] = []
    try:
        for _ in range(160):
            try:
                held.append(connect(served, VENDOR, connect_timeout=5))
            except pymysql.err.MySQLError:
                break  # maskgate (or the database) stopped the vendor: fine if the DBA still gets in
        with connect(served, DBA, connect_timeout=5) as conn, conn.cursor() as cur:
            assert run(cur, "SELECT 1") == [(1,)]
    finally:
        for conn in held:
            conn.close()


def test_read_only_vendor_cannot_block_the_desks_writes(served: dict[str, Any]) -> None:
    first_id = _truth(served, "SELECT min(id) FROM customers WHERE branch_id = 12")[0]
    vendor = connect(served, VENDOR)
    done = threading.Event()
    try:
        cur = vendor.cursor()
        for sql in (
            "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET autocommit = 0",
            "BEGIN",
            f"SELECT id FROM customers WHERE id = {first_id}",
        ):
            if isinstance(run(cur, sql), int):
                return  # refused: nothing is locked

        def desk_update() -> None:
            with connect(served, DESK) as conn, conn.cursor() as c:
                run(c, f"UPDATE customers SET email = email WHERE id = {first_id}")
            done.set()

        worker = threading.Thread(target=desk_update)
        worker.start()
        blocked = not done.wait(3)
    finally:
        vendor.close()  # its transaction ends: the desk's update goes on
    worker.join(60)
    assert not blocked, "the desk's UPDATE waited on the vendor's shared lock"


def test_warning_quotes_masked_name(served: dict[str, Any]) -> None:
    first_id = _truth(served, "SELECT min(id) FROM customers WHERE branch_id = 12")[0]
    (name,) = _truth(served, f"SELECT name FROM customers WHERE id = {first_id}")
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        got = run(cur, f"SELECT CAST(name AS CHAR(1)) FROM customers WHERE id = {first_id}")
        if isinstance(got, int):
            assert got == REFUSED
            return
        warnings = run(cur, "SHOW WARNINGS")
    assert name not in texts(warnings), warnings


def test_show_where_subquery_is_an_oracle(served: dict[str, Any]) -> None:
    other_id, card = _truth(
        served, "SELECT id, bank_card FROM customers WHERE branch_id <> 12 AND bank_card IS NOT NULL LIMIT 1"
    )
    with connect(served, VENDOR) as conn, conn.cursor() as cur:

        def holds(condition: str) -> bool | None:
            got = run(cur, f"SHOW TABLES WHERE (SELECT {condition} FROM customers WHERE id = {other_id})")
            return None if isinstance(got, int) else bool(got)

        found = ""
        for pos in range(1, len(card) + 1):
            lo, hi = 0, 9  # the digit at pos is in [lo, hi]
            while lo < hi:
                mid = (lo + hi + 1) // 2
                answer = holds(f"SUBSTR(bank_card, {pos}, 1) >= '{mid}'")
                if answer is None:
                    return  # refused: safe
                lo, hi = (mid, hi) if answer else (lo, mid - 1)
            found += str(lo)
    assert found != card, "the whole bank card was read through SHOW … WHERE"


def test_statement_name_case_folding_swaps_the_decision(served: dict[str, Any]) -> None:
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        steps = (
            "PREPARE `σ` FROM 'SELECT CAST(id AS CHAR) AS v, CAST(id AS CHAR) AS w FROM customers "
            "ORDER BY id LIMIT 3'",
            "PREPARE `ς` FROM 'SELECT hex(phone) AS v, hex(id_card) AS w FROM customers ORDER BY id LIMIT 3'",
        )
        for sql in steps:
            got = run(cur, sql)
            if isinstance(got, int):
                assert got == REFUSED
                return
        rows = run(cur, "EXECUTE `σ`")
    assert not leaks_number(texts(rows)), rows


def test_explain_extended_is_an_unanalysed_oracle(served: dict[str, Any]) -> None:
    other_id, card = _truth(
        served, "SELECT id, bank_card FROM customers WHERE branch_id <> 12 AND bank_card IS NOT NULL LIMIT 1"
    )
    with connect(served, VENDOR) as conn, conn.cursor() as cur:

        def holds(condition: str) -> bool | None:
            got = run(cur, f"EXPLAIN EXTENDED SELECT id FROM customers WHERE id = {other_id} AND {condition}")
            if isinstance(got, int):
                return None
            return "Impossible WHERE" not in texts(got)

        found = ""
        for pos in range(1, len(card) + 1):
            lo, hi = 0, 9
            while lo < hi:
                mid = (lo + hi + 1) // 2
                answer = holds(f"SUBSTR(bank_card, {pos}, 1) >= '{mid}'")
                if answer is None:
                    return  # refused: safe
                lo, hi = (mid, hi) if answer else (lo, mid - 1)
            found += str(lo)
    assert found != card, "the whole bank card was read through EXPLAIN EXTENDED"


def test_explain_extended_prints_a_materialised_row(served: dict[str, Any]) -> None:
    other_id = _truth(served, "SELECT id FROM customers WHERE branch_id <> 12 ORDER BY id LIMIT 1")[0]
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        got = run(
            cur,
            "EXPLAIN EXTENDED SELECT x FROM (SELECT hex(concat_ws(0x20, phone, id_card, bank_card)) AS x "
            f"FROM customers WHERE id = {other_id} LIMIT 1) t",
        )
        if isinstance(got, int):
            assert got == REFUSED
            return
        warnings = run(cur, "SHOW WARNINGS")
    assert not leaks_number(texts(warnings)), warnings


# ---------------------------------------------------------------- attacks stopped today


def test_cursor_fetch_stops_at_max_rows(served: dict[str, Any]) -> None:
    raw = Raw(served, VENDOR)
    try:
        raw.send(b"\x16SELECT id FROM call_records")
        head = raw.read()
        assert head[:1] == b"\x00", head
        sid, ncols, nparams = struct.unpack("<IHH", head[1:9])
        for _ in range(nparams + (1 if nparams else 0) + ncols + (1 if ncols else 0)):
            raw.read()
        raw.send(b"\x17" + struct.pack("<IBI", sid, 1, 1))  # CURSOR_TYPE_READ_ONLY
        head = raw.read()
        for _ in range(head[0]):
            raw.read()
        assert raw.ends(raw.read())
        total = 0
        for _ in range(3):
            raw.send(b"\x1c" + struct.pack("<II", sid, 500))
            got = raw.until_end()
            total += len(got) - 1
            if got[-1][:1] == b"\xff":
                break
    finally:
        raw.close()
    assert total <= 200


def test_protocol_doors_refused(served: dict[str, Any]) -> None:
    """COM_CHANGE_USER to the DBA, COM_PROCESS_KILL, COM_PROCESS_INFO, COM_DEBUG, COM_SHUTDOWN and
    the SQL spellings of KILL and SET ROLE are refused, and the session stays usable."""
    raw = Raw(served, DESK)
    try:
        doors = [
            b"\x11dba_wang\x00\x00crm\x00",
            b"\x0c" + struct.pack("<I", 1),
            b"\x0a",
            b"\x0d",
            b"\x08",
            b"\x03KILL 1",
            b"\x03KILL QUERY 1",
            b"\x03SET ROLE NONE",
            b"\x03SET DEFAULT ROLE NONE",
        ]
        for door in doors:
            raw.send(door)
            answer = raw.read()
            assert answer[:1] == b"\xff", (door, answer)
            assert int.from_bytes(answer[1:3], "little") == REFUSED, (door, answer)
        raw.send(b"\x1f")  # COM_RESET_CONNECTION: still crm_desk upstream afterwards
        assert raw.read()[:1] == b"\x00"
        rows = raw.query("SELECT COALESCE(CURRENT_ROLE(), SUBSTRING_INDEX(CURRENT_USER(), '@', 1))")
        assert rows and b"crm_desk" in rows[0]
    finally:
        raw.close()


def test_command_before_login_ends_closes(served: dict[str, Any]) -> None:
    """A COM_QUERY sent right behind the handshake response (before maskgate took the desk's role)
    ends the connection instead of running as the service account."""
    sock = socket.create_connection(("127.0.0.1", served["mysql_port"]), timeout=10)
    try:
        head = sock.recv(4)
        greeting = b""
        while len(greeting) < int.from_bytes(head[:3], "little"):
            greeting += sock.recv(4096)
        pos = greeting.index(b"\x00", 1) + 5
        nonce = greeting[pos : pos + 8]
        pos += 9 + 2 + 1 + 2 + 2
        auth_len = greeting[pos]
        pos += 11
        nonce += greeting[pos : pos + max(13, auth_len - 8) - 1]
        s1 = hashlib.sha1(DESK[1].encode()).digest()
        s3 = hashlib.sha1(nonce + hashlib.sha1(s1).digest()).digest()
        auth = bytes(a ^ b for a, b in zip(s1, s3, strict=True))
        caps = 0x200 | 0x8000 | 0x80000 | 0x8 | 0x10000 | 0x20000
        resp = (
            struct.pack("<IIB", caps, 1 << 24, 45)
            + b"\x00" * 23
            + DESK[0].encode()
            + b"\x00"
            + bytes([len(auth)])
            + auth
            + b"crm\x00mysql_native_password\x00"
        )
        sock.sendall(_frame(resp, head[3] + 1) + _frame(b"\x03SELECT CURRENT_ROLE(), CURRENT_USER()"))
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    assert b"maskgate_svc" not in data


def test_cte_named_like_its_table_still_filtered(served: dict[str, Any]) -> None:
    """In MariaDB a non-recursive WITH query's own name inside its body is the base table."""
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        for sql in (
            "WITH customers AS (SELECT id, branch_id FROM customers) "
            "SELECT DISTINCT branch_id FROM customers",
            "WITH x AS (SELECT id, branch_id FROM customers), customers AS (SELECT 1 AS id, 1 AS branch_id) "
            "SELECT DISTINCT branch_id FROM x",
            "SELECT DISTINCT c.branch_id FROM (customers c JOIN call_records r ON r.customer_id = c.id)",
        ):
            got = run(cur, sql)
            assert got == REFUSED or got == [(12,)], (sql, got)


def test_refused_side_doors(served: dict[str, Any]) -> None:
    """Doors to classified values that are shut today."""
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        for sql in (
            "SELECT @a := phone FROM customers LIMIT 1",
            "SELECT phone INTO @b FROM customers LIMIT 1",
            "SET @x = (SELECT phone FROM customers LIMIT 1)",
            "PREPARE s FROM @q",
            "EXECUTE IMMEDIATE 'SELECT phone FROM customers'",
            "HANDLER customers OPEN",
            "BEGIN NOT ATOMIC SELECT phone FROM customers; END",
            "SELECT group_concat(phone) FROM customers",
            "SELECT phone + 0 FROM customers LIMIT 1",
            "SELECT id FROM customers ORDER BY 2",
            "SHOW PROCESSLIST",
            "SELECT info FROM information_schema.processlist",
            "SELECT id, phone FROM customers ORDER BY 2 LIMIT 3",
            "SET sql_mode = 'ANSI_QUOTES'",
            "SET character_set_client = 28",
        ):
            assert run(cur, sql) == REFUSED, sql


def test_sql_mode_number_no_backslash_escapes_closes_session(served: dict[str, Any]) -> None:
    """NO_BACKSLASH_ESCAPES by number gets past the SET rule, but the server reports it in its
    status and maskgate closes the session before the smuggled statement's rows are shown."""
    smuggled = (
        "SET sql_mode = 1048576; SELECT 'a\\', (SELECT hex(phone) FROM customers WHERE id = 1) AS p "
        "-- ' FROM information_schema.tables LIMIT 1"
    )
    with connect(served, VENDOR, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS) as conn:
        cur = conn.cursor()
        try:
            cur.execute(smuggled)
            seen: list[Any] = list(cur.fetchall())
            while cur.nextset():
                seen += list(cur.fetchall())
        except pymysql.err.MySQLError:
            return
    assert not leaks_number(texts(seen))
