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

from .manifest import LoadedManifest
from .model import LiveState
from .providers.base import Capabilities


def digest(value: Any) -> str:
    """sha256 of the canonical JSON of `value` (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def live_fingerprint(live: LiveState, caps: Capabilities) -> dict[str, dict[str, str]]:
    """{"models": {name: hash}, "characters": {id: hash}}, sorted by id (the
    consumers are under "characters" on every platform: the key is format 1's)."""
    # Key markers depend on which keys the reading process holds (a plan job may
    # have none): never part of the fingerprint.
    readable = caps.readable - {caps.secret_field}
    models = {name: digest(m.known(readable)) for name, m in sorted(live.models.items())}
    consumers = {cid: digest({caps.model_ref: c.model, **c.fields})
                 for cid, c in sorted(live.consumers.items())}
    return {"models": models, "characters": consumers}


def manifest_fingerprint(loaded: LoadedManifest) -> str:
    """The manifest's meaning, not its text: comments and layout do not count."""
    meaning = loaded.manifest.model_dump(mode="json")
    if meaning.get("platform") == "convai":
        del meaning["platform"]  # the default: a manifest saved before platforms hashes the same
    return digest(meaning)


def live_differences(saved: dict[str, dict[str, str]], live: LiveState,
                     caps: Capabilities) -> list[str]:
    """Every object whose fingerprint differs, as 'model X changed since the plan'."""
    now = live_fingerprint(live, caps)
    names = {cid: c.name for cid, c in live.consumers.items() if c.name}
    out: list[str] = []
    for kind, noun in (("models", "model"), ("characters", caps.consumer_noun)):
        before, after = saved.get(kind, {}), now[kind]
        for oid in sorted(set(before) | set(after)):
            label = _label(noun, oid, names.get(oid) if kind == "characters" else None)
            if oid not in after:
                out.append(f"{label} was removed since the plan")
            elif oid not in before:
                out.append(f"{label} was added since the plan")
            elif before[oid] != after[oid]:
                out.append(f"{label} changed since the plan")
    return out


def _label(noun: str, oid: str, name: str | None) -> str:
    return f"{noun} '{name}' ({oid})" if name else f"{noun} {oid}"
