"""`maskgate scan` end to end through a subprocess (tests for proxy/commands/scan.py)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

SCAN = [sys.executable, "-m", "proxy.cli", "scan"]
ROOT = Path(__file__).resolve().parents[2]


def run_scan(
    args: list[str], data: bytes, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        SCAN + args, input=data, capture_output=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=60
    )


def test_brief_example() -> None:
    out = run_scan([], "客户电话13812345678，身份证11010519491231002X\n".encode())
    assert out.returncode == 0
    assert out.stdout.decode() == "客户电话138****5678，身份证110***********002X\n"


def test_binary_safe_and_untouched_lines() -> None:
    data = b"\xff\xfe bad utf-8 13812345678\nno pii here\r\nlast line without newline"
    out = run_scan([], data)
    assert out.stdout == b"\xff\xfe bad utf-8 138****5678\nno pii here\r\nlast line without newline"


def test_classes_and_bad_class() -> None:
    line = b"13812345678 zhang@163.com\n"
    assert run_scan(["--classes", "email"], line).stdout == b"13812345678 z****@163.com\n"
    bad = run_scan(["--classes", "mobile,phone"], line)
    assert bad.returncode == 2 and b"phone" in bad.stderr and bad.stdout == b""


def test_hash_warns_without_key_and_uses_key_env() -> None:
    line = b"13812345678\n"
    default = run_scan(["--action", "hash"], line)
    assert b"warning" in default.stderr and default.stdout.startswith(b"mobile_")
    keyed = run_scan(["--action", "hash", "--key-env", "MG_KEY"], line, {"MG_KEY": "secret"})
    assert keyed.stderr == b"" and keyed.stdout.startswith(b"mobile_") and keyed.stdout != default.stdout
    missing = run_scan(["--action", "hash", "--key-env", "MG_NOT_SET_ANYWHERE"], line)
    assert missing.returncode == 2


def test_files_as_arguments(tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    a.write_text("手机13812345678\n", encoding="utf-8")
    out = subprocess.run([*SCAN, str(a), str(a)], capture_output=True, cwd=ROOT, timeout=60)
    assert out.stdout.decode() == "手机138****5678\n" * 2
    missing = subprocess.run([*SCAN, str(tmp_path / "nope")], capture_output=True, cwd=ROOT, timeout=60)
    assert missing.returncode == 1


def test_streams_line_by_line() -> None:
    proc = subprocess.Popen(SCAN, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write("第一行13812345678\n".encode())
        proc.stdin.flush()
        # The first line comes back while stdin is still open: nothing waits for end of input.
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "scan did not answer the first line before end of input"
        assert proc.stdout.readline().decode() == "第一行138****5678\n"
        for i in range(1000):
            proc.stdin.write(f"line {i} 13912345678\n".encode())
        proc.stdin.close()
        rest = proc.stdout.read().decode().splitlines()
        assert len(rest) == 1000 and rest[-1] == "line 999 139****5678"
    finally:
        proc.kill()
        proc.wait()
