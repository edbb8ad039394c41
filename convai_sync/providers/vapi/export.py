"""Adoption: write a Vapi manifest from a live account, so that `plan` of it
against the same account shows no changes.

A credential holds only a name and a key, so a model's url and model are read
from the assistants that pin it. Where they disagree, the manifest (one url and
model per credential) follows the majority and the other assistants are left
out with a reason; a credential no assistant pins has no url to read and is
written commented out. Keys are never returned: each is a `${VAR}` reference.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from ... import __version__
from ...errors import ConvaiSyncError
from ...export import CONSUMER_CHOICES, Exported, checked, comment, key_variable, scalar
from ...manifest import http_url
from ...model import ConsumerState, LiveState

Endpoint = tuple[str, str]  # (url, model)


def export_manifest(live: LiveState, source: str, consumers: str = "all") -> Exported:
    """The manifest text for `live`, checked by loading it back."""
    if consumers not in CONSUMER_CHOICES:
        raise ConvaiSyncError(f"--characters must be one of {', '.join(CONSUMER_CHOICES)}")
    result = Exported("")
    on = _assistants_by_model(live)
    endpoints = {name: _majority(on.get(name, [])) for name in live.models}
    model_lines, commented = _models(live, endpoints, result)
    assistant_lines = _assistant_lines(live, endpoints, result)
    text = "\n".join(
        _header(source, result, commented) + ["version: 1", "platform: vapi", "", "settings:",
                                              "  prune: false", ""]
        + (["models:"] + model_lines if model_lines else ["models: []"]) + commented + [""]
        + (["assistants:"] + assistant_lines if assistant_lines else ["assistants: []"])) + "\n"
    return checked(result, text, "assistants")


def _assistants_by_model(live: LiveState) -> dict[str, list[ConsumerState]]:
    out: dict[str, list[ConsumerState]] = {}
    for a in _ordered(live):
        if a.model in live.models:
            out.setdefault(a.model, []).append(a)
    return out


def _ordered(live: LiveState) -> list[ConsumerState]:
    return sorted(live.consumers.values(), key=lambda c: ((c.name or "").casefold(), c.id))


def _endpoint(a: ConsumerState) -> Endpoint | None:
    url, model = a.fields.get("url"), a.fields.get("model")
    if not isinstance(url, str) or not isinstance(model, str) or not model or len(model) > 200:
        return None
    try:
        return http_url(url), model
    except ValueError:
        return None


def _majority(assistants: list[ConsumerState]) -> Endpoint | None:
    """The url and model most of a credential's assistants use (ties: the first)."""
    counts = Counter(e for e in map(_endpoint, assistants) if e is not None)
    return counts.most_common(1)[0][0] if counts else None


def _models(live: LiveState, endpoints: dict[str, Endpoint | None],
            result: Exported) -> tuple[list[str], list[str]]:
    lines: list[str] = []
    commented: list[str] = []
    taken: set[str] = set()
    for name in sorted(live.models):
        endpoint = endpoints[name]
        if endpoint is None:
            commented += _commented_model(name)
            result.skipped.append(f"credential '{name}': no assistant pins it (with a valid url "
                                  "and model), so its url and model cannot be read; it is written "
                                  "commented out: fill them in and uncomment it to manage it")
            continue
        var = result.variables[name] = key_variable(name, taken, "vapi")
        lines += [f"  - name: {scalar(name)}", f"    url: {scalar(endpoint[0])}",
                  f"    model: {scalar(endpoint[1])}", f"    api_key: ${{{var}}}"]
    return lines, commented


def _commented_model(name: str) -> list[str]:
    return [f"  # - name: {comment(scalar(name))}   # no assistant pins it: url and model unknown",
            "  #   url: https://FILL-IN.example/v1",
            "  #   model: FILL-IN",
            "  #   api_key: ${FILL_IN_API_KEY}"]


def _assistant_lines(live: LiveState, endpoints: dict[str, Endpoint | None],
                     result: Exported) -> list[str]:
    lines: list[str] = []
    for a in _ordered(live):
        reason = _left_out(a, live, endpoints)
        if reason:
            result.skipped.append(f"assistant {a.label} {reason}; left out")
            continue
        note = f"   # {comment(a.name)}" if a.name else ""
        lines += [f"  - id: {scalar(a.id)}{note}", f"    model: {scalar(a.model)}"]
        if a.fields.get("temperature") is not None:
            lines.append(f"    temperature: {scalar(a.fields['temperature'])}")
    return lines


def _left_out(a: ConsumerState, live: LiveState, endpoints: dict[str, Any]) -> str | None:
    if a.model is None:
        return ("pins no custom-llm credential (Vapi picks one by an undocumented rule); add it "
                "by hand with the model it should use")
    if a.model not in live.models:
        return f"pins credential {a.model}, which does not exist; add it by hand to repair it"
    endpoint, mine = endpoints.get(a.model), _endpoint(a)
    url, model = a.fields.get("url"), a.fields.get("model")
    if mine is None or endpoint is None:
        return f"runs on url {url!r} with model {model!r}, which a manifest cannot hold"
    if mine != endpoint:
        return (f"runs on {url} / {model}, but the other assistants on credential '{a.model}' "
                f"run on {endpoint[0]} / {endpoint[1]} and a manifest model has one url and "
                "model: declare another credential for it")
    temperature = a.fields.get("temperature")
    if temperature is not None and not 0.0 <= temperature <= 2.0:
        return f"has temperature {temperature}, outside Vapi's 0..2"
    return None


def _header(source: str, result: Exported, commented: list[str]) -> list[str]:
    lines = [f"# convai-sync manifest exported from {comment(source)} (Vapi) by convai-sync "
             f"{__version__}.",
             "# Review and commit it; `convai-sync plan -f THIS_FILE` against the same account",
             "# shows no changes. prune is off, so no credential is ever deleted.",
             "#",
             "# Each model is a custom-llm credential; its url and model are read from the",
             "# assistants that pin it (a credential itself holds only a name and a key).",
             "#"]
    if result.variables:
        lines += ["# Vapi never returns credential keys, so each model's key is a ${VAR}",
                  "# reference. Set these variables (in CI: repository secrets) before apply:"]
        width = max(len(v) for v in result.variables.values())
        lines += [f"#   {var.ljust(width)}  (credential {comment(name)})"
                  for name, var in result.variables.items()]
        lines.append("#")
    if commented:
        lines += ["# Credentials no assistant pins are written commented out (their url and",
                  "# model cannot be read).", "#"]
    return lines
