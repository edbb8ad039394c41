"""The plan: an ordered list of typed changes that feeds both the renderers and
the executor, and checks its own safety before anyone acts on it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any, Iterator

from .errors import PlanError
from .model import LiveState

FORMAT_VERSION = 1

# Reasons the planner gives that later steps act on (the state file, the apply
# report); written and tested in one place, see Change.parks and friends.
PARKED = "parked while"                  # onto the fallback while its model is replaced
UNMANAGED = "unmanaged;"                 # a character that is not in the manifest
UNPARKED = "unmanaged; parked earlier"   # back from where an earlier run parked it


class Phase(IntEnum):
    """The dependency order, defined once: a character is moved before the model
    it leaves goes away, and only onto a model that already exists."""

    REGISTER = 1    # new models exist before anyone is bound to them
    UPDATE = 2      # in-place model edits
    REBIND = 3      # declared bindings; characters leaving doomed/replaced models
    REPLACE = 4     # deregister + register of models whose model_name changed
    RESTORE = 5     # characters back onto replaced models
    DEREGISTER = 6  # models nobody points at any more

    @property
    def title(self) -> str:
        return _TITLES[self]


_TITLES = {
    Phase.REGISTER: "register new models",
    Phase.UPDATE: "update models in place",
    Phase.REBIND: "rebind characters",
    Phase.REPLACE: "replace models (deregister, then register)",
    Phase.RESTORE: "move characters onto replaced models",
    Phase.DEREGISTER: "deregister models",
}


@dataclass(frozen=True)
class Change:
    resource: str                  # "model" | "character"
    id: str                        # model_group_name or char_id
    action: str                    # register | update | replace | deregister
    phase: Phase
    before: dict[str, Any] | None  # live values (known fields only)
    after: dict[str, Any] | None   # desired values
    fields: tuple[str, ...] = ()   # what differs (what an update sends)
    reason: str = ""               # why, when it is not just "the manifest says so"
    name: str | None = None        # a character's display name
    forces_replace: tuple[str, ...] = ()

    @property
    def sends_key(self) -> bool:
        """Does applying it send the model's api_key (write-only, so only when needed)?"""
        return self.resource == "model" and (
            self.action in ("register", "replace") or "api_key" in self.fields)

    @property
    def parks(self) -> bool:
        return self.reason.startswith(PARKED)

    @property
    def unmanaged(self) -> bool:
        return self.reason.startswith(UNMANAGED)

    @property
    def unparks(self) -> bool:
        return self.reason.startswith(UNPARKED)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["phase"] = self.phase.name.lower()
        out["fields"] = list(self.fields)
        out["forces_replace"] = list(self.forces_replace)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Change":
        data = dict(data)
        data["phase"] = Phase[data["phase"].upper()]
        data["fields"] = tuple(data.get("fields", ()))
        data["forces_replace"] = tuple(data.get("forces_replace", ()))
        return cls(**data)


@dataclass
class Plan:
    dialect: str
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

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

    def summary(self) -> dict[str, int]:
        count = lambda action: sum(1 for c in self.changes if c.resource == "model" and c.action == action)
        return {
            "register": count("register"),
            "update": count("update"),
            "replace": count("replace"),
            "deregister": count("deregister"),
            "characters": len({c.id for c in self.changes if c.resource == "character"}),
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
        noun = "character" if s["characters"] == 1 else "characters"
        parts.append(f"{s['characters']} {noun} to rebind")
        return "Plan: " + ", ".join(parts) + "."

    def verify_order(self, live: LiveState, builtins: frozenset[str]) -> None:
        """Replay the plan phase by phase and prove no character ever points at a
        missing model, whatever order the writes inside a phase finish in."""
        models = set(live.models)
        bound = {cid: c.model_group_name for cid, c in live.characters.items()}
        broken = {cid for cid, m in bound.items() if m not in models and m not in builtins}
        for phase, group in self.phases():
            gone = {c.id for c in group if c.resource == "model" and c.action in ("deregister", "replace")}
            stable = (models - gone) | builtins  # what exists throughout the phase
            moves = {c.id: c.after["model_group_name"] for c in group
                     if c.resource == "character" and "model_group_name" in c.fields}
            for cid, current in bound.items():
                for model in (current, moves.get(cid, current)):
                    if model not in stable and not (cid in broken and model == current):
                        raise PlanError(
                            f"internal error: the plan would leave character {cid} on missing "
                            f"model '{model}' during phase '{phase.title}'; nothing was written. "
                            "Please report this with the plan JSON.")
            bound.update(moves)
            broken -= set(moves)
            models |= {c.id for c in group if c.action == "register"}
            models -= {c.id for c in group if c.action == "deregister"}

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "dialect": self.dialect,
            "summary": self.summary(),
            "changes": [c.to_json() for c in self.changes],
            "warnings": list(self.warnings),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Plan":
        return cls(dialect=data["dialect"], changes=[Change.from_json(c) for c in data["changes"]],
                   warnings=list(data.get("warnings", [])), meta=dict(data.get("meta", {})))
