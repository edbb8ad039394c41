"""Saved plans (`plan --out FILE`, `apply FILE`): the JSON plan plus what apply
needs to refuse a plan whose world has changed.

The file is the `--format json` document with one more key, `saved_plan`:

    account          where the plan was read (a URL, or "emulator"); informational
    environment      the manifest's environment (its state records are keyed by it)
    api_dialect      the manifest's setting, so apply probes the same way
    builtin_models   the manifest's extra built-in codes (for the order check)
    manifest         {path, sha256}: the manifest's meaning when planned
    live             {models: {id: hash}, characters: {id: hash}} (fingerprint.py)
    api_key_env      {model: VAR} for each change that sends a key (a list of VARs where a
                     model has several keys)
    review_fingerprint  one hash of what a reviewer approves (review_fingerprint()): the
                     GitHub Action puts it in the PR comment and applies on merge only a
                     plan with the same fingerprint

It never holds a secret value: keys are resolved from the environment at apply.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ApiError, ConvaiSyncError, ManifestError
from .escape import inline_quoted
from .fingerprint import digest, live_differences, live_fingerprint, manifest_fingerprint
from .manifest import LoadedManifest, account_key_var, load_manifest, resolve_keys
from .model import LiveState
from .plan import FORMAT_VERSION, Action, Plan
from .providers.base import Capabilities, Client
from .state import SyncState
from .providers.registry import platform
from .secrets import ENV_REF, Secret

SAVED_KEY = "saved_plan"
MAX_BYTES = 64 * 1024 * 1024


class StalePlanError(ConvaiSyncError):
    """The account (or the manifest) changed since the plan was saved."""


def saved_document(plan: Plan, loaded: LoadedManifest, live: LiveState, account: str) -> dict[str, Any]:
    """The document `plan --out` writes."""
    desired = loaded.desired
    variables = {m.name: _one_or_list(m.secret_vars) for m in desired.models}
    doc = plan.to_json()
    doc[SAVED_KEY] = {
        "account": account,
        "environment": loaded.environment,
        "api_dialect": desired.variant,
        "builtin_models": sorted(desired.builtins - loaded.platform.builtins()),
        "manifest": {"path": loaded.path, "sha256": manifest_fingerprint(loaded)},
        "live": live_fingerprint(live, _caps(plan)),
        "api_key_env": {c.id: variables[c.id] for c in plan.changes if c.sends_key},
    }
    doc[SAVED_KEY]["review_fingerprint"] = review_fingerprint(doc)
    return doc


def review_fingerprint(doc: dict[str, Any]) -> str:
    """What a reviewer approves: the changes, in order, of this environment, the
    manifest's meaning and every live object they were planned from. Not the
    account URL, the manifest's path or the time: the same plan made again by
    another job hashes the same."""
    saved = doc[SAVED_KEY]
    return digest({"platform": doc.get("platform"), "dialect": doc.get("dialect"),
                   "changes": doc.get("changes"), "environment": saved.get("environment"),
                   "manifest": (saved.get("manifest") or {}).get("sha256"), "live": saved.get("live")})


def _one_or_list(variables: tuple[str, ...]) -> str | list[str]:
    return variables[0] if len(variables) == 1 else list(variables)


def _caps(plan: Plan) -> Capabilities:
    return platform(plan.platform).capabilities(plan.dialect)


@dataclass
class SavedPlan:
    path: str
    plan: Plan
    account: str
    api_dialect: str
    builtin_models: frozenset[str]
    manifest_path: str | None
    manifest_sha256: str | None
    live: dict[str, dict[str, str]]
    api_key_env: dict[str, str | list[str]] = field(default_factory=dict)
    environment: str = ""

    def check_manifest(self) -> tuple[LoadedManifest | None, list[str]]:
        """(the manifest if it is where the plan was made from and unchanged,
        reasons it changed). A manifest that is not there is not a reason: a saved
        plan carries everything apply needs."""
        if not self.manifest_path or not Path(self.manifest_path).is_file():
            return None, []
        try:
            loaded = load_manifest(self.manifest_path)
        except ManifestError as e:
            return None, [f"manifest {self.manifest_path} changed since the plan and no longer "
                          f"loads ({e.problems[0] if e.problems else e})"]
        if manifest_fingerprint(loaded) != self.manifest_sha256:
            return None, [f"manifest {self.manifest_path} changed since the plan"]
        return loaded, []

    def live_reasons(self, live: LiveState) -> list[str]:
        """Why the live account is no longer the one the plan was made from."""
        if live.dialect != self.plan.dialect:
            return [f"the plan was made for the {self.plan.dialect} dialect, but the account now "
                    f"answers the {live.dialect} dialect"]
        return live_differences(self.live, live, _caps(self.plan))

    def stale_error(self, reasons: list[str]) -> StalePlanError:
        shown = reasons[:10] + ([f"and {len(reasons) - 10} more"] if len(reasons) > 10 else [])
        return StalePlanError(f"{self.path}: saved plan is stale: {'; '.join(shown)}; run plan "
                              "again (plan --out) and apply the new plan. Nothing was written.")

    def keys(self, environ: Mapping[str, str],
             placeholder: str | None = None) -> dict[str, tuple[Secret, ...]]:
        """Key values for the changes that send one, from the environment now."""
        wanted = ((group, [var] if isinstance(var, str) else var, self.path)
                  for group, var in sorted(self.api_key_env.items()))
        secrets = resolve_keys(wanted, environ, placeholder)
        if secrets.missing:
            raise secrets.refusal()
        return secrets.keys


def read_live_for(saved: SavedPlan, client: Client, state: SyncState,
                  loaded: LoadedManifest | None) -> LiveState:
    """Read the account the way the plan did; a dialect that is gone is staleness."""
    try:
        return client.read_state(saved.api_dialect, loaded.desired if loaded else None, state.memo)
    except ApiError as e:
        if e.status == 404 and saved.api_dialect != "auto":
            raise saved.stale_error([f"the account no longer answers the {saved.api_dialect} "
                                     "dialect the plan was made for"]) from None
        raise


def load_saved_plan(path: str) -> SavedPlan:
    """Read a saved plan, or say clearly why this file is not one."""
    doc = _read_json(path)
    version = doc.get("format_version")
    if version != FORMAT_VERSION and (SAVED_KEY in doc or "changes" in doc):
        raise ConvaiSyncError(f"{path}: format_version {version!r} is not one this convai-sync "
                              f"reads (it reads {FORMAT_VERSION}); run plan --out again with this "
                              "version of convai-sync. Nothing was written.")
    if SAVED_KEY not in doc:
        if "changes" in doc and "format_version" in doc:
            raise ConvaiSyncError(f"{path}: is a JSON plan without what apply needs to detect "
                                  "staleness (plan --format json prints one); write a saved plan "
                                  "with plan -f MANIFEST --out PLANFILE")
        raise ConvaiSyncError(f"{path}: not a convai-sync saved plan (it has no 'saved_plan' "
                              "section); write one with plan -f MANIFEST --out PLANFILE")
    try:
        plan = Plan.from_json(doc)
        saved = doc[SAVED_KEY]
        manifest = saved.get("manifest") or {}
        result = SavedPlan(
            path=path, plan=plan, account=str(saved.get("account", "")),
            api_dialect=str(saved.get("api_dialect", "auto")),
            builtin_models=frozenset(map(str, saved.get("builtin_models", []))),
            manifest_path=manifest.get("path"), manifest_sha256=manifest.get("sha256"),
            live={k: dict(saved["live"][k]) for k in ("models", "characters")},
            api_key_env={str(k): v if isinstance(v, list) else str(v)
                         for k, v in saved.get("api_key_env", {}).items()},
            # plans saved before environments: the default, the manifest's file stem
            environment=str(saved.get("environment") or Path(manifest.get("path") or path).stem))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConvaiSyncError(f"{path}: malformed saved plan ({type(e).__name__}: {e}); "
                              "write it again with plan --out") from None
    _check_changes(result)
    return result


def _read_json(path: str) -> dict[str, Any]:
    p = Path(path)
    try:
        if p.stat().st_size > MAX_BYTES:
            raise ConvaiSyncError(f"{path}: too large for a saved plan; is this the right file?")
        text = p.read_text("utf-8")
    except FileNotFoundError:
        raise ConvaiSyncError(f"{path}: no such file; write a saved plan with plan --out "
                              "PLANFILE, or apply a manifest with apply -f MANIFEST") from None
    except IsADirectoryError:
        raise ConvaiSyncError(f"{path}: is a directory, not a saved plan") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConvaiSyncError(f"{path}: cannot read it as a saved plan: {e}") from None
    try:
        doc = json.loads(text)
    except ValueError:
        hint = (" It looks like a manifest: use apply -f " + path) if "version:" in text else ""
        raise ConvaiSyncError(f"{path}: not a convai-sync saved plan (not JSON).{hint}") from None
    if not isinstance(doc, dict):
        raise ConvaiSyncError(f"{path}: not a convai-sync saved plan (not a JSON object)")
    return doc


def _check_changes(saved: SavedPlan) -> None:
    variants = platform(saved.plan.platform).variants
    if variants and saved.plan.dialect not in variants:
        raise ConvaiSyncError(f"{saved.path}: unknown dialect {saved.plan.dialect!r} in the saved plan")
    for change in saved.plan.changes:
        if not change.is_model and change.action is not Action.UPDATE:
            raise ConvaiSyncError(f"{saved.path}: unknown change '{change.action}' of "
                                  f"{saved.plan.noun} {change.id!r}; write the plan again with plan --out")
        if change.sends_key and change.id not in saved.api_key_env:
            raise ConvaiSyncError(f"{saved.path}: model '{change.id}' needs its api_key but the "
                                  "plan does not name its variable; write the plan again with plan --out")
    _check_key_variables(saved)


def _check_key_variables(saved: SavedPlan) -> None:
    """The manifest's rules for key references, applied to the saved plan's own
    copy: a plan file is as editable as a manifest (an artifact, a PR attachment)."""
    own = platform(saved.plan.platform).env_key
    for model, var in saved.api_key_env.items():
        for name in ([var] if isinstance(var, str) else var):
            if not isinstance(name, str) or not ENV_REF.match("${" + name + "}"):
                raise ConvaiSyncError(f"{saved.path}: api_key_env of model {inline_quoted(model)} is "
                                      f"not a variable name ({inline_quoted(name)}); the saved plan was "
                                      "altered: write it again with plan --out. Nothing was written.")
            if account_key_var(name, own):
                raise ConvaiSyncError(f"{saved.path}: model {inline_quoted(model)} would be sent "
                                      f"${{{name}}}, an account key, as its api_key; the saved plan "
                                      "was altered (a manifest may not do this either): write it "
                                      "again with plan --out. Nothing was written.")
