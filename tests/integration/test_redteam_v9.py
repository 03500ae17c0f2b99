"""Red team v9 (issue 15): the disclosure ledger, canaries and budgets against an insider.

The threat: a person whose role sees numbers in clear (the DBA; a call-centre agent with a
budget) takes customers' phone, ID-card and bank-card numbers in a form they can turn back into
the number, and `maskgate trace` does not name them, no canary trips, no budget counts.

What the previous passes left: a value whose lineage the proxy cannot vouch for (computed, free
text) is traced by what the detectors find in its text (`SCAN`). That holds while the digits
stay intact (an array, a bigint, JSON, a setting read back), but anything reversible that breaks
the digit run or its checksum (one appended digit, bytea, base64, a digit cipher, two columns)
hides it; and the channels that are not rows (errors, notices, NOTIFY payloads, ParameterStatus)
are not observed at all. Canaries carry their own markers; budgets are decided before earlier
statements of the same round trip are counted.

Each attack reads its own customer id, so attacks do not vouch for each other. A finding is an
xfail(strict) test that fails today; attacks that hold are plain tests.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proxy.cli import main
from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.pg.auth import make_verifier
from tests.conftest import CRM_DESK_PASSWORD, CRM_VENDOR_PASSWORD
from tests.integration.harness import connect_proxy, crm_database, serve_demo

SVC_PW = "svc-secret-red9"
DBA = ("dba_wang", "dba-pass")
KEY_LINES = "ledger_dir: ledger\nmasking_key: ledger-test-key-9\n"

# A call-centre role that sees numbers in clear, bounded by a budget: the person the budget is for.
CUSTOMERS_PER_DAY = 5
MAX_ROWS = 20
AGENTS = [f"red9_a{i}" for i in range(1, 10)]
AGENT_POLICY = f"""version: 1
customer_key: crm.customers.id
roles:
  red9_agent:
    statements: [select]
    tables: ["crm.customers"]
    max_rows: {MAX_ROWS}
    see: {{mobile: clear, id_card: clear, person_name: clear, bank_card: clear, email: clear,
           address: clear, free_text: clear}}
    budgets: {{rows_per_hour: 1000, distinct_customers_per_day: {CUSTOMERS_PER_DAY}}}
users:
""" + "".join(f'  {u}:\n    role: red9_agent\n    password: "{make_verifier(u + "-pw")}"\n' for u in AGENTS)


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with crm_database(tmp_path_factory, "pg-red9", SVC_PW, 80) as pg:
        yield pg


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(
        tmp_path_factory.mktemp("red9"), crm, SVC_PW, extra_policy=AGENT_POLICY, config_lines=KEY_LINES
    ) as s:
        yield s


@pytest.fixture(scope="module")
def numbers(crm: EmbeddedPostgres) -> dict[int, tuple[str, str, str | None]]:
    """(phone, id_card, bank_card) of every customer, read straight from the database."""
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as conn:
        rows = conn.execute("SELECT id, phone, id_card, bank_card FROM customers").fetchall()
    return {i: (p, c, b) for i, p, c, b in rows}


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_UPSTREAM", SVC_PW)
    monkeypatch.setenv("T_VENDOR", CRM_VENDOR_PASSWORD)
    monkeypatch.setenv("T_DESK", CRM_DESK_PASSWORD)


def settle(served: dict[str, Any]) -> None:
    app = served["app"]
    app.disclosures.drain()
    app.ledger.flush()
    deadline = time.monotonic() + 5
    while app.audit._queue and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)


def traced(served: dict[str, Any], capsys: pytest.CaptureFixture[str], number: str) -> list[str]:
    """Who `maskgate trace` says received `number`."""
    settle(served)
    capsys.readouterr()
    assert main(["trace", "--config", str(served["dir"] / "maskgate.yaml"), "--json", number]) == 0
    out = json.loads(capsys.readouterr().out)
    return [p["user"] for p in out["numbers"][0]["people"]]


class Received:
    """Everything a session was sent: rows, notices, notifications, the error, the settings."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.notices: list[str] = []
        self.notifications: list[str] = []
        self.error = ""
        self.settings: dict[str, str | None] = {}

    def text(self) -> str:
        return " ".join(
            [
                repr(self.rows),
                *self.notices,
                *self.notifications,
                self.error,
                *map(str, self.settings.values()),
            ]
        )


