"""`maskgate demo` end to end with its HTTP side: the CRM API behind maskgate's HTTP listener, the
tour's vendor calls (JSON, gzip, CSV, NDJSON, an error body, refusals) never show a full number,
and the DBA's call shows them in clear (so the check is not vacuous)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.demo import http_tour
from proxy.demo.embedded_pg import free_port
from proxy.demo.tour import DEMO_POLICY

REPO = Path(__file__).resolve().parents[2]
# A mainland mobile, an 18-character ID number, a 16-19 digit card: none may reach the vendor whole.
DEMO = [sys.executable, "-m", "proxy.cli", "demo", "--no-wait", "--customers", "300"]
FULL_NUMBER = re.compile(r"(?<!\d)(?:1[3-9]\d{9}|\d{17}[\dXx]|\d{16,19})(?!\d)")


def test_the_demo_tour_masks_every_http_body_for_the_vendor(tmp_path: Path) -> None:
    why = http_tour.unavailable(DEMO_POLICY)
    if why is not None:
        pytest.skip(why)
    res = subprocess.run(
        [*DEMO, "--dir", str(tmp_path / "demo"), "--port", str(free_port())],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    start = out.index("behind maskgate's HTTP listener ==")
    section = out[start : out.index("== Try it yourself ==")]
    dba, vendor = section.split("-- as vendor_zhang", 1)
    assert FULL_NUMBER.search(dba), "the DBA's view should hold the numbers in clear"
    # What the vendor received: every line but the printed curl commands (which hold what the
    # vendor typed, e.g. a mobile looked up).
    received = "\n".join(ln for ln in vendor.splitlines() if not ln.lstrip().startswith("$ curl"))
    assert not FULL_NUMBER.findall(received), received
    for shown in (
        "content-encoding: gzip",
        "id,name,mobile,id_no,bank_card",
        "application/x-ndjson",
        '"error":"client 99999999 not found"',
        "X-Maskgate-Truncated: 200",
        "HTTP 401",
        'reason="route_denied"',
    ):
        assert shown in vendor, shown
    assert vendor.count("HTTP 403") == 4
    assert "--cacert" in vendor and "https://127.0.0.1:" in vendor
