"""Decision values: what the engine tells a session to do with one statement.

Owns only the plain data types shared by policies/ (which produces them) and proxy/
(which acts on them). No logic, no I/O: a decision must be printable, comparable and cacheable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Fixed reason codes (shared/DESIGN.md section 6); metrics use them as a bounded label.
REASONS = (
    "statement_not_allowed",
    "table_denied",
    "class_denied",
    "masked_predicate",
    "whole_row",
    "masked_flow",
    "function_denied",
    "unparsable",
    "outside_hours",
    "row_budget",
    # HTTP: the method and path match none of the role's `routes` (or a download it may not take).
    "route_denied",
    # HTTP: a request maskgate cannot read (invalid JSON or form body, bad content encoding).
    "bad_request",
    # Not a policy verdict: `audit_required: true` and the audit log cannot be written.
    "audit_unavailable",
    # Nor this: the database's schema could not be loaded (its sessions are refused at connect).
    "schema_unavailable",
)


@dataclass(frozen=True, slots=True)
class ColumnMask:
    """How output column `index` of a result is treated before it reaches the client.

    `action` is one of clear | mask | hash | fake | redact | null. `cls` is the data class the
    column carries (None for unclassified columns, whose action is then `clear`). `sources` are
    the fully qualified `schema.table.column` names the value derives from, for explain and audit.
    """

    index: int
    name: str
    cls: str | None
    action: str
    sources: tuple[str, ...] = ()
    derived: bool = False


@dataclass(frozen=True, slots=True)
class SettingChange:
    """A statement's effect on a session setting the proxy follows (search_path, role, …).

    `value` is the new value as the server will hold it (for search_path: the exact schema
    names, folded as the server folds them); None resets it to the session's default. `local`
    (SET LOCAL, set_config(…, true)) lasts until the end of the current transaction."""

    name: str
    value: tuple[str, ...] | None
    local: bool = False


@dataclass(frozen=True, slots=True)
class TransactionEffect:
    """What a transaction-control statement does: begin | commit | rollback | savepoint |
    release | rollback_to | prepare (PREPARE TRANSACTION). `name` is the savepoint's (folded)."""

    kind: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class CursorEffect:
    """What a SQL cursor statement does to the session's cursors: declare | fetch | move | close.

    `name` is the cursor's name as the server holds it (unquoted names folded, quoted ones kept);
    None closes every cursor (CLOSE ALL, DISCARD ALL). `hold`: DECLARE … WITH HOLD, which outlives
    the transaction that commits it. A declare's Allow describes the cursor's rows (columns, row
    limit, classes); a FETCH's rows are masked by the Allow its cursor was declared with."""

    action: str
    name: str | None
    hold: bool = False


@dataclass(frozen=True, slots=True)
class PreparedEffect:
    """What a statement does to the session's prepared statements, which the server keeps in ONE
    namespace for SQL-level PREPARE and the extended protocol's Parse alike.

    `action` is one of: `prepare` (PREPARE `name`: the Allow carrying this effect is also the
    prepared body's decision: its columns, row limit and rewrite are the body's), `deallocate`
    (DEALLOCATE `name`), `deallocate_all` (DEALLOCATE ALL, DISCARD ALL), or `execute` (EXECUTE
    `name`: what it runs is the statement kept under that name, which only the session knows).
    `name` is folded as the server folds it (unquoted lower case, quoted kept); empty for
    `deallocate_all`. Not transactional: PREPARE and DEALLOCATE stay done after a ROLLBACK."""

    action: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class CopyFraming:
    """How a COPY TO STDOUT lays out its rows, read from its options by the engine: the wire
    says only "textual", and a masker that guessed the layout could be steered across field
    boundaries. `format` is text or csv (binary is never masked); `quote` and `escape` are CSV's;
    `header`: the first CopyData is the column names."""

    format: str = "text"
    delimiter: str = "\t"
    null: str = "\\N"
    quote: str = '"'
    escape: str = '"'
    header: bool = False


@dataclass(frozen=True, slots=True)
class Allow:
    """Run the statement (possibly rewritten), then mask the result as described.

    `columns` is positional over the result's columns; a column past its end, or an unknown
    shape (e.g. a statement whose output the engine could not describe), gets `clear` only for
    roles that see every class clear, and detector scanning always. `detect` is the set of
    classes value detectors scan for in every text value and message the role receives.
    `row_limit` is the number of rows the client may receive (None: no limit, e.g. DBA role).
    """

    kind: str
    columns: tuple[ColumnMask, ...] = ()
    row_limit: int | None = None
    rewritten_sql: str | None = None
    detect: frozenset[str] = frozenset()
    tables: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    # Session effects the proxy must track (e.g. a new search_path, or DDL that invalidates the schema).
    search_path: tuple[str, ...] | None = None
    # The same effects with their transaction semantics: settings changed (SET, SET LOCAL, RESET,
    # RESET ALL as name "*", DISCARD ALL), and what a transaction-control statement does.
    settings: tuple[SettingChange, ...] = ()
    transaction: TransactionEffect | None = None
    cursor: CursorEffect | None = None
    # What it does to the session's prepared statements (PREPARE, DEALLOCATE, DISCARD ALL, EXECUTE).
    prepared: PreparedEffect | None = None
    schema_changed: bool = False
    # How many values it compares masked classes with (`masked_predicates: equality`), which a
    # multi-statement string adds up (policies/decide.py MAX_LOOKUP_VALUES).
    lookups: int = 0
    # Classes its conditions compute over (`substr(phone, p, 1) = d`, LIKE, ranges; not `phone =
    # a value`): a statement can infer a value this way without returning it (the audit's
    # `computed`, for roles that see the class in clear).
    probed: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    # A multi-statement string: one Allow per statement, in order (each with its own columns and
    # row limit); `rewritten_sql` above is then the whole rewritten string. Empty for one statement.
    statements: tuple[Allow, ...] = ()
    # The policy revision that made this decision and the statement's fingerprint (its literals
    # taken out, read with the statement's own dialect): audit records them as they are, so it
    # needs no SQL knowledge. Empty for decisions made outside the engine.
    revision: str = ""
    fingerprint: str = ""
    # COPY … TO STDOUT: the layout of its rows, for the proxy's COPY masker (None: text defaults).
    copy: CopyFraming | None = None

    def parts(self) -> tuple[Allow, ...]:
        return self.statements or (self,)

    @property
    def allowed(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Block:
    """Refuse the statement. `reason` is one of REASONS; `message` is safe to show the client."""

    reason: str
    message: str
    tables: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    kind: str = "unknown"
    revision: str = ""  # as for Allow
    fingerprint: str = ""

    @property
    def allowed(self) -> bool:
        return False


Decision = Allow | Block
