"""The `maskgate demo` tour's HTTP section: the demo CRM API (proxy/demo/crm_api.py) behind
maskgate's HTTP listener, called as the DBA and as the vendor with httpx, each call printed with
the curl command line that does the same.

Owns whether the demo can show the HTTP side (`unavailable()`), the config section it writes for
it and the printed walk-through. Talks to maskgate only as a client would (HTTPS, Basic auth);
never imports the addon beyond checking that it is installed.
"""

from __future__ import annotations

import json
import shlex
import ssl
from pathlib import Path
from typing import Any

API_NAME = "crm-api"  # the demo policy's `apis:` entry for this API
CLIENT = 4  # the customer the SQL tour starts from, too


def unavailable(policy_path: Path) -> str | None:
    """Why the demo cannot serve its HTTP side, or None when it can: the addon must import and the
    demo policy must classify the CRM API's fields (both arrive with issue 13)."""
    try:
        import proxy.http.server  # noqa: F401  (mitmproxy, the addon and its body masking)
    except ImportError as exc:
        return f"maskgate's HTTP side is not installed ({exc.name or exc} missing)"
    from policies import load_policy

    apis = getattr(load_policy(policy_path), "apis", None) or {}
    if API_NAME not in apis:
        return f"the demo policy has no `apis: {API_NAME}` section"
    return None


def config_section(listen_port: int, api_port: int, tls: tuple[Path, Path]) -> str:
    """The demo config's `http:` section: HTTPS on `listen_port` in front of the CRM API."""
    cert, key = (json.dumps(str(p)) for p in tls)
    return (
        "http:\n"
        f"  listen: 127.0.0.1:{listen_port}\n"
        f"  upstream: http://127.0.0.1:{api_port}\n"
        f"  api: {API_NAME}\n"
        "  # The same self-signed certificate as the PostgreSQL listener (curl --cacert).\n"
        f"  tls: {{cert: {cert}, key: {key}}}\n"
    )


def curl(url: str, who: tuple[str, str] | None, cert: Path, *extra: str) -> str:
    """The curl command line equivalent to one of the tour's requests."""
    args = ["curl", "-s", *extra]
    if who is not None:
        args += ["-u", f"{who[0]}:{who[1]}"]
    return " ".join(shlex.quote(a) for a in [*args, "--cacert", str(cert), url])


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def _pretty(resp: Any) -> str:
    try:
        return json.dumps(resp.json(), ensure_ascii=False, indent=2)
    except ValueError:
        return resp.text.strip()


