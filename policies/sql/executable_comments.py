"""MySQL's and MariaDB's executable comments, expanded the way the upstream server expands them.

Owns `ServerVersion` (which server the proxy talks to, read from its handshake greeting) and
`expand_executable_comments`, a pure function of the text and that version. sqlglot reads
`/*!50000 phone */` as a comment while the server runs `phone`; the analysis refuses any text
that still holds one (DialectFacts.executed_comments), so the proxy expands the text first and
judges what the server will run. The rules follow the servers' lexers (sql_lex.cc,
MY_LEX_LONG_COMMENT):

- MySQL: `/*!` then, when five digits follow, a version: older releases read five digits (a
  sixth is content), newer ones six when a sixth digit and then whitespace follow; a sixth digit
  is therefore refused. The content runs when the version is at most the
  server's; otherwise the comment is skipped. `/*M!` is an ordinary comment.
- MariaDB: `/*!` or `/*M!`, then five digits, or six when a sixth digit follows. The content
  runs when the version is at most the server's, except MySQL's 5.7+ versions (50700-99999)
  written as `/*!`, which MariaDB skips.
- Without a version (`/*!` followed by anything but five digits) the content always runs.

An expanded comment becomes its content between two spaces (the server's lexer ends a token at
a comment marker); a skipped one becomes one space. Forms whose reading would depend on details
this function does not model are refused with `ExecutableCommentError`, never guessed: another
comment inside one (the servers differ between versions, and `#` inside would swallow the end),
an unterminated one, a MySQL version whose five- and six-digit readings differ. Never decides,
never parses SQL beyond quotes and comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_GREETING = re.compile(r"(?:5\.5\.5-)?(\d+)\.(\d+)\.(\d+)")
# MySQL 5.7+ versions MariaDB does not run in a plain `/*!` comment (its lexer's rule).
_MARIADB_SKIPS = range(50700, 100000)


class ExecutableCommentError(ValueError):
    """The text holds an executable comment whose expansion is not certain: refuse it."""


@dataclass(frozen=True, slots=True)
class ServerVersion:
    """The upstream server: its flavor and its version id as its lexer compares them
    (major * 10000 + minor * 100 + patch: 8.0.36 is 80036, 10.11.19 is 101119)."""

    flavor: Literal["mysql", "mariadb"]
    version: int

    @classmethod
    def parse(cls, greeting_version: str) -> ServerVersion:
        """The version from a handshake greeting's server version string.

        >>> ServerVersion.parse("10.11.19-MariaDB-0+deb12u1")
        ServerVersion(flavor='mariadb', version=101119)
        >>> ServerVersion.parse("5.5.5-10.11.19-MariaDB-log")
        ServerVersion(flavor='mariadb', version=101119)
        >>> ServerVersion.parse("8.0.36")
        ServerVersion(flavor='mysql', version=80036)
        >>> ServerVersion.parse("8.4.0")
        ServerVersion(flavor='mysql', version=80400)
        """
        mariadb = "mariadb" in greeting_version.lower()
        # MariaDB 10+ prefixes "5.5.5-" for replication clients that expect a 5.x master.
        text = greeting_version if mariadb else greeting_version.removeprefix("5.5.5-")
        m = _GREETING.match(text)
        if m is None:
            raise ValueError(f"not a server version: {greeting_version!r}")
        major, minor, patch = (int(g) for g in m.groups())
        if minor > 99 or patch > 99:
            raise ValueError(f"not a server version: {greeting_version!r}")
        return cls("mariadb" if mariadb else "mysql", major * 10000 + minor * 100 + patch)


def expand_executable_comments(
    sql: str, server: ServerVersion, *, ansi_quotes: bool = False, backslash_escapes: bool = True
) -> str:
    """`sql` as the server will lex it: executable comments replaced by their content (or
    dropped), everything else as written. Quotes are honoured (`'/*!x*/'` is a string, not a
    comment) under the session's sql_mode: `ansi_quotes` makes "…" a name (no backslash escapes
    in it), `backslash_escapes=False` is NO_BACKSLASH_ESCAPES. Text without `/*` is returned as
    it is.

    >>> v = ServerVersion("mysql", 80036)
    >>> expand_executable_comments("SELECT /*!40001 SQL_NO_CACHE */ * FROM t", v)
    'SELECT   SQL_NO_CACHE   * FROM t'
    >>> expand_executable_comments("SELECT 1 /*!90000 , 2 */", v)
    'SELECT 1  '
    >>> expand_executable_comments("SELECT '/*!50000 x */'", v)
    "SELECT '/*!50000 x */'"
    """
    if "/*" not in sql:
        return sql
    out: list[str] = []
    i, n = 0, len(sql)
    start = 0  # the start of text not yet copied
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            i = _skip_quoted(sql, i, ansi_quotes, backslash_escapes)
            continue
        if _line_comment_at(sql, i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        if sql.startswith("/*", i):
            marker = _executable_marker(sql, i, server.flavor)
            if marker is None:
                end = sql.find("*/", i + 2)
                if end < 0:
                    return sql  # an unterminated plain comment: the server refuses the text
                if sql.startswith("/*M!", i):
                    # A plain comment to MySQL, which the analysis would take for MariaDB's
                    # executable form: dropped, as the server drops it.
                    out.append(sql[start:i])
                    out.append(" ")
                    start = end + 2
                i = end + 2
                continue
            out.append(sql[start:i])
            i, piece = _expand_one(
                sql, i + marker, server, sql.startswith("/*M!", i), ansi_quotes, backslash_escapes
            )
            out.append(piece)
            start = i
            continue
        i += 1
    out.append(sql[start:])
    return "".join(out)


def _executable_marker(sql: str, i: int, flavor: str) -> int | None:
    """The length of the executable comment marker at `i` (`/*!`, MariaDB's `/*M!`), or None."""
    if sql.startswith("/*!", i):
        return 3
    if flavor == "mariadb" and sql.startswith("/*M!", i):
        return 4
    return None


def _line_comment_at(sql: str, i: int) -> bool:
    """`#`, or `--` followed by whitespace, a control character or the end (MySQL's rule)."""
    if sql[i] == "#":
        return True
    if sql.startswith("--", i):
        after = sql[i + 2 : i + 3]
        return after == "" or after.isspace() or ord(after) < 32 or ord(after) == 127
    return False


def _skip_quoted(sql: str, i: int, ansi_quotes: bool, backslash_escapes: bool) -> int:
    """The index after the quoted string or name starting at `i` (the end of the text when it is
    unterminated: the server refuses that text itself). A doubled quote is one quote; a
    backslash escapes the next character in strings unless NO_BACKSLASH_ESCAPES."""
    quote = sql[i]
    escapes = backslash_escapes and (quote == "'" or (quote == '"' and not ansi_quotes))
    j, n = i + 1, len(sql)
    while j < n:
        c = sql[j]
        if c == "\\" and escapes:
            j += 2
            continue
        if c == quote:
            if sql[j + 1 : j + 2] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _expand_one(
    sql: str, i: int, server: ServerVersion, maria: bool, ansi_quotes: bool, backslash_escapes: bool
) -> tuple[int, str]:
    """Expand the comment whose marker ends at `i`: (index after it, its replacement text)."""
    digits = 0
    while i + digits < len(sql) and digits < 7 and sql[i + digits] in "0123456789":
        digits += 1
    run = True
    if digits >= 5:
        if server.flavor == "mysql":
            if digits >= 6:
                # Older releases read five digits (the sixth is content), newer ones six when
                # whitespace follows: which one this server does is not modelled.
                raise ExecutableCommentError(
                    "an executable comment with a six-digit version (/*!NNNNNN) is not understood"
                )
            length = 5
        else:
            length = 6 if digits >= 6 else 5
        version = int(sql[i : i + length])
        i += length
        run = version <= server.version
        if run and server.flavor == "mariadb" and not maria and version in _MARIADB_SKIPS:
            run = False
    if not run:
        # Skipped the way a plain comment is: up to the first `*/`, quotes or not (the servers
        # allow one plain comment inside, which is refused here rather than modelled).
        end = sql.find("*/", i)
        if end < 0:
            raise ExecutableCommentError("an unterminated executable comment")
        if "/*" in sql[i:end]:
            raise ExecutableCommentError("a comment inside an executable comment is not understood")
        return end + 2, " "
    end = _comment_end(sql, i, ansi_quotes, backslash_escapes)
    return end + 2, " " + sql[i:end] + " "


def _comment_end(sql: str, i: int, ansi_quotes: bool, backslash_escapes: bool) -> int:
    """The index of the `*/` that ends the executable comment whose content starts at `i`. The
    content is lexed as SQL (a `*/` inside a string in it does not end it); a comment inside it,
    or no end, is refused."""
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            i = _skip_quoted(sql, i, ansi_quotes, backslash_escapes)
            continue
        if sql.startswith("*/", i):
            return i
        if sql.startswith("/*", i) or _line_comment_at(sql, i):
            raise ExecutableCommentError("a comment inside an executable comment is not understood")
        i += 1
    raise ExecutableCommentError("an unterminated executable comment")
