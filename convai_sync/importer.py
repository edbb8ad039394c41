"""`import`: add live models, by name, to an existing manifest file, leaving
the rest of the file as it is (comments, order, layout).

Each entry is what `export` writes for that model (the platform's own export,
so every platform works alike); it is inserted at the end of the file's
`models:` block, indented like the entries already there, and the new file
is loaded back before it is written.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ConvaiSyncError, ManifestError
from .export import Exported
from .manifest import LoadedManifest, parse_manifest

_MODELS = re.compile(r"^models:[ \t]*(#.*)?$")
_FLOW_EMPTY = re.compile(r"^models:[ \t]*\[\][ \t]*(#.*)?$")


@dataclass(frozen=True)
class Imported:
    text: str                    # the whole new manifest
    variables: dict[str, str]    # model -> the ${VAR} its key is read from


def import_models(loaded: LoadedManifest, text: str, exported: Exported,
                  names: list[str]) -> Imported:
    """The manifest `text` with the exported entries of `names` added."""
    have = {m.name for m in loaded.desired.models}
    problems = [f"model '{n}' is already in {loaded.path}" for n in names if n in have]
    problems += [f"model '{n}' is not in the account (export lists what is)"
                 for n in names if n not in exported.variables and n not in have]
    if problems:
        raise ConvaiSyncError("; ".join(problems) + "; nothing was written")
    entries = _entries(exported.text)
    chosen = [entries[exported.variables[n]] for n in names]
    new_text = _insert(text, [line for entry in chosen for line in entry], loaded.path)
    try:
        parse_manifest(new_text, loaded.path)
    except ManifestError as e:
        raise ConvaiSyncError(f"{loaded.path}: with the imported models the manifest does not load, "
                              f"so it was not written:\n{e}") from None
    return Imported(new_text, {n: exported.variables[n] for n in names})


def _entries(exported: str) -> dict[str, list[str]]:
    """The export's model entries, by the ${VAR} of their key."""
    block = _block(exported.splitlines())
    entries: dict[str, list[str]] = {}
    current: list[str] = []
    for line in block:
        if line.startswith("  - "):
            current = [line]
        elif current:
            current.append(line)
        for var in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", line):
            entries[var] = current
    return entries


def _block(lines: list[str]) -> list[str]:
    start = next((i for i, line in enumerate(lines) if _MODELS.match(line)), None)
    if start is None:
        return []
    end = next((j for j in range(start + 1, len(lines)) if _top_level(lines[j])), len(lines))
    return lines[start + 1:end]


def _top_level(line: str) -> bool:
    return bool(line) and not line[0].isspace() and not line.startswith("#")


def _insert(text: str, entry: list[str], path: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _MODELS.match(line) or _FLOW_EMPTY.match(line)),
                 None)
    if start is None:
        if any(line.startswith("models:") for line in lines):
            raise ConvaiSyncError(f"{path}: its models list is not a block list (one '- ' entry per "
                                  "line); write it that way, then import again")
        return "\n".join(lines + ["models:"] + entry) + "\n"
    if _FLOW_EMPTY.match(lines[start]):
        lines[start] = "models:"
    end = next((j for j in range(start + 1, len(lines)) if _top_level(lines[j])), len(lines))
    last = max((j for j in range(start + 1, end) if lines[j].strip()
                and not lines[j].lstrip().startswith("#")), default=start)
    indent = next((len(lines[j]) - len(lines[j].lstrip()) for j in range(start + 1, end)
                   if lines[j].lstrip().startswith("- ")), 2)
    shifted = [" " * indent + line[2:] for line in entry]
    return "\n".join(lines[:last + 1] + shifted + lines[last + 1:]) + "\n"
