"""`maskgate demo` serves TLS out of the box: a self-signed certificate it makes once in its
directory and reuses, so `sslmode=require` clients connect without any set-up."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from cryptography import x509

from proxy.demo.certs import demo_certificate
from proxy.demo.embedded_pg import free_port

REPO = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, "-m", "proxy.cli", "demo"]


def _wait_for_line(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(
        path.read_text(errors="replace") + (path.with_suffix(".err")).read_text(errors="replace")
    )


def test_demo_serves_tls_with_its_own_certificate(tmp_path: Path) -> None:
    port = free_port()
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [*DEMO, "--dir", str(tmp_path / "demo"), "--port", str(port), "--customers", "200"],
            stdout=o,
            stderr=e,
            cwd=REPO,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    try:
        _wait_for_line(out, "serving until Ctrl-C", proc, timeout=180)
        with psycopg.connect(
            host="127.0.0.1",
            port=port,
            user="vendor_zhang",
            password="vendor-pass",
            dbname="crm",
            sslmode="require",
        ) as c:
            assert c.pgconn.ssl_in_use
            (phone,) = c.execute("SELECT phone FROM customers LIMIT 1").fetchone() or ("",)
            assert "****" in phone
        # Clients that do not ask for TLS still connect (sslmode=disable).
        with psycopg.connect(
            host="127.0.0.1", port=port, user="dba_wang", password="dba-pass", dbname="crm", sslmode="disable"
        ) as c:
            assert not c.pgconn.ssl_in_use
        assert 'sslmode=require"' in out.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    cert = tmp_path / "demo" / "tls" / "server.crt"
    assert cert.exists() and (cert.with_name("server.key").stat().st_mode & 0o077) == 0


def test_the_certificate_is_reused_while_valid_and_remade_otherwise(tmp_path: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    cert, key, made = demo_certificate(tmp_path, now)
    assert made
    first = cert.read_bytes()
    parsed = x509.load_pem_x509_certificate(first)
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    # Reused as long as it is valid for more than a week.
    assert demo_certificate(tmp_path, now + datetime.timedelta(days=300)) == (cert, key, False)
    assert cert.read_bytes() == first
    # Near its end, or with a key that is not its own, or damaged: made again.
    _, _, made = demo_certificate(tmp_path, now + datetime.timedelta(days=360))
    assert made and cert.read_bytes() != first
    other = tmp_path / "other"
    demo_certificate(other, now)
    key.write_bytes((other / "server.key").read_bytes())
    assert demo_certificate(tmp_path, now)[2]
    cert.write_text("not a certificate")
    assert demo_certificate(tmp_path, now)[2]
