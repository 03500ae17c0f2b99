"""`maskgate trace --config FILE NUMBER… [--file F] [--since 30d] [--json]`: who received a number.

Owns argument parsing, the join of ledger hits to audit records and the printing. The ledger
(proxy/services/ledger.py) answers which people's day filters hold the number's key; the audit
log, read here by statement id, says what those statements were. Prints no number back but
those the operator gave.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import masking
from proxy.config import ConfigError, load_config
from proxy.services import ledger
from proxy.services.audit import ANY_CLASS
from proxy.services.disclosure import SCAN_CLASSES, fold, found_in, value_key


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "trace", help="which people received a number in clear, when, and through which statements"
    )
    p.add_argument("--config", required=True, help="maskgate config (ledger_dir, masking_key, audit_log)")
    p.add_argument("numbers", nargs="*", metavar="NUMBER", help="numbers to trace (any spelling)")
    p.add_argument(
        "--file", help="a file of numbers, one a line: people are ranked by how many they received"
    )
    p.add_argument("--since", default="180d", help="how far back: Nd (days), default 180d")
    p.add_argument("--masked", action="store_true", help="include values received masked (ledger_masked)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_trace)


def _since(text: str, now: dt.datetime) -> str:
    m = re.fullmatch(r"(\d+)d", text.strip())
    if m is None:
        raise ValueError(f"--since {text!r}: expected a number of days such as 30d")
    return (now - dt.timedelta(days=int(m.group(1)))).strftime("%Y%m%d")


def audit_records(path: Path | None, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The audit records of each statement id merged into one, from the audit log and its
    rotated siblings (audit.jsonl.1, …)."""
    out: dict[str, dict[str, Any]] = {}
    if path is None or not ids:
        return out
    for rec in _records(path, '"id"'):
        sid = rec.get("id")
        if sid in ids and rec.get("event") != "canary":
            # A start record carries the statement (fingerprint, tables), its end what came of
            # it (rows, outcome): merged, the start's time kept.
            merged = out.setdefault(sid, {})
            ended = rec.get("event") == "end"
            for k, v in rec.items():
                if v is not None and (k not in merged or (ended and k != "ts")):
                    merged[k] = v
    return out


def _records(path: Path, marker: str) -> Iterator[dict[str, Any]]:
    """The records of the audit log and its rotated siblings (audit.jsonl.1, .2.gz, …) whose
    line holds `marker` (a cheap test before parsing); unreadable files and lines are skipped."""
    for f in sorted(path.parent.glob(path.name + "*")):
        try:
            lines = _lines(f)
        except (OSError, EOFError):  # unreadable, or a gzip cut short
            continue
        for line in lines:
            if marker in line:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    yield rec


def _lines(f: Path) -> list[str]:
    """The lines of an audit file, rotated ones gzipped by logrotate (`compress`) included."""
    raw = f.read_bytes()
    if f.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        import gzip

        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace").splitlines()


COMPUTED_LISTED = 20  # the last statements listed per person-day among computed reads (all are counted)


def computed_reads(path: Path | None, since: str) -> dict[str, dict[str, dict[str, list[dict[str, Any]]]]]:
    """Statements that returned a class in clear in a computed form (the audit's `computed`),
    since the day `since` (YYYYMMDD): class -> user -> day -> statements. The ledger matches
    such values only while they read as a number (reverse(phone) does, phone::bigint + 1 does
    not), so these are the people who may have had a number without the ledger knowing."""
    out: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    if path is None:
        return out
    first = f"{since[:4]}-{since[4:6]}-{since[6:]}"
    for rec in _records(path, '"computed": ["'):
        day = str(rec.get("ts", ""))[:10]
        if rec.get("event") != "start" or rec.get("decision") != "allow" or day < first:
            continue
        for cls in rec.get("computed") or ():
            listed = out.setdefault(cls, {}).setdefault(str(rec.get("user")), {}).setdefault(day, [])
            listed.append(_statement(str(rec.get("id")), rec))
    return out


def _classes_of(number: str) -> set[str]:
    """The classes a number given to trace may be (what the detectors read it as; any class a
    trace knows when they read nothing)."""
    return {c for c, _v in found_in(number)} or set(SCAN_CLASSES)


def _statement(sid: str, rec: dict[str, Any] | None) -> dict[str, Any]:
    if rec is None:
        return {"id": sid}
    return {
        "id": sid,
        "ts": rec.get("ts"),
        "fingerprint": rec.get("fingerprint"),
        "tables": rec.get("tables"),
        "database": rec.get("database"),
        "rows": rec.get("rows"),
        "sql": rec.get("sql"),
    }


