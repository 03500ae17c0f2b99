"""Red team v10 (issue 15): the disclosure ledger, canaries and budgets after the v9 fixes.

The threat is unchanged: an insider whose role sees numbers in clear (the DBA; a call-centre
agent with a budget) takes customers' numbers in a form they can turn back into the number, and
`maskgate trace` names them neither among its matches nor among its "computed" reads, no canary
trips, or no budget counts them.

What this pass found:
- trace's "computed" list comes from lineage (the audit's `computed` holds a class only when a
  column is traced to a classified one); the content scan reads only forms that still look like a
  number. A reversible form (hex of the integer, a digit cipher) of a value whose lineage the
  engine loses (a temp table or view, a pg_temp function, to_jsonb, a whole-row text, a table
  function; MySQL user variables and PREPARE FROM) falls between the two: nobody is named.
- trace reads rotated audit files as text: the shipped logrotate config gzips them, so computed
  reads older than two days are gone from its answer.
- budgets count customers by the customer key alone when a row holds one: a key computed to one
  value (`id * 0`) or a join carrying one customer's key beside other customers' phones counts
  one customer; and a statement that ends in an error counts nothing, whatever rows it sent.
- canaries trip on values only: a whole-table dump in hex trips nothing; canary numbers come from
  fixed default ranges (1700000…, ID cards born 1800-01-01, ids from 900000) a dump can skip.
- the audit keeps a number written backwards in a literal.
- trace's "computed" list also names, for every mobile, whoever read length(phone) or
  phone IS NULL in clear: reads that give no number.
- HTTP: a binary download (a route marked `binary`) is not observed at all.
- catalog reads have no row limit: pg_stats gives a budgeted role a column's histogram (up to
  100 customers' phones) in one row.

Each attack reads its own customer and, where trace's class-wide "computed" list is asked, runs
as its own person (a user of the demo's `dba` role), so that no attack vouches for another. A
finding is an xfail(strict) test that fails today; attacks that hold are plain tests.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proxy.cli import main
from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.mysql.auth import native_hash
from proxy.pg.auth import make_verifier
from tests.integration.harness import connect_proxy, crm_database, serve_demo
from tests.integration.test_redteam_v9 import Received, env, refused_soon, settle  # noqa: F401

SVC_PW = "svc-secret-red10"
KEY = "ledger-test-key-10"
KEY_LINES = f"ledger_dir: ledger\nmasking_key: {KEY}\n"

# People whose role (the demo's `dba`) sees numbers in clear: one per attack, so that one
# attack's computed reads do not name the person of another in trace's "computed" list.
DBAS = [f"red10_d{i}" for i in range(1, 31)]
CUSTOMERS_PER_DAY = 5
MAX_ROWS = 20
AGENTS = [f"red10_a{i}" for i in range(1, 10)]
POLICY = (
    f"""version: 1
customer_key: crm.customers.id
roles:
  red10_agent:
    statements: [select]
    tables: ["crm.customers"]
    max_rows: {MAX_ROWS}
    see: {{mobile: clear, id_card: clear, person_name: clear, bank_card: clear, email: clear,
           address: clear, free_text: clear}}
    budgets: {{rows_per_hour: 1000, distinct_customers_per_day: {CUSTOMERS_PER_DAY}}}
