"""Binding filters to users: identity functions become escaped literals.

`user_attr('x')`, `user_name()` and `user_in_group('g')` are replaced by sqlglot literals
(escaped by the generator of each dialect, never pasted into SQL text). A user without an
attribute a filter needs raises MissingAttribute, and the caller makes that rule deny.
"""

from __future__ import annotations

from sqlglot import exp

from policies.filters import IDENTITY_FUNCTIONS
from policies.model import User


class MissingAttribute(Exception):
    """A filter asks for an attribute the user does not have: the rule must deny."""



def identity_needs(tree: exp.Expression) -> tuple[tuple[str, str], ...]:
    """The identity calls a filter makes, as (function, argument) pairs."""
    needs = set()
    for node in tree.find_all(exp.Anonymous):
        name = str(node.this).lower()
        if name in IDENTITY_FUNCTIONS:
            needs.add((name, str(node.expressions[0].this) if node.expressions else ""))
    return tuple(sorted(needs))


class Binder:
    """Binds filters to users, sharing the result between users with the same identity values.

    Bound trees are shared: callers must copy before mutating them.
    """

    def __init__(self) -> None:
        self._needs: dict[int, tuple[tuple[str, str], ...]] = {}
        self._bound: dict[tuple[int, tuple[object, ...]], exp.Expression | str] = {}

    def bind(self, tree: exp.Expression, user: User) -> exp.Expression:
        needs = self._needs.get(id(tree))
        if needs is None:
            needs = self._needs[id(tree)] = identity_needs(tree)
        if not needs:
            return tree
        key_parts: list[object] = []
        for name, arg in needs:
            if name == "user_name":
                key_parts.append(user.name)
            elif name == "user_in_group":
                key_parts.append(arg in user.groups)
            else:
                key_parts.append((type(user.attributes[arg]).__name__, user.attributes[arg])
                                 if arg in user.attributes else MissingAttribute)
        key = (id(tree), tuple(key_parts))
        if key not in self._bound:
            try:
                self._bound[key] = bind(tree, user)
            except MissingAttribute as missing:
                self._bound[key] = str(missing)
        bound = self._bound[key]
        if isinstance(bound, str):
            raise MissingAttribute(bound)
        return bound


def bind(tree: exp.Expression, user: User) -> exp.Expression:
    """A copy of `tree` with identity functions replaced by literals for `user`.

    Raises MissingAttribute when the user lacks an attribute the filter needs.
    """

    def replace(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.Anonymous) or str(node.this).lower() not in IDENTITY_FUNCTIONS:
            return node
        name = str(node.this).lower()
        if name == "user_name":
            return exp.Literal.string(user.name)
        arg = str(node.expressions[0].this)
        if name == "user_in_group":
            return exp.Boolean(this=arg in user.groups)
        if arg not in user.attributes:
            raise MissingAttribute(arg)
        return literal(user.attributes[arg])

    return tree.transform(replace)  # transform copies the tree first


def literal(value: str | int | float | bool) -> exp.Expression:
    """An escaped SQL literal for an attribute value (never pasted into SQL text)."""
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        return exp.Literal.number(repr(value)) if value >= 0 else exp.Neg(this=exp.Literal.number(repr(-value)))
    return exp.Literal.string(value)
