"""Client-facing MySQL errors: named constructors returning `ERR` with the right code and SQLSTATE.

Owns what a MySQL client is told when maskgate answers in the server's place. Messages are
short and never carry a Python exception text or an upstream's words; details go to the log.
Codes are the server's own where one fits, so drivers classify them as they would the server's
(08S01 = connection-level: the driver drops the connection; 42000 = a statement refused).
"""

from __future__ import annotations

from proxy.mysql.packets import ERR
from proxy.services.statement import withheld_message

# Server error numbers (mysqld_error.h); MariaDB shares them.
ER_DBACCESS_DENIED = 1044
ER_ACCESS_DENIED = 1045
ER_UNKNOWN_COM = 1047
ER_SERVER_SHUTDOWN = 1053
ER_UNKNOWN_ERROR = 1105
ER_TABLEACCESS_DENIED = 1142
ER_UNKNOWN_CHARACTER_SET = 1115
ER_HANDSHAKE_ERROR = 1043
ER_NET_PACKET_TOO_LARGE = 1153
ER_NET_READ_INTERRUPTED = 1159
ER_NET_READ_ERROR = 1158
ER_CLIENT_INTERACTION_TIMEOUT = 4031  # MySQL 8.0.24+: the client was idle too long

PREFIX = "maskgate: "


def refused(reason_message: str) -> ERR:
    """A refused statement. 1142 (ER_TABLEACCESS_DENIED, 42000) is what a server answers for a
    missing privilege: drivers report it as a statement error and keep the connection.
    `reason_message` is the decision's client-safe text, without the prefix."""
    return ERR(ER_TABLEACCESS_DENIED, "42000", PREFIX + reason_message)


def access_denied(user: str, host: str = "", using_password: bool = True) -> ERR:
    """The server's own words, for unknown users and wrong passwords alike: tools match on it
    and a different text would tell an attacker which of the two it was."""
    yes = "YES" if using_password else "NO"
    return ERR(ER_ACCESS_DENIED, "28000", f"Access denied for user '{user}'@'{host}' (using password: {yes})")


def protocol_violation(detail: str = "") -> ERR:
    message = PREFIX + "protocol violation"
    return ERR(ER_NET_READ_ERROR, "08S01", f"{message}: {detail}" if detail else message)


def unknown_charset(charset_id: int) -> ERR:
    """A client charset (collation id) maskgate has no codec for: its statements cannot be read
    as the server will read them. 1115 ER_UNKNOWN_CHARACTER_SET, the server's own code."""
    return ERR(
        ER_UNKNOWN_CHARACTER_SET,
        "42000",
        f"{PREFIX}unknown character set (collation {charset_id}); use utf8mb4",
    )


def unknown_charset_name(name: str) -> ERR:
    """The connection switched to a charset maskgate has no codec for (SET NAMES by a role
    allowed to): its statements can no longer be read as the server reads them."""
    return ERR(ER_UNKNOWN_CHARACTER_SET, "42000", f"{PREFIX}unknown character set '{name[:32]}'; use utf8mb4")


def packet_too_large() -> ERR:
    return ERR(
        ER_NET_PACKET_TOO_LARGE, "08S01", PREFIX + "got a packet bigger than 'max_allowed_packet' bytes"
    )


def unknown_command(cmd: int) -> ERR:
    """A command the proxy does not relay; the server's text, which names no command (the
    number goes to the log)."""
    del cmd  # the client knows what it sent; the text stays the server's
    return ERR(ER_UNKNOWN_COM, "08S01", "Unknown command")


def internal_error() -> ERR:
    return ERR(ER_UNKNOWN_ERROR, "HY000", PREFIX + "internal error")


def upstream_failed(reason: str) -> ERR:
    """The database behind the proxy could not be reached or dropped the connection. `reason`
    is the proxy's own account of it, never the upstream's text."""
    return ERR(ER_UNKNOWN_ERROR, "08S01", PREFIX + reason)


def database_not_ready(db: str) -> ERR:
    """The proxy cannot decide statements for `db` yet (its schema is not loaded): a transient,
    connection-level refusal that pools and health checks retry."""
    return ERR(
        ER_UNKNOWN_ERROR,
        "08S01",
        f'{PREFIX}the schema of database "{db}" is not loaded yet; try again shortly',
    )


def shutting_down() -> ERR:
    return ERR(ER_SERVER_SHUTDOWN, "08S01", "Server shutdown in progress")


def idle_timeout() -> ERR:
    return ERR(ER_CLIENT_INTERACTION_TIMEOUT, "HY000", PREFIX + "the client was disconnected for inactivity")


def auth_timeout() -> ERR:
    # 1152 ER_ABORTING_CONNECTION: what the server reports when a login does not complete in time.
    return ERR(1152, "08S01", PREFIX + "authentication timed out")


def withheld(code: int, sqlstate: str) -> ERR:
    """The server's error with its code and SQLSTATE kept (drivers and applications branch on
    them) and its message withheld: it may echo classified values."""
    message = withheld_message(sqlstate).replace("(SQLSTATE", f"(MySQL error {code}, SQLSTATE", 1)
    return ERR(code, sqlstate, message)