users:
"""
    + "".join(f'  {u}:\n    role: red10_agent\n    password: "{make_verifier(u + "-pw")}"\n' for u in AGENTS)
    + "".join(
        f'  {u}:\n    role: dba\n    password: "{make_verifier(u + "-pw")}"\n'
        f'    mysql_password: "{native_hash(u + "-pw")}"\n'
        for u in DBAS
    )
)


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with crm_database(tmp_path_factory, "pg-red10", SVC_PW, 80) as pg:
        yield pg


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(
        tmp_path_factory.mktemp("red10"), crm, SVC_PW, extra_policy=POLICY, config_lines=KEY_LINES
    ) as s:
        yield s


@pytest.fixture(scope="module")
def numbers(crm: EmbeddedPostgres) -> dict[int, tuple[str, str, str | None]]:
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as conn:
        rows = conn.execute("SELECT id, phone, id_card, bank_card FROM customers").fetchall()
    return {i: (p, c, b) for i, p, c, b in rows}


def trace_entry(served: dict[str, Any], capsys: Any, number: str) -> dict[str, Any]:
    settle(served)
    capsys.readouterr()
    assert main(["trace", "--config", str(served["dir"] / "maskgate.yaml"), "--json", number]) == 0
    return json.loads(capsys.readouterr().out)["numbers"][0]  # type: ignore[no-any-return]


def named(served: dict[str, Any], capsys: Any, number: str) -> set[str]:
    """Everyone trace names for `number`: matched by value, or listed among computed reads."""
    entry = trace_entry(served, capsys, number)
    return {p["user"] for p in entry["people"]} | {p["user"] for p in entry["computed"]}


def session(served: dict[str, Any], user: str, statements: list[str]) -> Received:
    got = Received()
    with connect_proxy(served, (user, user + "-pw"), autocommit=True) as conn:
        conn.add_notice_handler(lambda d: got.notices.append(d.message_primary or ""))
        for sql in statements:
            try:
                cur = conn.execute(sql)
                if cur.description is not None:
                    got.rows += cur.fetchall()
            except psycopg.Error as e:
                got.error += f"{e} "
    return got


def _first(r: Received) -> str:
    return str(r.rows[-1][0])


def _unhex(r: Received) -> str:
    return str(int(_first(r), 16))


def _uncipher(r: Received) -> str:
    return "".join(str(9 - int(c)) for c in _first(r))


# id: (statements reading customer id's phone, how the reader gets the number back). The
# person is DBAS[id].
FORMS: dict[int, tuple[list[str], Any]] = {
    1: (
        [
            "CREATE TEMP TABLE red10_t1 AS SELECT phone FROM customers WHERE id = {id}",
            "SELECT translate(phone, '0123456789', '9876543210') FROM red10_t1",
        ],
        _uncipher,
    ),
    2: (
        [
            "SELECT length(set_config('red10.x', phone, false)) FROM customers WHERE id = {id}",
            "SELECT to_hex(current_setting('red10.x')::bigint)",
        ],
        _unhex,
    ),
    3: (
        [
            "CREATE FUNCTION pg_temp.red10_f() RETURNS text AS 'SELECT phone FROM customers WHERE id = {id}'"
            " LANGUAGE sql",
            "SELECT to_hex(pg_temp.red10_f()::bigint)",
        ],
        _unhex,
    ),
    4: (["SELECT to_hex((to_jsonb(c) ->> 'phone')::bigint) FROM customers c WHERE id = {id}"], _unhex),
    5: (["SELECT to_hex(x::bigint) FROM customers, unnest(ARRAY[phone]) x WHERE id = {id}"], _unhex),
    6: (
        [
            "SELECT to_hex(j.v::bigint) FROM customers c, jsonb_each_text(to_jsonb(c)) j(k, v)"
            " WHERE c.id = {id} AND j.k = 'phone'"
        ],
        _unhex,
    ),
    7: (["SELECT to_hex((SELECT phone FROM customers WHERE id = {id})::bigint)"], _unhex),
    8: (
        [
            "CREATE TEMP VIEW red10_v AS SELECT id, phone AS p FROM customers",
            "SELECT to_hex(p::bigint) FROM red10_v WHERE id = {id}",
        ],
        _unhex,
    ),
    9: (["SELECT to_hex(c.phone::bigint) FROM customers c WHERE id = {id}"], _unhex),
    10: (
        [
            "SELECT to_hex(t.p::bigint) FROM (VALUES (1)) v(x),"
            " LATERAL (SELECT phone AS p FROM customers WHERE id = {id}) t"
        ],
        _unhex,
    ),
    11: (
        [
            "SELECT to_hex(x::bigint) FROM ROWS FROM (regexp_split_to_table("
            "(SELECT phone FROM customers WHERE id = {id}), ',')) x"
        ],
        _unhex,
    ),
    12: (
        [
            "SELECT to_hex(split_part(row(c.*)::text, ',', 3)::bigint) FROM customers c WHERE id = {id}",
        ],
        _unhex,
    ),
    13: (
        [
            "SELECT lpad(regexp_replace(phone, '(.)', '\\1z', 'g'), 80, 'q') FROM customers WHERE id = {id}",
        ],
        lambda r: "".join(c for c in _first(r) if c.isdigit()),
    ),
}


# Lineage lost on the way (temp table or view, pg_temp function, to_jsonb, jsonb_each_text,
# regexp_split_to_table, row(c.*)::text): the value is a SCAN column, its content reads as no
# number, and no class is `computed`.
# Each is a computed read: a temp table or view's creation, a function's creation (its body is
# not analysed), a whole-row value, a table function, a statement only an unrestricted role may
# send unanalysed.
LINEAGE_LOST: set[int] = set()


@pytest.mark.parametrize(
    "cid",
    [
        pytest.param(
            c,
            marks=pytest.mark.xfail(
                strict=True,
                reason="a reversible form (digit cipher, hex of the integer) of a value whose lineage "
                "the engine loses is neither matched by the content scan nor listed as a computed read: "
                "trace names nobody",
            ),
        )
        if c in LINEAGE_LOST
        else c
        for c in sorted(FORMS)
    ],
)
def test_dba_reversible_form_is_named_by_trace(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any, cid: int
) -> None:
    user = DBAS[cid]
    stmts, undo = FORMS[cid]
    got = session(served, user, [s.format(id=cid) for s in stmts])
    assert undo(got) == numbers[cid][0], got.text()
    assert user in named(served, capsys, numbers[cid][0])


# ------------------------------------------------------------------ budgets


def test_agent_budget_counts_phones_behind_one_key(served: dict[str, Any], numbers: dict[int, Any]) -> None:
    user = AGENTS[0]
    with connect_proxy(served, (user, user + "-pw"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.id, d.phone FROM customers c CROSS JOIN customers d"
            f" WHERE c.id = 1 AND d.id > 40 ORDER BY d.id LIMIT {MAX_ROWS}"
        ).fetchall()
    # A row of two reads of the table counts as two records: half the rows, each a customer.
    assert len({p for _i, p in rows}) == MAX_ROWS // 2 > CUSTOMERS_PER_DAY
    assert refused_soon(served, user)


def test_agent_budget_counts_phones_behind_a_computed_key(served: dict[str, Any]) -> None:
    user = AGENTS[1]
    with connect_proxy(served, (user, user + "-pw"), autocommit=True) as conn:
        rows = conn.execute(f"SELECT id * 0, phone FROM customers WHERE id > 40 LIMIT {MAX_ROWS}").fetchall()
    assert len({p for _i, p in rows}) == MAX_ROWS
    assert refused_soon(served, user)


def wire_rows(served: dict[str, Any], user: str, sql: str) -> tuple[list[list[bytes | None]], str]:
    """The rows a plain wire client receives for `sql`, and the error after them: drivers drop
    the rows of a statement that failed, the bytes still reached the client."""
    from tests.integration.test_redteam import errors_of, rows
    from tests.integration.test_redteam_v3 import wire_as

    w = wire_as(served, (user, user + "-pw"))
    try:
        out = w.query(sql)
    finally:
        w.close()
    return rows(out), repr(errors_of(out))


def test_agent_budget_counts_rows_sent_before_an_error(
    served: dict[str, Any], numbers: dict[int, Any]
) -> None:
    user = AGENTS[2]
    got, err = wire_rows(
        served, user, "SELECT phone, 1 / (id - 61) FROM customers WHERE id BETWEEN 42 AND 61"
    )
    assert "22012" in err  # division by zero, after the rows
    assert {bytes(r[0] or b"").decode() for r in got} == {numbers[i][0] for i in range(42, 61)}
    assert refused_soon(served, user)


def test_dba_rows_sent_before_an_error_are_traced(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any
) -> None:
    user = DBAS[15]
    got, err = wire_rows(
        served, user, "SELECT phone, 1 / (id - 16) FROM customers WHERE id BETWEEN 14 AND 20"
    )
    assert "22012" in err
    assert bytes(got[0][0] or b"").decode() == numbers[14][0]
    assert user in named(served, capsys, numbers[14][0])


HISTOGRAM = "SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'customers' AND attname = 'phone'"


@pytest.fixture(scope="module")
def analyzed(crm: EmbeddedPostgres) -> None:
    """Statistics as autovacuum leaves them on any table that has been written to."""
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm"), autocommit=True) as conn:
        conn.execute("ANALYZE customers")


def test_agent_reads_no_more_than_max_rows_from_statistics(
    served: dict[str, Any], numbers: dict[int, Any], analyzed: None
) -> None:
    user = AGENTS[4]
    with connect_proxy(served, (user, user + "-pw"), autocommit=True) as conn:
        try:
            got = str(conn.execute(HISTOGRAM).fetchall())
        except psycopg.errors.InsufficientPrivilege as e:
            assert "column statistics" in str(e)  # refused: samples of the data past any limit
            got = ""
    # The documented overshoot: the statement that reaches the budget runs, up to max_rows.
    assert sum(n[0] in got for n in numbers.values()) <= CUSTOMERS_PER_DAY - 1 + MAX_ROWS


def test_dba_reading_statistics_is_traced(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any, analyzed: None
) -> None:
    user = DBAS[28]
    got = str(session(served, user, [HISTOGRAM]).rows)
    number = next(n[0] for i, n in sorted(numbers.items()) if n[0] in got and i > 74)
    assert user in named(served, capsys, number)


# ------------------------------------------------------------------ canaries


@pytest.fixture(scope="module")
def canary(served: dict[str, Any], crm: EmbeddedPostgres) -> dict[str, str]:
    """One canary customer planted through the CLI and armed (as v9 does)."""
    conf = Path(served["dir"]) / "canary.yaml"
    conf.write_text(f"policy: {served['policy']}\nmasking_key: {KEY}\n")
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


def canary_reads(served: dict[str, Any], role: str = "dba") -> float:
    settle(served)
    value = served["app"].metrics.registry.get_sample_value("maskgate_canary_reads_total", {"role": role})
    return value or 0.0


@pytest.mark.xfail(
    strict=True,
    reason="canaries trip on values that read as their numbers (or the row's key): a whole-table "
    "dump of to_hex(phone::bigint) without the key carries the canary's number and trips nothing",
)
def test_canary_in_a_hex_dump_is_flagged(served: dict[str, Any], canary: dict[str, str]) -> None:
    before = canary_reads(served)
    got = session(served, DBAS[16], ["SELECT to_hex(phone::bigint) FROM customers"])
    assert str(int(canary["phone"])) in {str(int(h, 16)) for (h,) in got.rows}
    assert canary_reads(served) > before


@pytest.mark.xfail(
    strict=True,
    reason="canaries are recognisable by their default numbers, not only their name and e-mail: "
    "mobiles 1700000…, ID cards born 1800-01-01, ids from 900000; a dump skipping those takes every "
    "real customer and trips nothing",
)
def test_dump_skipping_canary_number_ranges_trips_a_canary(
    served: dict[str, Any], canary: dict[str, str], numbers: dict[int, Any]
) -> None:
    before = canary_reads(served)
    got = session(
        served,
        DBAS[17],
        [
            "SELECT id, name, email, phone, id_card FROM customers"
            " WHERE id < 900000 AND phone NOT LIKE '1700000%' AND substr(id_card, 7, 4) > '1900'"
        ],
    )
    assert {r[3] for r in got.rows} == {n[0] for n in numbers.values()} - {canary["phone"]}
    assert canary_reads(served) > before


# ------------------------------------------------------------------ what the audit log holds


def test_audit_holds_no_reversed_literal(served: dict[str, Any], numbers: dict[int, Any]) -> None:
    number = numbers[70][0]
    sql = f"SELECT id FROM customers WHERE phone = reverse('{number[::-1]}')"
    assert session(served, DBAS[18], [sql]).rows == [(70,)]
    settle(served)
    audit = (served["dir"] / "audit.jsonl").read_text()
    assert number[::-1] not in audit


# ------------------------------------------------------------------ MySQL


@pytest.fixture(scope="module")
def my_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from tests.conftest import start_crm_mysql

    db = start_crm_mysql(tmp_path_factory.mktemp("red10-mysql"), SVC_PW, 12)
    try:
        with serve_demo(
            tmp_path_factory.mktemp("red10-my"),
            None,
            SVC_PW,
            mysql=db,
            extra_policy=POLICY,
            config_lines=KEY_LINES,
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


def my_rows(served: dict[str, Any], user: str, statements: list[str]) -> list[tuple[Any, ...]]:
    """The last statement's rows, as `user` over MySQL, each statement in turn in one session."""
    from tests.integration.test_redteam_mysql_v2 import connect

    conn = connect(served, (user, user + "-pw"))
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


