"""Property: respelling a statement's names never changes what maskgate decides about the object
they name, and naming another object never buys fewer masks.

Over the DBA fixture corpus (PostgreSQL statements), each name is respelled:
- the same object to PostgreSQL: an unquoted name (or keyword) in any mix of cases, or the name
  quoted exactly as it folds ("customers"); the decision must be the same as for the original;
- another object: one name quoted with a capital letter ("Customers"); the decision must never be
  less restricted than the original (allowed where it was refused, a weaker mask on a column, a
  looser row limit), unless it reads a relation the schema does not know: the server reads (or
  fails on) another relation altogether, and maskgate's rules for unknown relations apply (what
  the policy classifies there never comes out clear).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.tokens import TokenType

from policies import Allow, Block, Engine, Schema, load_policy
from policies.cases import _role_for
from policies.decision import Decision
from policies.model import ACTION_STRENGTH
from policies.names import TableName
from policies.sql.dialects import POSTGRES
from policies.sql.parser import Unparsable, parse_one, tokenize

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
_PLAIN = re.compile(r"[a-z_][a-z0-9_]*")
_KEYWORDS = frozenset(Dialect.get_or_raise("postgres").tokenizer_class.KEYWORDS)


# (start, end, text, quotable, names a schema object): a slot of a name token. A name the
# statement defines (an alias, a CTE) is quotable but no object of the schema: quoting it with a
# capital letter changes which output or relation the statement's other words mean.
Slot = tuple[int, int, str, bool, bool]


def _corpus() -> list[tuple[Engine, Schema, str, str, tuple[str, ...] | None, list[Slot]]]:
    """(engine, schema, role, sql, search_path, name slots) for every single-statement PostgreSQL
    case whose tree is a sqlglot statement."""
    out = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        pol = doc["policy"]
        policy = load_policy([path.parent / p for p in pol] if isinstance(pol, list) else path.parent / pol)
        schema = Schema.load(path.parent / doc["schema"]) if doc.get("schema") else Schema()
        engine = Engine(policy, schema)
        for case in doc.get("cases") or []:
            if case.get("dialect", "postgres") != "postgres" or case.get("database"):
                continue
            role = _role_for(policy, case)
            sql = case["sql"]
            try:
                tree = parse_one(sql, POSTGRES)
                tokens = tokenize(sql, POSTGRES)
            except Unparsable:
                continue
            if not isinstance(tree, exp.Expression) or role is None:
                continue
            names = {i.name for i in tree.find_all(exp.Identifier) if not i.quoted}
            defined = {a.alias for a in tree.find_all(exp.Alias, exp.TableAlias, exp.CTE)} | {
                c.name for a in tree.find_all(exp.TableAlias) for c in a.columns
            }
            slots = []
            for k, tok in enumerate(tokens):
                if tok.token_type != TokenType.VAR:
                    continue
                followed_by_call = k + 1 < len(tokens) and tokens[k + 1].token_type == TokenType.L_PAREN
                low = tok.text.lower()
                quotable = (
                    low in names
                    and _PLAIN.fullmatch(low) is not None
                    and tok.text.upper() not in _KEYWORDS
                    and not followed_by_call
                )
                slots.append((tok.start, tok.end + 1, tok.text, quotable, quotable and low not in defined))
            if slots:
                sp = case.get("search_path")
                out.append((engine, schema, role, sql, tuple(sp) if sp else None, slots))
    return out


CORPUS = _corpus()
OBJECTS = [c for c in CORPUS if any(obj for *_, obj in c[5])]


def _respell(sql: str, slots: list[Slot], spellings: list[str]) -> str:
    parts, last = [], 0
    for (start, end, *_), spelling in zip(slots, spellings, strict=True):
        parts += [sql[last:start], spelling]
        last = end
    parts.append(sql[last:])
    return "".join(parts)


@st.composite
def same_object(draw: st.DrawFn, slots: list[Slot]) -> list[str]:
    out = []
    for _, _, text, quotable, _ in slots:
        how = draw(st.sampled_from(["keep", "case", "quote"] if quotable else ["keep", "case"]))
        if how == "case":
            flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
            out.append("".join(c.upper() if f else c.lower() for c, f in zip(text, flips, strict=True)))
        elif how == "quote":
            out.append(f'"{text.lower()}"')
        else:
            out.append(text)
    return out


def _summary(d: Decision) -> tuple[Any, ...]:
    if isinstance(d, Block):
        return ("block", d.reason)
    return (
        "allow",
        d.kind,
        tuple((c.index, c.name, c.cls, c.action, c.sources) for c in d.columns),
        d.row_limit,
        d.tables,
        d.classes,
        d.search_path,
    )


def _decide(engine: Engine, role: str, sql: str, search_path: tuple[str, ...] | None) -> Decision:
    return engine.decide(role, sql, search_path=search_path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_respelling_the_same_object_decides_the_same(data: st.DataObject) -> None:
    engine, _, role, sql, sp, slots = data.draw(st.sampled_from(CORPUS))
    variant = _respell(sql, slots, data.draw(same_object(slots)))
    assert _summary(_decide(engine, role, variant, sp)) == _summary(_decide(engine, role, sql, sp)), variant


def _unknown_relation(schema: Schema, table: str) -> bool:
    schema_name, _, name = table.rpartition(".")
    return (schema_name, name) not in schema.tables


def _another_relation(variant: Allow, original: Decision, engine: Engine) -> bool | None:
    """None when the variant reads no relation the schema does not know that the original did
    not read. Otherwise it reads another relation (which the server reads, or fails on), and
    maskgate's rules for unknown relations apply: True unless one of its classified columns
    came out clear."""
    before = original.tables if isinstance(original, Allow) else ()
    others = {t for t in variant.tables if t not in before and _unknown_relation(engine.schema, t)}
    if not others:
        return None
    for c in variant.columns:
        for source in c.sources:
            relation = source.rpartition(".")[0]
            schema_name, _, name = relation.rpartition(".")
            table = TableName(engine.schema.database, schema_name, name)
            if (
                relation in others
                and c.action == "clear"
                and engine.policy.table_has_classes(table, POSTGRES.default_schema)
            ):
                return False
    return True


def _never_less_restricted(variant: Decision, original: Decision, engine: Engine) -> bool:
    if isinstance(variant, Block):
        return True
    assert isinstance(variant, Allow)
    other = _another_relation(variant, original, engine)
    if other is not None:
        return other
    if isinstance(original, Block):
        return False
    assert isinstance(original, Allow)
    limit = original.row_limit
    if limit is not None and (variant.row_limit is None or variant.row_limit > limit):
        return False
    if not variant.columns:
        return True  # unknown shape: masked for every role that does not see all classes clear
    for oc in original.columns:
        vc = variant.columns[oc.index] if oc.index < len(variant.columns) else None
        if vc is not None and ACTION_STRENGTH[vc.action] >= ACTION_STRENGTH[oc.action]:
            continue
        return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_naming_another_object_is_never_less_restricted(data: st.DataObject) -> None:
    engine, _, role, sql, sp, slots = data.draw(st.sampled_from(OBJECTS))
    k = data.draw(st.sampled_from([k for k, (*_, obj) in enumerate(slots) if obj]))
    spellings = [text for _, _, text, *_ in slots]
    low = spellings[k].lower()
    spellings[k] = f'"{low[0].upper()}{low[1:]}"' if low[0].isalpha() else f'"{low}X"'
    variant = _respell(sql, slots, spellings)
    original = _decide(engine, role, sql, sp)
    decided = _decide(engine, role, variant, sp)
    assert _never_less_restricted(decided, original, engine), (variant, decided, original)


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 300
