"""The one place radiopal touches experta's import-time quirks.

* experta 1.9.4 pins frozendict 1.2, which subclasses ``collections.Mapping`` (removed in Python 3.10). We add that
  alias, only when it is missing, so a plain ``pip install radiopal`` works (shared notes, experta B.2 option b).
* experta calls ``logging.basicConfig()`` at import, which would configure the host application's root logger. We
  import it with ``basicConfig`` made inert, so the host's logging is untouched.
* experta's ``DepthStrategy`` can leave a stale activation on the agenda (shared notes B.7). ``ExactRemovalStrategy``
  searches the whole run of equal keys when removing one.

Nothing here runs at radiopal import time: :func:`experta` is called when a rule base is compiled.
"""

from __future__ import annotations

import bisect
import collections
import collections.abc
import logging
import threading
from functools import cache
from types import ModuleType
from typing import Any

_lock = threading.Lock()
_module: ModuleType | None = None


def experta() -> ModuleType:
    """Import experta once, without its side effects on logging, and return the module."""
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            if not hasattr(collections, "Mapping"):
                collections.Mapping = collections.abc.Mapping  # type: ignore[attr-defined]
            original = logging.basicConfig
            logging.basicConfig = _inert_basic_config
            try:
                import experta as module
            finally:
                logging.basicConfig = original
            # experta's loggers must not print unless the host asks them to.
            logging.getLogger("experta").addHandler(logging.NullHandler())
            _module = module
    return _module


def _inert_basic_config(*_args: Any, **_kwargs: Any) -> None:
    """Stands in for logging.basicConfig while experta is imported."""


def exact_removal_strategy() -> type:
    """Return a DepthStrategy subclass whose removal finds the exact activation among equal keys."""
    return _strategy_class()


@cache
def tracked_matcher() -> type:
    """Return a ReteMatcher subclass that only visits the conflict-set nodes that changed, on a streamlined network.

    experta's ``changes()`` asks every rule's conflict-set node for new activations after every declaration and
    every firing, which makes a run cost rules × firings. Here each conflict-set node reports itself when it is
    activated, and ``changes()`` visits just those, in network order (so the agenda is filled deterministically).
    The network's nodes are swapped for the leaner ones of :mod:`radiopal._rete` (same network, same matches).
    """
    experta()  # the import shim must be in place before experta's submodules load
    from experta.matchers.rete import ReteMatcher

    from . import _rete

    class TrackedConflictSetNode(_rete.FastConflictSetNode):
        """A conflict-set node that tells its matcher when it has new (de)activations."""

        def activate(self, token: Any) -> None:
            self._activate(token)
            self._radiopal_dirty.add(self._radiopal_index)

    class TrackedReteMatcher(ReteMatcher):
        """ReteMatcher whose ``changes()`` is proportional to what changed, not to the number of rules."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._radiopal_dirty: set[int] = set()
            self._radiopal_nodes = list(self._get_conflict_set_nodes())
            self._radiopal_memory = _rete.streamline(self.root_node, TrackedConflictSetNode)
            for index, node in enumerate(self._radiopal_nodes):
                node._radiopal_index = index
                node._radiopal_dirty = self._radiopal_dirty

        def reset(self) -> None:
            _rete.reset(self._radiopal_memory)
            for index in self._radiopal_dirty:  # drop (de)activations left by an evaluation that raised
                self._radiopal_nodes[index].get_activations()
            self._radiopal_dirty.clear()

        def changes(self, adding: Any = None, deleting: Any = None) -> tuple[list[Any], list[Any]]:
            if deleting is not None:
                for deleted in deleting:
                    self.root_node.remove(deleted)
            if adding is not None:
                for added in adding:
                    self.root_node.add(added)
            activated: list[Any] = []
            deactivated: list[Any] = []
            dirty = sorted(self._radiopal_dirty)
            self._radiopal_dirty.clear()
            for index in dirty:
                c_added, c_removed = self._radiopal_nodes[index].get_activations()
                activated.extend(c_added)
                deactivated.extend(c_removed)
            return activated, deactivated

    return TrackedReteMatcher


@cache
def engine_base(streamlined: bool = True) -> type:
    """A KnowledgeEngine with radiopal's strategy and matcher, whose reset does not rescan the engine's members.

    experta's ``reset()`` finds the ``DefFacts`` by ``inspect.getmembers`` over the whole engine (every rule) on each
    call; the engine's DefFacts never change after construction, so the list is found once per engine.
    ``streamlined=False`` gives experta's own engine and RETE network with only the stale-activation fix: slower, and
    the reference the streamlined one is tested against.
    """
    xp: Any = experta()
    if not streamlined:
        return type("PlainRadiopalKnowledgeEngine", (xp.KnowledgeEngine,), {"__strategy__": _strategy_class()})

    class RadiopalKnowledgeEngine(xp.KnowledgeEngine):
        __strategy__ = _strategy_class()
        __matcher__ = tracked_matcher()

        def run(self, steps: float = float("inf")) -> None:
            """experta's run loop, except that the ``RULES`` watcher's line is formatted only when it is on.

            experta builds that line (every fact of the activation as text) for every firing, logged or not.
            """
            rules_watcher = xp.watchers.RULES
            self.running = True
            execution = 0
            while steps > 0 and self.running:
                added, removed = self.get_activations()
                self.strategy.update_agenda(self.agenda, added, removed)
                if xp.watchers.worth("AGENDA", "DEBUG"):  # pragma: no cover - a debugging aid of experta's
                    for idx, act in enumerate(self.agenda.activations):
                        xp.watchers.AGENDA.debug("%d: %r %r", idx, act.rule.__name__,
                                                 ", ".join(str(f) for f in act.facts))
                activation = self.agenda.get_next()
                if activation is None:
                    break
                steps -= 1
                execution += 1
                if rules_watcher.isEnabledFor(logging.INFO):
                    rules_watcher.info("FIRE %s %s: %s", execution, activation.rule.__name__,
                                       ", ".join(str(f) for f in activation.facts))
                activation.rule(self, **{k: v for k, v in activation.context.items() if not k.startswith("__")})
            self.running = False

        def get_deffacts(self) -> list[Any]:
            cached = self.__dict__.get("_radiopal_deffacts")
            if cached is None:
                cached = super().get_deffacts()
                self.__dict__["_radiopal_deffacts"] = cached
            return cached

    return RadiopalKnowledgeEngine


@cache
def _strategy_class() -> type:
    from experta.strategies import DepthStrategy  # experta() has run: the shim is in place

    class ExactRemovalStrategy(DepthStrategy):
        """DepthStrategy whose removal searches every activation sharing the removed one's key."""

        def _update_agenda(self, agenda: Any, added: Any, removed: Any) -> None:
            activations = agenda.activations
            for act in removed:
                act.key = self.get_key(act)
                lo = bisect.bisect_left(activations, act)
                hi = bisect.bisect_right(activations, act)
                for idx in range(lo, hi):
                    if activations[idx] == act:
                        del activations[idx]
                        break
            for act in added:
                act.key = self.get_key(act)
                bisect.insort(activations, act)

    return ExactRemovalStrategy


def __getattr__(name: str) -> Any:
    # Lets `python experta_stale_activation.py radiopal._experta:ExactRemovalStrategy` find the class.
    if name == "ExactRemovalStrategy":
        experta()
        return _strategy_class()
    raise AttributeError(name)