def dba_session(served: dict[str, Any], statements: list[str]) -> Received:
    """Run `statements` as the DBA in one autocommit session; keep all it was told."""
    got = Received()
    with connect_proxy(served, DBA, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: got.notices.append(d.message_primary or ""))
        conn.add_notify_handler(lambda n: got.notifications.append(n.payload))
        for sql in statements:
            try:
                cur = conn.execute(sql)
                if cur.description is not None:
                    got.rows += cur.fetchall()
            except psycopg.Error as e:
                got.error += f"{e} {e.diag.message_detail or ''} "
        conn.execute("SELECT 1")  # a round trip more: asynchronous messages have come in
        for name in ("application_name", "search_path"):
            got.settings[name] = conn.info.parameter_status(name)
    return got


def readable(received: Received, number: str, undo: Any) -> bool:
    """Whether the reader gets `number` back from what they received by `undo`."""
    return number in undo(received)


# ------------------------------------------------------------------ transformed values (DBA)


def _text(r: Received) -> str:
    return r.text()


def _first(r: Received) -> str:
    return str(r.rows[0][0])


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


# id: (SQL reading customer `id`'s phone, how the reader turns what they got back into it)
TRANSFORMS: dict[int, tuple[str, Any]] = {
    1: ("SELECT phone || '0' FROM customers WHERE id = {id}", lambda r: _first(r)[:-1]),
    2: ("SELECT '0' || phone FROM customers WHERE id = {id}", lambda r: _first(r)[1:]),
    3: (
        "SELECT substr(phone, 1, 6), substr(phone, 7) FROM customers WHERE id = {id}",
        lambda r: "".join(r.rows[0]),
    ),
    4: (
        "SELECT substr(phone, g, 1) FROM customers, generate_series(1, 11) g WHERE id = {id} ORDER BY g",
        lambda r: "".join(x for (x,) in r.rows),
    ),
    5: ("SELECT phone::bytea FROM customers WHERE id = {id}", lambda r: bytes(r.rows[0][0]).decode()),
    6: (
        "SELECT encode(phone::bytea, 'base64') FROM customers WHERE id = {id}",
        lambda r: __import__("base64").b64decode(_first(r)).decode(),
    ),
    7: ("SELECT lpad(reverse(phone), 70) FROM customers WHERE id = {id}", lambda r: _first(r).strip()[::-1]),
    8: (
        "SELECT translate(phone, '0123456789', '9876543210') FROM customers WHERE id = {id}",
        lambda r: "".join(str(9 - int(c)) for c in _first(r)),
    ),
    9: ("SELECT phone::bigint + 1 FROM customers WHERE id = {id}", lambda r: str(r.rows[0][0] - 1)),
    10: (
        "SELECT substr(phone, 1, 3) || '.' || substr(phone, 4, 4) || '.' || substr(phone, 8)"
        " FROM customers WHERE id = {id}",
        lambda r: _first(r).replace(".", ""),
    ),
    11: ("SELECT to_hex(phone::bigint) FROM customers WHERE id = {id}", lambda r: str(int(_first(r), 16))),
    12: (
        "SELECT string_to_array(phone, NULL)::text FROM customers WHERE id = {id}",
        lambda r: _digits(_first(r)),
    ),
    13: (
        "SELECT translate(phone, '0123456789', '〇一二三四五六七八九') FROM customers WHERE id = {id}",
        lambda r: "".join(str("〇一二三四五六七八九".index(c)) for c in _first(r)),
    ),
}


# Forms that still read as the number (by its digits, backwards, decoded): matched by value.
# The others no longer hold it (+1, a cipher, hex of the integer, halves in two columns, a digit
# a row): no value to match, so trace names the people who received mobiles computed that way.
MATCHED_BY_VALUE = {1, 2, 5, 6, 7, 10, 12, 13}


