"""Adoption: write a manifest from a live account, so that `plan` of it against
the same account shows no changes.

api_key values cannot be read from Convai, so every model's key becomes a
`${VAR}` reference with a variable name derived from the model's name; the
caller lists those names for the user. Settings: prune off (adopting must
never deregister anything), api_dialect as detected.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import yaml

from . import __version__
from .builtins import builtin_models
from .dialects import DIALECTS
from .errors import ConvaiSyncError, ManifestError
from .manifest import DEFAULT_BASE_URL, parse_manifest
from .model import LiveState

CHARACTER_CHOICES = ("all", "bound-to-custom")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Exported:
    text: str
    characters: int = 0                                      # how many were written
    variables: dict[str, str] = field(default_factory=dict)  # model_group_name -> VAR
    skipped: list[str] = field(default_factory=list)         # why characters were left out


def key_variable(group: str, taken: set[str]) -> str:
    """CONVAI_MODEL_<GROUP>_API_KEY, unique among `taken`."""
    stem = re.sub(r"[^A-Z0-9]+", "_", group.upper()).strip("_") or "MODEL"
    name, n = f"CONVAI_MODEL_{stem}_API_KEY", 2
    while name in taken:
        name, n = f"CONVAI_MODEL_{stem}_{n}_API_KEY", n + 1
    taken.add(name)
    return name


def export_manifest(live: LiveState, source: str, characters: str = "all") -> Exported:
    """The manifest text for `live`, checked by loading it back."""
    if characters not in CHARACTER_CHOICES:
        raise ConvaiSyncError(f"--characters must be one of {', '.join(CHARACTER_CHOICES)}")
    result = Exported("")
    taken: set[str] = set()
    model_lines: list[str] = []
    for group, model in sorted(live.models.items()):
        if not model.model_name:
            raise ConvaiSyncError(f"model '{group}': the account did not return its model_name, so "
                                  "it cannot be exported; report this with the model's list entry")
        var = result.variables[group] = key_variable(group, taken)
        model_lines += [f"  - model_group_name: {_scalar(group)}",
                        f"    model_name: {_scalar(model.model_name)}"]
        if model.base_url and model.base_url != DEFAULT_BASE_URL:
            model_lines.append(f"    base_url: {_scalar(model.base_url)}")
        model_lines.append(f"    api_key: ${{{var}}}")
        if model.display_name is not None:
            model_lines.append(f"    display_name: {_scalar(model.display_name)}")
        if model.is_uncensored is not None:
            model_lines.append(f"    is_uncensored: {_scalar(model.is_uncensored)}")
    char_lines = _characters(live, characters, result)
    text = "\n".join(_header(live, source, result) + ["version: 1", "", "settings:",
                     "  prune: false", f"  api_dialect: {live.dialect}", ""]
                     + (["models:"] + model_lines if model_lines else ["models: []"]) + [""]
                     + (["characters:"] + char_lines if char_lines else ["characters: []"])) + "\n"
    try:
        result.characters = len(parse_manifest(text, "exported manifest").manifest.characters)
    except ManifestError as e:
        raise ConvaiSyncError("the exported manifest does not load back, so it was not written:\n"
                              f"{e}\nPlease report this.") from None
    result.text = text
    return result


def _characters(live: LiveState, which: str, result: Exported) -> list[str]:
    known = set(live.models) | builtin_models()
    lines: list[str] = []
    for char in sorted(live.characters.values(), key=lambda c: ((c.name or "").casefold(), c.char_id)):
        model = char.model_group_name
        if which == "bound-to-custom" and model not in live.models:
            continue
        if model is None or model not in known:
            result.skipped.append(f"character {char.label} points at model '{model}', which is "
                                  "neither a custom model nor a known built-in code; left out (if "
                                  "it is a new built-in code, add it under settings.builtin_models "
                                  "and add the character by hand)")
            continue
        comment = f"   # {_CONTROL.sub(' ', char.name)}" if char.name else ""
        lines += [f"  - char_id: {_scalar(char.char_id)}{comment}",
                  f"    model_group_name: {_scalar(model)}"]
        if char.temperature is not None:
            lines.append(f"    temperature: {_scalar(char.temperature)}")
    return lines


def _header(live: LiveState, source: str, result: Exported) -> list[str]:
    lines = [f"# convai-sync manifest exported from {_CONTROL.sub(' ', source)} "
             f"({live.dialect} dialect) by convai-sync {__version__}.",
             "# Review and commit it; `convai-sync plan -f THIS_FILE` against the same account",
             "# shows no changes. prune is off, so nothing unlisted is ever deregistered.",
             "#"]
    if result.variables:
        lines += ["# Convai never returns api_key values, so each model's key is a ${VAR}",
                  "# reference. Set these variables (in CI: repository secrets) before apply:"]
        width = max(len(v) for v in result.variables.values())
        lines += [f"#   {var.ljust(width)}  (model {group})" for group, var in result.variables.items()]
        lines.append("#")
    unreadable = DIALECTS[live.dialect].unreadable
    if unreadable:
        lines += [f"# The {live.dialect} dialect does not return {' or '.join(unreadable)}: add",
                  "# them by hand if your models use them (they can never show as a difference).", "#"]
    return lines


def _scalar(value: object) -> str:
    """A YAML scalar on one line, quoted only when YAML needs it."""
    if isinstance(value, str) and _CONTROL.search(value):
        return json.dumps(value)  # a JSON string is a YAML double-quoted scalar
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31 - 1, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()
