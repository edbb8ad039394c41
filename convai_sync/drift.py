"""Drift: what differs between the account and the manifest, without writing.

There is no second differ: drift is the plan that apply would run now, and an
empty plan means in sync. This module only adds what a drift report owes its
reader besides the plan: the fields that could not be compared at all, and,
with --check-endpoints, the health of every model's endpoint (an endpoint that
went down is drift of the world the manifest points at).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .endpoint_check import EndpointHealth, health_lines, health_summary
from .manifest import LoadedManifest
from .model import LiveState
from .plan import Plan
from .providers.base import Capabilities

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Unchecked:
    """A field the API does not return, so it can never be compared."""

    field: str
    reason: str
    models: tuple[str, ...]


def unchecked_fields(loaded: LoadedManifest, live: LiveState, caps: Capabilities) -> list[Unchecked]:
    """Fields of the manifest's live models that the API never returns."""
    models = tuple(m.name for m in loaded.desired.models if m.name in live.models)
    if not models:
        return []
    out = [] if caps.key_readable else [
        Unchecked(caps.secret_field, "write-only, cannot be checked", models)]
    for name in caps.unreadable:
        out.append(Unchecked(name, f"not returned by the {live.dialect} dialect, cannot be checked",
                             models))
    return out


def would_apply(refused: list[str]) -> str:
    """What apply would do with the drift: make the changes, or refuse and why."""
    if not refused:
        return "Applying the manifest would make these changes:"
    return ("apply would refuse to make these changes, as a safety brake is tripped: "
            + "; ".join(refused) + ". The changes, planned with the brakes off for review:")


def drifted(plan: Plan, endpoints: list[EndpointHealth] | None) -> bool:
    """Exit 2: the plan is not empty, or an endpoint failed its check."""
    return not plan.empty or any(r.failed for r in endpoints or ())


def drift_text(plan: Plan, unchecked: list[Unchecked], source: str, plan_text: str,
               refused: list[str] = (), endpoints: list[EndpointHealth] | None = None) -> str:
    if plan.empty:
        lines = [f"In sync: the account matches {source}.", "", plan_text.rstrip("\n")]
    else:
        lines = [f"Drift: the account differs from {source}. {would_apply(list(refused))}", "",
                 plan_text.rstrip("\n")]
    if unchecked:
        lines += ["", "Not checked (the API does not return these fields, so they are never drift):"]
        lines += [f"  {u.field}: {u.reason} ({', '.join(u.models)})" for u in unchecked]
    if endpoints is not None:
        lines += ["", "Endpoints:", *health_lines(endpoints), health_summary(endpoints)]
    return "\n".join(lines) + "\n"


def drift_json(plan: Plan, unchecked: list[Unchecked], source: str,
               refused: list[str] = (), endpoints: list[EndpointHealth] | None = None,
               ) -> dict[str, Any]:
    """`endpoints` is null unless they were checked (--check-endpoints)."""
    return {
        "format_version": FORMAT_VERSION,
        "manifest": source,
        "in_sync": plan.empty,
        "apply_refused": list(refused),  # the brakes apply would stop at; [] = it would run
        "plan": plan.to_json(),
        "unchecked": [{"field": u.field, "reason": u.reason, "models": list(u.models)}
                      for u in unchecked],
        "endpoints": None if endpoints is None else [r.to_json() for r in endpoints],
        "endpoints_failed": sum(1 for r in endpoints or () if r.failed),
    }
