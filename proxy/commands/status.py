"""`maskgate status --config FILE`: what a running maskgate says about itself, for an operator.

Owns only asking the metrics listener named in the config for /status and printing the answer
(a table, or the JSON with --json). It never reads the policy or contacts an upstream itself:
the running process probes its upstreams (proxy/operator.py), so the answer is what it sees.
Exit code: 0 ready, 1 not ready or not answering, 2 config unusable.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

# A listener on every address is asked on the loopback one.
_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "status", help="ask a running maskgate for its listeners, policy, sessions and upstreams"
    )
    p.add_argument(
        "--config", required=True, help="the maskgate.yaml the proxy runs with (its `metrics` address)"
    )
    p.add_argument("--json", action="store_true", help="print /status as JSON")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
    p.set_defaults(func=run_status)


def status_url(host: str, port: int) -> str:
    host = _ANY.get(host, host)
    return f"http://[{host}]:{port}/status" if ":" in host else f"http://{host}:{port}/status"


def fetch(url: str, timeout: float) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8"))  # type: ignore[no-any-return]


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def render(doc: dict[str, Any]) -> str:
    """The human table of a /status document."""
    out = [f"maskgate: {'ready' if doc.get('ready') else 'NOT READY'}"]
    for why in doc.get("not_ready") or []:
        out.append(f"  - {why}")
    workers = doc.get("workers")
    if workers:
        out.append(f"workers: {workers.get('ready')} of {workers.get('configured')} ready")
    revisions = (doc.get("policy") or {}).get("revisions") or []
    out.append(f"policy revision: {', '.join(revisions) if revisions else '(none reported)'}")
    out.append("")
    conns = doc.get("connections") or {}
    rows = [["LISTENER", "ADDRESS", "CONNECTIONS"]]
    for proto, addr in sorted((doc.get("listeners") or {}).items()):
        rows.append([proto, str(addr), str(conns.get(proto, 0))])
    rows.append(["metrics", str(doc.get("metrics", "")), ""])
    out += _table(rows, "")
    out.append("")
    sessions = doc.get("sessions") or []
    if sessions:
        rows = [["PROTOCOL", "ROLE", "SESSIONS"]]
        rows += [[s["protocol"], s["role"], str(s["sessions"])] for s in sessions]
        out += _table(rows, "")
    else:
        out.append("no authenticated sessions")
    out.append("")
    rows = [["UPSTREAM", "ADDRESS", "STATE"]]
    for name, h in sorted((doc.get("upstreams") or {}).items()):
        state = (
            f"reachable ({h.get('latency_ms')} ms)"
            if h.get("reachable")
            else f"UNREACHABLE: {h.get('error')}"
        )
        rows.append([name, str(h.get("address")), state])
    out += _table(rows, "")
    return "\n".join(out)


def _environment(path: str) -> dict[str, str]:
    """The environment, with every `${VAR}` the config needs and the shell lacks set to a stand-in:
    status needs only the metrics address, and an operator asking for it should not need the
    upstream password in their shell. Variables with a `:-default` keep their default."""
    import os
    from pathlib import Path

    from proxy.config import _VAR

    env = dict(os.environ)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return env  # load_config reports it
    for m in _VAR.finditer(text):
        if m.group(2) is None:
            env.setdefault(m.group(1), "unset")  # non-empty: password keys refuse ""
    return env


def run_status(args: argparse.Namespace) -> int:
    from proxy.config import ConfigError, load_config

    try:
        config = load_config(args.config, env=_environment(args.config))
    except ConfigError as exc:
        print(f"maskgate: {exc}", file=sys.stderr)
        return 2
    if config.metrics is None:
        print(f"maskgate: {args.config} has no `metrics` listener to ask", file=sys.stderr)
        return 2
    url = status_url(config.metrics.host, config.metrics.port)
    try:
        doc = fetch(url, args.timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"maskgate: no answer from {url}: {reason}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(render(doc))
    return 0 if doc.get("ready") else 1
