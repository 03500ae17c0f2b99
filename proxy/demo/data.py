"""The demo/bench `crm` database: its tables and a deterministic faker zh_CN seed.

Owns the DDL, the database roles the demo policy runs as with their grants, and the generated
rows (through a psycopg connection or SQL it hands out), for PostgreSQL and, in MySQL types with
MariaDB's roles and users, for MySQL/MariaDB (through a PyMySQL connection). Used by `make demo`,
`make bench` and the integration tests, so all three see the same shape of data and the same
least-privileged roles.
"""

from __future__ import annotations

import datetime as dt
import io
import random
from collections.abc import Iterator

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS customers (
    id          bigint PRIMARY KEY,
    name        text NOT NULL,
    phone       text NOT NULL,
    id_card     text NOT NULL,
    bank_card   text,
    email       text,
    branch_id   integer NOT NULL,
    address     text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS call_records (
    id           bigint PRIMARY KEY,
    customer_id  bigint REFERENCES customers(id),
    caller       text NOT NULL,
    callee       text NOT NULL,
    started_at   timestamptz NOT NULL,
    duration_s   integer NOT NULL,
    notes        text
);
CREATE TABLE IF NOT EXISTS accounts (
    id           bigint PRIMARY KEY,
    customer_id  bigint REFERENCES customers(id),
    account_no   text NOT NULL,
    balance      numeric(14, 2) NOT NULL,
    opened_at    date NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_trail (
    id      bigserial PRIMARY KEY,
    actor   text NOT NULL,
    action  text NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS call_records_customer ON call_records (customer_id);
"""

# The database roles the demo policy's roles run as (policies/examples/demo.yaml, `database_role`),
# each with the rights its policy role needs and nothing more, so the database refuses a write
# (or another branch's customers) even if maskgate were fooled. This is the setup a DBA does once.
VENDOR_ROLE, DESK_ROLE = "crm_vendor", "crm_desk"


def database_roles_sql(service_account: str, vendor_password: str) -> str:
    """Cluster-wide, as a superuser (idempotent): crm_vendor logs in with its own password (maskgate
    has it in its config); crm_desk cannot log in, and the service account may SET ROLE to it."""
    quoted = vendor_password.replace("'", "''")
    return f"""
DO $$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{VENDOR_ROLE}') THEN
    CREATE ROLE {VENDOR_ROLE};
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{DESK_ROLE}') THEN
    CREATE ROLE {DESK_ROLE};
  END IF;
END$$;
ALTER ROLE {VENDOR_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD '{quoted}';
ALTER ROLE {DESK_ROLE} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
GRANT {DESK_ROLE} TO {service_account};
-- diagnosis: other sessions' SQL in pg_stat_activity and pg_stat_statements, which maskgate
-- serves with the customer numbers in it masked (the query column is free_text)
GRANT pg_read_all_stats TO {VENDOR_ROLE}, {DESK_ROLE};
"""


# In the crm database, as the tables' owner (idempotent). vendor: SELECT on the tables it may read
# (not audit_trail; accounts without account_no, a bank_card it may not see), and only branch 12
# of customers, its row filter, as a row-level security policy. customers is granted whole: the
# row filter's rewrite reads `SELECT * FROM customers`, and bank_card is refused by maskgate.
# desk: reads customers and call_records and updates contact details.
GRANTS_SQL = f"""
REVOKE ALL ON customers, call_records, accounts, audit_trail FROM {VENDOR_ROLE}, {DESK_ROLE};
GRANT SELECT ON customers, call_records TO {VENDOR_ROLE}, {DESK_ROLE};
GRANT SELECT (id, customer_id, balance, opened_at) ON accounts TO {VENDOR_ROLE};
GRANT UPDATE (phone, email, address) ON customers TO {DESK_ROLE};
-- vendor may read every table of crm but audit_trail: tables created later are readable too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {VENDOR_ROLE};
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS vendor_branch ON customers;
CREATE POLICY vendor_branch ON customers FOR SELECT TO {VENDOR_ROLE} USING (branch_id = 12);
DROP POLICY IF EXISTS desk_customers ON customers;
CREATE POLICY desk_customers ON customers TO {DESK_ROLE} USING (true) WITH CHECK (true);
"""

HOTLINE = "95588"  # the brokerage hotline whose callers the insider case was about
# Faker's zh_CN numbers stop at the 2010s segments; newer ones must be in the data too.
_NEW_SEGMENTS = ("166", "173", "177", "191", "192", "193", "195", "196", "198", "199")

_NOTES = (
    "客户来电咨询开户进度，回拨号码{phone}。",
    "客户要求修改预留手机号为{phone2}，已核实身份证{id_card}。",
    "客户反映银行卡{card}转账失败，已转二线。",
    "客户咨询理财产品，无异常。",
    "客户称收到陌生来电推荐股票，来电号码{phone2}，已提醒防骗。",
    "常规回访，客户满意。",
)


def _mobile(fake: object, rnd: random.Random) -> str:
    if rnd.random() < 0.3:
        return rnd.choice(_NEW_SEGMENTS) + f"{rnd.randrange(10**8):08d}"
    return fake.phone_number()  # type: ignore[attr-defined]


def _tsv(value: object) -> str:
    if value is None:
        return "\\N"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def generate(customers: int, seed: int = 20261122) -> Iterator[tuple[str, list[tuple[object, ...]]]]:
    """Rows per table, deterministic for a seed."""
    from faker import Faker

    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    rnd = random.Random(seed)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cust: list[tuple[object, ...]] = []
    phones: list[str] = []
    for i in range(1, customers + 1):
        phone = _mobile(fake, rnd)
        phones.append(phone)
        cust.append(
            (
                i,
                fake.name(),
                phone,
                fake.ssn(),
                fake.credit_card_number("unionpay") if rnd.random() < 0.9 else None,
                fake.free_email(),
                rnd.randrange(1, 21),
                fake.address(),
                (base + dt.timedelta(minutes=i)).isoformat(),
            )
        )
    yield "customers", cust
    calls: list[tuple[object, ...]] = []
    for i in range(1, customers * 2 + 1):
        c = cust[rnd.randrange(customers)]
        template = rnd.choice(_NOTES)
        notes = template.format(phone=c[2], phone2=_mobile(fake, rnd), id_card=c[3], card=c[4] or "")
        calls.append(
            (
                i,
                c[0],
                c[2],
                HOTLINE,
                (base + dt.timedelta(seconds=37 * i)).isoformat(),
                rnd.randrange(5, 900),
                notes,
            )
        )
    yield "call_records", calls
    accounts = [
        (
            i,
            i,
            f"A{rnd.randrange(10**11):011d}",
            f"{rnd.randrange(0, 10**8) / 100:.2f}",
            (base.date() - dt.timedelta(days=rnd.randrange(3000))).isoformat(),
        )
        for i in range(1, customers + 1)
    ]
    yield "accounts", accounts


def seed(conn: object, customers: int = 10_000) -> int:
    """Create the tables, grant the database roles (`database_roles_sql` must have run) and fill
    the tables when empty. Returns the number of customers present."""
    cur = conn.cursor()  # type: ignore[attr-defined]
    cur.execute(SCHEMA_SQL)
    cur.execute(GRANTS_SQL)
    cur.execute("SELECT count(*) FROM customers")
    present = cur.fetchone()[0]
    if present:
        conn.commit()  # type: ignore[attr-defined]
        return int(present)
    for table, rows in generate(customers):
        buf = io.StringIO()
        for row in rows:
            buf.write("\t".join(_tsv(v) for v in row))
            buf.write("\n")
        with cur.copy(f"COPY {table} FROM STDIN") as copy:
            copy.write(buf.getvalue())
    cur.execute("INSERT INTO audit_trail (actor, action) VALUES ('system', 'demo database seeded')")
    cur.execute("ANALYZE")
    conn.commit()  # type: ignore[attr-defined]
    return customers


# --- MySQL / MariaDB ---------------------------------------------------------------------------
# The same tables and column names in MySQL types. Text columns that hold identifiers get a
# varchar wide enough for any of them (MySQL's `text` cannot carry a default or a full index);
# timestamps are datetime(6) in UTC (generate() yields them with +00:00, see _mysql_value).
# utf8mb4: the names, addresses and notes are Chinese.
MYSQL_SCHEMA_STATEMENTS: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS customers (
    id          bigint PRIMARY KEY,
    name        varchar(100) NOT NULL,
    phone       varchar(32) NOT NULL,
    id_card     varchar(32) NOT NULL,
    bank_card   varchar(32),
    email       varchar(255),
    branch_id   int NOT NULL,
    address     varchar(255),
    created_at  datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS call_records (
    id           bigint PRIMARY KEY,
    customer_id  bigint,
    caller       varchar(32) NOT NULL,
    callee       varchar(32) NOT NULL,
    started_at   datetime(6) NOT NULL,
    duration_s   int NOT NULL,
    notes        text,
    KEY call_records_customer (customer_id),
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS accounts (
    id           bigint PRIMARY KEY,
    customer_id  bigint,
    account_no   varchar(32) NOT NULL,
    balance      decimal(14, 2) NOT NULL,
    opened_at    date NOT NULL,
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS audit_trail (
    id      bigint AUTO_INCREMENT PRIMARY KEY,
    actor   varchar(64) NOT NULL,
    action  text NOT NULL,
    at      datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
)
MYSQL_SCHEMA_SQL = ";\n".join(MYSQL_SCHEMA_STATEMENTS) + ";\n"
MYSQL_TABLES = ("customers", "call_records", "accounts", "audit_trail")


def _mysql_quote(value: str) -> str:
    """A MySQL string literal for setup SQL (passwords from the test harness, not user input)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def mysql_database_roles_statements(
    service_account: str,
    service_password: str,
    vendor_password: str,
    database: str = "crm",
    desk_password: str | None = None,
) -> tuple[str, ...]:
    """Server-wide, as root (idempotent): the service account, crm_vendor (a login user with its own
    password, which maskgate has in its config) and crm_desk (a role: no login; the service
    account may `SET ROLE crm_desk`). The table grants come after the tables (MYSQL_GRANTS_SQL):
    MariaDB refuses a table grant on a table that does not exist yet.

    The service account gets data rights on the database (and SHOW VIEW and EXECUTE there, so its
    schema loads see view definitions and routines) and nothing server-wide: no FILE, no
    PROCESS, no SUPER, no SELECT on mysql.*, no GRANT OPTION. crm_vendor gets no PROCESS (the
    MariaDB counterpart of pg_read_all_stats): maskgate refuses information_schema.PROCESSLIST to
    restricted roles anyway (dialect facts: sensitive catalog tables), so it would only widen
    what the account can do on its own.

    With `desk_password`, crm_desk is a login user of its own too, which maskgate logs in as: a
    MariaDB role taken with SET ROLE ADDS its rights to the service account's (PostgreSQL's SET
    ROLE replaces them), so only an account of its own makes the database refuse what crm_desk
    may not do. Without it, crm_desk is a role (the bench's form)."""
    svc, vendor = _mysql_quote(service_account), _mysql_quote(VENDOR_ROLE)
    db = "`" + database.replace("`", "``") + "`"
    desk: tuple[str, ...]
    if desk_password is not None:
        account, secret = _mysql_quote(DESK_ROLE), _mysql_quote(desk_password)
        desk = (
            f"DROP ROLE IF EXISTS {DESK_ROLE}",
            f"CREATE USER IF NOT EXISTS {account}@'%' IDENTIFIED BY {secret}",
            f"ALTER USER {account}@'%' IDENTIFIED BY {secret}",
        )
    else:
        desk = (f"CREATE ROLE IF NOT EXISTS {DESK_ROLE}", f"GRANT {DESK_ROLE} TO {svc}@'%'")
    return (
        f"CREATE USER IF NOT EXISTS {svc}@'%' IDENTIFIED BY {_mysql_quote(service_password)}",
        f"ALTER USER {svc}@'%' IDENTIFIED BY {_mysql_quote(service_password)}",
        f"CREATE USER IF NOT EXISTS {vendor}@'%' IDENTIFIED BY {_mysql_quote(vendor_password)}",
        f"ALTER USER {vendor}@'%' IDENTIFIED BY {_mysql_quote(vendor_password)}",
        *desk,
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {db}.* TO {svc}@'%'",
        # The schema loader must see what a statement may name: MySQL shows a view's definition
        # only with SHOW VIEW, and lists a routine only to an account with a right on it.
        # Without them a view would be read as an opaque table and a routine another account
        # may EXECUTE would not be known as user-defined (proxy/mysql/catalog.py).
        f"GRANT SHOW VIEW, EXECUTE ON {db}.* TO {svc}@'%'",
    )


def mysql_database_roles_sql(
    service_account: str,
    service_password: str,
    vendor_password: str,
    database: str = "crm",
    desk_password: str | None = None,
) -> str:
    stmts = mysql_database_roles_statements(
        service_account, service_password, vendor_password, database, desk_password
    )
    return ";\n".join(stmts) + ";\n"


# In the crm database, as root (idempotent: every right is revoked, then granted again). The same
# grants as GRANTS_SQL where MariaDB has them:
# - MariaDB has no row-level security: the vendor's branch-12 row filter is maskgate's job alone
#   (its rewrite adds the WHERE), and the database cannot back it up as PostgreSQL's policy does.
# - MariaDB has no default privileges for tables created later; a database-wide `GRANT SELECT ON
#   crm.*` would include audit_trail, which the vendor may not read, so the vendor is granted
#   table by table and a new table needs a grant of its own.
# - REVOKE ALL ... FROM user revokes privileges only, not role memberships: `GRANT crm_desk TO
#   maskgate_svc` stays.
MYSQL_GRANTS_STATEMENTS: tuple[str, ...] = (
    f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{VENDOR_ROLE}'@'%'",
    f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {DESK_ROLE}",
    f"GRANT SELECT ON customers TO '{VENDOR_ROLE}'@'%'",
    f"GRANT SELECT ON call_records TO '{VENDOR_ROLE}'@'%'",
    f"GRANT SELECT (id, customer_id, balance, opened_at) ON accounts TO '{VENDOR_ROLE}'@'%'",
    f"GRANT SELECT ON customers TO {DESK_ROLE}",
    f"GRANT SELECT ON call_records TO {DESK_ROLE}",
    f"GRANT UPDATE (phone, email, address) ON customers TO {DESK_ROLE}",
)
MYSQL_GRANTS_SQL = ";\n".join(MYSQL_GRANTS_STATEMENTS) + ";\n"

MYSQL_BATCH_ROWS = 1000


def _mysql_value(value: object) -> object:
    """generate()'s values as MySQL takes them: its timestamps are ISO strings with +00:00, which
    datetime(6) refuses (MariaDB) or shifts by the session time zone (MySQL 8); they are stored
    as UTC wall-clock time."""
    if isinstance(value, str) and len(value) >= 25 and value[10:11] == "T" and value.endswith("+00:00"):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
        return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return value


def seed_mysql(conn: object, customers: int = 10_000) -> int:
    """Create the tables in the connection's database, grant the database roles
    (`mysql_database_roles_sql` must have run) and fill the tables when empty, from the same
    generate() rows as the PostgreSQL seed. `conn` is a PyMySQL connection with the right to
    create tables and grant (root in the test harness). Returns the number of customers present."""
    cur = conn.cursor()  # type: ignore[attr-defined]
    for statement in MYSQL_SCHEMA_STATEMENTS:
        cur.execute(statement)
    for statement in MYSQL_GRANTS_STATEMENTS:
        cur.execute(statement)
    cur.execute("SELECT count(*) FROM customers")
    present = cur.fetchone()[0]
    if present:
        conn.commit()  # type: ignore[attr-defined]
        return int(present)
    for table, rows in generate(customers):
        width = len(rows[0]) if rows else 0
        # PyMySQL turns executemany of a plain INSERT … VALUES into multi-row INSERTs; batches
        # of MYSQL_BATCH_ROWS keep each statement well under max_allowed_packet.
        insert = f"INSERT INTO {table} VALUES ({', '.join(['%s'] * width)})"
        for start in range(0, len(rows), MYSQL_BATCH_ROWS):
            batch = [tuple(_mysql_value(v) for v in row) for row in rows[start : start + MYSQL_BATCH_ROWS]]
            cur.executemany(insert, batch)
    cur.execute("INSERT INTO audit_trail (actor, action) VALUES ('system', 'demo database seeded')")
    cur.execute(f"ANALYZE TABLE {', '.join(MYSQL_TABLES)}")
    cur.fetchall()
    conn.commit()  # type: ignore[attr-defined]
    return customers
