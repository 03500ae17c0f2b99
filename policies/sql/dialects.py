"""Every fact about a SQL dialect that the policy engine and the proxy need, in one table.

Owns: default and catalog schemas, how identifiers fold, session settings (the ones that change
how SQL text is read, the client-encoding allow-list, identity settings, the settings a restricted
role may change and the catalog relation that lists them), the server functions that matter per
dialect (what their effects need, which volatile ones are harmless, which expose other sessions'
SQL, how sqlglot's names for them map to the server's, and the built-in functions' volatility for
schemas saved without it), and the catalog relations that hold personal data (the columns they
classify, the statistics view whose rows are filtered); plus the two questions the proxy asks
about a session (`unsafe_setting`, `search_path_from_setting`). Everything else in policies/ is
dialect-neutral and looks facts up here, so MySQL goes through the same path as PostgreSQL. Must
not parse statements (policies/sql/parser.py does) nor judge roles; it uses sqlglot only for its
dialect's identifier-folding rule.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect


@dataclass(frozen=True, slots=True)
class LexicalRule:
    """Which values of a setting keep SQL text read the default way (maskgate's tokenizer, UTF-8).

    `kind` is `one_of` (the value is one word of `words`, compared in lower case), `no_flag_of`
    (a list of flags none of which is in `words`, compared in upper case, and none a variable
    reference), `only_flags_of` (a list of flags each of which is in `words`: an allow-list, so a
    number, a new flag or a combination mode is refused) or `encoding` (one client encoding of
    the dialect's allow-list)."""

    kind: str
    words: frozenset[str] = frozenset()


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
    # Catalog schemas, spelled as the server stores them.
    catalog_schemas: frozenset[str]
    # Unqualified names with this prefix resolve to this catalog schema (PostgreSQL searches
    # pg_catalog before the search_path unless told otherwise) when the schema has no table of
    # that name.
    implicit_catalog_prefix: str | None
    implicit_catalog: str | None
    # Catalog relations restricted roles may not read at all: passwords, large objects, extended
    # statistics (their value lists span columns), the session's own prepared statements.
    sensitive_catalog_tables: frozenset[str]
    # Server-side file, network, large-object, notification and SQL-in-a-string functions.
    dangerous_functions: frozenset[str]
    # Settings that change who the session is: only statements: [all] may change them.
    identity_settings: frozenset[str]
    # Functions that are total over any value of a non-clear class (see TOTAL_FUNCTIONS).
    total_functions: frozenset[str] = frozenset()
    # Functions that return a set of rows: a non-clear argument sets the row count.
    set_returning_functions: frozenset[str] = frozenset()
    # Functions whose only effect is to make the statement take longer (a timing channel).
    timing_functions: frozenset[str] = frozenset()
    # The statement right a function's effect needs, for functions whose effect has a narrower
    # right than `volatile_function_right` (sequence writers need `update`) or that must keep
    # needing it whatever the role's allow-list says (advisory locks need `admin`).
    function_rights: Mapping[str, str] = field(default_factory=dict)
    # What any other volatile function needs: it may change data, the server or other sessions.
    volatile_function_right: str = "admin"
    # Volatile functions restricted roles may call anyway. Reviewed one by one: each only reads
    # the session's own state or the server's, or returns randomness (see _PG_HARMLESS_VOLATILE).
    harmless_volatile_functions: frozenset[str] = frozenset()
    # Functions the catalog marks immutable or stable that have an effect all the same.
    effect_functions: frozenset[str] = frozenset()
    # Functions that return other sessions' SQL or values kept in column statistics: restricted
    # roles read them through the catalog relations below, whose columns are classified.
    exposing_functions: frozenset[str] = frozenset()
    # The built-in functions' volatility ((schema, name) -> immutable | stable | volatile), for
    # schemas saved without function data. None: the dialect has no volatility (MySQL), and only
    # the lists above apply.
    builtin_functions: Callable[[], Mapping[tuple[str, str], str]] | None = None
    # sqlglot types many functions (SUBSTR becomes Substring) and renders them back in the
    # dialect; the rendered names the server spells otherwise, and the rendered call forms that
    # are SQL syntax rather than a function the catalog lists (CAST, COALESCE, ARRAY(…)).
    function_aliases: Mapping[str, str] = field(default_factory=dict)
    syntax_calls: frozenset[str] = frozenset()
    # Catalog relations whose columns the schema loader reads (so lineage reaches them).
    catalog_relations: tuple[tuple[str, str], ...] = ()
    # Classes of catalog columns, for restricted roles: (schema, relation, column) -> class. A
    # schema of None matches the relation in any schema (an extension's view, installed where
    # the DBA chose).
    catalog_classes: Mapping[tuple[str | None, str, str], str] = field(default_factory=dict)
    # The column-statistics view (schema, relation, its (schema, table, column) key columns):
    # its rows about columns a role may not read in clear are filtered out for that role.
    column_statistics: tuple[str, str, tuple[str, str, str]] | None = None
    # LIMIT takes any expression (PostgreSQL), so the row limit bounds a parameter with LEAST;
    # MySQL takes literals and placeholders only, so such a query is wrapped instead.
    expression_limits: bool = True
    # Aggregates that gather the rows they read into one value (an array, a string, a JSON or XML
    # document, a multirange): one result row can then carry any number of records, which a
    # role's max_rows would not bound. Names as written, plus sqlglot's canonical ones.
    collecting_functions: frozenset[str] = frozenset()
    # Client encodings (spelled as the server cleans them: lower case, letters and digits only)
    # under which maskgate reads SQL text the way the server does. An allow-list: anything else
    # (LATIN1, GBK, SJIS, SQL_ASCII, DEFAULT, …) is unsafe for a restricted role.
    client_encodings: frozenset[str] = frozenset()
    # Settings whose value changes how the server reads SQL text (whether a backslash escapes a
    # quote, whether "x" is a name or a string, which bytes form one character), with the values
    # that do not. maskgate reads text the default way (as UTF-8), so a session that switched
    # would let the server see other statements than the ones judged: under GBK with
    # backslash_quote on, 0x95 0x5C is one character to the server and a quote-escaping
    # backslash to a UTF-8 reader.
    lexical_settings: Mapping[str, LexicalRule] = field(default_factory=dict)
    # Settings a restricted role may change through a settings function (set_config): what
    # pg_dump and drivers set. SET of any other setting is plumbing; a settings function of one
    # is refused, because it may sit anywhere in a query.
    safe_settings: frozenset[str] = frozenset()
    # Functions that change a setting, with the setting's name as their first argument.
    setting_functions: frozenset[str] = frozenset()
    # The catalog relation (schema, name, name column) listing every setting: `SELECT
    # set_config(name, …) FROM pg_settings WHERE name = '<safe>'` is pg_dump's form.
    settings_catalog: tuple[str, str, str] | None = None
    # SHOW statements (word runs, upper case) whose result holds text no column mask can follow
    # (see `exposing_show`): refused for every role whose results are masked.
    exposing_shows: tuple[tuple[str, ...], ...] = ()
    # SHOW statements whose result has a fixed shape (its first word -> the catalog pseudo
    # relation and column names that describe it): their columns carry the relation's classes in
    # `catalog_classes`, so the proxy masks them by position like any query's.
    described_shows: Mapping[str, tuple[str, str, tuple[str, ...]]] = field(default_factory=dict)
    # Column names (and output names) compare case-insensitively even when quoted (MySQL), where
    # table and schema names stay as the server stores them.
    case_insensitive_columns: bool = False
    # Catalog schema and relation names compare case-insensitively (MySQL's INFORMATION_SCHEMA).
    case_insensitive_catalog: bool = False
    # Function names compare case-insensitively even when quoted (MySQL).
    case_insensitive_functions: bool = False
    # Prepared statement names compare case-insensitively (MySQL: PREPARE S … ; EXECUTE s).
    case_insensitive_statement_names: bool = False
    # The protocol's session applies a kept PREPARE's decision to the rows of a SQL-level
    # EXECUTE of it (proxy/pg/relay.py `_resolve_executes`). Where it does not, EXECUTE is
    # refused for every role whose results are masked: its rows would pass with no masks.
    session_resolves_execute: bool = True
    # The keyword a FROM may name instead of a table (MySQL's `FROM DUAL`), read as no table.
    dummy_table: str | None = None
    # SERIALIZABLE makes every plain SELECT take shared locks (InnoDB): like FOR SHARE, it can
    # hold up other people's writes, so choosing it needs the rights of a writer.
    serializable_locks: bool = False
    # ORDER BY (1) / GROUP BY ((2)) name result columns by position, as ORDER BY 1 does (MariaDB
    # strips the parentheses); PostgreSQL reads them as constants.
    parenthesized_positions: bool = False
    # `SELECT *` over a RIGHT JOIN … USING / NATURAL RIGHT JOIN lays out the right side's columns
    # first (MySQL turns it into a LEFT JOIN with the sides swapped), not as the analysis expands
    # `*`: masks applied by position would land on other columns.
    right_join_star_differs: bool = False
    # `text_column = 138` compares as DOUBLE (MySQL): a number is no exact value of a string
    # column but a prefix test (`'138-…'` and `'138 …'` both convert to 138), so it is a predicate.
    numbers_compare_loosely: bool = False
    # Bare words sqlglot reads as column names that are SQL values (PostgreSQL's `user`).
    keyword_values: frozenset[str] = frozenset()
    # Columns every table has that the schema does not list (PostgreSQL's ctid, xmin, …): they
    # carry no data of the row.
    system_columns: frozenset[str] = frozenset()
    # What may precede a system variable's name in SET (MySQL's `@@`, `@@session.`).
    system_variable_prefixes: tuple[str, ...] = ()
    # The current-database/search path setting is a list of identifiers (PostgreSQL's
    # search_path) rather than one name (MySQL's current database).
    search_path_is_list: bool = True
    # The setting that holds the search path (None: the dialect has none; MySQL's USE).
    search_path_setting: str | None = "search_path"
    # The longest identifier the server keeps whole (PostgreSQL cuts longer ones to 63 bytes of
    # the database encoding, silently, so two names the proxy tells apart can be one name on the
    # server); None where the server refuses them itself (MySQL).
    identifier_bytes: int | None = 63
    # The server's own lexer, for the text between tokens (see `gap_problem`): its whitespace
    # characters, its line-comment openers, whether block comments nest, and comment forms whose
    # content the server executes (MySQL's `/*!…*/`), which must never be read as a comment.
    whitespace: frozenset[str] = frozenset(" \t\n\r\f\v")
    line_comments: tuple[str, ...] = ("--",)
    # What ends a line comment (PostgreSQL: either; MySQL reads `#` and `-- ` up to '\n' only).
    line_comment_ends: tuple[str, ...] = ("\n", "\r")
    nested_block_comments: bool = True
    executed_comments: tuple[str, ...] = ()

    # --- lexing -----------------------------------------------------------------------------

    def gap_problem(self, text: str) -> str | None:
        r"""What in `text`, the characters between two tokens (or before the first, after the
        last), the server would read as part of a statement; None when it is only whitespace and
        comments by the server's own rules.

        The parser's tokenizer is more generous than the server's: it takes U+3000 and U+00A0
        for spaces, where PostgreSQL reads every non-ASCII character as part of an identifier
        (`x␣$$` is one name to the server, a name and an opening dollar quote to the parser).
        Whatever the two would split differently is refused, not guessed.

        >>> POSTGRES.gap_problem(" /* a /* nested */ comment */ -- to the end\n ")
        >>> POSTGRES.gap_problem("\u3000")
        'the character U+3000 between words, which the server would read as part of a name'
        >>> MYSQL.gap_problem(" /*!50000 UNION */ ")
        'a comment the server executes (/*!…*/)'
        """
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if ch in self.whitespace:
                i += 1
                continue
            if any(text.startswith(p, i) for p in self.executed_comments):
                return f"a comment the server executes ({self.executed_comments[0]}…*/)"
            opener = next((c for c in self.line_comments if text.startswith(c, i)), None)
            if opener is not None:
                end = min((j for j in (text.find(e, i) for e in self.line_comment_ends) if j >= 0), default=n)
                i = end
                continue
            if text.startswith("/*", i):
                depth, i = 1, i + 2
                while i < n and depth:
                    if self.nested_block_comments and text.startswith("/*", i):
                        depth, i = depth + 1, i + 2
                    elif text.startswith("*/", i):
                        depth, i = depth - 1, i + 2
                    else:
                        i += 1
                if depth:
                    return "an unterminated comment"
                continue
            return (
                f"the character U+{ord(ch):04X} between words, which the server would read as part of a name"
            )
        return None

    @staticmethod
    def continues_word(ch: str) -> bool:
        """Whether the server reads `ch` right after an unquoted word as more of that word
        (PostgreSQL: letters, digits, `_`, `$` and every non-ASCII character; MySQL likewise)."""
        return (ch.isascii() and (ch.isalnum() or ch in "_$")) or not ch.isascii()

    # The schema temporary tables are created in (PostgreSQL's pg_temp; None: the current one).
    temporary_schema: str | None = None

    # --- names ------------------------------------------------------------------------------

    def fold_identifier(self, name: str, quoted: bool) -> str:
        """An identifier as the server resolves it: sqlglot's rule for the dialect (PostgreSQL
        folds unquoted names to lower case, ASCII only; MySQL keeps them)."""
        node = exp.Identifier(this=name, quoted=quoted)
        return Dialect.get_or_raise(self.sqlglot).normalize_identifier(node).name

    def fold_function(self, name: str, quoted: bool) -> str:
        """A function name as the server looks it up (unquoted function names fold like any
        other name; MySQL's never depend on case)."""
        if self.case_insensitive_functions:
            return name.lower()
        return self.fold_identifier(name, quoted)

    def column_key(self, name: str) -> str:
        """The form in which two column (or output) names compare equal."""
        return name.lower() if self.case_insensitive_columns else name

    def is_catalog_schema(self, schema: str | None) -> bool:
        if not schema:
            return False
        return (schema.lower() if self.case_insensitive_catalog else schema) in self.catalog_schemas

    def is_sensitive_catalog(self, schema: str, name: str) -> bool:
        key = f"{schema}.{name}"
        return (key.lower() if self.case_insensitive_catalog else key) in self.sensitive_catalog_tables

    def catalog_class(self, schema: str | None, relation: str, column: str) -> str | None:
        """The class a catalog column carries for restricted roles (pg_stat_activity.query)."""
        if not self.catalog_classes:
            return None
        if self.case_insensitive_catalog:
            # The classified keys are in lower case; MySQL reads INFORMATION_SCHEMA.PROCESSLIST as
            # the same view, and a wrongly folded user table only gets masked more.
            schema = schema.lower() if schema else schema
            relation, column = relation.lower(), column.lower()
        found = self.catalog_classes.get((schema, relation, column))
        return found if found is not None else self.catalog_classes.get((None, relation, column))

    def catalog_classified(self, schema: str | None, relation: str) -> bool:
        """Whether the facts classify any column of that relation."""
        if self.case_insensitive_catalog:
            schema, relation = (schema.lower() if schema else schema), relation.lower()
        return any(r == relation and s in (None, schema) for s, r, _ in self.catalog_classes)

    def exposing_show(self, words: tuple[str, ...]) -> bool:
        """Whether a SHOW with these words (upper case, quoted names left out) returns text the
        proxy cannot mask by column: other sessions' SQL with its literals, replication events
        with row values, a replica's last error. (SHOW WARNINGS / ERRORS are described instead:
        see `described_shows`.)"""
        if "COUNT" in words:  # SHOW COUNT(*) WARNINGS: a number
            return False
        if words and words[0] in self.described_shows:
            return False
        return any(
            words[i : i + len(entry)] == entry for entry in self.exposing_shows for i in range(len(words))
        )

    # --- session settings ---------------------------------------------------------------------

    def setting_key(self, name: str) -> str:
        """A setting's name as the server looks it up: case-insensitive, and for MySQL without
        the `@@`, `session.` or `local.` that may precede a system variable."""
        key = name.strip().lower()
        for prefix in self.system_variable_prefixes:
            key = key.removeprefix(prefix)
        return key

    def unsafe_setting(self, name: str, value: str) -> bool:
        """Whether setting `name` to `value` (the text a client sends in a startup packet, a SET
        statement's value, or what the server reports in ParameterStatus) would make the server
        read SQL text differently from maskgate. One rule for every route a setting can take.

        >>> POSTGRES.unsafe_setting("client_encoding", "UTF-8")
        False
        >>> POSTGRES.unsafe_setting("CLIENT_ENCODING", "LATIN1")
        True
        >>> POSTGRES.unsafe_setting("standard_conforming_strings", "off")
        True
        >>> MYSQL.unsafe_setting("@@session.sql_mode", "STRICT_TRANS_TABLES,ANSI_QUOTES")
        True
        """
        rule = self.lexical_settings.get(self.setting_key(name))
        if rule is None:
            return False
        words = [w for w in value.replace(",", " ").split() if w]
        if rule.kind == "one_of":
            return not (len(words) == 1 and words[0].lower() in rule.words)
        if rule.kind == "no_flag_of":
            return any(w.upper().strip("'\"") in rule.words or w.startswith("@") for w in words)
        if rule.kind == "only_flags_of":
            # A number is a bit mask of flags (`SET sql_mode = 4` is ANSI_QUOTES): only named
            # flags known to leave text read the default way pass.
            return any(w.upper().strip("'\"") not in rule.words or w.startswith("@") for w in words)
        if rule.kind == "encoding":
            cleaned = "".join(ch for ch in value.lower() if ch.isalnum())
            return not (len(words) == 1 and cleaned in self.client_encodings)
        return True  # an unknown kind of rule: fail closed

    def search_path_from_setting(self, value: str) -> tuple[str, ...]:
        """The schemas of a search_path value as the server reports it (ParameterStatus, SHOW) or
        as set_config() receives it, split and folded as the server does: a comma-separated list
        whose quoted elements keep their case (`""` is a quote) and whose bare ones fold.

        >>> POSTGRES.search_path_from_setting('"Sales", public')
        ('Sales', 'public')
        >>> POSTGRES.search_path_from_setting('Sales')
        ('sales',)
        >>> POSTGRES.search_path_from_setting('"$user", public')
        ('$user', 'public')
        >>> MYSQL.search_path_from_setting('Crm')
        ('Crm',)
        """
        if not self.search_path_is_list:
            return (value,) if value else ()
        out: list[str] = []
        i, n = 0, len(value)
        while i < n:
            while i < n and value[i].isspace():
                i += 1
            if i >= n:
                break
            if value[i] == '"':
                j = i + 1
                name = []
                while j < n:
                    if value[j] == '"':
                        if j + 1 < n and value[j + 1] == '"':
                            name.append('"')
                            j += 2
                            continue
                        break
                    name.append(value[j])
                    j += 1
                out.append("".join(name))
                i = j + 1
            else:
                j = i
                while j < n and value[j] != "," and not value[j].isspace():
                    j += 1
                out.append(self.fold_identifier(value[i:j], quoted=False))
                i = j
            while i < n and value[i].isspace():
                i += 1
            if i < n and value[i] == ",":
                i += 1
        return tuple(p for p in out if p)


_ENCODING = LexicalRule("encoding")

# Settings set_config() may change for a restricted role (pg_dump and drivers use these).
_PG_SAFE_SETTINGS = frozenset(
    {
        "search_path",
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "client_encoding",
        "standard_conforming_strings",
        "check_function_bodies",
        "xmloption",
        "client_min_messages",
        "row_security",
        "datestyle",
        "intervalstyle",
        "timezone",
        "extra_float_digits",
        "application_name",
        "default_transaction_read_only",
        "transaction_isolation",
        "bytea_output",
        "synchronous_commit",
        "work_mem",
        "jit",
        # Only narrows what the session may read through views and foreign tables (pg_dump 17+
        # sets it to 'view, foreign-table' as a hardening step).
        "restrict_nonsystem_relation_kind",
    }
)

_PG_DANGEROUS = frozenset(
    {
        # notifications to other sessions (NOTIFY needs statements: [admin])
        "pg_notify",
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

# Volatile functions a restricted role may call: none writes, locks, waits or acts on the server
# or on another session, and none returns data beyond the session's own or the server's state.
_PG_HARMLESS_VOLATILE = frozenset(
    {
        # randomness and the clock: values that depend on nothing stored
        "random",
        "random_normal",
        "gen_random_uuid",
        "uuidv4",
        "uuidv7",
        "clock_timestamp",
        "timeofday",
        # this session's own sequence values (what its own nextval() returned)
        "currval",
        "lastval",
        # sizes on disk (psql's \d+ and \l+, GUI tools): how big, never what is inside
        "pg_relation_size",
        "pg_table_size",
        "pg_indexes_size",
        "pg_total_relation_size",
        "pg_database_size",
        "pg_tablespace_size",
        # server and lock state a maintenance engineer reads: recovery, JIT, who blocks whom
        "pg_is_in_recovery",
        "pg_jit_available",
        "pg_blocking_pids",
        "pg_safe_snapshot_blocking_pids",
        "pg_notification_queue_usage",
        "pg_get_wait_events",
        "pg_partition_tree",
        "pg_partition_ancestors",
        # WAL and replication positions (replication lag): where, never what
        "pg_current_wal_lsn",
        "pg_current_wal_insert_lsn",
        "pg_current_wal_flush_lsn",
        "pg_last_wal_receive_lsn",
        "pg_last_wal_replay_lsn",
        "pg_last_xact_replay_timestamp",
        "pg_is_wal_replay_paused",
        "pg_get_wal_replay_pause_state",
        # a sequence's position, as pg_dump reads it (the server checks SELECT on the sequence)
        "pg_get_sequence_data",
    }
)

# Other sessions' SQL (pg_stat_activity's query, read through the view, is classified free_text)
# and values kept in statistics (pg_stats is row-filtered per role); the session's own prepared
# statements and cursors (their catalog views are refused too).
_PG_EXPOSING = frozenset(
    {
        "pg_stat_get_activity",
        "pg_stat_get_backend_activity",
        "pg_stat_statements",
        "pg_mcv_list_items",
        "pg_prepared_statement",
        "pg_cursor",
    }
)

# Renderings sqlglot gives PostgreSQL functions it types that differ from the catalog's names,
# and call forms of SQL syntax (not in pg_proc): the test in tests/policies/test_functions.py
# checks every pg_catalog name against these.
_PG_FUNCTION_ALIASES = MappingProxyType({"trim": "btrim", "hex": "to_hex"})
_PG_SYNTAX_CALLS = frozenset(
    {
        "cast",
        "try_cast",
        "coalesce",
        "nullif",
        "greatest",
        "least",
        "exists",
        "all",  # x <> ALL (array): a comparison with every element, not a function
        "any",
        "some",
        "array",
        "row",
        "grouping",
        "xmlelement",
        "xmlforest",
        "xmlconcat",
        "xmlpi",
        "xmlroot",
        "xmlparse",
        "xmlserialize",
        "json",
        "json_array",
        "json_arrayagg",
        "json_objectagg",
        "json_scalar",
        "json_serialize",
        "json_query",
        "json_value",
        "json_exists",
        "current_time",
    }
)


@functools.cache
def _postgres_builtins() -> Mapping[tuple[str, str], str]:
    from policies.sql.postgres_functions import FUNCTIONS

    return MappingProxyType(
        {
            (schema, name): volatility
            for schema, by in FUNCTIONS.items()
            for volatility, names in by.items()
            for name in names.split()
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

_PG_COLLECTING = frozenset(
    {
        "array_agg",
        "string_agg",
        "group_concat",  # sqlglot's name for string_agg
        "json_agg",
        "j_s_o_n_array_agg",  # sqlglot's name for json_agg
        "json_agg_strict",
        "jsonb_agg",
        "jsonb_agg_strict",
        "json_object_agg",
        "j_s_o_n_object_agg",  # sqlglot's name for json_object_agg and json_objectagg
        "json_object_agg_strict",
        "json_object_agg_unique",
        "json_object_agg_unique_strict",
        "jsonb_object_agg",
        "j_s_o_n_b_object_agg",  # sqlglot's name for jsonb_object_agg
        "jsonb_object_agg_strict",
        "jsonb_object_agg_unique",
        "jsonb_object_agg_unique_strict",
        "json_objectagg",
        "json_arrayagg",
        "xmlagg",
        "range_agg",
    }
)

POSTGRES = DialectFacts(
    name="postgres",
    sqlglot="postgres",
    default_search_path=("public",),
    default_schema="public",
    catalog_schemas=frozenset({"pg_catalog", "information_schema"}),
    implicit_catalog_prefix="pg_",
    implicit_catalog="pg_catalog",
    keyword_values=frozenset({"user", "current_role"}),
    system_columns=frozenset({"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"}),
    sensitive_catalog_tables=frozenset(
        {
            "pg_catalog.pg_stats_ext",
            "pg_catalog.pg_stats_ext_exprs",
            "pg_catalog.pg_statistic",
            "pg_catalog.pg_statistic_ext_data",
            "pg_catalog.pg_authid",
            "pg_catalog.pg_shadow",
            "pg_catalog.pg_user_mapping",
            "pg_catalog.pg_user_mappings",
            "pg_catalog.pg_largeobject",
            "pg_catalog.pg_prepared_statements",
        }
    ),
    dangerous_functions=_PG_DANGEROUS,
    identity_settings=frozenset({"role", "session_authorization", "session_replication_role"}),
    total_functions=TOTAL_FUNCTIONS,
    set_returning_functions=_PG_SET_RETURNING,
    timing_functions=frozenset({"pg_sleep", "pg_sleep_for", "pg_sleep_until"}),
    collecting_functions=_PG_COLLECTING,
    function_rights=MappingProxyType(
        {
            # sequence writers: a write of the sequence, as UPDATE of a row would be
            "nextval": "update",
            "setval": "update",
            # locks other sessions wait on
            **dict.fromkeys(
                (
                    "pg_advisory_lock",
                    "pg_advisory_lock_shared",
                    "pg_advisory_xact_lock",
                    "pg_advisory_xact_lock_shared",
                    "pg_try_advisory_lock",
                    "pg_try_advisory_lock_shared",
                    "pg_try_advisory_xact_lock",
                    "pg_try_advisory_xact_lock_shared",
                ),
                "admin",
            ),
        }
    ),
    volatile_function_right="admin",
    harmless_volatile_functions=_PG_HARMLESS_VOLATILE,
    # Marked stable, yet each assigns the session a transaction id (a write to the commit log).
    effect_functions=frozenset({"txid_current", "pg_current_xact_id"}),
    exposing_functions=_PG_EXPOSING,
    builtin_functions=_postgres_builtins,
    function_aliases=_PG_FUNCTION_ALIASES,
    syntax_calls=_PG_SYNTAX_CALLS,
    catalog_relations=(
        ("pg_catalog", "pg_stat_activity"),
        ("pg_catalog", "pg_stats"),
        ("pg_catalog", "pg_cursors"),
    ),
    catalog_classes=MappingProxyType(
        {
            # other sessions' SQL, with the customer numbers their literals hold
            ("pg_catalog", "pg_stat_activity", "query"): "free_text",
            # this session's cursors, with the SQL that declared them (and its literals);
            # psycopg reads the view to close its named cursors
            ("pg_catalog", "pg_cursors", "statement"): "free_text",
            # the pg_stat_statements extension's view, in the schema it was installed in
            (None, "pg_stat_statements", "query"): "free_text",
        }
    ),
    column_statistics=("pg_catalog", "pg_stats", ("schemaname", "tablename", "attname")),
    client_encodings=frozenset({"utf8", "unicode"}),
    lexical_settings=MappingProxyType(
        {
            "standard_conforming_strings": LexicalRule(
                "one_of", frozenset({"on", "true", "yes", "1", "default"})
            ),
            "backslash_quote": LexicalRule(
                "one_of", frozenset({"off", "safe_encoding", "false", "no", "0", "default"})
            ),
            "client_encoding": _ENCODING,
            "names": _ENCODING,  # SET NAMES 'x' is SET client_encoding = 'x'
        }
    ),
    safe_settings=_PG_SAFE_SETTINGS,
    setting_functions=frozenset({"set_config"}),
    settings_catalog=("pg_catalog", "pg_settings", "name"),
    temporary_schema="pg_temp",
)

# MySQL's own functions that are total in the sense of TOTAL_FUNCTIONS: digests and encodings
# defined for every string (SHA2 with an unknown length returns NULL, never an error), MID and
# SUBSTRING_INDEX (positions clamp), QUOTE, JSON_QUOTE and JSON_ARRAY (they quote any value).
# Not listed: CONV, CHAR, BIN, OCT, ELT (they read a value as a number, and a string that is
# none makes a warning quoting it); LOCATE, INSTR, FIELD, FIND_IN_SET, STRCMP, INTERVAL() (they
# compare it: predicates); UNHEX, COMPRESS, ORD, ASCII, INSERT, JSON_OBJECT (sqlglot types its
# pairs) are not reviewed yet and refused until they are.
_MYSQL_TOTAL = TOTAL_FUNCTIONS | frozenset(
    {
        "sha",  # sqlglot's name for sha1 and sha
        "sha1",
        "sha2",
        "crc32",
        "hex",
        "to_base64",
        "soundex",
        "mid",
        "substring_index",
        "quote",
        "json_quote",
        "json_array",
    }
)

# The sql_mode flags that leave SQL text read as maskgate's parser reads it (MySQL 8 and MariaDB):
# strictness, date checks, SHOW CREATE output, arithmetic and assignment details. Everything else
# is refused for restricted roles: ANSI_QUOTES ("x" is a name), NO_BACKSLASH_ESCAPES ('\' is a
# whole string), PIPES_AS_CONCAT (|| joins strings), HIGH_NOT_PRECEDENCE and IGNORE_SPACE (another
# tree from the same words), the combination modes that include them (ANSI, DB2, MSSQL, ORACLE,
# POSTGRESQL, MAXDB, MYSQL323, MYSQL40), numbers (a bit mask: 4 is ANSI_QUOTES) and names this list
# does not know. DEFAULT is the server's own, checked when each session logs in.
SAFE_SQL_MODES = frozenset(
    {
        "",
        "DEFAULT",
        "ALLOW_INVALID_DATES",
        "EMPTY_STRING_IS_NULL",
        "ERROR_FOR_DIVISION_BY_ZERO",
        "NO_AUTO_CREATE_USER",
        "NO_AUTO_VALUE_ON_ZERO",
        "NO_DIR_IN_CREATE",
        "NO_ENGINE_SUBSTITUTION",
        "NO_FIELD_OPTIONS",
        "NO_KEY_OPTIONS",
        "NO_TABLE_OPTIONS",
        "NO_UNSIGNED_SUBTRACTION",
        "NO_ZERO_DATE",
        "NO_ZERO_IN_DATE",
        "ONLY_FULL_GROUP_BY",
        "PAD_CHAR_TO_FULL_LENGTH",
        "REAL_AS_FLOAT",
        "SIMULTANEOUS_ASSIGNMENT",
        "STRICT_ALL_TABLES",
        "STRICT_TRANS_TABLES",
        "TIME_ROUND_FRACTIONAL",
        "TIME_TRUNCATE_FRACTIONAL",
        "TRADITIONAL",
    }
)


MYSQL = DialectFacts(
    name="mysql",
    expression_limits=False,
    sqlglot="mysql",
    # MySQL: `#` and `-- ` (with a space) comment to the end of the line; block comments do not
    # nest; `/*!…*/` and `/*+…*/` are executed (version comments) or read as optimizer hints.
    # The proxy expands version comments first (policies/sql/executable_comments.py); one left
    # in the text is refused. A hint right after SELECT / INSERT / UPDATE / DELETE is a token to
    # sqlglot, parsed and sent again: hints steer the plan (and MAX_EXECUTION_TIME, SET_VAR of
    # hint-settable variables, applied after the text is read) and cannot read data. One holding
    # a quote is refused by the tokenizer (where a quoted `*/` ends it is not certain); `/*+`
    # anywhere else is refused here.
    line_comments=("#", "-- ", "--\t", "--\n", "--\r"),
    line_comment_ends=("\n",),
    nested_block_comments=False,
    executed_comments=("/*!", "/*+", "/*M!"),
    default_search_path=(),
    default_schema=None,
    catalog_schemas=frozenset({"information_schema"}),
    implicit_catalog_prefix=None,
    implicit_catalog=None,
    sensitive_catalog_tables=frozenset(
        {
            "information_schema.processlist",
            "information_schema.innodb_trx",
            "information_schema.column_statistics",
        }
    ),
    dangerous_functions=frozenset({"load_file", "sys_exec", "sys_eval", "benchmark"}),
    identity_settings=frozenset({"role", "session_authorization"}),
    total_functions=_MYSQL_TOTAL,
    set_returning_functions=frozenset(),
    timing_functions=frozenset({"sleep", "benchmark"}),
    collecting_functions=frozenset({"group_concat", "json_arrayagg", "json_objectagg", "j_s_o_n_object_agg"}),
    function_rights=MappingProxyType({"get_lock": "admin"}),
    client_encodings=frozenset({"utf8", "utf8mb4", "utf8mb3"}),
    lexical_settings=MappingProxyType(
        {
            # ANSI_QUOTES makes "x" a name; NO_BACKSLASH_ESCAPES makes '\' a whole string; the
            # combination modes switch either on. PIPES_AS_CONCAT (|| is concatenation, not OR),
            # HIGH_NOT_PRECEDENCE (NOT a BETWEEN …) and IGNORE_SPACE (`count (x)`, built-in names
            # reserved) make the server build another tree from the same words than the one judged.
            "sql_mode": LexicalRule("only_flags_of", SAFE_SQL_MODES),
            "names": _ENCODING,
            "character_set_client": _ENCODING,
        }
    ),
    catalog_classes=MappingProxyType(
        {
            # Other sessions' SQL, with the customer numbers their literals hold (and the error
            # messages of statements, which echo values): the detectors mask numbers in place.
            **dict.fromkeys(
                (
                    ("information_schema", "processlist", "info"),
                    ("information_schema", "processlist", "info_binary"),  # MariaDB
                    ("performance_schema", "processlist", "info"),
                    ("performance_schema", "threads", "processlist_info"),
                    ("performance_schema", "prepared_statements_instances", "sql_text"),
                    ("performance_schema", "events_statements_summary_by_digest", "query_sample_text"),
                    *(
                        ("performance_schema", f"events_statements_{which}", column)
                        for which in ("current", "history", "history_long")
                        for column in ("sql_text", "message_text")
                    ),
                    *(
                        ("sys", view, column)
                        for view in ("processlist", "x$processlist", "session", "x$session")
                        for column in ("current_statement", "last_statement")
                    ),
                    ("mysql", "general_log", "argument"),
                    ("mysql", "slow_log", "sql_text"),
                    # Column statistics hold column values (MySQL's histograms, MariaDB's
                    # engine-independent min/max and histograms): restricted roles without
                    # statements: [all] may not read the first at all (sensitive_catalog_tables).
                    ("information_schema", "column_statistics", "histogram"),
                    ("mysql", "column_stats", "min_value"),
                    ("mysql", "column_stats", "max_value"),
                    ("mysql", "column_stats", "histogram"),
                    # SHOW WARNINGS / ERRORS (described_shows): the messages of the session's
                    # last statement, which quote the values they could not convert or truncated
                    # ("Truncated incorrect CHAR(3) value: '13812345678'").
                    ("information_schema", "show_warnings", "message"),
                    ("information_schema", "show_errors", "message"),
                ),
                "free_text",
            ),
        }
    ),
    exposing_shows=(
        ("PROCESSLIST",),  # other sessions' SQL
        ("ENGINE",),  # SHOW ENGINE INNODB STATUS: running and deadlocked statements, as written
        ("BINLOG", "EVENTS"),  # the rows and statements written
        ("RELAYLOG", "EVENTS"),
        ("SLAVE", "STATUS"),  # Last_SQL_Error quotes the failing event, with its values
        ("SLAVES", "STATUS"),  # MariaDB's SHOW ALL SLAVES STATUS
        ("REPLICA", "STATUS"),
        ("REPLICAS", "STATUS"),
        ("EXPLAIN",),  # MariaDB's SHOW EXPLAIN / ANALYZE FOR <connection>: another session's
        ("ANALYZE",),  # statement, its conditions' literals included
        ("FOR", "CONNECTION"),  # MySQL's EXPLAIN FOR CONNECTION
    ),
    described_shows=MappingProxyType(
        {
            # Connector/J reads SHOW WARNINGS after every statement that warned; the proxy adds
            # its own row-limit warning there. Refused, it would break drivers; described, its
            # Message column is free text for restricted roles.
            "WARNINGS": ("information_schema", "show_warnings", ("level", "code", "message")),
            "ERRORS": ("information_schema", "show_errors", ("level", "code", "message")),
        }
    ),
    case_insensitive_columns=True,
    case_insensitive_catalog=True,
    case_insensitive_functions=True,
    case_insensitive_statement_names=True,
    # proxy/mysql/relay.py keeps protocol-level (COM_STMT_*) statements only, so far.
    system_variable_prefixes=("@@", "session.", "local."),
    search_path_is_list=False,
    search_path_setting=None,
    right_join_star_differs=True,
    numbers_compare_loosely=True,
    parenthesized_positions=True,
    serializable_locks=True,
    dummy_table="DUAL",
    identifier_bytes=None,
)

DIALECTS: dict[str, DialectFacts] = {"postgres": POSTGRES, "postgresql": POSTGRES, "mysql": MYSQL}


def dialect_facts(name: str) -> DialectFacts:
    try:
        return DIALECTS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r}; expected postgres or mysql") from None
