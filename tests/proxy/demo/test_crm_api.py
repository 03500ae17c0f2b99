"""The demo CRM API (proxy/demo/crm_api.py) against a real `crm` database: the shapes maskgate's
HTTP side and the demo policy's `apis: crm-api` fields rely on, its error bodies, gzip, and the
binary downloads the vendor must be refused."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.demo import crm_api
from tests.conftest import start_crm

SVC_PW = "crm-api-test-svc"
CUSTOMERS = 300


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API on a free port, served by its own event loop in a thread, over a seeded cluster."""
    pg = start_crm(tmp_path_factory.mktemp("crm-api-pg"), SVC_PW, CUSTOMERS)
    loop = asyncio.new_event_loop()
    started: list[crm_api.RunningApi] = []
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        started.append(loop.run_until_complete(crm_api.start(pg.dsn("maskgate_svc", SVC_PW, "crm"))))
        ready.set()
        loop.run_forever()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        assert ready.wait(30), "the CRM API did not start"
        yield started[0].url
    finally:
        if started:
            asyncio.run_coroutine_threadsafe(started[0].stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        th.join(10)
        pg.destroy()


def get(url: str, path: str, **kw: object) -> httpx.Response:
    return httpx.get(url + path, timeout=30, **kw)  # type: ignore[arg-type]


def test_client_list_has_the_fields_the_demo_policy_classifies(api: str) -> None:
    r = get(api, "/api/clients?limit=5&offset=2")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["total"] == CUSTOMERS and [c["id"] for c in body["data"]] == [3, 4, 5, 6, 7]
    item = body["data"][0]
    assert set(item) == {"id", "name", "mobile", "idNo", "bankAcct", "email", "branch", "contact", "note"}
    assert set(item["contact"]) == {"phone", "email"}
    assert item["mobile"].isdigit() and len(item["mobile"]) == 11
    assert len(item["contact"]["phone"]) == 11 and item["contact"]["phone"].startswith("139")
    assert len(item["idNo"]) == 18 and isinstance(item["branch"], int)


def test_branch_filter_and_total(api: str) -> None:
    body = get(api, "/api/clients?branch=12&limit=1000").json()
    assert body["data"] and all(c["branch"] == 12 for c in body["data"])
    assert body["total"] == len(body["data"])


def test_one_client_and_the_error_bodies_that_echo_numbers(api: str) -> None:
    one = get(api, "/api/clients/4").json()
    assert one["id"] == 4 and one["mobile"]
    missing = get(api, "/api/clients/13812345678")
    assert missing.status_code == 404
    assert missing.json()["error"] == "client 13812345678 not found"
    assert get(api, "/api/clients/abc").status_code == 400
    by_mobile = get(api, f"/api/clients?mobile={one['mobile']}").json()
    assert [c["id"] for c in by_mobile["data"]] == [4]
    unknown = get(api, "/api/clients?mobile=13800000000")
    assert unknown.status_code == 404 and unknown.json()["error"] == "no client with mobile 13800000000"
    bad = get(api, "/api/clients?mobile=1381234")
    assert bad.status_code == 400 and "1381234" in bad.json()["error"]


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "offset=-1", "limit=x", "branch=%D9%A1"])
def test_bad_paging_is_a_400(api: str, query: str) -> None:
    r = get(api, f"/api/clients?{query}")
    assert r.status_code == 400 and "error" in r.json()


def test_csv_by_path_and_by_accept_header(api: str) -> None:
    for path, headers in (("/api/clients.csv?limit=3", {}), ("/api/clients?limit=3", {"Accept": "text/csv"})):
        r = get(api, path, headers=headers)
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(r.text)))
        assert rows[0] == ["id", "name", "mobile", "id_no", "bank_card"]
        assert [row[0] for row in rows[1:]] == ["1", "2", "3"]


def test_calls_json_and_ndjson(api: str) -> None:
    client = get(api, "/api/calls?limit=1").json()["data"][0]["client"]
    calls = get(api, f"/api/calls?client={client}").json()["data"]
    assert calls and all(c["client"] == client for c in calls)
    assert {"caller", "callee", "startedAt", "durationS", "note"} <= set(calls[0])
    r = get(api, "/api/calls.ndjson?limit=7")
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert len(lines) == 7 and lines[0]["id"] == 1
    negotiated = get(api, "/api/calls?limit=2", headers={"Accept": "application/x-ndjson"})
    assert len(negotiated.text.splitlines()) == 2


def test_gzip_when_the_client_asks(api: str) -> None:
    gz = {"Accept-Encoding": "gzip"}
    with httpx.Client(timeout=30) as c, c.stream("GET", api + "/api/clients?limit=50", headers=gz) as r:
        raw = b"".join(r.iter_raw())
    assert r.headers["content-encoding"] == "gzip"
    assert len(json.loads(gzip.decompress(raw))["data"]) == 50
    plain = get(api, "/api/clients?limit=2", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers


def test_binary_downloads(api: str, tmp_path: Path) -> None:
    x = get(api, "/api/clients/export.xlsx")
    assert x.status_code == 200 and x.headers["content-type"] == "application/octet-stream"
    with zipfile.ZipFile(io.BytesIO(x.content)) as z:
        assert "xl/worksheets/sheet1.xml" in z.namelist()
        assert "<t>mobile</t>" in z.read("xl/worksheets/sheet1.xml").decode()
    p = get(api, "/api/reports/clients.pdf")
    assert p.headers["content-type"] == "application/pdf"
    assert p.content.startswith(b"%PDF-1.4") and p.content.rstrip().endswith(b"%%EOF")


def test_admin_route(api: str) -> None:
    assert {u["login"] for u in get(api, "/api/admin/users").json()["data"]} >= {"admin"}
    assert get(api, "/api/nothing").status_code == 404


def test_pure_helpers() -> None:
    assert crm_api.page({}) == (crm_api.DEFAULT_LIMIT, 0)
    with pytest.raises(crm_api.BadRequest):
        crm_api.client_filter({"mobile": "１３８１２３４５６７８"})  # fullwidth digits
    assert crm_api.wants("text/html, text/csv;q=0.9", "text/csv")
    assert not crm_api.wants(None, "text/csv") and not crm_api.wants("text/csv2", "text/csv")
    assert crm_api.contact_phone(4) == crm_api.contact_phone(4) != crm_api.contact_phone(5)
    assert crm_api.clients_csv([]).splitlines() == ["id,name,mobile,id_no,bank_card"]
