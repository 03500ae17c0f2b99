"""The command phase of a MySQL session: each client command decided, forwarded, answered, masked.

Owns the client's commands once it is logged in (COM_QUERY, the COM_STMT_* family, COM_INIT_DB,
COM_FIELD_LIST and the rest), refusing in the server's place what the policy refuses (ERR 1142,
the session stays usable), and the server's answers: result sets walked packet by packet
(column definitions held until the masking plan is built, rows masked and counted against the
row limit, the closing EOF's warning count raised when rows were held back), prepared statements
and their cursors, errors withheld while a statement reads classified data, and the server's
request for a client file refused. Packets to the client are numbered afresh, so rows held back
or answers given in the server's place never break the sequence. One command is in flight at a
time, as the protocol has it; a client that sends the next one early waits its turn.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field, replace
from enum import Enum, auto

from policies.decision import Allow, Block, Decision
from policies.sql.executable_comments import ExecutableCommentError, ServerVersion, expand_executable_comments
from proxy.core.machine import ProtocolViolation
from proxy.mysql import errors
from proxy.mysql import packets as p
from proxy.mysql.context import Context
from proxy.mysql.login import quote_name
from proxy.mysql.rowmask import PlanCache, RowPlan, parse_columns
from proxy.mysql.types import charset_name_encoding
from proxy.services.disclosure import SCAN, may_hold_number, observed
from proxy.services.gate import Disclosed
from proxy.services.rows import Unmaskable
from proxy.services.statement import AUDIT_FAILED, STALE, RowCount, part, withheld_message

log = logging.getLogger("maskgate.mysql")

# The settings that change the character set the server reads statements in (the analysis
# spells SET NAMES and SET CHARACTER SET as client_encoding).
ENCODING_SETTINGS = frozenset({"client_encoding", "character_set_client"})
TRUNCATED_WARNING = 1105
# Commands a client may send ahead of the answer to the one in flight, in bytes and in number;
# more closes the connection (a protocol violation), so no client makes the proxy hold memory.
MAX_AHEAD_BYTES = 16 * 1024 * 1024
MAX_AHEAD_COMMANDS = 10_000  # the code of maskgate's own warning in SHOW WARNINGS
CHANGE_USER = Block(
    "statement_not_allowed",
    "COM_CHANGE_USER is not supported: connect again as the other person",
)
MULTI_OFF = Block(
    "unparsable",
    "several statements in one query, and this connection has not enabled them (CLIENT_MULTI_STATEMENTS)",
)
CHARSET_THEN_MORE = Block(
    "unparsable", "a statement that changes the client character set must be the last of its query"
)
LOCAL_INFILE = Block(
    "statement_not_allowed", "LOAD DATA LOCAL is not allowed: the proxy never sends a client's files"
)


WITHHELD_MESSAGE = b"maskgate: the message is withheld because an earlier statement read classified data"


def _is_diagnostics(allow: Allow, ncols: int) -> bool:
    """SHOW WARNINGS / SHOW ERRORS: the engine describes them as Level, Code, Message."""
    if allow.kind != "show" or ncols != 3:
        return False
    return [c.name.lower() for c in allow.columns] == ["level", "code", "message"]


def withheld_messages(cols: list[p.ColumnDefinition41], binary: bool) -> RowPlan:
    """Level and Code as they are, every Message one constant."""
    return RowPlan(
        [None, None, None], [None, None, WITHHELD_MESSAGE], binary, [(c.type, c.flags) for c in cols]
    )


class Wait(Enum):
    """What the server's answer to the command in flight looks like."""

    RESULTS = auto()  # result sets (COM_QUERY, COM_STMT_EXECUTE): OK, ERR or rows
    PREPARE = auto()  # COM_STMT_PREPARE: prepare-OK, parameter and column definitions
    FETCH = auto()  # COM_STMT_FETCH: rows of an open cursor, then EOF
    OK = auto()  # OK or ERR (COM_PING, COM_INIT_DB, COM_STMT_RESET, COM_RESET_CONNECTION)
    EOF = auto()  # EOF or ERR (COM_SET_OPTION)
    STRING = auto()  # one string packet (COM_STATISTICS)
    FIELDS = auto()  # column definitions until EOF, or ERR (COM_FIELD_LIST)
    ROLE = auto()  # maskgate's own SET ROLE after COM_RESET_CONNECTION: swallowed


class Phase(Enum):
    """Where in a result set (or a prepare answer) the server is."""

    HEAD = auto()  # the first packet of a result: OK, ERR, LOCAL INFILE request or column count
    COLUMNS = auto()  # column definitions
    COLUMNS_EOF = auto()  # the EOF after them
    ROWS = auto()  # rows until EOF or ERR
    PARAMS = auto()  # prepare: parameter definitions
    PARAMS_EOF = auto()
    PREP_COLUMNS = auto()  # prepare: column definitions
    PREP_COLUMNS_EOF = auto()


@dataclass(slots=True, eq=False)
class Cursor:
    """An open cursor of a prepared statement (COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY)."""

    plan: RowPlan | None
    count: RowCount
    sid: str | None
    started: float
    masked: int = 0


@dataclass(slots=True, eq=False)
class Stmt:
    """A prepared statement the server holds, with the decision its executions run under."""

    stmt_id: int
    sql: str
    allow: Allow
    generation: int
    num_params: int = 0
    cursor: Cursor | None = None


