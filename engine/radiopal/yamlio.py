"""Safe, bounded reading of YAML and JSON with source positions.

YAML is composed with ``yaml.SafeLoader`` (never a loader that builds Python objects) and then walked by us, so we
can: record the line and column of every value, reject duplicate keys, bound alias expansion (a "billion laughs"
document is an error, not an out-of-memory), bound nesting and size, and turn dates back into ISO strings so YAML and
JSON inputs are the same data.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError, Problem

MAX_BYTES = 8 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "Located", "SourceMap", "load_document", "load_text"]


@dataclass
class SourceMap:
    """Maps a value's path (a tuple of keys and indexes) to its 1-based (line, column) in the source."""

    file: str = ""
    positions: dict[tuple[Any, ...], tuple[int, int]] = field(default_factory=dict)

    def where(self, path: tuple[Any, ...]) -> tuple[int, int]:
        """The position of ``path``, or of its nearest ancestor that has one."""
        while True:
            if path in self.positions:
                return self.positions[path]
            if not path:
                return (0, 0)
            path = path[:-1]


@dataclass
class Located:
    """A parsed document with its source map."""

    data: Any
    source: SourceMap


def dotted(path: tuple[Any, ...] | list[Any]) -> str:
    """``('labs', 'platelets', 'unit')`` → ``labs.platelets.unit``; list indexes as ``[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def load_document(path: str | Path, *, kind: str = "document", max_bytes: int = MAX_BYTES) -> Located:
    """Read a YAML or JSON file (by suffix; YAML otherwise) into plain data, or raise :class:`InputError`."""
    p = Path(path)
    name = str(path)
    try:
        raw = p.read_bytes()
    except IsADirectoryError as exc:
        raise InputError(f"{name}: is a directory, expected a {kind} file",
                         [Problem("is a directory", file=name)]) from exc
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror}",
                         [Problem(f"cannot read: {exc.strerror}", file=name)]) from exc
    except ValueError as exc:  # a NUL byte in the path
        raise InputError(f"{name!r}: not a usable file name: {exc}",
                         [Problem(f"not a usable file name: {exc}", file=repr(name))]) from exc
    return load_text(raw, file=name, kind=kind, as_json=p.suffix.lower() == ".json", max_bytes=max_bytes)


def load_text(
    raw: bytes | str,
    *,
    file: str = "<input>",
    kind: str = "document",
    as_json: bool = False,
    max_bytes: int = MAX_BYTES,
) -> Located:
    """Parse bytes or text as YAML (or JSON) with the limits of this module."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > max_bytes:
        _fail(file, f"{kind} is {len(raw):,} bytes, more than the limit of {max_bytes:,}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(file, f"not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); expected a UTF-8 {kind}")
    # A UTF-8 byte-order mark (Windows editors, some EHR exports) is not content: RFC 8259 §8.1 lets a parser ignore it.
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        _fail(file, f"contains NUL bytes; expected a UTF-8 text {kind}")
    if not text.strip():
        _fail(file, f"is empty; expected a {kind}")
    if as_json:
        return _load_json(text, file, kind)
    return _load_yaml(text, file, kind)


def _fail(file: str, message: str, line: int = 0, column: int = 0) -> None:
    raise InputError(f"{file}: {message}", [Problem(message, file=file, line=line, column=column)])


def _load_json(text: str, file: str, kind: str) -> Located:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"duplicate key {key!r}")
            out[key] = value
        return out

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        _fail(file, f"invalid JSON: {exc.msg}", exc.lineno, exc.colno)
    except ValueError as exc:
        _fail(file, f"invalid JSON: {exc}")
    except RecursionError:
        _too_deep(file)
    _check_depth(data, file)
    return Located(data, SourceMap(file))


def check_depth(data: Any, file: str = "<input>") -> None:
    """Raise :class:`InputError` when already-parsed data nest deeper than MAX_DEPTH."""
    _check_depth(data, file)


def _check_depth(data: Any, file: str) -> None:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            _too_deep(file)
        if isinstance(value, dict):
            for key in value:
                _check_unicode(key, file)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        else:
            _check_unicode(value, file)


def _too_deep(file: str, line: int = 0, column: int = 0) -> None:
    """Refuse a document nested beyond MAX_DEPTH (found by our walk, our event check or libyaml's own guard)."""
    _fail(file, f"nesting is too deep (limit {MAX_DEPTH})", line, column)


