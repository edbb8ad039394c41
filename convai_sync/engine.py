"""The engine, for every platform: load -> resolve secrets -> read -> plan ->
apply -> record state. The CLI parses options, calls these, and renders; the
logic of each step lives in its own module (planner, executor, state)."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from .account import EMULATOR_SECRET
from .errors import PlanError
from .executor import ApplyReport, Keys, Outcome, Progress, execute
from .manifest import LoadedManifest, resolve_secrets
from .model import LiveState
from .plan import Plan
from .planner import Brakes, build_plan
from .scope import Scope
from .providers.base import Client
from .state import SyncState, account_key, changes_state, default_path, park_intents, record_applied

log = logging.getLogger("convai_sync")


@dataclass(frozen=True)
class Options:
    """What the commands share: brakes, where state lives, how hard to push."""

    brakes: Brakes = Brakes()
    state_file: str | None = None
    emulator: bool = False
    parallelism: int = 10
    scope: Scope = Scope()


def state_path(manifest_path: str | None, options: Options) -> Path | None:
    """Where this account's state file is (none: in memory only, on the emulator)."""
    if options.emulator:
        return None
    if options.state_file:
        return Path(options.state_file)
    return default_path(manifest_path) if manifest_path else None


def sync_state(manifest_path: str | None, environment: str, client: Client,
               options: Options) -> SyncState:
    """What earlier applies recorded for this account and environment."""
    return SyncState.load(state_path(manifest_path, options),
                          account_key(environment, client.base_url), legacy=client.base_url)


def read_live(loaded: LoadedManifest, client: Client, state: SyncState,
              options: Options) -> LiveState:
    """One read of the account. Keys the environment holds go along, for
    platforms that return keys and so can tell when one differs (never printed)."""
    placeholder = EMULATOR_SECRET if options.emulator else None
    loaded.desired.keys = resolve_secrets(loaded, placeholder=placeholder).keys
    live = client.read_state(loaded.desired.variant, loaded.desired, state.memo)
    caps = client.capabilities()
    log.info("read %d models and %d %s in %d requests (%s)", len(live.models), len(live.consumers),
             caps.consumers(len(live.consumers)), live.requests, live.dialect)
    return live


def make_plan(loaded: LoadedManifest, client: Client, options: Options,
              state: SyncState | None = None, live: LiveState | None = None) -> Plan:
    """The plan from `live` (read now when not given)."""
    state = state or sync_state(loaded.path, loaded.environment, client, options)
    live = live or read_live(loaded, client, state, options)
    return build_plan(loaded, live, options.brakes, state.versions, state.parked, state.fields,
                      options.scope)


def apply_plan(plan: Plan, client: Client, keys: Keys, state: SyncState, options: Options,
               progress: Progress | None = None) -> ApplyReport:
    """Execute, recording what the account cannot tell later (state.py) as each
    write lands, so a process killed at any point leaves a state file the next
    apply recovers from; then let the platform tidy what this apply left behind."""
    park_intents(state, plan)
    if state.worth_saving(plan):
        state.save()

    def landed(report: ApplyReport, outcome: Outcome) -> None:
        if not changes_state(outcome.change):
            return
        with lock:
            record_applied(state, plan, report)
            if state.worth_saving(plan):
                state.save()

    lock = threading.Lock()
    report = execute(plan, client, keys, parallelism=options.parallelism, progress=progress,
                     on_outcome=landed)
    record_applied(state, plan, report)
    state.memo = client.memo()
    report.notes = client.finish() if report.ok else []
    state.finish(plan)
    return report


def converged(loaded: LoadedManifest, client: Client, options: Options, state: SyncState,
              applied: Plan) -> Plan:
    """Read the account again: what a plan (brakes off) says is left of what
    `applied` set out to do (its --target, if it had one; a key re-sent by
    --replace is done once sent)."""
    targets = frozenset(applied.meta.get("targets", []))
    return make_plan(loaded, client, reporting(options, Scope(targets=targets, strict=False)), state)


def apply_refusal(loaded: LoadedManifest, client: Client, options: Options, state: SyncState,
                  live: LiveState) -> list[str]:
    """Why apply (with these options' brakes) would refuse the plan drift shows
    with the brakes off: the tripped brakes; empty when it would run."""
    try:
        make_plan(loaded, client, options, state, live)
    except PlanError as e:
        return e.problems
    return []


def reporting(options: Options, scope: Scope = Scope()) -> Options:
    """For a plan that only reports (drift, the post-apply check): a brake would
    hide the difference it is meant to stop."""
    return replace(options, brakes=Brakes(allow_empty=True, allow_deregister=True), scope=scope)
