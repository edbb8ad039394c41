"""Diff the desired state against live state into an ordered, checked Plan.

Platform-neutral: what a platform can read, update and register comes from its
Capabilities, what the manifest wants from its Desired state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import PlanError
from .manifest import LoadedManifest
from .model import ConsumerState, LiveState
from .perf import gc_paused
from .plan import Action, Change, Phase, Plan, Purpose, Resource
from .providers.base import Capabilities, Desired, DesiredModel
from .scope import Scope, narrow, unknown
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

    desired: Desired
    live: LiveState
    caps: Capabilities
    changes: list[Change] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    replaced: set[str] = field(default_factory=set)
    doomed: set[str] = field(default_factory=set)
    key_versions: dict[str, int] = field(default_factory=dict)
    parked: dict[str, str] = field(default_factory=dict)
    parked_resolved: list[str] = field(default_factory=list)
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)
    scope: Scope = Scope()

    @property
    def ref(self) -> str:
        return self.caps.model_ref

    def usable(self, model: str | None) -> bool:
        return model in self.live.models or model in self.desired.builtins


def build_plan(loaded: LoadedManifest, live: LiveState, brakes: Brakes = Brakes(),
               key_versions: dict[str, int] | None = None,
               parked: dict[str, str] | None = None,
               applied: dict[str, dict[str, Any]] | None = None, scope: Scope = Scope()) -> Plan:
    """The plan for a loaded manifest against what its platform's account holds."""
    caps = loaded.platform.capabilities(live.dialect)
    return plan_desired(loaded.desired, live, caps, brakes, key_versions, parked, applied, scope)


@gc_paused()  # many small acyclic objects: see perf.py
def plan_desired(desired: Desired, live: LiveState, caps: Capabilities, brakes: Brakes = Brakes(),
                 key_versions: dict[str, int] | None = None,
                 parked: dict[str, str] | None = None,
                 applied: dict[str, dict[str, Any]] | None = None,
                 scope: Scope = Scope()) -> Plan:
    """The full plan, or PlanError listing every reason it cannot be made safely.
    `key_versions` is the api_key_version last applied per model, `parked` the
    unmanaged consumers an earlier run left on the fallback, `applied` the
    write-only fields last applied per model (see state.py); `scope` narrows
    the plan (--target) or sends keys again (--replace): see scope.py."""
    work = _Work(desired, live, caps, key_versions=dict(key_versions or {}), parked=dict(parked or {}),
                 warnings=list(live.warnings), applied=dict(applied or {}), scope=scope)
    if scope.strict:
        _check_scope(work)
    _plan_models(work)
    _plan_deregistrations(work)
    _plan_consumers(work)
    _check_brakes(work, brakes)
    _check_unique(work)
    if work.problems:
        raise PlanError("the plan was refused; nothing was written:\n" +
                        "\n".join(f"  - {p}" for p in work.problems), work.problems)
    planned = {c.id for c in work.changes if c.is_model}
    work.changes = narrow(work.changes, scope.targets, caps.model_ref)
    left = planned - {c.id for c in work.changes if c.is_model}  # left out by --target
    versions = {m.name: work.key_versions.get(m.name) if m.name in left else m.key_version
                for m in desired.models}
    write_only = {m.name: work.applied.get(m.name, {}) if m.name in left else
                  {f: m.fields[f] for f in caps.write_only if f in m.fields} for m in desired.models}
    plan = Plan.for_caps(caps, work.changes, work.warnings + _scope_warnings(scope),
                         {"requests": live.requests,
                          "api_key_versions": {k: v for k, v in versions.items() if v is not None},
                          "parked_resolved": sorted(work.parked_resolved),
                          "applied_fields": {k: v for k, v in write_only.items() if v},
                          "key_variables": _key_variables(desired, work.changes),
                          "unchecked_fields": list(caps.unreadable),
                          **({"targets": sorted(scope.targets)} if scope.targets else {})})
    plan.verify_order(live, desired.builtins)
    return plan


def _key_variables(desired: Desired, changes: list[Change]) -> dict[str, list[str]]:
    """The ${VAR}s apply reads, per model whose key it sends (names only)."""
    sent = [c.id for c in changes if c.is_model and c.sends_key]
    return {m: list(spec.secret_vars) for m in sent if (spec := desired.model(m))}