# id: statements whose last one returns customer id's phone in hex; the person is DBAS[id].
MY_FORMS: dict[int, list[str]] = {
    1: ["SELECT CONV(phone, 10, 16) FROM customers WHERE id = {id}"],
    2: [
        "SET @red10s = CONCAT('SELECT CONV(phone, 10, 16) FROM customers WHERE id = ', {id})",
        "PREPARE red10_s FROM @red10s",
        "EXECUTE red10_s",
    ],
    5: [
        "SELECT CONV(p, 10, 16) FROM (SELECT phone AS p, id FROM customers) t WHERE id = {id}",
    ],
    3: ["SELECT phone INTO @red10 FROM customers WHERE id = {id}", "SELECT CONV(@red10, 10, 16)"],
    4: [
        "SELECT CONV(JSON_UNQUOTE(JSON_EXTRACT(JSON_OBJECT('p', phone), '$.p')), 10, 16)"
        " FROM customers WHERE id = {id}"
    ],
}


MY_LINEAGE_LOST: set[int] = set()  # PREPARE FROM @v and SELECT … INTO @v are computed reads


@pytest.mark.parametrize(
    "cid",
    [
        pytest.param(
            c,
            marks=pytest.mark.xfail(
                strict=True,
                reason="MySQL: hex of a phone taken through a user variable or a statement prepared "
                "from a variable has no lineage and reads as no number: trace names nobody",
            ),
        )
        if c in MY_LINEAGE_LOST
        else c
        for c in sorted(MY_FORMS)
    ],
)
def test_mysql_reversible_form_is_named_by_trace(my_served: dict[str, Any], capsys: Any, cid: int) -> None:
    user = DBAS[cid]
    ((h,),) = my_rows(my_served, user, [s.format(id=cid) for s in MY_FORMS[cid]])
    number = my_served["phones"][cid]
    assert str(int(h, 16)) == number
    assert user in named(my_served, capsys, number)


