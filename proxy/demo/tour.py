"""`make demo`: the real proxy in front of an embedded PostgreSQL (and a private MariaDB, when its
binaries are on PATH) seeded with fake zh_CN customers.

Owns the demo's set-up (database, service account, seed, config), the printed tour and the
serving loop. It runs the same `App` as `maskgate serve`; nothing here is a mock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from . import http_tour
from .certs import demo_certificate
from .embedded_pg import EmbeddedPostgres, bin_dir, free_port

REPO = Path(__file__).resolve().parents[2]
DEMO_POLICY = REPO / "policies" / "examples" / "demo.yaml"
SERVICE_ACCOUNT = "maskgate_svc"
USERS = {
    "vendor": ("vendor_zhang", "vendor-pass"),
    "desk": ("desk_li", "desk-pass"),
    "dba": ("dba_wang", "dba-pass"),
}


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _secret(base: Path, name: str) -> str:
    """A random password kept in `base/name` (0600), made on first use."""
    path = base / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def prepare_database(base: Path, customers: int) -> tuple[EmbeddedPostgres, str, str]:
    """Start (or reuse) the embedded cluster, create the service account and the database roles
    the policy runs as, and seed `crm`. Returns the cluster and the passwords of the service
    account and of crm_vendor."""
    import psycopg

    from .data import database_roles_sql, seed

    pg = EmbeddedPostgres(base / "pg").start()
    password = _secret(base, "upstream_password")
    vendor_password = _secret(base, "crm_vendor_password")
    exists = pg.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{SERVICE_ACCOUNT}'")
    verb = "ALTER" if exists.strip() else "CREATE"
    pg.psql(f"{verb} ROLE {SERVICE_ACCOUNT} LOGIN PASSWORD '{password}'")
    pg.psql(database_roles_sql(SERVICE_ACCOUNT, vendor_password))
    if not pg.psql("SELECT 1 FROM pg_database WHERE datname = 'crm'").strip():
        pg.psql(f"CREATE DATABASE crm OWNER {SERVICE_ACCOUNT}")
    with psycopg.connect(pg.dsn(SERVICE_ACCOUNT, password, "crm")) as conn:
        seed(conn, customers)
    return pg, password, vendor_password


def prepare_mariadb(base: Path, customers: int, password: str, vendor_password: str) -> Any:
    """Start (or reuse) a private MariaDB from PATH with the same `crm` data, service account and
    database roles; None when its binaries are not installed (the demo then skips the MySQL side)."""
    from . import embedded_mariadb
    from .data import mysql_database_roles_sql, seed_mysql

    if not embedded_mariadb.available():
        return None
    db = embedded_mariadb.EmbeddedMariaDB(base / "mariadb").start()
    db.sql("CREATE DATABASE IF NOT EXISTS crm CHARACTER SET utf8mb4")
    db.sql(
        mysql_database_roles_sql(
            SERVICE_ACCOUNT, password, vendor_password, desk_password=_secret(base, "crm_desk_password")
        )
    )
    conn = db.connect("crm", autocommit=False)
    try:
        seed_mysql(conn, customers)
    finally:
        conn.close()
    return db


def write_config(
    base: Path,
    pg_port: int,
    listen_port: int,
    metrics_port: int,
    tls: tuple[Path, Path] | None = None,
    mysql: tuple[int, int] | None = None,
    http: tuple[int, int] | None = None,
) -> Path:
    """The demo's maskgate.yaml; `mysql` and `http` are (listen port, upstream port) of the sides
    the demo runs (the HTTP side needs `tls`: Basic credentials never cross plain HTTP)."""
    path = base / "maskgate.yaml"
    tls_lines = (
        "  # A self-signed certificate the demo made for localhost (clients: sslmode=require).\n"
        f"  tls: {{cert: {json.dumps(str(tls[0]))}, key: {json.dumps(str(tls[1]))}}}\n"
        if tls
        else ""
    )
    path.write_text(
        "# Written by `make demo`. Passwords come from the environment, never the file.\n"
        f"policy: {DEMO_POLICY}\n"
        "audit_log: audit.jsonl\n"
        f"metrics: 127.0.0.1:{metrics_port}\n"
        "postgres:\n"
        f"  listen: 127.0.0.1:{listen_port}\n"
        f"  upstream: postgresql://{SERVICE_ACCOUNT}:${{MASKGATE_UPSTREAM_PASSWORD}}@127.0.0.1:{pg_port}/crm\n"
        "  # vendor's statements run as crm_vendor (logged in with its password); desk's as\n"
        "  # crm_desk, taken with SET ROLE (no password here).\n"
        "  database_roles:\n"
        "    crm_vendor: ${CRM_VENDOR_PASSWORD}\n"
        + tls_lines
        + _mysql_section(mysql, tls_lines)
        + (http_tour.config_section(http[0], http[1], tls) if http and tls else "")
    )
    return path


def _mysql_section(mysql: tuple[int, int] | None, tls_lines: str) -> str:
    """The MySQL listener in front of the demo's MariaDB: (listen port, MariaDB port)."""
    if mysql is None:
        return ""
    listen, upstream = mysql
    return (
        "mysql:\n"
        f"  listen: 127.0.0.1:{listen}\n"
        f"  upstream: mysql://{SERVICE_ACCOUNT}:${{MASKGATE_UPSTREAM_PASSWORD}}@127.0.0.1:{upstream}/crm\n"
        "  # Every database role logs in as its own account here: a MariaDB role taken with SET\n"
        "  # ROLE would add its rights to the service account's instead of limiting them.\n"
        "  database_roles:\n"
        "    crm_vendor: ${CRM_VENDOR_PASSWORD}\n"
        "    crm_desk: ${CRM_DESK_PASSWORD}\n" + tls_lines
    )


