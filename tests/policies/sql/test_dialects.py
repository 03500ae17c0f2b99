"""Dialect facts: one client-encoding and lexical-setting rule for every route a setting takes
(startup parameter, SET, set_config, ParameterStatus), and search_path values folded as the server
folds them."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import policies.sql.dialects as dialects_module
from policies import Engine, Schema, load_policy
from policies.sql.dialects import MYSQL, POSTGRES

EXAMPLES = Path(__file__).resolve().parents[3] / "policies" / "examples"
ENCODINGS = ["UTF8", "utf-8", "Unicode", "LATIN1", "SQL_ASCII", "GBK", "SJIS", "BIG5", "EUC_JP", "WIN1252"]


def test_doctests() -> None:
    assert doctest.testmod(dialects_module).failed == 0


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_policy(EXAMPLES / "demo.yaml"), Schema.load(EXAMPLES / "demo_schema.json"))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_one_client_encoding_rule(engine: Engine, encoding: str) -> None:
    """Startup, SET and set_config() agree: the utf8 family only, everything else fails closed
    (a restricted role could once start up with LATIN1 but not SET it)."""
    unsafe = POSTGRES.unsafe_setting("client_encoding", encoding)
    assert unsafe is (encoding.lower().replace("-", "") not in ("utf8", "unicode"))
    by_set = engine.decide("vendor", f"SET client_encoding = '{encoding}'")
    by_names = engine.decide("vendor", f"SET NAMES '{encoding}'")
    by_function = engine.decide("vendor", f"SELECT set_config('client_encoding', '{encoding}', false)")
    assert by_set.allowed is by_names.allowed is by_function.allowed is (not unsafe)
    assert engine.decide("dba", f"SET client_encoding = '{encoding}'").allowed


def test_latin1_at_startup_is_unsafe_for_restricted_roles() -> None:
    assert POSTGRES.unsafe_setting("client_encoding", "LATIN1")
    assert POSTGRES.unsafe_setting("client_encoding", "SQL_ASCII")
    assert not POSTGRES.unsafe_setting("client_encoding", "UTF8")


@pytest.mark.parametrize(
    ("name", "value", "unsafe"),
    [
        ("standard_conforming_strings", "on", False),
        ("Standard_Conforming_Strings", "off", True),
        ("standard_conforming_strings", "0", True),
        ("backslash_quote", "safe_encoding", False),
        ("backslash_quote", "on", True),
        ("application_name", "psql", False),
        ("search_path", "anything", False),
        ("client_encoding", "UTF8 LATIN1", True),
        ("client_encoding", "", True),
    ],
)
def test_postgres_lexical_settings(name: str, value: str, unsafe: bool) -> None:
    assert POSTGRES.unsafe_setting(name, value) is unsafe


@pytest.mark.parametrize(
    ("name", "value", "unsafe"),
    [
        ("sql_mode", "STRICT_TRANS_TABLES", False),
        ("@@SESSION.sql_mode", "STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES", True),
        ("sql_mode", "ansi", True),
        ("sql_mode", "@old_mode", True),
        ("character_set_client", "utf8mb4", False),
        ("character_set_client", "big5", True),
        ("names", "gbk", True),
        ("client_encoding", "LATIN1", False),  # not a MySQL setting
    ],
)
def test_mysql_lexical_settings(name: str, value: str, unsafe: bool) -> None:
    assert MYSQL.unsafe_setting(name, value) is unsafe


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ('"Sales", public', ("Sales", "public")),
        ("Sales", ("sales",)),
        ('"$user", public', ("$user", "public")),
        ('  a ,B,  "C""d"  ', ("a", "b", 'C"d')),
        ('"a, b"', ("a, b",)),
        ("", ()),
        ("ÄBC", ("Äbc",)),  # PostgreSQL folds ASCII letters only (UTF8 server encoding)
    ],
)
def test_search_path_from_setting(value: str, path: tuple[str, ...]) -> None:
    assert POSTGRES.search_path_from_setting(value) == path


def test_mysql_current_database_is_one_exact_name() -> None:
    assert MYSQL.search_path_from_setting("Crm") == ("Crm",)
    assert MYSQL.search_path_from_setting("") == ()