def computed_readers(served: dict[str, Any], capsys: Any, number: str) -> list[str]:
    """Who trace lists as having received the number's class in a computed form."""
    settle(served)
    capsys.readouterr()
    assert main(["trace", "--config", str(served["dir"] / "maskgate.yaml"), "--json", number]) == 0
    out = json.loads(capsys.readouterr().out)
    return [p["user"] for p in out["numbers"][0]["computed"]]


@pytest.mark.parametrize("cid", sorted(TRANSFORMS))
def test_dba_transformed_phone_is_traced(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any, cid: int
) -> None:
    sql, undo = TRANSFORMS[cid]
    got = dba_session(served, [sql.format(id=cid)])
    assert readable(got, numbers[cid][0], undo), got.text()  # the attack worked: the number is out
    if cid in MATCHED_BY_VALUE:
        assert traced(served, capsys, numbers[cid][0]) == ["dba_wang"]
    else:
        assert "dba_wang" in computed_readers(served, capsys, numbers[cid][0])


@pytest.mark.parametrize(
    ("cid", "col", "sql"),
    [
        (14, 1, "SELECT 'A' || id_card FROM customers WHERE id = {id}"),
        (15, 2, "SELECT bank_card || '0' FROM customers WHERE id = {id} AND bank_card IS NOT NULL"),
    ],
)
def test_dba_transformed_cards_are_traced(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any, cid: int, col: int, sql: str
) -> None:
    cid = next(i for i in range(cid, 80) if numbers[i][col])  # a customer who has one
    got = dba_session(served, [sql.format(id=cid)])
    assert numbers[cid][col] in got.text()
    if col == 1:  # 'A' || id_card: the ID card still reads as one
        assert traced(served, capsys, numbers[cid][col]) == ["dba_wang"]
    else:  # a card's digits plus one: no card by its check digit, a computed read
        assert "dba_wang" in computed_readers(served, capsys, numbers[cid][col])


# Forms that keep the digits together: the content scan finds them (holds).
KEPT = {
    16: "SELECT ARRAY[phone] FROM customers WHERE id = {id}",
    17: "SELECT phone::bigint FROM customers WHERE id = {id}",
    18: "SELECT jsonb_build_object('p', phone)::text FROM customers WHERE id = {id}",
    19: "SELECT upper(phone) || ' ' || name FROM customers WHERE id = {id}",
}


@pytest.mark.parametrize("cid", sorted(KEPT))
def test_dba_forms_keeping_the_digits_are_traced(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any, cid: int
) -> None:
    got = dba_session(served, [KEPT[cid].format(id=cid)])
    assert numbers[cid][0] in got.text()
    assert traced(served, capsys, numbers[cid][0]) == ["dba_wang"]


def test_dba_setting_read_back_is_traced(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any
) -> None:
    got = dba_session(
        served,
        [
            "SELECT length(set_config('red9.x', phone, false)) FROM customers WHERE id = 20",
            "SELECT current_setting('red9.x')",
        ],
    )
    assert numbers[20][0] in got.text()
    assert traced(served, capsys, numbers[20][0]) == ["dba_wang"]


# ------------------------------------------------------------------ channels that are not rows (DBA)

# id: statements whose answer carries customer `id`'s phone outside the rows
CHANNELS: dict[int, list[str]] = {
    # The server names the value it could not convert.
    21: ["SELECT (phone || 'x')::int FROM customers WHERE id = {id}"],
    # PL/pgSQL: an exception message, a notice.
    22: ["DO $$ BEGIN RAISE EXCEPTION 'n%', (SELECT phone FROM customers WHERE id = {id}); END $$"],
    23: ["DO $$ BEGIN RAISE NOTICE '%', (SELECT phone FROM customers WHERE id = {id}); END $$"],
    # LISTEN/NOTIFY: the payload comes back to the session itself; the row says nothing.
    24: ["LISTEN red9", "SELECT length(pg_notify('red9', phone)::text) FROM customers WHERE id = {id}"],
    # ParameterStatus: PostgreSQL 18 reports search_path; the row only says how long it is.
    25: ["SELECT length(set_config('search_path', phone, false)) FROM customers WHERE id = {id}"],
    26: [
        "DO $$ BEGIN PERFORM set_config('application_name',"
        " (SELECT phone FROM customers WHERE id = {id}), false); END $$"
    ],
}


