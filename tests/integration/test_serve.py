"""The whole product: `maskgate serve` (App) with the demo policy, the real engine, audit and
metrics, in front of a real PostgreSQL, driven by real clients."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proxy.app import App
from proxy.demo.embedded_pg import EmbeddedPostgres, bin_dir
from tests.conftest import start_crm
from tests.integration.harness import audit_values, serve_demo

SVC_PW = "svc-secret-for-tests"
MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
ID18 = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = start_crm(tmp_path_factory.mktemp("pg-serve"), SVC_PW, 400)
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("serve"), crm, SVC_PW) as s:
        yield s


def connect(served: dict[str, Any], user: str, password: str, **kw: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1",
        port=served["port"],
        user=user,
        password=password,
        dbname="crm",
        sslmode="disable",
        **kw,
    )


def vendor(served: dict[str, Any], **kw: Any) -> psycopg.Connection[Any]:
    return connect(served, "vendor_zhang", "vendor-pass", **kw)


def dba(served: dict[str, Any]) -> psycopg.Connection[Any]:
    return connect(served, "dba_wang", "dba-pass")


def test_vendor_sees_masked_dba_sees_clear(served: dict[str, Any]) -> None:
    sql = "SELECT id, name, phone, id_card FROM customers WHERE branch_id = 12 ORDER BY id LIMIT 5"
    with dba(served) as c:
        clear = c.execute(sql).fetchall()
    with vendor(served) as c:
        masked = c.execute(sql).fetchall()
    assert clear and len(masked) == len(clear)
    for (i1, n1, p1, id1), (i2, n2, p2, id2) in zip(clear, masked, strict=True):
        assert i1 == i2
        assert MOBILE.fullmatch(p1) and p2 == p1[:3] + "****" + p1[-4:]
        assert ID18.fullmatch(id1) and id2.startswith(id1[:3]) and id2.endswith(id1[-4:]) and "*" in id2
        assert n2 != n1 and n2[0] == n1[0] and "*" in n2


def test_binary_cursor_is_masked_too(served: dict[str, Any]) -> None:
    with vendor(served) as c, c.cursor(binary=True) as cur:
        rows = cur.execute("SELECT phone, id_card FROM customers LIMIT 20").fetchall()
    assert rows
    for phone, idc in rows:
        assert "****" in phone and "*" in idc


def test_row_filter_is_enforced(served: dict[str, Any]) -> None:
    with vendor(served) as c:
        branches = {r[0] for r in c.execute("SELECT branch_id FROM customers").fetchall()}
    assert branches == {12}


def test_refusals_keep_the_session_usable(served: dict[str, Any]) -> None:
    with vendor(served, autocommit=True) as c:
        for sql in (
            "SELECT bank_card FROM customers",
            "SELECT id FROM customers WHERE phone LIKE '138%'",
            "SELECT * FROM audit_trail",
            "DELETE FROM customers",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
                c.execute(sql)
            assert info.value.diag.message_primary.startswith("maskgate: ")
            assert c.execute("SELECT 1").fetchone() == (1,)


def test_row_limit_truncates_with_notice(served: dict[str, Any]) -> None:
    notices: list[str] = []
    with vendor(served) as c:
        c.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        cur = c.execute("SELECT id, caller FROM call_records")
        rows = cur.fetchall()
        assert len(rows) == 200
        assert cur.statusmessage == "SELECT 200"
    assert any("truncated to 200 rows" in n for n in notices)


def test_derived_values_are_redacted_not_partially_masked(served: dict[str, Any]) -> None:
    with vendor(served) as c:
        rows = c.execute("SELECT upper(phone) || '' FROM customers LIMIT 5").fetchall()
    for (v,) in rows:
        assert set(v) == {"*"}


def test_free_text_is_masked_in_place_and_not_searchable(served: dict[str, Any]) -> None:
    with vendor(served, autocommit=True) as c:
        notes = [r[0] for r in c.execute("SELECT notes FROM call_records").fetchall()]
        # Searching inside a free_text column would confirm numbers digit by digit.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT id FROM call_records WHERE notes LIKE '%138%'")
    with_numbers = [n for n in notes if "号码" in n]
    assert with_numbers and all("****" in n for n in with_numbers)
    for n in notes:
        assert not MOBILE.search(n), n


@pytest.mark.parametrize(
    ("user", "password"),
    [("vendor_zhang", "wrong"), ("nobody", "vendor-pass"), ("maskgate_svc", SVC_PW)],
)
def test_bad_logins_get_28P01(served: dict[str, Any], user: str, password: str) -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        connect(served, user, password)
    assert "28P01" in str(info.value) or "password authentication failed" in str(info.value)


def test_audit_log_and_metrics(served: dict[str, Any]) -> None:
    with vendor(served, autocommit=True) as c:
        c.execute("SELECT name, phone, id_card FROM customers LIMIT 3").fetchall()
        c.execute("SELECT notes FROM call_records LIMIT 50").fetchall()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT bank_card FROM customers WHERE bank_card = '6222020200112233446'")
    deadline = time.time() + 5
    audit = served["dir"] / "audit.jsonl"
    while time.time() < deadline:
        if audit.exists() and "class_denied" in audit.read_text():
            break
        time.sleep(0.05)
    text = audit.read_text()
    records = [json.loads(line) for line in text.splitlines()]
    assert any(r.get("reason") == "class_denied" and r["user"] == "vendor_zhang" for r in records)
    assert "6222020200112233446" not in text
    assert not MOBILE.search(audit_values(records))
    metrics = (
        urllib.request.urlopen(f"http://127.0.0.1:{served['metrics']}/metrics", timeout=5).read().decode()
    )
    assert (
        'maskgate_blocked_queries_total{protocol="postgres",reason="class_denied",role="vendor"}' in metrics
    )
    for cls in ("mobile", "id_card", "person_name", "free_text"):
        assert f'maskgate_masked_values_total{{class="{cls}"}}' in metrics, cls


def test_hot_reload_keeps_last_good_policy(served: dict[str, Any]) -> None:
    app: App = served["app"]
    assert app.reloader is not None and app.guard is not None
    before = app.guard.policy.revision
    good = served["policy"].read_text()
    try:
        served["policy"].write_text(good.replace("max_rows: 200", "max_rowz: 200"))
        assert app.reloader.reload_now() is False
        assert app.guard.policy.revision == before
        with vendor(served) as c:
            assert len(c.execute("SELECT id FROM call_records").fetchall()) == 200
        served["policy"].write_text(good.replace("max_rows: 200", "max_rows: 100"))
        assert app.reloader.reload_now() is True
        with vendor(served) as c:
            assert len(c.execute("SELECT id FROM call_records").fetchall()) == 100
    finally:
        served["policy"].write_text(good)
        app.reloader.reload_now()


def test_pg_dump_of_allowed_table_holds_masked_values(served: dict[str, Any], tmp_path: Path) -> None:
    env = dict(os.environ, PGPASSWORD="vendor-pass", PGSSLMODE="disable")
    res = subprocess.run(
        [
            str(bin_dir() / "pg_dump"),
            "-h",
            "127.0.0.1",
            "-p",
            str(served["port"]),
            "-U",
            "vendor_zhang",
            "-t",
            "call_records",
            "--no-owner",
            "crm",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "COPY public.call_records" in res.stdout
    assert "****" in res.stdout
    assert not MOBILE.search(res.stdout.split("COPY public.call_records", 1)[1])


def test_ddl_reloads_the_schema_in_the_background(served: dict[str, Any]) -> None:
    with dba(served) as c:
        c.execute("CREATE VIEW recent_calls AS SELECT id, caller, started_at FROM call_records")
        c.commit()
    deadline = time.time() + 10
    rows: list[tuple[Any, ...]] = []
    while time.time() < deadline:
        with vendor(served) as c:
            try:
                rows = c.execute("SELECT * FROM recent_calls ORDER BY id LIMIT 5").fetchall()
                break
            except psycopg.errors.InsufficientPrivilege:
                time.sleep(0.1)  # not in the schema yet: refused, never passed unmasked
    assert rows, "the view never became known to the engine"
    assert all("****" in r[1] for r in rows)


def test_a_reload_reaches_open_sessions_and_prepared_statements(served: dict[str, Any]) -> None:
    app: App = served["app"]
    assert app.reloader is not None
    good = served["policy"].read_text()
    sql = "SELECT id, caller FROM call_records"
    try:
        with vendor(served, autocommit=True) as c, dba(served) as admin:
            admin.autocommit = True
            assert len(c.execute(sql, prepare=True).fetchall()) == 200
            assert len(c.execute(sql, prepare=True).fetchall()) == 200  # now a server-side statement
            served["policy"].write_text(good.replace("max_rows: 200", "max_rows: 100"))
            assert app.reloader.reload_now() is True
            # The prepared statement carries LIMIT 201 upstream: it may not run under the new policy.
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="prepare it again"):
                c.execute(sql, prepare=True)
            assert len(c.execute("SELECT id FROM call_records").fetchall()) == 100
            # A reload that removes the person stops their open session at the next statement.
            start, end = good.index("  vendor_zhang:"), good.index("  desk_li:")
            served["policy"].write_text(good[:start] + good[end:])
            assert app.reloader.reload_now() is True
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="reconnect"):
                c.execute("SELECT 1")
            assert admin.execute("SELECT 1").fetchone() == (1,)
    finally:
        served["policy"].write_text(good)
        app.reloader.reload_now()


def test_masked_arrays_come_back_as_the_empty_array_not_unparsable_text(served: dict[str, Any]) -> None:
    # A derived array is concealed by one constant of its type: the empty array.
    with vendor(served) as c:
        # (array_agg is refused for a row-limited role: it gathers many records into one value)
        (value,) = c.execute("SELECT ARRAY[phone, id_card] FROM customers").fetchone()
    assert value == []
