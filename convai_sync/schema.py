"""The JSON Schema of the manifest, generated from every platform's pydantic
models so it can never disagree with the loader. Committed as
schema/manifest.schema.json for editors (`# yaml-language-server: $schema=...`);
regenerate it with `convai-sync schema > schema/manifest.schema.json`.

One document for every platform: the top level lists every key any platform
uses, and `platform` selects the exact schema (no `platform` means Convai)."""
from __future__ import annotations

import json
from typing import Any

from .providers.registry import NAMES, platform

SCHEMA_ID = "urn:convai-sync:schema:manifest:1"
INCLUDE = {"description": "Manifests (or fragments) of the same platform to merge under this one, "
           "relative to this file: settings key by key, models and consumers by identity, this "
           "file's fields winning.", "type": "array", "items": {"type": "string", "minLength": 1}}


def manifest_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    branches = []
    for name in NAMES:
        target = platform(name)
        generated = target.manifest_model.model_json_schema()
        defs.update(generated.pop("$defs", {}))
        title = f"{target.title}Manifest"
        generated.pop("title", None)
        generated["properties"]["include"] = INCLUDE  # read by the loader, before the models
        defs[title] = generated
        for key, value in generated["properties"].items():
            properties.setdefault(key, {"description": value.get("description", "")})
        branches.append({"if": _selects(name), "then": {"$ref": f"#/$defs/{title}"}})
    properties["platform"] = {"description": "Which platform the manifest is for (default convai).",
                              "enum": list(NAMES)}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "convai-sync manifest (version 1)",
        "description": "The desired state of a platform account's custom LLMs and of which model "
                       "each character, pipeline or assistant uses. Cross-object rules (unique "
                       "names, references to models) are checked by `convai-sync validate`.",
        "type": "object",
        "properties": properties,
        "required": ["version"],
        "additionalProperties": False,
        "allOf": branches,
        "$defs": defs,
    }


def _selects(name: str) -> dict[str, Any]:
    chosen = {"properties": {"platform": {"const": name}}, "required": ["platform"]}
    if name != "convai":
        return chosen
    return {"anyOf": [{"not": {"required": ["platform"]}}, chosen]}


def schema_text() -> str:
    return json.dumps(manifest_schema(), indent=2, ensure_ascii=False) + "\n"
