"""YAML loading that remembers the line of every key and value, so manifest
errors can say `FILE:LINE`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .perf import gc_paused

Path = tuple[str | int, ...]


@dataclass
class Located:
    """Plain data plus the 1-based line of each path (and of each mapping key).

    A manifest merged from includes links parts of its data to the document
    they came from (`links`: path here -> (that document, path there)), so a
    line is always looked up in the file that holds it."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    key_lines: dict[Path, int] = field(default_factory=dict)
    name: str = "<manifest>"
    links: dict[Path, tuple["Located", Path]] = field(default_factory=dict)

    def line(self, path: Path, *, key: bool = False) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        return self._locate(tuple(path), key)[1]

    def where(self, path: Path, *, key: bool = False) -> str:
        """`FILE:LINE` of `path`, in the file that holds it."""
        name, line = self._locate(tuple(path), key)
        return f"{name}:{line}"

    def _locate(self, path: Path, key: bool) -> tuple[str, int]:
        if self.links:
            for depth in range(len(path), -1, -1):
                link = self.links.get(path[:depth])
                if link is not None:
                    return link[0]._locate(link[1] + path[depth:], key)
        return self.name, self._own_line(path, key)

    def _own_line(self, path: Path, key: bool) -> int:
        table = self.key_lines if key else self.lines
        while path:
            if path in table:
                return table[path]
            if key and path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)


class AliasBomb(Exception):
    """Aliases expand the document far beyond its own size ("billion laughs")."""

    def __init__(self, line: int, limit: int):
        self.line, self.limit = line, limit
        super().__init__(f"YAML aliases expand the document to more than {limit:,} values")


MAX_DEPTH = 64          # levels of nesting; a manifest needs fewer than 10
MAX_VALUES = 1_000_000  # values the document may expand to, whatever its size


class TooDeep(Exception):
    """Nested deeper than MAX_DEPTH: refused before the parser sees it (libyaml
    recurses per level and crashes on some 10,000 of them; Python's recursion
    limit fails at 1,000)."""

    def __init__(self, line: int):
        self.line = line
        super().__init__(f"nesting deeper than {MAX_DEPTH} levels")


class DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int):
        self.key, self.line, self.first = key, line, first
        super().__init__(f"duplicate key '{key}' (first at line {first})")


# libyaml (C) scans and parses several times faster than PyYAML's pure-Python
# loader; it gives the same nodes and marks. On a syntax error the text is parsed
# again by the pure-Python loader, whose wording the error corpus pins.
_FAST_LOADER = getattr(yaml, "CSafeLoader", None)
_STR_TAG = "tag:yaml.org,2002:str"


def load(text: str, name: str = "<manifest>") -> Located:
    """Parse one YAML document. Raises yaml.YAMLError, DuplicateKey, TooDeep or AliasBomb."""
    check_depth(text)
    if _FAST_LOADER is not None:
        try:
            with gc_paused():
                return _load(_FAST_LOADER, text, name)
        except yaml.YAMLError:
            pass  # report it as the pure-Python loader words it
    return _load(yaml.SafeLoader, text, name)


def _load(loader_class: type[yaml.SafeLoader], text: str, name: str = "<manifest>") -> Located:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        out = Located(None, name=name)
        if node is not None:
            out.data = _Builder(loader, out, len(text)).build(node, ())
        return out
    finally:
        loader.dispose()


class _Builder:
    """Turns the node graph into plain data, recording lines on the way."""

    def __init__(self, loader: yaml.SafeLoader, out: Located, text_size: int):
        self.loader, self.out = loader, out
        # Every value costs at least a character of text unless an alias repeats it;
        # a budget well above any real manifest stops a "billion laughs" document
        # before it builds billions of values.
        # Capped: comments cost text but build nothing, so without a cap a big file
        # of comments buys an alias bomb a budget of millions.
        self.limit = self.left = min(4 * text_size + 10_000, MAX_VALUES)
        # per mapping node: the keys written in it (not merged in by `<<`); kept
        # because flatten_mapping rewrites the node the first time it is built
        self.written: dict[int, set[int]] = {}

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.left -= 1
        if self.left < 0:
            raise AliasBomb(node.start_mark.line + 1, self.limit)
        self.out.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return _construct(self.loader, node)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        if id(node) not in self.written:
            self.written[id(node)] = {id(k) for k, _ in node.value}
            self.loader.flatten_mapping(node)  # merged pairs first, so written keys win
        written = self.written[id(node)]
        result: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = _construct(self.loader, key_node)
            key_line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                key = str(key)
            if id(key_node) in written:
                if key in first_line:
                    raise DuplicateKey(str(key), key_line, first_line[key])
                first_line[key] = key_line
            self.out.key_lines[path + (key,)] = key_line
            result[key] = self.build(value_node, path + (key,))
        return result


def check_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, by a linear scan before parsing:
    flow brackets outside quotes and comments, plus block indentation levels
    (and `- ` items opened on one line)."""
    flow = 0
    indents: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        if flow == 0:
            indent = len(line) - len(stripped)
            while indents and indents[-1] > indent:
                indents.pop()
            if not indents or indents[-1] < indent:
                indents.append(indent)
            dashes = len(stripped) - len(stripped.lstrip("- ")) if stripped.startswith("- ") else 0
            if len(indents) + dashes // 2 > MAX_DEPTH:
                raise TooDeep(number)
        flow = _flow_depth(stripped, flow)
        if flow + len(indents) > MAX_DEPTH:
            raise TooDeep(number)


def _flow_depth(line: str, depth: int) -> int:
    """The flow-collection depth after `line`, starting at `depth`."""
    quote, previous = "", " "
    for i, ch in enumerate(line):
        if quote:
            if ch == quote and not (quote == '"' and line[i - 1] == "\\"):
                quote = ""
        elif ch in "'\"" and previous in " \t:[{,-?":
            quote = ch
        elif ch == "#" and previous in " \t":
            break
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return depth
        elif ch in "]}":
            depth = max(0, depth - 1)
        previous = ch
    return depth


def _construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if node.tag == _STR_TAG and type(node) is yaml.ScalarNode:
        return node.value  # what construct_yaml_str returns, minus the per-node bookkeeping
    return loader.construct_object(node, deep=True)
