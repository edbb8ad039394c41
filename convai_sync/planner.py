"""Diff the manifest against live state into an ordered, checked Plan."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .dialects import DIALECTS, Dialect
from .errors import PlanError
from .manifest import LoadedManifest, ModelSpec
from .model import CharacterState, LiveState
from .perf import gc_paused
from .plan import PARKED, UNMANAGED, UNPARKED, Change, Phase, Plan
from .secrets import SENSITIVE

TEMPERATURE_EPSILON = 1e-9


@dataclass(frozen=True)
class Brakes:
    """Overrides for the safety brakes (CLI flags)."""

    allow_empty: bool = False
    allow_deregister: bool = False


@dataclass
class _Work:
    """Scratch state while planning."""

    loaded: LoadedManifest
    live: LiveState
    dialect: Dialect
    changes: list[Change] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    replaced: set[str] = field(default_factory=set)
    doomed: set[str] = field(default_factory=set)
    key_versions: dict[str, int] = field(default_factory=dict)
    parked: dict[str, str] = field(default_factory=dict)
    parked_resolved: list[str] = field(default_factory=list)


@gc_paused()  # many small acyclic objects: see perf.py
def build_plan(loaded: LoadedManifest, live: LiveState, brakes: Brakes = Brakes(),
               key_versions: dict[str, int] | None = None,
               parked: dict[str, str] | None = None) -> Plan:
    """The full plan, or PlanError listing every reason it cannot be made safely.
    `key_versions` is the api_key_version last applied per model, `parked` the
    unmanaged characters an earlier run left on the fallback (see state.py)."""
    work = _Work(loaded, live, DIALECTS[live.dialect], key_versions=dict(key_versions or {}),
                 parked=dict(parked or {}))
    _plan_models(work)
    _plan_deregistrations(work)
    _plan_characters(work)
    _check_brakes(work, brakes)
    _check_display_names(work)
    if work.problems:
        raise PlanError("the plan was refused; nothing was written:\n" +
                        "\n".join(f"  - {p}" for p in work.problems))
    versions = {m.model_group_name: m.api_key_version for m in loaded.manifest.models
                if m.api_key_version is not None}
    plan = Plan(live.dialect, work.changes, work.warnings,
                {"requests": live.requests, "api_key_versions": versions,
                 "parked_resolved": sorted(work.parked_resolved)})
    plan.verify_order(live, loaded.manifest.builtins())
    return plan


def _desired_fields(spec: ModelSpec) -> dict[str, Any]:
    out = {"model_name": spec.model_name, "base_url": spec.base_url,
           "display_name": spec.display_name, "is_uncensored": spec.is_uncensored}
    return {k: v for k, v in out.items() if v is not None}


def _key_label(spec: ModelSpec) -> str:
    return SENSITIVE if spec.api_key_version is None else f"(sensitive, version {spec.api_key_version})"


def _registration(work: _Work, spec: ModelSpec, want: dict[str, Any]) -> dict[str, Any]:
    """What a register sends (a replace ends with one): the registrable fields and the key."""
    return {**{k: v for k, v in want.items() if k in work.dialect.registrable},
            "api_key": _key_label(spec)}


def _rotation(work: _Work, spec: ModelSpec) -> tuple[str, str] | None:
    """(before, after) labels when the manifest's api_key_version differs from
    the version last applied; None when the key need not be sent."""
    if spec.api_key_version is None:
        return None
    applied = work.key_versions.get(spec.model_group_name)
    if applied is None:
        work.warnings.append(f"no record of which api_key_version of model "
                             f"'{spec.model_group_name}' is live; assuming version "
                             f"{spec.api_key_version} (it is recorded on the next apply)")
        return None
    if applied == spec.api_key_version:
        return None
    return (f"(sensitive, version {applied})",
            f"(sensitive, version {applied} \u2192 {spec.api_key_version})")


def _plan_models(work: _Work) -> None:
    for spec in work.loaded.manifest.models:
        group, want = spec.model_group_name, _desired_fields(spec)
        live = work.live.models.get(group)
        if live is None:
            after = _registration(work, spec, want)
            work.changes.append(Change("model", group, "register", Phase.REGISTER, None, after,
                                       tuple(after)))
            continue
        have = live.known(work.dialect.readable)
        diff = tuple(k for k in want if k in have and have[k] != want[k])
        forcing = tuple(k for k in diff if k not in work.dialect.updatable)
        rotation = None if forcing else _rotation(work, spec)
        if not diff and rotation is None:
            continue
        if not forcing:
            before, after = dict(have), {**have, **{k: want[k] for k in diff}}
            if rotation:
                before["api_key"], after["api_key"] = rotation
                diff += ("api_key",)
            work.changes.append(Change("model", group, "update", Phase.UPDATE, before, after, diff))
            continue
        if spec.protect:
            work.problems.append(f"{work.loaded.model_line(group)}: model '{group}' is protected "
                                 f"(protect: true) but changing {', '.join(forcing)} requires "
                                 "replacing it; remove protect or keep the field as it is")
        work.replaced.add(group)
        work.changes.append(Change("model", group, "replace", Phase.REPLACE, have,
                                   _registration(work, spec, want), diff, forces_replace=forcing,
                                   reason=f"{', '.join(forcing)} cannot be updated in the "
                                          f"{work.dialect.name} dialect"))


def _plan_deregistrations(work: _Work) -> None:
    settings = work.loaded.manifest.settings
    wanted = {m.model_group_name for m in work.loaded.manifest.models}
    for group, live in sorted(work.live.models.items()):
        if group in wanted:
            continue
        if not settings.prune:
            work.warnings.append(f"model '{group}' is live but not in the manifest; it is left "
                                 "alone (set settings.prune: true to deregister it)")
            continue
        work.doomed.add(group)
        work.changes.append(Change("model", group, "deregister", Phase.DEREGISTER,
                                   live.known(work.dialect.readable), None, (),
                                   reason="not in the manifest; prune is on"))


def _plan_characters(work: _Work) -> None:
    declared = {c.char_id: c for c in work.loaded.manifest.characters}
    for spec in work.loaded.manifest.characters:
        live = work.live.characters.get(spec.char_id)
        if live is None:
            work.problems.append(f"{work.loaded.character_line(spec.char_id)}: character "
                                 f"'{spec.char_id}' does not exist in the account; check the "
                                 "char_id (convai-sync export lists the account's characters)")
            continue
        temperature = spec.temperature if spec.temperature is not None else live.temperature
        _bind(work, live, spec.model_group_name, temperature, "")
    stranded: list[str] = []
    fallback = work.loaded.manifest.settings.fallback_model
    work.parked_resolved += [cid for cid in work.parked
                             if cid in declared or cid not in work.live.characters]
    for cid, live in sorted(work.live.characters.items()):
        if cid in declared or _unpark(work, live):
            continue
        model = live.model_group_name
        if model in work.doomed or model in work.replaced:
            if fallback is None:
                stranded.append(f"{live.label} on '{model}'")
                continue
            why = "deregistered" if model in work.doomed else "replaced"
            _bind(work, live, model if model in work.replaced else fallback, live.temperature,
                  f"{UNMANAGED} its model '{model}' is {why}")
        elif model not in work.live.models and model not in work.loaded.manifest.builtins():
            work.warnings.append(f"character {live.label} points at model '{model}', which does "
                                 "not exist; declare the character in the manifest to repair it")
    if stranded:
        work.problems.append("these characters would point at a missing model, and no "
                             "settings.fallback_model is set to move them to: " + "; ".join(stranded)
                             + ". Set settings.fallback_model, or declare them under characters")
    _check_fallback(work, fallback)


def _unpark(work: _Work, live: CharacterState) -> bool:
    """Move a character an earlier run parked back onto its model, once that
    model exists (or is about to). True when that is planned."""
    back = work.parked.get(live.char_id)
    if back is None:
        return False
    managed = {m.model_group_name for m in work.loaded.manifest.models}
    if back == live.model_group_name or not (back in managed or back in work.loaded.manifest.builtins()):
        work.parked_resolved.append(live.char_id)  # already back, or its model is gone for good
        return False
    _bind(work, live, back, live.temperature, f"{UNPARKED} while '{back}' was replaced")
    return True


def _bind(work: _Work, live: CharacterState, model: str, temperature: float | None, reason: str) -> None:
    """Move one character to (model, temperature), parking it on the fallback
    while its model is replaced."""
    before = {"model_group_name": live.model_group_name, "temperature": live.temperature}
    after = {"model_group_name": model, "temperature": temperature}
    if model in work.replaced:
        if live.model_group_name in work.replaced:  # its current model goes away in REPLACE too
            fallback = work.loaded.manifest.settings.fallback_model
            if fallback is None:
                work.problems.append(
                    f"model '{model}' must be replaced and character {live.label} uses it; set "
                    "settings.fallback_model so it can be parked there during the replace")
                return
            parked = {"model_group_name": fallback, "temperature": live.temperature}
            work.changes.append(_character_change(live, Phase.REBIND, before, parked,
                                                  f"{PARKED} '{model}' is replaced"))
            before = parked
        _add_if_changed(work, live, Phase.RESTORE, before, after, reason or f"'{model}' was replaced")
        return
    _add_if_changed(work, live, Phase.REBIND, before, after, reason)


def _add_if_changed(work: _Work, live: CharacterState, phase: Phase, before: dict[str, Any],
                    after: dict[str, Any], reason: str) -> None:
    change = _character_change(live, phase, before, after, reason)
    if change.fields:
        work.changes.append(change)


def _character_change(live: CharacterState, phase: Phase, before: dict[str, Any],
                      after: dict[str, Any], reason: str) -> Change:
    fields = []
    if before["model_group_name"] != after["model_group_name"]:
        fields.append("model_group_name")
    b, a = before["temperature"], after["temperature"]
    if a is not None and (b is None or abs(a - b) > TEMPERATURE_EPSILON):
        fields.append("temperature")
    return Change("character", live.char_id, "update", phase, before, after, tuple(fields),
                  reason=reason, name=live.name)


def _check_fallback(work: _Work, fallback: str | None) -> None:
    # Validation already keeps the fallback out of the doomed set; a fallback
    # that is itself replaced cannot hold the characters parked during that replace.
    if fallback in work.replaced and any(
            c.parks for c in work.changes if c.resource == "character"):
        work.problems.append(f"{work.loaded.where('settings', 'fallback_model')}: fallback_model "
                             f"'{fallback}' is itself being replaced, so it cannot hold characters "
                             "during replaces; choose a model that stays (a built-in code is safest)")


def _check_brakes(work: _Work, brakes: Brakes) -> None:
    m = work.loaded.manifest
    going = sorted(work.doomed | work.replaced)
    if work.doomed and not m.models and not brakes.allow_empty:
        work.problems.append(f"the manifest lists no models and prune is on, so every custom model "
                             f"({len(work.doomed)}) would be deregistered; if that is really "
                             "intended, pass --allow-empty")
    limit = m.settings.max_deregister
    if len(going) > limit and not brakes.allow_deregister:
        work.problems.append(f"the plan deregisters or replaces {len(going)} models "
                             f"({', '.join(going)}), more than settings.max_deregister = {limit}; "
                             "review it and pass --allow-deregister, or raise the limit")


def _check_display_names(work: _Work) -> None:
    """Convai refuses a display_name another model holds (409). A model may take
    a name only if its holder gives it up in an earlier phase; otherwise the
    apply would fail halfway, so refuse now and say how to do it in two steps."""
    if "display_name" not in work.dialect.readable:
        return
    holders = {m.display_name: m.model_group_name for m in work.live.models.values() if m.display_name}
    released = {c.id: c.phase for c in work.changes if c.resource == "model"
                and ("display_name" in c.fields or c.action == "deregister")}
    for change in work.changes:
        name = (change.after or {}).get("display_name")
        holder = holders.get(name)
        if holder is None or holder == change.id or (change.before or {}).get("display_name") == name:
            continue
        if released.get(holder, Phase.DEREGISTER + 1) < change.phase:
            continue
        work.problems.append(
            f"{work.loaded.model_line(change.id)}: display_name '{name}' of model '{change.id}' is "
            f"still held by model '{holder}' when it would be set, and Convai requires display "
            f"names to be unique; apply in two steps: first give '{holder}' another display_name "
            "(or remove it), apply, then make this change")
