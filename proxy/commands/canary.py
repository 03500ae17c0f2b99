"""`maskgate canary plant --schema DSN --table crm.customers --count 20`: plant canary customers.

Owns argument parsing and the inserts: rows whose classified columns hold format- and
checksum-valid numbers from reserved ranges (proxy/services/canaries.py), through the DBA's own
connection (the DSN), every other NOT NULL column without a default filled by its type. The
numbers' keys (never the numbers) go to `canaries.json` beside the policy, with the keys of each
row's key value (the policy's `customer_key` when it is a column of the table, else the table's
primary key, read back with RETURNING) and of its made-up e-mail: a canary is a customer, and a
read of its row without the numbers discloses it as well. A running maskgate reads them at its
next reload. The numbers are printed once, for the operator's records (the complaints team
matches scam calls against them).
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path
from typing import Any

import masking
from policies import PolicyError, load_policy
from policies.names import ColumnName, TableName
from proxy.config import ConfigError, load_config
from proxy.services import canaries
from proxy.services.disclosure import CUSTOMER_KEY, ROW_KEY, value_key


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("canary", help="plant canary customers whose reading is flagged")
    sub = p.add_subparsers(dest="canary_command", metavar="ACTION")
    plant = sub.add_parser("plant", help="insert canary rows and record their keys beside the policy")
    plant.add_argument("--schema", required=True, help="PostgreSQL DSN of the DBA's connection")
    plant.add_argument("--table", required=True, help="table to insert into: db.table or schema.table")
    plant.add_argument("--count", type=int, default=20)
    plant.add_argument("--config", help="maskgate config: its masking_key and policy (recommended)")
    plant.add_argument("--policy-dir", help="where canaries.json goes (default: beside the config's policy)")
    plant.add_argument("--mobile-prefix", default=canaries.DEFAULT_MOBILE_PREFIX)
    plant.add_argument(
        "--id-prefix", default=canaries.DEFAULT_ID_PREFIX, help="region + birth date, 14 digits"
    )
    plant.add_argument("--card-bin", default=canaries.DEFAULT_CARD_BIN)
    plant.set_defaults(func=cmd_plant)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


_COLUMNS = """
SELECT column_name, data_type, is_nullable = 'NO', column_default IS NOT NULL OR is_identity = 'YES'
FROM information_schema.columns WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position
"""


def _filler(data_type: str, n: int) -> object | None:
    """A harmless value for an unclassified NOT NULL column, or None when none is known."""
    t = data_type.lower()
    if t in ("text", "character varying", "character", "citext"):
        return secrets.token_hex(4)
    if t in ("integer", "bigint", "smallint", "numeric"):
        return 900_000 + secrets.randbelow(99_999) if t != "smallint" else 9_000 + secrets.randbelow(999)
    if t == "boolean":
        return False
    if t.startswith("timestamp") or t == "date":
        return "now"
    if t == "uuid":
        import uuid

        return str(uuid.uuid4())
    if t in ("json", "jsonb"):
        return "{}"
    return None


# Columns of any unique index or primary key: never copied from another row.
_UNIQUE = """
SELECT a.attname FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = %s::regclass AND i.indisunique
"""


def _faker() -> Any:
    from faker import Faker

    return Faker("zh_CN")


def _template(conn: Any, sql: Any, schema: str, table: str) -> dict[str, object]:
    """A random existing row of the table (its plain columns are what a canary copies), or {}
    for an empty table."""
    cur = conn.execute(
        sql.SQL("SELECT * FROM {} ORDER BY random() LIMIT 1").format(sql.Identifier(schema, table))
    )
    row = cur.fetchone()
    if row is None or cur.description is None:
        return {}
    return {d.name: v for d, v in zip(cur.description, row, strict=True) if v is not None}


_PRIMARY_KEY = """
SELECT a.attname FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = %s::regclass AND i.indisprimary
"""


def _key_column(
    conn: Any, policy: Any, tname: TableName, schema: str, table: str, columns: list[str]
) -> tuple[str, str] | None:
    """(class, column) of the value that names a planted row's customer: the policy's
    `customer_key` when it is a column of this table, else the table's primary key when it is
    one column (CUSTOMER_KEY, ROW_KEY). None when the table has neither."""
    if policy is not None:
        for name in columns:
            if policy.is_customer_key(ColumnName(tname, name), "public"):
                return CUSTOMER_KEY, name
    from psycopg import sql

    qualified = sql.Identifier(schema, table).as_string(conn)
    pk = [r[0] for r in conn.execute(_PRIMARY_KEY, (qualified,)).fetchall()]
    return (ROW_KEY, pk[0]) if len(pk) == 1 else None


def cmd_plant(args: argparse.Namespace) -> int:
    import psycopg
    from psycopg import sql

    key = masking.DEFAULT_KEY
    policy_path: Path | None = None
    if args.config:
        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 1
        key = cfg.masking_key or masking.DEFAULT_KEY
        policy_path = cfg.policy
    elif not args.policy_dir:
        print(
            "maskgate canary plant: give --config (for its masking key and policy) or --policy-dir",
            file=sys.stderr,
        )
        return 2
    else:
        print(
            "# no --config: keys use the default masking key (match a config without masking_key)",
            file=sys.stderr,
        )
    target = (
        Path(args.policy_dir) / canaries.FILE_NAME if args.policy_dir else canaries.canary_file(policy_path)
    )  # type: ignore[arg-type]
    policy = None
    if policy_path is not None:
        try:
            policy = load_policy(policy_path)
        except PolicyError as e:
            for err in e.errors:
                print(err, file=sys.stderr)
            return 1
    if args.count < 1 or args.count > 10000:
        print("--count: 1 to 10000", file=sys.stderr)
        return 2
    gens = {
        "mobile": lambda: canaries.mobile(args.mobile_prefix),
        "id_card": lambda: canaries.id_card(args.id_prefix),
        "bank_card": lambda: canaries.bank_card(args.card_bin),
    }
    planted: list[canaries.Canary] = []
    shown: list[dict[str, str]] = []
    try:
        with psycopg.connect(args.schema) as conn:
            database = conn.info.dbname
            parts = args.table.split(".")
            if len(parts) == 1:
                schema, table = "public", parts[0]
            elif parts[0] == database:
                schema, table = "public", parts[-1]
            else:
                schema, table = parts[-2], parts[-1]
            cols = conn.execute(
                _COLUMNS,
                (schema, table),
            ).fetchall()
            if not cols:
                print(f"no table {schema}.{table} in {database}", file=sys.stderr)
                return 1
            tname = TableName(database, schema, table)
            keyed = _key_column(conn, policy, tname, schema, table, [c[0] for c in cols])
            if keyed is None:
                print(
                    f"# {schema}.{table} has no customer_key column and no one-column primary key: "
                    "only reads of the canaries' numbers and e-mails are flagged",
                    file=sys.stderr,
                )
            numbers = 0
            unique = {r[0] for r in conn.execute(_UNIQUE, (f"{schema}.{table}",)).fetchall()}
            fake = _faker()
            for n in range(args.count):
                names: list[str] = []
                values: list[object] = []
                row: dict[str, str] = {}
                # A canary must look like any customer, or a dump that skips the odd rows takes
                # everyone else and trips nothing: its plain columns are a real row's, its name,
                # e-mail and address ordinary ones (only its numbers come from the reserved
                # ranges, which the operator keeps to themselves).
                template = _template(conn, sql, schema, table)
                for name, data_type, required, has_default in cols:
                    cls = policy.classify(ColumnName(tname, name), "public") if policy is not None else None
                    if cls is None:
                        cls = {
                            "phone": "mobile",
                            "mobile": "mobile",
                            "id_card": "id_card",
                            "bank_card": "bank_card",
                        }.get(name.lower())
                    value: object | None = None
                    if cls in gens:
                        value = gens[cls]()
                        numbers += 1
                    elif cls == "person_name":
                        value = fake.name()
                    elif cls == "email":
                        value = f"{fake.user_name()}{secrets.randbelow(1000)}@{fake.free_email_domain()}"
                    elif cls == "address":
                        value = fake.address().replace("\n", " ")
                    elif cls is None and name in template and name not in unique and not has_default:
                        value = template[name]
                    elif required and not has_default:
                        value = _filler(data_type, n)
                        if value is None:
                            print(f"cannot fill NOT NULL column {name} ({data_type})", file=sys.stderr)
                            return 1
                    if cls is not None and (cls in gens or cls == "email"):
                        row[name] = str(value)
                        planted.append(
                            canaries.Canary(
                                cls, value_key(key, cls, str(value)), f"{schema}.{table}", canaries.today()
                            )
                        )
                    if value is not None:
                        names.append(name)
                        values.append(value)
                insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                    sql.Identifier(schema, table),
                    sql.SQL(", ").join(map(sql.Identifier, names)),
                    sql.SQL(", ").join(sql.Placeholder() * len(names)),
                )
                if keyed is None:
                    conn.execute(insert, values)
                else:
                    # The key is often a serial: only the database knows it, after the insert.
                    kcls, kcol = keyed
                    returning = sql.SQL(" RETURNING {}::text").format(sql.Identifier(kcol))
                    (kval,) = conn.execute(insert + returning, values).fetchone() or (None,)
                    if kval is not None:
                        row = {kcol: kval, **row}
                        planted.append(
                            canaries.Canary(
                                kcls,
                                value_key(key, kcls, kval),
                                f"{schema}.{table}",
                                canaries.today(),
                                f"{database}.{schema}.{table}.{kcol}",
                            )
                        )
                shown.append(row)
            if not numbers:
                print(
                    f"{schema}.{table} has no mobile, id_card or bank_card column to plant in",
                    file=sys.stderr,
                )
                conn.rollback()
                return 1
            canaries.save(target, planted)  # before commit: rows without their keys would go unnoticed
    except psycopg.Error as e:
        print(f"cannot plant: {str(e).strip()}", file=sys.stderr)
        return 1
    for row in shown:
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    print(
        f"# planted {len(shown)} canary rows in {args.table}; {len(planted)} keys in {target}",
        file=sys.stderr,
    )
    print("# keep this list private: it is the only copy of the numbers", file=sys.stderr)
    return 0