def _hex_via(served: dict[str, Any], user: str, how: str, cid: int) -> str:
    sql = "SELECT to_hex(phone::bigint) FROM customers WHERE id = %s"
    with connect_proxy(served, (user, user + "-pw"), autocommit=True) as conn:
        if how == "prepared":
            for _ in range(3):
                (h,) = conn.execute(sql, (cid,), prepare=True).fetchone()  # type: ignore[misc]
        elif how == "cursor":
            with conn.transaction(), conn.cursor(name="red10c") as cur:
                cur.execute(sql, (cid,))
                (h,) = cur.fetchone()  # type: ignore[misc]
        elif how == "copy":
            with conn.cursor() as cur, cur.copy(f"COPY ({sql % cid}) TO STDOUT") as cp:
                h = b"".join(bytes(b) for b in cp).decode().strip()
        elif how == "declare":
            with conn.transaction():
                conn.execute(f"DECLARE red10d CURSOR FOR {sql % cid}")
                (h,) = conn.execute("FETCH 1 FROM red10d").fetchone()  # type: ignore[misc]
    return str(int(h, 16))


@pytest.mark.parametrize(("n", "how"), [(20, "prepared"), (21, "cursor"), (22, "copy"), (23, "declare")])
def test_dba_hex_by_other_doors_is_named_by_trace(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any, n: int, how: str
) -> None:
    user = DBAS[n]
    assert _hex_via(served, user, how, n) == numbers[n][0]
    assert user in named(served, capsys, numbers[n][0])


