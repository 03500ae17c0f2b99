"""Red team v8 (issue 15 and the HTTP side after its fixes): getting numbers without being seen.

- An insider with a clear role (the DBA) reads one customer's phone (its own id, so attacks do
  not vouch for each other) through PostgreSQL, MySQL or HTTP in a form they can turn back into
  the number, then `maskgate trace` is asked who received it; the same for a planted canary.
- A budgeted analyst reads many customers past `distinct_customers_per_day`; metered HTTP
  callers past `rows_per_hour`.
- A vendor (restricted HTTP role) tries odd bodies for a full number or more than max_rows.
- The audit log, the ledger and metrics must never hold (or give back) a number.

A finding is an xfail(strict) test that fails today; attacks that hold are plain tests.
"""

from __future__ import annotations

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

SVC_PW = "svc-secret-red8"
DBA = ("dba_wang", "dba-pass")


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with crm_database(tmp_path_factory, "pg-red8", SVC_PW, 40) as pg:
        yield pg


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(
        tmp_path_factory.mktemp("red8"),
        crm,
        SVC_PW,
        config_lines="ledger_dir: ledger\nmasking_key: ledger-test-key\n",
    ) as s:
        yield s


@pytest.fixture(scope="module")
def phones(crm: EmbeddedPostgres) -> dict[int, str]:
    """The true numbers, read straight from the database (not through the proxy)."""
    import psycopg

    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as conn:
        return {i: p for i, p in conn.execute("SELECT id, phone FROM customers")}


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


def dba(served: dict[str, Any], sql: str, **kw: Any) -> list[tuple[Any, ...]]:
    with connect_proxy(served, DBA, **kw) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[no-any-return]


# ------------------------------------------------------------------ what holds


def test_plain_select_is_traced(served: dict[str, Any], phones: dict[int, str], capsys: Any) -> None:
    rows = dba(served, "SELECT phone FROM customers WHERE id = 1")
    assert rows == [(phones[1],)]
    assert traced(served, capsys, phones[1]) == ["dba_wang"]


def test_nobody_traced_for_an_unread_number(
    served: dict[str, Any], phones: dict[int, str], capsys: Any
) -> None:
    assert traced(served, capsys, phones[40]) == []


def test_server_side_cursor_is_traced(served: dict[str, Any], phones: dict[int, str], capsys: Any) -> None:
    with connect_proxy(served, DBA) as conn, conn.cursor(name="red8") as cur:
        cur.execute("SELECT phone FROM customers WHERE id = 2")
        assert cur.fetchall() == [(phones[2],)]
    assert traced(served, capsys, phones[2]) == ["dba_wang"]


def test_binary_format_is_traced(served: dict[str, Any], phones: dict[int, str], capsys: Any) -> None:
    with connect_proxy(served, DBA) as conn, conn.cursor(binary=True) as cur:
        cur.execute("SELECT phone FROM customers WHERE id = %s", (3,))
        assert cur.fetchall() == [(phones[3],)]
    assert traced(served, capsys, phones[3]) == ["dba_wang"]


def test_copy_to_stdout_is_traced(served: dict[str, Any], phones: dict[int, str], capsys: Any) -> None:
    with (
        connect_proxy(served, DBA) as conn,
        conn.cursor() as cur,
        cur.copy("COPY (SELECT phone FROM customers WHERE id = 4) TO STDOUT") as copy,
    ):
        data = b"".join(bytes(b) for b in copy)
    assert phones[4].encode() in data
    assert traced(served, capsys, phones[4]) == ["dba_wang"]


# ------------------------------------------------------------------ findings: transformed values


def test_concatenated_phone_is_traced(served: dict[str, Any], phones: dict[int, str], capsys: Any) -> None:
    assert dba(served, "SELECT phone || '' FROM customers WHERE id = 5") == [(phones[5],)]
    assert traced(served, capsys, phones[5]) == ["dba_wang"]


def test_cast_phone_is_traced(served: dict[str, Any], phones: dict[int, str], capsys: Any) -> None:
    assert dba(served, "SELECT phone::varchar(20) AS p FROM customers WHERE id = 6") == [(phones[6],)]
    assert traced(served, capsys, phones[6]) == ["dba_wang"]


def test_string_agg_is_traced(served: dict[str, Any], phones: dict[int, str], capsys: Any) -> None:
    (row,) = dba(served, "SELECT string_agg(phone, ',') FROM customers WHERE id IN (7, 8)")
    assert phones[7] in row[0] and phones[8] in row[0]
    assert traced(served, capsys, phones[7]) == ["dba_wang"]


def test_row_to_json_is_traced(served: dict[str, Any], phones: dict[int, str], capsys: Any) -> None:
    (row,) = dba(served, "SELECT row_to_json(c)::text FROM customers c WHERE id = 9")
    assert phones[9] in row[0]
    assert traced(served, capsys, phones[9]) == ["dba_wang"]


def test_reversed_phone_is_traced(served: dict[str, Any], phones: dict[int, str], capsys: Any) -> None:
    assert dba(served, "SELECT reverse(phone) FROM customers WHERE id = 10") == [(phones[10][::-1],)]
    assert traced(served, capsys, phones[10]) == ["dba_wang"]


