"""The one thing convai-sync must remember between runs: which api_key_version
of each model it last sent. The API never returns keys, so a rotation can only
be planned by comparing the manifest's version with the version last applied.

The file holds model names and integers only: no secret, nothing derived from
one. It is kept per account (API base URL) and written only by a successful
write of the key (register, replace, or a rotation update) or when a model's
version is first recorded. A missing record means "adopt": the manifest's
version is assumed live and recorded on the next apply.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConvaiSyncError

FORMAT_VERSION = 1


def default_path(manifest_path: str) -> Path:
    """`models.yaml` keeps its state in `models.state.json` beside it."""
    p = Path(manifest_path)
    return p.with_name(p.stem + ".state.json")


@dataclass
class KeyVersions:
    """Applied api_key_version per model_group_name, for one account."""

    path: Path | None
    account: str
    versions: dict[str, int] = field(default_factory=dict)
    _doc: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: Path | None, account: str) -> "KeyVersions":
        if path is None or not path.exists():
            return cls(path, account)
        try:
            doc = json.loads(path.read_text("utf-8"))
            if doc.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"unknown format_version {doc.get('format_version')!r}")
            raw = doc.get("accounts", {}).get(account, {}).get("api_key_versions", {})
            versions = {str(k): int(v) for k, v in raw.items()}
        except (ValueError, AttributeError, TypeError) as e:
            raise ConvaiSyncError(f"{path}: not a convai-sync state file ({e}); fix or delete it "
                                  "(deleting it only means key versions are adopted again)") from None
        return cls(path, account, versions, doc)

    def save(self) -> None:
        if self.path is None:
            return
        doc = self._doc or {"format_version": FORMAT_VERSION, "accounts": {}}
        doc["format_version"] = FORMAT_VERSION
        doc.setdefault("accounts", {})[self.account] = {"api_key_versions": dict(sorted(self.versions.items()))}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", "utf-8")
            os.replace(tmp, self.path)
        except OSError as e:
            raise ConvaiSyncError(f"{self.path}: cannot write the state file: {e.strerror}") from None


def record_applied(versions: KeyVersions, plan: Any, report: Any) -> None:
    """Update the applied versions after an apply: a model's version is recorded
    once every change that sends its key is done (or when none was needed)."""
    wanted: dict[str, int] = dict(plan.meta.get("api_key_versions", {}))
    sends_key: dict[str, list[str]] = {}
    for outcome in report.outcomes:
        c = outcome.change
        if c.resource != "model":
            continue
        if c.action == "deregister" and outcome.status == "done":
            versions.versions.pop(c.id, None)
        elif c.action in ("register", "replace") or "api_key" in c.fields:
            sends_key.setdefault(c.id, []).append(outcome.status)
    for group in set(versions.versions) - set(wanted):
        versions.versions.pop(group)  # no longer versioned (or no longer managed)
    for group, version in wanted.items():
        if all(status == "done" for status in sends_key.get(group, [])):
            versions.versions[group] = version