def _key_label(spec: DesiredModel) -> str:
    return SENSITIVE if spec.key_version is None else f"(sensitive, version {spec.key_version})"


def _registration(work: _Work, spec: DesiredModel) -> dict[str, Any]:
    """What a register sends (a replace ends with one): the registrable fields and the key."""
    return {**{k: v for k, v in spec.fields.items() if k in work.caps.registrable},
            work.caps.secret_field: _key_label(spec)}


def _model_change(work: _Work, spec: DesiredModel, action: Action, phase: Phase,
                  before: dict[str, Any] | None, after: dict[str, Any], fields: tuple[str, ...],
                  **extra: Any) -> None:
    sends = (action in (Action.REGISTER, Action.REPLACE) or work.caps.secret_field in fields
             or bool(work.caps.key_bound.intersection(fields)))
    work.changes.append(Change(Resource.MODEL, spec.name, action, phase, before, after, fields,
                               sends_key=sends, **extra))


def _check_scope(work: _Work) -> None:
    """--replace names a manifest model; --target a model or consumer of the
    manifest or the account."""
    models = {m.name for m in work.desired.models}
    known = models | set(work.live.models) | set(work.live.consumers) | {
        c.id for c in work.desired.consumers}
    work.problems += unknown(work.scope.replace, models, "--replace", "model", "the manifest")
    work.problems += unknown(work.scope.targets, known, "--target",
                             f"model or {work.caps.consumer_noun}", "the manifest or the account")


def _scope_warnings(scope: Scope) -> list[str]:
    if not scope.targets:
        return []
    return [f"--target {', '.join(sorted(scope.targets))}: this plan is narrowed to these objects "
            "and what the safe order needs for them; every other difference is left for a later "
            "apply (as with Terraform's -target, use it for exceptions, not routinely)"]


def _rotation(work: _Work, spec: DesiredModel) -> tuple[str, str] | None:
    """(before, after) labels when the manifest's api_key_version differs from
    the version last applied; None when the key need not be sent. With no record
    (a first versioned run, a lost state file) the live key may be the leaked
    one: send it."""
    if spec.name in work.scope.replace:
        return (SENSITIVE, "(sensitive, sent again: --replace)")
    if spec.key_version is None:
        return None
    applied = work.key_versions.get(spec.name)
    if applied == spec.key_version:
        return None
    was = "unknown" if applied is None else str(applied)
    return (f"(sensitive, version {was})", f"(sensitive, version {was} \u2192 {spec.key_version})")


def _plan_models(work: _Work) -> None:
    for spec in work.desired.models:
        live = work.live.models.get(spec.name)
        untakeable = work.caps.untakeable(spec.fields)
        if untakeable:
            work.problems.append(work.caps.untakeable_problem(spec.where, spec.name, untakeable))
        if live is None:
            after = _registration(work, spec)
            _model_change(work, spec, Action.REGISTER, Phase.REGISTER, None, after, tuple(after))
            continue
        have = {**live.known(work.caps.readable), **_recorded(work, spec)}
        want = {**spec.fields, **_desired_key(work, spec, have)}
        diff = tuple(k for k in want if k in have and have[k] != want[k])
        forcing = tuple(k for k in diff if k not in work.caps.updatable)
        rotation = None if forcing else _rotation(work, spec)
        if not diff and rotation is None:
            continue
        if not forcing:
            before, after = dict(have), {**have, **{k: want[k] for k in diff}}
            if rotation:
                before[work.caps.secret_field], after[work.caps.secret_field] = rotation
                diff += () if work.caps.secret_field in diff else (work.caps.secret_field,)
            _model_change(work, spec, Action.UPDATE, Phase.UPDATE, before, after, diff)
            continue
        if spec.protect:
            work.problems.append(f"{spec.where}: model '{spec.name}' is protected (protect: true) "
                                 f"but changing {', '.join(forcing)} requires replacing it; remove "
                                 "protect or keep the field as it is")
        work.replaced.add(spec.name)
        _model_change(work, spec, Action.REPLACE, Phase.REPLACE, have, _registration(work, spec),
                      diff, forces_replace=forcing,
                      reason=f"{', '.join(forcing)} cannot be updated in the {work.caps.variant} "
                             "dialect")


