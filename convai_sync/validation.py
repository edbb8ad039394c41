"""`validate --format json`: the verdict on a manifest for editors, bots and
the GitHub Action (which uses `account_env` to tell whether it can plan)."""
from __future__ import annotations

import re
from typing import Any

from .errors import ManifestError
from .manifest import load_manifest

_WHERE = re.compile(r"(?P<file>[^\n]+?):(?P<line>\d+): (?P<message>.*)", re.S)


def validation_report(manifest_path: str) -> dict[str, Any]:
    """{"valid", "manifest", "problems": [{file, line, message}], ...} (never raises
    for a bad manifest: the problems are the answer)."""
    try:
        loaded = load_manifest(manifest_path)
    except ManifestError as e:
        return {"valid": False, "manifest": manifest_path, "problems": [_problem(p) for p in e.problems]}
    desired, target = loaded.desired, loaded.platform
    return {
        "valid": True, "manifest": manifest_path, "problems": [],
        "platform": target.name, "environment": loaded.environment,
        "account_env": {"url": target.env_url, "key": target.env_key},
        "secret_env": sorted({var for m in desired.models for var in m.secret_vars}),
        "models": len(desired.models), "consumers": len(desired.consumers),
        "consumer_noun": target.consumer_noun,
    }


def _problem(text: str) -> dict[str, Any]:
    match = _WHERE.fullmatch(text)
    if not match:
        file, _, message = text.partition(": ")
        return {"file": file, "line": None, "message": message or text, "text": text}
    return {"file": match["file"], "line": int(match["line"]), "message": match["message"], "text": text}
