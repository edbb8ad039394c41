"""Fingerprints of what a plan was made from, so a saved plan can tell whether
the world it was made for still exists.

One hash per live object (so a refusal can name the object), over the fields
convai-sync reads and compares: a model's known fields (those its dialect
returns), a character's model and temperature. Nothing volatile (created_at,
transaction ids, a character's name) and nothing secret goes into a hash.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from .dialects import DIALECTS
from .manifest import LoadedManifest
from .model import LiveState


def digest(value: Any) -> str:
    """sha256 of the canonical JSON of `value` (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def live_fingerprint(live: LiveState) -> dict[str, dict[str, str]]:
    """{"models": {group: hash}, "characters": {char_id: hash}}, sorted by id."""
    readable = DIALECTS[live.dialect].readable
    models = {group: digest(m.known(readable)) for group, m in sorted(live.models.items())}
    characters = {cid: digest({"model_group_name": c.model_group_name, "temperature": c.temperature})
                  for cid, c in sorted(live.characters.items())}
    return {"models": models, "characters": characters}


def manifest_fingerprint(loaded: LoadedManifest) -> str:
    """The manifest's meaning, not its text: comments and layout do not count."""
    return digest(loaded.manifest.model_dump(mode="json"))


def live_differences(saved: dict[str, dict[str, str]], live: LiveState,
                     names: dict[str, str] | None = None) -> list[str]:
    """Every object whose fingerprint differs, as 'model X changed since the plan'."""
    now = live_fingerprint(live)
    names = names or {}
    out: list[str] = []
    for kind in ("models", "characters"):
        before, after = saved.get(kind, {}), now[kind]
        noun = kind[:-1]
        for oid in sorted(set(before) | set(after)):
            label = _label(noun, oid, names.get(oid) if noun == "character" else None)
            if oid not in after:
                out.append(f"{label} was removed since the plan")
            elif oid not in before:
                out.append(f"{label} was added since the plan")
            elif before[oid] != after[oid]:
                out.append(f"{label} changed since the plan")
    return out


def _label(noun: str, oid: str, name: str | None) -> str:
    return f"{noun} '{name}' ({oid})" if name else f"{noun} {oid}"
