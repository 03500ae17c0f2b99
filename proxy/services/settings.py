"""The session settings a protocol session follows, with the server's transaction semantics.

Owns the values of the settings that change how a session's statements are decided (search_path,
role) and PostgreSQL's rules for how statements change and undo them, after guc.c's stack of
saved values per transaction nesting level: `SET` made in a transaction or savepoint is undone
when it rolls back (or fails) and kept when it commits; `SET LOCAL` lasts until its transaction
ends; `RELEASE` merges a savepoint's changes into the level below; `ROLLBACK TO` undoes them and
keeps the savepoint; `RESET`, `RESET ALL` and `DISCARD ALL` set the session defaults. The effects
come from the decisions (`Allow.settings`, `Allow.transaction`), applied when the server reports
the statement complete; the server's own reports (ParameterStatus) win whenever it sends them.
Knows no wire format and no SQL: the protocol session says what completed, failed and ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, auto

from policies.decision import Allow, SettingChange

Value = tuple[str, ...] | None  # a setting's value as the decisions spell it (None: its default)

SEARCH_PATH = "search_path"
ROLE = "role"
RESET_ALL = "*"  # SettingChange name of RESET ALL
# Settings RESET ALL leaves alone (GUC_NO_RESET_ALL): the role and the session's user.
NOT_RESET_BY_ALL = frozenset({ROLE, "session_authorization"})


class _State(Enum):
    SET = auto()  # SET at this level: kept when the level commits
    LOCAL = auto()  # SET LOCAL only: the prior value comes back when the transaction ends
    SET_LOCAL = auto()  # SET, then SET LOCAL: the SET's value (`masked`) comes back at commit


@dataclass(slots=True)
class _Saved:
    """What a setting was when a level first changed it (guc.c's GucStack entry)."""

    state: _State
    prior: Value
    masked: Value = None


@dataclass(slots=True)
class _Level:
    """One transaction nesting level: the transaction itself (savepoint "") or a savepoint."""

    savepoint: str
    saved: dict[str, _Saved] = field(default_factory=dict)
    failed: bool = False  # an error ended it: its changes are undone, it awaits ROLLBACK (TO)


class SessionSettings:
    """The followed settings of one session. `value(name)` is what the server holds now (as far
    as the statements completed so far tell, and its reports say)."""

    __slots__ = ("_defaults", "_levels", "_reported", "_values")

    def __init__(self, defaults: Mapping[str, Value]) -> None:
        self._defaults: dict[str, Value] = dict(defaults)
        self._values: dict[str, Value] = dict(defaults)
        self._levels: list[_Level] = []
        # The server's latest report of each setting it reports: at every ReadyForQuery its value
        # is that (the server reports a setting whenever it differs from the last report).
        self._reported: dict[str, Value] = {}

    def value(self, name: str) -> Value:
        return self._values.get(name)

    @property
    def in_transaction(self) -> bool:
        return bool(self._levels)

    # ------------------------------------------------------------------ what the server says

    def started_with(self, name: str, value: Value) -> None:
        """The session's initial value of a setting (login parameters, the server's report at
        login): also what RESET brings back."""
        self._defaults[name] = value
        self._values[name] = value

    def reported(self, name: str, value: Value) -> None:
        """The server reported a setting's value (PostgreSQL 18 reports search_path after SET,
        set_config, SET SCHEMA, ROLLBACK …): it wins over what the statements suggested."""
        self._reported[name] = value
        self._values[name] = value

    def completed(self, allow: Allow) -> None:
        """A statement completed: apply what it changed, then what it did to the transaction."""
        for change in allow.settings:
            self._change(change)
        tx = allow.transaction
        if tx is None:
            return
        kind = tx.kind
        if kind == "begin":
            self._top()
        elif kind in ("commit", "prepare"):  # PREPARE TRANSACTION keeps settings as COMMIT does
            self._end_all(commit=not any(level.failed for level in self._levels))
        elif kind == "rollback":
            self._end_all(commit=False)
        elif kind == "savepoint":
            self._top()
            self._levels.append(_Level(tx.name))
        elif kind == "release":
            at = self._savepoint(tx.name)
            if at is not None:
                while len(self._levels) > at:
                    self._end_level(commit=True)
        elif kind == "rollback_to":
            at = self._savepoint(tx.name)
            if at is not None:
                while len(self._levels) > at:
                    self._end_level(commit=False)
                self._levels.append(_Level(tx.name))  # the savepoint stays, emptied

    def failed(self) -> None:
        """A statement failed: the server aborts the innermost (sub)transaction at once, undoing
        what was set in it; it stays open (failed) until ROLLBACK or ROLLBACK TO."""
        if not self._levels or self._levels[-1].failed:
            return
        level = self._levels[-1]
        for name, saved in level.saved.items():
            self._values[name] = saved.prior
        level.saved.clear()
        level.failed = True

    def ready(self, in_transaction: bool) -> None:
        """The server is ready for the next statement (ReadyForQuery), inside a transaction
        block or not. Outside one, the implicit transaction of the statements just run ended
        (committed, or already undone if one failed). Reported settings are what it reported."""
        if not in_transaction and self._levels:
            self._end_all(commit=not any(level.failed for level in self._levels))
        elif in_transaction:
            self._top()
        self._values.update(self._reported)

    # ------------------------------------------------------------------ guc.c, in small

    def _top(self) -> _Level:
        if not self._levels:
            self._levels.append(_Level(""))
        return self._levels[-1]

    def _savepoint(self, name: str) -> int | None:
        """The index of the innermost level of savepoint `name` (savepoint names may repeat)."""
        for i in range(len(self._levels) - 1, 0, -1):
            if self._levels[i].savepoint == name:
                return i
        return None

    def _change(self, change: SettingChange) -> None:
        if change.name == RESET_ALL:
            for name in self._names(self._defaults):
                self._set(name, self._defaults[name], local=False)
            return
        value = self._defaults.get(change.name) if change.value is None else change.value
        self._set(change.name, value, change.local)

    @staticmethod
    def _names(names: Iterable[str]) -> list[str]:
        return [n for n in names if n not in NOT_RESET_BY_ALL]

    def _set(self, name: str, value: Value, local: bool) -> None:
        level = self._top()  # outside a block the statement ran in an implicit transaction
        saved = level.saved.get(name)
        if saved is None:
            level.saved[name] = _Saved(_State.LOCAL if local else _State.SET, self._values.get(name))
        elif not local:
            saved.state = _State.SET  # SET overrides any earlier change at the same level
            saved.masked = None
        elif saved.state is _State.SET:
            saved.masked = self._values.get(name)  # SET, then SET LOCAL: remember the SET's value
            saved.state = _State.SET_LOCAL
        self._values[name] = value

    def _end_all(self, commit: bool) -> None:
        while self._levels:
            self._end_level(commit)

    def _end_level(self, commit: bool) -> None:
        """Commit or abort the innermost level (guc.c's AtEOXact_GUC for one nesting level)."""
        level = self._levels.pop()
        if level.failed:
            return  # undone when it failed
        values = self._values
        parent = self._levels[-1] if self._levels else None
        for name, saved in level.saved.items():
            if not commit:
                values[name] = saved.prior
            elif parent is None:  # the transaction commits
                if saved.state is _State.SET_LOCAL:
                    values[name] = saved.masked
                elif saved.state is _State.LOCAL:
                    values[name] = saved.prior
            else:  # a savepoint is released into its parent level
                below = parent.saved.get(name)
                if below is None:
                    parent.saved[name] = saved  # the parent never changed it: the entry moves down
                elif saved.state is _State.SET:
                    below.state = _State.SET
                    below.masked = None
                elif saved.state is _State.LOCAL:
                    if below.state is _State.SET:
                        below.masked = saved.prior  # SET LOCAL migrates down
                        below.state = _State.SET_LOCAL
                else:
                    below.masked = saved.masked
                    below.state = _State.SET_LOCAL