def test_trace_reads_audit_files_rotated_as_shipped(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any, tmp_path: Path
) -> None:
    """deploy/logrotate/maskgate rotates daily with compress + delaycompress: from the third day
    on, the audit records of a read are in audit.jsonl.N.gz."""
    import gzip

    user = DBAS[14]
    got = session(served, user, ["SELECT to_hex(phone::bigint) FROM customers WHERE id = 25"])
    assert str(int(got.rows[0][0], 16)) == numbers[25][0]
    assert user in named(served, capsys, numbers[25][0])  # before the rotation
    # The directory as logrotate leaves it two days later (a copy: the served one keeps running).
    (tmp_path / "audit.jsonl").write_text("")
    (tmp_path / "audit.jsonl.1").write_text("")
    (tmp_path / "audit.jsonl.2.gz").write_bytes(gzip.compress((served["dir"] / "audit.jsonl").read_bytes()))
    (tmp_path / "maskgate.yaml").write_text(
        f"policy: {served['policy']}\naudit_log: audit.jsonl\nledger_dir: {served['dir'] / 'ledger'}\n"
        f"masking_key: {KEY}\n"
    )
    capsys.readouterr()
    assert main(["trace", "--config", str(tmp_path / "maskgate.yaml"), "--json", numbers[25][0]]) == 0
    entry = json.loads(capsys.readouterr().out)["numbers"][0]
    assert user in {p["user"] for p in entry["computed"]}


def test_audit_keeps_no_error_text(served: dict[str, Any], numbers: dict[int, Any]) -> None:
    """The database's error names the value backwards; the audit keeps its SQLSTATE only."""
    number = numbers[71][0]
    got = session(served, DBAS[19], ["SELECT (reverse(phone) || 'x')::int FROM customers WHERE id = 71"])
    assert number[::-1] in got.error
    settle(served)
    assert number[::-1] not in (served["dir"] / "audit.jsonl").read_text()