@pytest.mark.parametrize("cid", sorted(CHANNELS))
def test_dba_number_outside_the_rows_is_traced(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any, cid: int
) -> None:
    got = dba_session(served, [s.format(id=cid) for s in CHANNELS[cid]])
    assert numbers[cid][0] in got.text().replace(repr(got.rows), "")  # not from the rows
    assert traced(served, capsys, numbers[cid][0]) == ["dba_wang"]


def test_dba_whole_table_in_one_error_is_traced(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any
) -> None:
    got = dba_session(
        served, ["SELECT string_agg(phone, ',' ORDER BY id)::int FROM customers WHERE id BETWEEN 27 AND 34"]
    )
    assert all(numbers[i][0] in got.error for i in range(27, 35))
    assert traced(served, capsys, numbers[27][0]) == ["dba_wang"]


def test_dba_fast_path_function_call_is_traced(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any
) -> None:
    """The `F` message calls a function by OID; a temporary SQL function returns the phone whole."""
    from proxy.pg import messages as m
    from tests.integration.test_redteam import rows
    from tests.integration.test_redteam_v3 import wire_as

    w = wire_as(served, DBA)
    try:
        w.query(
            "CREATE FUNCTION pg_temp.red9f() RETURNS text"
            " AS 'SELECT phone FROM customers WHERE id = 36' LANGUAGE sql"
        )
        oid = int(rows(w.query("SELECT 'pg_temp.red9f()'::regprocedure::oid"))[0][0] or b"0")
        w.s.sendall(m.FunctionCall(oid, (), (), 0).serialize())
        answer = b""
        while True:
            t, body = w._recv()
            answer += bytes(body) if t == b"V" else b""
            if t == b"Z":
                break
    finally:
        w.close()
    assert numbers[36][0].encode() in answer
    assert traced(served, capsys, numbers[36][0]) == ["dba_wang"]


@pytest.mark.parametrize(
    ("cid", "sql"),
    [
        (37, "SELECT ROW(phone::numeric, 1) FROM customers WHERE id = %s"),
        (38, "SELECT ARRAY[phone::bigint] FROM customers WHERE id = %s"),
    ],
)
def test_dba_binary_composites_are_traced(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any, cid: int, sql: str
) -> None:
    with connect_proxy(served, DBA) as conn, conn.cursor(binary=True) as cur:
        cur.execute(sql, (cid,))
        assert numbers[cid][0] in repr(cur.fetchall())  # psycopg decodes it: the number, whole
    assert traced(served, capsys, numbers[cid][0]) == ["dba_wang"]


def test_dba_returning_and_binary_numeric_are_traced(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any
) -> None:
    with connect_proxy(served, DBA, autocommit=True) as conn:
        assert conn.execute("UPDATE customers SET name = name WHERE id = 39 RETURNING phone").fetchall() == [
            (numbers[39][0],)
        ]
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT phone::numeric FROM customers WHERE id = %s", (40,))
            assert str(cur.fetchall()[0][0]) == numbers[40][0]
    assert traced(served, capsys, numbers[39][0]) == ["dba_wang"]
    assert traced(served, capsys, numbers[40][0]) == ["dba_wang"]


# ------------------------------------------------------------------ what a complaints team pastes

M0 = "13812345678"


@pytest.mark.parametrize(
    "written",
    [
        "013812345678",  # a mobile from another city as a landline's caller ID shows it (trunk 0)
        "+86 (0) 138 1234 5678",
        "tel:+86-138-1234-5678",  # a copied link
        "138.1234.5678",
        "\u202a+86 138 1234 5678\u202c",  # bidi marks a phone UI puts round a number it copies
        "+86 138 1234 5678\u200b",
    ],
)
def test_trace_folds_pasted_forms(written: str) -> None:
    from proxy.services.disclosure import value_key

    assert value_key(b"k", "mobile", written) == value_key(b"k", "mobile", M0)


