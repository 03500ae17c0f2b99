"""The demo's HTTP side without servers: the config section it writes (read back by the real config
loader), the curl lines it prints and its check that the HTTP side can run."""

from __future__ import annotations

import shlex
from pathlib import Path

from proxy.config import load_config
from proxy.demo import http_tour
from proxy.demo.tour import DEMO_POLICY, write_config


def test_demo_config_with_an_http_side_loads(tmp_path: Path) -> None:
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    path = write_config(tmp_path, 5432, 6432, 9187, (cert, key), None, (8443, 8123))
    env = {"MASKGATE_UPSTREAM_PASSWORD": "x", "CRM_VENDOR_PASSWORD": "y"}
    cfg = load_config(path, env=env)
    assert cfg.http is not None
    assert (cfg.http.listen.host, cfg.http.listen.port) == ("127.0.0.1", 8443)
    assert cfg.http.upstream.rstrip("/") == "http://127.0.0.1:8123"
    assert cfg.http.api == http_tour.API_NAME
    assert cfg.http.tls is not None and cfg.http.tls.cert == cert and cfg.http.tls.key == key
    # Without the HTTP side the demo config has no `http:` section at all.
    plain = load_config(write_config(tmp_path, 5432, 6432, 9187, (cert, key)), env=env)
    assert plain.http is None


def test_curl_lines_are_shell_safe(tmp_path: Path) -> None:
    cert = tmp_path / "dir with space" / "server.crt"
    line = http_tour.curl(
        "https://127.0.0.1:8443/api/clients?limit=3", ("vendor_zhang", "vendor-pass"), cert, "--compressed"
    )
    args = shlex.split(line)
    assert args[:3] == ["curl", "-s", "--compressed"]
    assert args[args.index("-u") + 1] == "vendor_zhang:vendor-pass"
    assert args[args.index("--cacert") + 1] == str(cert)
    assert args[-1] == "https://127.0.0.1:8443/api/clients?limit=3"
    assert "-u" not in shlex.split(http_tour.curl("https://x/", None, cert))


def test_the_demo_says_why_it_has_no_http_side(tmp_path: Path) -> None:
    bare = tmp_path / "policy.yaml"
    bare.write_text(
        "version: 1\nroles:\n  r: {tables: ['crm.*']}\nusers:\n  u: {role: r, password: 'SCRAM-SHA-256$4096:"
        "jQCtBsEbVsRls4c+5FR39g==$/A9nnUAyAQzY+Or7iQMUxSM6Mm767gkSQ/Llx3Fd0wE=:gzUHMj2XjvB6niwbVNROJnXqSq7r"
        "XpqIUm+FqzWJUU4='}\n"
    )
    why = http_tour.unavailable(bare)
    assert why is not None and ("not installed" in why or "apis: crm-api" in why)
    demo = http_tour.unavailable(DEMO_POLICY)
    assert demo is None or "not installed" in demo or "apis: crm-api" in demo