def test_number_in_free_text_is_traced(served: dict[str, Any], crm: EmbeddedPostgres, capsys: Any) -> None:
    import psycopg

    number = "13700001111"
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm"), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO call_records (id, customer_id, caller, callee, started_at, duration_s, notes)"
            " VALUES (990001, 11, 'x', 'y', now(), 1, %s)",
            (f"customer asked to be called back on {number}",),
        )
    (row,) = dba(served, "SELECT notes FROM call_records WHERE id = 990001")
    assert number in row[0]
    assert traced(served, capsys, number) == ["dba_wang"]


# ------------------------------------------------------------------ budgets (one replica, no Redis)

CUSTOMERS_PER_DAY = 5
BUDGET_USERS = [f"red8_b{i}" for i in range(1, 10)]
BUDGET_POLICY = f"""version: 1
customer_key: crm.customers.id
roles:
  red8_analyst:
    statements: [select]
    tables: ["crm.customers"]
    max_rows: 20
    see: {{mobile: mask, id_card: mask, person_name: mask, bank_card: deny, free_text: mask}}
    budgets: {{rows_per_hour: 1000, distinct_customers_per_day: {CUSTOMERS_PER_DAY}}}
users:
""" + "".join(
    f'  {u}:\n    role: red8_analyst\n    password: "{make_verifier(u + "-pw")}"\n' for u in BUDGET_USERS
)


@pytest.fixture(scope="module")
def budgeted(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("red8b"), crm, SVC_PW, extra_policy=BUDGET_POLICY) as s:
        yield s


def refused_soon(served: dict[str, Any], user: str) -> bool:
    """Whether the person is refused (row_budget) within 3 s: the counts are kept off the loop."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with connect_proxy(served, (user, user + "-pw")) as conn:
            try:
                conn.execute("SELECT id FROM customers WHERE id = 1").fetchall()
            except psycopg.errors.InsufficientPrivilege as e:
                assert "customers per day" in str(e)
                return True
        time.sleep(0.2)
    return False


def as_analyst(served: dict[str, Any], user: str, sql: str) -> list[tuple[Any, ...]]:
    with connect_proxy(served, (user, user + "-pw")) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[no-any-return]


def test_budget_counts_customers_read_by_key(budgeted: dict[str, Any]) -> None:
    assert (
        len(as_analyst(budgeted, BUDGET_USERS[0], "SELECT id, phone FROM customers ORDER BY id LIMIT 10"))
        == 10
    )
    assert refused_soon(budgeted, BUDGET_USERS[0])


def test_budget_counts_customers_read_without_their_key(budgeted: dict[str, Any]) -> None:
    rows = as_analyst(budgeted, BUDGET_USERS[1], "SELECT name, phone FROM customers ORDER BY id LIMIT 20")
    assert len(rows) == 20
    assert refused_soon(budgeted, BUDGET_USERS[1])


def test_budget_counts_a_cast_key(budgeted: dict[str, Any]) -> None:
    rows = as_analyst(budgeted, BUDGET_USERS[2], "SELECT id::text, phone FROM customers ORDER BY id LIMIT 20")
    assert len(rows) == 20
    assert refused_soon(budgeted, BUDGET_USERS[2])


def test_budget_counts_customers_fetched_from_a_server_side_cursor(budgeted: dict[str, Any]) -> None:
    user = BUDGET_USERS[5]
    with connect_proxy(budgeted, (user, user + "-pw")) as conn, conn.cursor(name="red8b") as cur:
        cur.execute("SELECT id, phone FROM customers ORDER BY id LIMIT 20")
        assert len(cur.fetchall()) == 20
    assert refused_soon(budgeted, user)


def test_budget_counts_customers_of_prepared_statements(budgeted: dict[str, Any]) -> None:
    user = BUDGET_USERS[6]
    with connect_proxy(budgeted, (user, user + "-pw")) as conn:
        try:
            for i in range(1, 8):
                conn.execute("SELECT id, phone FROM customers WHERE id = %s", (i,), prepare=True).fetchall()
        except psycopg.errors.InsufficientPrivilege as e:
            assert "customers per day" in str(e)
            return
    assert refused_soon(budgeted, user)


def test_budget_counts_customers_in_binary_format(budgeted: dict[str, Any]) -> None:
    user = BUDGET_USERS[7]
    with connect_proxy(budgeted, (user, user + "-pw")) as conn, conn.cursor(binary=True) as cur:
        cur.execute("SELECT id, phone FROM customers WHERE id < %s ORDER BY id", (12,))
        assert len(cur.fetchall()) == 11
    assert refused_soon(budgeted, user)


def test_budget_aggregates_gathering_rows_are_refused(budgeted: dict[str, Any]) -> None:
    for sql in (
        "SELECT string_agg(id::text, ',') FROM customers",
        "SELECT array_agg(id) FROM customers",
        "SELECT json_agg(c) FROM customers c",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_analyst(budgeted, BUDGET_USERS[3], sql)


def test_budget_array_subquery_is_bounded(budgeted: dict[str, Any]) -> None:
    try:
        (row,) = as_analyst(
            budgeted, BUDGET_USERS[4], "SELECT array_to_string(ARRAY(SELECT id FROM customers), ',')"
        )
    except psycopg.errors.InsufficientPrivilege:
        return
    assert len(row[0].split(",")) <= 20


# ------------------------------------------------------------------ errors, audit and ledger hold no number

VENDOR = ("vendor_zhang", "vendor-pass")


def test_vendor_cast_error_does_not_echo_a_number(served: dict[str, Any], phones: dict[int, str]) -> None:
    """PostgreSQL names the value it could not convert: the vendor must not get it in the error."""
    for sql in (
        "SELECT phone::int FROM customers WHERE id = 12",
        "SELECT phone::date FROM customers WHERE id = 12",
        "SELECT phone::numeric::smallint FROM customers WHERE id = 12",
        "SELECT to_date(phone, 'YYYYMMDD') FROM customers WHERE id = 12",
    ):
        with connect_proxy(served, VENDOR) as conn:
            try:
                rows = conn.execute(sql).fetchall()
            except psycopg.Error as e:
                text = f"{e} {e.diag.message_detail} {e.diag.message_hint} {e.diag.context}"
                assert phones[12] not in text, sql
                assert phones[12][3:] not in text, sql
            else:
                assert phones[12] not in repr(rows), sql


def test_audit_and_ledger_hold_no_number(served: dict[str, Any], phones: dict[int, str]) -> None:
    """A DBA's literal in a predicate, errors echoing a value: none of it lands in the logs."""
    number = phones[13]
    with connect_proxy(served, DBA) as conn:
        assert conn.execute(f"SELECT id FROM customers WHERE phone = '{number}'").fetchall() == [(13,)]
    with connect_proxy(served, DBA) as conn, pytest.raises(psycopg.Error):
        conn.execute("SELECT phone::int FROM customers WHERE id = 13").fetchall()
    with connect_proxy(served, DBA) as conn, pytest.raises(psycopg.Error):
        conn.execute(f"SELECT '{number}'::int").fetchall()
    settle(served)
    audit = (served["dir"] / "audit.jsonl").read_bytes()
    ledger = b"".join(p.read_bytes() for p in (served["dir"] / "ledger").glob("*"))
    for n in phones.values():
        assert n.encode() not in audit
        assert n.encode() not in ledger


