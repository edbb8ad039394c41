"""`--target` and `--replace`: narrow a plan to some objects, or re-send a key.

A target keeps its own changes and every change the safety order needs for
them, found by following dependencies to a fixpoint: a consumer needs the
model it moves onto to exist (its register or replace); a model that goes
away (replace, deregister) needs the consumers that use it moved first (and
back). So no consumer is left on a missing model; the narrowed plan is still
replayed like any plan (Plan.verify_order) before anything is written.
"""
from __future__ import annotations

from dataclasses import dataclass

from .plan import Action, Change

_GOES_AWAY = (Action.REPLACE, Action.DEREGISTER)
_COMES = (Action.REGISTER, Action.REPLACE)


@dataclass(frozen=True)
class Scope:
    """What the CLI narrows a plan to (`targets`) or forces (`replace`)."""

    targets: frozenset[str] = frozenset()   # model names or consumer ids; empty = everything
    replace: frozenset[str] = frozenset()   # models whose key is sent again
    strict: bool = True                     # an unknown name is an error (not after an apply
                                            # that deregistered its target)

    def __bool__(self) -> bool:
        return bool(self.targets or self.replace)


def unknown(names: frozenset[str], known: set[str], flag: str, what: str, where: str) -> list[str]:
    """Problems for names not `known` (`where` says where they were looked for)."""
    return [f"{flag} {name}: there is no {what} '{name}' in {where}; check the name (plan shows "
            "every object it manages)" for name in sorted(names - known)]


def narrow(changes: list[Change], targets: frozenset[str], model_ref: str) -> list[Change]:
    """The changes of `targets` and what the safety order needs for them."""
    if not targets:
        return changes
    kept: set[int] = set()
    todo = [i for i, c in enumerate(changes) if c.id in targets]
    while todo:
        i = todo.pop()
        if i in kept:
            continue
        kept.add(i)
        todo += [j for j, other in enumerate(changes) if j not in kept
                 and _needs(changes[i], other, model_ref)]
    return [c for i, c in enumerate(changes) if i in kept]


def _needs(change: Change, other: Change, ref: str) -> bool:
    if change.is_model:
        # a model going away needs its consumers moved off it first (and back after a replace)
        return (change.action in _GOES_AWAY and not other.is_model
                and change.id in ((other.before or {}).get(ref), (other.after or {}).get(ref)))
    if not other.is_model:
        return other.id == change.id  # a consumer parked during a replace, and moved back
    return other.action in _COMES and other.id == (change.after or {}).get(ref)

