"""The relay layer of a PostgreSQL session: statements decided on the way up, answers masked on the way down.

Owns the READY phase: every client message that carries SQL (Query, Parse, and Bind after a
policy reload) is decided through the statement tracker and forwarded or refused; refusals are
answered in the server's place while a failing stand-in keeps the server's transaction state in
step with the client's; prepared statements and portals are tracked with their decisions; the
answers are matched to their requests through the expected-response queue and their rows,
COPY data, errors and notices masked and counted. Its sub-states are named: the client side
relays or skips until Sync, the upstream side relays or consumes a failed or refused answer,
and each result streams rows, streams COPY data, or is refused. Owns no login (`login.py`) and
no socket (the driver).
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import Enum, auto
from typing import TypeVar

from policies.decision import Allow, Block, Decision, PreparedEffect
from proxy.core.machine import ProtocolViolation, Transitions, required
from proxy.pg import errors
from proxy.pg import messages as m
from proxy.pg.context import Context
from proxy.pg.cursors import Cursors
from proxy.pg.expect import Answer, Expected, ExpectQueue, Sent
from proxy.pg.framing import Framer
from proxy.pg.rowmask import PASS_THROUGH, CopyPlan, RowPlan, plan_rows
from proxy.services.disclosure import SCAN, Noted, may_hold_number, observed
from proxy.services.gate import Disclosed
from proxy.services.rows import Unmaskable
from proxy.services.statement import AUDIT_FAILED, STALE, PlanCache, RowCount, part, withheld_message

# COPY rows are masked as they stream and may be refused part-way, after the server started the
# COPY: nothing else of the same string or batch may be left to run and commit behind it.
# COPY rows' disclosures go to the Gate in batches of this many values (and at CopyDone).
_COPY_BATCH = 4096
COPY_ALONE = Block(
    "statement_not_allowed", "COPY must be sent on its own for this role (its rows are masked as they stream)"
)
COPY_LAST = Block("statement_not_allowed", "a COPY must be the last statement before Sync for this role")
FETCH_UNKNOWN = "FETCH reads a cursor this session did not declare through maskgate (or that is closed)"
# A statement still in flight may change what a prepared statement's name stands for (a SQL-level
# PREPARE, DEALLOCATE or DISCARD ALL the server has not answered): which statement a Bind or
# EXECUTE of that name would run cannot be known yet.
UNSETTLED = Block(
    "statement_not_allowed",
    "a statement still running may prepare or deallocate this prepared statement; wait for its answer",
)
NESTED = Block(
    "statement_not_allowed",
    "EXECUTE of a prepared statement that itself prepares, deallocates or executes one is not allowed",
)

log = logging.getLogger("maskgate.pg")

# Sent upstream in place of a refused statement so the server fails too: its transaction state
# (aborted block, rolled-back implicit transaction, discard-until-Sync) then matches what the
# client was told. Both fail before executing anything and have no side effects.
FAILING_QUERY = m.Query("maskgate_refused /* statement refused by maskgate */").serialize()
FAILING_DESCRIBE = m.Describe(b"S", "maskgate\x01refused").serialize()
FLUSH = m.Flush().serialize()

_I16 = struct.Struct("!h")
_CACHE_MAX = 64  # per-session cache of parsed row descriptions (and of masking plans)

Frames = Iterator[tuple[bytes, int, int]]
Fields = tuple[m.FieldDescription, ...]


# ---------------------------------------------------------------------------------------------
# Named sub-states
# ---------------------------------------------------------------------------------------------


class ClientPhase(Enum):
    RELAY = auto()  # client messages are decided (where they carry SQL) and forwarded
    # After an extended-protocol error or refusal PostgreSQL discards every message until Sync;
    # so does the proxy, deciding and forwarding nothing.
    SKIP_UNTIL_SYNC = auto()


class UpstreamPhase(Enum):
    RELAY = auto()  # answers go to the client, masked
    # The simple Query at the head failed upstream: the rest of its answer is consumed unseen
    # until its ReadyForQuery.
    QUERY_FAILED = auto()
    # A result of the simple Query at the head was refused after the upstream started it: the
    # client got the refusal; the rest is consumed unseen, and at ReadyForQuery an open
    # transaction block is failed upstream too.
    QUERY_REFUSED = auto()
    # An Execute was refused after the upstream started it: everything until ReadyForQuery is
    # processed (to keep the queue and the statement maps right) and shown to no one, as if the
    # server had skipped it; then an open transaction block is failed upstream.
    BATCH_REFUSED = auto()


class ResultPhase(Enum):
    ROWS = auto()  # DataRows go to the client, masked by the result's plan
    COPY_OUT = auto()  # COPY TO STDOUT: CopyData goes to the client, masked by the copy plan
    REFUSED = auto()  # refused after it started: the rest is swallowed, the refusal sent at its end


_CLIENT_MOVES = Transitions(
    {
        ClientPhase.RELAY: {ClientPhase.SKIP_UNTIL_SYNC},
        ClientPhase.SKIP_UNTIL_SYNC: {ClientPhase.RELAY, ClientPhase.SKIP_UNTIL_SYNC},
    }
)
_UPSTREAM_MOVES = Transitions(
    {
        UpstreamPhase.RELAY: {
            UpstreamPhase.QUERY_FAILED,
            UpstreamPhase.QUERY_REFUSED,
            UpstreamPhase.BATCH_REFUSED,
        },
        UpstreamPhase.QUERY_FAILED: {UpstreamPhase.RELAY},
        UpstreamPhase.QUERY_REFUSED: {UpstreamPhase.RELAY},
        UpstreamPhase.BATCH_REFUSED: {UpstreamPhase.RELAY, UpstreamPhase.BATCH_REFUSED},
    }
)
_RESULT_MOVES = Transitions(
    {
        ResultPhase.ROWS: {ResultPhase.COPY_OUT, ResultPhase.REFUSED},
        ResultPhase.COPY_OUT: {ResultPhase.COPY_OUT, ResultPhase.REFUSED},
        ResultPhase.REFUSED: {ResultPhase.REFUSED},
    }
)
_CONSUMING = (UpstreamPhase.QUERY_FAILED, UpstreamPhase.QUERY_REFUSED)
_NO_ROWS = RowCount(None)  # never counted on: a burst starts by taking its result's RowCount


# ---------------------------------------------------------------------------------------------
# Prepared statements, portals, results and running queries
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Stmt:
    """A prepared statement the server holds for the session, whichever door made it: the
    protocol's Parse, or SQL-level PREPARE (the server keeps both in one namespace)."""

    name: str
    sql: str
    allow: Allow
    fields: tuple[m.FieldDescription, ...] | None = None  # from a Describe of the statement
    describing: bool = False
    generation: int = 0  # the gate's policy generation the decision was made under
    # Made by SQL-level PREPARE: `sql` is the whole string it was part of, `origin` that string's
    # decision and `index` which of its statements the PREPARE was (to decide it again after a
    # policy reload); `allow` is the prepared body's decision. None for a Parse.
    origin: Allow | None = None
    index: int = 0
    executed: bool = False  # an Execute of a portal of it was sent


def _body(allow: Allow) -> Allow:
    """The decision a PREPARE keeps for its name: its own, less what PREPARE itself does."""
    return replace(allow, prepared=None)


def _changes_names(allow: Allow) -> bool:
    """Whether `allow` changes which statement a prepared statement's name stands for."""
    return allow.prepared is not None and allow.prepared.action != "execute"


def _touches(effect: PreparedEffect | None, name: str) -> bool:
    """Whether `effect` may change what `name` stands for."""
    if effect is None:
        return False
    return effect.action == "deallocate_all" or (
        effect.action in ("prepare", "deallocate") and effect.name == name
    )


@dataclass(slots=True, eq=False)
class Result:
    """One result being streamed to the client (a simple-query part, or a portal)."""

    allow: Allow
    rows: RowCount
    phase: ResultPhase = ResultPhase.ROWS
    refusal: m.ErrorResponse | None = None  # REFUSED: what the client is told at its end
    plan: RowPlan | None = None
    planned: bool = False
    copy: CopyPlan | None = None
    # COPY … (HEADER): the first CopyData is the column names, not a row of the limit.
    copy_header: bool = False
    ncols: int = -1  # columns described for it: a restricted row with another count is malformed

    @classmethod
    def of(cls, allow: Allow) -> Result:
        return cls(allow, RowCount(allow.row_limit))

    def refuse(self, err: m.ErrorResponse) -> None:
        self.phase = _RESULT_MOVES.move(self.phase, ResultPhase.REFUSED)
        self.refusal = err

    def start_copy(self, plan: CopyPlan | None) -> None:
        if self.phase is not ResultPhase.REFUSED:  # a refused result stays refused
            self.phase = _RESULT_MOVES.move(self.phase, ResultPhase.COPY_OUT)
            self.copy = plan
            self.copy_header = self.allow.copy is not None and self.allow.copy.header


