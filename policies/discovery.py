"""Finding personal data in columns the policy has not classified: sampled values -> findings.

Owns the judgement over a column's sampled values: which detector classes fire, how often, whether
the values *are* identifiers of one class or text that carries them (then `free_text`), and the
policy snippet a DBA can paste. Pure: the samples come from the caller (proxy/pg/sampling.py reads
them from a live database); nothing here opens a connection.

Policies are incomplete in real life: a `remark` column nobody classified holds phone numbers, and
`reverse(remark)` defeats every detector. A finding lets the proxy treat such a column as
classified for restricted roles until the policy names it (`Schema.discovered`; `pending` counts
the ones the policy has not named yet).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from masking.classes import FREE_TEXT
from masking.detectors import DETECTABLE, detect_in
from policies.model import Policy
from policies.names import ColumnName, TableName
from policies.schema import Schema
from policies.sql.dialects import dialect_facts

# A class is reported for a column when it fires in at least this share of the sampled values,
# and in at least MIN_HITS of them (one hit in a sample can be a coincidence of digits).
MIN_SHARE = 0.005
MIN_HITS = 2
# A column whose hits of one class cover the whole value this often *is* that class; otherwise
# the identifiers sit inside longer text and the column is free text.
WHOLE_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class Finding:
    """What the detectors found in one column's sample."""

    schema: str
    table: str
    column: str
    sampled: int  # non-NULL values looked at
    hits: tuple[tuple[str, int], ...]  # (class, values with at least one span of it), most first
    cls: str  # the class to treat the column as: one detector class, or free_text

    def share(self, cls: str) -> float:
        n = dict(self.hits).get(cls, 0)
        return n / self.sampled if self.sampled else 0.0

    def pattern(self, database: str | None, default_schema: str | None) -> str:
        """The column as a policy pattern: `db.table.column` in the default schema (PostgreSQL's
        `public`), else `schema.table.column`."""
        if database and (default_schema is None or self.schema == default_schema):
            return f"{database}.{self.table}.{self.column}"
        return f"{self.schema}.{self.table}.{self.column}"

    def comment(self) -> str:
        shares = ", ".join(f"{round(100 * n / self.sampled)}% {cls}" for cls, n in self.hits)
        return f"{shares} in {self.sampled:,} sampled rows"


def _whole(value: str, start: int, end: int) -> bool:
    return not value[:start].strip() and not value[end:].strip()


def judge_column(
    schema: str,
    table: str,
    column: str,
    values: Iterable[object],
    classes: frozenset[str] = DETECTABLE,
) -> Finding | None:
    """The finding for one column's sampled values, or None when no class fires often enough."""
    sampled = 0
    hits: dict[str, int] = {}
    whole: dict[str, int] = {}
    for raw in values:
        if raw is None:
            continue
        value = raw if isinstance(raw, str) else str(raw)
        sampled += 1
        if not any(ch.isdigit() or ch == "@" or ord(ch) > 0x2E7F for ch in value):
            continue  # nothing a detector could fire on: no digit, no e-mail, no CJK
        seen: set[str] = set()
        for span in detect_in(value, classes):
            if span.cls not in seen:
                seen.add(span.cls)
                hits[span.cls] = hits.get(span.cls, 0) + 1
            if _whole(value, span.start, span.end):
                whole[span.cls] = whole.get(span.cls, 0) + 1
    floor = max(MIN_HITS, MIN_SHARE * sampled)
    found = sorted(((c, n) for c, n in hits.items() if n >= floor), key=lambda cn: (-cn[1], cn[0]))
    if not found:
        return None
    if len(found) == 1 and whole.get(found[0][0], 0) >= WHOLE_SHARE * found[0][1]:
        cls = found[0][0]
    else:
        cls = FREE_TEXT
    return Finding(schema, table, column, sampled, tuple(found), cls)


def snippet(findings: Iterable[Finding], database: str | None, default_schema: str | None) -> str:
    """A `columns:` block a DBA can paste into a policy, one commented line per finding."""
    lines = ["columns:"]
    for f in sorted(findings, key=lambda f: (f.schema, f.table, f.column)):
        lines.append(f"  {f.pattern(database, default_schema)}: {f.cls}  # {f.comment()}")
    if len(lines) == 1:
        lines.append("  # no unclassified column holds personal data in the sample")
    return "\n".join(lines) + "\n"


def unclassified(
    findings: Iterable[Finding], classified: Mapping[tuple[str, str, str], str]
) -> list[Finding]:
    """Findings for columns the policy does not classify yet (keys: schema, table, column)."""
    return [f for f in findings if (f.schema, f.table, f.column) not in classified]


def pending(policy: Policy, schemas: Iterable[Schema]) -> dict[str, int]:
    """Per class, how many discovered columns of `schemas` the policy does not classify yet
    (those it names take the policy's class)."""
    counts: dict[str, int] = {}
    for schema in schemas:
        default_schema = dialect_facts(schema.dialect or "postgres").default_schema
        for (s, t, c), cls in schema.discovered.items():
            if policy.classify(ColumnName(TableName(schema.database, s, t), c), default_schema) is None:
                counts[cls] = counts.get(cls, 0) + 1
    return counts
