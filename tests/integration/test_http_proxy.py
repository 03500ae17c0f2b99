"""The HTTP side end to end: `maskgate serve` (App, mitmproxy in reverse-proxy mode) in front of a
real aiohttp API, driven by httpx over TLS. Nothing the vendor receives holds a full number: not
JSON, NDJSON, CSV, text, HTML, gzip or brotli bodies, error bodies or headers."""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from policies.passwords import scram_verifier
from proxy.app import App
from proxy.config import load_config
from proxy.demo.embedded_pg import free_port
from proxy.http.auth import token_digest
from tests.integration.harness import Running, self_signed_cert
from tests.integration.http_upstream import CARDS, IDS, MOBILES, Upstream

pytestmark = pytest.mark.integration

TOKEN = "mgt_" + "t" * 43
SECRETS = [*MOBILES, *IDS, *CARDS]
MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")

POLICY = """
version: 1
apis:
  crm-api:
    fields:
      "**.mobile": mobile
      "**.idNo": id_card
      "**.id_no": id_card
      "**.bankAcct": bank_card
      "**.bank_card": bank_card
      "data[].contact.phone": mobile
      "**.name": person_name
roles:
  vendor:
    routes: ["GET /api/**"]
    max_rows: 20
    see: {mobile: mask, id_card: mask, bank_card: deny, person_name: mask}
    masked_predicates: deny
  desk:
    routes: ["GET /api/**", "POST /api/search"]
    see: {mobile: mask, id_card: mask, bank_card: mask, person_name: clear}
    masked_predicates: equality
  reporter:
    routes: ["GET /api/reports/** binary", "GET /api/clients"]
  dba:
    statements: [all]
    tables: ["*"]
    max_rows: null
    see: {mobile: clear, id_card: clear, bank_card: clear, person_name: clear}
    detect: []
    routes: ["* /**"]
users:
  vendor_zhang: {role: vendor, password: "%(vendor)s"}
  desk_li: {role: desk, password: "%(desk)s", tokens: ["sha256:%(token)s"]}
  report_wu: {role: reporter, password: "%(reporter)s"}
  dba_wang: {role: dba, password: "%(dba)s"}
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture(scope="module")
def served(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("http-serve")
    (d / "policy.yaml").write_text(
        POLICY
        % {
            "vendor": scram_verifier("vendor-pass"),
            "desk": scram_verifier("desk-pass"),
            "reporter": scram_verifier("report-pass"),
            "dba": scram_verifier("dba-pass"),
            "token": token_digest(TOKEN),
        }
    )
    tls = self_signed_cert(d)
    port, metrics = free_port(), free_port()
    (d / "maskgate.yaml").write_text(
        f"""
policy: policy.yaml
audit_log: audit.jsonl
metrics: 127.0.0.1:{metrics}
masking_key: test-key
http:
  listen: 127.0.0.1:{port}
  upstream: {upstream.url}
  api: crm-api
  tls: {{cert: {tls["cert"]}, key: {tls["key"]}}}
  max_body_bytes: 200000
  upstream_headers: {{X-Api-Key: service-secret}}
  trusted_header: X-Remote-User
  trusted_proxies: [10.9.8.0/24]
