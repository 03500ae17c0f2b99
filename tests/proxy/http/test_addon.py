"""The addon's hooks, driven with mitmproxy's own test helpers (taddons, tflow) over a real Guard:
what reaches the API, what reaches the client, and the records, without a socket."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow, tutils
from prometheus_client import CollectorRegistry

from policies import load_policy
from policies.passwords import scram_verifier
from proxy.config import DEFAULT_MAX_BODY_BYTES, Endpoint, HttpListener
from proxy.http.addon import MaskGate
from proxy.http.auth import token_digest
from proxy.services.gate import StatementRecord
from proxy.services.guard import Guard
from proxy.services.metrics import Metrics

TOKEN = "mgt_" + "x" * 43
MOBILE = "13812345678"
ID18 = "11010519491231002X"

POLICY = """
version: 1
apis:
  crm-api:
    fields:
      "**.mobile": mobile
      "**.idNo": id_card
      "**.bankAcct": bank_card
roles:
  vendor:
    routes: ["GET /api/**", "GET /files/** binary"]
    max_rows: 2
    see: {mobile: mask, id_card: mask, bank_card: deny}
  dba:
    statements: [all]
    tables: ["*"]
    max_rows: null
    see: {mobile: clear, id_card: clear, bank_card: clear}
    detect: []
    routes: ["* /**"]
users:
  zhang: {role: vendor, password: "%(pw)s", tokens: ["sha256:%(token)s"]}
  wang: {role: dba, password: "%(pw)s"}
