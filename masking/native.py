"""Owns the choice between native speedups and the pure-Python reference.

`MASKGATE_PURE=1` in the environment selects the reference everywhere (CI runs the suite both
ways); a missing or unbuildable extension also falls back to it, so maskgate never depends on a
C compiler to be correct, only to be fast.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

PURE = os.environ.get("MASKGATE_PURE", "") not in ("", "0")


def load(name: str) -> ModuleType | None:
    """The native module `name`, or None when the reference must be used."""
    if PURE:
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