def test_trace_folds_common_forms() -> None:
    from proxy.services.disclosure import value_key

    for written in ("+86 138-1234-5678", "0086 13812345678", "１３８１２３４５６７８", "138 1234 5678"):
        assert value_key(b"k", "mobile", written) == value_key(b"k", "mobile", M0), written


# ------------------------------------------------------------------ canaries


@pytest.fixture(scope="module")
def canary(served: dict[str, Any], crm: EmbeddedPostgres) -> dict[str, str]:
    """One canary customer planted through the CLI and armed: its printed numbers and its id."""
    conf = Path(served["dir"]) / "canary.yaml"
    conf.write_text(f"policy: {served['policy']}\nmasking_key: ledger-test-key-9\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        args = ["canary", "plant", "--schema", crm.dsn("maskgate_svc", SVC_PW, "crm"), "--table"]
        args += ["crm.customers", "--count", "1", "--policy-dir", str(served["policy"].parent)]
        assert main([*args, "--config", str(conf)]) == 0
    served["app"].reloader.reload_now(force=True)
    planted = dict(kv.split("=", 1) for kv in out.getvalue().split("\n")[0].split("  "))
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as conn:
        (row,) = conn.execute("SELECT id FROM customers WHERE phone = %s", (planted["phone"],)).fetchall()
    return {**planted, "id": str(row[0])}


def canary_reads(served: dict[str, Any]) -> float:
    settle(served)
    value = served["app"].metrics.registry.get_sample_value("maskgate_canary_reads_total", {"role": "dba"})
    return value or 0.0


def test_canary_in_an_array_is_flagged(served: dict[str, Any], canary: dict[str, str]) -> None:
    before = canary_reads(served)
    got = dba_session(served, [f"SELECT ARRAY[phone, id_card] FROM customers WHERE id = {canary['id']}"])
    assert canary["phone"] in got.text()
    assert canary_reads(served) > before


def test_canary_read_masked_is_flagged(served: dict[str, Any], canary: dict[str, str]) -> None:
    """The service desk sees it masked: still a canary read."""
    settle(served)
    reg = served["app"].metrics.registry
    before = reg.get_sample_value("maskgate_canary_reads_total", {"role": "service_desk"}) or 0.0
    with connect_proxy(served, ("desk_li", "desk-pass")) as conn:
        (row,) = conn.execute(f"SELECT phone FROM customers WHERE id = {canary['id']}").fetchall()
    assert "*" in row[0]
    settle(served)
    assert (reg.get_sample_value("maskgate_canary_reads_total", {"role": "service_desk"}) or 0.0) > before


def test_dump_skipping_marked_rows_still_trips_a_canary(
    served: dict[str, Any], canary: dict[str, str], numbers: dict[int, Any]
) -> None:
    before = canary_reads(served)
    got = dba_session(
        served,
        [
            "SELECT id, name, phone, id_card, bank_card FROM customers"
            " WHERE name <> '金丝雀测试' AND email NOT LIKE 'canary-%'"
        ],
    )
    real = {n[0] for n in numbers.values()} - {canary["phone"]}
    assert {r[2] for r in got.rows} >= real  # the whole customer base
    assert canary_reads(served) > before


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT phone::bytea, id_card::bytea FROM customers WHERE id = {id}",
        "SELECT (phone || 'x')::int FROM customers WHERE id = {id}",
    ],
)
def test_canary_read_in_disguise_is_flagged(served: dict[str, Any], canary: dict[str, str], sql: str) -> None:
    before = canary_reads(served)
    got = dba_session(served, [sql.format(id=canary["id"])])
    assert canary["phone"] in got.text().replace("b'", "")
    assert canary_reads(served) > before


# ------------------------------------------------------------------ budgets of a clear role


def as_agent(served: dict[str, Any], user: str) -> psycopg.Connection[Any]:
    return connect_proxy(served, (user, user + "-pw"), autocommit=True)


