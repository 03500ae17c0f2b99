"""Owns the public API of the masking library: PII detection and type-preserving maskers.

Pure functions with no configuration, protocol or I/O knowledge (no sqlglot, asyncio, sockets,
yaml). See PII.md for the formats, checksums and display rules implemented here.
"""

from __future__ import annotations

from masking.classes import ACTIONS, CLASSES, DEFAULT_KEY, PERSONAL_CLASSES
from masking.column import make_masker, mask_value
from masking.detectors import Span, detect
from masking.text import make_text_masker, mask_text

__all__ = [
    "ACTIONS",
    "CLASSES",
    "DEFAULT_KEY",
    "PERSONAL_CLASSES",
    "Span",
    "detect",
    "make_masker",
    "make_text_masker",
    "mask_text",
    "mask_value",
]
