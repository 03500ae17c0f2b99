"""psycopg 3 through the real proxy where test_serve.py does not go: TLS and server-side cursors."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.integration.clients.expect import masked_mobile
from tests.integration.harness import self_signed_cert

pytestmark = pytest.mark.integration

TLS_LOGINS = 30


def _dsn(served: dict[str, Any], **params: str) -> str:
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    return f"postgresql://vendor_zhang:vendor-pass@127.0.0.1:{served['port']}/crm?connect_timeout=10{extra}"


def test_tls_with_another_ca_is_refused_by_libpq(served, tmp_path) -> None:
    other = self_signed_cert(tmp_path)
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(_dsn(served, sslmode="verify-ca", sslrootcert=other["cert"]))


def test_plaintext_still_works_when_tls_is_offered(served) -> None:
    with psycopg.connect(_dsn(served, sslmode="disable")) as conn:
        assert not conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("mode", ["require", "verify-ca"])
def test_tls_logins_read_masked_values(served, clear, mode: str) -> None:
    """TLS_LOGINS logins in a row (as a pool opens them), each over TLS, each reading masked values."""
    params = {"sslmode": mode}
    if mode == "verify-ca":
        params["sslrootcert"] = served["cert"]
    truth = clear("SELECT id, caller FROM call_records ORDER BY id LIMIT 3")
    failures: list[str] = []
    for _ in range(TLS_LOGINS):
        try:
            conn = psycopg.connect(_dsn(served, **params))
        except psycopg.OperationalError as e:
            failures.append(str(e).strip().splitlines()[-1])
            continue
        with conn:
            assert conn.pgconn.ssl_in_use
            rows = conn.execute("SELECT id, caller FROM call_records ORDER BY id LIMIT 3").fetchall()
            assert rows == [(i, masked_mobile(c)) for i, c in truth]
    assert failures == [], f"{len(failures)} of {TLS_LOGINS} TLS logins failed, e.g. {failures[0]}"


def test_named_cursor_reads_masked_rows_in_batches(served, clear) -> None:
    truth = dict(clear("SELECT id, caller FROM call_records WHERE id <= 200"))
    with psycopg.connect(_dsn(served, sslmode="disable")) as conn, conn.cursor("batches") as cur:
        cur.itersize = 64
        cur.execute("SELECT id, caller FROM call_records ORDER BY id")
        first = cur.fetchmany(64)
        rest = cur.fetchall()
    rows = first + rest
    assert [r[0] for r in rows] == list(range(1, 201))  # max_rows holds across FETCHes
    assert all(c == masked_mobile(truth[i]) for i, c in rows)