"""


class Recording(Guard):
    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.records: list[StatementRecord] = []

    def begin(self, rec: StatementRecord) -> bool:
        self.records.append(rec)
        return True

    def record(self, rec: StatementRecord) -> None:
        self.records.append(rec)
        super().record(rec)


@pytest.fixture
def gate(tmp_path: Path) -> Recording:
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY % {"pw": scram_verifier("pw", iterations=64), "token": token_digest(TOKEN)})
    return Recording(load_policy(p), metrics=Metrics(CollectorRegistry()), masking_key=b"k")


SETTINGS = HttpListener(
    listen=Endpoint("127.0.0.1", 0),
    upstream="http://api:8000",
    api="crm-api",
    upstream_headers={"X-Api-Key": "svc"},
)


def flow(path: str, *, who: str | None = "zhang", method: str = "GET", **headers: str) -> Any:
    h = {"host": "api"} | headers
    if who is not None:
        h["authorization"] = "Basic " + base64.b64encode(f"{who}:pw".encode()).decode()
    f = tflow.tflow(
        req=tutils.treq(
            method=method.encode(),
            path=path.encode(),
            headers=list((k.encode(), v.encode()) for k, v in h.items()),
            content=b"",
        ),
        resp=False,
    )
    assert f.client_conn.tls_established  # tflow's client finished a TLS handshake
    return f


def run(
    addon: MaskGate, f: Any, body: bytes | None = None, ctype: str = "application/json", **rh: str
) -> Any:
    asyncio.run(addon.requestheaders(f))
    asyncio.run(addon.request(f))
    if f.response is None:
        f.response = tutils.tresp(
            content=b"",
            headers=[(b"content-type", ctype.encode())] + [(k.encode(), v.encode()) for k, v in rh.items()],
        )
        f.response.set_content(body or b"")
        addon.responseheaders(f)
    asyncio.run(addon.response(f))
    return f


def test_json_is_masked_and_lists_cut(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        doc = {
            "data": [
                {"mobile": MOBILE, "idNo": ID18, "bankAcct": "4111111111111111", "note": f"call {MOBILE}"}
            ]
            * 3
        }
        f = run(addon, flow("/api/clients"), json.dumps(doc).encode())
    out = json.loads(f.response.content)
    assert len(out["data"]) == 2 and f.response.headers["x-maskgate-truncated"] == "2"
    assert out["data"][0]["mobile"] == "138****5678" and out["data"][0]["bankAcct"] is None
    assert MOBILE not in f.response.text and ID18 not in f.response.text
    assert f.request.headers["x-api-key"] == "svc" and "authorization" not in f.request.headers
    events = [r.event for r in gate.records]
    assert events == ["start", "end"] and gate.records[-1].rows == 2 and gate.records[-1].truncated


def test_route_denied_answers_without_forwarding(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        f = flow("/admin/users")
        asyncio.run(addon.requestheaders(f))
    assert f.response is not None and f.response.status_code == 403
    assert json.loads(f.response.content)["error"].startswith("maskgate: ")
    assert gate.records[-1].decision.reason == "route_denied"


def test_unauthenticated_is_401_and_counted(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        f = flow("/api/clients", who=None)
        asyncio.run(addon.requestheaders(f))
        assert f.response.status_code == 401 and "Basic" in f.response.headers["www-authenticate"]
        f = flow("/api/clients", who="nobody")
        asyncio.run(addon.requestheaders(f))
        assert f.response.status_code == 401
    assert gate.metrics.registry.get_sample_value("maskgate_auth_failures_total", {"protocol": "http"}) == 2


def test_bearer_token(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        f = flow("/api/x", who=None, authorization=f"Bearer {TOKEN}")
        run(addon, f, json.dumps({"mobile": MOBILE}).encode())
    assert json.loads(f.response.content) == {"mobile": "138****5678"}


def test_gzip_is_decoded_masked_and_encoded_again(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        f = flow("/api/x")
        asyncio.run(addon.requestheaders(f))
        asyncio.run(addon.request(f))
        f.response = tutils.tresp(
            content=b"", headers=[(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]
        )
        f.response.raw_content = gzip.compress(json.dumps({"mobile": MOBILE}).encode())
        addon.responseheaders(f)
        asyncio.run(addon.response(f))
    assert f.response.headers["content-encoding"] == "gzip"
    assert MOBILE.encode() not in gzip.decompress(f.response.raw_content)


@pytest.mark.parametrize(
    ("body", "ctype", "enc", "status"),
    [
        (b'{"mobile": "13812345678", bad', "application/json", None, 502),
        (b"not gzip 13812345678", "application/json", "gzip", 502),
        (b"13812345678", "application/json", "compress", 502),
        (b"%PDF 13812345678", "application/pdf", None, 403),
        # A document held in a value, too deep to count its records.
        (
            json.dumps({"p": "[" * 3000 + '"13812345678"' + "]" * 3000}).encode(),
            "application/json",
            None,
            502,
        ),
        (b'data: {"a": ' + b"[" * 3000 + b"13812345678" + b"]" * 3000 + b"}", "text/event-stream", None, 502),
    ],
)
def test_unreadable_or_binary_bodies_never_pass(
    gate: Recording, body: bytes, ctype: str, enc: str | None, status: int
) -> None:
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        f = flow("/api/x")
        asyncio.run(addon.requestheaders(f))
        asyncio.run(addon.request(f))
        headers = [(b"content-type", ctype.encode())] + ([(b"content-encoding", enc.encode())] if enc else [])
        f.response = tutils.tresp(content=b"", headers=headers)
        f.response.raw_content = body
        addon.responseheaders(f)
        asyncio.run(addon.response(f))
    assert f.response.status_code == status
    assert MOBILE.encode() not in (f.response.raw_content or b"")
    assert gate.records[-1].event == "end"


def test_binary_route(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        f = run(addon, flow("/files/r.pdf"), b"%PDF-1", "application/pdf")
    assert f.response.status_code == 200 and f.response.content == b"%PDF-1"


def test_unrestricted_passes_unchanged(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        f = run(addon, flow("/anything", who="wang"), json.dumps({"mobile": MOBILE}).encode())
    assert json.loads(f.response.content) == {"mobile": MOBILE}


def test_streaming_is_refused_as_an_option(gate: Recording) -> None:
    from mitmproxy.addons.proxyserver import Proxyserver

    addon = MaskGate(gate, SETTINGS)
    with taddons.context(Proxyserver(), addon) as tctx:
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(addon, stream_large_bodies="1m")
        tctx.configure(addon, body_size_limit="1g")
        assert tctx.options.body_size_limit == str(DEFAULT_MAX_BODY_BYTES)


def test_responseheaders_turns_streaming_off(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        f = flow("/api/x")
        f.response = tutils.tresp()
        f.response.stream = True
        addon.responseheaders(f)
    assert f.response.stream is False


def test_masked_predicate_in_query(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        f = flow(f"/api/clients?mobile={MOBILE}")
        asyncio.run(addon.requestheaders(f))
    assert f.response.status_code == 403
    assert gate.records[-1].decision.reason == "masked_predicate"
    assert MOBILE not in gate.records[-1].decision.message


def test_response_headers_are_scanned(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        f = run(addon, flow("/api/x"), b"{}", **{"x-caller": MOBILE, "content-md5": "abc"})
    assert MOBILE not in str(f.response.headers) and "content-md5" not in f.response.headers


def test_upgrade_is_refused(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        f = flow("/api/x", upgrade="websocket", connection="Upgrade")
        asyncio.run(addon.requestheaders(f))
    assert f.response.status_code == 403


@pytest.mark.parametrize("stage", ["decide_request", "http_rules"])
def test_a_failure_inside_maskgate_never_passes_the_flow(
    gate: Recording, stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mitmproxy carries on with a flow whose addon raised: maskgate must answer it itself."""

    def boom(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(gate, stage, boom)
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        f = run(addon, flow("/api/x"), json.dumps({"mobile": MOBILE}).encode())
    assert f.response.status_code == 502
    assert MOBILE not in f.response.text


def test_observed_responses_are_disclosed_once_with_their_record_id(gate: Recording) -> None:
    seen: list[tuple[str, str, list[tuple[str, str, bool]]]] = []
    gate.add_observer(
        lambda p, sid, values: seen.append((p.user, sid, [(d.cls, d.value, d.clear) for d in values]))
    )
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        f = run(addon, flow("/anything", who="wang"), json.dumps({"mobile": MOBILE}).encode())
        g = run(addon, flow("/api/x"), json.dumps([{"mobile": MOBILE, "idNo": ID18}]).encode())
    assert json.loads(f.response.content) == {"mobile": MOBILE}  # unrestricted: unchanged
    assert MOBILE not in g.response.text
    assert seen == [
        ("wang", f.id[:16], [("mobile", MOBILE, True)]),
        ("zhang", g.id[:16], [("mobile", MOBILE, False), ("id_card", ID18, False)]),
    ]
    assert {r.id for r in gate.records} == {f.id[:16], g.id[:16]}


def test_a_person_over_their_row_budget_is_refused_before_forwarding(tmp_path: Path) -> None:
    from proxy.services.budgets import Budgets

    p = tmp_path / "policy.yaml"
    text = POLICY.replace("    max_rows: 2\n", "    max_rows: 2\n    budgets: {rows_per_hour: 3}\n", 1)
    p.write_text(text % {"pw": scram_verifier("pw", iterations=64), "token": token_digest(TOKEN)})
    budgets = Budgets(masking_key=b"k")
    g = Recording(load_policy(p), metrics=Metrics(CollectorRegistry()), masking_key=b"k", budgets=budgets)
    addon = MaskGate(g, SETTINGS)
    doc = json.dumps({"data": [{"mobile": MOBILE}] * 5}).encode()
    with taddons.context(addon):
        assert run(addon, flow("/api/clients"), doc).response.status_code == 200  # 2 rows
        assert run(addon, flow("/api/clients"), doc).response.status_code == 200  # 4: used up
        f = flow("/api/clients")
        asyncio.run(addon.requestheaders(f))
        asyncio.run(addon.request(f))
    assert f.response is not None and f.response.status_code == 403
    assert "3 rows per hour" in json.loads(f.response.content)["error"]
    assert g.records[-1].decision.reason == "row_budget"
    assert budgets.counts("vendor", "zhang") == (4, 0)
