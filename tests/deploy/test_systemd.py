"""deploy/systemd/maskgate.service and deploy/logrotate/maskgate: hardened, and agreeing on SIGHUP."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "systemd" / "maskgate.service"


def unit() -> dict[str, list[str]]:
    """key -> values of the [Service] section (systemd keys may repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}{key}", []).append(value)
    return out


def test_the_unit_is_hardened() -> None:
    u = unit()
    s = "[Service]"
    assert u[s + "User"] == ["maskgate"]
    assert u[s + "NoNewPrivileges"] == ["yes"]
    assert u[s + "ProtectSystem"] == ["strict"]
    assert "/var/log/maskgate" in u[s + "ReadWritePaths"][0].split()
    assert u[s + "CapabilityBoundingSet"] == [""]
    assert u[s + "ExecStart"][0].endswith("maskgate serve --config /etc/maskgate/maskgate.yaml")
    assert u[s + "ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_logrotate_writes_where_the_unit_lets_maskgate_write_and_sends_sighup() -> None:
    rotate = (DEPLOY / "logrotate" / "maskgate").read_text()
    writable = unit()["[Service]ReadWritePaths"][0].split()
    path = next(line.split()[0] for line in rotate.splitlines() if line.startswith("/"))
    assert any(path.startswith(w.rstrip("/") + "/") for w in writable)
    assert "systemctl kill -s HUP maskgate.service" in rotate
    assert "copytruncate" not in [line.strip() for line in rotate.splitlines()]


def test_the_unit_parses_as_ini() -> None:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.read_string(UNIT.read_text())
    assert {"Unit", "Service", "Install"} <= set(cp.sections())


def test_systemd_analyze_verify_knows_every_key(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    # verify checks that ExecStart's binary exists: point it at one that does.
    copy = tmp_path / "maskgate.service"
    copy.write_text(UNIT.read_text().replace("/opt/maskgate/bin/maskgate", "/bin/true"))
    out = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True)
    complaints = [line for line in out.stderr.splitlines() if "maskgate.service" in line]
    assert not complaints, "\n".join(complaints)
