"""The statements of one session, whatever its protocol: decided, re-decided, counted, recorded.

Owns the statement bookkeeping every protocol session needs and none should copy: deciding
fail-closed through the Gate, deciding a prepared statement again after a policy reload,
recording each statement (a `StatementRecord` to the Gate), the row budget and truncation
accounting of a result, the decision of each part of a multi-statement string, the masking-plan
cache, and what an error or notice may tell the client while a statement reads classified
data. Knows no wire format and owns no socket: a protocol session (`proxy/pg/relay.py`) tells
it what happened and asks it what to do.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from policies.decision import Allow, Block, Decision
from proxy.services.gate import Gate, Principal, StatementRecord
from proxy.services.settings import SEARCH_PATH, SessionSettings

log = logging.getLogger("maskgate.session")

T = TypeVar("T")
D = TypeVar("D")
F = TypeVar("F")

EMPTY = Allow(kind="empty")  # an empty statement reads nothing
STALE = Block(
    "statement_not_allowed", "the policy changed since this statement was prepared; prepare it again"
)
# `audit_required` and the statement's write-ahead record could not be written: not forwarded.
AUDIT_FAILED = Block(
    "audit_unavailable", "the audit log cannot be written; statements are refused until it recovers"
)


def withheld_message(code: str) -> str:
    """The text a client gets in place of the database's own error message while its statement
    reads classified data: the database echoes offending values (`invalid input syntax for type
    integer: "x7950"`) after any transformation, in a shape no detector recognises."""
    return (
        f"maskgate: the statement failed (SQLSTATE {code}); the database's message is withheld "
        "because the statement reads classified data"
    )


def part(allow: Allow, index: int) -> Allow:
    """The decision for result `index` of a statement (one per part of a multi-statement string)."""
    parts = allow.parts()
    if index < len(parts):
        return parts[index]
    # More results than the decision described: unknown shape, detectors only.
    return Allow(kind="unknown", detect=allow.detect, row_limit=allow.row_limit)


class StatementTracker:
    """The statements of one session's principal. The protocol session owns one."""

    def __init__(
        self,
        gate: Gate,
        *,
        protocol: str,
        dialect: str,
        upstream: str,
        database: str,
        search_path: tuple[str, ...],
        session_id: str = "",
        client: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gate = gate
        self.protocol = protocol
        self.dialect = dialect
        self.upstream = upstream
        self.session_id = session_id or os.urandom(6).hex()
        self.client = client
        self.clock = clock
        # Set once the person has logged in; until then nothing is decided (fail closed).
        self.principal: Principal | None = None
        self.database = database
        # The settings statements are decided under (search_path: the names unqualified tables
        # resolve through; role), followed with the server's transaction semantics.
        self.settings = SessionSettings({SEARCH_PATH: search_path})
        # Detector classes of the latest decision that had any: errors and notices that arrive
        # outside a statement still belong to the one that caused them.
        self.last_detect: frozenset[str] = frozenset()
        self._statements = 0  # numbers the session's statement ids

    @property
    def search_path(self) -> tuple[str, ...]:
        return self.settings.value(SEARCH_PATH) or ()

    @property
    def restricted(self) -> bool:
        """Results are masked and messages scanned (everyone but roles that see all clear)."""
        return self.principal is None or not self.principal.unrestricted

    @property
    def generation(self) -> int:
        """The Gate's policy generation: a decision made under another one is stale."""
        return self.gate.generation

    def decide(self, sql: str) -> tuple[Decision, float]:
        """The decision for `sql` and the time it took; a decision that cannot be made is a
        refusal (fail closed)."""
        t0 = time.perf_counter()
        principal = self.principal
        if principal is None:
            return Block("unparsable", "statement could not be checked"), 0.0
        if not sql.strip(" \t\r\n;"):
            return EMPTY, 0.0
        try:
            d = self.gate.decide(
                principal,
                sql,
                dialect=self.dialect,
                search_path=self.search_path,
                database=self.database,
                upstream=self.upstream,
            )
        except Exception:  # fail closed: a decision that cannot be made is a refusal
            log.exception("session %s: decide failed", self.session_id)
            d = Block("unparsable", "statement could not be checked")
        if isinstance(d, Allow) and d.detect:
            self.last_detect = d.detect
        return d, time.perf_counter() - t0

    def redecide(self, sql: str, prepared: Allow) -> Decision:
        """Decide a prepared statement again after a policy reload. A tighter decision applies
        from now on; one that needs different SQL upstream (a new row filter or limit) cannot be
        applied to the statement the server holds, so it is refused until the client prepares
        it again. Returns the new Allow, or the Block to refuse with."""
        d, _ = self.decide(sql)
        if isinstance(d, Allow) and d.rewritten_sql == prepared.rewritten_sql:
            return d
        return d if isinstance(d, Block) else STALE

    def spend(self, allow: Allow) -> Block | None:
        """Charge the values `allow` compares masked classes with to this person's hourly lookup
        budget (the role's `lookups_per_hour`), as it is about to run; the refusal when it is
        spent, or when the person has used up a reading budget of their role (`budgets`).
        Checked per run, not per decision: `phone = $1` executed 10,000 times with other
        parameters is 10,000 lookups, and a prepared statement must stop when the budget does."""
        if self.principal is None:
            return None
        over = self.gate.over_budget(self.principal, allow)
        if over is not None:
            return over  # refused before its lookups are charged
        n = sum(p.lookups for p in allow.statements) if allow.statements else allow.lookups
        if not n or self.gate.spend_lookups(self.principal, n):
            return None
        return Block(
            "masked_predicate",
            "this person's lookups of masked values for this hour are spent (the role's "
            "lookups_per_hour); a masked number's hidden digits cannot be searched for",
            allow.tables,
            allow.classes,
            allow.kind,
            allow.revision,
            allow.fingerprint,
        )

    def begin(self, sql: str, allow: Allow) -> str | None:
        """The write-ahead record of a statement about to be forwarded: its id, or None when the
        audit log is required and the record could not be written (refuse it with AUDIT_FAILED)."""
        self._statements += 1
        sid = f"{self.session_id}-{self._statements}"
        return sid if self.gate.begin(self._record(sql, allow, 0.0, "start", sid)) else None

    def record(
        self,
        sql: str,
        decision: Decision,
        *,
        started: float,
        rows: int = 0,
        masked: int = 0,
        truncated: bool = False,
        overhead: float = 0.0,
        error: str | None = None,
        id: str = "",
        outcome: str = "",
        cancelled: bool = False,
    ) -> None:
        """Report a statement to the Gate for audit and metrics: how the statement begun with
        `id` ended, or (without an id) a refusal."""
        if id:
            event = "end"
        else:
            self._statements += 1
            id = f"{self.session_id}-{self._statements}"
            event = "refused"
        rec = self._record(sql, decision, max(0.0, self.clock() - started), event, id)
        rec.rows, rec.masked, rec.truncated = rows, masked, truncated
        rec.overhead_s, rec.error, rec.outcome, rec.cancelled = overhead, error, outcome, cancelled
        self.gate.record(rec)

    def _record(self, sql: str, decision: Decision, duration: float, event: str, id: str) -> StatementRecord:
        principal = self.principal
        return StatementRecord(
            self.protocol,
            self.session_id,
            principal.user if principal else "",
            principal.role if principal else "",
            self.client,
            self.database,
            sql,
            decision,
            duration_s=duration,
            id=id,
            event=event,
            dialect=self.dialect,
        )

    def succeeded(self, allow: Allow) -> None:
        """A statement completed: keep what it changed for the ones after it."""
        self.settings.completed(allow)
        if allow.schema_changed:
            self.gate.schema_changed(self.database, upstream=self.upstream)

    def withholds_errors(self, in_flight: Allow | None) -> bool:
        """An error raised while the statement in flight evaluates classified data is withheld
        whole (its code still reaches the client; see `withheld_message`)."""
        return self.restricted and in_flight is not None and bool(in_flight.classes)

    def text_masker(self, in_flight: Allow | None) -> Callable[[str], str] | None:
        """The detector masker for free text outside a result (errors, notices, notifications):
        the statement in flight's classes, else the latest decision's. None: nothing to scan."""
        if not self.restricted:
            return None
        detect = in_flight.detect if in_flight is not None else self.last_detect
        return self.gate.text_masker(detect) if detect else None


@dataclass(slots=True, eq=False)
class RowCount:
    """One result on its way to the client: its row budget and the counts audit needs.

    The relay's DataRow loop inlines `admit` (a method call per row would cost a tenth of the
    loop); `tests/proxy/services/test_statement.py` pins the rule both follow.
    """

    limit: int | None  # rows the client may receive over the whole statement (None: no limit)
    sent: int = 0  # rows forwarded over the whole statement: the limit counts these
    sent_call: int = 0  # rows forwarded since `end_call` (one Execute call, one result)
    masked: int = 0  # values masked since `end_call`
    truncated: bool = False  # a row was held back by the limit
    noticed: bool = False  # the client was told of the truncation (once per statement)

    def admit(self) -> bool:
        """One more row: True to send it, False when the budget is spent (then truncated)."""
        if self.limit is not None and self.sent >= self.limit:
            self.truncated = True
            return False
        self.sent += 1
        self.sent_call += 1
        return True

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.sent >= self.limit

    def end_call(self) -> tuple[int, int]:
        """The rows and masked values of the call that ended; the next call counts afresh."""
        rows, masked = self.sent_call, self.masked
        self.sent_call = self.masked = 0
        return rows, masked

    def notice_once(self) -> bool:
        """True the first time only: the truncation notice is sent once per statement."""
        first = not self.noticed
        self.noticed = True
        return first


_MISSING = object()


class PlanCache(Generic[D, F, T]):
    """Masking plans per (result description, formats, what of the decision masks, encoding).

    A plan is a function of the description, the result formats, the encoding and three fields
    of the decision: its column masks, its detector classes, and its classes (a result of
    another shape is refused when it reads any). Nothing else of the decision (its rewritten
    SQL, fingerprint, tables, row limit) changes the plan, so it is keyed on those three, not
    on the decision object: every simple query gets a new Allow (its literals differ) whose
    masks are the ones of its shape. `tests/proxy/pg/test_relay.py` pins that `plan_rows` reads
    no other field of the decision.

    Looked up by identity first (a repeated statement brings the same description and the same
    mask tuples, shared by the engine's decisions of one shape: no hashing of them), then by
    value. Bounded: cleared when full. An entry holds the objects whose ids it is keyed on, so
    those ids cannot be reused while it exists. A build that raises is not cached.
    """

    __slots__ = ("_by_id", "_by_value", "size")

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._by_id: dict[tuple[int, F, int, int, int, str], tuple[D, object, object, object, T]] = {}
        self._by_value: dict[tuple[D, F, object, object, object, str], T] = {}

    def get(
        self,
        description: D,
        formats: F,
        allow: Allow,
        encoding: str,
        build: Callable[[D, F, Allow, str], T],
    ) -> T:
        """The plan for these, from the cache or from `build(description, formats, allow,
        encoding)` (a function, not a closure made per call: this runs once per result)."""
        columns, detect, classes = allow.columns, allow.detect, allow.classes
        key = (id(description), formats, id(columns), id(detect), id(classes), encoding)
        hit = self._by_id.get(key)
        if (
            hit is not None
            and hit[0] is description
            and hit[1] is columns
            and hit[2] is detect
            and hit[3] is classes
        ):
            return hit[4]
        vkey = (description, formats, columns, detect, classes, encoding)
        plan = self._by_value.get(vkey, _MISSING)
        if plan is _MISSING:
            plan = build(description, formats, allow, encoding)
            if len(self._by_value) >= self.size:
                self._by_value.clear()
            self._by_value[vkey] = plan
        if len(self._by_id) >= self.size:
            self._by_id.clear()
        self._by_id[key] = (description, columns, detect, classes, plan)  # type: ignore[assignment]
        return plan  # type: ignore[return-value]
