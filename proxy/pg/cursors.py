"""The SQL cursors of one PostgreSQL session: which the server holds, and the decision of each.

Owns the session's cursor map, keyed by the name the server holds (the decisions fold it), each
with the decision its DECLARE was made with (its columns' masks, classes and row limit), the
statement string it was declared in (for a re-decision after a policy reload) and the rows FETCH
delivered from it so far, against that row limit. Follows PostgreSQL's rules for when a cursor
goes: CLOSE name, CLOSE ALL and DISCARD ALL; the end of its transaction (a simple Query's implicit
one too); for WITH HOLD, a rollback of the transaction that declared it, but not its commit.
Effects apply when the server confirms a statement (CommandComplete), never on its error.

Fail-closed by construction: a cursor the map does not hold cannot be fetched from by a
restricted session, so the map may forget a cursor the server still has (an error in its
transaction that a ROLLBACK TO SAVEPOINT undid), but never keeps one under a name the server
gave to another: every DECLARE the server confirms replaces the entry of its name, and protocol
portals, which share the cursors' namespace, drop it when bound or closed (the relay's part).

Knows no SQL and no socket: the relay tells it what completed (decision and command tag),
failed and became ready.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from policies.decision import Allow, CursorEffect
from proxy.services.statement import RowCount, part

# Command tags of statements that end a transaction: whatever the client wrote, the server says
# what happened (COMMIT of a failed transaction answers ROLLBACK).
_COMMIT = frozenset({"COMMIT"})
_ROLLBACK = frozenset({"ROLLBACK", "PREPARE TRANSACTION"})  # PREPARE TRANSACTION: no hold cursor


@dataclass(slots=True, eq=False)
class SqlCursor:
    name: str
    whole: Allow  # the decision of the statement string the DECLARE was in
    index: int  # which statement of that string declared it
    sql: str  # that string, as the client sent it (re-decided after a policy reload)
    generation: int  # the gate's policy generation `whole` was made under
    hold: bool
    rows: RowCount  # rows delivered through FETCH, against the cursor's row limit
    committed: bool = False  # WITH HOLD and its transaction committed: it outlives transactions
    doomed: bool = False  # an error since it was declared: its transaction will roll back

    @property
    def allow(self) -> Allow:
        """The DECLARE's own decision: the cursor's columns, classes and row limit."""
        return part(self.whole, self.index)

    def redecided(self, whole: Allow, generation: int) -> None:
        """The policy changed and the string was decided again with the same SQL upstream: its
        masks and row limit apply from now on, the rows delivered so far still count."""
        self.whole, self.generation = whole, generation
        self.rows.limit = self.allow.row_limit


def _effects(allow: Allow) -> list[CursorEffect]:
    return [p.cursor for p in allow.parts() if p.cursor is not None]


class Cursors:
    """The cursors of one session, as the statements the server confirmed leave them."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open: dict[str, SqlCursor] = {}

    def get(self, name: str) -> SqlCursor | None:
        return self.open.get(name)

    def completed(
        self, whole: Allow, index: int, tag: str, *, sql: str, generation: int
    ) -> CursorEffect | None:
        """Statement `index` of the string `sql` (decided as `whole`) ran and the server answered
        `tag`: keep what it did to the cursors. Returns its cursor effect, for the portals."""
        allow = part(whole, index)
        effect = allow.cursor
        if effect is not None and effect.name is not None and effect.action == "declare":
            self.open[effect.name] = SqlCursor(
                effect.name, whole, index, sql, generation, effect.hold, RowCount(allow.row_limit)
            )
        elif effect is not None and effect.action == "close":
            if effect.name is None:
                self.open.clear()
            else:
                self.open.pop(effect.name, None)
        if allow.transaction is not None and allow.transaction.kind == "rollback_to":
            # Tagged ROLLBACK too; it closes only the cursors declared since the savepoint, which
            # the server then no longer has: their entries are never fetched from.
            return effect
        if tag in _COMMIT:
            self._end(committed=True)
        elif tag in _ROLLBACK:
            self._end(committed=False)
        return effect

    def drop(self, name: str) -> None:
        """A protocol portal of that name was bound or closed: no cursor has it now."""
        self.open.pop(name, None)

    def failed(self) -> None:
        """An error: the transaction of every cursor not committed yet will roll back (unless a
        ROLLBACK TO SAVEPOINT saves it; forgetting such a cursor only refuses its FETCH)."""
        for c in self.open.values():
            if not c.committed:
                c.doomed = True

    def ready(self, status: bytes) -> None:
        """ReadyForQuery: at `I` no transaction is open, so the one that ran (a simple Query's or
        an extended batch's implicit one, or a block) ended: cursors without HOLD went with it,
        WITH HOLD ones stay if it committed (no error since they were declared)."""
        if status == b"I" and self.open:
            self._end(committed=True)

    def _end(self, *, committed: bool) -> None:
        for name, c in list(self.open.items()):
            if c.committed:
                continue
            if c.hold and committed and not c.doomed:
                c.committed = True
            else:
                del self.open[name]

    def in_flight(self, allow: Allow | None) -> Allow | None:
        """The decision an error or notice of the statement in flight is judged by: a FETCH or
        MOVE runs its cursor's query, and a commit (or an extended batch's implicit one, where no
        statement is in flight) materialises WITH HOLD cursors: their classes count too."""
        extra: list[Allow] = []
        effects = _effects(allow) if allow is not None else []
        for e in effects:
            if e.action in ("fetch", "move") and e.name is not None and (c := self.open.get(e.name)):
                extra.append(c.allow)
        committing = allow is None or any(
            p.transaction is not None and p.transaction.kind in ("commit", "prepare") for p in allow.parts()
        )
        if committing:
            extra += [c.allow for c in self.open.values() if c.hold and not c.committed]
        if not extra:
            return allow
        base = allow if allow is not None else Allow(kind="cursor")
        classes = set(base.classes).union(*(a.classes for a in extra))
        detect = base.detect.union(*(a.detect for a in extra))
        return replace(base, classes=tuple(sorted(classes)), detect=detect)

    def unknown_fetch(self, allow: Allow) -> str | None:
        """The name of a cursor a FETCH of `allow` reads that is neither open nor declared by an
        earlier statement of the same string, if any."""
        declared: set[str] = set()
        for e in _effects(allow):
            if e.name is None:
                continue
            if e.action == "declare":
                declared.add(e.name)
            elif e.action == "fetch" and e.name not in declared and e.name not in self.open:
                return e.name
        return None