@dataclass(slots=True, eq=False)
class Portal:
    name: str
    stmt: Stmt
    formats: tuple[int, ...]
    result: Result
    fields: tuple[m.FieldDescription, ...] | None = None  # from a Describe of the portal
    # A portal of SQL-level `EXECUTE name`: the statement kept under `name` when it was bound,
    # whose decision its result follows. The result columns are that statement's: only a
    # Describe of the portal tells them (one of the EXECUTE statement may be older).
    executes: Stmt | None = None
    describing: bool = False
    # Each Execute of it not answered yet, in order: (statement id, when it was received).
    calls: deque[tuple[str, float]] = field(default_factory=deque)

    @property
    def sql(self) -> str:
        return self.stmt.sql or f"<execute {self.name}>"

    @property
    def allow(self) -> Allow:
        return self.result.allow


@dataclass(slots=True, eq=False)
class QueryRun:
    """A simple Query in flight: its decision, which part is streaming, and totals."""

    sql: str
    allow: Allow
    started: float
    overhead: float
    part: int = 0
    result: Result | None = None
    rows: int = 0
    masked: int = 0
    truncated: bool = False
    error: str | None = None
    refused: bool = False  # a result was refused after the upstream started it
    id: str = ""  # the statement id of its audit records
    generation: int = 0  # the gate's policy generation it was decided under
    origin: Allow | None = None  # the decision as the engine made it (before EXECUTEs were resolved)


Item = Stmt | Portal | QueryRun
X = TypeVar("X", Stmt, Portal, QueryRun)
# The entry of a Sync: nothing of an entry is ever changed, so every Sync shares this one.
SYNC: Expected[Item] = Expected(Sent.SYNC)


def _payload(e: Expected[Item], kind: type[X]) -> X:
    p = e.payload
    if not isinstance(p, kind):
        raise ProtocolViolation(f"{e.sent.name} without its {kind.__name__}")
    return p


QUERY_CANCELED = "57014"  # PostgreSQL's answer to a cancelled statement


def _refused(allow: Allow, message: str = "the result was refused after the database started it") -> Block:
    """What a statement whose result was refused after it started counts as: a refusal, with
    what its decision knew (kind, tables, classes)."""
    return Block(
        "class_denied", message, allow.tables, allow.classes, allow.kind, allow.revision, allow.fingerprint
    )


def _withheld(err: m.ErrorResponse) -> m.ErrorResponse:
    keep = [(c, v) for c, v in err.fields if c in ("S", "V", "C", "P")]
    keep.append(("M", withheld_message(err.get("C", "XX000"))))
    return m.ErrorResponse(tuple(keep))


def _retag(tag: str, rows: int) -> str:
    """Replace the row count of a command tag (`SELECT 5000` -> `SELECT 200`)."""
    head, _, last = tag.rpartition(" ")
    if head and last.isdigit():
        return f"{head} {rows}"
    return tag


# ---------------------------------------------------------------------------------------------
# The relay
# ---------------------------------------------------------------------------------------------


