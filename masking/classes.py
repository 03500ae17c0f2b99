"""Owns the shared vocabulary of the masking library: class names, action names and the development key."""

from __future__ import annotations

from collections.abc import Iterable

CLASSES = (
    "mobile",
    "id_card",
    "bank_card",
    "uscc",
    "landline",
    "email",
    "person_name",
    "passport",
    "address",
    "ip_address",
    "free_text",
)
ACTIONS = ("clear", "mask", "hash", "fake", "redact", "null")

# The default of tools that scan for "personal data" (maskgate scan); other classes only when asked.
# Left out: uscc (identifies organisations, not people: PII.md §6); ip_address (log text is full of
# server and infrastructure addresses, so scanning for them by default would mostly mask noise);
# address (column masking only, no free-text detector yet: it would find nothing); free_text (a
# container class for whole note/comment columns, masked by running the detectors: masking/free_text.py).
# `None` in mask_text/detect still means every class in CLASSES.
FREE_TEXT = "free_text"
PERSONAL_CLASSES = ("mobile", "id_card", "bank_card", "landline", "email", "person_name", "passport")

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
