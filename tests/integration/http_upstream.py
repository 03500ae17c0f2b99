"""A real internal API for the HTTP side's tests: an aiohttp app serving customer JSON, NDJSON,
CSV, text, HTML, gzip/brotli bodies, error bodies and binary downloads, on its own thread."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from concurrent.futures import Future
from typing import Any

import brotli
from aiohttp import web

from proxy.demo.embedded_pg import free_port

# Checksum-valid numbers (mobile segments, GB 11643 IDs, Luhn cards): what must never reach a vendor.
MOBILES = ["13812345678", "13912345670", "15012345671", "18612345672"]
IDS = ["11010519491231002X", "440524188001010014"]
CARDS = ["6222020200112345679", "4111111111111111"]


def client(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "name": "张三" if i % 2 else "李四",
        "mobile": MOBILES[i % len(MOBILES)],
        "idNo": IDS[i % len(IDS)],
        "bankAcct": CARDS[i % len(CARDS)],
        "branch": 12,
        "contact": {"phone": MOBILES[(i + 1) % len(MOBILES)], "email": f"c{i}@example.com"},
        "note": f"客户来电 {MOBILES[(i + 2) % len(MOBILES)]}，身份证 {IDS[i % len(IDS)]}",
        "score": int(MOBILES[(i + 3) % len(MOBILES)]),
    }


CLIENTS = [client(i) for i in range(1, 301)]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, ensure_ascii=False).encode(), status=status, content_type="application/json"
    )


async def clients(request: web.Request) -> web.Response:
    limit = int(request.query.get("limit", "300"))
    mobile = request.query.get("mobile")
    rows = [c for c in CLIENTS if mobile is None or c["mobile"] == mobile][:limit]
    if mobile is not None and not rows:
        return _json({"error": f"no client with mobile {mobile}"}, status=404)
    return _json({"data": rows, "total": len(rows)})


async def one(request: web.Request) -> web.Response:
    i = int(request.match_info["id"])
    if not 1 <= i <= len(CLIENTS):
        return _json({"error": f"client {i} not found"}, status=404)
    return _json(CLIENTS[i - 1])


async def ndjson(request: web.Request) -> web.Response:
    body = "\n".join(json.dumps(c, ensure_ascii=False) for c in CLIENTS[:50]) + "\n"
    return web.Response(text=body, content_type="application/x-ndjson")


async def csv_(request: web.Request) -> web.Response:
    lines = ["id,name,mobile,id_no,bank_card,note"]
    lines += [
        f'{c["id"]},{c["name"]},{c["mobile"]},{c["idNo"]},{c["bankAcct"]},"{c["note"]}"' for c in CLIENTS[:40]
    ]
    return web.Response(text="\r\n".join(lines) + "\r\n", content_type="text/csv")


async def gz(request: web.Request) -> web.Response:
    body = gzip.compress(json.dumps({"data": CLIENTS[:30]}, ensure_ascii=False).encode())
    return web.Response(body=body, content_type="application/json", headers={"Content-Encoding": "gzip"})


async def br(request: web.Request) -> web.Response:
    body = brotli.compress(json.dumps({"data": CLIENTS[:30]}, ensure_ascii=False).encode())
    return web.Response(body=body, content_type="application/json", headers={"Content-Encoding": "br"})


async def bad_gzip(request: web.Request) -> web.Response:
    return web.Response(
        body=b"not gzip " + MOBILES[0].encode(),
        content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    )


async def bad_json(request: web.Request) -> web.Response:
    return web.Response(text='{"mobile": "' + MOBILES[0] + '", oops', content_type="application/json")


async def crash(request: web.Request) -> web.Response:
    return _json({"error": f"database error while reading {MOBILES[1]} / {IDS[0]}"}, status=500)


async def text(request: web.Request) -> web.Response:
    return web.Response(text=f"caller {MOBILES[0]} id {IDS[1]} card {CARDS[0]}\n", content_type="text/plain")


async def html(request: web.Request) -> web.Response:
    enc = "".join(f"&#{ord(c)};" for c in MOBILES[2])
    return web.Response(
        text=f"<html><body><p>{MOBILES[0]}</p><p>{enc}</p></body></html>", content_type="text/html"
    )


async def header(request: web.Request) -> web.Response:
    return web.Response(
        text="{}", content_type="application/json", headers={"X-Caller": f"caller={MOBILES[3]}"}
    )


async def pdf(request: web.Request) -> web.Response:
    return web.Response(body=b"%PDF-1.4 " + MOBILES[0].encode(), content_type="application/pdf")


async def octet(request: web.Request) -> web.Response:
    return web.Response(body=MOBILES[0].encode(), content_type="application/octet-stream")


async def big(request: web.Request) -> web.Response:
    return web.Response(text='{"pad": "' + "x" * 300_000 + '"}', content_type="application/json")


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return _json(
        {
            "method": request.method,
            "path": request.path,
            "raw_path": request.raw_path,
            "query": list(request.query.items()),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
    )


async def admin(request: web.Request) -> web.Response:
    return _json({"users": ["root"]})


def make_app() -> web.Application:
    app = web.Application()
    r = app.router
    r.add_get("/api/clients", clients)
    r.add_get("/api/clients.ndjson", ndjson)
    r.add_get("/api/clients.csv", csv_)
    r.add_get("/api/clients/{id:\\d+}", one)
    r.add_get("/api/gzip", gz)
    r.add_get("/api/br", br)
    r.add_get("/api/bad-gzip", bad_gzip)
    r.add_get("/api/bad-json", bad_json)
    r.add_get("/api/crash", crash)
    r.add_get("/api/text", text)
    r.add_get("/api/html", html)
    r.add_get("/api/header", header)
    r.add_get("/api/reports/clients.pdf", pdf)
    r.add_get("/api/export.bin", octet)
    r.add_get("/api/big", big)
    r.add_route("*", "/api/echo", echo)
    r.add_route("*", "/api/search", echo)
    r.add_get("/admin/users", admin)
    return app


class Upstream:
    """The API on 127.0.0.1:`port`, served from its own event loop thread."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = web.AppRunner(make_app(), access_log=None)
        self._call(self.runner.setup())
        self._call(web.TCPSite(self.runner, "127.0.0.1", self.port).start())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(30)

    def stop(self) -> None:
        self._call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
