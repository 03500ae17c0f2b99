"""SQL understanding for the policy engine: dialect facts, parsing, identifier folding, description.

Owns everything that reads SQL text or trees: what a statement is, what it reads and writes, and
the per-dialect facts that shape those answers. Never judges a role (policies/decide.py does) and
never imports from proxy/.
"""
