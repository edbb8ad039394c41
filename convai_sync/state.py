"""What convai-sync must remember between runs, because the API cannot tell:

- which api_key_version of each model it last sent (keys are write-only, so a
  rotation can only be planned by comparing versions);
- which characters *not* in the manifest it parked on the fallback model while
  their model was replaced, and has not yet moved back (a replace that failed
  halfway leaves them there, and nothing live says they were parked);
- which value of each write-only field (one the API takes but never returns,
  e.g. is_uncensored in Convai's custom-llm dialect) it last applied, so that a
  change in the manifest is still sent.

The file holds model names, character IDs, integers and the values of those
write-only fields (e.g. true/false) only: no secret, nothing derived from one.
It is kept per account and environment (`production@https://api.convai.com`:
two accounts behind one API URL are two environments, never one record) and
written only when there is something to keep. A record written before
environments (under the URL alone) is read once and moved under the
environment's key on the next save. A missing version record means the live key
is unknown: the plan sends the manifest's key, and the apply records it.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConvaiSyncError
from .executor import DONE, ApplyReport, Outcome
from .plan import Change, Phase, Plan

FORMAT_VERSION = 1


def account_key(environment: str, base_url: str) -> str:
    """The key of one account's records: environment and API URL together."""
    return f"{environment}@{base_url}"


def default_path(manifest_path: str) -> Path:
    """`models.yaml` keeps its state in `models.state.json` beside it."""
    p = Path(manifest_path)
    return p.with_name(p.stem + ".state.json")


@dataclass
class SyncState:
    """Applied api_key_version per model, and parked characters (char_id -> the
    model to move them back to), for one account."""

    path: Path | None
    account: str
    versions: dict[str, int] = field(default_factory=dict)
    parked: dict[str, str] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)  # the platform adapter's own records
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)  # write-only fields applied
    _doc: dict[str, Any] = field(default_factory=dict, repr=False)
    _legacy: str | None = field(default=None, repr=False)  # a pre-environment key read instead
    existed: bool = False  # the file was there before this run
    _written: str | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: Path | None, account: str, legacy: str | None = None) -> "SyncState":
        """The records of `account`, or (when it has none) those a release before
        environments kept under `legacy` (the API URL alone)."""
        if path is None or not path.exists():
            return cls(path, account)
        try:
            doc = json.loads(path.read_text("utf-8"))
            if doc.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"unknown format_version {doc.get('format_version')!r}")
            accounts = doc.get("accounts", {})
            used = legacy if account not in accounts and legacy in accounts else None
            entry = accounts.get(used or account, {})
            versions = {str(k): int(v) for k, v in entry.get("api_key_versions", {}).items()}
            parked = {str(k): str(v) for k, v in entry.get("parked_characters", {}).items()}
            memo = dict(entry.get("platform", {}))
            fields = {str(k): dict(v) for k, v in entry.get("applied_fields", {}).items()}
        except (ValueError, AttributeError, TypeError) as e:
            raise ConvaiSyncError(f"{path}: not a convai-sync state file ({e}); fix or delete it "
                                  "(deleting it only means each versioned key is sent once more)") from None
        return cls(path, account, versions, parked, memo, fields, doc, used, existed=True)

    def worth_saving(self, plan: Any) -> bool:
        return bool(plan.meta.get("api_key_versions") or self.parked or self.memo or self.fields
                    or self.existed)

    def finish(self, plan: Any) -> None:
        """After an apply: save what is worth keeping; a file this run created
        only to survive a crash mid-replace is removed once it holds nothing."""
        if self.worth_saving(plan):
            self.save()
        elif self.path is not None and self._written is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._written = None

    def save(self) -> None:
        """Write the file atomically, if it changed: a unique temp file beside
        it, flushed to disk, then renamed over it (a kill -9 leaves the old or
        the new file, never half of one; two processes never share a temp file)."""
        if self.path is None:
            return
        with self._lock:
            text = json.dumps(self._document(), indent=2, sort_keys=True) + "\n"
            if text == self._written:
                return
            try:
                _replace_atomically(self.path, text)
            except OSError as e:
                raise ConvaiSyncError(f"{self.path}: cannot write the state file: {e.strerror}") from None
            self._written = text

    def _document(self) -> dict[str, Any]:
        doc = self._doc or {"format_version": FORMAT_VERSION, "accounts": {}}
        self._doc = doc
        doc["format_version"] = FORMAT_VERSION
        entry: dict[str, Any] = {"api_key_versions": dict(sorted(self.versions.items()))}
        if self.parked:
            entry["parked_characters"] = dict(sorted(self.parked.items()))
        if self.memo:
            entry["platform"] = self.memo
        if self.fields:
            entry["applied_fields"] = dict(sorted(self.fields.items()))
        accounts = doc.setdefault("accounts", {})
        accounts[self.account] = entry
        if self._legacy:
            accounts.pop(self._legacy, None)  # moved under the environment's key
        return doc


