"""`maskgate token USER`: a new HTTP bearer token, and the hash of it the policy stores.

Owns argument parsing and printing only; tokens and their digests come from policies/passwords.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from policies import PolicyError, load_policy
from policies.passwords import new_token, token_digest


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "token",
        help="print a new bearer token for USER (line 1) and the `tokens:` entry for the policy (line 2)",
    )
    p.add_argument("user")
    p.add_argument("--policy", help="check that USER exists in this policy file or directory")
    p.set_defaults(func=cmd_token)


def cmd_token(args: argparse.Namespace) -> int:
    if args.policy:
        try:
            policy = load_policy(args.policy)
        except PolicyError as e:
            for err in e.errors:
                print(err, file=sys.stderr)
            return 1
        if args.user not in policy.users:
            print(f"unknown user {args.user} in {args.policy}", file=sys.stderr)
            return 1
    token = new_token()
    # stdout holds exactly the two lines a script reads; the advice goes to stderr.
    print(token)
    print(f'tokens: ["sha256:{token_digest(token)}"]')
    print(
        f"add the second line under users.{args.user} (append to its list if it has tokens); "
        "the token is shown only this once and the policy keeps only its hash",
        file=sys.stderr,
    )
    return 0