"""
    )
    app = App(load_config(d / "maskgate.yaml"), registry=CollectorRegistry())
    running = Running(app)
    try:
        yield {
            "url": f"https://127.0.0.1:{port}",
            "metrics": metrics,
            "dir": d,
            "cert": tls["cert"],
            "app": app,
        }
    finally:
        running.stop()


def get(
    served: dict[str, Any],
    path: str,
    who: tuple[str, str] | None = ("vendor_zhang", "vendor-pass"),
    **kw: Any,
) -> httpx.Response:
    with httpx.Client(verify=False, timeout=20) as c:
        return c.request(kw.pop("method", "GET"), served["url"] + path, auth=who, **kw)


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def audit(served: dict[str, Any]) -> list[dict[str, Any]]:
    time.sleep(0.3)  # the writer thread flushes its queue
    path = Path(served["dir"]) / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_json_list_is_masked_and_cut(served: dict[str, Any]) -> None:
    r = get(served, "/api/clients")
    assert r.status_code == 200, r.text
    assert not leaks(r.text)
    data = r.json()["data"]
    assert len(data) == 20
    assert r.headers["x-maskgate-truncated"] == "20"
    first = data[0]
    assert first["mobile"] == MOBILES[1][:3] + "****" + MOBILES[1][-4:]
    assert first["bankAcct"] is None  # deny -> null
    assert isinstance(first["score"], int)  # a number stays a number, its digits masked
    assert str(first["score"]) != MOBILES[(1 + 3) % len(MOBILES)]


def test_dba_sees_clear(served: dict[str, Any]) -> None:
    r = get(served, "/api/clients/1", ("dba_wang", "dba-pass"))
    assert r.status_code == 200
    assert r.json()["mobile"] == MOBILES[1]


@pytest.mark.parametrize(
    "path",
    [
        "/api/clients.ndjson",
        "/api/clients.csv",
        "/api/gzip",
        "/api/br",
        "/api/text",
        "/api/html",
        "/api/crash",
    ],
)
def test_every_body_kind_is_masked(served: dict[str, Any], path: str) -> None:
    r = get(served, path, headers={"accept-encoding": "gzip, br"})
    assert r.status_code in (200, 500), r.text
    assert not leaks(r.text), (path, leaks(r.text))
    # A number keeps its type with its middle digits zeroed (13800005678): nothing else of 11 digits.
    assert all(m.group()[3:7] == "0000" for m in MOBILE.finditer(r.text)), path


def test_gzip_stays_gzip(served: dict[str, Any]) -> None:
    with httpx.Client(verify=False) as c:
        r = c.get(served["url"] + "/api/gzip", auth=("vendor_zhang", "vendor-pass"))
    assert r.headers.get("content-encoding") == "gzip"
    assert not leaks(r.text)
    assert len(r.json()["data"]) == 20


def test_headers_are_scanned(served: dict[str, Any]) -> None:
    r = get(served, "/api/header")
    assert MOBILES[3] not in str(r.headers)


def test_route_outside_role_is_403(served: dict[str, Any]) -> None:
    r = get(served, "/admin/users")
    assert r.status_code == 403
    assert r.json() == {"error": r.json()["error"]}
    assert r.json()["error"].startswith("maskgate: ")
    r = get(served, "/api/clients", method="DELETE")
    assert r.status_code == 403


@pytest.mark.parametrize(
    "path", ["/api/../admin/users", "/api/%2e%2e/admin/users", "//admin/users", "/api/..%2fadmin/users"]
)
def test_path_tricks_do_not_leave_the_route(served: dict[str, Any], path: str) -> None:
    with httpx.Client(verify=False) as c:
        req = c.build_request("GET", served["url"] + "/x")
        req.url = req.url.copy_with(raw_path=path.encode())
        r = c.send(req, auth=("vendor_zhang", "vendor-pass"))
    assert r.status_code in (403, 404), (path, r.status_code)
    assert "root" not in r.text


def test_binary_downloads(served: dict[str, Any]) -> None:
    assert get(served, "/api/reports/clients.pdf").status_code == 403
    assert get(served, "/api/export.bin").status_code == 403
    r = get(served, "/api/reports/clients.pdf", ("report_wu", "report-pass"))
    assert r.status_code == 200 and r.content.startswith(b"%PDF")


def test_bad_upstream_bodies_are_502(served: dict[str, Any]) -> None:
    for path in ("/api/bad-json", "/api/bad-gzip", "/api/big"):
        r = get(served, path)
        assert r.status_code == 502, (path, r.status_code)
        assert not leaks(r.text)


def test_authentication(served: dict[str, Any]) -> None:
    assert get(served, "/api/clients", None).status_code == 401
    r = get(served, "/api/clients", ("vendor_zhang", "wrong"))
    assert r.status_code == 401 and "basic" in r.headers["www-authenticate"].lower()
    assert get(served, "/api/clients", ("nobody", "x")).status_code == 401
    r = get(served, "/api/clients/1", None, headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.json()["name"] == "张三"
    assert not leaks(r.text)
    assert (
        get(served, "/api/clients/1", None, headers={"authorization": "Bearer mgt_nope"}).status_code == 401
    )
    # The gateway's header is believed only from its network.
    assert get(served, "/api/clients/1", None, headers={"x-remote-user": "dba_wang"}).status_code == 401


def test_basic_needs_tls(served: dict[str, Any]) -> None:
    url = served["url"].replace("https://", "http://")
    r = httpx.get(url + "/api/clients/1", auth=("vendor_zhang", "vendor-pass"))
    assert r.status_code == 401


def test_forwarded_request_is_what_was_decided(served: dict[str, Any]) -> None:
    r = get(served, "/api/echo?a=1&b=%41", ("dba_wang", "dba-pass"), headers={"range": "bytes=0-3"})
    seen = r.json()
    assert seen["headers"].get("x-api-key") == "service-secret"
    assert "authorization" not in seen["headers"]
    assert "range" not in seen["headers"]
    assert seen["query"] == [["a", "1"], ["b", "A"]]


def test_masked_predicates(served: dict[str, Any]) -> None:
    r = get(served, f"/api/clients?mobile={MOBILES[0]}")
    assert (r.status_code == 403 and "masked_predicate" not in r.text) or r.status_code == 403
    r = get(served, f"/api/clients?mobile={MOBILES[0]}", ("desk_li", "desk-pass"))
    assert r.status_code == 200 and not leaks(r.text)
    r = get(
        served,
        "/api/search",
        ("desk_li", "desk-pass"),
        method="POST",
        json={"filter": {"mobile": MOBILES[0]}},
    )
    assert r.status_code == 200 and not leaks(r.text)
    r = get(
        served,
        "/api/search",
        ("desk_li", "desk-pass"),
        method="POST",
        content=b"{bad",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400


def test_upstream_error_bodies_echoing_the_request_are_masked(served: dict[str, Any]) -> None:
    r = get(served, "/api/clients?mobile=13800000000", ("desk_li", "desk-pass"))
    assert r.status_code == 404 and "13800000000" not in r.text


def test_audit_and_metrics(served: dict[str, Any]) -> None:
    get(served, "/api/clients/2")
    get(served, "/admin/users")
    records = audit(served)
    http = [r for r in records if r.get("protocol") == "http"]
    assert any(r["event"] == "refused" and r["reason"] == "route_denied" for r in http)
    assert any(r["event"] == "start" and r["sql"].startswith("GET /api/clients/2") for r in http)
    assert any(r["event"] == "end" and r.get("masked", 0) > 0 for r in http)
    text = Path(served["dir"], "audit.jsonl").read_text()
    assert not leaks(text)
    body = urllib.request.urlopen(f"http://127.0.0.1:{served['metrics']}/metrics").read().decode()
    assert 'maskgate_blocked_queries_total{protocol="http",reason="route_denied",role="vendor"}' in body
    assert 'maskgate_queries_total{decision="allow",protocol="http",role="vendor"}' in body
    assert re.search(r'maskgate_masked_values_total\{class="mobile"\} [1-9]', body)
    assert 'maskgate_auth_failures_total{protocol="http"}' in body


def test_websocket_upgrade_refused(served: dict[str, Any]) -> None:
    r = get(served, "/api/clients", headers={"upgrade": "websocket", "connection": "upgrade"})
    assert r.status_code == 403


def test_basic_credentials_are_not_forwarded_even_base64_variants(served: dict[str, Any]) -> None:
    cred = base64.b64encode(b"dba_wang:dba-pass").decode()
    r = get(served, "/api/echo", None, headers={"authorization": f"basic {cred}"})
    assert r.status_code == 200
    assert "authorization" not in r.json()["headers"]


def test_the_addon_works_in_a_stock_mitmdump(served: dict[str, Any], upstream: Upstream) -> None:
    """The same addon, loaded by `mitmdump -s` with the maskgate config, masks the same way."""
    import os
    import shutil
    import subprocess
    import sys

    mitmdump = shutil.which("mitmdump", path=str(Path(sys.executable).parent))
    assert mitmdump, "mitmdump is installed with maskgate (the mitmproxy dependency)"
    d = Path(served["dir"])
    port = free_port()
    script = Path(__file__).resolve().parents[2] / "proxy" / "http" / "mitmdump.py"
    cfg = d / "mitmdump.yaml"
    cfg.write_text(
        (d / "maskgate.yaml")
        .read_text()
        .replace("audit.jsonl", "mitmdump-audit.jsonl")
        .replace(f"metrics: 127.0.0.1:{served['metrics']}", "")
    )
    proc = subprocess.Popen(
        [
            mitmdump,
            "--mode",
            f"reverse:{upstream.url}@127.0.0.1:{port}",
            "--set",
            f"confdir={d / 'mitm-conf'}",
            "-s",
            str(script),
            "--set",
            f"maskgate_config={cfg}",
            "-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        r = None
        while time.monotonic() < deadline:
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/api/clients/1", headers={"authorization": f"Bearer {TOKEN}"}
                )
                if r.status_code != 503:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert r is not None and r.status_code == 200, r.text if r is not None else "mitmdump did not start"
        assert not leaks(r.text) and r.json()["mobile"].count("*") == 4
        r = httpx.get(f"http://127.0.0.1:{port}/admin/users", headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 403
        time.sleep(0.5)
        lines = (d / "mitmdump-audit.jsonl").read_text().splitlines()
        assert any('"route_denied"' in line for line in lines)
    finally:
        proc.terminate()
        try:
            out = proc.communicate(timeout=10)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0].decode(errors="replace")
    assert "Traceback" not in out, out[-3000:]