class Relay:
    """The READY phase of one session; created by the session when the login is done."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.out = ctx.out
        self.gate = ctx.gate
        self.tracker = ctx.tracker
        self.restricted = ctx.tracker.restricted
        self.queue: ExpectQueue[Item] = ExpectQueue()
        self.client_phase = ClientPhase.RELAY
        self.upstream_phase = UpstreamPhase.RELAY
        self.stmts: dict[str, Stmt] = {}
        self.portals: dict[str, Portal] = {}
        # Parsed or bound but not confirmed yet: a failed Parse (e.g. a duplicate name) must not
        # replace the decision of the statement the server still holds under that name.
        self._stmts_inflight: dict[str, Stmt] = {}
        self._parsed: list[tuple[Stmt, float]] = []  # this batch's Parses, for _audit_unexecuted
        # A SQL-level PREPARE, DEALLOCATE or DISCARD ALL was sent in this session: from then on a
        # Bind or EXECUTE looks for one still in flight (`_unsettled`); sessions that never send
        # one skip the look.
        self._changes_names = False
        self._portals_inflight: dict[str, Portal] = {}
        # SQL cursors (DECLARE … CURSOR), with the decision their FETCHes are masked by. They
        # share one namespace with protocol portals (the server's pg_cursors lists both).
        self.cursors = Cursors()
        self._unknown = Allow(kind="unknown")
        # The upstream framer, set by the session once the relay owns the stream: resumed past
        # a run of rows masked in one native call (see `upstream_frames`).
        self.upstream_framer: Framer | None = None
        # The client went away (or maskgate is shutting down) and what was running upstream was
        # cancelled: what did not complete is recorded as cancelled.
        self.cancel_sent = False
        # The client sent Terminate while statements were in flight: the session drains them.
        self.terminated = False
        # An Execute whose result columns must be known before it may run (binary results of a
        # restricted session) waits for this Describe's answer, and the client's messages from it
        # on wait with it, so a result that cannot be masked is refused before it runs.
        self.held: list[bytes] | None = None
        self._awaiting: Expected[Item] | None = None
        # A COPY was executed in this batch: nothing more may run before the client's Sync (a
        # COPY refused part-way must not leave later statements running, see `_on_execute`).
        self._copy_until_sync = False
        # A repeated statement gets the same RowDescription and decision every time: parse the
        # one and build the masking plan for the pair once (both bounded, cleared when full).
        self._rd_cache: dict[bytes, tuple[m.FieldDescription, ...]] = {}
        self._plans: PlanCache[Fields, tuple[int, ...] | None, RowPlan | None] = PlanCache(_CACHE_MAX)
        # Plans that also note disclosed values, while the Gate has observers (kept apart: the
        # same description and masks get an observing plan only then).
        self._observing_plans: PlanCache[Fields, tuple[int, ...] | None, RowPlan | None] = PlanCache(
            _CACHE_MAX
        )
        self._client: dict[bytes, Callable[[memoryview, memoryview], None]] = {
            b"Q": self._on_query,
            b"P": self._on_parse,
            b"B": self._on_bind,
            b"E": self._on_execute,
            b"D": self._on_describe,
            b"C": self._on_close,
            b"S": self._on_sync,
            b"H": self._forward,  # Flush
            b"d": self._forward,  # COPY FROM STDIN data: the COPY statement itself was decided
            b"c": self._forward,
            b"f": self._forward,
            b"F": self._on_function_call,
        }
        # Messages that answer no request of their own, handled before the queue is asked.
        self._unqueued: dict[bytes, Callable[[memoryview], bool]] = {
            b"S": self._on_parameter,
            b"N": self._on_notice,
            b"A": self._on_notification,
            b"Z": self._on_ready,
            b"E": self._on_error,
        }
        self._answers: dict[Sent, Callable[[bytes, memoryview, Expected[Item], bool], bool]] = {
            Sent.PARSE: self._on_parsed,
            Sent.BIND: self._on_bound,
            Sent.CLOSE_STATEMENT: self._on_closed,
            Sent.CLOSE_PORTAL: self._on_closed,
            Sent.DESCRIBE_STATEMENT: self._on_described,
            Sent.DESCRIBE_PORTAL: self._on_described,
            Sent.EXECUTE: self._on_execute_answer,
            Sent.QUERY: self._on_query_answer,
            Sent.FUNCTION_CALL: self._on_function_result,
        }

    @property
    def idle(self) -> bool:
        """Nothing in flight and no transaction open."""
        return not self.queue and self.ctx.txn == b"I"

    @property
    def executing(self) -> bool:
        """A statement was forwarded and has not ended: its end record is still owed."""
        return any(e.sent is Sent.EXECUTE or isinstance(e.payload, QueryRun) for e in self.queue)

    def _move_client(self, new: ClientPhase) -> None:
        self.client_phase = _CLIENT_MOVES.move(self.client_phase, new)

    def _move_upstream(self, new: UpstreamPhase) -> None:
        self.upstream_phase = _UPSTREAM_MOVES.move(self.upstream_phase, new)

    # ------------------------------------------------------------------ client -> upstream

    def client_frames(self, buf: bytes, mv: memoryview, frames: Frames) -> None:
        out = self.out
        client = self._client
        relay = ClientPhase.RELAY
        for mtype, start, end in frames:
            if out.closed:
                return
            if self.held is not None:
                self.held.append(bytes(mv[start:end]))
                continue
            if mtype == b"X" or self.client_phase is not relay:
                if self._client_message(mtype, mv[start + 5 : end], mv[start:end]):
                    return
                continue
            # The steady state, `_client_message` inlined: relaying, not a Terminate.
            handler = client.get(mtype)
            if handler is None:
                raise ProtocolViolation(f"unexpected client message {mtype!r}")
            handler(mv[start + 5 : end], mv[start:end])

    def _client_message(self, mtype: bytes, body: memoryview, raw: memoryview) -> bool:
        """Handle one client message; True when it was the last one (Terminate)."""
        if mtype == b"X":
            self.out.upstream(raw)
            if self.executing:
                # The server answers what it already has, then terminates: the session drains
                # those answers so every statement's end is recorded.
                self.terminated = True
            else:
                self.ctx.close("client terminated")
            return True
        if self.client_phase is ClientPhase.SKIP_UNTIL_SYNC:
            if mtype != b"S":
                return False
            self._move_client(ClientPhase.RELAY)
        handler = self._client.get(mtype)
        if handler is None:
            raise ProtocolViolation(f"unexpected client message {mtype!r}")
        handler(body, raw)
        return False

    def _hold(self, raw: memoryview, awaiting: Expected[Item]) -> None:
        """Keep `raw` (an Execute) and what the client sends after it until `awaiting` is answered."""
        self.held = [bytes(raw)]
        self._awaiting = awaiting
        self.out.upstream(FLUSH)  # the server sends its answer now, not at the client's Sync

    def _release(self) -> None:
        """The awaited answer came (or the server skipped it): handle what was held, in order."""
        if self.held is None or (self._awaiting is not None and self._awaiting in self.queue):
            return
        held, self.held, self._awaiting = self.held, None, None
        for i, raw in enumerate(held):
            if self.out.closed:
                return
            if self.held is not None:  # an Execute in it waits in turn
                self.held.extend(held[i:])
                return
            mv = memoryview(raw)
            if self._client_message(raw[:1], mv[5:], mv):
                return

    def _forward(self, body: memoryview, raw: memoryview) -> None:
        self.out.upstream(raw)

    def _on_sync(self, body: memoryview, raw: memoryview) -> None:
        self._copy_until_sync = False
        if self._parsed:
            self._audit_unexecuted()
        self.queue.push(SYNC)
        self.out.upstream(raw)

    def _audit_unexecuted(self) -> None:
        """Statements parsed in this batch that no Execute ran: the server parsed and planned
        them (planning evaluates constant expressions), so each gets its record too, with
        outcome `prepared`; an Execute later is audited as a statement of its own."""
        for st, started in self._parsed:
            if st.executed:
                continue
            sid = self.tracker.begin(st.sql, st.allow)
            if sid is not None:
                self.tracker.record(st.sql, st.allow, started=started, id=sid, outcome="prepared")
        self._parsed.clear()

    def _on_query(self, body: memoryview, raw: memoryview) -> None:
        sql = m.query_sql(body)
        started = self.ctx.clock()
        origin, overhead = self.tracker.decide(sql)
        d = self._resolve_executes(origin) if isinstance(origin, Allow) else origin
        if isinstance(d, Block):
            self._refuse_simple(sql, d, started=started, overhead=overhead)
            return
        if self.restricted and len(d.statements) > 1 and any(x.kind == "copy" for x in d.statements):
            # Its rows are masked as they stream and may be refused part-way, after the server
            # started it; the rest of the string would then run and commit while the client is
            # told the string failed. Alone, a refused COPY leaves nothing else behind.
            self._refuse_simple(sql, COPY_ALONE, started=started, overhead=overhead)
            return
        if self._unknown_cursor(d):
            self._refuse_simple(sql, _refused(d, FETCH_UNKNOWN), started=started, overhead=overhead)
            return
        spent = self.tracker.spend(d)
        if spent is not None:
            self._refuse_simple(sql, spent, started=started, overhead=overhead)
            return
        sid = self.tracker.begin(sql, d)
        if sid is None:  # audit_required, and its record could not be written: not forwarded
            self._refuse_simple(sql, AUDIT_FAILED, started=started, overhead=overhead)
            return
        kept = origin if isinstance(origin, Allow) else None
        run = QueryRun(sql, d, started, overhead, id=sid, generation=self.tracker.generation, origin=kept)
        if d.prepared is not None or d.statements:
            self._changes_names |= any(_changes_names(a) for a in d.parts())
        self.queue.push(Expected(Sent.QUERY, payload=run, paired=True))
        self.queue.push(SYNC)
        self.out.upstream(m.Query(d.rewritten_sql).serialize() if d.rewritten_sql else raw)

    def _on_function_call(self, body: memoryview, raw: memoryview) -> None:
        fc = m.FunctionCall.parse(body)
        started = self.ctx.clock()
        # Audited by the function's OID and how many arguments it got (the values may be data).
        sql = f"<fast-path function call: oid {fc.function_oid}, {len(fc.args)} arguments>"
        if self.restricted:
            block = Block("function_denied", "function calls over the fast-path protocol are not allowed")
            self._refuse_simple(sql, block, started=started)
            return
        call = Allow(kind="function_call")
        sid = self.tracker.begin(sql, call)
        if sid is None:
            self._refuse_simple(sql, AUDIT_FAILED, started=started)
            return
        run = QueryRun(sql, call, started, 0.0, id=sid)
        self.queue.push(Expected(Sent.FUNCTION_CALL, payload=run, paired=True))
        self.queue.push(SYNC)
        self.out.upstream(raw)

    def _refuse_simple(self, sql: str, block: Block, *, started: float, overhead: float = 0.0) -> None:
        """Record and answer a refused simple Query / FunctionCall: the upstream runs a failing
        stand-in so its transaction status (idle stays idle, an open block becomes failed) is
        what the client sees; its error is replaced by the refusal."""
        self.tracker.record(sql, block, started=started, overhead=overhead)
        refusal = errors.insufficient_privilege(block.message)
        self.queue.push(Expected(Sent.QUERY, Answer.SIMULATE, simulated=refusal, paired=True))
        self.queue.push(SYNC)
        self.out.upstream(FAILING_QUERY)

    def _refuse_extended(self, sql: str, block: Block, *, started: float, overhead: float = 0.0) -> None:
        """Record and answer a refusal inside an extended-protocol batch: the upstream gets a
        failing Describe so it also aborts the batch (and the implicit or explicit transaction)
        and discards until Sync; the client's messages are dropped until its Sync, as
        PostgreSQL itself would."""
        self.tracker.record(sql, block, started=started, overhead=overhead)
        refusal = errors.insufficient_privilege(block.message)
        self.queue.push(Expected(Sent.DESCRIBE_STATEMENT, Answer.SIMULATE, simulated=refusal))
        self.out.upstream(FAILING_DESCRIBE)
        self._move_client(ClientPhase.SKIP_UNTIL_SYNC)

    def _stmt(self, name: str) -> Stmt | None:
        return self._stmts_inflight.get(name) or self.stmts.get(name)

    def _portal(self, name: str) -> Portal | None:
        return self._portals_inflight.get(name) or self.portals.get(name)

    def _on_parse(self, body: memoryview, raw: memoryview) -> None:
        p = m.Parse.parse(body)
        started = self.ctx.clock()
        if self._copy_until_sync:
            self._refuse_extended(p.sql, COPY_LAST, started=started)
            return
        d, overhead = self.tracker.decide(p.sql)
        if isinstance(d, Block):
            self._refuse_extended(p.sql, d, started=started, overhead=overhead)
            return
        st = Stmt(p.name, p.sql, d, generation=self.tracker.generation)
        self._stmts_inflight[p.name] = st  # committed only on ParseComplete
        self._parsed.append((st, started))
        if p.name == "":
            self.stmts.pop("", None)  # the server drops the unnamed statement at any Parse
        self.queue.push(Expected(Sent.PARSE, payload=st, name=p.name))
        self.out.upstream(
            m.Parse(p.name, d.rewritten_sql, p.param_types).serialize() if d.rewritten_sql else raw
        )

    def _redecide(self, st: Stmt) -> bool:
        """The policy was reloaded since `st` was prepared: decide it again. Returns whether the
        Bind may go on."""
        d = self._decide_again(st)
        if isinstance(d, Allow):
            return True
        self._refuse_extended(st.sql, d, started=self.ctx.clock())
        return False

    def _decide_again(self, st: Stmt) -> Decision:
        """Decide `st` again under the current policy (see StatementTracker.redecide) and keep
        the new decision; the Block to refuse with otherwise. A statement of SQL-level PREPARE is
        decided again as the string its PREPARE came in, and keeps the PREPARE's part."""
        if st.origin is None:
            d = self.tracker.redecide(st.sql, st.allow)
            if isinstance(d, Allow):
                st.allow = d
        else:
            whole = self.tracker.redecide(st.sql, st.origin)
            if isinstance(whole, Block):
                return whole
            prepare = part(whole, st.index)
            if prepare.prepared != PreparedEffect("prepare", st.name):
                return STALE
            d = st.allow = _body(prepare)
            st.origin = whole
        if isinstance(d, Allow):
            st.generation = self.tracker.generation
        return d

    # -- the session's prepared statements (one namespace: Parse and SQL-level PREPARE)

    def _unsettled(self, name: str) -> bool:
        """A SQL-level PREPARE, DEALLOCATE or DISCARD ALL still in flight may change what `name`
        stands for: until the server answers, a statement of that name cannot be known. So may
        a Parse in flight of a name the server holds already: it fails as a duplicate unless a
        Close of the name goes before it, and a Bind after its Sync would bind the old one."""
        if name and name in self._stmts_inflight and name in self.stmts and not self._closed_first(name):
            return True
        if not self._changes_names:
            return False
        for e in self.queue:
            p = e.payload
            if isinstance(p, QueryRun):
                if any(_touches(a.prepared, name) for a in p.allow.parts()):
                    return True
            elif isinstance(p, Portal) and e.sent is Sent.EXECUTE and _touches(p.stmt.allow.prepared, name):
                return True
        return False

    def _closed_first(self, name: str) -> bool:
        """Whether a Close of statement `name` is queued before the Parse of it in flight."""
        for e in self.queue:
            if e.name == name and e.sent is Sent.CLOSE_STATEMENT:
                return True
            if e.name == name and e.sent is Sent.PARSE:
                return False
        return False

    def _kept(self, name: str) -> Stmt | Block | None:
        """The statement `name` stands for when a statement sent now runs: what the server holds
        (a Parse in flight counts as done, as for Bind). None: no such statement; a Block when
        it cannot be known or used. A statement a reload made stale is decided again. An
        unrestricted session runs what cannot be known with the EXECUTE's own decision."""
        if self._unsettled(name):
            return UNSETTLED if self.restricted else None
        st = self._stmt(name)
        if st is None:
            return None
        if st.allow.prepared is not None:
            # What it changes would be applied by no one (the session sees an EXECUTE).
            return NESTED if self.restricted else None
        if st.generation != self.tracker.generation and st.sql:
            d = self._decide_again(st)
            if isinstance(d, Block):
                return d
        return st

    def _unknown_statement(self, name: str) -> Block:
        return Block("statement_not_allowed", f'prepared statement "{name}" does not exist')

    def _resolve_executes(self, d: Allow) -> Decision:
        """`d` with each SQL-level EXECUTE of it decided as the statement it runs: the kept
        decision of that name (its masks, row limit, tables and fingerprint). The statements of
        one string run in order, so a PREPARE or DEALLOCATE before an EXECUTE in the same string
        counts (had it failed, the server would not run the rest of the string). A restricted
        session refuses an EXECUTE of a name it knows no statement for."""
        if d.prepared is None and not d.statements:
            return d  # one statement that is no EXECUTE: nothing to resolve
        parts = d.parts()
        if not any(a.prepared is not None for a in parts):
            return d
        overlay: dict[str, Stmt | None] = {}
        dropped_all = False
        out: list[Allow] = []
        for a in parts:
            effect = a.prepared
            if effect is None:
                out.append(a)
                continue
            if effect.action == "prepare":
                overlay[effect.name] = Stmt(effect.name, "", _body(a), generation=self.tracker.generation)
            elif effect.action == "deallocate":
                overlay[effect.name] = None
            elif effect.action == "deallocate_all":
                dropped_all, overlay = True, {}
            elif effect.action == "execute":
                if effect.name in overlay or dropped_all:
                    kept = overlay.get(effect.name)
                else:
                    kept = self._kept(effect.name)
                if isinstance(kept, Block):
                    return kept
                if kept is None:
                    if self.restricted:
                        return self._unknown_statement(effect.name)
                    out.append(a)  # the server says it does not exist
                    continue
                a = replace(
                    kept.allow,
                    rewritten_sql=a.rewritten_sql,
                    notes=(*kept.allow.notes, f"execute:{effect.name}"),
                )
            out.append(a)
        if not d.statements:
            return out[0]
        return replace(
            d,
            statements=tuple(out),
            tables=tuple(sorted({t for p in out for t in p.tables})),
            classes=tuple(sorted({c for p in out for c in p.classes})),
        )

    def _completed(
        self,
        whole: Allow,
        index: int,
        tag: str | None,
        sql: str,
        origin: Allow,
        generation: int,
        origin_index: int | None = None,
    ) -> None:
        """The server confirmed statement `index` of `sql` (decided as `whole`; `tag` is its
        CommandComplete's, None for a suspended portal): keep what it changed for the ones after
        it: settings, cursors, and the session's prepared statements. PREPARE and DEALLOCATE are
        not transactional: a ROLLBACK leaves them done."""
        allow = part(whole, index)
        self.tracker.succeeded(allow)
        if tag is not None:
            cursor = self.cursors.completed(whole, index, tag, sql=sql, generation=generation)
            if cursor is not None and cursor.action in ("declare", "close"):
                # One namespace: a cursor declared under a name no portal has it; CLOSE of a name
                # closes the portal of that name, CLOSE ALL (and DISCARD ALL) every portal.
                if cursor.name is None:
                    self.portals.clear()
                else:
                    self.portals.pop(cursor.name, None)
        effect = allow.prepared
        if effect is None:
            return
        if effect.action == "prepare":
            at = index if origin_index is None else origin_index
            self.stmts[effect.name] = Stmt(
                effect.name, sql, _body(allow), generation=generation, origin=origin, index=at
            )
        elif effect.action == "deallocate":
            self.stmts.pop(effect.name, None)
        elif effect.action == "deallocate_all":
            # The unnamed statement is not among the server's named ones: it stays.
            self.stmts = {n: st for n, st in self.stmts.items() if n == ""}

    def _completed_part(self, run: QueryRun, index: int, body: memoryview) -> None:
        tag = m.command_tag(body)
        self._completed(run.allow, index, tag, run.sql, run.origin or run.allow, run.generation)

    def _on_bind(self, body: memoryview, raw: memoryview) -> None:
        portal_name, statement, result_formats = m.bind_head(body)
        if self._copy_until_sync:
            self._refuse_extended(f"<bind {statement}>", COPY_LAST, started=self.ctx.clock())
            return
        if self.restricted and self._unsettled(statement):
            self._refuse_extended(f"<bind {statement}>", UNSETTLED, started=self.ctx.clock())
            return
        st = self._stmt(statement)
        if st is None:
            if self.restricted:
                # The session's picture of the server's prepared statements (Parse and SQL-level
                # PREPARE alike) has no statement of that name: no decision to bind it with.
                block = Block("unparsable", "unknown prepared statement")
                self._refuse_extended(f"<bind {statement}>", block, started=self.ctx.clock())
                return
            st = Stmt(statement, "", self._unknown)
        elif st.generation != self.tracker.generation and st.sql and not self._redecide(st):
            return
        allow, executes = st.allow, None
        effect = st.allow.prepared
        if effect is not None and effect.action == "execute":
            # SQL-level EXECUTE through the extended protocol: it runs the statement kept under
            # that name now (the server looks it up when the portal is made).
            kept = self._kept(effect.name)
            if isinstance(kept, Block) or (kept is None and self.restricted):
                block = kept if isinstance(kept, Block) else self._unknown_statement(effect.name)
                self._refuse_extended(st.sql, block, started=self.ctx.clock())
                return
            if kept is not None:
                executes = kept
                allow = replace(
                    kept.allow, rewritten_sql=None, notes=(*kept.allow.notes, f"execute:{effect.name}")
                )
        portal = Portal(portal_name, st, result_formats, Result.of(allow), executes=executes)
        self._portals_inflight[portal_name] = portal
        if portal_name == "":
            self.portals.pop("", None)
        self.queue.push(Expected(Sent.BIND, payload=portal, name=portal_name))
        self.out.upstream(raw)

    def _on_execute(self, body: memoryview, raw: memoryview) -> None:
        name = m.execute_portal(body)
        p = self._portal(name)
        if p is None:
            if self.restricted:
                block = Block("unparsable", "unknown portal")
                self._refuse_extended(f"<execute {name}>", block, started=self.ctx.clock())
                return
            p = Portal(name, Stmt("", "", self._unknown), (), Result.of(self._unknown))
        p.stmt.executed = True
        started = self.ctx.clock()
        if self._copy_until_sync:
            self._refuse_extended(p.sql, COPY_LAST, started=started)
            return
        if p.executes is not None and self.restricted and self._kept(p.executes.name) is not p.executes:
            # The name stands for another statement than the one the portal was bound with.
            block = Block(
                "statement_not_allowed", "the prepared statement changed since the portal was bound"
            )
            self._refuse_extended(p.sql, block, started=started)
            return
        if self.restricted:
            if self._unknown_cursor(p.stmt.allow):
                self._refuse_extended(p.sql, _refused(p.stmt.allow, FETCH_UNKNOWN), started=started)
                return
            described = p.fields is not None or self._stmt_fields(p) is not None
            if not described and 1 in p.formats:
                # Binary results may be refused once their types are known: learn them first,
                # rather than refuse after the server started the statement.
                self._hold(raw, self._describe_for(p))
                return
            fetch = p.stmt.allow.cursor is not None and p.stmt.allow.cursor.action == "fetch"
            # A FETCH's plan is its cursor's, known when its answer starts (`_rows_decision`).
            if described and not p.result.planned and not fetch:
                why = self._plan_portal(p)
                if why is not None:
                    self._refuse_extended(p.sql, _refused(p.allow, why), started=started)
                    return
        spent = self.tracker.spend(p.allow)  # per Execute: a parameter is a new lookup each time
        if spent is not None:
            self._refuse_extended(p.sql, spent, started=started)
            return
        sid = self.tracker.begin(p.sql, p.allow)
        if sid is None:  # audit_required, and its record could not be written: not forwarded
            self._refuse_extended(p.sql, AUDIT_FAILED, started=started)
            return
        if (
            self.restricted
            and p.fields is None
            and self._stmt_fields(p) is None
            and not (p.describing or (p.stmt.describing and p.executes is None))
        ):
            self._describe_for(p)  # masking needs column types; text results wait for none
        allow = p.allow
        if self.restricted and (allow.kind == "copy" or any(x.kind == "copy" for x in allow.statements)):
            self._copy_until_sync = True
        p.calls.append((sid, started))
        if p.stmt.allow.prepared is not None:
            self._changes_names |= _changes_names(p.stmt.allow)
        self.queue.push(Expected(Sent.EXECUTE, payload=p, name=p.name))
        self.out.upstream(raw)

    def _unknown_cursor(self, d: Allow) -> bool:
        """A restricted FETCH of a cursor this session does not hold, with nothing in flight that
        could declare it: refused before it is sent (a FETCH sent behind statements still running
        is checked when its answer starts, `_rows_decision`)."""
        if not self.restricted or (d.cursor is None and not d.statements):
            return False  # no FETCH in it
        if any(e.sent in (Sent.QUERY, Sent.EXECUTE) for e in self.queue):
            return False
        return self.cursors.unknown_fetch(d) is not None

    @staticmethod
    def _stmt_fields(p: Portal) -> tuple[m.FieldDescription, ...] | None:
        """The result columns of `p` its statement's Describe told, where they are `p`'s: not for
        an EXECUTE portal (its columns are those of the statement the name stood for at Bind)."""
        return p.stmt.fields if p.executes is None else None

    def _describe_for(self, p: Portal) -> Expected[Item]:
        """The Describe whose answer gives `p`'s result columns: one in flight, else the proxy's own."""
        for e in self.queue:
            if e.sent is Sent.DESCRIBE_PORTAL and e.payload is p:
                return e
            if e.sent is Sent.DESCRIBE_STATEMENT and e.payload is p.stmt and p.executes is None:
                return e
        p.describing = True
        entry = self.queue.push(Expected(Sent.DESCRIBE_PORTAL, Answer.HIDE, payload=p, name=p.name))
        self.out.upstream(m.Describe(b"P", p.name).serialize())
        return entry

    def _on_describe(self, body: memoryview, raw: memoryview) -> None:
        d = m.Describe.parse(body)
        if d.kind == b"S":
            st = self._stmt(d.name)
            if st is not None:
                st.describing = True
            self.queue.push(Expected(Sent.DESCRIBE_STATEMENT, payload=st, name=d.name))
        else:
            p = self._portal(d.name)
            if p is not None:
                p.describing = True
            self.queue.push(Expected(Sent.DESCRIBE_PORTAL, payload=p, name=d.name))
        self.out.upstream(raw)

    def _on_close(self, body: memoryview, raw: memoryview) -> None:
        c = m.Close.parse(body)
        sent = Sent.CLOSE_STATEMENT if c.kind == b"S" else Sent.CLOSE_PORTAL
        self.queue.push(Expected(sent, name=c.name))
        self.out.upstream(raw)

    # ------------------------------------------------------------------ upstream -> client

    def upstream_frames(self, buf: bytes, mv: memoryview, frames: Frames) -> None:
        # Untouched messages are passed on as slices of the received buffer; consecutive ones
        # are merged into one slice so a burst of rows costs one write, not one per row.
        out = self.out
        to_client = out.to_client
        emit = to_client.append
        restricted = self.restricted
        unpack_i16 = _I16.unpack_from
        unqueued = self._unqueued
        answers = self._answers
        run_start = run_end = -1
        res: Result | None = None  # the result a burst of DataRows belongs to
        plan: RowPlan | None = None
        count = _NO_ROWS  # replaced at the first row of a burst
        limit: int | None = None
        swallow = False
        ncols = -1
        walked = 0  # the native walker consumed the messages before this offset
        max_len = self.ctx.cfg.max_message
        framer = self.upstream_framer
        # Disclosures: the plan whose observing columns noted values in this burst, and the
        # statement they belong to; handed to the Gate once per burst (never per value).
        observing = self.gate.observing
        noted: RowPlan | None = None
        noted_id = ""
        while True:
            for mtype, start, end in frames:
                if start < walked:
                    continue
                if out.closed:
                    break
                if self.upstream_phase is UpstreamPhase.BATCH_REFUSED and mtype != b"Z":
                    # The client was told this batch failed: process (to keep the queue and the
                    # statement maps right) but show nothing until ReadyForQuery.
                    if run_start >= 0:
                        emit(mv[run_start:run_end])
                        run_start = -1
                    if mtype != b"D":
                        mark = len(to_client)
                        self._on_message(mtype, mv[start + 5 : end])
                        del to_client[mark:]
                    continue
                if mtype == b"D":
                    if res is None:
                        # First row of a burst: the result, its plan and limit hold for the burst.
                        head = self.queue.head
                        res = self._current_result(head)
                        if res is None:
                            raise ProtocolViolation("DataRow outside a result")
                        plan = None
                        if restricted and res.phase is not ResultPhase.REFUSED:
                            plan = self._plan(required(head, "result"), res)
                        elif observing and res.phase is not ResultPhase.REFUSED:
                            plan = self._observing_plan(required(head, "result"), res)
                        if observing and plan is not None and plan.seen is not None:
                            if noted is not None:
                                self._disclose(noted, noted_id)
                            noted, noted_id = plan, self._statement_id(head)
                            plan.seen.clear()  # a run a masker stopped part-way is not this statement's
                        count = res.rows
                        limit = count.limit
                        swallow = res.phase is ResultPhase.REFUSED
                        ncols = res.ncols
                    if swallow:
                        continue
                    if restricted and (end - start < 7 or unpack_i16(buf, start + 5)[0] != ncols):
                        # A column the description did not announce has no type, so no mask or
                        # detector can be chosen for it: fail closed instead of passing it on.
                        raise ProtocolViolation("DataRow does not match its RowDescription")
                    # RowCount.admit, inlined: a method call per row would cost a tenth of the loop.
                    if limit is not None and count.sent >= limit:
                        count.truncated = True
                        continue
                    walker = plan if plan is not None else PASS_THROUGH
                    if walker is not None and walker.native is not None:
                        # The run of DataRows from here, masked in one native call; a row it stops
                        # before (malformed, rejected) comes back through the reference path below.
                        new, walked, rows, n = walker.walk(
                            buf,
                            start,
                            len(buf),
                            -1 if limit is None else limit - count.sent,
                            ncols if restricted else -1,
                            max_len,
                        )
                        if rows:
                            count.sent += rows
                            count.sent_call += rows
                            count.masked += n
                            if noted is not None:
                                noted.note(buf, start, walked)
                            if new is not None:
                                if run_start >= 0:
                                    emit(mv[run_start:run_end])
                                    run_start = -1
                                emit(new)
                            elif run_start >= 0 and run_end == start:
                                run_end = walked
                            else:
                                if run_start >= 0:
                                    emit(mv[run_start:run_end])
                                run_start, run_end = start, walked
                            continue
                    count.sent += 1
                    count.sent_call += 1
                    if plan is not None:
                        new, n = plan.apply(buf, start, end)
                        if noted is not None:
                            noted.note(buf, start, end)
                        if new is not None:
                            count.masked += n
                            if run_start >= 0:
                                emit(mv[run_start:run_end])
                                run_start = -1
                            emit(new)
                            continue
                    passthrough = True
                else:
                    res = None
                    if noted is not None:
                        self._disclose(noted, noted_id)
                        noted = None
                    mark = len(to_client)
                    # `_on_message`, inlined: once per message of every answer.
                    handler = unqueued.get(mtype)
                    if handler is not None:
                        passthrough = handler(mv[start + 5 : end])
                    else:
                        entry, finished = self.queue.answer(mtype)
                        passthrough = answers[entry.sent](mtype, mv[start + 5 : end], entry, finished)
                    if run_start >= 0 and (len(to_client) > mark or out.closed):
                        # The handler answered in the server's place (or closed): earlier messages
                        # go first.
                        to_client.insert(mark, mv[run_start:run_end])
                        run_start = -1
                if passthrough:
                    if run_start >= 0 and run_end == start:
                        run_end = end
                    else:
                        if run_start >= 0:
                            emit(mv[run_start:run_end])
                        run_start, run_end = start, end
                elif run_start >= 0:
                    emit(mv[run_start:run_end])
                    run_start = -1
            # The framer paused after the first DataRow of a run (`Framer.pause_rows`): go on
            # past the rows the walker already masked, not through them one frame at a time.
            if out.closed or framer is None or framer.paused_at < 0:
                break
            frames = framer.resume(max(framer.paused_at, walked))
        if noted is not None:
            self._disclose(noted, noted_id)
        if run_start >= 0 and not out.closed:
            emit(mv[run_start:run_end])

    def _disclose_copy(self, plan: CopyPlan, e: Expected[Item]) -> None:
        """Hand the values a COPY's rows disclosed so far to the Gate, in one batch."""
        seen = plan.seen
        principal = self.tracker.principal
        if seen and principal is not None:
            plan.seen = []
            self.gate.disclose(principal, self._statement_id(e), seen)

    def _disclose(self, plan: RowPlan, statement_id: str) -> None:
        """Hand the values `plan`'s observing columns noted to the Gate, in one batch."""
        seen = plan.seen
        if seen and plan.observe is not None:
            plan.seen = []  # the batch is handed over whole
            principal = self.tracker.principal
            if principal is not None:
                self.gate.disclose(principal, statement_id, Noted(plan.observe, seen))

    @staticmethod
    def _statement_id(head: Expected[Item] | None) -> str:
        """The audit statement id of the result at the head of the queue."""
        p = head.payload if head is not None else None
        if isinstance(p, QueryRun):
            return p.id
        if isinstance(p, Portal) and p.calls:
            return p.calls[0][0]
        return ""

    def _on_message(self, mtype: bytes, body: memoryview) -> bool:
        """Handle one non-DataRow message; True to pass its raw bytes on to the client."""
        handler = self._unqueued.get(mtype)
        if handler is not None:
            return handler(body)
        entry, finished = self.queue.answer(mtype)
        return self._answers[entry.sent](mtype, body, entry, finished)

    # -- messages that answer no request

    def _on_parameter(self, body: memoryview) -> bool:
        ps = m.ParameterStatus.parse(body)
        self.ctx.track_parameter(ps)
        self._observe_text(ps.value)  # set_config('application_name', phone, …) shows it here
        return True

    def _on_notice(self, body: memoryview) -> bool:
        if self.upstream_phase is not UpstreamPhase.RELAY:
            return False  # it belongs to an answer the client does not see
        notice = m.NoticeResponse.parse(body)
        masked = self._mask_fields(notice, self._in_flight())
        self._observe_text(*(v for _c, v in (masked or notice).fields))
        if masked is not None:
            self.out.client(masked.serialize())
            return False
        return True

    def _on_notification(self, body: memoryview) -> bool:
        tm = self.tracker.text_masker(self._in_flight()) if self.restricted else None
        if tm is None and not self.gate.observing:
            return True
        n = m.NotificationResponse.parse(body)
        payload = n.payload if tm is None else tm(n.payload)
        self._observe_text(n.channel, payload)
        if payload is not n.payload:
            self.out.client(m.NotificationResponse(n.pid, n.channel, payload).serialize())
            return False
        return True

    def _on_ready(self, body: memoryview) -> bool:
        status = m.ready_status(body)
        skipped, sync = self.queue.ready()
        for e in skipped:  # a Query or FunctionCall it finished, or what it skipped
            self._drop(e, ran=isinstance(e.payload, QueryRun))
        if skipped and self.held is not None:
            self._release()
        if sync is None:
            raise ProtocolViolation("unexpected ReadyForQuery")
        self.ctx.txn = status
        self.tracker.settings.ready(in_transaction=status != b"I")
        self.cursors.ready(status)
        if status == b"I":
            self.portals.clear()  # protocol portals do not outlive their transaction
        abort = False
        if self.upstream_phase is not UpstreamPhase.RELAY:
            abort = self.upstream_phase in (UpstreamPhase.QUERY_REFUSED, UpstreamPhase.BATCH_REFUSED)
            self._move_upstream(UpstreamPhase.RELAY)
        if abort and status == b"T":
            # We told the client its statement failed; fail the upstream block too. The client's
            # ReadyForQuery is the one that answers the stand-in's Sync.
            self.queue.push_front(SYNC)
            self.queue.push_front(Expected(Sent.QUERY, Answer.SIMULATE))
            self.out.upstream(FAILING_QUERY)
            return False
        if sync.answer is Answer.HIDE:
            return False  # the end of a statement the proxy sent for itself
        if self.ctx.rename is not None:
            self._rename_back(status)
        return True

    def _rename_back(self, status: bytes) -> None:
        """The session renamed itself (SET application_name, as pgjdbc does at connect): give the
        server the name back with `maskgate:<user>/` in front, so the database's own views and
        logs keep naming the person. Sent for itself, answers hidden, once nothing of the
        client's is in flight (not inside a failed transaction, where it could not run)."""
        name = self.ctx.rename
        if name is None or self.queue or status == b"E":
            return
        self.ctx.rename = None
        literal = "E'" + name.replace("\\", "\\\\").replace("'", "''") + "'"
        self.out.upstream(m.Query(f"SET application_name = {literal}").serialize())
        self.queue.push(Expected(Sent.QUERY, Answer.HIDE))
        self.queue.push(Expected(Sent.SYNC, Answer.HIDE))

    def _on_error(self, body: memoryview) -> bool:
        passthrough = self._error(m.ErrorResponse.parse(body))
        self._release()  # an awaited Describe the server failed or skipped
        return passthrough

    def _error(self, err: m.ErrorResponse) -> bool:
        # Whatever failed (the client's statement or a stand-in), the server aborted its
        # innermost (sub)transaction, undoing the settings made in it (and the cursors).
        self.tracker.settings.failed()
        self.cursors.failed()
        if self.upstream_phase is UpstreamPhase.BATCH_REFUSED:
            skipped = self.queue.skip_to_sync()
            if skipped and skipped[0].answer is not Answer.SIMULATE:
                self._drop(skipped.pop(0), ran=True, error=err.code)  # the one that failed
            self._skipped(skipped)
            return False
        in_flight = self._in_flight()  # before the queue moves past the failed request
        head, skipped = self.queue.fail()
        if head is not None and head.answer is Answer.SIMULATE:
            if head.simulated is not None:
                self.out.client(head.simulated.serialize())
            self._skipped(skipped)
            return False
        if head is not None and head.sent is Sent.QUERY and head.answer is Answer.HIDE:
            self._skipped(skipped)
            return False  # a statement the proxy sent for itself failed: not the client's error
        if head is not None and head.sent is Sent.FUNCTION_CALL and isinstance(head.payload, QueryRun):
            head.payload.error = err.code
        if head is not None and head.sent is Sent.QUERY:
            run = _payload(head, QueryRun)
            run.error = err.code
            if run.result is not None:  # the rows it sent before it failed count
                sent, masked = run.result.rows.end_call()
                run.rows += sent
                run.masked += masked
                run.result = None
            if self.upstream_phase is UpstreamPhase.RELAY:
                self._move_upstream(UpstreamPhase.QUERY_FAILED)
                self._forward_error(err, in_flight)
            return False
        if head is not None and head.sent is Sent.EXECUTE:
            self._drop(head, ran=True, error=err.code)
        self._forward_error(err, in_flight)
        if skipped:
            self._skipped(skipped)
        return False

    def _skipped(self, skipped: list[Expected[Item]]) -> None:
        """The upstream skips these until the client's Sync; if that Sync has not come yet, it
        will skip what the client sends until it does, so drop those messages here too rather
        than wait for answers."""
        for e in skipped:
            self._drop(e, ran=False)
        if not self.queue.synced:
            self._move_client(ClientPhase.SKIP_UNTIL_SYNC)

    def _drop(self, e: Expected[Item], *, ran: bool, error: str | None = None) -> None:
        """A request that leaves the queue without an answer of its own: account for it. `ran`:
        the server ran it (a Query or FunctionCall at its ReadyForQuery, an Execute that failed
        with `error`); else it skipped it after an earlier failure."""
        p = e.payload
        if isinstance(p, QueryRun):
            if not ran:
                self._end(p.sql, p.allow, p.id, p.started, outcome="skipped")
            elif p.refused:
                self._end(
                    p.sql,
                    _refused(p.allow),
                    p.id,
                    p.started,
                    rows=p.rows,
                    masked=p.masked,
                    error=p.error,
                    outcome="refused",
                )
            else:
                self._end(
                    p.sql,
                    p.allow,
                    p.id,
                    p.started,
                    rows=p.rows,
                    masked=p.masked,
                    truncated=p.truncated,
                    overhead=p.overhead,
                    error=p.error,
                )
        elif e.sent is Sent.EXECUTE and isinstance(p, Portal) and p.calls:
            sid, started = p.calls.popleft()
            if ran:
                self._end(p.sql, p.allow, sid, started, rows=p.result.rows.end_call()[0], error=error)
            else:
                self._end(p.sql, p.allow, sid, started, outcome="skipped")
        elif e.sent is Sent.PARSE and isinstance(p, Stmt) and self._stmts_inflight.get(e.name) is p:
            del self._stmts_inflight[e.name]
        elif e.sent is Sent.BIND and isinstance(p, Portal) and self._portals_inflight.get(e.name) is p:
            del self._portals_inflight[e.name]

    def _end(
        self,
        sql: str,
        decision: Allow | Block,
        sid: str,
        started: float,
        *,
        rows: int = 0,
        masked: int = 0,
        truncated: bool = False,
        overhead: float = 0.0,
        error: str | None = None,
        outcome: str = "",
    ) -> None:
        """The end record of the statement `sid`."""
        if not outcome:
            if error is None:
                outcome = "ok"
            elif error == QUERY_CANCELED and self.cancel_sent:
                outcome = "cancelled"
            else:
                outcome = "error"
        self.tracker.record(
            sql,
            decision,
            started=started,
            rows=rows,
            masked=masked,
            truncated=truncated,
            overhead=overhead,
            error=error,
            id=sid,
            outcome=outcome,
            cancelled=self.cancel_sent,
        )

    def finish(self) -> None:
        """The session is closing: every statement still in flight gets its end record. The
        server never said how they ended: cancelled if maskgate cancelled them, else unknown
        (an error already seen for one, e.g. the FATAL of a terminated backend, is its outcome)."""
        if self._parsed:  # parsed (and planned) with no Sync after them
            self._audit_unexecuted()
        unfinished = "cancelled" if self.cancel_sent else "unknown"
        for e in self.queue:
            p = e.payload
            if isinstance(p, QueryRun):
                rows = p.rows + (p.result.rows.sent_call if p.result is not None else 0)
                outcome = "" if p.error else unfinished
                self._end(p.sql, p.allow, p.id, p.started, rows=rows, error=p.error, outcome=outcome)
            elif e.sent is Sent.EXECUTE and isinstance(p, Portal) and p.calls:
                sid, started = p.calls.popleft()
                rows = p.result.rows.end_call()[0]
                self._end(p.sql, p.allow, sid, started, rows=rows, outcome=unfinished)
        self.queue = ExpectQueue()

    # -- answers to requests

    def _on_parsed(self, mtype: bytes, body: memoryview, e: Expected[Item], finished: bool) -> bool:
        st = _payload(e, Stmt)
        if self._stmts_inflight.get(st.name) is st:
            del self._stmts_inflight[st.name]
        self.stmts[st.name] = st
        self.tracker.last_detect = st.allow.detect
        return True

    def _on_bound(self, mtype: bytes, body: memoryview, e: Expected[Item], finished: bool) -> bool:
        p = _payload(e, Portal)
        if self._portals_inflight.get(p.name) is p:
            del self._portals_inflight[p.name]
        self.portals[p.name] = p
        self.cursors.drop(p.name)  # one namespace: no cursor has this name now
        return True

    def _on_closed(self, mtype: bytes, body: memoryview, e: Expected[Item], finished: bool) -> bool:
        if e.sent is Sent.CLOSE_STATEMENT:
            self.stmts.pop(e.name, None)
        else:
            # Close of a portal closes a SQL cursor of that name too (one namespace).
            self.portals.pop(e.name, None)
            self.cursors.drop(e.name)
        return True

    def _on_described(self, mtype: bytes, body: memoryview, e: Expected[Item], finished: bool) -> bool:
        if not finished:
            return True  # ParameterDescription
        fields = self._fields(body) if mtype == b"T" else ()
        target = e.payload
        if isinstance(target, Stmt | Portal):
            target.fields = fields
        if e is self._awaiting:
            self._release()
        return e.answer is Answer.FORWARD

    def _on_function_result(self, mtype: bytes, body: memoryview, e: Expected[Item], finished: bool) -> bool:
        if mtype == b"V" and self.gate.observing:
            value = m.FunctionCallResponse.parse(body).value
            if value:
                self._observe_text(value.decode(self.ctx.encoding, "surrogateescape"))
        return True

    def _on_execute_answer(self, mtype: bytes, body: memoryview, e: Expected[Item], finished: bool) -> bool:
        p = _payload(e, Portal)
        if not finished:
            return self._on_copy(mtype, body, p.result, e)
        res = p.result
        count = res.rows
        rows, masked = count.end_call()
        sid, started = p.calls.popleft() if p.calls else ("", self.ctx.clock())
        if res.phase is ResultPhase.REFUSED:
            refusal = required(res.refusal, "refusal")
            self._end(
                p.sql,
                _refused(p.allow, refusal.message),
                sid,
                started,
                rows=rows,
                masked=masked,
                error=errors.INSUFFICIENT_PRIVILEGE,
                outcome="refused",
            )
            self._fail_batch(refusal)
            return False
        truncated = count.truncated
        if mtype == b"s" and count.exhausted:
            truncated = True  # stop the client fetching more: the portal is finished for it
        tag = m.command_tag(body) if mtype == b"C" else None
        if tag is not None or truncated:
            self._completed_portal(p, tag)
        self._end(p.sql, p.allow, sid, started, rows=rows, masked=masked, truncated=truncated)
        if truncated:
            if count.notice_once():
                self.out.client(errors.truncated_notice(count.sent).serialize())
            self.out.client(
                m.CommandComplete(_retag(tag if tag is not None else "SELECT 0", rows)).serialize()
            )
            return False
        return True

    def _completed_portal(self, p: Portal, tag: str | None) -> None:
        """A portal's statement completed (`tag`), or stopped at the row limit (None): what it
        changed is kept (a PREPARE, DEALLOCATE or DISCARD ALL sent through Parse acts on the same
        prepared statements as SQL-level ones; a DECLARE or CLOSE on the same cursors)."""
        st = p.stmt
        if p.executes is not None:
            self.tracker.succeeded(p.allow)
            return
        self._completed(p.allow, 0, tag, st.sql, st.origin or st.allow, st.generation, st.index)

    def _fail_batch(self, err: m.ErrorResponse) -> None:
        """A statement refused after the upstream started it, in an extended batch: the client
        gets the error, and the rest of the batch is hidden and dropped as PostgreSQL would."""
        self.out.client(err.serialize())
        self._move_upstream(UpstreamPhase.BATCH_REFUSED)
        if not self.queue.synced:
            self._move_client(ClientPhase.SKIP_UNTIL_SYNC)

    def _on_query_answer(self, mtype: bytes, body: memoryview, e: Expected[Item], finished: bool) -> bool:
        if e.answer is Answer.HIDE:
            return False  # a statement the proxy sent for itself
        run = _payload(e, QueryRun)
        if self.upstream_phase in _CONSUMING:
            if mtype == b"C" and self.upstream_phase is UpstreamPhase.QUERY_REFUSED:
                # Hidden from the client, but the server ran it: its effects are the session's.
                self._completed_part(run, run.part, body)
                run.part += 1
            return False
        if mtype == b"T":
            res = run.result = self._part_result(run)
            res.planned = True
            if not self.restricted:
                if self.gate.observing:
                    res.plan = self._observe_only(self._fields(body), None, res.allow)
                return True
            fields = self._fields(body)
            res.ncols = len(fields)
            rows = self._rows_decision(res)
            if isinstance(rows, str):
                self._refuse_result(res, rows)
                return False
            try:
                res.plan = self._plan_rows(fields, None, rows)
            except Unmaskable as exc:
                res.refuse(errors.insufficient_privilege(str(exc)))
                return False
            return True
        if mtype in (b"C", b"I"):
            res = run.result or self._part_result(run)
            run.result = None
            run.part += 1
            sent, masked = res.rows.end_call()
            run.rows += sent
            run.masked += masked
            if res.phase is ResultPhase.REFUSED:
                if mtype == b"C":
                    self._completed_part(run, run.part - 1, body)  # refused to the client, but it ran
                # Tell the client this statement failed; hide the rest of the Query's results.
                self.out.client(required(res.refusal, "refusal").serialize())
                run.error = errors.INSUFFICIENT_PRIVILEGE
                run.refused = True
                if self.upstream_phase is UpstreamPhase.RELAY:  # a refused batch hides it already
                    self._move_upstream(UpstreamPhase.QUERY_REFUSED)
                return False
            if mtype == b"I":
                return True
            self._completed_part(run, run.part - 1, body)
            if res.rows.truncated:
                run.truncated = True
                # A FETCH's count is its cursor's: the notice says how many rows it gave in all.
                self.out.client(errors.truncated_notice(res.rows.sent).serialize())
                tag = _retag(m.command_tag(body), sent)
                self.out.client(m.CommandComplete(tag).serialize())
                return False
            return True
        if run.result is None:  # COPY TO STDOUT
            run.result = self._part_result(run)
        return self._on_copy(mtype, body, run.result, e)

    def _on_copy(self, mtype: bytes, body: memoryview, res: Result, e: Expected[Item]) -> bool:
        if mtype == b"G":
            return True  # COPY FROM STDIN: the client now sends data
        if mtype in (b"H", b"W"):
            cr = m.CopyOutResponse.parse(body)
            ncols = len(cr.column_formats)
            observe = self._observed(res.allow, ncols) if self.gate.observing else None
            if not self.restricted:
                # Nothing is masked; while disclosures are observed, the rows are read for them
                # (a binary COPY's bytes as they come: whatever text they hold).
                res.start_copy(
                    CopyPlan(ncols, res.allow, self.gate, self.ctx.encoding, observe, mask=False)
                    if observe is not None
                    else None
                )
                return True
            if cr.format != 0 or mtype == b"W":
                res.refuse(errors.insufficient_privilege("binary COPY is not allowed for this role"))
                return False
            try:
                plan = CopyPlan(ncols, res.allow, self.gate, self.ctx.encoding, observe)
            except Unmaskable as exc:
                res.refuse(errors.insufficient_privilege(str(exc)))
                return False
            res.start_copy(plan)
            return True
        if res.phase is ResultPhase.REFUSED:
            return False
        if mtype == b"c":
            if res.copy is not None:
                self._disclose_copy(res.copy, e)
            return True
        if res.copy_header and res.phase is ResultPhase.COPY_OUT:
            # The column names the statement gave (a header the engine read from its options):
            # not a row of the limit, and not masked.
            res.copy_header = False
            if res.copy is not None:
                res.copy.apply(bytes(body))
            return True
        if not res.rows.admit():
            return False
        if res.phase is not ResultPhase.COPY_OUT:
            if self.restricted:
                # No CopyOutResponse announced the columns, so none can be masked: fail closed.
                raise ProtocolViolation("CopyData outside COPY TO STDOUT")
            return True
        if res.copy is None:
            return True  # unrestricted: passed as it is
        try:
            data, n = res.copy.apply(bytes(body))
        except Unmaskable:
            res.refuse(errors.insufficient_privilege("COPY row format cannot be masked"))
            return False
        if res.copy.seen is not None and len(res.copy.seen) >= _COPY_BATCH:
            self._disclose_copy(res.copy, e)
        if n:
            res.rows.masked += n
            self.out.client(m.frame(b"d", data))
            return False
        return True

    # -- results, plans and what errors may say

    def _current_result(self, head: Expected[Item] | None) -> Result | None:
        """The result DataRows at the head of the queue belong to, if any."""
        if head is None or head.answer is Answer.SIMULATE:
            return None
        if head.sent is Sent.EXECUTE:
            return _payload(head, Portal).result
        if head.sent is Sent.QUERY:
            run = _payload(head, QueryRun)
            if self.upstream_phase in _CONSUMING:
                swallow = Result.of(run.allow)
                swallow.refuse(errors.protocol_violation())
                return swallow
            if run.result is None:
                run.result = self._part_result(run)
            return run.result
        return None

    def _part_result(self, run: QueryRun) -> Result:
        """The result of the statement of a simple Query now answering. A restricted session
        refuses one past the statements the decision described: its columns have no decision."""
        res = Result.of(part(run.allow, run.part))
        if self.restricted and run.part >= len(run.allow.parts()):
            self._refuse_result(res, "the statement returned a result that was not decided")
        return res

    def _plan(self, head: Expected[Item], res: Result) -> RowPlan | None:
        """The masking plan for the result at the head of the queue, built once per result."""
        if res.planned:
            return res.plan
        why = self._plan_portal(_payload(head, Portal)) if head.sent is Sent.EXECUTE else None
        if not res.planned:  # not a portal's
            res.planned = True
            why = "result columns could not be described"
        if why is not None:
            self._refuse_result(res, why)
        return res.plan

    def _observing_plan(self, head: Expected[Item], res: Result) -> RowPlan | None:
        """An unrestricted session's plan while the Gate observes: nothing is masked, only its
        classified columns are noted. A result whose columns are unknown is passed unobserved:
        observation never refuses what the role may read."""
        if res.planned:
            return res.plan
        res.planned = True
        p = head.payload
        if head.sent is Sent.EXECUTE and isinstance(p, Portal):
            fields = p.fields if p.fields is not None else self._stmt_fields(p)
            formats = None if p.fields is not None else p.formats
            if fields is not None:
                res.plan = self._observe_only(fields, formats, res.allow)
        return res.plan

    def _observe_only(
        self, fields: tuple[m.FieldDescription, ...], formats: tuple[int, ...] | None, allow: Allow
    ) -> RowPlan | None:
        return self._observing_plans.get(fields, formats, allow, self.ctx.encoding, self._build_observe_only)

    def _build_observe_only(
        self, fields: tuple[m.FieldDescription, ...], formats: tuple[int, ...] | None, allow: Allow, enc: str
    ) -> RowPlan | None:
        observe = self._observed(allow, len(fields))
        return plan_rows(fields, formats, allow, self.gate, enc, observe, mask=False)

    def _observed(self, allow: Allow, ncols: int) -> tuple[tuple[str, str], ...]:
        """What each of a result's `ncols` columns discloses. Columns the decision does not
        describe (a FETCH's, a server-side function's) are read for what they hold."""
        if len(allow.columns) != ncols:
            return ((SCAN, ""),) * ncols
        key = self.gate.customer_key()
        database = self.tracker.database
        rows = self.gate.row_keys()
        return tuple(observed(cm, key, database, "public", rows) for cm in allow.columns)

    def _plan_portal(self, p: Portal) -> str | None:
        """Build the masking plan of `p`'s result; the reason it cannot be masked, or None."""
        res = p.result
        res.planned = True
        fields: tuple[m.FieldDescription, ...] | None = None
        formats: tuple[int, ...] | None = None
        if p.fields is not None:
            fields = p.fields
        elif self._stmt_fields(p) is not None:
            fields, formats = self._stmt_fields(p), p.formats
        if fields is None:
            return "result columns could not be described"
        res.ncols = len(fields)
        rows = self._rows_decision(res)
        if isinstance(rows, str):
            return rows
        try:
            res.plan = self._plan_rows(fields, formats, rows)
        except Unmaskable as e:
            return str(e)
        return None

    def _rows_decision(self, res: Result) -> Allow | str:
        """The decision `res`'s rows are masked by: its own, or for a FETCH its cursor's, whose
        row budget it then counts against. A FETCH is resolved when its answer starts, after
        everything sent before it completed, so the cursor is the one the server fetches from.
        Returns the reason to refuse it instead."""
        effect = res.allow.cursor
        if effect is not None and effect.action == "declare":
            # DECLARE itself returns no rows: its columns are the cursor's. Any column it had
            # would be refused (its classes stay).
            return replace(res.allow, columns=())
        if effect is None or effect.action != "fetch":
            return res.allow
        c = self.cursors.get(effect.name or "")
        if c is None:
            return FETCH_UNKNOWN
        if c.generation != self.tracker.generation:
            # Declared under another policy: the cursor's query runs as it was rewritten then,
            # so it may go on only if the policy now decides it the same upstream (its masks,
            # tighter or looser, then apply to these rows as to a new SELECT's).
            d = self.tracker.redecide(c.sql, c.whole)
            if isinstance(d, Block):
                return d.message
            c.redecided(d, self.tracker.generation)
        count = res.rows = c.rows
        count.sent_call = count.masked = 0
        count.truncated = count.noticed = False
        return c.allow

    def _refuse_result(self, res: Result, why: str) -> None:
        """Refuse a statement the upstream is already running (its result cannot be masked)."""
        log.info("session %s: refusing result: %s", self.ctx.session_id, why)
        res.refuse(errors.insufficient_privilege(why))

    def _fields(self, body: memoryview) -> tuple[m.FieldDescription, ...]:
        key = bytes(body)
        fields = self._rd_cache.get(key)
        if fields is None:
            if len(self._rd_cache) >= _CACHE_MAX:
                self._rd_cache.clear()
            fields = self._rd_cache[key] = m.RowDescription.parse(key).fields
            if self.gate.observing:
                # Column names reach the client too, and a DO block can name a temp table's
                # column after a phone (read once per description and session: the cache).
                names = [f.name for f in fields]
                if may_hold_number("".join(names)):
                    self._observe_text(*names)
        return fields

    def _plan_rows(
        self, fields: tuple[m.FieldDescription, ...], formats: tuple[int, ...] | None, allow: Allow
    ) -> RowPlan | None:
        """plan_rows, cached per (fields, formats, decision, encoding); raises Unmaskable."""
        if self.gate.observing:
            return self._observing_plans.get(fields, formats, allow, self.ctx.encoding, self._build_observing)
        return self._plans.get(fields, formats, allow, self.ctx.encoding, self._build_plan)

    def _build_observing(
        self, fields: tuple[m.FieldDescription, ...], formats: tuple[int, ...] | None, allow: Allow, enc: str
    ) -> RowPlan | None:
        return plan_rows(fields, formats, allow, self.gate, enc, self._observed(allow, len(fields)))

    def _build_plan(
        self, fields: tuple[m.FieldDescription, ...], formats: tuple[int, ...] | None, allow: Allow, enc: str
    ) -> RowPlan | None:
        return plan_rows(fields, formats, allow, self.gate, enc)

    def _in_flight(self) -> Allow | None:
        """The decision of the statement the upstream is answering, if any."""
        for e in self.queue:
            if e.payload is not None:
                return self.cursors.in_flight(e.payload.allow)
        return self.cursors.in_flight(None)

    def _forward_error(self, err: m.ErrorResponse, in_flight: Allow | None) -> None:
        masked = self._mask_fields(err, in_flight)
        self.out.client((masked or err).serialize())
        self._observe_text(*(v for _c, v in (masked or err).fields))

    def _observe_text(self, *texts: str) -> None:
        """While disclosures are observed, text the client receives outside rows (an error or
        notice a function raised with a number in it, a NOTIFY payload, a setting the server
        reports, a fast-path function's result) is read for the numbers it holds. What is read
        is what is sent: a number in it reached the client in clear."""
        if not self.gate.observing:
            return
        principal = self.tracker.principal
        text = "\n".join(t for t in texts if t)
        if principal is not None and text:
            sid = self._statement_id(self.queue.head)
            self.gate.disclose(principal, sid, [Disclosed(SCAN, "", text, True)])

    def _mask_fields(
        self, msg: m.ErrorResponse | m.NoticeResponse, in_flight: Allow | None
    ) -> m.ErrorResponse | m.NoticeResponse | None:
        """Detector masking of the free-text fields of an error or notice; None if unchanged.

        An error raised while a restricted statement evaluates classified data is withheld
        whole (see StatementTracker.withholds_errors): its SQLSTATE still reaches the client,
        the full text goes to the proxy's log only at debug level.
        """
        if not self.restricted:
            return None
        if isinstance(msg, m.ErrorResponse) and self.tracker.withholds_errors(in_flight):
            log.debug("session %s: withheld error text %r", self.ctx.session_id, msg.message)
            return _withheld(msg)
        tm = self.tracker.text_masker(in_flight)
        if tm is None:
            return None
        changed = False
        fields = []
        for code, value in msg.fields:
            if code in ("M", "D", "H", "W", "q"):
                new = tm(value)
                if new is not value:
                    changed = True
                    value = new
            fields.append((code, value))
        return type(msg)(tuple(fields)) if changed else None
