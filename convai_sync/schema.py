"""The JSON Schema of the manifest, generated from the pydantic models so it can
never disagree with the loader. Committed as schema/manifest.schema.json for
editors (`# yaml-language-server: $schema=...`); regenerate it with
`convai-sync schema > schema/manifest.schema.json`."""
from __future__ import annotations

import json
from typing import Any

from .manifest import Manifest

SCHEMA_ID = "urn:convai-sync:schema:manifest:1"


def manifest_schema() -> dict[str, Any]:
    generated = Manifest.model_json_schema()
    generated.pop("title", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "convai-sync manifest (version 1)",
        "description": "The desired state of a Convai account's custom LLMs and of which model "
                       "and temperature each character uses. Cross-object rules (unique names, "
                       "references to models) are checked by `convai-sync validate`.",
        **generated,
    }


def schema_text() -> str:
    return json.dumps(manifest_schema(), indent=2, ensure_ascii=False) + "\n"
