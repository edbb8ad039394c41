"""Run a Plan against the API: phase by phase, writes inside a phase in
parallel, and no later phase once one has failed."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .errors import ConvaiSyncError
from .plan import Change, Phase, Plan
from .providers.convai import ConvaiClient
from .secrets import Secret, scrub

DONE, FAILED, NOT_ATTEMPTED = "done", "failed", "not attempted"


@dataclass
class Outcome:
    change: Change
    status: str = NOT_ATTEMPTED
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"resource": self.change.resource, "id": self.change.id, "action": self.change.action,
                "phase": self.change.phase.name.lower(), "status": self.status, "error": self.error}


@dataclass
class ApplyReport:
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C/SIGTERM: writes in flight finished, nothing else started

    @property
    def ok(self) -> bool:
        return all(o.status == DONE for o in self.outcomes)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "interrupted": self.interrupted,
                "done": self.count(DONE), "failed": self.count(FAILED),
                "not_attempted": self.count(NOT_ATTEMPTED),
                "changes": [o.to_json() for o in self.outcomes]}


class Progress(Protocol):
    def phase(self, phase: Phase, changes: list[Change]) -> None: ...
    def finished(self, outcome: Outcome) -> None: ...
    def done(self) -> None: ...


def execute(plan: Plan, client: ConvaiClient, keys: dict[str, Secret], *,
            parallelism: int = 8, progress: Progress | None = None) -> ApplyReport:
    """Apply every change; the report says what was done, failed, or not attempted."""
    report = ApplyReport([Outcome(c) for c in plan.changes])
    by_change = {id(o.change): o for o in report.outcomes}
    pool = ThreadPoolExecutor(max_workers=max(1, parallelism))
    try:
        for phase, group in plan.phases():
            if progress:
                progress.phase(phase, group)
            run = lambda change: _run_one(change, client, keys, by_change[id(change)], progress)
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


def _run_one(change: Change, client: ConvaiClient, keys: dict[str, Secret], outcome: Outcome,
             progress: Progress | None) -> None:
    try:
        _OPERATIONS[(change.resource, change.action)](change, client, keys)
        outcome.status = DONE
    except ConvaiSyncError as e:
        outcome.status, outcome.error = FAILED, scrub(str(e))
    except Exception as e:  # a bug must still not hide what was done
        outcome.status, outcome.error = FAILED, scrub(f"unexpected {type(e).__name__}: {e}")
    if progress:
        progress.finished(outcome)


def _sent(change: Change) -> dict[str, Any]:
    """The fields a write sends: what differs, never the api_key placeholder."""
    assert change.after is not None
    return {k: change.after[k] for k in change.fields if k != "api_key"}


def _key(change: Change, keys: dict[str, Secret]) -> Secret:
    try:
        return keys[change.id]
    except KeyError:
        raise ConvaiSyncError(f"model '{change.id}': its api_key variable is not set") from None


def _register(change: Change, client: ConvaiClient, keys: dict[str, Secret]) -> None:
    client.register_model(change.id, _sent(change), _key(change, keys))


def _update(change: Change, client: ConvaiClient, keys: dict[str, Secret]) -> None:
    key = _key(change, keys) if "api_key" in change.fields else None
    client.update_model(change.id, _sent(change), key)


def _replace(change: Change, client: ConvaiClient, keys: dict[str, Secret]) -> None:
    key = _key(change, keys)  # check before the deregistration, not between the two halves
    client.deregister_model(change.id)
    assert change.after is not None
    client.register_model(change.id, {k: v for k, v in change.after.items() if k != "api_key"}, key)


def _deregister(change: Change, client: ConvaiClient, keys: dict[str, Secret]) -> None:
    client.deregister_model(change.id)


def _character(change: Change, client: ConvaiClient, keys: dict[str, Secret]) -> None:
    client.update_character(change.id, _sent(change))


_OPERATIONS: dict[tuple[str, str], Callable[[Change, ConvaiClient, dict[str, Secret]], None]] = {
    ("model", "register"): _register,
    ("model", "update"): _update,
    ("model", "replace"): _replace,
    ("model", "deregister"): _deregister,
    ("character", "update"): _character,
}