def _check_unicode(value: Any, file: str, line: int = 0, column: int = 0) -> None:
    """Text must be encodable as UTF-8: an escaped lone surrogate (``"\\ud800"``) is not a character."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            _fail(file, f"text {value[:40]!r} holds a lone surrogate escape; expected valid Unicode text", line, column)


class _Walker:
    """Turns a composed YAML node tree into plain data, recording positions and enforcing limits."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.source = SourceMap(file)
        self.nodes = 0
        self.constructor = yaml.SafeLoader("")

    def walk(self, node: yaml.Node, path: tuple[Any, ...], depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            _fail(self.file, f"expands to more than {MAX_NODES:,} values (alias expansion or size limit)")
        if depth > MAX_DEPTH:
            _too_deep(self.file, node.start_mark.line + 1)
        self.source.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _COLLECTION_TAGS:
            _fail(self.file, f"unsupported YAML tag {node.tag!r}; expected a plain mapping or list",
                  node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: tuple[Any, ...], depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _fail(self.file, "merge keys (<<) are not supported", key_node.start_mark.line + 1)
            if not isinstance(key_node, yaml.ScalarNode):
                _fail(self.file, "mapping keys must be plain scalars", key_node.start_mark.line + 1,
                      key_node.start_mark.column + 1)
            key = self._scalar(key_node)
            if isinstance(key, (dt.date, dt.datetime)):
                key = key.isoformat()
            if key in out:
                _fail(self.file, f"duplicate key {key!r} at {dotted((*path, key)) or 'top level'}",
                      key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.walk(value_node, (*path, key), depth + 1)
        return out

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            value = self.constructor.construct_object(node, deep=True)
        except (ValueError, OverflowError) as exc:  # e.g. 2025-02-30 (a YAML timestamp), a 5000-digit integer
            _fail(self.file, f"invalid value {_short_text(node.value)}: {exc}", node.start_mark.line + 1,
                  node.start_mark.column + 1)
        _check_unicode(value, self.file, node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(value, dt.datetime):
            return value.isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, bytes):
            return value.decode("latin-1")
        return value


#: Tags of collections we read: plain mappings and sequences (``!!set``, ``!!omap``, ``!!python/...`` are refused).
_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


def _short_text(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _load_yaml(text: str, file: str, kind: str) -> Located:
    try:
        documents = list(_compose_all(text))
    except _NodeLimitError as exc:
        _fail(file, f"{exc}; expected a {kind} of reasonable size")
    except _DepthLimitError as exc:
        _too_deep(file, int(exc.args[0]))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        col = mark.column + 1 if mark else 0
        problem = exc.problem or exc.context or "syntax error"
        if "maximum nesting depth" in problem:  # libyaml's own guard, met while it reads ahead of our depth check
            _too_deep(file, line, col)
        _fail(file, f"invalid YAML: {problem}", line, col)
    except yaml.YAMLError as exc:
        _fail(file, f"invalid YAML: {exc}")
    except RecursionError:
        _too_deep(file)
    if not documents:
        _fail(file, f"is empty; expected a {kind}")
    if len(documents) > 1:
        _fail(file, f"holds {len(documents)} YAML documents; expected one {kind}")
    walker = _Walker(file)
    try:
        data = walker.walk(documents[0], (), 1)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        _fail(file, f"invalid YAML value: {exc.problem or exc.context or 'cannot be read'}",
              mark.line + 1 if mark else 0, mark.column + 1 if mark else 0)
    except yaml.YAMLError as exc:
        _fail(file, f"invalid YAML value: {exc}")
    except RecursionError:
        _too_deep(file)
    return Located(data, walker.source)


class _NodeLimitError(yaml.YAMLError):
    """Raised while composing, as soon as a document holds more nodes than MAX_NODES."""


class _CountingLoader(yaml.SafeLoader):
    """SafeLoader that stops composing after MAX_NODES nodes, so a large flat document is refused early instead of
    being built in full (an 8 MB list of numbers costs minutes and gigabytes in the pure-Python composer)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.node_count = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.node_count += 1
        if self.node_count > MAX_NODES:
            raise _NodeLimitError(f"holds more than {MAX_NODES:,} values (size limit)")
        return super().compose_node(parent, index)


class _DepthLimitError(yaml.YAMLError):
    """Raised before composing when collections nest deeper than MAX_DEPTH (the C composer recurses without a guard)."""


#: libyaml's parser and composer (PyYAML's C binding), when PyYAML was built with it: about 15× faster on rule files.
_C_LOADER: Any = getattr(yaml, "CSafeLoader", None) if getattr(yaml, "__with_libyaml__", False) else None


def _compose_all(text: str) -> Iterator[yaml.Node]:
    """The documents of ``text`` as YAML nodes (with line and column marks), within the size and depth limits."""
    if _C_LOADER is not None:
        _check_limits(text)
        yield from yaml.compose_all(text, Loader=_C_LOADER)
        return
    loader = _CountingLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                yield node
    finally:
        loader.dispose()


def _check_limits(text: str) -> None:
    """One pass over libyaml's parse events: refuse more than MAX_NODES nodes or collections nested beyond MAX_DEPTH
    before anything is composed (so a huge or deep document costs no memory)."""
    nodes = depth = 0
    for event in yaml.parse(text, Loader=_C_LOADER):
        if isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
            nodes += 1
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            nodes += 1
            depth += 1
            if depth > MAX_DEPTH:
                raise _DepthLimitError(event.start_mark.line + 1 if event.start_mark is not None else 0)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        if nodes > MAX_NODES:
            raise _NodeLimitError(f"holds more than {MAX_NODES:,} values (size limit)")