def mariadb_client() -> str | None:
    import shutil

    return shutil.which("mariadb") or shutil.which("mysql")


def mysql_tour(port: int) -> str:
    """The vendor and the DBA through the MySQL listener with the `mariadb` command-line client
    (PyMySQL when the client is not installed): the same masks as through psql."""
    import subprocess

    out: list[str] = []
    say = out.append
    same = "SELECT id, name, phone, id_card, email FROM customers ORDER BY id LIMIT 5"
    say(f"\n== 6. The same query through the MySQL listener (MariaDB behind it) ==\n   {same}\n")
    client = mariadb_client()
    for who in ("dba", "vendor"):
        user, password = USERS[who]
        say(f"-- as {user} ({who}), {'the mariadb client' if client else 'PyMySQL'}")
        if client:
            res = subprocess.run(
                [
                    client,
                    "-h127.0.0.1",
                    f"-P{port}",
                    f"-u{user}",
                    f"-p{password}",
                    "--table",
                    "crm",
                    "-e",
                    same,
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            say("\n".join("  " + line for line in (res.stdout or res.stderr).strip().splitlines()))
        else:
            import pymysql

            with (
                pymysql.connect(
                    host="127.0.0.1", port=port, user=user, password=password, database="crm"
                ) as conn,
                conn.cursor() as cur,
            ):
                cur.execute(same)
                say(_table([d[0] for d in cur.description], list(cur.fetchall())))
        say("")
    return "\n".join(out)


def _query(port: int, who: str, sql: str) -> tuple[list[str], list[tuple[Any, ...]], list[str], str | None]:
    """Run one statement through the proxy as a demo user: (columns, rows, notices, error)."""
    import psycopg

    user, password = USERS[who]
    notices: list[str] = []
    with psycopg.connect(host="127.0.0.1", port=port, user=user, password=password, dbname="crm") as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        try:
            cur = conn.execute(sql)
        except psycopg.Error as exc:
            return [], [], notices, f"{exc.sqlstate}: {exc.diag.message_primary}"
        cols = [d.name for d in cur.description or []]
        return cols, cur.fetchall(), notices, None


def _table(cols: list[str], rows: list[tuple[Any, ...]]) -> str:
    cells = [cols] + [["NULL" if v is None else str(v) for v in r] for r in rows]
    widths = [max(_width(r[i]) for r in cells) for i in range(len(cols))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  " + " | ".join(v + " " * (w - _width(v)) for v, w in zip(r, widths, strict=True)))
        if n == 0:
            lines.append("  " + "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _width(s: str) -> int:
    # CJK characters take two columns in a terminal.
    return sum(2 if ord(c) > 0x2E80 else 1 for c in s)


def tour(port: int, metrics_port: int) -> str:
    out: list[str] = []
    say = out.append
    same = "SELECT id, name, phone, id_card, email FROM customers ORDER BY id LIMIT 5"
    say(f"\n== 1. The same query, as the DBA and as the outsourced vendor ==\n   {same}\n")
    for who in ("dba", "vendor"):
        cols, rows, _, err = _query(port, who, same)
        note = "   (row filter: only branch 12)" if who == "vendor" else ""
        say(f"-- as {USERS[who][0]} ({who}){note}")
        say(_table(cols, rows) if err is None else f"  refused: {err}")
        say("")
    notes = "SELECT id, notes FROM call_records WHERE id IN (2, 3, 5) ORDER BY id"
    say(
        f"-- free-text notes (class free_text) reach the vendor with every number masked in place\n   {notes}"
    )
    cols, rows, _, err = _query(port, "vendor", notes)
    say(_table(cols, rows) if err is None else f"  refused: {err}")
    say("")
    refusals = [
        ("SELECT name, bank_card FROM customers LIMIT 3", "a class the vendor may not see at all"),
        (
            "SELECT ('x' || substr(phone, 4, 4))::int FROM customers LIMIT 1",
            "reading the hidden digits back through a failing cast",
        ),
        ("SELECT id FROM customers WHERE phone LIKE '138%'", "guessing numbers through a predicate"),
        (
            "SELECT upper(phone) || '' AS p FROM customers LIMIT 3",
            "laundering through an expression (redacted)",
        ),
        ("SELECT * FROM audit_trail", "a table outside the vendor's grant"),
    ]
    say("== 2. What the vendor cannot do ==")
    for sql, why in refusals:
        cols, rows, _, err = _query(port, "vendor", sql)
        say(f"-- {why}\n   {sql}")
        say(f"  refused: {err}" if err else _table(cols, rows))
        say("")
    say("== 3. A result cut at the role's row limit ==")
    sql = "SELECT id, caller, started_at FROM call_records"
    cols, rows, notices, err = _query(port, "vendor", sql)
    say(f"   {sql}")
    warned = "; ".join(notices)
    say(f"  refused: {err}" if err else f"  {len(rows)} rows reached the vendor; warning: {warned}")
    say("")
    say("== 4. Who the database sees ==")
    import psycopg

    vendor_user, vendor_password = USERS["vendor"]
    with psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=vendor_user,
        password=vendor_password,
        dbname="crm",
        application_name="report-tool",
    ) as held:
        held.execute("SELECT 1")
        sql = (
            "SELECT usename, application_name FROM pg_stat_activity "
            "WHERE application_name LIKE 'maskgate:%' ORDER BY 2"
        )
        cols, rows, _, err = _query(port, "dba", sql)
    say(f"   (as the DBA, while the vendor is connected with application_name report-tool)\n   {sql}")
    say(_table(cols, rows) if err is None else f"  refused: {err}")
    say("   The vendor's statements run as crm_vendor, which may only SELECT: the database refuses a")
    say("   write even if maskgate were fooled. Every backend names the person behind it.")
    say("")
    say("== 5. What the metrics endpoint counted ==")
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(
            (
                "maskgate_blocked_queries_total",
                "maskgate_masked_values_total",
                "maskgate_truncated_results_total",
            )
        ) or line.startswith("maskgate_queries_total"):
            say("  " + line)
    return "\n".join(out)


async def run(args: argparse.Namespace) -> int:
    from proxy.app import App
    from proxy.config import load_config

    base = Path(args.dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    print("maskgate demo: starting an embedded PostgreSQL and seeding `crm` with fake zh_CN customers…")
    pg, password, vendor_password = await asyncio.to_thread(prepare_database, base, args.customers)
    mariadb = await asyncio.to_thread(prepare_mariadb, base, args.customers, password, vendor_password)
    if mariadb is None:
        print(
            "maskgate demo: no mariadbd on PATH, so no MySQL side "
            "(apt-get install -y mariadb-server mariadb-client to add it)"
        )
    port = args.port if _port_free(args.port) else free_port()
    metrics_port = 9187 if _port_free(9187) else free_port()
    mysql_port = 3307 if _port_free(3307) else free_port()
    cert, key, made = await asyncio.to_thread(demo_certificate, base / "tls")
    mysql = (mysql_port, mariadb.port) if mariadb is not None else None
    # The HTTP side: the CRM API over the same database, started before the proxy in front of it.
    api = None
    http_port = 8443 if _port_free(8443) else free_port()
    why_not = await asyncio.to_thread(http_tour.unavailable, DEMO_POLICY)
    if why_not is None:
        from .crm_api import start as start_api

        api = await start_api(pg.dsn(SERVICE_ACCOUNT, password, "crm"))
    else:
        print(f"maskgate demo: no HTTP side: {why_not}")
    http = (http_port, api.port) if api is not None else None
    cfg_path = write_config(base, pg.port, port, metrics_port, (cert, key), mysql, http)
    os.environ["MASKGATE_UPSTREAM_PASSWORD"] = password
    os.environ["CRM_VENDOR_PASSWORD"] = vendor_password
    os.environ["CRM_DESK_PASSWORD"] = _secret(base, "crm_desk_password")
    config = load_config(cfg_path)
    app = App(config)
    try:
        await app.start()
    except BaseException:
        if api is not None:
            await api.stop()
        raise
    print(
        f"maskgate demo: proxy on 127.0.0.1:{port} (TLS with the self-signed {cert}, "
        f"{'made now' if made else 'reused'}), database on 127.0.0.1:{pg.port} "
        f"(ready in {time.monotonic() - t0:.1f}s)"
    )
    try:
        print(await asyncio.to_thread(tour, port, metrics_port))
        if mariadb is not None:
            print(await asyncio.to_thread(mysql_tour, mysql_port))
        if api is not None:
            section = 7 if mariadb is not None else 6
            print(await asyncio.to_thread(http_tour.tour, http_port, cert, USERS, section, metrics_port))
        psql = bin_dir() / "psql"
        print("\n== Try it yourself ==")
        for who, (user, pw) in USERS.items():
            print(
                f'  PGPASSWORD={pw} {psql} "host=127.0.0.1 port={port} user={user} dbname=crm '
                f'sslmode=require"    # {who}'
            )
        client = mariadb_client()
        if mariadb is not None and client:
            for who, (user, pw) in USERS.items():
                print(f"  {client} -h127.0.0.1 -P{mysql_port} -u{user} -p{pw} crm    # {who}, through MySQL")
        if api is not None:
            for who in ("dba", "vendor"):
                url = f"https://127.0.0.1:{http_port}/api/clients/{http_tour.CLIENT}"
                print(f"  {http_tour.curl(url, USERS[who], cert)}    # {who}, through HTTP")
            print(f"  curl -s {api.url}/api/clients/{http_tour.CLIENT}    # the CRM API itself, unmasked")
        print(f"  curl -s http://127.0.0.1:{metrics_port}/metrics | grep ^maskgate_")
        print(f"  tail -f {base / 'audit.jsonl'}")
        if args.no_wait:
            return 0
        print("\nmaskgate demo: serving until Ctrl-C.", flush=True)
        app.install_signal_handlers()
        await app.wait()
    finally:
        await app.stop()
        if api is not None:
            await api.stop()
        pg.stop()
        if mariadb is not None:
            mariadb.stop()
        print("maskgate demo: stopped.", file=sys.stderr)
    return 0
