"""Owns masking of a response head: the status line's reason phrase, header names and header values.
Pure: strings in, strings out; must not touch mitmproxy, sockets, bodies or policies.

A head reaches the client as readably as a body does: a browser follows a `Location` whose query
holds `138+1234+5678`, shows a reason phrase, saves a download under its Content-Type's `name=`.
So every header value gets what a body's text gets (the detectors, then the numbers hidden behind
percent-encoding, `+`, references and base64/hex: encoded.py), the Content-Type's parameters
included. A header whose name holds a detected number is dropped (a name cannot be masked into
another header's meaning), and the reason phrase, free text an API may fill with a record, is
replaced by the standard phrase of the status code.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from masking.encoded import scanner

# Headers whose values are structure, not data (scanning them costs time and finds nothing).
# Content-Type is not among them: its parameters (a legacy `name=`) are free text.
STRUCTURAL = frozenset({"content-length", "content-encoding", "transfer-encoding", "date"})


# The detectors' text masker extended to what encodings hide (as bodies read text).
text_scanner = scanner


def standard_reason(status: int) -> str:
    """The standard reason phrase of `status` ("" for a code without one: HTTP/1.1 allows it)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def mask_headers(
    fields: list[tuple[str, str]], scan: Callable[[str], str]
) -> tuple[list[tuple[str, str]], int]:
    """(the header fields masked, how many were changed or dropped). Order and repeats are kept."""
    out: list[tuple[str, str]] = []
    changed = 0
    for name, value in fields:
        if scan(name) != name:
            changed += 1
            continue
        if name.lower() in STRUCTURAL:
            out.append((name, value))
            continue
        new = scan(value)
        if new != value:
            changed += 1
        out.append((name, new))
    return out, changed
