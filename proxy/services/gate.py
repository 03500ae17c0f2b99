"""The contract between protocol sessions and the shared services: the Gate, and what crosses it.

Owns only the interface and the plain records that cross it (`Principal`, `StatementRecord`,
`MaskerSource`). A protocol session (PostgreSQL, MySQL, HTTP) knows nothing of policy files, SQL
analysis, audit files or Prometheus: it asks the Gate to authenticate, decide and mask, and
reports what happened. Must not import a protocol package; `services/guard.py` implements it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from policies.decision import Allow, Block, Decision

# Credential kinds, one per way a client proves who it is. A protocol asks for the kind its
# handshake can check; a user without one cannot log in over that protocol.
SCRAM_SHA_256 = "scram-sha-256"  # PostgreSQL's verifier: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>
MYSQL_NATIVE_PASSWORD = "mysql_native_password"  # MySQL's "*" + 40 hex digits: SHA1(SHA1(password))


@dataclass(frozen=True, slots=True)
class Principal:
    """A person maskgate can authenticate: their name, role and stored credentials from the policy."""

    user: str
    role: str
    # True when the role sees every class clear and may run anything: masking and detectors are
    # skipped entirely on its results (fast path), but decisions and audit still apply.
    unrestricted: bool = False
    # (kind, secret) pairs: verifiers and hashes, never passwords. Kept out of repr so that a
    # principal in a log line or a traceback does not carry them.
    credentials: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # The database role the person's statements run as upstream (None: the service account).
    database_role: str | None = None

    def credential(self, kind: str) -> str | None:
        """The stored secret of `kind` (SCRAM_SHA_256, …), or None when the user has none."""
        for k, secret in self.credentials:
            if k == kind:
                return secret
        return None


@dataclass(slots=True)
class StatementRecord:
    """What a session reports of a statement, for audit and metrics: before it is forwarded
    (`event` start, through `Gate.begin`), when it ended (end) or when it was refused (refused)."""

    protocol: str  # postgres | mysql | http
    session: str
    user: str
    role: str
    client: str
    database: str
    sql: str
    decision: Decision
    rows: int = 0
    masked: int = 0
    truncated: bool = False
    duration_s: float = 0.0  # client-visible time from statement received to completion
    overhead_s: float = 0.0  # time spent inside maskgate (decide + mask), excluding upstream waits
    error: str | None = None  # upstream error SQLSTATE, if the database refused it
    extra: dict[str, Any] = field(default_factory=dict)
    id: str = ""  # the statement's id: its start and end records share it
    event: str = ""  # start | end | refused ("": refused for a Block, else end)
    dialect: str = ""  # how its SQL is read (the audit record strips its comments with it)
    # end: ok | error | refused (by maskgate after the database started it) | cancelled (by
    # maskgate: the client went away, or shutdown) | skipped (an earlier message of its batch
    # failed) | unknown (the connection to the database ended first). "": ok, or error if `error`.
    outcome: str = ""
    cancelled: bool = False  # maskgate asked the database to cancel it


class Disclosed(NamedTuple):
    """One value a person received, for the observers of disclosures (ledger, canaries, budgets).

    Never logged or stored as it is: observers keep only its keyed hash (services/disclosure.py).
    A NamedTuple, not a frozen dataclass: one is built per value on the event loop, and a frozen
    dataclass's __init__ costs some twenty times a tuple's. Fields read the same.
    """

    cls: str  # its data class; "customer_key" for the policy's customer key column
    column: str  # "schema.table.column" it came from, "" when found by a detector
    value: str  # the value as received upstream (before masking), as text
    clear: bool  # it reached the person in clear


# Told of every batch of values a person received: (principal, statement id, values).
Observer = Callable[["Principal", str, Sequence[Disclosed]], None]


class MaskerSource(Protocol):
    """What row masking needs from the Gate: per-column value maskers and text detectors."""

    def value_masker(self, cls: str | None, action: str) -> Callable[[Any], Any]:
        """Per-column masker (masking.make_masker with the configured key), cached."""
        ...

    def text_masker(self, classes: frozenset[str]) -> Callable[[str], str]:
        """Value-detector masker for free text (masking.make_text_masker), cached. Returns the same
        object when nothing is found."""
        ...


class Gate(MaskerSource, Protocol):
    """Everything a protocol session may ask for. Implementations must be cheap and non-blocking.

    `upstream` names the config section of the server a session talks to (`postgres`, `mysql`):
    the same database name on two servers is two schemas.
    """

    masking_key: bytes
    # Bumped on every policy reload: decisions carried by prepared statements are made again.
    generation: int
    # True when someone watches disclosures (ledger, canaries, budgets): row paths then call
    # `disclose` once per batch of rows. False keeps them on their fast paths, untouched.
    observing: bool

    def lookup(self, user: str) -> Principal | None:
        """The principal for a user name, or None (unknown users get the same error as bad passwords)."""
        ...

    def decide(
        self,
        principal: Principal,
        sql: str,
        *,
        dialect: str,
        search_path: tuple[str, ...],
        database: str,
        upstream: str = "postgres",
    ) -> Decision: ...

    def spend_lookups(self, principal: Principal, n: int) -> bool:
        """Charge `n` lookups of masked values to the person's hourly budget (their role's
        `lookups_per_hour`); False when that would exceed it (the statement is then refused)."""
        ...

    def customer_key(self) -> str | None:
        """The policy's `customer_key` ("db.table.column"), whose values are disclosed too."""
        ...

    def row_keys(self) -> tuple[str, ...]:
        """Key columns canaries were planted under that are not the policy's customer key
        ("db.schema.table.column"): their values are disclosed too, as ROW_KEY."""
        ...

    def disclose(self, principal: Principal, statement_id: str, values: Sequence[Disclosed]) -> None:
        """The classified values (and customer keys) one batch of rows of a statement gave a
        person. Called only when `observing`; must not block (observers queue their work)."""

    def over_budget(self, principal: Principal, allow: Allow) -> Block | None:
        """The refusal (reason `row_budget`) of a statement about to run, decided earlier, whose
        person has since used up a budget of their role (`budgets`); None to let it run. Asked
        at every run, as `spend_lookups` is: a prepared statement's decision is made once."""
        ...

    def begin(self, rec: StatementRecord) -> bool:
        """The write-ahead record of a statement about to be forwarded. Returns False when the
        audit log is required and the record could not be written: the statement must then be
        refused, not forwarded. May block (briefly, on a local write) only when it is required."""
        ...

    def record(self, rec: StatementRecord) -> None:
        """Audit + metrics for a statement that ended or was refused. Must not block (audit
        writes are queued)."""
        ...

    def connection_opened(self, protocol: str) -> None: ...

    def connection_closed(self, protocol: str) -> None: ...

    def auth_failed(self, protocol: str) -> None: ...

    def prepare(self, database: str, upstream: str = "postgres") -> Future[bool] | None:
        """Get ready to decide statements for `database` (e.g. load its schema), before the first
        statement of a session on it. Never blocks: None when ready now, else a future that
        turns True when ready, False when it could not get ready (the session is then refused
        with a transient error). The caller bounds its wait; it must not cancel the future."""
        ...

    def schema_changed(self, database: str, upstream: str = "postgres") -> None:
        """DDL passed through: reload the schema for that database soon."""
        ...