# ------------------------------------------------------------------ the HTTP side and the ledger

HTTP_STAFF = [
    "staff_int",
    "staff_err",
    "staff_json",
    "staff_gzip",
    "staff_ndjson",
    "staff_csv",
    "staff_note",
    "staff_html",
    "staff_num",
]
HTTP_POLICY = """
version: 1
apis:
  crm-api:
    fields:
      "**.mobile": mobile
      "**.idNo": id_card
      "**.bankAcct": bank_card
      "data[].contact.phone": mobile
      "**.name": person_name
roles:
  staff:
    routes: ["GET /api/**"]
    see: {mobile: clear, id_card: clear, bank_card: clear, person_name: clear}
  vendor:
    routes: ["GET /api/**"]
    max_rows: 20
    see: {mobile: mask, id_card: mask, bank_card: deny, person_name: mask}
    masked_predicates: deny
  metered:
    routes: ["GET /api/**"]
    max_rows: 50
    see: {mobile: mask, id_card: mask, bank_card: mask, person_name: mask}
    budgets: {rows_per_hour: 10}
users:
"""
HTTP_METERED = ["metered_json", "metered_csv", "metered_ndjson", "metered_html"]


M0 = "13812345678"
ID0 = "11010519491231002X"
V8_BODIES: dict[str, tuple[str, bytes]] = {
    # A number as an object key (lookups keyed by mobile), not as a value.
    "keyed": ("application/json", json.dumps({"byMobile": {M0: {"id": 1}}}).encode()),
    "keyed-escaped": (
        "application/json",
        b'{"byMobile": {"\\u0031\\u0033\\u0038' + M0[3:].encode() + b'": 1}}',
    ),
    "jsonp": ("application/javascript", f'cb({{"mobile": "{M0}"}})'.encode()),
    "xssi": ("application/json", b")]}',\n" + json.dumps({"data": [{"mobile": M0}]}).encode()),
    "bom": ("application/json", "\ufeff".encode() + json.dumps({"mobile": M0}).encode()),
    "problem": ("application/problem+json", json.dumps({"detail": f"client {M0} not found"}).encode()),
    "hal": ("application/hal+json", json.dumps({"_embedded": {"c": [{"mobile": M0}]}}).encode()),
    "sse": ("text/event-stream", f'data: {{"mobile": "{M0}"}}\n\n'.encode()),
    "yaml": ("application/yaml", f"mobile: {M0}\nidNo: {ID0}\n".encode()),
    "form": ("application/x-www-form-urlencoded", f"mobile={M0}&idNo={ID0}".encode()),
    "js-object": ("application/json", json.dumps({"mobile": M0}).encode().replace(b'"mobile"', b"mobile")),
    "markdown": ("text/markdown", f"| id | mobile |\n|---|---|\n| 1 | {M0} |\n".encode()),
    "protobuf": ("application/x-protobuf", b"\x0a\x0b" + M0.encode()),
    "mobile-int": ("application/json", json.dumps({"mobile": int(M0)}).encode()),
    "conflict": ("application/json", json.dumps({"error": "duplicate", "existing": {"mobile": M0}}).encode()),
    "embedded": (
        "application/json",
        json.dumps({"payload": json.dumps([{"id": i, "mobile": M0} for i in range(50)])}).encode(),
    ),
    "nested-arrays": (
        "application/json",
        json.dumps([[{"id": i, "mobile": M0}] for i in range(50)]).encode(),
    ),
    "graphql": (
        "application/graphql-response+json",
        json.dumps({"data": {"client": {"mobile": M0}}}).encode(),
    ),
}


