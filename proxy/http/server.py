"""Runs the HTTP addon in mitmproxy's reverse-proxy mode inside `maskgate serve`'s event loop.

Owns the mitmproxy master, its options and its lifetime: only the addons a reverse proxy needs
(no playback, no onboarding app, no scripts), the listener's certificate, mitmproxy's private
state directory, and the body size limit. Protocol and policy work is the addon's.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .addon import MaskGate

if TYPE_CHECKING:
    from ..config import HttpListener


class HttpProxyServer:
    def __init__(self, gate: Any, settings: HttpListener, state_dir: Path | None = None) -> None:
        self.gate = gate
        self.settings = settings
        self.addon = MaskGate(gate, settings)
        self.master: Any = None
        self._state_dir = state_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    async def start(self) -> None:
        from mitmproxy import master, options
        from mitmproxy.addons import core, next_layer, proxyserver, tlsconfig

        s = self.settings
        if self._state_dir is None:
            # mitmproxy keeps a CA of its own in its confdir; it must not be ~/.mitmproxy, shared
            # with whatever else runs as this user.
            self._tmp = tempfile.TemporaryDirectory(prefix="maskgate-http-")
            self._state_dir = Path(self._tmp.name)
        confdir = self._state_dir
        confdir.mkdir(parents=True, exist_ok=True)
        opts = options.Options()
        m = master.Master(opts, event_loop=asyncio.get_running_loop())
        m.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig())
        m.addons.add(self.addon)
        update: dict[str, Any] = {
            "mode": [f"reverse:{s.upstream}@{s.listen.host}:{s.listen.port}"],
            "confdir": str(confdir),
            "body_size_limit": str(s.max_body_bytes),
            # Tunnels carry bytes the addon cannot mask; the addon refuses upgrades anyway.
            "websocket": False,
            "http3": False,
            "connection_strategy": "lazy",
        }
        if s.tls is not None:
            pem = confdir / "listener.pem"
            # mitmproxy wants key and certificate in one file; it stays private to this process.
            fd = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(s.tls.key.read_bytes().rstrip() + b"\n" + s.tls.cert.read_bytes())
            update["certs"] = [f"*={pem}"]
        if s.upstream_ca is not None:
            update["ssl_verify_upstream_trusted_ca"] = str(s.upstream_ca)
        opts.update(**update)
        ps = m.addons.get("proxyserver")
        if not await ps.setup_servers():
            raise OSError(f"cannot listen on {s.listen} for HTTP")
        await m.running()
        self.master = m

    @property
    def listen_port(self) -> int:
        ps = self.master.addons.get("proxyserver") if self.master is not None else None
        addrs = ps.listen_addrs() if ps is not None else []
        return addrs[0][1] if addrs else self.settings.listen.port

    async def stop(self, grace: float = 10.0) -> None:
        m = self.master
        if m is None:
            return
        self.master = None
        ps = m.addons.get("proxyserver")
        await ps.servers.update([])
        # Requests in flight finish (their records are written) within the grace period.
        deadline = asyncio.get_running_loop().time() + grace
        while ps.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await m.done()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
