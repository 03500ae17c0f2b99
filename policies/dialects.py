"""The few facts about each SQL dialect that the policy engine needs, in one table.

Owns: default schemas, catalog schemas, session-setting names and dangerous server functions per
dialect. Everything else in policies/ is dialect-neutral and looks facts up here, so MySQL goes
through the same analysis path as PostgreSQL. Must not import sqlglot internals beyond a name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DialectFacts:
    name: str
    sqlglot: str
    # Where unqualified tables live when a session says nothing (PostgreSQL: `public`; MySQL: the
    # current database, signalled by None).
    default_search_path: tuple[str, ...]
    # The schema a policy's `db.table` pattern implies (PostgreSQL's `crm.customers` means database
    # crm, schema public). None: database and schema are the same thing (MySQL).
    default_schema: str | None
    catalog_schemas: frozenset[str]
    # Unqualified names with this prefix resolve to the catalog first (PostgreSQL searches
    # pg_catalog before the search_path unless told otherwise).
    implicit_catalog_prefix: str | None
    # Catalog relations that hold user data or other sessions' SQL text: reading them would
    # launder classified values (pg_stats.most_common_vals holds real phone numbers).
    sensitive_catalog_tables: frozenset[str]
    # Server-side file, network, large-object and SQL-in-a-string functions.
    dangerous_functions: frozenset[str]
    # Settings a restricted role may change through SET or set_config().
    identity_settings: frozenset[str]


_PG_DANGEROUS = frozenset(
    {
        # server files
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "pg_ls_logdir",
        "pg_ls_waldir",
        "pg_ls_tmpdir",
        "pg_ls_archive_statusdir",
        "pg_file_write",
        "pg_file_rename",
        "pg_file_unlink",
        "pg_logdir_ls",
        # large objects (a server-side file door and a side store)
        "lo_import",
        "lo_export",
        "lo_from_bytea",
        "lo_put",
        "lo_get",
        "lo_open",
        "lo_create",
        "lo_creat",
        "lo_unlink",
        "loread",
        "lowrite",
        # network
        "dblink",
        "dblink_exec",
        "dblink_connect",
        "dblink_connect_u",
        "dblink_send_query",
        "dblink_get_result",
        "dblink_open",
        "dblink_fetch",
        # SQL in a string: the inner query is invisible to analysis
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "table_to_xml",
        "table_to_xmlschema",
        "table_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "schema_to_xml",
        "schema_to_xmlschema",
        "schema_to_xml_and_xmlschema",
        "database_to_xml",
        "database_to_xmlschema",
        "database_to_xml_and_xmlschema",
        "ts_stat",
        "xpath_table",
        "crosstab",
        "crosstab2",
        "crosstab3",
        "crosstab4",
        # server control
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_promote",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_logical_emit_message",
        "pg_replication_origin_create",
        "pg_create_logical_replication_slot",
        "pg_create_physical_replication_slot",
        "pg_logical_slot_get_changes",
        "pg_logical_slot_peek_changes",
    }
)

POSTGRES = DialectFacts(
    name="postgres",
    sqlglot="postgres",
    default_search_path=("public",),
    default_schema="public",
    catalog_schemas=frozenset({"pg_catalog", "information_schema"}),
    implicit_catalog_prefix="pg_",
    sensitive_catalog_tables=frozenset(
        {
            "pg_catalog.pg_stats",
            "pg_catalog.pg_stats_ext",
            "pg_catalog.pg_stats_ext_exprs",
            "pg_catalog.pg_statistic",
            "pg_catalog.pg_statistic_ext_data",
            "pg_catalog.pg_stat_activity",
            "pg_catalog.pg_stat_statements",
            "pg_catalog.pg_authid",
            "pg_catalog.pg_shadow",
            "pg_catalog.pg_user_mapping",
            "pg_catalog.pg_user_mappings",
            "pg_catalog.pg_largeobject",
            "pg_catalog.pg_prepared_statements",
            "pg_catalog.pg_cursors",
        }
    ),
    dangerous_functions=_PG_DANGEROUS,
    identity_settings=frozenset({"role", "session_authorization", "session_replication_role"}),
)

MYSQL = DialectFacts(
    name="mysql",
    sqlglot="mysql",
    default_search_path=(),
    default_schema=None,
    catalog_schemas=frozenset({"information_schema"}),
    implicit_catalog_prefix=None,
    sensitive_catalog_tables=frozenset(
        {
            "information_schema.processlist",
            "information_schema.innodb_trx",
            "information_schema.column_statistics",
        }
    ),
    dangerous_functions=frozenset({"load_file", "sys_exec", "sys_eval", "benchmark"}),
    identity_settings=frozenset({"role", "session_authorization"}),
)

DIALECTS: dict[str, DialectFacts] = {"postgres": POSTGRES, "postgresql": POSTGRES, "mysql": MYSQL}


def dialect_facts(name: str) -> DialectFacts:
    try:
        return DIALECTS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r}; expected postgres or mysql") from None