def _fixed(ctype: str, body: bytes, status: int = 200) -> Any:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, status=status, headers={"Content-Type": ctype})

    return handler


@pytest.fixture(scope="module")
def http_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from prometheus_client import CollectorRegistry

    from policies.passwords import scram_verifier
    from proxy.app import App
    from proxy.config import load_config
    from proxy.demo.embedded_pg import free_port
    from tests.integration.harness import Running, self_signed_cert
    from tests.integration.test_redteam_http import RedUpstream, red_app

    app = red_app()
    for name, (ctype, body) in V8_BODIES.items():
        app.router.add_get(f"/api/v8/{name}", _fixed(ctype, body, 409 if name == "conflict" else 200))
    up = RedUpstream(app)
    d = tmp_path_factory.mktemp("red8-http")
    users = "".join(f'  {u}: {{role: staff, password: "{scram_verifier(u + "-pw")}"}}\n' for u in HTTP_STAFF)
    users += f'  vendor_v8: {{role: vendor, password: "{scram_verifier("vendor_v8-pw")}"}}\n'
    users += "".join(
        f'  {u}: {{role: metered, password: "{scram_verifier(u + "-pw")}"}}\n' for u in HTTP_METERED
    )
    (d / "policy.yaml").write_text(HTTP_POLICY + users)
    port = free_port()
    tls = self_signed_cert(d)  # Basic credentials are taken over TLS only
    (d / "maskgate.yaml").write_text(
        f"policy: policy.yaml\naudit_log: audit.jsonl\nmasking_key: test-key\nledger_dir: ledger\n"
        f"http:\n  listen: 127.0.0.1:{port}\n  upstream: {up.url}\n  api: crm-api\n"
        f"  tls: {{cert: {tls['cert']}, key: {tls['key']}}}\n"
    )
    running = Running(App(load_config(d / "maskgate.yaml"), registry=CollectorRegistry()))
    try:
        yield {"url": f"https://127.0.0.1:{port}", "dir": d, "app": running.app}
    finally:
        running.stop()
        up.stop()


def http_get(served: dict[str, Any], user: str, path: str) -> str:
    import httpx

    r = httpx.get(served["url"] + path, auth=(user, user + "-pw"), timeout=30, verify=False)
    assert r.status_code == 200, r.text
    return r.text


@pytest.mark.parametrize(
    ("user", "path", "number"),
    [
        ("staff_json", "/api/clients/1", "13912345670"),  # the classified "mobile" field
        ("staff_gzip", "/api/gzip", "13912345670"),
        ("staff_ndjson", "/api/clients.ndjson", "13912345670"),
        ("staff_csv", "/api/clients.csv", "13912345670"),  # a CSV column named like the field
    ],
)
def test_http_classified_fields_in_clear_are_traced(
    http_served: dict[str, Any], capsys: Any, user: str, path: str, number: str
) -> None:
    assert number in http_get(http_served, user, path)
    assert user in traced(http_served, capsys, number)


@pytest.mark.parametrize(
    ("user", "path"),
    [
        ("staff_note", "/api/notes/plain"),  # a number in a free-text JSON string
        ("staff_html", "/api/export/clients.html"),  # numbers in an HTML body
        ("staff_num", "/api/notes/number"),  # a mobile sent as a JSON number in a free field
    ],
)
def test_http_numbers_outside_classified_fields_are_traced(
    http_served: dict[str, Any], capsys: Any, user: str, path: str
) -> None:
    assert "13812345678" in http_get(http_served, user, path)
    assert user in traced(http_served, capsys, "13812345678")


# ------------------------------------------------------------------ canaries