def trace(
    numbers: Iterable[str], directory: Path, key: bytes, since: str, audit: Path | None, masked: bool
) -> dict[str, Any]:
    """The whole answer, as data: per number the people and days, with audit records."""
    contents = ledger.read(directory, since)
    found: list[dict[str, Any]] = []
    ids: set[str] = set()
    per_number: list[tuple[str, list[ledger.Hit]]] = []
    for n in numbers:
        hits = [h for h in ledger.lookup(contents, value_key(key, "", n)) if h.clear or masked]
        per_number.append((n, hits))
        for h in hits:
            ids.update(h.statements)
    records = audit_records(audit, ids)
    computed = computed_reads(audit, since)
    for n, hits in per_number:
        people: dict[str, list[dict[str, Any]]] = {}
        for h in hits:
            people.setdefault(h.user, []).append(
                {
                    "day": f"{h.day[:4]}-{h.day[4:6]}-{h.day[6:]}",
                    "clear": h.clear,
                    "false_positive_rate": h.fp_rate,
                    "statements": [_statement(s, records.get(s)) for s in h.statements],
                }
            )
        maybe: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for cls in [*sorted(_classes_of(n)), ANY_CLASS]:
            for user, days in computed.get(cls, {}).items():
                for day, stmts in days.items():
                    maybe.setdefault(user, {}).setdefault(day, []).extend(stmts)
        found.append(
            {
                "number": n,
                "people": [{"user": u, "days": d} for u, d in sorted(people.items())],
                # Not matched by value: people who received the number's class in a computed form.
                "computed": [
                    {
                        "user": u,
                        "days": [
                            {"day": day, "count": len(st), "statements": st[-COMPUTED_LISTED:]}
                            for day, st in sorted(days.items())
                        ],
                    }
                    for u, days in sorted(maybe.items())
                ],
            }
        )
    fp = [b.fp_rate() for b in ledger.filters(contents)]
    return {
        "since": f"{since[:4]}-{since[4:6]}-{since[6:]}",
        "numbers": found,
        "filters": len(fp),
        # The chance that one person-day answers yes for a number they never received.
        "max_false_positive_rate": max(fp, default=0.0),
        "corrupt_records": contents.corrupt,
        "torn_files": contents.torn,
    }


def ranking(result: dict[str, Any]) -> list[dict[str, Any]]:
    """People by how many of the numbers they received (then by name)."""
    counts: dict[str, set[str]] = {}
    for entry in result["numbers"]:
        for person in entry["people"]:
            counts.setdefault(person["user"], set()).add(entry["number"])
    return [
        {"user": u, "numbers": len(ns), "of": len(result["numbers"])}
        for u, ns in sorted(counts.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]


def cmd_trace(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if cfg.ledger_dir is None:
        print(f"{args.config}: no ledger_dir: nothing was recorded", file=sys.stderr)
        return 1
    numbers = list(args.numbers)
    if args.file:
        text = Path(args.file).read_text(encoding="utf-8")
        numbers += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    numbers = list(dict.fromkeys(n for n in numbers if fold(n)))
    if not numbers:
        print("maskgate trace: no numbers given", file=sys.stderr)
        return 2
    try:
        since = _since(args.since, dt.datetime.now(dt.UTC))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    key = cfg.masking_key or masking.DEFAULT_KEY  # the Guard's own choice
    result = trace(numbers, cfg.ledger_dir, key, since, cfg.audit_log, args.masked)
    if args.file:
        result["ranking"] = ranking(result)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        _print(result, bool(args.file))
    return 0


def _print(result: dict[str, Any], ranked: bool) -> None:
    w = sys.stdout.write
    if ranked:
        w(f"people ranked by how many of the {len(result['numbers'])} numbers they received:\n")
        for r in result["ranking"]:
            w(f"  {r['user']}: {r['numbers']} of {r['of']}\n")
    for entry in result["numbers"]:
        people = entry["people"]
        who = "person" if len(people) == 1 else "people"
        w(f"{entry['number']}: {len(people)} {who} since {result['since']}\n")
        for person in people:
            for d in person["days"]:
                how = "in clear" if d["clear"] else "masked"
                fp = d["false_positive_rate"]
                w(f"  {person['user']}  {d['day']}  {how}  (false-positive rate {fp:.1e})\n")
                for s in d["statements"]:
                    tables = ",".join(s.get("tables") or [])
                    when, fpr = s.get("ts") or "", s.get("fingerprint") or "?"
                    w(f"    statement {s['id']}  {when}  {tables}  fingerprint {fpr}\n")
        if entry["computed"]:
            w("  not matched by value: received this class in clear in a computed form (review these):\n")
            for person in entry["computed"]:
                for d in person["days"]:
                    w(f"  {person['user']}  {d['day']}  {d['count']} statements\n")
                    for s in d["statements"]:
                        w(f"    statement {s['id']}  {s.get('ts') or ''}  {s.get('sql') or ''}\n")
    w(
        f"# {result['filters']} person-day filters read; a person-day answers falsely with probability "
        f"at most {result['max_false_positive_rate']:.1e}\n"
    )
    if result["corrupt_records"] or result["torn_files"]:
        w(f"# skipped {result['corrupt_records']} corrupt records, {result['torn_files']} torn files\n")
