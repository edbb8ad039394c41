"""YAML loading that remembers the line of every key and value, so manifest
errors can say `FILE:LINE`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass
class Located:
    """Plain data plus the 1-based line of each path (and of each mapping key)."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    key_lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Path, *, key: bool = False) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        table = self.key_lines if key else self.lines
        path = tuple(path)
        while path:
            if path in table:
                return table[path]
            if key and path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)


class DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int):
        self.key, self.line, self.first = key, line, first
        super().__init__(f"duplicate key '{key}' (first at line {first})")


def load(text: str) -> Located:
    """Parse one YAML document. Raises yaml.YAMLError or DuplicateKey."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        out = Located(None)
        if node is not None:
            out.data = _build(loader, node, (), out)
        return out
    finally:
        loader.dispose()


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: Path, out: Located) -> Any:
    out.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<` merge keys
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            key_line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                key = str(key)
            if key in result:
                raise DuplicateKey(str(key), key_line, out.key_lines[path + (key,)])
            out.key_lines[path + (key,)] = key_line
            result[key] = _build(loader, value_node, path + (key,), out)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, path + (i,), out) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
