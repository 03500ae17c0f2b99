"""`maskgate scan`: masks PII in text streams (stdin or files) line by line, for dumps and logs.

Owns only the command-line plumbing around masking.make_text_masker. Lines are read as bytes and
decoded with `surrogateescape`, so arbitrary binary passes through unchanged apart from masked spans,
and memory stays flat however large the input is.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from typing import Any, BinaryIO

from masking import DEFAULT_KEY, PERSONAL_CLASSES, make_text_masker

SCAN_ACTIONS = ("mask", "hash", "fake", "redact")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="mask PII in text read from stdin or files",
        description="Copy input to stdout with every detected value of the chosen PII classes masked.",
    )
    parser.add_argument("files", nargs="*", help="files to read (default: stdin; '-' also means stdin)")
    parser.add_argument(
        "--classes",
        default=",".join(PERSONAL_CLASSES),
        help="comma-separated PII classes (default: all personal classes: %(default)s)",
    )
    parser.add_argument("--action", choices=SCAN_ACTIONS, default="mask", help="what to do with a hit")
    parser.add_argument("--key-env", metavar="VAR", help="environment variable holding the hash/fake key")
    parser.set_defaults(func=run)


# Lines are masked in batches of up to about this many bytes and written with one call: stdout may
# be unbuffered (PYTHONUNBUFFERED=1, common in containers), where a write per line cost a system
# call per line, a quarter of the CPU of a scan.
BATCH_BYTES = 1 << 16


def _mask_lines(masker: Any, lines: list[bytes]) -> bytes:
    masked = [masker(raw.decode("utf-8", "surrogateescape")) for raw in lines]
    return "".join(masked).encode("utf-8", "surrogateescape")


def _stream(masker: Any, src: BinaryIO, dst: BinaryIO) -> None:
    if _is_regular(src):
        while lines := src.readlines(BATCH_BYTES):
            dst.write(_mask_lines(masker, lines))
        return
    # A pipe or tty: a consumer must see each line's output as soon as the line has arrived, so
    # every line already received is masked and flushed before the next read can block; what
    # arrived together is written together (`cat big.log | maskgate scan` is not a write per line).
    pending = b""
    while chunk := src.read1(BATCH_BYTES):  # type: ignore[attr-defined]
        data = pending + chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            # Split at b"\n" only, as iterating a binary file does (not at \r or \x0b).
            dst.write(_mask_lines(masker, [line + b"\n" for line in data[: cut - 1].split(b"\n")]))
            dst.flush()
        pending = data[cut:]
    if pending:
        dst.write(_mask_lines(masker, [pending]))
        dst.flush()


def _is_regular(f: BinaryIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(f.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False


def run(args: argparse.Namespace) -> int:
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    key = DEFAULT_KEY
    if args.key_env:
        value = os.environ.get(args.key_env)
        if not value:
            print(f"maskgate scan: environment variable {args.key_env} is not set or empty", file=sys.stderr)
            return 2
        key = value.encode()
    elif args.action in ("hash", "fake"):
        print(
            "maskgate scan: warning: no --key-env given; using the public development key, "
            "so tokens and fakes can be reproduced by anyone",
            file=sys.stderr,
        )
    try:
        masker = make_text_masker(classes, args.action, key=key)
    except ValueError as exc:
        print(f"maskgate scan: {exc}", file=sys.stderr)
        return 2

    out = sys.stdout.buffer
    for name in args.files or ["-"]:
        if name == "-":
            _stream(masker, sys.stdin.buffer, out)
            continue
        try:
            with open(name, "rb") as src:
                _stream(masker, src, out)
        except OSError as exc:
            print(f"maskgate scan: {name}: {exc.strerror}", file=sys.stderr)
            return 1
    out.flush()
    return 0
