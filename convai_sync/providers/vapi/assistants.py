"""Vapi assistants as convai-sync sees them: which credential an assistant is
bound to, its binding fields, and the one write that changes them without
touching anything else (PATCH replaces whole subtrees, so the model object is
always sent back complete)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ...model import ConsumerState

CUSTOM_LLM = "custom-llm"
BINDING_FIELDS = ("url", "model", "temperature")      # inside assistant.model
MANAGED_MODEL_KEYS = ("provider", *BINDING_FIELDS)    # what a bind may change in model
READ_ONLY = ("id", "orgId", "createdAt", "updatedAt")  # never compared, never sent


@dataclass
class Credentials:
    """The account's credentials as one read found them (ids are lower case)."""

    names: dict[str, str] = field(default_factory=dict)   # custom-llm: id -> model name
    others: set[str] = field(default_factory=set)         # every other provider's ids

    def exists(self, cid: str) -> bool:
        return cid in self.names or cid in self.others


def is_custom(assistant: dict[str, Any]) -> bool:
    model = assistant.get("model")
    return isinstance(model, dict) and model.get("provider") == CUSTOM_LLM


def pins(assistant: dict[str, Any]) -> list[str]:
    raw = assistant.get("credentialIds")
    return [c.lower() for c in raw if isinstance(c, str)] if isinstance(raw, list) else []


def pinned_models(assistant: dict[str, Any], creds: Credentials) -> tuple[list[str], list[str]]:
    """(names of the custom-llm credentials it pins, pinned ids that exist nowhere)."""
    ids = pins(assistant)
    return ([creds.names[c] for c in ids if c in creds.names],
            [c for c in ids if not creds.exists(c)])


def bound_model(assistant: dict[str, Any], creds: Credentials, target: str | None,
                keep: frozenset[str]) -> str | None:
    """The model an assistant is on, by name: its pinned custom-llm credential;
    the raw id when it pins one that no longer exists; None when it pins none.

    With several pinned (Vapi's choice among them is undefined) it is reported on
    one that is not its declared `target`, preferring one the manifest does not
    `keep`: so a declared assistant is always rebound to exactly one, and an
    undeclared one is moved before any credential it pins is deleted."""
    named, missing = pinned_models(assistant, creds)
    if len(named) > 1:
        for choice in ([n for n in named if n != target and n not in keep],
                       [n for n in named if n != target]):
            if choice:
                return choice[0]
    if named:
        return named[0]
    return missing[0] if missing else None


def consumer_state(assistant: dict[str, Any], model: str | None) -> ConsumerState:
    spec = assistant.get("model") or {}
    temperature = spec.get("temperature")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        temperature = None
    name = assistant.get("name")
    return ConsumerState(
        str(assistant["id"]).lower(), model,
        {"url": _text(spec.get("url")), "model": _text(spec.get("model")),
         "temperature": None if temperature is None else float(temperature)},
        name if isinstance(name, str) and name else None)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def label(assistant: dict[str, Any]) -> str:
    """How messages name an assistant: 'Name' (id), or 'id'."""
    name, aid = assistant.get("name"), assistant.get("id")
    return f"'{name}' ({aid})" if isinstance(name, str) and name else f"'{aid}'"


def bound_model_object(assistant: dict[str, Any], after: dict[str, Any],
                       changed: tuple[str, ...]) -> dict[str, Any]:
    """The assistant's whole model object with only the changed binding fields
    set: everything else in it (messages, tools, toolIds, knowledgeBase, ...)
    goes back exactly as it was read."""
    model = copy.deepcopy(assistant.get("model") or {})
    model["provider"] = CUSTOM_LLM
    for key in BINDING_FIELDS:
        if key in changed and after.get(key) is not None:
            model[key] = after[key]
    return model


def new_pins(assistant: dict[str, Any], target_id: str, creds: Credentials) -> list[str]:
    """The assistant's credentialIds pinning `target_id` as its only custom-llm
    credential: other providers' pins stay; pins of credentials that exist
    nowhere go (Vapi refuses a write that names a missing credential)."""
    keep = [c for c in pins(assistant)
            if c != target_id and c not in creds.names and creds.exists(c)]
    return keep + [target_id]


def matches(assistant: dict[str, Any], model: dict[str, Any], credential_ids: list[str] | None) -> bool:
    """Whether a re-read assistant shows a bind as done (after a lost reply)."""
    live = assistant.get("model") or {}
    if any(live.get(k) != model.get(k) for k in MANAGED_MODEL_KEYS):
        return False
    return credential_ids is None or pins(assistant) == [c.lower() for c in credential_ids]
