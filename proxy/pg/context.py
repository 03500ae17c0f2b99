"""What the login and relay layers of one PostgreSQL session share, and the dialect facts they read.

Owns the session's configuration, its outbox, its statement tracker and the server settings both
layers follow (client encoding, search path, transaction status), and the two PostgreSQL facts
the session needs about settings: which ones make the server read SQL text differently from
maskgate's parser, and how the server spells its search_path. Owns no state machine and no
message handling: `login.py` and `relay.py` do, `session.py` composes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from proxy.core.commands import Outbox
from proxy.pg import errors
from proxy.pg import messages as m
from proxy.pg.framing import DEFAULT_MAX_MESSAGE
from proxy.pg.types import codec
from proxy.services.gate import Gate
from proxy.services.statement import StatementTracker

log = logging.getLogger("maskgate.pg")


@dataclass(frozen=True, slots=True)
class SessionConfig:
    upstream_user: str
    upstream_password: str
    default_database: str
    tls_available: bool = False
    max_message: int = DEFAULT_MAX_MESSAGE
    client_addr: str = ""
    upstream: str = "postgres"  # the configuration's name for the upstream server


# ---------------------------------------------------------------------------------------------
# Dialect facts (one function each, so the shared DialectFacts can take their place)
# ---------------------------------------------------------------------------------------------

# Client encodings whose multibyte characters may end in an ASCII byte such as 0x5C (backslash)
# or 0x27 (quote): the server and maskgate would then split the same bytes into different tokens,
# which lets a quote hidden inside a character smuggle SQL past the analysis. PostgreSQL accepts
# them only as client encodings; restricted roles may not use them (names folded as PostgreSQL does).
UNSAFE_CLIENT_ENCODINGS = frozenset(
    {"SJIS", "SHIFTJIS", "MSKANJI", "WIN932", "WINDOWS932", "SHIFTJIS2004", "BIG5", "WIN950", "WINDOWS950"}
    | {"GBK", "WIN936", "WINDOWS936", "CP936", "UHC", "WIN949", "WINDOWS949", "GB18030", "JOHAB"}
)


def unsafe_session_setting(name: str, value: str) -> bool:
    """A setting that changes how the server reads SQL text differently from maskgate's parser."""
    name = name.lower()
    if name == "client_encoding":
        return "".join(ch for ch in value.upper() if ch.isalnum()) in UNSAFE_CLIENT_ENCODINGS
    if name == "standard_conforming_strings":
        return value.strip().lower() not in ("on", "true", "yes", "1")
    return False


def search_path_from_setting(value: str) -> tuple[str, ...]:
    """The schemas of a search_path as the server reports it (ParameterStatus, SHOW)."""
    return tuple(p.strip().strip('"') for p in value.split(",") if p.strip())


# ---------------------------------------------------------------------------------------------
# The shared context
# ---------------------------------------------------------------------------------------------


class Context:
    """One session's shared state; each layer holds the same instance."""

    __slots__ = ("cfg", "encoding", "gate", "out", "tracker", "txn")

    def __init__(
        self, gate: Gate, cfg: SessionConfig, *, session_id: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.gate = gate
        self.cfg = cfg
        self.out = Outbox()
        self.tracker = StatementTracker(
            gate,
            protocol="postgres",
            dialect="postgres",
            upstream=cfg.upstream,
            database=cfg.default_database,
            search_path=("$user", "public"),
            session_id=session_id,
            client=cfg.client_addr,
            clock=clock,
        )
        self.encoding = "utf-8"  # the Python codec of the client_encoding: row values travel in it
        self.txn = b"I"  # the transaction status of the latest ReadyForQuery

    @property
    def session_id(self) -> str:
        return self.tracker.session_id

    @property
    def clock(self) -> Callable[[], float]:
        return self.tracker.clock

    def close(self, reason: str, err: m.ErrorResponse | None = None) -> None:
        """Close the session, telling the client `err` last."""
        self.out.close(reason, err.serialize() if err is not None else b"")

    def upstream_failed(self, reason: str) -> None:
        log.warning("session %s: upstream connection failed: %s", self.session_id, reason)
        self.close(f"upstream failed: {reason}", errors.upstream_unavailable())

    def track_parameter(self, ps: m.ParameterStatus) -> None:
        """Follow a setting the server reports (at login and whenever it changes)."""
        # Backstop behind the engine's refusal of such SETs: whatever route changed the setting,
        # a restricted session that reaches it is closed before it can send another statement.
        if self.tracker.restricted and unsafe_session_setting(ps.name, ps.value):
            self.close(
                f"unsafe session setting {ps.name}={ps.value}",
                errors.error(
                    "42501",
                    f"session setting {ps.name} = {ps.value} is not allowed for this role",
                    severity="FATAL",
                ),
            )
            return
        if ps.name == "client_encoding":
            self.encoding = codec(ps.value)
        elif ps.name == "search_path":
            self.tracker.search_path = search_path_from_setting(ps.value)
