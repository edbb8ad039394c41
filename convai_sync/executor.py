"""Run a Plan against the API: phase by phase, writes inside a phase in
parallel, and no later phase once one has failed."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable, Mapping, Protocol, Sequence

from .errors import ConvaiSyncError
from .plan import Action, Change, Phase, Plan, Resource
from .providers.base import Client
from .secrets import Secret, scrub

Keys = Mapping[str, "Sequence[Secret] | Secret"]

class Status(StrEnum):
    DONE = "done"
    FAILED = "failed"
    NOT_ATTEMPTED = "not attempted"


DONE, FAILED, NOT_ATTEMPTED = Status.DONE, Status.FAILED, Status.NOT_ATTEMPTED


@dataclass
class Outcome:
    change: Change
    status: Status = NOT_ATTEMPTED
    error: str | None = None

    def to_json(self, noun: str = "character") -> dict[str, Any]:
        c = self.change
        return {"resource": "model" if c.is_model else noun, "id": c.id, "action": c.action.value,
                "phase": c.phase.name.lower(), "status": self.status, "error": self.error}


@dataclass
class ApplyReport:
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C/SIGTERM: writes in flight finished, nothing else started
    noun: str = "character"    # what the platform's consumers are called
    notes: list[str] = field(default_factory=list)  # what the platform tidied after a success

    @property
    def ok(self) -> bool:
        return all(o.status == DONE for o in self.outcomes)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "interrupted": self.interrupted,
                "done": self.count(DONE), "failed": self.count(FAILED),
                "not_attempted": self.count(NOT_ATTEMPTED),
                "changes": [o.to_json(self.noun) for o in self.outcomes]}


class Progress(Protocol):
    def phase(self, phase: Phase, changes: list[Change]) -> None: ...
    def finished(self, outcome: Outcome) -> None: ...
    def done(self) -> None: ...


def execute(plan: Plan, client: Client, keys: Keys, *, parallelism: int = 8,
            progress: Progress | None = None,
            on_outcome: Callable[[ApplyReport, Outcome], None] | None = None) -> ApplyReport:
    """Apply every change; the report says what was done, failed, or not attempted.
    `on_outcome` sees the report after each change finishes (from its thread)."""
    report = ApplyReport([Outcome(c) for c in plan.changes], noun=plan.noun)
    by_change = {id(o.change): o for o in report.outcomes}
    pool = ThreadPoolExecutor(max_workers=max(1, parallelism))

    def finished(outcome: Outcome) -> None:
        if on_outcome:
            on_outcome(report, outcome)
        if progress:
            progress.finished(outcome)

    try:
        for phase, group in plan.phases():
            if progress:
                progress.phase(phase, group)
            run = lambda change: _run_one(change, client, keys, by_change[id(change)], finished)
            list(pool.map(run, group))
            if any(by_change[id(c)].status == FAILED for c in group):
                break
    except KeyboardInterrupt:
        # Like Terraform: let the writes in flight finish (a write cut off halfway is
        # the one outcome a report cannot describe), start nothing more, and report.
        report.interrupted = True
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if progress:
            progress.done()  # never leave a progress bar open
    return report


def _run_one(change: Change, client: Client, keys: Keys, outcome: Outcome,
             finished: Callable[[Outcome], None]) -> None:
    try:
        _OPERATIONS[(change.resource, change.action)](change, client, keys)
        outcome.status = DONE
    except ConvaiSyncError as e:
        outcome.status, outcome.error = FAILED, scrub(str(e))
    except Exception as e:  # a bug must still not hide what was done
        outcome.status, outcome.error = FAILED, scrub(f"unexpected {type(e).__name__}: {e}")
    finished(outcome)


def _keys(change: Change, keys: Keys) -> Sequence[Secret]:
    """The model's key(s); checked before any half of a write is sent."""
    try:
        found = keys[change.id]
    except KeyError:
        raise ConvaiSyncError(f"model '{change.id}': its api_key variable is not set") from None
    return (found,) if isinstance(found, Secret) else found


_OPERATIONS: dict[tuple[Resource, Action], Callable[[Change, Client, Keys], None]] = {
    (Resource.MODEL, Action.REGISTER): lambda c, client, keys: client.register(c, _keys(c, keys)),
    (Resource.MODEL, Action.UPDATE): lambda c, client, keys: client.update(
        c, _keys(c, keys) if c.sends_key else None),
    (Resource.MODEL, Action.REPLACE): lambda c, client, keys: client.replace(c, _keys(c, keys)),
    (Resource.MODEL, Action.DEREGISTER): lambda c, client, keys: client.deregister(c),
    (Resource.CONSUMER, Action.UPDATE): lambda c, client, keys: client.bind(c),
}