@pytest.fixture(scope="module")
def canary(served: dict[str, Any], crm: EmbeddedPostgres) -> dict[str, str]:
    """One canary customer planted through the CLI and armed: its printed columns (id, phone...)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert (
            main(
                [
                    "canary",
                    "plant",
                    "--schema",
                    crm.dsn("maskgate_svc", SVC_PW, "crm"),
                    "--table",
                    "crm.customers",
                    "--count",
                    "1",
                    "--policy-dir",
                    str(served["policy"].parent),
                    "--config",
                    str(_canary_config(served)),
                ]
            )
            == 0
        )
    served["app"].reloader.reload_now(force=True)
    planted = dict(kv.split("=", 1) for kv in out.getvalue().split("\n")[0].split("  "))
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as conn:
        (row,) = conn.execute("SELECT id FROM customers WHERE phone = %s", (planted["phone"],)).fetchall()
    return {**planted, "id": str(row[0])}


def canary_reads(served: dict[str, Any]) -> float:
    settle(served)
    value = served["app"].metrics.registry.get_sample_value("maskgate_canary_reads_total", {"role": "dba"})
    return value or 0.0


def test_canary_read_plainly_is_flagged(served: dict[str, Any], canary: dict[str, str]) -> None:
    before = canary_reads(served)
    assert dba(served, f"SELECT phone FROM customers WHERE id = {canary['id']}") == [(canary["phone"],)]
    assert canary_reads(served) > before


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT phone || '' FROM customers WHERE id = {id}",
        "SELECT row_to_json(c)::text FROM customers c WHERE id = {id}",
        # Without its numbers: the row's e-mail and its key are the planted customer's too.
        "SELECT id, name, email, address FROM customers WHERE id = {id}",
        "SELECT id, address FROM customers WHERE id = {id}",  # the key alone (a row key here)
        "SELECT email FROM customers WHERE id = {id}",
    ],
)
def test_canary_read_in_other_forms_is_flagged(
    served: dict[str, Any], canary: dict[str, str], sql: str
) -> None:
    before = canary_reads(served)
    (row,) = dba(served, sql.format(id=canary["id"]))
    assert row
    assert canary_reads(served) > before


def test_canary_read_by_copy_is_flagged(served: dict[str, Any], canary: dict[str, str]) -> None:
    before = canary_reads(served)
    with (
        connect_proxy(served, DBA) as conn,
        conn.cursor() as cur,
        cur.copy(f"COPY (SELECT phone FROM customers WHERE id = {canary['id']}) TO STDOUT") as copy,
    ):
        data = b"".join(bytes(b) for b in copy)
    assert canary["phone"].encode() in data
    assert canary_reads(served) > before


def http_status_soon(served: dict[str, Any], user: str, path: str, status: int) -> bool:
    """Whether `path` answers `status` within 3 s (budgets are counted off the event loop)."""
    import httpx

    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        r = httpx.get(served["url"] + path, auth=(user, user + "-pw"), timeout=30, verify=False)
        if r.status_code == status:
            assert "rows" in r.text, r.text  # refused for the budget, not for anything else
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize(
    ("user", "path"),
    [
        ("metered_json", "/api/clients?limit=30"),
        ("metered_ndjson", "/api/clients.ndjson"),
        ("metered_csv", "/api/clients.csv"),
        ("metered_html", "/api/export/clients.html"),
    ],
)
def test_http_rows_count_against_rows_per_hour(http_served: dict[str, Any], user: str, path: str) -> None:
    http_get(http_served, user, "/api/clients/1")  # not refused before
    http_get(http_served, user, path)
    assert http_status_soon(http_served, user, "/api/clients/1", 403)


def test_pg_multi_statement_query_is_traced(
    served: dict[str, Any], phones: dict[int, str], capsys: Any
) -> None:
    """The simple query protocol: several statements in one Query message, the phone in the last."""
    with connect_proxy(served, DBA, cursor_factory=psycopg.ClientCursor) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1; SELECT phone FROM customers WHERE id = 14")
        assert cur.fetchall() == [(1,)]
        assert cur.nextset()
        assert cur.fetchall() == [(phones[14],)]
    assert traced(served, capsys, phones[14]) == ["dba_wang"]


# ------------------------------------------------------------------ the MySQL listener and the ledger


@pytest.fixture(scope="module")
def my_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from tests.conftest import start_crm_mysql

    db = start_crm_mysql(tmp_path_factory.mktemp("red8-mysql"), SVC_PW, 30)
    try:
        with serve_demo(
            tmp_path_factory.mktemp("red8-my"),
            None,
            SVC_PW,
            mysql=db,
            config_lines="ledger_dir: ledger\nmasking_key: ledger-test-key\n",
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


def my_dba(served: dict[str, Any], sql: str) -> list[Any]:
    """Every result set of `sql` (statements separated by ';') as the DBA over MySQL."""
    from tests.integration.test_redteam_mysql_v2 import connect

    conn = connect(served, DBA)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            out = [list(cur.fetchall())]
            while cur.nextset():
                out.append(list(cur.fetchall()))
            return out
    finally:
        conn.close()


def test_mysql_plain_select_is_traced(my_served: dict[str, Any], capsys: Any) -> None:
    number = my_served["phones"][1]
    assert my_dba(my_served, "SELECT phone FROM customers WHERE id = 1") == [[(number,)]]
    assert traced(my_served, capsys, number) == ["dba_wang"]


def test_mysql_concat_is_traced(my_served: dict[str, Any], capsys: Any) -> None:
    number = my_served["phones"][2]
    assert my_dba(my_served, "SELECT CONCAT(phone, '') FROM customers WHERE id = 2") == [[(number,)]]
    assert traced(my_served, capsys, number) == ["dba_wang"]


def test_mysql_multi_statement_is_traced(my_served: dict[str, Any], capsys: Any) -> None:
    number = my_served["phones"][3]
    got = my_dba(my_served, "SELECT 1; SELECT phone FROM customers WHERE id = 3")
    assert got[-1] == [(number,)]
    assert traced(my_served, capsys, number) == ["dba_wang"]


@pytest.mark.parametrize("name", sorted(V8_BODIES))
def test_http_vendor_gets_no_full_number_from_odd_bodies(http_served: dict[str, Any], name: str) -> None:
    import httpx

    r = httpx.get(
        http_served["url"] + f"/api/v8/{name}", auth=("vendor_v8", "vendor_v8-pw"), timeout=30, verify=False
    )
    assert r.status_code not in (401, 407), r.text  # the attack ran as the vendor
    seen = r.text + " ".join(f"{k}: {v}" for k, v in r.headers.items())
    assert M0 not in seen and ID0 not in seen, (r.status_code, seen[:300])
    assert M0 not in seen.translate({ord(c): None for c in " -_.\\u"}), (r.status_code, seen[:300])


def test_http_classified_field_sent_as_a_json_number_is_traced(
    http_served: dict[str, Any], capsys: Any
) -> None:
    assert M0 in http_get(http_served, "staff_int", "/api/v8/mobile-int")
    assert "staff_int" in traced(http_served, capsys, M0)


def test_http_classified_field_in_an_error_body_is_traced(http_served: dict[str, Any], capsys: Any) -> None:
    import httpx

    r = httpx.get(
        http_served["url"] + "/api/v8/conflict", auth=("staff_err", "staff_err-pw"), timeout=30, verify=False
    )
    assert r.status_code == 409 and M0 in r.text
    assert "staff_err" in traced(http_served, capsys, M0)


@pytest.mark.parametrize(
    "written",
    [
        "0086 138 1234 5678",
        "+86-138-1234-5678",
        "(+86) 138 1234 5678",
        "86 13812345678",
    ],
)
def test_trace_folds_how_a_complaint_writes_the_number(written: str) -> None:
    """A complaints team pastes the number as the caller ID showed it: trace must match it."""
    from proxy.services.disclosure import value_key

    assert value_key(b"k", "mobile", written) == value_key(b"k", "mobile", M0)


def test_http_numbers_in_requests_stay_out_of_audit_ledger_and_metrics(http_served: dict[str, Any]) -> None:
    """Numbers a caller puts in the path, query, headers or body of a request (their own input,
    refused or not) are no reason for the audit log, the ledger or a metric label to hold them."""
    import httpx
    from prometheus_client import generate_latest

    with httpx.Client(verify=False, timeout=30) as c:
        for who in (("vendor_v8", "vendor_v8-pw"), ("staff_json", "staff_json-pw")):
            c.get(http_served["url"] + f"/api/clients/{M0}", auth=who)
            c.get(http_served["url"] + f"/api/v8/keyed?q={M0}&{M0}=1", auth=who)
            c.get(
                http_served["url"] + f"/api/{M0}/x", auth=who, headers={"X-Trace": M0, "Referer": f"/c/{M0}"}
            )
            c.post(http_served["url"] + "/api/clients/search", auth=who, json={"mobile": M0, M0: 1})
            c.get(http_served["url"] + f"/api/v8/keyed#{M0}", auth=(M0, M0))
    app = http_served["app"]
    app.disclosures.drain()
    app.ledger.flush()
    time.sleep(0.5)
    audit = (http_served["dir"] / "audit.jsonl").read_text()
    ledger = b"".join(p.read_bytes() for p in (http_served["dir"] / "ledger").glob("*"))
    metrics = generate_latest(app.metrics.registry).decode()
    for text in (audit, metrics, ledger.decode("latin-1")):
        assert M0 not in text and M0[3:] not in text


# ------------------------------------------------------------------ no masking_key: the public key


def test_audit_sql_hash_does_not_give_back_the_number(served: dict[str, Any], phones: dict[int, str]) -> None:
    """The demo config names no masking_key. The audit's `sql` shows 159****1234, and `sql_hash`
    is an HMAC of the statement as received: under a key everyone knows, 10^4 guesses name it."""
    import hashlib
    import hmac

    from masking import DEFAULT_KEY

    number = phones[15]
    with connect_proxy(served, DBA) as conn:
        conn.execute(f"SELECT id FROM customers WHERE phone = '{number}'").fetchall()
    settle(served)
    recs = [json.loads(line) for line in (served["dir"] / "audit.jsonl").read_text().splitlines()]
    rec = [r for r in recs if r.get("sql", "").startswith("SELECT id FROM customers WHERE phone = '")][-1]
    assert number not in rec["sql"]
    shown = rec["sql"].split("'")[1]
    found = None
    for middle in range(10000):
        guess = shown[:3] + f"{middle:04d}" + shown[7:]
        sql = f"SELECT id FROM customers WHERE phone = '{guess}'"
        if hmac.new(DEFAULT_KEY, sql.encode(), hashlib.sha256).hexdigest()[:32] == rec["sql_hash"]:
            found = guess
            break
    assert found is None, "the audit log gave back the full number"


def test_ledger_without_a_masking_key_refuses_to_start(tmp_path: Any, crm: EmbeddedPostgres) -> None:
    """The ledger's HMACs are only as secret as their key: under the development key anyone who
    reads ledger_dir can test every mobile number against a person's filter. Fail closed."""
    import shutil

    from prometheus_client import CollectorRegistry

    from proxy.app import App
    from proxy.config import load_config
    from proxy.demo.embedded_pg import free_port
    from tests.integration.harness import DEMO_POLICY, Running

    (tmp_path / "policy").mkdir()
    shutil.copy(DEMO_POLICY, tmp_path / "policy" / "policy.yaml")
    port = free_port()
    (tmp_path / "maskgate.yaml").write_text(
        "policy: policy\naudit_log: audit.jsonl\nledger_dir: ledger\n"
        f"postgres:\n  listen: 127.0.0.1:{port}\n"
        f"  upstream: postgresql://maskgate_svc:{SVC_PW}@127.0.0.1:{crm.port}/crm?sslmode=disable\n"
    )
    try:
        running = Running(App(load_config(tmp_path / "maskgate.yaml", env={}), registry=CollectorRegistry()))
    except Exception as e:  # refused at load or at start: what we want, for the right reason
        assert "masking_key" in str(e)
        return
    running.stop()
    pytest.fail("maskgate started a ledger keyed with the public development key")


