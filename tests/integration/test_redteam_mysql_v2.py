"""Red team v2 of the MySQL listener: new attack classes by the demo's vendor and desk on
maskgate in front of a real MariaDB (after tests/integration/test_redteam_mysql.py and _v1.py).

Each attack that works today is a test marked xfail(strict=True) that asserts the SAFE outcome
(a refusal, error 1142, or a masked value both count as safe), so it fails now and must be
unmarked when the hole is closed. Unmarked tests are attempts that are stopped today; they guard
against regressions.

Found in this round and fixed since (the tests now pass): SHOW WARNINGS quoting CAST(HEX(phone) …)
in the same string, after a cursor, and a const row of another branch (a restricted session reads
no warning's text now); SET max_error_count + SHOW WARNINGS (no record in a withheld message);
`ORDER BY (1)` / `GROUP BY (1)` and `ORDER BY ?` read as positions (a parameter there is refused),
and a set operation's ORDER BY judged as a sort of the columns it names.
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest
from pymysql.constants import CLIENT

from tests.conftest import start_crm_mysql
from tests.integration.harness import serve_demo

pytestmark = pytest.mark.integration

SERVICE_PASSWORD = "svc-redteam-mysql-v2"
VENDOR = ("vendor_zhang", "vendor-pass")
DESK = ("desk_li", "desk-pass")
REFUSED = 1142
FULL_MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
FULL_ID_CARD = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
HEX_RUN = re.compile(r"(?:[0-9A-Fa-f]{2}){8,}")
# A statement that makes the server quote HEX(phone) and HEX(id_card) in its warnings.
HEX_WARNINGS = (
    "SELECT CAST(HEX(phone) AS CHAR(1)) AS a, CAST(HEX(id_card) AS CHAR(1)) AS b FROM customers LIMIT 1"
)


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    db = start_crm_mysql(tmp_path_factory.mktemp("redteam2-mysql"), SERVICE_PASSWORD, 300)
    try:
        yield db
    finally:
        db.destroy()


@pytest.fixture(scope="module")
def served(mariadb: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("redteam2-serve"), None, SERVICE_PASSWORD, mysql=mariadb) as s:
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
        client_flag=kw.pop("client_flag", CLIENT.MULTI_STATEMENTS),
        **kw,
    )


def direct(served: dict[str, Any], sql: str) -> list[tuple[Any, ...]]:
    """The rows of `sql` over the test's own root connection to the private MariaDB."""
    conn = served["mysql"].connect("crm", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def run_all(conn: Any, sql: str) -> list[tuple[Any, ...]] | int:
    """Every row of every result of `sql`, or the error code when it is refused or fails."""
    rows: list[tuple[Any, ...]] = []
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            rows += cur.fetchall()
            while cur.nextset():
                rows += cur.fetchall() or ()
    except pymysql.err.MySQLError as e:
        return int(e.args[0]) if e.args and isinstance(e.args[0], int) else -1
    return rows


def texts(rows: Any) -> str:
    """Every value as one text, hex runs decoded too (a value read as hex is the value)."""
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


def _frame(payload: bytes, seq: int = 0) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


class Raw:
    """Packets over a logged-in PyMySQL connection's socket, for what PyMySQL would not send."""

    def __init__(self, served: dict[str, Any], who: tuple[str, str]) -> None:
        self.conn = connect(served, who)
        sock = self.conn._sock
        assert isinstance(sock, socket.socket)
        self.sock = sock
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

    def prepare(self, sql: str) -> int:
        self.send(b"\x16" + sql.encode())
        head = self.read()
        assert head[:1] == b"\x00", head
        sid, ncols, nparams = struct.unpack("<IHH", head[1:9])
        for _ in range(nparams + (1 if nparams else 0) + ncols + (1 if ncols else 0)):
            self.read()
        return sid

    def execute(self, sid: int, flags: int = 0) -> list[bytes]:
        """COM_STMT_EXECUTE without parameters: the column definitions' count packet and the
        rest up to the first end (the rows too when no cursor is opened)."""
        self.send(b"\x17" + struct.pack("<IBI", sid, flags, 1))
        head = self.read()
        if head[:1] in (b"\xff", b"\x00"):
            return [head]
        out = [head]
        for _ in range(head[0]):
            out.append(self.read())
        out.append(self.read())
        if not flags:
            out += self.until_end()
        return out

    def query(self, sql: str) -> list[bytes]:
        """A text query's answer: [ERR] / [OK], or its row payloads and the closing EOF."""
        self.send(b"\x03" + sql.encode())
        head = self.read()
        if head[:1] in (b"\xff", b"\x00"):
            return [head]
        for _ in range(head[0]):
            self.read()
        self.read()
        return self.until_end()


def _warnings_leak(rows: Any) -> bool:
    return leaks_number(texts(rows))


# ---------------------------------------------------------------- attacks that work today


def test_show_warnings_in_the_same_string(served: dict[str, Any]) -> None:
    with connect(served, VENDOR) as c:
        got = run_all(c, HEX_WARNINGS + "; SHOW WARNINGS")
        assert got == REFUSED or not _warnings_leak(got), got


def test_denied_bank_card_from_notes_in_the_same_string(served: dict[str, Any]) -> None:
    rows = direct(
        served, "SELECT id, notes FROM call_records WHERE notes LIKE '%银行卡%' ORDER BY id LIMIT 1"
    )
    call_id, notes = rows[0]
    card = re.search(r"\d{16,19}", notes)
    assert card is not None
    with connect(served, VENDOR) as c:
        got = run_all(
            c, f"SELECT CAST(HEX(notes) AS CHAR(1)) FROM call_records WHERE id = {call_id}; SHOW WARNINGS"
        )
    assert got == REFUSED or card.group() not in texts(got), got


def test_show_warnings_later_in_the_same_string(served: dict[str, Any]) -> None:
    with connect(served, VENDOR) as c:
        got = run_all(c, HEX_WARNINGS + "; SELECT 1; SHOW WARNINGS LIMIT 1")
        assert got == REFUSED or not _warnings_leak(got), got


def test_show_warnings_after_a_cursor_read(served: dict[str, Any]) -> None:
    raw = Raw(served, VENDOR)
    try:
        sid = raw.prepare(HEX_WARNINGS)
        raw.execute(sid, flags=1)  # CURSOR_TYPE_READ_ONLY: the server runs it now
        raw.send(b"\x1c" + struct.pack("<II", sid, 10))
        raw.until_end()
        got = raw.query("SHOW WARNINGS")
    finally:
        raw.close()
    blob = b"\n".join(got).decode("utf-8", "replace")
    decoded = [bytes.fromhex(h).decode("utf-8", "replace") for h in HEX_RUN.findall(blob)]
    assert not leaks_number(blob + "\n" + "\n".join(decoded)), got


@pytest.mark.parametrize("follow", ["SHOW WARNINGS", "SHOW ERRORS", "SHOW WARNINGS LIMIT 1"])
def test_show_warnings_after_a_classified_read_is_withheld(served: dict[str, Any], follow: str) -> None:
    with connect(served, VENDOR) as c:
        assert run_all(c, HEX_WARNINGS) != REFUSED
        got = run_all(c, follow)
        assert isinstance(got, list), got
        assert not _warnings_leak(got), got
        assert run_all(c, "SELECT 1") == [(1,)]


def test_warnings_carry_more_records_than_max_rows(served: dict[str, Any]) -> None:
    with connect(served, VENDOR) as c:
        run_all(c, "SET max_error_count = 65535")
        got = run_all(
            c,
            "SELECT COUNT(*) FROM call_records "
            "WHERE CAST(CONCAT('x', id, '/', customer_id, '/', duration_s) AS INT) = 0",
        )
        assert got != REFUSED
        warnings = run_all(c, "SHOW WARNINGS")
    # Safe: refused, cut to the row limit, or warnings that carry no record (their text withheld).
    assert (
        warnings == REFUSED
        or len(warnings) <= 200
        or all(str(w[2]).startswith("maskgate: the message is withheld") for w in warnings)
    ), len(warnings) if isinstance(warnings, list) else warnings


def test_const_row_of_another_branch_in_a_warning(served: dict[str, Any]) -> None:
    other_id, created = direct(
        served, "SELECT id, created_at FROM customers WHERE branch_id <> 12 ORDER BY id LIMIT 1"
    )[0]
    with connect(served, VENDOR) as c:
        got = run_all(
            c, f"SELECT id FROM customers WHERE id = {other_id} AND CAST(CONCAT('x', created_at) AS INT) = 0"
        )
        assert got in ([], REFUSED), got
        warnings = run_all(c, "SHOW WARNINGS")
    assert str(created)[:19] not in texts(warnings), warnings


def test_parenthesised_position_is_a_sort_oracle(served: dict[str, Any]) -> None:
    target, phone = direct(
        served, "SELECT id, phone FROM customers WHERE branch_id = 12 ORDER BY id LIMIT 1"
    )[0]
    sentinels = " ".join(f"UNION ALL SELECT '{d}', -{d + 1}" for d in range(10))
    recovered = ""
    with connect(served, VENDOR) as c:
        for pos in range(1, len(phone) + 1):
            got = run_all(
                c,
                f"SELECT SUBSTR(phone, {pos}, 1) AS a, id FROM customers WHERE id = {target} "
                f"{sentinels} ORDER BY (1), (2)",
            )
            if not isinstance(got, list):
                assert got == REFUSED
                return
            ids = [r[1] for r in got]
            if target not in ids:
                return
            recovered += str(ids.index(target) - 1)  # the sentinels sorted before it: its digit + 1
    assert recovered != phone, "the full mobile, read back through ORDER BY (1)"


def test_placeholder_position_is_a_sort_oracle(served: dict[str, Any]) -> None:
    mc = pytest.importorskip("mysql.connector")
    target, phone = direct(
        served, "SELECT id, phone FROM customers WHERE branch_id = 12 ORDER BY id LIMIT 1"
    )[0]
    sentinels = " ".join(f"UNION ALL SELECT '{d}', -{d + 1}" for d in range(10))
    conn = mc.connect(
        host="127.0.0.1",
        port=served["mysql_port"],
        user=VENDOR[0],
        password=VENDOR[1],
        database="crm",
        use_pure=True,
        ssl_disabled=True,
        autocommit=True,
    )
    recovered = ""
    try:
        for pos in range(1, len(phone) + 1):
            cur = conn.cursor(prepared=True)
            try:
                cur.execute(
                    f"SELECT SUBSTR(phone, {pos}, 1) AS a, id FROM customers WHERE id = {target} "
                    f"{sentinels} ORDER BY ?, ?",
                    (1, 2),
                )
                ids = [r[1] for r in cur.fetchall()]
            except mc.Error as e:
                assert e.errno == REFUSED
                return
            finally:
                cur.close()
            if target not in ids:
                return
            recovered += str(ids.index(target) - 1)
    finally:
        conn.close()
    assert recovered != phone, "the full mobile, read back through ORDER BY ?"


def test_sql_level_placeholder_position_sorts_by_the_masked_column(served: dict[str, Any]) -> None:
    truth = [r[0] for r in direct(served, "SELECT id FROM customers WHERE branch_id = 12 ORDER BY phone, id")]
    with connect(served, VENDOR) as c:
        got = run_all(
            c,
            "PREPARE s FROM 'SELECT phone, id FROM customers ORDER BY ?, 2'; SET @p = 1; EXECUTE s USING @p",
        )
    assert got == REFUSED or [r[1] for r in got if len(r) == 2] != truth


@pytest.mark.parametrize("order", ["ORDER BY 1", "ORDER BY +1", "GROUP BY 1", "ORDER BY a"])
def test_plain_positions_and_aliases_are_refused(served: dict[str, Any], order: str) -> None:
    """Stopped: the unparenthesised position, a signed one and the alias are seen as phone."""
    with connect(served, VENDOR) as c:
        assert run_all(c, f"SELECT phone AS a, id FROM customers {order} LIMIT 3") == REFUSED


def test_row_filter_runs_before_the_vendors_condition_on_scans(served: dict[str, Any]) -> None:
    """Stopped: on a scan (no const table) the branch filter is tested first, so the warnings
    quote only branch 12's rows."""
    others = {r[0] for r in direct(served, "SELECT id FROM customers WHERE branch_id <> 12")}
    with connect(served, VENDOR) as c:
        run_all(c, "SELECT id FROM customers WHERE CAST(CONCAT('x', id, '/', branch_id) AS INT) = 0")
        warnings = run_all(c, "SHOW WARNINGS")
    quoted = {int(m) for m in re.findall(r"'x(\d+)/", texts(warnings))}
    assert not quoted & others, sorted(quoted & others)[:5]


# ---------------------------------------------------------------- attempts that are stopped today


@pytest.mark.parametrize(
    "sql",
    [
        # MariaDB's NATURAL JOIN matches names by case folding: İ (U+0130) folds to I, the Kelvin
        # sign to K; maskgate's rendering lowercases them to other names, and it reads Kelvin as k.
        "SELECT c.id FROM customers c NATURAL JOIN (SELECT '{id_card}' AS \u0130d_card) x",
        "SELECT c.id FROM customers c NATURAL JOIN (SELECT '{id_card}' AS `\u0130D_CARD`) x",
        "SELECT COUNT(*) FROM customers c NATURAL JOIN (SELECT '1' AS `ban\u212a_card`) x",
        "SELECT c.id FROM customers c NATURAL JOIN (SELECT '{phone}' AS phone) x",
        "SELECT c.id FROM customers c JOIN (SELECT '{phone}' AS phone) x USING (phone)",
    ],
)
def test_natural_join_on_a_folded_name_is_no_equality_oracle(served: dict[str, Any], sql: str) -> None:
    cid, phone, id_card = direct(
        served, "SELECT id, phone, id_card FROM customers WHERE branch_id = 12 LIMIT 1"
    )[0]
    with connect(served, VENDOR) as c:
        got = run_all(c, sql.format(phone=phone, id_card=id_card))
    assert got == REFUSED or got != [(cid,)], got


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT j.v FROM customers c, JSON_TABLE(JSON_ARRAY(c.phone), '$[*]' COLUMNS(v BIGINT PATH '$')) j",
        "SELECT j.v FROM customers c, "
        "JSON_TABLE(CONCAT('[\"', c.phone, '\"]'), '$[*]' COLUMNS(v VARCHAR(20) PATH '$')) j",
        "SELECT j.* FROM customers c "
        "JOIN JSON_TABLE(CONCAT('[', c.id_card, ']'), '$[*]' COLUMNS(v BIGINT PATH '$')) j",
        "PREPARE s FROM 'SELECT bank_' 'card FROM customers'; EXECUTE s",
        "PREPARE s FROM 0x53454c4543542062616e6b5f636172642046524f4d20637573746f6d657273; EXECUTE s",
        "PREPARE s FROM _binary'SELECT bank_card FROM customers'; EXECUTE s",
        "GET DIAGNOSTICS CONDITION 1 @m = MESSAGE_TEXT",
        "SELECT phone AS a, id FROM customers ORDER BY 1",
        "SELECT SUBSTR(phone, 4, 1) AS y, id FROM customers ORDER BY (y)",
        "SELECT SUBSTR(phone, 4, 1) AS id, id AS x FROM customers HAVING id + 0 > 4",
        "SELECT phone AS p\u0125, id FROM customers ORDER BY ph",
    ],
)
def test_stopped_reads(served: dict[str, Any], sql: str) -> None:
    with connect(served, VENDOR) as c:
        assert run_all(c, sql) == REFUSED
        assert run_all(c, "SELECT 1") == [(1,)]