def refused_soon(served: dict[str, Any], user: str) -> bool:
    """Whether the person is refused (row_budget) within 3 s: the counts are kept off the loop."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with as_agent(served, user) as conn:
            try:
                conn.execute("SELECT id FROM customers WHERE id = 1").fetchall()
            except psycopg.errors.InsufficientPrivilege as e:
                assert "customers per day" in str(e)
                return True
        time.sleep(0.2)
    return False


def test_agent_budget_counts_numbers_without_the_key(served: dict[str, Any]) -> None:
    with as_agent(served, AGENTS[0]) as conn:
        rows = conn.execute(
            "SELECT name || phone FROM customers WHERE id > 40 ORDER BY id LIMIT 20"
        ).fetchall()
    assert len(rows) == MAX_ROWS
    assert refused_soon(served, AGENTS[0])


def test_agent_budget_counts_numbers_read_as_bytea(served: dict[str, Any], numbers: dict[int, Any]) -> None:
    with as_agent(served, AGENTS[1]) as conn:
        rows = conn.execute(
            "SELECT phone::bytea, id_card::bytea FROM customers WHERE id > 40 ORDER BY id LIMIT 20"
        ).fetchall()
    assert {bytes(p).decode() for p, _ in rows} <= {n[0] for n in numbers.values()}
    assert len(rows) == MAX_ROWS
    assert refused_soon(served, AGENTS[1])


def test_agent_errors_withhold_numbers(served: dict[str, Any], numbers: dict[int, Any]) -> None:
    """A budgeted role is not unrestricted: the database's message naming the value is withheld,
    so errors are no way around its budget."""
    with as_agent(served, AGENTS[2]) as conn:
        for sql in (
            "SELECT (phone || 'x')::int FROM customers WHERE id = 41",
            "SELECT string_agg(phone, ',')::int FROM customers WHERE id = 42",
        ):
            try:
                conn.execute(sql).fetchall()
            except psycopg.Error as e:
                text = f"{e} {e.diag.message_detail} {e.diag.context}"
                assert numbers[41][0] not in text and numbers[42][0] not in text, text
            else:
                pytest.fail("the statement ran")


def _pipelined(conn: psycopg.Connection[Any], ids: range) -> int:
    rows = 0
    curs = []  # the refusal may come while the pipeline is still being sent
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege), conn.pipeline():
        for i in ids:
            curs.append(conn.execute("SELECT id, phone FROM customers WHERE id = %s", (i,)))
    for cur in curs:
        with contextlib.suppress(psycopg.Error):
            rows += len(cur.fetchall())
    return rows


def _one_query_string(conn: psycopg.Connection[Any], ids: range) -> int:
    rows = 0
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege), psycopg.ClientCursor(conn) as cur:
        cur.execute("; ".join(f"SELECT id, phone FROM customers WHERE id = {i}" for i in ids))
        while True:
            rows += len(cur.fetchall())
            if not cur.nextset():
                break
    return rows


@pytest.mark.parametrize(("user", "how"), [(AGENTS[3], _pipelined), (AGENTS[4], _one_query_string)])
def test_agent_budget_bounds_statements_sent_together(served: dict[str, Any], user: str, how: Any) -> None:
    with as_agent(served, user) as conn:
        rows = how(conn, range(41, 81))  # 40 customers, one statement each
    # The documented overshoot: the statement that reaches the budget runs in full.
    assert rows <= CUSTOMERS_PER_DAY - 1 + MAX_ROWS, rows


# ------------------------------------------------------------------ what the logs hold


@pytest.mark.xfail(
    strict=True, reason="a number the DBA searched for, split into two literals, is in the audit log"
)
def test_audit_holds_no_split_literal(served: dict[str, Any], numbers: dict[int, Any]) -> None:
    number = numbers[35][0]
    with connect_proxy(served, DBA) as conn:
        sql = f"SELECT id FROM customers WHERE phone = '{number[:4]}' || '{number[4:]}'"
        assert conn.execute(sql).fetchall() == [(35,)]
    settle(served)
    recs = [json.loads(line) for line in (served["dir"] / "audit.jsonl").read_text().splitlines()]
    shown = [
        r["sql"] for r in recs if r.get("sql", "").startswith("SELECT id FROM customers WHERE phone = '")
    ]
    assert shown
    assert all(number not in _digits(sql) for sql in shown), shown


def test_audit_ledger_and_metrics_hold_no_number(served: dict[str, Any], numbers: dict[int, Any]) -> None:
    """After every attack above (errors echoing whole tables, notices, NOTIFY, settings): no
    number, forwards or reversed, in the audit log, the ledger files or a metric."""
    from prometheus_client import generate_latest

    settle(served)
    audit = (served["dir"] / "audit.jsonl").read_text()
    ledger = b"".join(p.read_bytes() for p in (served["dir"] / "ledger").glob("*")).decode("latin-1")
    metrics = generate_latest(served["app"].metrics.registry).decode()
    for cid, (phone, id_card, card) in numbers.items():
        for n in (phone, phone[::-1], id_card, card):
            if n:
                assert n not in audit and n not in ledger and n not in metrics, cid


# ------------------------------------------------------------------ MySQL


@pytest.fixture(scope="module")
def my_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from tests.conftest import start_crm_mysql

    db = start_crm_mysql(tmp_path_factory.mktemp("red9-mysql"), SVC_PW, 10)
    try:
        with serve_demo(
            tmp_path_factory.mktemp("red9-my"), None, SVC_PW, mysql=db, config_lines=KEY_LINES
        ) as s:
            conn = db.connect("crm", autocommit=True)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT id, phone FROM customers")
                    s["phones"] = {int(i): p for i, p in cur.fetchall()}
            finally:
                conn.close()
            yield s
    finally:
        db.destroy()


def my_dba(served: dict[str, Any], sql: str) -> str:
    """Everything the DBA is told for `sql` (statements separated by ';') over MySQL: every
    result set's rows, then the error, as text."""
    from tests.integration.test_redteam_mysql_v2 import connect

    conn = connect(served, DBA)
    out: list[str] = []
    try:
        with conn.cursor() as cur:
            try:
                cur.execute(sql)
                out.append(repr(cur.fetchall()))
                while cur.nextset():
                    out.append(repr(cur.fetchall()))
            except Exception as e:
                out.append(str(e))
    finally:
        conn.close()
    return " ".join(out)


