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
    # Functions that are total over any value of a non-clear class (see TOTAL_FUNCTIONS).
    total_functions: frozenset[str] = frozenset()
    # Functions that return a set of rows: a non-clear argument sets the row count.
    set_returning_functions: frozenset[str] = frozenset()
    # Functions whose only effect is to make the statement take longer (a timing channel).
    timing_functions: frozenset[str] = frozenset()
    # Functions that write (sequences): they need statements: [update] (or all).
    write_functions: frozenset[str] = frozenset()
    # Functions that take session or transaction locks others wait on: statements: [admin] (or all).
    lock_functions: frozenset[str] = frozenset()
    # Client encodings (spelled as the server cleans them: lower case, letters and digits only)
    # under which maskgate reads SQL text the way the server does.
    safe_client_encodings: frozenset[str] = frozenset()


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

# The functions a role with `masked_predicates: deny` may apply to a value of a non-clear class
# (directly or through other such functions). Each one is *total* (it cannot raise an error
# whose occurrence or text depends on the value, so errors are no oracle), keeps the row count
# (it returns one value per input, or one per group), and takes time that does not depend on
# the value beyond its length. Their results are redacted whole (policies/decide.py), so what
# they compute is never shown; the point is that computing it reveals nothing either.
# Anything else over such a value (casts to numbers or dates, arithmetic, regular expressions,
# format(), set-returning functions, …) is refused as masked_predicate. Names are as written in
# SQL, plus sqlglot's canonical name where it parses the function into a typed node (marked).
TOTAL_FUNCTIONS = frozenset(
    {
        # text in, text out, defined for every string
        "upper",
        "lower",
        "initcap",
        "reverse",
        "replace",
        "translate",
        "concat",  # NULL arguments are skipped, never an error
        "concat_ws",
        # substrings: clamp out-of-range positions instead of raising. (`substring(x from
        # 'regex')`, the regular-expression form, is refused in policies/sql/analysis.py.)
        "substr",
        "substring",  # also sqlglot's name for substr
        "left",
        "right",
        # lengths: a non-negative integer for every string (so a derived count can never make
        # substr/lpad raise on a negative length)
        "length",  # also sqlglot's name for char_length / character_length
        "char_length",
        "character_length",
        "octet_length",
        # trimming and padding: defined for every string
        "trim",  # also sqlglot's name for btrim / ltrim / rtrim
        "btrim",
        "ltrim",
        "rtrim",
        "lpad",
        "rpad",
        "pad",  # sqlglot's name for lpad / rpad
        # digests: defined for every input, fixed-size output
        "md5",
        "sha224",
        "sha256",
        "sha384",
        "sha512",
        "s_h_a2_digest",  # sqlglot's name for sha256/384/512
        "digest",  # pgcrypto, when installed
        # NULL handling: picks the first non-NULL argument
        "coalesce",
        # aggregates: one value per group, no comparison whose outcome is shown beyond the
        # redacted result (min/max order values, but only the redacted extreme comes out)
        "count",
        "min",
        "max",
        "string_agg",
        "group_concat",  # sqlglot's name for string_agg
        "array_agg",
        # window functions that only move a value from one row to another
        "lag",
        "lead",
        "first_value",
        "last_value",
        # json builders: quote any value (a NULL key raises, which says no more than IS NULL,
        # allowed for every role). The *_unique and json_object(text[]) forms are not here.
        "to_json",
        "to_jsonb",
        "json_build_object",
        "jsonb_build_object",
        "json_build_array",
        "jsonb_build_array",
        "json_agg",
        "jsonb_agg",
        "json_object_agg",
        "jsonb_object_agg",
        "j_s_o_n_array_agg",  # sqlglot's name for json_agg
        "j_s_o_n_object_agg",  # sqlglot's name for json_object_agg
        "j_s_o_n_b_object_agg",  # sqlglot's name for jsonb_object_agg
        # ROW(a, b): a record constructor, defined for any values
        "row",
    }
)
# Besides these functions, policies/sql/analysis.py lets a non-clear value through: parentheses,
# aliases, `||`, casts to text types (text, varchar, char, bpchar, name: explicit casts to a
# length truncate, never raise), the ARRAY[...] constructor, the THEN/ELSE branches of CASE
# (its conditions are predicates), `OVER (...)` around a window function, and DISTINCT inside
# an aggregate.

_PG_SET_RETURNING = frozenset(
    {
        "generate_series",
        "exploding_generate_series",  # sqlglot's name for generate_series
        "generate_subscripts",
        "unnest",
        "explode",  # sqlglot's name for unnest
        "posexplode",
        "regexp_matches",
        "regexp_split_to_table",
        "string_to_table",
        "json_array_elements",
        "json_array_elements_text",
        "jsonb_array_elements",
        "jsonb_array_elements_text",
        "json_each",
        "json_each_text",
        "jsonb_each",
        "jsonb_each_text",
        "json_object_keys",
        "jsonb_object_keys",
        "json_populate_recordset",
        "jsonb_populate_recordset",
        "json_to_recordset",
        "jsonb_to_recordset",
        "jsonb_path_query",
        "ts_debug",
        "ts_parse",
        "ts_token_type",
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
    total_functions=TOTAL_FUNCTIONS,
    set_returning_functions=_PG_SET_RETURNING,
    timing_functions=frozenset({"pg_sleep", "pg_sleep_for", "pg_sleep_until"}),
    # currval() and lastval() only read back what this session's own nextval() returned.
    write_functions=frozenset({"nextval", "setval"}),
    lock_functions=frozenset(
        {
            "pg_advisory_lock",
            "pg_advisory_lock_shared",
            "pg_advisory_xact_lock",
            "pg_advisory_xact_lock_shared",
            "pg_try_advisory_lock",
            "pg_try_advisory_lock_shared",
            "pg_try_advisory_xact_lock",
            "pg_try_advisory_xact_lock_shared",
        }
    ),
    safe_client_encodings=frozenset({"utf8", "unicode"}),
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
    total_functions=TOTAL_FUNCTIONS,
    set_returning_functions=frozenset(),
    timing_functions=frozenset({"sleep", "benchmark"}),
    write_functions=frozenset(),
    lock_functions=frozenset({"get_lock"}),
    safe_client_encodings=frozenset({"utf8", "utf8mb4", "utf8mb3"}),
)

DIALECTS: dict[str, DialectFacts] = {"postgres": POSTGRES, "postgresql": POSTGRES, "mysql": MYSQL}


def dialect_facts(name: str) -> DialectFacts:
    try:
        return DIALECTS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r}; expected postgres or mysql") from None
