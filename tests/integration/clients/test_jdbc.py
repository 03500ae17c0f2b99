"""pgjdbc (the PostgreSQL JDBC driver DBeaver, DataGrip and Java applications use) through the
real proxy with the demo policy.

java/MaskgateJdbc.java is compiled once per session against Debian's
libpostgresql-jdbc-java; each test runs one of its scenarios in a JVM and asserts on the JSON it
prints (rows, SQLSTATEs, SQLWarnings, and the driver's own trace of the protocol messages it sent).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clients.expect import CUSTOMERS_SQL, check_customer, masked_mobile
from tests.integration.harness import self_signed_cert

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
JAR = Path(os.environ.get("MASKGATE_PGJDBC_JAR", "/usr/share/java/postgresql.jar"))
# Each scenario is a short-lived JVM: skip the optimising compiler, use the smallest collector.
JVM_OPTS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto")


@pytest.fixture(scope="session")
def jdbc_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MaskgateJdbc compiled once for the whole run."""
    if not (shutil.which("java") and shutil.which("javac")):
        pytest.skip("java/javac not found: apt-get install openjdk-17-jdk-headless")
    if not JAR.is_file():
        pytest.skip(f"pgjdbc not found at {JAR}: apt-get install libpostgresql-jdbc-java")
    out = tmp_path_factory.mktemp("jdbc-classes")
    res = subprocess.run(
        ["javac", "-d", str(out), "-cp", str(JAR), str(HERE / "java" / "MaskgateJdbc.java")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="module")
def jdbc(jdbc_classes: Path, served: dict[str, Any]) -> Any:
    """Run a scenario as `user` through the proxy (or straight to the database with `port`)."""

    def run(
        scenario: str,
        user: str = "vendor_zhang",
        password: str = "vendor-pass",
        arg: str | None = None,
        *,
        port: int | None = None,
        params: str = "sslmode=disable",
        jvm_opts: tuple[str, ...] = JVM_OPTS,
    ) -> dict[str, Any]:
        url = f"jdbc:postgresql://127.0.0.1:{port or served['port']}/crm?connectTimeout=10&{params}"
        cmd = [
            "java",
            *jvm_opts,
            "-cp",
            f"{jdbc_classes}{os.pathsep}{JAR}",
            "MaskgateJdbc",
            scenario,
            url,
            user,
            password,
        ]
        if arg is not None:
            cmd.append(arg)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        result: dict[str, Any] = json.loads(res.stdout)
        assert "uncaught" not in result, result["uncaught"]
        return result

    return run


def test_connect_with_scram_and_a_wrong_password(jdbc) -> None:
    got = jdbc("connect")
    assert got["auth"][0] == "<=BE AuthenticationSASL" and got["auth"][-1] == "<=BE AuthenticationOk"
    assert "<=BE AuthenticationSASLFinal" in got["auth"]
    assert got["product"] == "PostgreSQL"
    assert got["select1"] == [[1]]
    assert got["autocommit"] is True
    assert got["wrong_password"]["sqlstate"] == "28P01"
    assert got["wrong_password"]["message"].startswith(
        'FATAL: maskgate: password authentication failed for user "vendor_zhang"'
    )


def test_metadata_calls_of_a_gui_match_the_database(jdbc, service_account) -> None:
    """What DBeaver asks on connect and when a table is opened: the same answers as the database
    gives its own service account. Catalog reads have no row limit (getTypeInfo is over 200 rows)."""
    user, password, port = service_account
    proxied = jdbc("metadata")
    direct = jdbc("metadata", user, password, port=port)
    assert proxied["errors"] == {}
    assert direct["errors"] == {}
    calls, truth = proxied["calls"], direct["calls"]
    assert calls.pop("getUserName") == "vendor_zhang"
    truth.pop("getUserName")
    assert calls == truth
    assert [t[1] for t in calls["getTables"]] == ["accounts", "audit_trail", "call_records", "customers"]
    assert [c[0] for c in calls["getColumns"]][:4] == ["id", "name", "phone", "id_card"]
    assert calls["getPrimaryKeys"] == [["id", "customers_pkey"]]
    assert calls["getImportedKeys"] == [["customers", "id", "customer_id"]]
    assert len(calls["getTypeInfo"]) > 200


def test_masked_select_and_row_limit(jdbc, clear) -> None:
    got = jdbc("select", arg=CUSTOMERS_SQL + " ORDER BY id")
    truth = clear(CUSTOMERS_SQL + " WHERE branch_id = 12 ORDER BY id")
    assert got["types"] == ["int8", "text", "text", "text", "int4"]
    assert len(got["rows"]) == len(truth) > 0  # the row filter: branch 12 only
    for masked, row in zip(got["rows"], truth, strict=True):
        check_customer(tuple(masked), row)
    assert got["warnings"] == []

    many = jdbc("select", arg="SELECT id, caller FROM call_records")
    assert len(many["rows"]) == 200
    assert many["warnings"] == ["maskgate: result truncated to 200 rows"]


@pytest.mark.parametrize("fetch_size", [50, 64])
def test_fetch_size_reads_the_portal_in_batches(jdbc, clear, fetch_size: int) -> None:
    """setFetchSize with autocommit off: pgjdbc binds a named portal and sends Execute(limit=n)
    until the proxy answers CommandComplete at the role's 200 rows (not PortalSuspended)."""
    got = jdbc("fetchsize", arg=str(fetch_size))
    rows = got["rows"]
    assert [r[0] for r in rows] == list(range(1, 201))
    truth = dict(clear("SELECT id, caller FROM call_records WHERE id <= 200"))
    assert all(r[1] == masked_mobile(truth[r[0]]) for r in rows)
    batches = [e for e in got["executes"] if "portal=C_" in e]
    assert batches == [f"FE=> Execute(portal=C_1,limit={fetch_size})"] * -(-200 // fetch_size)
    assert got["suspended"] == len(batches) - 1
    assert got["warnings"] == ["maskgate: result truncated to 200 rows"]


def test_fetch_size_for_an_unrestricted_role_reads_everything(jdbc, clear) -> None:
    got = jdbc("fetchsize", "dba_wang", "dba-pass", "64")
    truth = clear("SELECT id, caller FROM call_records ORDER BY id")
    assert [tuple(r[:2]) for r in got["rows"]] == truth
    assert len([e for e in got["executes"] if "portal=C_" in e]) == len(truth) // 64 + 1
    assert got["warnings"] == []


def test_prepared_statement_switches_to_a_server_statement(jdbc, clear) -> None:
    """prepareThreshold 5: the first four runs Parse an unnamed statement, then pgjdbc prepares
    S_1 once and only binds it; every run is masked the same way."""
    got = jdbc("prepared")
    assert got["prepare_threshold"] == 5
    truth = {i: (c, d) for i, c, d in clear("SELECT id, caller, duration_s FROM call_records WHERE id <= 8")}
    for i, run in enumerate(got["runs"], start=1):
        assert len(run) == 1
        rid, caller, duration, _started = run[0]
        assert rid == i and duration == truth[i][1]
        assert caller == masked_mobile(truth[i][0])
    assert got["server_prepared"][-1] is True
    select = [p for p in got["parses"] if "call_records" in p]
    assert [p.split(",")[0] for p in select] == ["FE=> Parse(stmt=null"] * 4 + ["FE=> Parse(stmt=S_1"]
    assert sum("stmt=S_1" in b for b in got["binds"]) == 4


def test_refused_statement_leaves_the_connection_usable(jdbc) -> None:
    got = jdbc("refused")
    denied = "ERROR: maskgate: class bank_card (public.customers.bank_card) is denied for this role"
    assert got["autocommit"] == [
        {"error": {"sqlstate": "42501", "message": denied}},
        {"rows": [[1]]},
        {"error": {"sqlstate": "42501", "message": denied}},  # PreparedStatement: refused at Parse
        {"rows": [[1]]},
    ]
    table = "ERROR: maskgate: table public.audit_trail is not allowed for this role"
    aborted = "ERROR: current transaction is aborted, commands ignored until end of transaction block"
    assert got["transaction"] == [
        {"rows": [[2]]},
        {"error": {"sqlstate": "42501", "message": table}},
        {"error": {"sqlstate": "25P02", "message": aborted}},
        {"rows": [[3]]},  # after rollback()
    ]


TLS_LOGINS = 20


@pytest.fixture(scope="module")
def jdbc_tls(jdbc, served, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    other = self_signed_cert(tmp_path_factory.mktemp("other-ca"))
    arg = f"{served['cert']},{other['cert']},{TLS_LOGINS}"
    # A JVM with its default settings, as people run it: the timing of the TLS login matters here.
    return jdbc("tls", arg=arg, params="loginTimeout=10", jvm_opts=())["modes"]


def test_tls_with_another_ca_is_refused_by_the_driver(jdbc_tls) -> None:
    [login] = jdbc_tls["wrong-ca"]
    assert login["error"]["sqlstate"] == "08006"
    assert "PKIX path validation failed" in login["error"]["message"]


def test_tls_require_and_verify_ca(jdbc_tls) -> None:
    """sslmode=require (no certificate check) and verify-ca against the test's own CA, each
    TLS_LOGINS logins (as a connection pool makes), each reading masked values."""
    errors = {mode: [x["error"] for x in jdbc_tls[mode] if "error" in x] for mode in ("require", "verify-ca")}
    failed = {mode: f"{len(e)} of {TLS_LOGINS} logins failed" for mode, e in errors.items() if e}
    example = next((e[0] for e in errors.values() if e), None)
    assert not failed, f"{failed}, e.g. {example}"
    for mode in ("require", "verify-ca"):
        for login in jdbc_tls[mode]:
            assert [r[1].count("*") for r in login["rows"]] == [4, 4, 4]
