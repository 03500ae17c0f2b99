"""`maskgate token USER`: a random token on line 1, the policy's `tokens:` entry on line 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from policies import load_policy
from policies.loader import TOKEN_RE
from policies.passwords import token_digest, token_matches
from proxy.cli import main

DEMO = Path(__file__).parents[3] / "policies" / "examples" / "demo.yaml"


def test_prints_a_token_and_its_hash(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "vendor_zhang"]) == 0
    out = capsys.readouterr()
    token, entry = out.out.splitlines()
    assert re.fullmatch(r"mgt_[A-Za-z0-9_-]{43}", token)
    m = re.fullmatch(r'tokens: \["(sha256:[0-9a-f]{64})"\]', entry)
    assert m and TOKEN_RE.match(m[1]) and m[1] == f"sha256:{token_digest(token)}"
    assert "users.vendor_zhang" in out.err
    assert main(["token", "vendor_zhang"]) == 0
    assert capsys.readouterr().out.splitlines()[0] != token  # random every time


def test_the_printed_entry_loads_and_the_token_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "desk_li", "--policy", str(DEMO)]) == 0
    token, entry = capsys.readouterr().out.splitlines()
    text = DEMO.read_text(encoding="utf-8")
    marker = "    role: service_desk\n"
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text(text.replace(marker, marker + "    " + entry + "\n"), encoding="utf-8")
    user = load_policy(policy_file).users["desk_li"]
    assert token_matches(token, user.tokens)
    assert not token_matches(token + "x", user.tokens)
    assert not token_matches(token, load_policy(DEMO).users["desk_li"].tokens)


def test_the_demo_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert token_matches("mgt_demo_vendor_zhang", load_policy(DEMO).users["vendor_zhang"].tokens)


def test_unknown_user_or_bad_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "nobody", "--policy", str(DEMO)]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "unknown user nobody" in out.err
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nroles: {r: {routes: ['GETT /x']}}\n")
    assert main(["token", "u", "--policy", str(bad)]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "bad method `GETT`" in out.err
