import pytest

from proxy.pg.session import unsafe_session_setting


@pytest.mark.parametrize(
    ("name", "value", "unsafe"),
    [
        ("client_encoding", "UTF8", False),
        ("client_encoding", "utf-8", False),
        ("client_encoding", "SQL_ASCII", False),
        ("client_encoding", "LATIN1", False),
        ("client_encoding", "GBK", True),
        ("client_encoding", "gb18030", True),
        ("client_encoding", "Shift_JIS", True),
        ("client_encoding", "win-936", True),
        ("client_encoding", "BIG5", True),
        ("standard_conforming_strings", "on", False),
        ("standard_conforming_strings", "off", True),
        ("STANDARD_CONFORMING_STRINGS", "false", True),
        ("application_name", "GBK", False),
    ],
)
def test_settings_that_change_how_sql_is_read(name: str, value: str, unsafe: bool) -> None:
    assert unsafe_session_setting(name, value) is unsafe