# ------------------------------------------------------------------ more routes around the ledger

ROUTES = {
    # id: statements (run in one session; the last one's rows hold customer id's phone)
    16: ["SELECT phone FROM customers WHERE id = 16 UNION ALL SELECT caller FROM call_records WHERE false"],
    17: ["SELECT p FROM (SELECT phone AS p, id FROM customers) s WHERE id = 17"],
    18: ["CREATE TEMP TABLE red8_t AS SELECT phone FROM customers WHERE id = 18", "SELECT phone FROM red8_t"],
    19: [
        "CREATE TEMP VIEW red8_v AS SELECT phone AS p, id FROM customers",
        "SELECT p FROM red8_v WHERE id = 19",
    ],
    20: [
        "CREATE FUNCTION pg_temp.red8_f() RETURNS SETOF text"
        " AS 'SELECT phone FROM customers WHERE id = 20' LANGUAGE sql",
        "SELECT pg_temp.red8_f()",
    ],
    21: ["PREPARE red8_p AS SELECT phone FROM customers WHERE id = 21", "EXECUTE red8_p"],
    22: ["SELECT COALESCE(phone, phone) FROM customers WHERE id = 22"],
    23: ["WITH c AS (SELECT phone FROM customers WHERE id = 23) SELECT phone FROM c"],
}


