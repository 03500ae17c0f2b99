"""Canaries: planted customers whose numbers no one has a reason to read.

Owns the canary file (`canaries.json` beside the policy: the value keys of planted values, never
the values), the generation of format- and checksum-valid canary numbers from ranges the
operator controls, and the keeper that flags a disclosure of one (an audit event `canary` and
`maskgate_canary_reads_total{role}`). Must not touch a database (the CLI plants) or the event
loop (its keeper runs on the disclosure thread).

A canary is a planted customer, not only its numbers: the file also holds the key of each
row's key value (the policy's `customer_key`, else the table's primary key; `column` names the
column, which the row paths then note) and of the e-mail plant made up, so that reading the row
without its numbers trips it too.

The file is JSON, not YAML: a policy directory's *.yaml files are all read as policy.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masking.checksums import id18_check_char, luhn_check_digit

from .disclosure import KEY_CLASSES, Batch

FILE_NAME = "canaries.json"

# Reserved ranges (documented in docs/operations.md; the operator may choose others):
# - mobiles: 170 0000 xxxx, in China's 170 block of virtual operators, prefix configurable;
# - ID cards: region 999999 (a leading 9 is the foreigners' permanent-residence series, no
#   province) born 1800-01-01, the earliest date the validators accept: no living person;
# - bank cards: the BIN 629999 (inside the 62 UnionPay space that detectors treat as cards),
#   16 digits with their Luhn digit.
DEFAULT_MOBILE_PREFIX = "1700000"
DEFAULT_ID_PREFIX = "99999918000101"
DEFAULT_CARD_BIN = "629999"


def canary_file(policy: Path) -> Path:
    """Where a policy's canaries are kept: in its directory (a file's directory for a file)."""
    return (policy if policy.is_dir() else policy.parent) / FILE_NAME


def mobile(prefix: str = DEFAULT_MOBILE_PREFIX) -> str:
    if not prefix.isdigit() or len(prefix) > 10 or not prefix.startswith("1"):
        raise ValueError("a mobile prefix is 1 to 10 digits starting with 1")
    return prefix + "".join(secrets.choice("0123456789") for _ in range(11 - len(prefix)))


def id_card(prefix: str = DEFAULT_ID_PREFIX) -> str:
    """18 characters: region + birth date from `prefix` (14 digits), a sequence, the check."""
    body = prefix + "".join(secrets.choice("0123456789") for _ in range(17 - len(prefix)))
    return body + id18_check_char(body)


def bank_card(bin_: str = DEFAULT_CARD_BIN, length: int = 16) -> str:
    body = bin_ + "".join(secrets.choice("0123456789") for _ in range(length - 1 - len(bin_)))
    return body + luhn_check_digit(body)


GENERATORS: dict[str, Callable[[], str]] = {"mobile": mobile, "id_card": id_card, "bank_card": bank_card}


@dataclass(frozen=True)
class Canary:
    cls: str
    key: bytes  # value_key of the planted value
    table: str
    planted: str  # ISO date
    # The key column ("db.schema.table.column") of a canary of a KEY_CLASSES class: the row
    # paths note it. Empty for values of classified columns, and in files written before it.
    column: str = ""


def load(path: Path) -> dict[bytes, Canary]:
    """The canaries of a file; none when it does not exist. Raises ValueError when unreadable."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    out: dict[bytes, Canary] = {}
    for i, c in enumerate(raw.get("canaries", []) if isinstance(raw, dict) else ()):
        try:
            key = bytes.fromhex(c["key"])
            out[key] = Canary(
                str(c["class"]),
                key,
                str(c.get("table", "")),
                str(c.get("planted", "")),
                str(c.get("column", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: canary {i}: {exc}") from exc
    return out


def save(path: Path, canaries: list[Canary]) -> None:
    """Add `canaries` to the file (written whole to a temporary, then renamed into place)."""
    existing = list(load(path).values())
    known = {c.key for c in existing}
    rows: list[dict[str, Any]] = [
        {"class": c.cls, "key": c.key.hex(), "table": c.table, "planted": c.planted}
        | ({"column": c.column} if c.column else {})
        for c in existing + [c for c in canaries if c.key not in known]
    ]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"version": 1, "canaries": rows}, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def today() -> str:
    return dt.date.today().isoformat()


def key_columns(keys: dict[bytes, Canary]) -> tuple[str, ...]:
    """The key columns the row paths must note for these canaries to be matched (Gate.row_keys)."""
    return tuple(sorted({c.column for c in keys.values() if c.cls in KEY_CLASSES and c.column}))


class Canaries:
    """The keeper: a batch holding a canary key is one canary read of that statement.

    `keys` is replaced whole on reload (one reference swap, read on the disclosure thread)."""

    def __init__(self, keys: dict[bytes, Canary], on_read: Callable[[Batch, list[Canary]], None]) -> None:
        self.keys = keys
        self._on_read = on_read

    def keep(self, batch: Batch) -> None:
        keys = self.keys
        if not keys:
            return
        hits = []
        for cls, k, _clear in batch.keys:
            c = keys.get(k)
            # A key value is a short number that any other column may hold as well ("41"): it
            # is a canary only where it was noted as a key. Numbers and e-mails are canaries
            # wherever they turn up (a phone found in free text is the planted phone).
            if c is not None and (cls in KEY_CLASSES or c.cls not in KEY_CLASSES):
                hits.append(c)
        if hits:
            self._on_read(batch, hits)

    def reload(self, path: Path) -> None:
        try:
            self.keys = load(path)
        except ValueError as exc:  # keep the last good set: a broken file must not disarm them
            print(f"maskgate: canaries not reloaded: {exc}", file=sys.stderr)