@pytest.mark.parametrize(
    "sql",
    [
        b"SELECT 1 \x00; SELECT phone FROM customers",
        b"SELECT 1 /* \x00 */, phone FROM customers",
    ],
)
def test_nul_bytes_are_refused(served: dict[str, Any], sql: bytes) -> None:
    """MariaDB stops reading a statement at a NUL outside a string; maskgate refuses them all."""
    with connect(served, VENDOR) as c:
        with pytest.raises(pymysql.err.MySQLError) as exc:
            c.query(sql)
        assert exc.value.args[0] == REFUSED


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1;;SELECT phone FROM customers LIMIT 2",
        "SELECT 1; /*! */ ; SELECT phone FROM customers LIMIT 2",
        "SELECT 1 /*!99999 ; SELECT 2 */ ; SELECT phone FROM customers LIMIT 2",
        "SELECT 1 /*!50000 ; SELECT 3 */ ; SELECT phone FROM customers LIMIT 2",
        "SELECT 1; SELECT phone FROM customers LIMIT 2; ;",
    ],
)
def test_empty_and_versioned_parts_keep_results_and_masks_in_step(served: dict[str, Any], sql: str) -> None:
    """A part the server skips or adds would shift which part's masks apply to which result."""
    with connect(served, VENDOR) as c:
        got = run_all(c, sql)
    assert not leaks_number(texts(got)), got


def test_optimizer_trace_holds_no_full_number(served: dict[str, Any]) -> None:
    """SET optimizer_trace is allowed; the trace of a const-table read of the branch holds the
    query and the plan, not the row's values."""
    with connect(served, VENDOR) as c:
        run_all(c, "SET optimizer_trace = 'enabled=on'")
        cid = direct(served, "SELECT id FROM customers WHERE branch_id = 12 LIMIT 1")[0][0]
        run_all(c, f"SELECT c.id, c.phone, c.id_card FROM customers c WHERE c.id = {cid}")
        trace = run_all(c, "SELECT TRACE FROM information_schema.OPTIMIZER_TRACE")
    assert not leaks_number(texts(trace))