@pytest.mark.parametrize(
    "cid",
    [c for c in sorted(ROUTES)],
)
def test_dba_routes_around_the_ledger(
    served: dict[str, Any], phones: dict[int, str], capsys: Any, cid: int
) -> None:
    with connect_proxy(served, DBA, autocommit=True) as conn:
        for sql in ROUTES[cid][:-1]:
            conn.execute(sql)
        assert conn.execute(ROUTES[cid][-1]).fetchall() == [(phones[cid],)]
    assert traced(served, capsys, phones[cid]) == ["dba_wang"]


def test_budget_counts_customers_copied_out(budgeted: dict[str, Any]) -> None:
    user = BUDGET_USERS[8]
    with connect_proxy(budgeted, (user, user + "-pw")) as conn, conn.cursor() as cur:
        try:
            with cur.copy("COPY (SELECT id, phone FROM customers ORDER BY id LIMIT 20) TO STDOUT") as copy:
                data = b"".join(bytes(b) for b in copy)
        except psycopg.errors.InsufficientPrivilege:
            return  # COPY is not this role's: refused, nothing to count
    assert data.count(b"\n") == 20 and data.count(b"****") == 20  # masked, as the role says
    assert refused_soon(budgeted, user)


@pytest.mark.parametrize(
    ("path", "count"),
    [
        ("/api/clients.ndjson", lambda t: t.count('"id"')),
        ("/api/clients.csv", lambda t: len(t.strip().splitlines()) - 1),
        ("/api/v8/nested-arrays", lambda t: t.count('"id"')),
        ("/api/v8/embedded", lambda t: t.count('\\"id\\"')),
    ],
)
def test_http_vendor_gets_at_most_max_rows(http_served: dict[str, Any], path: str, count: Any) -> None:
    import httpx

    r = httpx.get(http_served["url"] + path, auth=("vendor_v8", "vendor_v8-pw"), timeout=30, verify=False)
    assert r.status_code == 200, r.text
    assert 0 < count(r.text) <= 20, r.text[:300]


def test_mysql_binary_protocol_is_traced(my_served: dict[str, Any], capsys: Any) -> None:
    """Server-side prepared statements: rows in MySQL's binary protocol (COM_STMT_EXECUTE)."""
    import mysql.connector

    number = my_served["phones"][4]
    conn = mysql.connector.connect(
        host="127.0.0.1",
        port=my_served["mysql_port"],
        user=DBA[0],
        password=DBA[1],
        database="crm",
        ssl_disabled=True,
        use_pure=True,
    )
    try:
        cur = conn.cursor(prepared=True)
        cur.execute("SELECT phone FROM customers WHERE id = %s", (4,))
        got = [
            tuple(v.decode() if isinstance(v, bytes | bytearray) else v for v in r) for r in cur.fetchall()
        ]
        assert got == [(number,)]
        cur.close()
    finally:
        conn.close()
    assert traced(my_served, capsys, number) == ["dba_wang"]