@dataclass(slots=True, eq=False)
class InFlight:
    """The command the server is answering."""

    wait: Wait
    sql: str = ""
    allow: Allow | None = None
    started: float = 0.0
    overhead: float = 0.0
    sid: str | None = None  # its write-ahead record's id (None: not a statement)
    binary: bool = False
    stmt: Stmt | None = None
    cursor: bool = False  # an execute that asked for a cursor
    phase: Phase = Phase.HEAD
    index: int = 0  # the result (the part of a multi-statement string) being answered
    ncols: int = 0
    # The result's head awaiting the plan: its column count, then the column definitions as
    # they came (parsed only when the session's plan cache has not seen them).
    held: list[bytes] = field(default_factory=list)
    plan: RowPlan | None = None
    count: RowCount = field(default_factory=lambda: RowCount(None))
    rows: int = 0
    masked: int = 0
    truncated: bool = False
    refused: Block | None = None  # the result was refused: an ERR takes the place of the rest
    error: str | None = None
    warn: bool = False  # a SHOW WARNINGS that gets maskgate's pending warning added
    pending: p.OK | None = None  # the reset's OK, held while maskgate restores the role
    prepared: Stmt | None = None
    counts_left: int = 0  # prepare: definitions still to come in this phase


class Relay:
    """The command phase of one session; created by the session when the login is done."""

    def __init__(self, ctx: Context, *, assume_role: str | None = None) -> None:
        self.ctx = ctx
        self.out = ctx.out
        self.gate = ctx.gate
        self.tracker = ctx.tracker
        self.restricted = ctx.tracker.restricted
        self.assume_role = assume_role
        self.flight: InFlight | None = None
        self.waiting: deque[tuple[int, bytes]] = deque()  # commands sent before their turn
        self.waiting_bytes = 0
        self.stmts: dict[int, Stmt] = {}
        self.plans = PlanCache(ctx.gate)
        # SQL-level PREPARE name FROM '…': a namespace of its own in MySQL (not the protocol's
        # numbered statements), with the decision of each body and the generation it was made in.
        self.sql_prepared: dict[str, tuple[Allow, int]] = {}
        self.useq = 0  # the next sequence id towards the upstream
        self.server = ServerVersion.parse(ctx.server_version)
        # maskgate's own warning for the next SHOW WARNINGS: "result truncated to N rows".
        self.warning: str | None = None
        self.quit = False
        self.login_encoding = ctx.encoding  # the handshake's character set

    @property
    def idle(self) -> bool:
        return self.flight is None and not self.waiting

    @property
    def executing(self) -> bool:
        return self.flight is not None and self.flight.sid is not None

    # ------------------------------------------------------------------ client -> upstream

    def client_packet(self, seq: int, payload: bytes) -> None:
        if self.flight is not None or self.waiting:
            # Drivers pipeline a little (Connector/J's batches); a client that sends without
            # reading would make the proxy hold whatever it sends.
            self.waiting_bytes += len(payload)
            if self.waiting_bytes > MAX_AHEAD_BYTES or len(self.waiting) >= MAX_AHEAD_COMMANDS:
                raise ProtocolViolation("too many commands sent ahead of their answers")
            self.waiting.append((seq, payload))
            return
        self._command(seq, payload)

    def _next_command(self) -> None:
        while self.flight is None and self.waiting and not self.out.closed and not self.quit:
            seq, payload = self.waiting.popleft()
            self.waiting_bytes -= len(payload)
            self._command(seq, payload)

    def _command(self, seq: int, payload: bytes) -> None:
        if seq != 0:
            raise ProtocolViolation(f"a command with sequence id {seq}")
        cmd = p.command_of(payload)
        self.ctx.cseq = 1
        self.useq = 0
        if cmd == p.COM_QUERY:
            self._on_query(payload)
        elif cmd == p.COM_STMT_PREPARE:
            self._on_prepare(payload)
        elif cmd == p.COM_STMT_EXECUTE:
            self._on_execute(payload)
        elif cmd == p.COM_STMT_FETCH:
            self._on_fetch(payload)
        elif cmd == p.COM_STMT_CLOSE:
            self._on_stmt_close(payload)
        elif cmd == p.COM_STMT_RESET:
            self._on_stmt_reset(payload)
        elif cmd == p.COM_STMT_SEND_LONG_DATA:
            sl = p.ComStmtSendLongData.parse(payload)
            if sl.stmt_id in self.stmts:
                self._forward(payload)  # no answer: the data is bound at the next execute
        elif cmd == p.COM_INIT_DB:
            self._on_init_db(payload)
        elif cmd == p.COM_FIELD_LIST:
            self._on_field_list(payload)
        elif cmd == p.COM_PING:
            self._forward(payload, InFlight(Wait.OK))
        elif cmd == p.COM_STATISTICS:
            self._forward(payload, InFlight(Wait.STRING))
        elif cmd == p.COM_SET_OPTION:
            opt = p.ComSetOption.parse(payload)
            self._forward(payload, InFlight(Wait.EOF, sql=str(opt.option)))
        elif cmd == p.COM_RESET_CONNECTION:
            self._forward(payload, InFlight(Wait.OK, sql="reset"))
        elif cmd == p.COM_QUIT:
            self.quit = True
            self._forward(payload)
            self.ctx.close("client quit")
        elif cmd == p.COM_CHANGE_USER:
            self._refuse("COM_CHANGE_USER", CHANGE_USER, started=self.ctx.clock())
        else:
            # Replication, shutdown, process kill, debug, bulk execution and the obsolete
            # commands: nothing a person's session needs through a masking proxy.
            block = Block("statement_not_allowed", f"command {cmd} is not allowed through maskgate")
            self._refuse(f"command {cmd}", block, started=self.ctx.clock())

    def _forward(self, payload: bytes, flight: InFlight | None = None) -> None:
        data, self.useq = p.frame(payload, self.useq)
        self.out.upstream(data)
        self.flight = flight

    def _sql_text(self, raw: bytes) -> str | None:
        try:
            return raw.decode(self.ctx.encoding)
        except UnicodeDecodeError:
            return None

    def _analysed(self, raw: bytes, started: float) -> tuple[str, Decision, float]:
        """The statement text as the server will run it (executable comments expanded for its
        version) and the decision for it."""
        sql = self._sql_text(raw)
        if sql is None:
            return (
                "",
                Block("unparsable", "the statement is not valid in the connection's character set"),
                0.0,
            )
        if "\x00" in sql:
            # MariaDB's lexer ends a statement at a NUL byte; a parser that reads on would
            # analyse another statement than the one that runs.
            return sql, Block("unparsable", "the statement holds a NUL byte"), 0.0
        try:
            sql = expand_executable_comments(sql, self.server)
        except ExecutableCommentError as e:
            return sql, Block("unparsable", f"executable comment cannot be checked: {e}"), 0.0
        d, overhead = self.tracker.decide(sql)
        return sql, d, overhead

    def _encoded(self, sql: str) -> bytes | None:
        try:
            return sql.encode(self.ctx.encoding)
        except UnicodeEncodeError:
            return None

    def _on_query(self, payload: bytes) -> None:
        raw = payload[1:]  # COM_QUERY, as `_command` dispatched it: the rest is the text
        started = self.ctx.clock()
        sql, d, overhead = self._analysed(raw, started)
        if isinstance(d, Allow):
            d = self._resolve_executes(d)
        if isinstance(d, Block):
            self._refuse(sql or "<undecodable>", d, started=started, overhead=overhead)
            return
        if any(c.name in ENCODING_SETTINGS for q in d.parts()[:-1] for c in q.settings):
            # The server reads the statements after it in the new charset; maskgate read the
            # whole string in the old one.
            self._refuse(sql, CHARSET_THEN_MORE, started=started, overhead=overhead)
            return
        if len(d.parts()) > 1 and not self.ctx.multi_statements:
            # maskgate's upstream connection always accepts several statements; the client's
            # connection did not ask to (CLIENT_MULTI_STATEMENTS, COM_SET_OPTION), and the server
            # would refuse them: stacked statements are no way in behind its back.
            self._refuse(sql, MULTI_OFF, started=started, overhead=overhead)
            return
        spent = self.tracker.spend(d)
        if spent is not None:
            self._refuse(sql, spent, started=started, overhead=overhead)
            return
        if d.rewritten_sql is None and self.ctx.encoding == "utf-8" and b"/*" not in raw:
            # Sent as the client sent it: with no comment there was no executable comment to
            # expand, so the decided text is these bytes decoded, and UTF-8 encodes it back to
            # exactly them.
            query = payload
        else:
            text = self._encoded(d.rewritten_sql or sql)
            if text is None:
                self._refuse(
                    sql,
                    Block("unparsable", "the statement cannot be sent in the connection's character set"),
                    started=started,
                )
                return
            query = p.ComQuery(text).serialize()
        sid = self.tracker.begin(sql, d)
        if sid is None:
            self._refuse(sql, AUDIT_FAILED, started=started, overhead=overhead)
            return
        warn = self.warning is not None and sql.strip(" \t\r\n;").upper().split() == ["SHOW", "WARNINGS"]
        if not warn:
            self.warning = None
        # Each result of a multi-statement string has its own part's row limit.
        count = RowCount(part(d, 0).row_limit)
        flight = InFlight(
            Wait.RESULTS,
            sql=sql,
            allow=d,
            started=started,
            overhead=overhead,
            sid=sid,
            warn=warn,
            count=count,
        )
        self._forward(query, flight)

    def _resolve_executes(self, d: Allow) -> Decision:
        """`d` with each SQL-level EXECUTE decided as the statement it runs: the decision kept
        from its PREPARE (masks, row limit, tables). The statements of one string run in order,
        so a PREPARE or DEALLOCATE earlier in the same string counts. An EXECUTE of a name the
        session knows no statement for is refused for a restricted session; one prepared under
        another policy generation must be prepared again."""
        parts = d.parts()
        if not any(a.prepared is not None for a in parts):
            return d
        overlay: dict[str, tuple[Allow, int] | None] = {}
        out: list[Allow] = []
        for a in parts:
            effect = a.prepared
            if effect is None:
                out.append(a)
                continue
            if effect.action == "prepare":
                overlay[effect.name] = (a, self.gate.generation)
            elif effect.action == "deallocate":
                overlay[effect.name] = None
            elif effect.action == "deallocate_all":
                overlay = dict.fromkeys(self.sql_prepared)
            elif effect.action == "execute":
                kept = overlay[effect.name] if effect.name in overlay else self.sql_prepared.get(effect.name)
                if kept is None:
                    if self.restricted:
                        return Block(
                            "statement_not_allowed",
                            f"prepared statement {effect.name} is not known to maskgate",
                            kind="execute",
                        )
                    out.append(a)  # the server says it does not exist
                    continue
                body, generation = kept
                if generation != self.gate.generation:
                    return STALE
                a = replace(body, rewritten_sql=a.rewritten_sql, prepared=None)
            out.append(a)
        if not d.statements:
            return out[0]
        return replace(
            d,
            statements=tuple(out),
            tables=tuple(sorted({t for p in out for t in p.tables})),
            classes=tuple(sorted({c for p in out for c in p.classes})),
        )

    def _on_prepare(self, payload: bytes) -> None:
        q = p.ComStmtPrepare.parse(payload)
        started = self.ctx.clock()
        sql, d, overhead = self._analysed(q.query, started)
        if isinstance(d, Block):
            self._refuse(sql or "<undecodable>", d, started=started, overhead=overhead)
            return
        if len(d.parts()) > 1:
            self._refuse(
                sql, Block("unparsable", "a prepared statement holds one statement"), started=started
            )
            return
        text = self._encoded(d.rewritten_sql or sql)
        if text is None:
            self._refuse(
                sql,
                Block("unparsable", "the statement cannot be sent in the connection's character set"),
                started=started,
            )
            return
        flight = InFlight(Wait.PREPARE, sql=sql, allow=d, started=started, overhead=overhead)
        self._forward(p.ComStmtPrepare(text).serialize(), flight)

    def _stmt_of(self, payload: bytes) -> Stmt | None:
        if len(payload) < 5:
            raise ProtocolViolation("truncated statement command")
        return self.stmts.get(int.from_bytes(payload[1:5], "little"))

    def _unknown_stmt(self, what: str) -> None:
        err = p.ERR(1243, "HY000", f"Unknown prepared statement handler given to {what}")
        self.ctx.send(err.serialize())

    def _current(self, st: Stmt) -> Decision:
        """The statement's decision under the policy in force now."""
        if st.generation == self.gate.generation:
            return st.allow
        d = self.tracker.redecide(st.sql, st.allow)
        if isinstance(d, Allow):
            st.allow, st.generation = d, self.gate.generation
        return d

    def _on_execute(self, payload: bytes) -> None:
        st = self._stmt_of(payload)
        started = self.ctx.clock()
        if st is None:
            self._unknown_stmt("mysqld_stmt_execute")
            return
        self._end_cursor(st)
        d = self._current(st)
        if isinstance(d, Block):
            self._refuse(st.sql, d, started=started)
            return
        spent = self.tracker.spend(d)
        if spent is not None:
            self._refuse(st.sql, spent, started=started)
            return
        sid = self.tracker.begin(st.sql, d)
        if sid is None:
            self._refuse(st.sql, AUDIT_FAILED, started=started)
            return
        cursor = len(payload) > 5 and bool(payload[5] & p.CURSOR_TYPE_READ_ONLY)
        flight = InFlight(
            Wait.RESULTS,
            sql=st.sql,
            allow=d,
            started=started,
            sid=sid,
            binary=True,
            stmt=st,
            cursor=cursor,
            count=RowCount(d.row_limit),
        )
        self._forward(payload, flight)

    def _on_fetch(self, payload: bytes) -> None:
        st = self._stmt_of(payload)
        if st is None:
            self._unknown_stmt("mysqld_stmt_fetch")
            return
        if st.cursor is None:
            self.ctx.send(p.ERR(1421, "HY000", "The statement has no open cursor").serialize())
            return
        flight = InFlight(Wait.FETCH, sql=st.sql, allow=st.allow, binary=True, stmt=st)
        flight.plan = st.cursor.plan
        flight.count = st.cursor.count
        if st.cursor.count.exhausted:
            # The cursor gave the client its rows: the server's further rows are held back.
            flight.truncated = True
        self._forward(payload, flight)

    def _on_stmt_close(self, payload: bytes) -> None:
        st = self._stmt_of(payload)
        if st is None:
            return  # no answer either way
        self._end_cursor(st)
        del self.stmts[st.stmt_id]
        self._forward(payload)

    def _on_stmt_reset(self, payload: bytes) -> None:
        st = self._stmt_of(payload)
        if st is None:
            self._unknown_stmt("mysqld_stmt_reset")
            return
        self._end_cursor(st)
        self._forward(payload, InFlight(Wait.OK))

    def _on_init_db(self, payload: bytes) -> None:
        db = p.ComInitDb.parse(payload).schema
        started = self.ctx.clock()
        name = self._sql_text(db)
        if name is None:
            self._refuse("USE", Block("unparsable", "bad database name"), started=started)
            return
        sql = f"USE {quote_name(name)}"
        d, overhead = self.tracker.decide(sql)
        if isinstance(d, Block):
            self._refuse(sql, d, started=started, overhead=overhead)
            return
        sid = self.tracker.begin(sql, d)
        if sid is None:
            self._refuse(sql, AUDIT_FAILED, started=started)
            return
        self._forward(payload, InFlight(Wait.OK, sql=sql, allow=d, started=started, sid=sid))

    def _on_field_list(self, payload: bytes) -> None:
        fl = p.ComFieldList.parse(payload)
        started = self.ctx.clock()
        table = self._sql_text(fl.table)
        if table is None:
            self._refuse("COM_FIELD_LIST", Block("unparsable", "bad table name"), started=started)
            return
        # The column definitions of a table the person may read (what SHOW COLUMNS shows too):
        # decided as reading from the table, whichever of its columns they may see.
        sql = f"SELECT 1 FROM {quote_name(table)} LIMIT 0"
        d, overhead = self.tracker.decide(sql)
        if isinstance(d, Block):
            self._refuse(sql, d, started=started, overhead=overhead)
            return
        # Audited like the SELECT it is decided as: a client's auto-rehash lists every table.
        sid = self.tracker.begin(sql, d)
        if sid is None:
            self._refuse(sql, AUDIT_FAILED, started=started)
            return
        flight = InFlight(Wait.FIELDS, sql=sql, allow=d, started=started, overhead=overhead, sid=sid)
        self._forward(payload, flight)

    def _refuse(self, sql: str, block: Block, *, started: float, overhead: float = 0.0) -> None:
        """Answer in the server's place; the statement is recorded refused."""
        self.tracker.record(sql, block, started=started, overhead=overhead)
        self.ctx.send(errors.refused(block.message).serialize())

    def _end_cursor(self, st: Stmt) -> None:
        c = st.cursor
        if c is None:
            return
        st.cursor = None
        if c.sid is not None:
            self.tracker.record(
                st.sql,
                st.allow,
                started=c.started,
                rows=c.count.sent,
                masked=c.masked,
                truncated=c.count.truncated,
                id=c.sid,
            )

    def finish(self) -> None:
        """The session ends: what was still running or open gets its end record."""
        f, self.flight = self.flight, None
        if f is not None and f.sid is not None and f.allow is not None:
            self.tracker.record(
                f.sql,
                f.allow,
                started=f.started,
                rows=f.rows,
                masked=f.masked,
                truncated=f.truncated,
                overhead=f.overhead,
                id=f.sid,
                outcome="unknown",
            )
        for st in list(self.stmts.values()):
            self._end_cursor(st)

    # ------------------------------------------------------------------ upstream -> client

    def upstream_packets(self, packets: list[tuple[int, bytes]]) -> None:
        """What the server sent in one read. A result's column definitions and its rows are
        taken in runs, one client chunk per run; every other packet goes through
        `upstream_packet` one at a time."""
        out = self.out
        i, n = 0, len(packets)
        while i < n:
            if out.closed:
                return
            f = self.flight
            if f is not None and (f.wait is Wait.RESULTS or f.wait is Wait.FETCH):
                ph = f.phase
                if ph is Phase.COLUMNS and f.wait is Wait.RESULTS:
                    run = packets[i : i + f.ncols + 1 - len(f.held)]
                    f.held += [payload for _, payload in run]
                    i += len(run)
                    self.useq = (run[-1][0] + 1) & 0xFF
                    if len(f.held) > f.ncols:
                        f.phase = Phase.COLUMNS_EOF
                    continue
                if ph is Phase.ROWS or f.wait is Wait.FETCH:
                    start = i
                    while i < n:
                        payload = packets[i][1]
                        # An EOF (0xFE, under 9 bytes) or an ERR ends the rows: not a row.
                        if payload and (payload[0] == 0xFF or (payload[0] == 0xFE and len(payload) < 9)):
                            break
                        i += 1
                    if i > start:
                        self.useq = (packets[i - 1][0] + 1) & 0xFF
                        if f.refused is None or f.wait is Wait.FETCH:
                            self._rows(f, [payload for _, payload in packets[start:i]])
                        continue
            seq, payload = packets[i]
            self.upstream_packet(seq, payload)
            i += 1

    def upstream_packet(self, seq: int, payload: bytes) -> None:
        f = self.flight
        self.useq = (seq + 1) % 256
        if f is None:
            raise ProtocolViolation("a server packet with no command in flight")
        if f.wait is Wait.RESULTS:
            self._on_result_packet(f, payload)
        elif f.wait is Wait.PREPARE:
            self._on_prepare_packet(f, payload)
        elif f.wait is Wait.FETCH:
            self._on_fetch_packet(f, payload)
        elif f.wait is Wait.OK:
            self._on_ok_packet(f, payload)
        elif f.wait is Wait.EOF:
            if not p.is_err(payload):
                p.EOF.parse(payload)  # anything else is no answer to it: a violation
                if f.sql.isdigit():
                    self.ctx.multi_statements = int(f.sql) == p.MYSQL_OPTION_MULTI_STATEMENTS_ON
            self._pass_final(f, payload)
        elif f.wait is Wait.STRING:
            self.ctx.send(payload)
            self._done()
        elif f.wait is Wait.FIELDS:
            if p.is_err(payload):
                err = p.ERR.parse(payload)
                f.error = err.sqlstate
                self._send_error(f, err)
                self._finish(f, outcome="error")
            elif p.is_eof(payload):
                self.ctx.send(payload)
                self._finish(f)
            else:
                # Relayed as they came, so each must be the definition it claims to be: a row
                # sent in its place would reach the client unmasked.
                p.ColumnDefinition41.parse(payload)
                self.ctx.send(payload)
        elif f.wait is Wait.ROLE:
            if not p.is_ok(payload):
                self.ctx.close(
                    "SET ROLE failed after a reset", errors.upstream_failed("restoring the role failed")
                )
                return
            if f.pending is not None:
                self.ctx.send(f.pending.serialize(self.ctx.caps))
            self._done()

    def _check_status(self, status: int) -> bool:
        """Backstop behind the refusal of sql_mode changes: a restricted session whose server
        reports NO_BACKSLASH_ESCAPES reads strings otherwise than maskgate; it is closed before
        it can send another statement. False when closed."""
        if self.restricted and status & p.SERVER_STATUS_NO_BACKSLASH_ESCAPES:
            self.ctx.close(
                "NO_BACKSLASH_ESCAPES turned on",
                p.ERR(1231, "42000", "maskgate: the session's sql_mode changed how SQL text is read; closed"),
            )
            return False
        return True

    def _pass_final(self, f: InFlight, payload: bytes) -> None:
        if p.is_err(payload):
            self._send_error(f, p.ERR.parse(payload))
        else:
            self.ctx.send(payload)
        self._done()

    def _on_ok_packet(self, f: InFlight, payload: bytes) -> None:
        if p.is_err(payload):
            err = p.ERR.parse(payload)
            f.error = err.sqlstate
            self._send_error(f, err)
            self._finish(f, outcome="error")
            return
        if not p.is_ok(payload):
            raise ProtocolViolation("expected OK or ERR")
        if f.allow is not None:
            self._succeeded(f.allow)
        if f.sql == "reset":
            self._reset()
            if self.assume_role is not None:
                # A reset connection is the service account again: take the role back before
                # the client may send anything.
                f.wait, f.pending = Wait.ROLE, self._client_ok(f, p.OK.parse(payload, self.ctx.caps))
                self.useq = 0
                q = p.ComQuery(f"SET ROLE {quote_name(self.assume_role)}".encode())
                data, self.useq = p.frame(q.serialize(), 0)
                self.out.upstream(data)
                return
        self.ctx.send(self._client_ok(f, p.OK.parse(payload, self.ctx.caps)).serialize(self.ctx.caps))
        self._finish(f)

    def _succeeded(self, allow: Allow) -> None:
        """A statement completed: keep what it changed, the character set the server now reads
        statements in included (SET NAMES, SET CHARACTER SET, SET character_set_client)."""
        self.tracker.succeeded(allow)
        for part_allow in allow.parts():
            effect = part_allow.prepared
            if effect is not None:
                # PREPARE name FROM '…' kept its body's decision (this Allow) for EXECUTE.
                if effect.action == "prepare":
                    self.sql_prepared[effect.name] = (part_allow, self.gate.generation)
                elif effect.action == "deallocate":
                    self.sql_prepared.pop(effect.name, None)
                elif effect.action == "deallocate_all":
                    self.sql_prepared.clear()
            for change in part_allow.settings:
                if change.name not in ENCODING_SETTINGS:
                    continue
                # The server reads every later statement in the new charset; one maskgate has
                # no codec for ends the session rather than be read as another.
                encoding = charset_name_encoding(change.value[0]) if change.value else None
                if encoding is None:
                    self.ctx.close(
                        "client charset changed to one maskgate cannot read",
                        errors.unknown_charset_name(change.value[0] if change.value else "DEFAULT"),
                    )
                    return
                self.ctx.encoding = encoding

    def _reset(self) -> None:
        """COM_RESET_CONNECTION succeeded: the server dropped the session's prepared statements,
        variables and settings, and reads statements in the handshake's character set again."""
        for st in list(self.stmts.values()):
            self._end_cursor(st)
        self.stmts.clear()
        self.sql_prepared.clear()
        self.warning = None
        self.ctx.encoding = self.login_encoding

    # -- result sets

    def _on_result_packet(self, f: InFlight, payload: bytes) -> None:
        ph = f.phase
        if ph is Phase.ROWS:
            if p.is_eof(payload):
                self._end_result(f, p.EOF.parse(payload), payload)
            elif p.is_err(payload):
                self._result_error(f, p.ERR.parse(payload))
            elif f.refused is None:
                self._row(f, payload)
            return
        if ph is Phase.HEAD:
            first = payload[0] if payload else -1
            if first == p.ERR_HEADER:
                self._result_error(f, p.ERR.parse(payload))
            elif first == p.OK_HEADER:
                self._result_ok(f, p.OK.parse(payload, self.ctx.caps))
            elif first == p.LOCAL_INFILE_HEADER:
                # Never relayed: the server gets an empty file (it answers OK or ERR next) and
                # the client a refusal.
                data, self.useq = p.frame(b"", self.useq)
                self.out.upstream(data)
                f.refused = LOCAL_INFILE
            else:
                f.ncols = p.ColumnCount.parse(payload).count
                f.held = [payload]
                f.phase = Phase.COLUMNS if f.ncols else Phase.COLUMNS_EOF
            return
        if ph is Phase.COLUMNS:
            f.held.append(payload)
            if len(f.held) > f.ncols:
                f.phase = Phase.COLUMNS_EOF
            return
        if ph is Phase.COLUMNS_EOF:
            if not p.is_eof(payload):
                raise ProtocolViolation("expected EOF after the column definitions")
            self._start_rows(f, payload, p.EOF.parse(payload))

    def _part(self, f: InFlight) -> Allow:
        allow = f.allow
        assert allow is not None
        return part(allow, f.index) if not f.binary else allow

    def _start_rows(self, f: InFlight, eof_payload: bytes, eof: p.EOF) -> None:
        ctx = self.ctx
        f.phase = Phase.ROWS
        cursor = f.cursor and bool(eof.status & p.SERVER_STATUS_CURSOR_EXISTS) and f.stmt is not None
        heads = f.held[1:]
        if f.refused is None and self.gate.observing:
            self._observe_names(f, heads)
        if f.refused is None and self.restricted:
            allow = self._part(f)
            try:
                if _is_diagnostics(allow, len(heads)):
                    f.plan = withheld_messages(parse_columns(heads), f.binary)
                else:
                    observe = self._observed(allow, len(heads)) if self.gate.observing else None
                    f.plan = self.plans.plan(heads, allow, f.binary, self.gate.generation, observe)
            except Unmaskable as e:
                f.refused = Block("unmaskable", f"the result was refused: {e}")
        elif f.refused is None and self.gate.observing and f.allow is not None:
            # Unrestricted: nothing is masked, its classified columns are only noted. Columns
            # that do not match the decision are passed unobserved (never refused for it).
            allow = self._part(f)
            f.plan = self.plans.plan(
                heads, allow, f.binary, self.gate.generation, self._observed(allow, len(heads)), mask=False
            )
        else:
            self.plans.plan(heads, None, f.binary, self.gate.generation)  # checked all the same
            f.plan = None
        if f.refused is not None:
            f.held = []
            if cursor:
                self._finish_refused(f)  # no rows follow: they would come with COM_STMT_FETCH
            return
        f.held.append(eof_payload)
        ctx.send_all(f.held)
        f.held = []
        if cursor:
            # Rows come with COM_STMT_FETCH: the cursor keeps the plan and the row budget.
            assert f.stmt is not None
            f.stmt.cursor = Cursor(f.plan, f.count, f.sid, f.started)
            f.sid = None  # its end record is written when the cursor ends
            self._done()
            return
        if f.warn:
            self._warning_row(f)

    def _warning_row(self, f: InFlight) -> None:
        """maskgate's own warning, first among the rows of SHOW WARNINGS (Level, Code, Message)."""
        if self.warning is None or f.ncols != 3:
            return
        row = p.TextRow(
            (b"Warning", str(TRUNCATED_WARNING).encode(), self.warning.encode(self.ctx.encoding, "replace"))
        )
        self.ctx.send(row.serialize())
        self.warning = None

    def _rows(self, f: InFlight, payloads: list[bytes]) -> None:
        """`_row` for a run of rows: counted against the limit, masked, sent as one chunk."""
        count = f.count
        limit = count.limit
        if limit is not None and count.sent + len(payloads) > limit:
            for payload in payloads:
                self._row(f, payload)
            return
        count.sent += len(payloads)
        f.rows += len(payloads)
        plan = f.plan
        if plan is not None:
            apply = plan.apply
            masked = 0
            for j, payload in enumerate(payloads):
                new, changed = apply(payload)
                if new is not None:
                    payloads[j] = new
                    masked += changed
            f.masked += masked
            if plan.seen:
                self._disclose(plan, f.sid)
        self.ctx.send_all(payloads)

    def _observed(self, allow: Allow, ncols: int) -> tuple[tuple[str, str], ...]:
        """What each of a result's `ncols` columns discloses. Columns the decision does not
        describe are read for what they hold."""
        if len(allow.columns) != ncols:
            return ((SCAN, ""),) * ncols
        key = self.gate.customer_key()
        database = self.tracker.database
        # On MySQL a database is a schema: sources are database.table.column.
        rows = self.gate.row_keys()
        return tuple(observed(cm, key, database, database, rows) for cm in allow.columns)

    def _observe_names(self, f: InFlight, heads: list[bytes]) -> None:
        """Column names reach the client too (a prepared CREATE TEMPORARY TABLE can name a column
        after a phone): read for numbers while disclosures are observed."""
        principal = self.tracker.principal
        try:
            names = [c.name.decode("utf-8", "replace") for c in parse_columns(heads)]
        except (p.PacketError, ValueError, IndexError):
            return  # the masking path refuses what does not parse
        text = "\n".join(names)
        if principal is not None and may_hold_number(text):
            self.gate.disclose(principal, f.sid or "", [Disclosed(SCAN, "", text, True)])

    def _disclose(self, plan: RowPlan, sid: str | None) -> None:
        """Hand the values `plan`'s observing columns noted to the Gate, in one batch."""
        seen = plan.seen
        if seen:
            principal = self.tracker.principal
            if principal is not None:
                self.gate.disclose(principal, sid or "", tuple(seen))
            seen.clear()

    def _row(self, f: InFlight, payload: bytes) -> None:
        count = f.count
        if count.limit is not None and count.sent >= count.limit:
            count.truncated = f.truncated = True
            return
        count.sent += 1
        f.rows += 1
        plan = f.plan
        if plan is not None:
            new, changed = plan.apply(payload)
            if new is not None:
                payload = new
                f.masked += changed
        self.ctx.send(payload)

    def _end_result(self, f: InFlight, eof: p.EOF, payload: bytes) -> None:
        if f.plan is not None and f.plan.seen:
            self._disclose(f.plan, f.sid)  # rows sent one by one (`_row`): one batch at the end
        if not self._check_status(eof.status):
            return
        more = bool(eof.status & p.SERVER_MORE_RESULTS_EXISTS)
        if f.refused is None:
            if f.count.truncated:
                f.truncated = True
                self.warning = f"maskgate: result truncated to {f.count.limit} rows"
                payload = p.EOF(min(eof.warnings + 1, 0xFFFF), eof.status).serialize()
            self.ctx.send(payload)  # as it came (it parsed as an EOF) unless a warning is added
            if f.allow is not None and not f.binary:
                self._succeeded(self._part(f))
        if more:
            self._next_result(f)
        elif f.refused is not None:
            self._finish_refused(f)
        else:
            self._finish(f)

    def _next_result(self, f: InFlight) -> None:
        f.index += 1
        f.phase = Phase.HEAD
        f.ncols, f.held, f.plan = 0, [], None
        if f.allow is not None:
            f.count = RowCount(self._part(f).row_limit)

    def _result_ok(self, f: InFlight, ok: p.OK) -> None:
        if not self._check_status(ok.status):
            return
        if f.refused is None:
            if f.allow is not None:
                self._succeeded(self._part(f))
            self.ctx.send(self._client_ok(f, ok).serialize(self.ctx.caps))
        if ok.status & p.SERVER_MORE_RESULTS_EXISTS:
            self._next_result(f)
        elif f.refused is not None:
            self._finish_refused(f)
        else:
            self._finish(f)

    def _client_ok(self, f: InFlight, ok: p.OK) -> p.OK:
        """The server's OK as the client may see it. Its `info` is free text the server writes
        as it likes ("Rows matched: 1  Changed: 0": whether an UPDATE's new value equals the old
        one, an oracle on a masked column), so a restricted session gets none."""
        if not ok.info or not self.restricted:
            return ok
        return replace(ok, info=b"")

    def _result_error(self, f: InFlight, err: p.ERR) -> None:
        f.error = err.sqlstate
        self.tracker.settings.failed()
        if f.refused is not None:
            self._finish_refused(f)
            return
        self._send_error(f, err)
        self._finish(f, outcome="error")

    def _send_error(self, f: InFlight, err: p.ERR) -> None:
        """The server's error, its text withheld while the statement reads classified data
        (the server echoes offending values: `Truncated incorrect DOUBLE value: '138…'`)."""
        if self.restricted:
            in_flight = self._part(f) if f.allow is not None else None
            if self.tracker.withholds_errors(in_flight):
                err = p.ERR(err.code, err.sqlstate, withheld_message(err.sqlstate))
            else:
                masker = self.tracker.text_masker(in_flight)
                if masker is not None:
                    err = p.ERR(err.code, err.sqlstate, masker(err.message))
        self.ctx.send(err.serialize())
        if self.gate.observing and err.message and self.tracker.principal is not None:
            # SIGNAL … SET MESSAGE_TEXT = a number: what the client reads is read for numbers.
            self.gate.disclose(self.tracker.principal, f.sid or "", [Disclosed(SCAN, "", err.message, True)])

    def _finish_refused(self, f: InFlight) -> None:
        block = f.refused or Block("unmaskable", "the result was refused")
        self.ctx.send(errors.refused(block.message).serialize())
        self._finish(f, outcome="refused")

    def _finish(self, f: InFlight, outcome: str = "") -> None:
        if f.sid is not None and f.allow is not None:
            self.tracker.record(
                f.sql,
                f.allow,
                started=f.started,
                rows=f.rows,
                masked=f.masked,
                truncated=f.truncated,
                overhead=f.overhead,
                error=f.error,
                id=f.sid,
                outcome=outcome,
            )
            f.sid = None
        self._done()

    def _done(self) -> None:
        self.flight = None
        self._next_command()

    # -- prepare

    def _on_prepare_packet(self, f: InFlight, payload: bytes) -> None:
        if f.phase is Phase.HEAD:
            if p.is_err(payload):
                err = p.ERR.parse(payload)
                self._send_error(f, err)
                self._done()
                return
            ok = p.StmtPrepareOK.parse(payload)
            allow = f.allow
            assert allow is not None
            st = Stmt(ok.stmt_id, f.sql, allow, self.gate.generation, ok.num_params)
            self.stmts[ok.stmt_id] = st
            # The server parsed and planned it: it is recorded, whether or not it runs.
            sid = self.tracker.begin(f.sql, allow)
            if sid is not None:
                self.tracker.record(f.sql, allow, started=f.started, id=sid, outcome="prepared")
            self.ctx.send(payload)
            f.prepared = st
            f.ncols = ok.num_columns
            if ok.num_params:
                f.phase, f.counts_left = Phase.PARAMS, ok.num_params
            elif ok.num_columns:
                f.phase, f.counts_left = Phase.PREP_COLUMNS, ok.num_columns
            else:
                self._done()
            return
        # Definitions and EOFs are relayed as they came: each must be what it claims to be.
        if f.phase in (Phase.PARAMS, Phase.PREP_COLUMNS):
            p.ColumnDefinition41.parse(payload)
        else:
            p.EOF.parse(payload)
        self.ctx.send(payload)
        if f.phase in (Phase.PARAMS, Phase.PREP_COLUMNS):
            f.counts_left -= 1
            if f.counts_left == 0:
                f.phase = Phase.PARAMS_EOF if f.phase is Phase.PARAMS else Phase.PREP_COLUMNS_EOF
        elif f.phase is Phase.PARAMS_EOF:
            if f.ncols:
                f.phase, f.counts_left = Phase.PREP_COLUMNS, f.ncols
            else:
                self._done()
        elif f.phase is Phase.PREP_COLUMNS_EOF:
            self._done()

    # -- cursors

    def _on_fetch_packet(self, f: InFlight, payload: bytes) -> None:
        st = f.stmt
        if p.is_err(payload):
            self._send_error(f, p.ERR.parse(payload))
            if st is not None:
                self._end_cursor(st)
            self._done()
            return
        if p.is_eof(payload):
            eof = p.EOF.parse(payload)
            status, warnings = eof.status, eof.warnings
            if f.truncated or (st is not None and st.cursor is not None and st.cursor.count.truncated):
                # Held back: the client is told its cursor is at its end.
                status |= p.SERVER_STATUS_LAST_ROW_SENT
                warnings = min(warnings + 1, 0xFFFF)
                self.warning = f"maskgate: result truncated to {f.count.limit} rows"
            self.ctx.send(p.EOF(warnings, status).serialize())
            if st is not None and st.cursor is not None:
                st.cursor.masked += f.masked
                if status & p.SERVER_STATUS_LAST_ROW_SENT:
                    self._end_cursor(st)
            self._done()
            return
        self._row(f, payload)
