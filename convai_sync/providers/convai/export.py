"""Adoption: write a manifest from a live account, so that `plan` of it against
the same account shows no changes.

api_key values cannot be read from Convai, so every model's key becomes a
`${VAR}` reference with a variable name derived from the model's name; the
caller lists those names for the user. Settings: prune off (adopting must
never deregister anything), api_dialect as detected.
"""
from __future__ import annotations

from ... import __version__
from ...errors import ConvaiSyncError
from ...export import CONSUMER_CHOICES, Exported, checked, comment, key_variable, scalar as _scalar
from ...model import LiveState
from .builtins import builtin_models
from .dialects import DIALECTS
from .manifest import DEFAULT_BASE_URL

CHARACTER_CHOICES = CONSUMER_CHOICES


def export_manifest(live: LiveState, source: str, characters: str = "all") -> Exported:
    """The manifest text for `live`, checked by loading it back."""
    if characters not in CHARACTER_CHOICES:
        raise ConvaiSyncError(f"--characters must be one of {', '.join(CHARACTER_CHOICES)}")
    result = Exported("")
    taken: set[str] = set()
    model_lines: list[str] = []
    for group, model in sorted(live.models.items()):
        fields = model.fields
        if not fields.get("model_name"):
            raise ConvaiSyncError(f"model '{group}': the account did not return its model_name, so "
                                  "it cannot be exported; report this with the model's list entry")
        var = result.variables[group] = key_variable(group, taken)
        model_lines += [f"  - model_group_name: {_scalar(group)}",
                        f"    model_name: {_scalar(fields['model_name'])}"]
        if fields.get("base_url") and fields["base_url"] != DEFAULT_BASE_URL:
            model_lines.append(f"    base_url: {_scalar(fields['base_url'])}")
        model_lines.append(f"    api_key: ${{{var}}}")
        if fields.get("display_name") is not None:
            model_lines.append(f"    display_name: {_scalar(fields['display_name'])}")
        if fields.get("is_uncensored") is not None:
            model_lines.append(f"    is_uncensored: {_scalar(fields['is_uncensored'])}")
    char_lines = _characters(live, characters, result)
    text = "\n".join(_header(live, source, result) + ["version: 1", "", "settings:",
                     "  prune: false", f"  api_dialect: {live.dialect}", ""]
                     + (["models:"] + model_lines if model_lines else ["models: []"]) + [""]
                     + (["characters:"] + char_lines if char_lines else ["characters: []"])) + "\n"
    return checked(result, text, "characters")


def _characters(live: LiveState, which: str, result: Exported) -> list[str]:
    known = set(live.models) | builtin_models()
    lines: list[str] = []
    for char in sorted(live.consumers.values(), key=lambda c: ((c.name or "").casefold(), c.id)):
        model = char.model
        if which == "bound-to-custom" and model not in live.models:
            continue
        if model is None or model not in known:
            result.skipped.append(f"character {char.label} points at model '{model}', which is "
                                  "neither a custom model nor a known built-in code; left out (if "
                                  "it is a new built-in code, add it under settings.builtin_models "
                                  "and add the character by hand)")
            continue
        note = f"   # {comment(char.name)}" if char.name else ""
        lines += [f"  - char_id: {_scalar(char.id)}{note}",
                  f"    model_group_name: {_scalar(model)}"]
        if char.fields.get("temperature") is not None:
            lines.append(f"    temperature: {_scalar(char.fields['temperature'])}")
    return lines


def _header(live: LiveState, source: str, result: Exported) -> list[str]:
    lines = [f"# convai-sync manifest exported from {comment(source)} "
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
