"""A faster walk through the RETE network experta builds, with the same network and the same matches.

experta's nodes copy every token at every node, validate every token they build, call the ``MATCH`` logger at every
test, reset by recursing through the whole network and test a fact against every ``name == X`` node in turn. For a
rule base of a few hundred rules that is most of an evaluation. :func:`streamline` keeps the network experta built —
the same alpha tests, joins, ``TEST`` nodes and conflict-set nodes, wired the same way — and swaps each node's class
for a subclass that does the same work without that overhead:

* tokens are copied only where a node changes them (an alpha node that binds a variable), not at every node;
* tokens are built without re-validating their facts (experta built and checked those facts already);
* an alpha node whose children all test one field for equality with a literal, and whose own test binds no variable,
  dispatches on the field's value with one dictionary lookup instead of testing each child in turn (a node whose own
  test binds takes the general path, so the binding reaches the joins);
* a reset clears only the nodes that have memory, each once;
* the ``MATCH``/``MATCHER`` watchers are not called (radiopal never enables them; its own trace is the firings).

What matches is meant to stay what experta's own nodes match; ``tests/test_rete_streamlined.py`` holds the two to the
same firings on the shipped rules and on small rule sets with bindings, joins, ``NOT`` and ``TEST`` (not a proof for
every rule experta accepts: a node type this module does not know is refused, see :func:`streamline`).
Imported only when a rule base is compiled (it loads experta through :mod:`radiopal._experta`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from ._experta import experta

experta()  # experta's submodules need the import shim (and its contained logging) before they load

from experta.matchers.rete.check import FeatureCheck, WhereCheck  # noqa: E402
from experta.matchers.rete.mixins import ChildNode  # noqa: E402
from experta.matchers.rete.nodes import (  # noqa: E402
    BusNode,
    ConflictSetNode,
    FeatureTesterNode,
    NotNode,
    OrdinaryMatchNode,
    WhereNode,
)
from experta.matchers.rete.token import Token  # noqa: E402

_VALID = Token.TagType.VALID
_INVALID = Token.TagType.INVALID
_new_tuple = tuple.__new__
_MISSING = object()


def _token(tag: Any, data: set[Any], context: dict[Any, Any]) -> Token:
    """A Token built without experta's per-token validation (its facts were validated when declared)."""
    return _new_tuple(Token, (tag, data, context))


class FastBusNode(BusNode):
    """The root: sends a VALID (declared) or INVALID (retracted) token for a fact to the alpha network."""

    def add(self, fact: Any) -> None:
        token = _token(_VALID, {fact}, {})
        for child in self.children:
            child.callback(token)

    def remove(self, fact: Any) -> None:
        token = _token(_INVALID, {fact}, {})
        for child in self.children:
            child.callback(token)


class FastFeatureTesterNode(FeatureTesterNode):
    """An alpha test. The token is copied only when the test binds a variable (the one place a token changes)."""

    def activate(self, token: Token) -> None:
        match = self.matcher(next(iter(token[1])))
        if match:
            self._pass(token, match)

    def _pass(self, token: Token, match: Any) -> None:
        """Send ``token`` on to every child, with the binding ``match`` made (when the test made one)."""
        if match is not True and isinstance(match, Mapping):
            context = token[2]
            for key, value in match.items():
                if isinstance(key, tuple):  # a negated binding
                    if key[1] in context and context[key[1]] == value:
                        return
                else:
                    if context.get(key, value) != value:
                        return
                    if (False, key) in context and context[(False, key)] == value:
                        return
            token = _token(token[0], token[1], {**context, **match})
        for child in self.children:
            child.callback(token)


class DispatchNode(FastFeatureTesterNode):
    """An alpha node whose children each test ``fact[field] == literal``: one lookup finds the children that pass.

    ``table`` maps each literal to the grandchildren of the children testing for it; a passing equality test has no
    binding, so its node would only have forwarded the token to them unchanged. The lookup stands in for the children
    only when the node's *own* test bound nothing: when it binds a variable (``v=MATCH.v``), the token must carry that
    binding on, so the node takes the general path of :class:`FastFeatureTesterNode` (test each child in turn).
    """

    field: str
    table: dict[Any, tuple[Any, ...]]

    def activate(self, token: Token) -> None:
        fact = next(iter(token[1]))
        match = self.matcher(fact)
        if not match:
            return
        if match is not True and isinstance(match, Mapping):
            self._pass(token, match)  # the node's own test bound a variable: the general path keeps it
            return
        value = fact.get(self.field, _MISSING)
        try:
            targets = self.table.get(value, ())
        except TypeError:  # an unhashable value equals none of the (hashable) literals
            return
        for child in targets:
            child.callback(token)


class FastWhereNode(WhereNode):
    """A ``TEST``: calls the test with the bound variables it names; the token passes on unchanged."""

    parameters: tuple[str, ...]
    test: Any

    def activate(self, token: Token) -> None:
        context = token[2]
        if self.test(**{name: context.get(name) for name in self.parameters}):
            for child in self.children:
                child.callback(token)