def _rows(items: list[dict[str, Any]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    cols = ["id", "name", "mobile", "idNo", "bankAcct", "contact.phone"]
    rows = [
        (
            i.get("id"),
            i.get("name"),
            i.get("mobile"),
            i.get("idNo"),
            i.get("bankAcct"),
            (i.get("contact") or {}).get("phone"),
        )
        for i in items
    ]
    return cols, rows


def tour(
    port: int, cert: Path, users: dict[str, tuple[str, str]], number: int, metrics_port: int | None = None
) -> str:
    """Run the HTTP walk-through against maskgate on 127.0.0.1:`port` and return what to print.
    `users` maps "dba" and "vendor" to (user, password); with `metrics_port`, the HTTP side's
    counters from the metrics endpoint end it."""
    import httpx

    from .tour import _table

    base = f"https://127.0.0.1:{port}"
    verify = ssl.create_default_context(cafile=str(cert))
    out: list[str] = []
    say = out.append
    dba, vendor = users["dba"], users["vendor"]

    def call(who: tuple[str, str] | None, path: str, note: str, *flags: str, **kw: Any) -> httpx.Response:
        say(f"-- {note}\n   $ {curl(base + path, who, cert, *flags)}")
        auth = who if who is not None else None
        with httpx.Client(verify=verify, timeout=30, auth=auth) as c:
            return c.get(base + path, **kw)

    say(f"\n== {number}. The same customers through the CRM API, behind maskgate's HTTP listener ==")
    say("   (the API serves the crm database in clear; maskgate masks by the policy's `apis: crm-api`)\n")
    for who, label in ((dba, "the DBA"), (vendor, "the outsourced vendor")):
        r = call(who, f"/api/clients/{CLIENT}", f"as {who[0]} ({label})")
        say(_indent(f"HTTP {r.status_code}\n{_pretty(r)}"))
        say("")

    gz = {"Accept-Encoding": "gzip"}
    r = call(
        vendor,
        "/api/clients?limit=3",
        "a list, gzip-compressed by the API: decoded, masked, compressed again",
        "--compressed",
        headers=gz,
    )
    raw_encoding = r.headers.get("content-encoding", "none")
    if r.status_code == 200:
        cols, rows = _rows(r.json().get("data", []))
        say(f"  HTTP 200, content-encoding: {raw_encoding}\n" + _table(cols, rows))
    else:
        say(_indent(f"HTTP {r.status_code}\n{_pretty(r)}"))
    say("")

    r = call(
        vendor,
        "/api/clients?limit=3",
        "CSV: the header names are classified like JSON fields",
        "-H",
        "Accept: text/csv",
        headers={"Accept": "text/csv"},
    )
    say(_indent(f"HTTP {r.status_code}, {r.headers.get('content-type', '')}\n{r.text.strip()}"))
    say("")

    # Start the NDJSON example at a call whose note holds a number (which calls those are depends
    # on how many customers the demo seeded); the DBA's look-up is not part of the printed tour.
    with httpx.Client(verify=verify, timeout=30, auth=dba) as c:
        notes = [x.get("note") or "" for x in c.get(base + "/api/calls?limit=200").json().get("data", [])]
    first = next((i for i, n in enumerate(notes) if any(ch.isdigit() for ch in n)), 0)
    r = call(
        vendor,
        f"/api/calls?offset={first}&limit=2",
        "call records as NDJSON: the detectors mask the numbers agents typed into the notes",
        "-H",
        "Accept: application/x-ndjson",
        headers={"Accept": "application/x-ndjson"},
    )
    say(_indent(f"HTTP {r.status_code}, {r.headers.get('content-type', '')}\n{r.text.strip()}"))
    say("")

    r = call(vendor, "/api/clients/99999999", "an error body from the API (masked like any other body)")
    say(_indent(f"HTTP {r.status_code}\n{r.text.strip()}"))
    say("")

    r = call(vendor, "/api/clients?limit=500", "more customers than the vendor's max_rows")
    if r.status_code == 200:
        n = len(r.json().get("data", []))
        cut = r.headers.get("x-maskgate-truncated", "-")
        say(f"  HTTP 200: {n} items reached the vendor; X-Maskgate-Truncated: {cut}")
    else:
        say(_indent(f"HTTP {r.status_code}\n{r.text.strip()}"))
    say("")

    say("-- what the vendor cannot do over HTTP")
    refusals = (
        (vendor, "/api/admin/users", "a route outside the vendor's role"),
        (vendor, "/api/clients?mobile=13812345678", "looking a customer up by a masked field (a predicate)"),
        (vendor, "/api/clients/13812345678", "a full number anywhere in the request is a lookup too"),
        (vendor, "/api/clients/export.xlsx", "a binary download no masker can read"),
        (None, f"/api/clients/{CLIENT}", "no credentials"),
    )
    for who, path, why in refusals:
        r = call(who, path, why)
        say(_indent(f"HTTP {r.status_code} {r.text.strip()}"))
    if metrics_port is not None:
        say('\n-- what the metrics endpoint counted for protocol="http"')
        with httpx.Client(timeout=10) as c:
            text = c.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        say(
            "\n".join(
                "  " + ln
                for ln in text.splitlines()
                if 'protocol="http"' in ln and not ln.startswith("#") and "_created{" not in ln
            )
        )
    return "\n".join(out)
