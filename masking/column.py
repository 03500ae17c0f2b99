"""Owns the class-by-action dispatch: which masker one column's values get.

A column carries one class (or none) and the role's action for it; this module picks the
function (identity, NULL, the free-text container masker, or the typed display/hash/fake/redact
masker of masking/maskers.py) and caches it. It sits on top of the other masking modules so that
maskers.py, text.py and free_text.py import each other in one direction only:
maskers <- text <- free_text <- column.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from masking.classes import CLASSES, DEFAULT_KEY, FREE_TEXT, check_action
from masking.free_text import build_free_text_masker
from masking.maskers import make_int_fn, make_str_fn, typed_masker


def _check_cls(cls: str | None) -> None:
    if cls is not None and cls not in CLASSES:
        raise ValueError(f"unknown PII class {cls!r}; known: {', '.join(CLASSES)}")


def _identity(value: Any) -> Any:
    return value


def _to_null(value: Any) -> None:
    return None


def make_masker(cls: str | None, action: str, *, key: bytes = DEFAULT_KEY) -> Callable[[Any], Any]:
    """A function that masks one column's values; build it once per column and call it per row."""
    return _build_masker(cls, action, key)


@lru_cache(maxsize=256)
def _build_masker(cls: str | None, action: str, key: bytes) -> Callable[[Any], Any]:
    _check_cls(cls)
    check_action(action)
    if action == "clear":
        return _identity
    if action == "null":
        return _to_null
    if cls == FREE_TEXT:
        return build_free_text_masker(action, key)
    return typed_masker(make_str_fn(cls, action, key), make_int_fn(cls, action, key))


def mask_value(
    value: str | int | bytes | None, cls: str | None, action: str, *, key: bytes = DEFAULT_KEY
) -> str | int | bytes | None:
    """Mask one value of class `cls` (None: unclassified, generic rules) with `action`."""
    return _build_masker(cls, action, key)(value)