class FastOrdinaryMatchNode(OrdinaryMatchNode):
    """A join of two partial matches, as experta's, without the token copies and the logging.

    Its memories hold ``(frozenset(facts), context)`` pairs: contexts are never changed once built (an alpha node
    that binds builds a new one), so they need not be frozen and thawed again on every join.
    """

    def _join(self, token: Token, branch_memory: list[Any], matching_memory: list[Any], is_left: bool) -> None:
        tag, data, context = token
        entry = (frozenset(data), context)
        if tag is _VALID:
            branch_memory.append(entry)
        else:
            with contextlib.suppress(ValueError):  # experta's behaviour: retracting an unknown entry is a no-op
                branch_memory.remove(entry)
        own = {k: v for k, v in context.items() if isinstance(k, str)}
        for other_data, other_context in matching_memory:
            match = self.matcher(context, other_context) if is_left else self.matcher(other_context, context)
            if not match:
                continue
            joined = dict(own)
            for key, value in other_context.items():
                if not isinstance(key, tuple):  # negated values are not needed any further
                    joined[key] = value
            new = _token(tag, data | other_data, joined)
            for child in self.children:
                child.callback(new)

    def activate_left(self, token: Token) -> None:
        self._join(token, self.left_memory, self.right_memory, True)

    def activate_right(self, token: Token) -> None:
        self._join(token, self.right_memory, self.left_memory, False)


class FastNotNode(NotNode):
    """experta's NOT node without the per-activation token copy (it never changes the token it receives)."""

    def activate_left(self, token: Token) -> None:
        self._activate_left(token)

    def activate_right(self, token: Token) -> None:
        self._activate_right(token)


class FastConflictSetNode(ConflictSetNode):
    """experta's conflict-set node without the per-activation token copy (it only reads the token)."""

    def activate(self, token: Token) -> None:
        self._activate(token)


_FAST = {
    BusNode: FastBusNode,
    FeatureTesterNode: FastFeatureTesterNode,
    WhereNode: FastWhereNode,
    OrdinaryMatchNode: FastOrdinaryMatchNode,
    NotNode: FastNotNode,
}


def streamline(root: BusNode, conflict_set_class: type = FastConflictSetNode) -> list[Any]:
    """Swap every node under ``root`` for its fast subclass and rebind the callbacks; return the nodes with memory.

    ``conflict_set_class`` must subclass :class:`FastConflictSetNode` (the matcher adds its own bookkeeping).
    Raises :class:`TypeError` for a node type this module does not know (a newer experta): better than a silent
    change of behaviour.
    """
    nodes = _all_nodes(root)
    for node in nodes:
        cls = type(node)
        if isinstance(node, ConflictSetNode):
            node.__class__ = conflict_set_class
        elif cls in _FAST:
            node.__class__ = _FAST[cls]
        elif cls not in _FAST.values():
            raise TypeError(f"radiopal does not know experta's RETE node type {cls.__name__}")
        if isinstance(node, FastWhereNode):
            check: WhereCheck = node.matcher
            node.test = check.test
            node.parameters = tuple(check.parameters)
    dispatchers = [node for node in nodes if type(node) is FastFeatureTesterNode and _dispatch_field(node)]
    for node in dispatchers:
        node.__class__ = DispatchNode
    # Callbacks are bound methods taken when experta wired the network: rebind them to the swapped classes.
    for node in nodes:
        node.children = [ChildNode(c.node, getattr(c.node, c.callback.__name__)) for c in node.children]
    for node in dispatchers:
        _fill_dispatch(node)
    return [n for n in nodes if isinstance(n, (OrdinaryMatchNode, NotNode, ConflictSetNode))]


def reset(memory_nodes: list[Any]) -> None:
    """Clear the memory of every node that has one (what experta's recursive reset achieves)."""
    for node in memory_nodes:
        node._reset()


def _all_nodes(root: Any) -> list[Any]:
    """Every node reachable from ``root``, each once, in depth-first order."""
    seen: set[int] = set()
    order: list[Any] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        order.append(node)
        stack.extend(c.node for c in reversed(node.children))
    return order


def _dispatch_field(node: FastFeatureTesterNode) -> str | None:
    """The field all of ``node``'s (two or more) children test for equality with a plain literal, else None."""
    children = node.children
    if len(children) < 2:
        return None
    fields = set()
    for child in children:
        check = getattr(child.node, "matcher", None)
        if type(child.node) is not FastFeatureTesterNode or not isinstance(check, FeatureCheck):
            return None
        if _plain_literal(check) is _MISSING:
            return None
        fields.add(check.what)
    return fields.pop() if len(fields) == 1 else None


def _fill_dispatch(node: DispatchNode) -> None:
    """Build ``node``'s table: literal → the children of the equality tests for that literal."""
    table: dict[Any, list[Any]] = {}
    for child in node.children:
        table.setdefault(_plain_literal(child.node.matcher), []).extend(child.node.children)
    node.field = node.children[0].node.matcher.what
    node.table = {value: tuple(targets) for value, targets in table.items()}


def _plain_literal(check: FeatureCheck) -> Any:
    """The literal of an equality test on a plain top-level field that binds nothing, else ``_MISSING``."""
    what = check.what
    if not isinstance(what, str) or "__" in what or what.isnumeric():
        return _MISSING
    if getattr(check.check, "__name__", "") != "equal_literal":
        return _MISSING
    expected = check.expected
    if getattr(expected, "__bind__", None) is not None:
        return _MISSING
    value = expected.value
    return value if isinstance(value, (str, int)) else _MISSING  # hashable, and equal only to equal values
