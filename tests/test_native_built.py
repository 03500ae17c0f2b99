"""The native speedups are built where a compiler is: otherwise the suite would silently run the
pure-Python reference twice (once as `MASKGATE_PURE=1` asks, once by accident)."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from masking import native

SETUP = Path(__file__).resolve().parents[1] / "setup.py"


def extension_names() -> list[str]:
    tree = ast.parse(SETUP.read_text())
    return [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "Extension"
        and isinstance(node.args[0], ast.Constant)
    ]


def test_setup_declares_the_extensions() -> None:
    assert set(extension_names()) == {
        "masking._native",
        "proxy.pg._rowwalk",
        "policies.sql._shapes",
        "proxy.services._bloom",
    }


@pytest.mark.skipif(native.PURE, reason="MASKGATE_PURE=1 runs the reference on purpose")
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
@pytest.mark.parametrize("name", extension_names())
def test_every_extension_is_built_and_loads(name: str) -> None:
    assert native.load(name) is not None, f"{name} is not built: run `make install`"
