"""The Gate contract's records: a credential-neutral Principal."""

from __future__ import annotations

from proxy.services.gate import MYSQL_NATIVE_PASSWORD, SCRAM_SHA_256, Principal

SCRAM = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"
NATIVE = "*" + "A" * 40


def test_a_credential_is_found_by_kind() -> None:
    p = Principal("zhang", "vendor", credentials=((SCRAM_SHA_256, SCRAM), (MYSQL_NATIVE_PASSWORD, NATIVE)))
    assert p.credential(SCRAM_SHA_256) == SCRAM
    assert p.credential(MYSQL_NATIVE_PASSWORD) == NATIVE


def test_a_missing_kind_is_none_not_another_kinds_secret() -> None:
    p = Principal("zhang", "vendor", credentials=((SCRAM_SHA_256, SCRAM),))
    assert p.credential(MYSQL_NATIVE_PASSWORD) is None
    assert p.credential("http-token") is None
    assert Principal("li", "desk").credential(SCRAM_SHA_256) is None


def test_credentials_stay_out_of_repr_but_count_for_equality() -> None:
    p = Principal("zhang", "vendor", credentials=((SCRAM_SHA_256, SCRAM),))
    assert SCRAM not in repr(p) and "zhang" in repr(p)
    # Principals are dict keys (the guard's still-valid cache): hashable, compared whole.
    assert p == Principal("zhang", "vendor", credentials=((SCRAM_SHA_256, SCRAM),))
    assert p != Principal("zhang", "vendor")
    assert len({p, Principal("zhang", "vendor", credentials=((SCRAM_SHA_256, SCRAM),))}) == 1
