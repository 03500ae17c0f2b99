"""node-postgres (`pg`) and `pg-cursor` through the real proxy with the demo policy.

The versions are pinned by node/package-lock.json; `npm ci` installs them once per session into a
temporary folder, next to a copy of node/driver.js. Each test runs one scenario of driver.js and
asserts on the JSON it prints.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clients.expect import CUSTOMERS_SQL, check_customer, masked_mobile
from tests.integration.harness import self_signed_cert

pytestmark = pytest.mark.integration

NODE_DIR = Path(__file__).parent / "node"
# npm's codes for a registry it cannot reach: the packages are missing, not broken.
NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH")


@pytest.fixture(scope="session")
def node_driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """driver.js with pg and pg-cursor installed beside it by `npm ci` from the lockfile."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node/npm not found: apt-get install nodejs npm")
    d = tmp_path_factory.mktemp("node-clients")
    for name in ("package.json", "package-lock.json", "driver.js"):
        shutil.copy(NODE_DIR / name, d / name)
    res = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
        cwd=d,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if res.returncode != 0 and any(code in res.stderr for code in NETWORK_ERRORS):
        pytest.skip(f"npm ci could not reach the npm registry for pg, pg-cursor: {res.stderr.strip()[-300:]}")
    assert res.returncode == 0, res.stderr
    return d / "driver.js"


@pytest.fixture(scope="module")
def node(node_driver: Path, served: dict[str, Any]) -> Any:
    def run(scenario: str, user: str = "vendor_zhang", password: str = "vendor-pass", arg: str = "") -> Any:
        res = subprocess.run(
            ["node", str(node_driver), scenario, str(served["port"]), user, password, arg],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stderr
        result = json.loads(res.stdout)
        assert "uncaught" not in result, result["uncaught"]
        return result

    return run


def test_connect_with_scram_and_a_wrong_password(node) -> None:
    got = node("connect")
    assert got["server_version"]
    assert got["wrong_password"] == {
        "code": "28P01",
        "message": 'maskgate: password authentication failed for user "vendor_zhang"',
        "severity": "FATAL",
    }


def _customer(r: dict[str, Any]) -> tuple[Any, ...]:
    # node-postgres returns int8 as a string (it does not fit a JS number), int4 as a number.
    return (int(r["id"]), r["name"], r["phone"], r["id_card"], r["branch_id"])


def test_masked_query_and_row_limit_notice(node, clear) -> None:
    got = node("select", arg=CUSTOMERS_SQL + " ORDER BY id")
    truth = clear(CUSTOMERS_SQL + " WHERE branch_id = 12 ORDER BY id")
    assert got["fields"] == ["id", "name", "phone", "id_card", "branch_id"]
    assert len(got["rows"]) == len(truth) > 0
    for masked, row in zip(got["rows"], truth, strict=True):
        check_customer(_customer(masked), row)
    assert got["many"] == got["many_rowCount"] == 200
    assert got["notices"] == [{"code": "01000", "message": "maskgate: result truncated to 200 rows"}]


def test_parameterized_and_named_prepared_queries(node, clear) -> None:
    truth = clear(CUSTOMERS_SQL + " WHERE branch_id = 12 ORDER BY id LIMIT 3")
    outside = clear("SELECT id FROM customers WHERE branch_id <> 12 ORDER BY id LIMIT 1")[0][0]
    ids = [r[0] for r in truth] + [outside]
    got = node("params", arg=json.dumps(ids))
    check_customer(_customer(got["one"][0]), truth[0])
    # The named statement is parsed once and bound four times; the row filter holds for each Bind.
    assert [len(rows) for rows in got["named"]] == [1, 1, 1, 0]
    for rows, row in zip(got["named"][:3], truth, strict=True):
        check_customer(_customer(rows[0]), row)
    assert got["limited"] == 200
    assert got["notices"] == [{"code": "01000", "message": "maskgate: result truncated to 200 rows"}]


@pytest.mark.parametrize("size", [50, 64])
def test_pg_cursor_reads_in_batches(node, clear, size: int) -> None:
    """pg-cursor: Execute(rows=size) + Flush per read on one unnamed portal, no Sync in between."""
    got = node("cursor", arg=str(size))
    assert got["error"] is None
    full, rest = divmod(200, size)
    assert got["batches"] == [size] * full + ([rest] if rest else [])
    truth = dict(clear("SELECT id, caller FROM call_records WHERE id <= 200"))
    assert [int(r["id"]) for r in got["rows"]] == list(range(1, 201))
    assert all(r["caller"] == masked_mobile(truth[int(r["id"])]) for r in got["rows"])
    assert got["notices"] == [{"code": "01000", "message": "maskgate: result truncated to 200 rows"}]
    assert got["after"]["rows"] == [{"one": 1}]


def test_refused_statements_leave_the_connection_usable(node) -> None:
    got = node("refused")["results"]
    denied = {
        "code": "42501",
        "message": "maskgate: class bank_card (public.customers.bank_card) is denied for this role",
        "severity": "ERROR",
    }
    assert got[0] == {"error": denied}  # simple query
    assert got[1]["rows"] == [{"one": 1}]
    assert got[2] == {"error": denied}  # extended protocol
    assert got[3]["rows"] == [{"two": 2}]
    assert got[4]["command"] == "BEGIN"
    assert got[5]["error"]["code"] == "42501"
    assert got[5]["error"]["message"] == "maskgate: table public.audit_trail is not allowed for this role"
    assert got[6]["error"]["code"] == "25P02"  # the transaction is failed, as PostgreSQL would have it
    assert got[7]["command"] == "ROLLBACK"
    assert got[8]["rows"] == [{"three": 3}]


@pytest.fixture(scope="module")
def node_tls(node, served, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    other = self_signed_cert(tmp_path_factory.mktemp("other-ca-node"))
    return node("tls", arg=f"{served['cert']},{other['cert']}")["modes"]


def test_tls_with_another_ca_is_refused_by_the_client(node_tls) -> None:
    assert node_tls["wrong-ca"]["error"]["code"] == "DEPTH_ZERO_SELF_SIGNED_CERT"


def test_tls_require_and_verify_ca(node_tls) -> None:
    for mode in ("require", "verify-ca"):
        got = node_tls[mode]
        assert "error" not in got, f"{mode}: {got.get('error')}"
        assert got["encrypted"] is True
        assert [r["caller"].count("*") for r in got["rows"]] == [4, 4, 4]
