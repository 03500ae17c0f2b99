"""The `maskgate` command line: dispatches to one module per command family in proxy/commands/.

Each command module exposes `register(subparsers)`, adding its subcommands with a `func`
default that takes the parsed args and returns an exit code. This file owns only dispatch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Module names under proxy.commands; a family whose module is missing is simply not offered.
COMMAND_MODULES = ("scan", "policy", "discover", "serve", "status")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command family, or of `only` (a family name) and no other."""
    parser = argparse.ArgumentParser(
        prog="maskgate",
        description="Data-masking, least-privilege access proxy for databases and HTTP APIs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES if only is None else (only,):
        try:
            module = importlib.import_module(f"proxy.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"proxy.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    # A named command imports its own family only: `scan` needs neither policies nor sqlglot, whose
    # import alone cost it 0.4 s of start-up.
    parser = build_parser(argv[0] if argv and argv[0] in COMMAND_MODULES else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `maskgate scan | head` closes stdout early; that is not an error.
        return 0


if __name__ == "__main__":
    sys.exit(main())
