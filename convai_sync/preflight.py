"""Before an apply's first write: check every endpoint its plan moves consumers
onto, and refuse the whole apply (nothing written, not even a model
registered) when one fails.

Refusing the whole plan rather than dropping the failing part keeps the apply
exactly the plan that was shown and approved: a plan with pieces cut out is a
plan nobody reviewed, and its remaining steps may depend on the cut ones (a
deregistration waits for consumers to move). The user fixes the endpoint, or
names it with --skip-check when it is down on purpose, and applies again.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from .endpoint_check import CheckSettings, EndpointHealth, check_endpoints
from .errors import ConvaiSyncError
from .plan import Action, Plan
from .providers.base import Endpoint
from .secrets import Secret


def endpoints_moved_onto(plan: Plan, endpoints: Sequence[Endpoint]) -> list[Endpoint]:
    """The endpoints consumers will talk through after this plan where that is
    new: models registered or replaced, models whose endpoint or key changes, and
    models a consumer is moved onto (or whose endpoint its binding now carries)."""
    by_model = {e.model: e for e in endpoints}
    wanted: set[str] = set()
    for c in plan.changes:
        endpoint = by_model.get(c.id) if c.is_model else None
        if endpoint is not None and c.action in (Action.REGISTER, Action.REPLACE):
            wanted.add(c.id)
        elif endpoint is not None and c.action is Action.UPDATE and (
                c.sends_key or set(c.fields) & set(endpoint.fields)):
            wanted.add(c.id)
        elif not c.is_model and c.after:
            target = by_model.get(str(c.after.get(plan.model_ref)))
            if target is not None and set(c.fields) & {plan.model_ref, *target.fields}:
                wanted.add(target.model)
    return [e for e in endpoints if e.model in wanted]


class EndpointRefusal(ConvaiSyncError):
    """An endpoint the plan moves consumers onto failed its check."""


def preflight(plan: Plan, endpoints: Sequence[Endpoint],
              keys: Mapping[str, Sequence[Secret] | Secret],
              settings: CheckSettings) -> list[EndpointHealth]:
    """Check what the plan moves consumers onto; raise EndpointRefusal if any fails."""
    results = check_endpoints(endpoints_moved_onto(plan, endpoints), keys, settings)
    failed = [r for r in results if r.failed]
    if failed:
        raise EndpointRefusal(_refusal(plan, failed))
    return results


def _refusal(plan: Plan, failed: list[EndpointHealth]) -> str:
    lines = [f"Refusing to apply: {len(failed)} of the endpoints this plan moves "
             f"{plan.noun}s onto failed the check, and {plan.noun}s on a failing endpoint stop "
             "answering. Nothing was written."]
    lines += [f"  {r.endpoint.where}: model '{r.endpoint.model}' is {r.health.value}: {r.why}"
              for r in failed]
    skips = " ".join(f"--skip-check {r.endpoint.model}" for r in failed)
    lines.append(f"Fix the endpoint (convai-sync check -f MANIFEST checks them all), or, if it is "
                 f"down on purpose, apply again with {skips}.")
    return "\n".join(lines)
