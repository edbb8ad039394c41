"""The plan: an ordered list of typed changes that feeds both the renderers and
the executor, and checks its own safety before anyone acts on it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, Iterator

from .errors import PlanError
from .model import LiveState

if TYPE_CHECKING:
    from .providers.base import Capabilities

FORMAT_VERSION = 1


class Resource(StrEnum):
    MODEL = "model"
    CONSUMER = "consumer"   # a character, pipeline or assistant: JSON names it by its noun


class Action(StrEnum):
    REGISTER = "register"
    UPDATE = "update"
    REPLACE = "replace"
    DEREGISTER = "deregister"


class Purpose(StrEnum):
    """Why a consumer change exists, where later steps act on it (the state file,
    the apply report); the planner sets it, nobody parses reason text."""

    DECLARED = "declared"    # the manifest says so
    PARKED = "parked"        # onto the fallback while its model is replaced
    UNMANAGED = "unmanaged"  # not in the manifest; its model goes away
    UNPARKED = "unparked"    # not in the manifest; back from where an earlier run parked it


# Reason prefixes of plans saved before `purpose` was written (read-only compatibility).
_LEGACY_PURPOSE = (("unmanaged; parked earlier", Purpose.UNPARKED), ("unmanaged;", Purpose.UNMANAGED),
                   ("parked while", Purpose.PARKED))


class Phase(IntEnum):
    """The dependency order, defined once: a consumer is moved before the model
    it leaves goes away, and only onto a model that already exists."""

    REGISTER = 1    # new models exist before anyone is bound to them
    UPDATE = 2      # in-place model edits
    REBIND = 3      # declared bindings; consumers leaving doomed/replaced models
    REPLACE = 4     # deregister + register of models whose unchangeable field changed
    RESTORE = 5     # consumers back onto replaced models
    DEREGISTER = 6  # models nobody points at any more

    def title(self, noun: str = "character") -> str:
        return _TITLES[self].format(nouns=noun + "s")


_TITLES = {
    Phase.REGISTER: "register new models",
    Phase.UPDATE: "update models in place",
    Phase.REBIND: "rebind {nouns}",
    Phase.REPLACE: "replace models (deregister, then register)",
    Phase.RESTORE: "move {nouns} onto replaced models",
    Phase.DEREGISTER: "deregister models",
}


@dataclass(frozen=True)
class Change:
    resource: Resource
    id: str                        # the model's manifest name, or the consumer's id
    action: Action
    phase: Phase
    before: dict[str, Any] | None  # live values (known fields only)
    after: dict[str, Any] | None   # desired values
    fields: tuple[str, ...] = ()   # what differs (what an update sends)
    reason: str = ""               # why, when it is not just "the manifest says so"
    name: str | None = None        # a consumer's display name
    forces_replace: tuple[str, ...] = ()
    purpose: Purpose = Purpose.DECLARED
    sends_key: bool = False        # applying it sends the model's key (write-only: only when needed)

    def __post_init__(self) -> None:
        # accept the JSON words too ("model", "character", "register", ...)
        if not isinstance(self.resource, Resource):
            resource = Resource.MODEL if self.resource == "model" else Resource.CONSUMER
            object.__setattr__(self, "resource", resource)
        object.__setattr__(self, "action", Action(self.action))

    @property
    def is_model(self) -> bool:
        return self.resource is Resource.MODEL

    @property
    def parks(self) -> bool:
        return self.purpose is Purpose.PARKED

    @property
    def unmanaged(self) -> bool:
        return self.purpose in (Purpose.UNMANAGED, Purpose.UNPARKED)

    @property
    def unparks(self) -> bool:
        return self.purpose is Purpose.UNPARKED

    def to_json(self, noun: str = "character") -> dict[str, Any]:
        out = asdict(self)
        out["resource"] = "model" if self.is_model else noun
        out["action"] = self.action.value
        out["phase"] = self.phase.name.lower()
        out["fields"] = list(self.fields)
        out["forces_replace"] = list(self.forces_replace)
        out["purpose"] = self.purpose.value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], secret_field: str = "api_key") -> "Change":
        data = dict(data)
        data["resource"] = Resource.MODEL if data["resource"] == "model" else Resource.CONSUMER
        data["action"] = Action(data["action"])
        data["phase"] = Phase[data["phase"].upper()]
        data["fields"] = tuple(data.get("fields", ()))
        data["forces_replace"] = tuple(data.get("forces_replace", ()))
        data["purpose"] = Purpose(data["purpose"]) if "purpose" in data else _legacy_purpose(data)
        if "sends_key" not in data:  # plans saved before the flag: the rule they were made with
            data["sends_key"] = data["resource"] is Resource.MODEL and (
                data["action"] in (Action.REGISTER, Action.REPLACE) or secret_field in data["fields"])
        return cls(**data)


def _legacy_purpose(data: dict[str, Any]) -> Purpose:
    reason = str(data.get("reason", ""))
    return next((p for prefix, p in _LEGACY_PURPOSE if reason.startswith(prefix)), Purpose.DECLARED)


@dataclass
class Plan:
    dialect: str
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    platform: str = "convai"
    noun: str = "character"        # what the platform's consumers are called
    model_ref: str = "model_group_name"

    def __post_init__(self) -> None:
        self.changes.sort(key=lambda c: c.phase)  # stable: keeps the planner's order inside a phase

    @property
    def empty(self) -> bool:
        return not self.changes

    def phases(self) -> Iterator[tuple[Phase, list[Change]]]:
        for phase in Phase:
            group = [c for c in self.changes if c.phase == phase]
            if group:
                yield phase, group

    def key_models(self) -> set[str]:
        """The models whose key applying this plan sends."""
        return {c.id for c in self.changes if c.is_model and c.sends_key}

    def phase_title(self, phase: Phase) -> str:
        return phase.title(self.noun)

    def phase_number(self, phase: Phase) -> str:
        """"n/total" among the phases this plan has: the plan text and the apply
        progress number a phase the same way."""
        present = [p for p, _ in self.phases()]
        return f"{present.index(phase) + 1}/{len(present)}"

    def nouns(self, n: int) -> str:
        return self.noun if n == 1 else self.noun + "s"

    def summary(self) -> dict[str, int]:
        """Counts per kind. `characters` counts every consumer changed (whatever
        the platform's noun); of those, `rebind` move to another model and
        `consumer_update` only change binding fields (a temperature)."""
        count = lambda action: sum(1 for c in self.changes if c.is_model and c.action is action)
        moved: dict[str, bool] = {}
        for c in self.changes:
            if not c.is_model:
                moved[c.id] = moved.get(c.id, False) or self.model_ref in c.fields
        rebind = sum(moved.values())
        return {
            "register": count(Action.REGISTER),
            "update": count(Action.UPDATE),
            "replace": count(Action.REPLACE),
            "deregister": count(Action.DEREGISTER),
            "characters": len(moved),
            "rebind": rebind,
            "consumer_update": len(moved) - rebind,
            "changes": len(self.changes),
        }

    def summary_line(self) -> str:
        s = self.summary()
        if self.empty:
            return "No changes. The account matches the manifest."
        parts = [f"{s['register']} to register", f"{s['update']} to update"]
        if s["replace"]:
            parts.append(f"{s['replace']} to replace")
        parts.append(f"{s['deregister']} to deregister")
        parts.append(f"{s['rebind']} {self.nouns(s['rebind'])} to rebind")
        if s["consumer_update"]:
            parts.append(f"{s['consumer_update']} {self.nouns(s['consumer_update'])} to update")
        line = "Plan: " + ", ".join(parts)
        twice = s["changes"] - (s["register"] + s["update"] + s["replace"] + s["deregister"]
                                + s["characters"])
        if twice:  # parked during a replace, then moved back: one object, two changes
            line += (f" ({s['changes']} changes: {twice} {self.nouns(twice)} move twice, onto "
                     "the fallback and back, while their model is replaced)")
        return line + "."

    def verify_order(self, live: LiveState, builtins: frozenset[str]) -> None:
        """Replay the plan phase by phase and prove no consumer ever points at a
        missing model, whatever order the writes inside a phase finish in."""
        models = set(live.models)
        bound = {cid: c.model for cid, c in live.consumers.items()}
        broken = {cid for cid, m in bound.items() if m not in models and m not in builtins}
        for phase, group in self.phases():
            gone = {c.id for c in group if c.is_model and c.action in (Action.DEREGISTER, Action.REPLACE)}
            stable = (models - gone) | builtins  # what exists throughout the phase
            moves = {c.id: c.after[self.model_ref] for c in group
                     if not c.is_model and self.model_ref in c.fields}
            for cid, current in bound.items():
                for model in (current, moves.get(cid, current)):
                    if model not in stable and not (cid in broken and model == current):
                        raise PlanError(
                            f"internal error: the plan would leave {self.noun} {cid} on missing "
                            f"model '{model}' during phase '{self.phase_title(phase)}'; nothing was "
                            "written. Please report this with the plan JSON.")
            bound.update(moves)
            broken -= set(moves)
            models |= {c.id for c in group if c.action is Action.REGISTER}
            models -= {c.id for c in group if c.action is Action.DEREGISTER}

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "platform": self.platform,
            "dialect": self.dialect,
            "summary": self.summary(),
            "changes": [c.to_json(self.noun) for c in self.changes],
            "warnings": list(self.warnings),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Plan":
        from .providers.registry import platform  # the nouns of the platform the plan is for
        target = platform(str(data.get("platform", "convai")))
        caps = target.capabilities(data["dialect"])
        return cls(dialect=data["dialect"],
                   changes=[Change.from_json(c, caps.secret_field) for c in data["changes"]],
                   warnings=list(data.get("warnings", [])), meta=dict(data.get("meta", {})),
                   platform=target.name, noun=caps.consumer_noun, model_ref=caps.model_ref)

    @classmethod
    def for_caps(cls, caps: "Capabilities", changes: list[Change], warnings: list[str],
                 meta: dict[str, Any]) -> "Plan":
        return cls(caps.variant, changes, warnings, meta, caps.platform, caps.consumer_noun,
                   caps.model_ref)
