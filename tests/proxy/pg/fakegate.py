"""A Gate test double for the protocol layer: canned decisions and simple, readable maskers.

Not a policy engine: playbook and integration tests of proxy/pg only need a Gate that answers
deterministically. Maskers follow the masking contract (type-preserving, `null` -> None, text
masker returns the same object when nothing is found).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from policies.decision import Allow, Block, Decision
from proxy.pg.auth import make_verifier
from proxy.services.gate import SCRAM_SHA_256, Disclosed, Principal, StatementRecord

MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
ID_CARD = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")


def mask_text(s: str) -> str:
    if len(s) <= 7:
        return "*" * len(s)
    return s[:3] + "*" * (len(s) - 7) + s[-4:]


def mask_int(v: int) -> int:
    digits = str(abs(v))
    if len(digits) <= 7:
        return 0
    out = int(digits[:3] + "0" * (len(digits) - 7) + digits[-4:])
    return -out if v < 0 else out


def value_masker(cls: str | None, action: str) -> Callable[[Any], Any]:
    def mask(v: Any) -> Any:
        if v is None or action == "null":
            return None
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            return mask_int(v)
        if isinstance(v, bytes):
            return b"*" * len(v)
        return mask_text(str(v))

    return mask


def text_masker(classes: frozenset[str]) -> Callable[[str], str]:
    pats = [p for c, p in (("mobile", MOBILE), ("id_card", ID_CARD)) if c in classes]

    def scan(s: str) -> str:
        out = s
        for p in pats:
            out = p.sub(lambda mo: mask_text(mo.group(0)), out)
        return s if out == s else out

    return scan


class FakeGate:
    masking_key = b"k" * 32
    generation = 0
    observing = False  # True: row paths note disclosures into `disclosed`
    customer_key_column: str | None = None
    row_key_columns: tuple[str, ...] = ()

    def __init__(self, decide: Callable[[Principal, str], Decision] | None = None) -> None:
        self.users: dict[str, Principal] = {}
        self.records: list[StatementRecord] = []  # end and refused records
        self.begun: list[StatementRecord] = []  # write-ahead records
        self.audit_ok = True  # False: an audit log that is required and cannot be written
        self.auth_failures = 0
        self.opened = 0
        self.closed = 0
        self.schema_changes: list[str] = []
        self.schema_upstreams: list[str] = []
        self.decisions: list[tuple[str, str, tuple[str, ...], str, str]] = []
        self.prepared: list[tuple[str, str]] = []
        self._decide = decide or (lambda p, sql: Allow(kind="select"))

    def add_user(
        self,
        name: str,
        password: str,
        *,
        role: str = "vendor",
        unrestricted: bool = False,
        database_role: str | None = None,
    ) -> Principal:
        p = Principal(
            name, role, unrestricted, ((SCRAM_SHA_256, make_verifier(password)),), database_role=database_role
        )
        self.users[name] = p
        return p

    def lookup(self, user: str) -> Principal | None:
        return self.users.get(user)

    def decide(
        self,
        principal: Principal,
        sql: str,
        *,
        dialect: str,
        search_path: tuple[str, ...],
        database: str,
        upstream: str = "postgres",
    ) -> Decision:
        self.decisions.append((principal.user, sql, search_path, database, upstream))
        return self._decide(principal, sql)

    def value_masker(self, cls: str | None, action: str) -> Callable[[Any], Any]:
        return value_masker(cls, action)

    def text_masker(self, classes: frozenset[str]) -> Callable[[str], str]:
        return text_masker(classes)

    def spend_lookups(self, principal: Principal, n: int) -> bool:
        return True

    def customer_key(self) -> str | None:
        return self.customer_key_column

    def row_keys(self) -> tuple[str, ...]:
        return self.row_key_columns

    def disclose(self, principal: Principal, statement_id: str, values: Any) -> None:
        self.disclosed.append((principal.user, statement_id, tuple(values)))

    @property
    def disclosed(self) -> list[tuple[str, str, tuple[Disclosed, ...]]]:
        d = self.__dict__.get("_disclosed")
        if d is None:
            d = self.__dict__["_disclosed"] = []
        return d  # type: ignore[no-any-return]

    def over_budget(self, principal: Principal, allow: Allow) -> Block | None:
        return None

    def begin(self, rec: StatementRecord) -> bool:
        if self.audit_ok:
            self.begun.append(rec)
        return self.audit_ok

    def record(self, rec: StatementRecord) -> None:
        self.records.append(rec)

    def connection_opened(self, protocol: str) -> None:
        self.opened += 1

    def connection_closed(self, protocol: str) -> None:
        self.closed += 1

    def auth_failed(self, protocol: str) -> None:
        self.auth_failures += 1

    def prepare(self, database: str, upstream: str = "postgres") -> None:
        self.prepared.append((upstream, database))

    def schema_changed(self, database: str, upstream: str = "postgres") -> None:
        self.schema_changes.append(database)
        self.schema_upstreams.append(upstream)


__all__ = ["Allow", "Block", "FakeGate"]
