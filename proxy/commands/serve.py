"""`maskgate serve --config FILE`: run the proxy; and `maskgate demo`: the embedded tour."""

from __future__ import annotations

import argparse
import asyncio
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the proxy with a config file")
    p.add_argument("--config", required=True, help="maskgate.yaml (docs/config.md)")
    p.set_defaults(func=run_serve)
    d = sub.add_parser("demo", help="start an embedded PostgreSQL with fake customers and the proxy in front")
    d.add_argument("--dir", default="var/demo", help="where the demo keeps its database and config")
    d.add_argument("--port", type=int, default=6432, help="proxy port for PostgreSQL clients")
    d.add_argument("--customers", type=int, default=10_000)
    d.add_argument("--no-wait", action="store_true", help="print the tour and exit instead of serving")
    d.set_defaults(func=run_demo)


def _event_loop_policy() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_serve(args: argparse.Namespace) -> int:
    from proxy.app import serve
    from proxy.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"maskgate: {exc}", file=sys.stderr)
        return 2
    from policies import PolicyError

    if config.workers > 1:
        from proxy.workers import supervise

        return supervise(config)
    _event_loop_policy()
    try:
        return asyncio.run(serve(config))
    except PolicyError as exc:
        for err in getattr(exc, "errors", [exc]):
            print(err, file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"maskgate: {exc}", file=sys.stderr)
        return 1


def run_demo(args: argparse.Namespace) -> int:
    from proxy.demo.tour import run

    _event_loop_policy()
    return asyncio.run(run(args))
