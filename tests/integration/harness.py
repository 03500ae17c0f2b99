"""The real App (maskgate serve) in-process, in front of a demo `crm` cluster, for integration tests."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from proxy.app import App
from proxy.config import load_config
from proxy.demo.embedded_mariadb import EmbeddedMariaDB
from proxy.demo.embedded_pg import EmbeddedPostgres, free_port
from tests.conftest import CRM_DESK_PASSWORD, CRM_VENDOR_PASSWORD, start_crm

REPO = Path(__file__).resolve().parents[2]
DEMO_POLICY = REPO / "policies" / "examples" / "demo.yaml"


class Running:
    """An App on its own event loop thread, so synchronous clients can talk to it."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(app.start())

    def call(self, coro: Any, timeout: float = 60) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def stop(self) -> None:
        self.call(self.app.stop(2))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def self_signed_cert(d: Path, host: str = "localhost") -> dict[str, str]:
    """A throwaway EC key and self-signed certificate for `host`, written as PEM into `d`.

    Returns {"cert": path, "key": path}, the shape of the config's `postgres.tls`.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    paths = {"cert": str(d / "server.crt"), "key": str(d / "server.key")}
    Path(paths["cert"]).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(paths["key"]).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@contextmanager
def serve_demo(
    d: Path,
    pg: EmbeddedPostgres | None,
    service_password: str,
    *,
    tls: bool = False,
    extra_policy: str = "",
    config_lines: str = "",
    mysql: EmbeddedMariaDB | None = None,
    mysql_params: str = "",
) -> Iterator[dict[str, Any]]:
    """The demo policy (copied into `d`, so a test may edit it), audit log and metrics endpoint.

    With `tls`, the listener also offers TLS with a self-signed certificate (`postgres.tls`),
    whose PEM path is yielded as "cert"; clients that do not ask for TLS still connect in clear.
    `extra_policy` is a second policy file merged with the demo's (more roles and users);
    `config_lines` more top-level lines of the config file (e.g. `audit_required: true`).
    With `mysql`, a MySQL listener in front of that MariaDB too (its port is yielded as
    "mysql_port"); `pg` may then be None for a MySQL-only proxy."""
    policy = d / "policy" / "policy.yaml"
    policy.parent.mkdir()
    shutil.copy(DEMO_POLICY, policy)
    if extra_policy:
        (d / "policy" / "extra.yaml").write_text(extra_policy)
    port, mport, myport = free_port(), free_port(), free_port()
    cert = self_signed_cert(d)["cert"] if tls else None
    tls_line = "  tls: {cert: server.crt, key: server.key}\n" if tls else ""
    text = f"policy: policy\naudit_log: audit.jsonl\nmetrics: 127.0.0.1:{mport}\n{config_lines}"
    if pg is not None:
        text += (
            f"postgres:\n  listen: 127.0.0.1:{port}\n"
            f"  upstream: postgresql://maskgate_svc:${{T_UPSTREAM}}@127.0.0.1:{pg.port}/crm?sslmode=disable\n"
            + tls_line
            + '  database_roles: {crm_vendor: "${T_VENDOR}"}\n'
        )
    if mysql is not None:
        text += (
            f"mysql:\n  listen: 127.0.0.1:{myport}\n"
            f"  upstream: mysql://maskgate_svc:${{T_UPSTREAM}}@127.0.0.1:{mysql.port}/crm{mysql_params}\n"
            + tls_line
            + '  database_roles: {crm_vendor: "${T_VENDOR}", crm_desk: "${T_DESK}"}\n'
        )
    (d / "maskgate.yaml").write_text(text)
    env = {"T_UPSTREAM": service_password, "T_VENDOR": CRM_VENDOR_PASSWORD, "T_DESK": CRM_DESK_PASSWORD}
    config = load_config(d / "maskgate.yaml", env=env)
    running = Running(App(config, registry=CollectorRegistry()))
    try:
        yield {
            "port": port,
            "metrics": mport,
            "dir": d,
            "policy": policy,
            "app": running.app,
            "pg": pg,
            "cert": cert,
            "mysql_port": myport,
            "mysql": mysql,
        }
    finally:
        running.stop()


@contextmanager
def crm_database(
    factory: pytest.TempPathFactory, name: str, service_password: str, customers: int
) -> Iterator[EmbeddedPostgres]:
    """A module's own PostgreSQL with the demo's crm database, destroyed when the module ends."""
    pg = start_crm(factory.mktemp(name), service_password, customers)
    try:
        yield pg
    finally:
        pg.destroy()


def connect_proxy(served: dict[str, Any], who: tuple[str, str], **kw: Any) -> psycopg.Connection[Any]:
    """A psycopg connection to the proxy of serve_demo, as `who` (user, password), in clear."""
    return psycopg.connect(
        host="127.0.0.1",
        port=served["port"],
        user=who[0],
        password=who[1],
        dbname="crm",
        sslmode="disable",
        **kw,
    )


# Audit fields that are random or keyed hex (ids, hashes, revisions): an 11-digit run inside one
# is chance, not a number the log holds (a keyed hash changes with every process's key).
_HEX_FIELDS = frozenset({"id", "session", "sql_hash", "fingerprint", "policy_revision"})


def audit_values(records: list[dict[str, Any]]) -> str:
    """The audit records' text without their hex ids and hashes: what must hold no number."""
    return json.dumps(
        [{k: v for k, v in r.items() if k not in _HEX_FIELDS} for r in records], ensure_ascii=False
    )
