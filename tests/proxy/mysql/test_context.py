"""The capabilities maskgate speaks on both sides of a MySQL session."""

from __future__ import annotations

from policies.sql.dialects import MYSQL
from proxy.mysql import packets as p
from proxy.mysql.context import SUPPORTED_CAPABILITIES, ServerFacts


def test_ignore_space_is_neither_offered_nor_relayed() -> None:
    """A client's CLIENT_IGNORE_SPACE becomes the session's sql_mode IGNORE_SPACE on the server,
    a mode that reads SQL otherwise than maskgate's parser (a restricted session with it is
    refused at login): the proxy never offers the flag, and its upstream handshake only carries
    supported flags."""
    assert MYSQL.unsafe_setting("sql_mode", "IGNORE_SPACE,STRICT_TRANS_TABLES")
    assert not SUPPORTED_CAPABILITIES & p.CLIENT_IGNORE_SPACE
    assert not ServerFacts().capabilities & p.CLIENT_IGNORE_SPACE
