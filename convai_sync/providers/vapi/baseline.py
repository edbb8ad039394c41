"""Drift outside the managed fields: the content of each managed assistant that
convai-sync does not manage (its prompt, tools, voice, ...), as recorded after
the last apply, compared with what is live now. A difference is reported by
path and left alone: convai-sync never writes those fields, it only sends them
back unchanged.

The baseline lives in the state file, so it never holds a secret: every value
under a key that names one (apiKey, secret, token, password, Authorization, any
header) is replaced by a marker before it is kept."""
from __future__ import annotations

import re
from typing import Any

from deepdiff import DeepDiff

from ...secrets import SENSITIVE
from .assistants import MANAGED_MODEL_KEYS, READ_ONLY, label

MAX_PATHS = 5  # per assistant: enough to see what happened, short enough to read
_SECRET_KEY = re.compile(r"(apikey|secret|password|accesstoken|refreshtoken|authorization)$|^token$")
_VERBS = {"values_changed": "changed", "type_changes": "changed",
          "dictionary_item_added": "added", "iterable_item_added": "added",
          "dictionary_item_removed": "removed", "iterable_item_removed": "removed"}


def unmanaged_content(assistant: dict[str, Any]) -> dict[str, Any]:
    """The assistant minus what convai-sync manages or the server sets, secrets masked."""
    out = {k: v for k, v in assistant.items() if k not in (*READ_ONLY, "credentialIds")}
    if isinstance(out.get("model"), dict):
        out["model"] = {k: v for k, v in out["model"].items() if k not in MANAGED_MODEL_KEYS}
    return _masked(out)


def _masked(value: Any, under_headers: bool = False) -> Any:
    if isinstance(value, dict):
        return {k: SENSITIVE if under_headers or _secret_key(k)
                else _masked(v, k.lower() == "headers") for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(re.sub(r"[^a-z]", "", key.lower())))


def drift_warnings(assistant: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """One line per path that changed since the baseline (at most MAX_PATHS)."""
    diff = DeepDiff(baseline, unmanaged_content(assistant), view="tree", verbose_level=0)
    found = sorted({(_path(item.path(output_format="list")), _VERBS.get(kind, "changed"))
                    for kind, items in diff.items() for item in items})
    who = f"assistant {label(assistant)}"
    lines = [f"{who}: {path} {verb} outside convai-sync; left alone" for path, verb in found[:MAX_PATHS]]
    if len(found) > MAX_PATHS:
        lines.append(f"{who}: and {len(found) - MAX_PATHS} more paths changed outside "
                     "convai-sync; left alone")
    return lines


def _path(parts: list[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the whole assistant)"
