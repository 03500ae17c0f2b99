"""The `maskgate` command line: dispatches to one module per command family in proxy/commands/.

Each command module exposes `register(subparsers)`, adding its subcommands with a `func`
default that takes the parsed args and returns an exit code. This file owns only dispatch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Module names under proxy.commands; a family whose module is missing is simply not offered.
COMMAND_MODULES = ("scan", "policy", "discover", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskgate",
        description="Data-masking, least-privilege access proxy for databases and HTTP APIs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"proxy.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"proxy.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