@pytest.mark.parametrize(
    ("cid", "sql"),
    [
        (1, "SELECT CONCAT_WS(' ', name, phone) FROM customers WHERE id = 1"),
        # A warning names the value it truncated: SHOW WARNINGS is a result too.
        (6, "SELECT CAST(CONCAT(phone, 'x') AS SIGNED) FROM customers WHERE id = 6; SHOW WARNINGS"),
    ],
)
def test_mysql_kept_digits_are_traced(my_served: dict[str, Any], capsys: Any, cid: int, sql: str) -> None:
    number = my_served["phones"][cid]
    assert number in my_dba(my_served, sql)
    assert traced(my_served, capsys, number) == ["dba_wang"]


@pytest.mark.parametrize(
    ("cid", "sql", "undo"),
    [
        (
            2,
            "SELECT HEX(phone) FROM customers WHERE id = 2",
            lambda t: bytes.fromhex(t.split("'")[1]).decode(),
        ),
        (
            3,
            "SELECT phone INTO @red9 FROM customers WHERE id = 3;"
            " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = @red9",
            lambda t: t,
        ),
        (
            5,
            "BEGIN NOT ATOMIC DECLARE v VARCHAR(40); SELECT phone INTO v FROM customers WHERE id = 5;"
            " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = v; END",
            lambda t: t,
        ),
    ],
)
def test_mysql_disguised_phone_is_traced(
    my_served: dict[str, Any], capsys: Any, cid: int, sql: str, undo: Any
) -> None:
    number = my_served["phones"][cid]
    assert number in undo(my_dba(my_served, sql))
    assert traced(my_served, capsys, number) == ["dba_wang"]