def _replace_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def park_intents(state: SyncState, plan: Plan) -> None:
    """Before any write: every consumer the plan parks is recorded as parked
    (with the model to move it back to). A process killed after parking it and
    before moving it back leaves the record, and the next apply moves it back;
    one killed before parking it leaves a record the next plan resolves.
    (A consumer the manifest declares needs no record: its binding is declared.)"""
    parked = {c.id for c in plan.changes if c.parks}
    for change in plan.changes:
        if change.phase is Phase.RESTORE and change.unmanaged and change.id in parked:
            state.parked[change.id] = change.after[plan.model_ref]


def record_applied(state: SyncState, plan: Plan, report: ApplyReport) -> None:
    """Update the state after an apply: a model's version is recorded once every
    change that sends its key is done (or when none was needed); an unmanaged
    character stays parked until its move back is done."""
    wanted: dict[str, int] = dict(plan.meta.get("api_key_versions", {}))
    sends_key: dict[str, list[str]] = {}
    writes: dict[str, list[str]] = {}
    for outcome in report.outcomes:
        c = outcome.change
        if not c.is_model:
            continue
        writes.setdefault(c.id, []).append(outcome.status)
        if c.sends_key:
            sends_key.setdefault(c.id, []).append(outcome.status)
    _record_fields(state, plan.meta.get("applied_fields", {}), writes)
    parks = {c.id for c in plan.changes if c.parks}  # parked again by this plan: keep the record
    for cid in plan.meta.get("parked_resolved", []):
        if cid not in parks:
            state.parked.pop(cid, None)
    parked_now = {o.change.id for o in report.outcomes if o.status == DONE and o.change.parks}
    for outcome in report.outcomes:
        if not outcome.change.is_model:
            _record_parking(state, outcome, parked_now, plan.model_ref)
    for group in set(state.versions) - set(wanted):
        state.versions.pop(group)  # no longer versioned, no longer managed, or deregistered
    for group, version in wanted.items():
        if all(status == DONE for status in sends_key.get(group, [])):
            state.versions[group] = version


def _record_fields(state: SyncState, wanted: dict[str, dict[str, Any]],
                   writes: dict[str, list[str]]) -> None:
    """A model's write-only fields are recorded as the manifest has them once
    every write to that model is done (or when none was needed)."""
    for group in set(state.fields) - set(wanted):
        state.fields.pop(group)
    for group, values in wanted.items():
        if all(status == DONE for status in writes.get(group, [])):
            state.fields[group] = dict(values)


def changes_state(change: Change) -> bool:
    """Whether the outcome of `change` changes what the state file records."""
    return change.is_model or change.parks or change.unmanaged


def _record_parking(state: SyncState, outcome: Outcome, parked_now: set[str], ref: str) -> None:
    c = outcome.change
    if c.phase is Phase.RESTORE and c.unmanaged:
        if outcome.status == DONE:
            state.parked.pop(c.id, None)
        elif c.id in parked_now:  # parked by this run, not moved back
            state.parked[c.id] = c.after[ref]
    elif outcome.status == DONE and c.unparks:
        state.parked.pop(c.id, None)  # moved back by a later run