def test_two_replicas_sharing_a_ledger_dir_are_both_traced(
    crm: EmbeddedPostgres, phones: dict[int, str], tmp_path_factory: pytest.TempPathFactory, capsys: Any
) -> None:
    """Two replicas (one host, one process here: the same segment file name) append to one
    ledger directory; trace through either's config names both reads."""
    shared = tmp_path_factory.mktemp("red8-shared-ledger")
    lines = f"ledger_dir: {shared}\nmasking_key: red8-shared-key\n"
    with (
        serve_demo(tmp_path_factory.mktemp("red8-r1"), crm, SVC_PW, config_lines=lines) as one,
        serve_demo(tmp_path_factory.mktemp("red8-r2"), crm, SVC_PW, config_lines=lines) as two,
    ):
        dba(one, "SELECT phone FROM customers WHERE id = 24")
        dba(two, "SELECT phone FROM customers WHERE id = 25")
        settle(one)
        assert traced(two, capsys, phones[24]) == ["dba_wang"]
        assert traced(one, capsys, phones[25]) == ["dba_wang"]


def _canary_config(served: dict[str, Any]) -> Path:
    """A config naming the served policy and its masking key, for `maskgate canary plant` (the
    served config's upstream comes from variables only the harness sets)."""
    path = Path(served["dir"]) / "canary.yaml"
    path.write_text(f"policy: {served['policy']}\nmasking_key: ledger-test-key\n")
    return path


# ------------------------------------------------------------------ doors outside rows

DOORS = {
    # id: statements; the number reaches the client outside any row
    26: ["DO $$BEGIN RAISE NOTICE 'n %', (SELECT phone FROM customers WHERE id = 26); END$$"],
    27: [
        "DO $$BEGIN RAISE WARNING USING MESSAGE = (SELECT reverse(phone) FROM customers WHERE id = 27); END$$"
    ],
    28: ["DO $$BEGIN RAISE EXCEPTION 'e %', (SELECT phone FROM customers WHERE id = 28); END$$"],
    29: ["LISTEN red8", "SELECT count(pg_notify('red8', phone)) FROM customers WHERE id = 29"],
    31: [
        "DO $$BEGIN EXECUTE format('CREATE TEMP TABLE red8_n (%I int)',"
        " (SELECT phone FROM customers WHERE id = 31)); END$$",
        "SELECT * FROM red8_n",
    ],
}


@pytest.mark.parametrize("cid", sorted(DOORS))
def test_numbers_outside_rows_are_traced(
    served: dict[str, Any], phones: dict[int, str], capsys: Any, cid: int
) -> None:
    """A notice, an error, a notification or a column name carries the number: what the client
    receives is what the ledger reads."""
    got: list[str] = []
    with connect_proxy(served, DBA, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: got.append(d.message_primary or ""))
        for sql in DOORS[cid]:
            try:
                cur = conn.execute(sql)
                got += [c.name for c in cur.description or ()]  # a column named after the number
            except psycopg.Error as e:
                got.append(str(e))
        got.append(conn.info.parameter_status("application_name") or "")
        got += [n.payload for n in conn.notifies(timeout=0.5, stop_after=1)]
    assert any(phones[cid] in g or phones[cid][::-1] in g for g in got), got
    assert traced(served, capsys, phones[cid]) == ["dba_wang"]


def test_numbers_in_forms_no_detector_reads_are_listed_as_computed_reads(
    served: dict[str, Any], phones: dict[int, str], capsys: Any
) -> None:
    """phone::bigint + 1 reads as no number: the ledger cannot match it, and trace says who
    received mobiles in such forms (the audit's `computed`) beside what it matched."""
    ((v,),) = dba(served, "SELECT phone::bigint + 1 FROM customers WHERE id = 30")
    assert str(v - 1) == phones[30]
    settle(served)
    capsys.readouterr()
    assert main(["trace", "--config", str(served["dir"] / "maskgate.yaml"), "--json", phones[30]]) == 0
    entry = json.loads(capsys.readouterr().out)["numbers"][0]
    assert entry["people"] == []  # nothing to match by value
    (person,) = [p for p in entry["computed"] if p["user"] == "dba_wang"]
    sqls = [s["sql"] for d in person["days"] for s in d["statements"]]
    assert "SELECT phone::bigint + 1 FROM customers WHERE id = 30" in sqls


MY_DOORS = {
    # id: statements over MySQL; the number reaches the client outside any row value
    5: ["SELECT EXTRACTVALUE(1, CONCAT(0x5c, (SELECT phone FROM customers WHERE id = 5)))"],
    6: [
        "SET @s = CONCAT('SELECT 1 AS `', (SELECT phone FROM customers WHERE id = 6), '`')",
        "PREPARE red8_s FROM @s",
        "EXECUTE red8_s",
    ],
}


@pytest.mark.parametrize("cid", sorted(MY_DOORS))
def test_mysql_numbers_outside_rows_are_traced(my_served: dict[str, Any], capsys: Any, cid: int) -> None:
    """An error message or a column name carries the number over MySQL."""
    from tests.integration.test_redteam_mysql_v2 import connect

    number = my_served["phones"][cid]
    got: list[str] = []
    conn = connect(my_served, DBA)
    try:
        with conn.cursor() as cur:
            for sql in MY_DOORS[cid]:
                try:
                    cur.execute(sql)
                    got += [d[0] for d in cur.description or ()]
                    cur.fetchall()
                except Exception as e:  # the driver's error class: the message is what counts
                    got.append(str(e))
    finally:
        conn.close()
    assert any(number in g for g in got), got
    assert traced(my_served, capsys, number) == ["dba_wang"]
