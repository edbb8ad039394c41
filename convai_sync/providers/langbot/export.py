"""Adoption of a LangBot workspace: every LLM model and every pipeline with a
model, so that `plan` of the export against the same workspace shows no changes.
Keys come back from LangBot in clear but are never written: each becomes a
${VAR} reference, listed for the user. Where several models share a name, the
entries are pinned with `uuid:` so the export plans back to no changes."""
from __future__ import annotations

import json
from collections import Counter

from ... import __version__
from ...export import Exported, checked, comment, key_variable, scalar
from ...model import LiveState, ModelState


def export_manifest(live: LiveState, source: str, consumers: str = "all") -> Exported:
    """The manifest text for `live` (read without a manifest: every model is
    labelled 'name@uuid'), checked by loading it back."""
    result = Exported("")
    keys = _keys(live)
    shared = Counter(m.fields["name"] for m in live.models.values())
    taken: set[str] = set()
    model_lines: list[str] = []
    for label, model in sorted(live.models.items(), key=lambda kv: keys[kv[0]]):
        var = result.variables[keys[label]] = key_variable(keys[label], taken, "langbot")
        model_lines += _model(keys[label], model, var, label if shared[model.fields["name"]] > 1 else None)
    pipeline_lines = []
    for p in sorted(live.consumers.values(), key=lambda c: ((c.name or "").casefold(), c.id)):
        if p.model not in keys:
            if p.model is not None:
                result.skipped.append(f"pipeline {p.label} points at model '{p.model}', which does "
                                      "not exist; left out (declare it by hand once it has a model)")
            continue
        note = f"   # {comment(p.name)}" if p.name else ""
        pipeline_lines += [f"  - uuid: {scalar(p.id)}{note}", f"    model: {scalar(keys[p.model])}"]
    header = [f"# convai-sync manifest exported from {comment(source)} (LangBot) by convai-sync "
              f"{__version__}.",
              "# Review and commit it; `convai-sync plan -f THIS_FILE` against the same workspace",
              "# shows no changes. prune is off, so nothing unlisted is ever deleted.",
              "# LangBot returns keys, but they are never written here: set these variables",
              "# (in CI: repository secrets) to the keys each model's provider holds:"]
    header += [f"#   {var}  (model {key})" for key, var in result.variables.items()] + ["#"]
    text = "\n".join(header + ["version: 1", "platform: langbot", "", "settings:", "  prune: false", ""]
                     + (["models:"] + model_lines if model_lines else ["models: []"]) + [""]
                     + (["pipelines:"] + pipeline_lines if pipeline_lines else ["pipelines: []"])) + "\n"
    return checked(result, text, "pipelines")


def _keys(live: LiveState) -> dict[str, str]:
    """label -> a unique manifest key: the model's name, numbered when shared."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for label, model in sorted(live.models.items()):
        stem = "".join(c if not c.isspace() and c != "@" else "-" for c in model.fields["name"])
        key, n = stem, 2
        while key in used:
            key, n = f"{stem}-{n}", n + 1
        used.add(key)
        out[label] = key
    return out


def _model(key: str, model: ModelState, var: str, label: str | None) -> list[str]:
    f = model.fields
    lines = [f"  - key: {scalar(key)}", f"    name: {scalar(f['name'])}",
             f"    requester: {scalar(f['requester'])}", f"    base_url: {scalar(f['base_url'])}",
             f"    api_keys: [\"${{{var}}}\"]"]
    if f.get("abilities"):
        lines.append(f"    abilities: {json.dumps(f['abilities'])}")
    if f.get("extra_args"):
        lines.append(f"    extra_args: {json.dumps(f['extra_args'], sort_keys=True)}")
    if f.get("context_length") is not None:
        lines.append(f"    context_length: {scalar(f['context_length'])}")
    if label is not None:  # several live models share this name: pin this one
        lines.append(f"    uuid: {label.rsplit('@', 1)[1]}")
    return lines