def _recorded(work: _Work, spec: DesiredModel) -> dict[str, Any]:
    """Write-only fields as last applied; a field with no record is taken as the
    manifest's (adopted) and recorded by the next apply."""
    record = work.applied.get(spec.name, {})
    return {f: record[f] for f in work.caps.write_only if f in record}


def _desired_key(work: _Work, spec: DesiredModel, have: dict[str, Any]) -> dict[str, Any]:
    """Where the API returns keys, the adapter reads them as a secret-free marker
    (SENSITIVE when they match the manifest's): want the matching marker."""
    if work.caps.key_readable and work.caps.secret_field in have:
        return {work.caps.secret_field: SENSITIVE}
    return {}


def _plan_deregistrations(work: _Work) -> None:
    wanted = {m.name for m in work.desired.models}
    for name, live in sorted(work.live.models.items()):
        if name in wanted:
            continue
        if not work.desired.prune:
            work.warnings.append(f"model '{name}' is live but not in the manifest; it is left "
                                 "alone (set settings.prune: true to deregister it)")
            continue
        work.doomed.add(name)
        work.changes.append(Change(Resource.MODEL, name, Action.DEREGISTER, Phase.DEREGISTER,
                                   live.known(work.caps.readable), None, (),
                                   reason="not in the manifest; prune is on"))


def _plan_consumers(work: _Work) -> None:
    declared = {c.id for c in work.desired.consumers}
    noun = work.caps.consumer_noun
    for spec in work.desired.consumers:
        live = work.live.consumers.get(spec.id)
        if live is None:
            work.problems.append(f"{spec.where}: {noun} '{spec.id}' does not exist in the account; "
                                 f"check the {work.caps.consumer_key} (convai-sync export lists the "
                                 f"account's {noun}s)")
            continue
        _bind(work, live, spec.model, spec.fields, "", Purpose.DECLARED)
    stranded: list[str] = []
    fallback = work.desired.fallback_model
    work.parked_resolved += [cid for cid in work.parked
                             if cid in declared or cid not in work.live.consumers]
    for cid, live in sorted(work.live.consumers.items()):
        if cid in declared or _unpark(work, live):
            continue
        model = live.model
        if model in work.doomed or model in work.replaced:
            if fallback is None:
                stranded.append(f"{live.label} on '{model}'")
                continue
            why = "deregistered" if model in work.doomed else "replaced"
            _bind(work, live, model if model in work.replaced else fallback, {},
                  f"unmanaged; its model '{model}' is {why}", Purpose.UNMANAGED)
        elif model is not None and not work.usable(model):
            work.warnings.append(f"{noun} {live.label} points at model '{model}', which does not "
                                 f"exist; declare the {noun} in the manifest to repair it")
    if stranded:
        work.problems.append(f"these {noun}s would point at a missing model, and no "
                             "settings.fallback_model is set to move them to: " + "; ".join(stranded)
                             + f". Set settings.fallback_model, or declare them under {noun}s")
    _check_fallback(work, fallback)


def _unpark(work: _Work, live: ConsumerState) -> bool:
    """Move a consumer an earlier run parked back onto its model, once that
    model exists (or is about to). True when that is planned."""
    back = work.parked.get(live.id)
    if back is None:
        return False
    if back == live.model or not (work.desired.model(back) or back in work.desired.builtins):
        work.parked_resolved.append(live.id)  # already back, or its model is gone for good
        return False
    _bind(work, live, back, {}, f"unmanaged; parked earlier while '{back}' was replaced",
          Purpose.UNPARKED)
    return True


def _binding(work: _Work, model: str | None, fields: dict[str, Any]) -> dict[str, Any]:
    return {work.ref: model, **work.desired.implied.get(model or "", {}), **fields}


