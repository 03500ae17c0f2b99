"""The policy model and SQL decision engine (see shared/DESIGN.md §3).

Public API used by the proxy: `load_policy`, `PolicyError`, `Engine`, `Schema`, and the
decision values in `policies.decision`.
"""

from policies.decision import Allow, Block, ColumnMask, Decision
from policies.engine import Engine
from policies.loader import PolicyError, load_policy
from policies.model import Policy, Role, User
from policies.schema import Schema

__all__ = [
    "Allow",
    "Block",
    "ColumnMask",
    "Decision",
    "Engine",
    "Policy",
    "PolicyError",
    "Role",
    "Schema",
    "User",
    "load_policy",
]
