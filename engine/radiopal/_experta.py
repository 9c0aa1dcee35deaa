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
            logging.basicConfig = _inert_basic_config  # type: ignore[assignment]
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
    """Return a ReteMatcher subclass that only visits the conflict-set nodes that changed.

    experta's ``changes()`` asks every rule's conflict-set node for new activations after every declaration and
    every firing, which makes a run cost rules × firings. Here each conflict-set node reports itself when it is
    activated, and ``changes()`` visits just those, in network order (so the agenda is filled deterministically).
    """
    from experta.matchers.rete import ReteMatcher
    from experta.matchers.rete.nodes import ConflictSetNode

    class TrackedConflictSetNode(ConflictSetNode):  # type: ignore[misc, valid-type]
        """A conflict-set node that tells its matcher when it has new (de)activations."""

        def _activate(self, token: Any) -> None:
            super()._activate(token)
            self._radiopal_dirty.add(self._radiopal_index)

    class TrackedReteMatcher(ReteMatcher):  # type: ignore[misc, valid-type]
        """ReteMatcher whose ``changes()`` is proportional to what changed, not to the number of rules."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._radiopal_dirty: set[int] = set()
            self._radiopal_nodes = list(self._get_conflict_set_nodes())
            for index, node in enumerate(self._radiopal_nodes):
                node.__class__ = TrackedConflictSetNode
                node._radiopal_index = index
                node._radiopal_dirty = self._radiopal_dirty

        def changes(self, adding: Any = None, deleting: Any = None) -> tuple[list[Any], list[Any]]:
            if deleting is not None:
                for deleted in deleting:
                    self.root_node.remove(deleted)
            if adding is not None:
                for added in adding:
                    self.root_node.add(added)
            added: list[Any] = []
            removed: list[Any] = []
            dirty = sorted(self._radiopal_dirty)
            self._radiopal_dirty.clear()
            for index in dirty:
                c_added, c_removed = self._radiopal_nodes[index].get_activations()
                added.extend(c_added)
                removed.extend(c_removed)
            return added, removed

    return TrackedReteMatcher


@cache
def _strategy_class() -> type:
    from experta.strategies import DepthStrategy  # experta() has run: the shim is in place

    class ExactRemovalStrategy(DepthStrategy):  # type: ignore[misc, valid-type]
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