# Reads that give the reader no number: not reads of one in a computed form.
NO_NUMBER = {
    24: "SELECT length(phone) FROM customers WHERE id = 72",
    25: "SELECT count(DISTINCT phone) FROM customers",
    26: "SELECT phone IS NULL FROM customers WHERE id = 72",
}


@pytest.mark.parametrize(
    "n",
    [
        pytest.param(
            n,
            marks=pytest.mark.xfail(
                strict=True,
                reason="a clear read of a value computed from a mobile is a computed read even when "
                "it gives no number (length, IS NULL): trace lists its reader for every mobile",
            ),
        )
        if n != 25  # an aggregate's count: not a computed read (holds)
        else n
        for n in sorted(NO_NUMBER)
    ],
)
def test_trace_names_no_one_for_reads_that_give_no_number(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any, n: int
) -> None:
    session(served, DBAS[n], [NO_NUMBER[n]])
    assert DBAS[n] not in named(served, capsys, numbers[73][0])


def test_trace_names_the_reader_of_a_hash(
    served: dict[str, Any], numbers: dict[int, Any], capsys: Any
) -> None:
    """md5 of an 11-digit mobile is undone by trying the numbers: a computed read."""
    user = DBAS[27]
    session(served, user, ["SELECT md5(phone) FROM customers WHERE id = 74"])
    assert user in named(served, capsys, numbers[74][0])


# ------------------------------------------------------------------ HTTP

M_HTTP = "13912345670"
HTTP_POLICY = f"""
version: 1
apis:
  crm-api:
    fields:
      "**.mobile": mobile
      "**.idNo": id_card
roles:
  reports:
    routes: ["GET /api/**", "GET /api/reports/** binary"]
    see: {{mobile: clear, id_card: clear, bank_card: clear, person_name: clear}}
users:
  staff_bin: {{role: reports, password: "{make_verifier("staff_bin-pw")}"}}
  staff_text: {{role: reports, password: "{make_verifier("staff_text-pw")}"}}
"""
REPORT = b"%PDF-1.4\n1 0 obj << >> stream\nBT (client 1  " + M_HTTP.encode() + b") Tj ET\nendstream\n%%EOF\n"


@pytest.fixture(scope="module")
def http_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from prometheus_client import CollectorRegistry

    from proxy.app import App
    from proxy.config import load_config
    from proxy.demo.embedded_pg import free_port
    from tests.integration.harness import Running, self_signed_cert
    from tests.integration.test_redteam_http import RedUpstream, red_app
    from tests.integration.test_redteam_v8 import _fixed

    app = red_app()
    app.router.add_get("/api/reports/r10.pdf", _fixed("application/pdf", REPORT))
    app.router.add_get("/api/reports/r10.txt", _fixed("text/plain", REPORT))
    up = RedUpstream(app)
    d = tmp_path_factory.mktemp("red10-http")
    (d / "policy.yaml").write_text(HTTP_POLICY)
    port = free_port()
    tls = self_signed_cert(d)  # Basic credentials are taken over TLS only
    (d / "maskgate.yaml").write_text(
        f"policy: policy.yaml\naudit_log: audit.jsonl\n{KEY_LINES}"
        f"http:\n  listen: 127.0.0.1:{port}\n  upstream: {up.url}\n  api: crm-api\n"
        f"  tls: {{cert: {tls['cert']}, key: {tls['key']}}}\n"
    )
    running = Running(App(load_config(d / "maskgate.yaml"), registry=CollectorRegistry()))
    try:
        yield {"url": f"https://127.0.0.1:{port}", "dir": d, "app": running.app}
    finally:
        running.stop()
        up.stop()


@pytest.mark.parametrize(
    ("user", "path"),
    [
        ("staff_text", "/api/reports/r10.txt"),  # the same report as text: scanned (holds)
        ("staff_bin", "/api/reports/r10.pdf"),  # a download's bytes are read as text too
    ],
)
def test_http_download_is_traced(http_served: dict[str, Any], capsys: Any, user: str, path: str) -> None:
    import httpx

    r = httpx.get(http_served["url"] + path, auth=(user, user + "-pw"), timeout=30, verify=False)
    assert r.status_code == 200, r.text
    assert M_HTTP.encode() in r.content
    assert user in named(http_served, capsys, M_HTTP)