def _bind(work: _Work, live: ConsumerState, model: str, fields: dict[str, Any], reason: str,
          purpose: Purpose) -> None:
    """Move one consumer to `model` (with `fields`), parking it on the fallback
    while its model is replaced."""
    before = {work.ref: live.model, **live.fields}
    after = {**before, **_binding(work, model, fields)}
    if model in work.replaced:
        if live.model in work.replaced:  # its current model goes away in REPLACE too
            fallback = work.desired.fallback_model
            if fallback is None:
                work.problems.append(
                    f"model '{model}' must be replaced and {work.caps.consumer_noun} {live.label} "
                    "uses it; set settings.fallback_model so it can be parked there during the replace")
                return
            parked = {**before, **_binding(work, fallback, {})}
            work.changes.append(_consumer_change(live, Phase.REBIND, before, parked,
                                                 f"parked while '{model}' is replaced", Purpose.PARKED))
            before = parked
        _add_if_changed(work, live, Phase.RESTORE, before, after, reason or f"'{model}' was replaced",
                        purpose)
        return
    _add_if_changed(work, live, Phase.REBIND, before, after, reason, purpose)


def _add_if_changed(work: _Work, live: ConsumerState, phase: Phase, before: dict[str, Any],
                    after: dict[str, Any], reason: str, purpose: Purpose) -> None:
    change = _consumer_change(live, phase, before, after, reason, purpose)
    if change.fields:
        work.changes.append(change)


def _differs(b: Any, a: Any) -> bool:
    if a is None:
        return False  # absent = leave as it is
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) > TEMPERATURE_EPSILON
    return a != b


def _consumer_change(live: ConsumerState, phase: Phase, before: dict[str, Any],
                     after: dict[str, Any], reason: str, purpose: Purpose) -> Change:
    fields = tuple(k for k in after if _differs(before.get(k), after[k]))
    return Change(Resource.CONSUMER, live.id, Action.UPDATE, phase, before, after, fields,
                  reason=reason, name=live.name, purpose=purpose)


def _check_fallback(work: _Work, fallback: str | None) -> None:
    # Validation already keeps the fallback out of the doomed set; a fallback
    # that is itself replaced cannot hold the consumers parked during that replace.
    if fallback in work.replaced and any(c.parks for c in work.changes):
        work.problems.append(f"{work.desired.fallback_where}: fallback_model '{fallback}' is itself "
                             f"being replaced, so it cannot hold {work.caps.consumer_noun}s during "
                             "replaces; choose a model that stays (a built-in code is safest)")


def _check_brakes(work: _Work, brakes: Brakes) -> None:
    going = sorted(work.doomed | work.replaced)
    if work.doomed and not work.desired.models and not brakes.allow_empty:
        work.problems.append(f"the manifest lists no models and prune is on, so every custom model "
                             f"({len(work.doomed)}) would be deregistered; if that is really "
                             "intended, pass --allow-empty")
    limit = work.desired.max_deregister
    if len(going) > limit and not brakes.allow_deregister:
        work.problems.append(f"the plan deregisters or replaces {len(going)} models "
                             f"({', '.join(going)}), more than settings.max_deregister = {limit}; "
                             "review it and pass --allow-deregister, or raise the limit")


def _check_unique(work: _Work) -> None:
    """A platform may refuse a value another model holds (Convai: display_name,
    409). A model may take one only if its holder gives it up in an earlier phase;
    otherwise the apply would fail halfway, so refuse now and say how in two steps."""
    for unique in sorted(work.caps.unique_fields & work.caps.readable):
        holders = {m.fields.get(unique): m.name for m in work.live.models.values()
                   if m.fields.get(unique)}
        released = {c.id: c.phase for c in work.changes if c.is_model
                    and (unique in c.fields or c.action is Action.DEREGISTER)}
        for change in work.changes:
            value = (change.after or {}).get(unique) if change.is_model else None
            holder = holders.get(value)
            if holder is None or holder == change.id or (change.before or {}).get(unique) == value:
                continue
            if released.get(holder, Phase.DEREGISTER + 1) < change.phase:
                continue
            spec = work.desired.model(change.id)
            work.problems.append(
                f"{spec.where if spec else change.id}: {unique} '{value}' of model '{change.id}' is "
                f"still held by model '{holder}' when it would be set, and {work.caps.platform.title()} "
                f"requires {unique} values to be unique; apply in two steps: first give '{holder}' "
                f"another {unique} (or remove it), apply, then make this change")
