"""Manifest includes: per-environment manifests share definitions without
copying them.

    include: [models.common.yaml]     # paths relative to this file

An included file is a manifest (or a fragment of one) of the same platform. It
lies *under* the including file: `settings` merge key by key, the lists
(`models` and the consumers) merge entry by entry by identity (a model's name,
a consumer's id) with the including file's fields winning, and any other key
is the including file's when it has one. Several includes apply in order (a
later one wins); includes nest; a cycle is an error.

Every merged part stays linked to the file it came from (yamlpos.Located.links),
so an error names that file and line, followed by the chain of includes that
brought it in."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .errors import ManifestError
from .yamlpos import Located

if TYPE_CHECKING:
    from .providers.base import Platform

INCLUDE_KEY = "include"
SETTINGS = "settings"


@dataclass
class Includes:
    """Who included whom: file name -> FILE:LINE of the include entry naming it."""

    parents: dict[str, str] = field(default_factory=dict)
    # an included file must lie under one of these (the root manifest's directory,
    # the working directory): a pull request cannot make a plan job read /proc or ~
    roots: tuple[str, ...] = ()

    def allowed(self, real: str) -> bool:
        return any(os.path.commonpath([real, root]) == root for root in self.roots)

    def annotate(self, problem: str) -> str:
        """`common.yaml:7: ...` + ` (included from staging.yaml:3)`."""
        name = next((n for n in self.parents if problem.startswith(n + ":")), None)
        chain, seen = [], set()
        while name is not None and name not in seen:
            seen.add(name)
            at = self.parents[name]
            chain.append(f"included from {at}")
            name = next((n for n in self.parents if at.startswith(n + ":")), None)
        return f"{problem} ({', '.join(chain)})" if chain else problem


def expand(root: Located, target: "Platform", read: Callable[[str], Located],
           includes: Includes) -> Located:
    """`root` with every include merged under it (the same object when it has none)."""
    includes.roots = (os.path.realpath(os.path.dirname(root.name) or "."), os.path.realpath(os.curdir))
    return _expand(root, _identities(target), target.name, read, includes,
                   ((os.path.realpath(root.name), root.name),))


def _expand(doc: Located, identities: dict[str, str], platform: str,
            read: Callable[[str], Located], includes: Includes,
            stack: tuple[tuple[str, str], ...]) -> Located:
    """`stack`: (real path, name as written) of each file on the way here."""
    if not isinstance(doc.data, dict) or INCLUDE_KEY not in doc.data:
        return doc
    refs = doc.data.pop(INCLUDE_KEY)
    if not isinstance(refs, list) or not all(isinstance(r, str) and r.strip() for r in refs):
        raise ManifestError([f"{doc.where((INCLUDE_KEY,))}: include must be a list of file names "
                             "relative to this file, such as [models.common.yaml]"])
    merged = Located({}, name=doc.name)
    for i, ref in enumerate(refs):
        name = os.path.normpath(os.path.join(os.path.dirname(doc.name), ref))
        at = doc.where((INCLUDE_KEY, i))
        real = os.path.realpath(name)
        if os.path.isabs(ref) or not includes.allowed(real):
            raise ManifestError([f"{at}: include {ref!r} is outside the manifest's directory and the "
                                 "working directory; include files of this repository, by relative path"])
        reals = [r for r, _ in stack]
        if real in reals:
            cycle = " -> ".join([*(n for _, n in stack[reals.index(real):]), name])
            raise ManifestError([f"{at}: include cycle: {cycle}; remove one of these includes"])
        includes.parents.setdefault(name, at)
        child = read(name)
        _check_platform(child, platform)
        child = _expand(child, identities, platform, read, includes, (*stack, (real, name)))
        merged = _overlay(merged, child, identities)
    return _overlay(merged, doc, identities)


def _check_platform(child: Located, platform: str) -> None:
    value = child.data.get("platform", "convai")
    if value != platform:
        raise ManifestError([f"{child.where(('platform',))}: this file is for platform {value!r} but "
                             f"the manifest including it is for {platform!r}; a manifest can only "
                             "include files of its own platform"])


def _identities(target: "Platform") -> dict[str, str]:
    """The list sections merged by identity, and the key naming an entry in each:
    the first field of its schema (model_group_name, key, name; char_id, uuid, id)."""
    return {path[0]: next(iter(model.model_fields)) for path, model in target.sections.items()
            if len(path) == 1 and path[0] != SETTINGS}


def _overlay(base: Located, top: Located, identities: dict[str, str]) -> Located:
    """`top` merged over `base`, every part linked to where it was written."""
    out = Located({}, name=top.name)
    for key in dict.fromkeys([*base.data, *top.data]):
        if key not in top.data:
            out.data[key] = base.data[key]
            out.links[(key,)] = (base, (key,))
            continue
        out.links[(key,)] = (top, (key,))
        low, high = base.data.get(key), top.data[key]
        if key in identities and isinstance(low, list) and isinstance(high, list):
            out.data[key] = _merge_list(key, identities[key], low, high, base, top, out)
        elif key == SETTINGS and isinstance(low, dict) and isinstance(high, dict):
            out.data[key] = _merge_fields(out, (key,), low, high, top, (key,), base)
        else:
            out.data[key] = high
    return out


def _merge_list(key: str, ident: str, low: list[Any], high: list[Any], base: Located,
                top: Located, out: Located) -> list[Any]:
    items: list[Any] = []
    index: dict[Any, int] = {}
    for i, item in enumerate(low):
        out.links[(key, len(items))] = (base, (key, i))
        name = _identity(item, ident)
        if name is not None:
            index.setdefault(name, len(items))
        items.append(item)
    for i, item in enumerate(high):
        j = index.pop(_identity(item, ident), None)  # only once: a second entry is a duplicate
        if j is None:
            out.links[(key, len(items))] = (top, (key, i))
            items.append(item)
        else:
            items[j] = _merge_fields(out, (key, j), items[j], item, top, (key, i))
    return items


def _merge_fields(out: Located, path: tuple[Any, ...], low: dict[Any, Any], high: dict[Any, Any],
                  top: Located, source: tuple[Any, ...], base: Located | None = None) -> dict[Any, Any]:
    """`high`'s keys over `low`'s, each linked to `top` at `source`; `low`'s keys
    linked to `base` (when `path` itself is not already linked there)."""
    if base is not None:
        for k in low:
            out.links[(*path, k)] = (base, (*path, k))
    for k in high:
        out.links[(*path, k)] = (top, (*source, k))
    return {**low, **high}


def _identity(item: Any, ident: str) -> Any:
    value = item.get(ident) if isinstance(item, dict) else None
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None
