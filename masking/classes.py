"""Owns the shared vocabulary of the masking library: class names, action names and the development key."""

from __future__ import annotations

from collections.abc import Iterable

CLASSES = ("mobile", "id_card", "bank_card", "uscc", "landline", "email", "person_name", "passport")
ACTIONS = ("clear", "mask", "hash", "fake", "redact", "null")

# USCCs identify organisations, not people (PII.md §6); tools that default to "personal data"
# (maskgate scan) leave them out unless asked.
PERSONAL_CLASSES = tuple(c for c in CLASSES if c != "uscc")

# A fixed, public key so that development output is reproducible. It protects nothing: the
# proxy passes a key from its configuration, and `maskgate scan` warns when it falls back to this.
DEFAULT_KEY = b"maskgate-development-key-not-secret"


def resolve_classes(classes: Iterable[str] | None) -> frozenset[str]:
    """Validate a class selection; None means every class."""
    if classes is None:
        return frozenset(CLASSES)
    if isinstance(classes, str):
        classes = (classes,)
    chosen = frozenset(classes)
    unknown = chosen - set(CLASSES)
    if unknown:
        raise ValueError(f"unknown PII class(es): {', '.join(sorted(unknown))}; known: {', '.join(CLASSES)}")
    return chosen


def check_action(action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown masking action {action!r}; known: {', '.join(ACTIONS)}")
    return action
