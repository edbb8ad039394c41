"""How values look in every renderer."""
from __future__ import annotations

import json
from typing import Any

from ..plan import Change
from ..escape import inline
from ..secrets import SENSITIVE


def show(value: Any) -> str:
    """A value on one line, escaped for a terminal (every renderer quotes values so)."""
    if value is None:
        return "(unset)"
    if isinstance(value, str) and value.startswith(SENSITIVE[:-1]):
        return inline(value)
    if isinstance(value, (str, bool, list, dict)):
        return inline(json.dumps(value, ensure_ascii=False))
    return inline(repr(value)) if not isinstance(value, float) else f"{value:g}"


def describe_target(resource: str, cid: str, name: str | None) -> str:
    cid = inline(cid)
    return f'{resource} "{inline(name)}" ({cid})' if name else f'{resource} "{cid}"'


def count(n: int, noun: str) -> str:
    """`1 model`, `2 models`, `1,000 characters`."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


_VERB = {"register": "will be registered", "update": "will be updated in place",
         "replace": "must be replaced", "deregister": "will be deregistered"}


def label(change: Change, noun: str) -> str:
    """`model "x"`, or the consumer by its noun and display name."""
    return describe_target("model" if change.is_model else noun, change.id, change.name)


def headline(change: Change, noun: str, model_ref: str, verbs: dict[str, str] | None = None) -> str:
    """`character "Mara" (c1) will be rebound (why)`: one line, both renderers."""
    verb = {**_VERB, **(verbs or {})}[change.action]
    if not change.is_model:
        verb = "will be rebound" if model_ref in change.fields else "will be updated"
    why = f" ({inline(change.reason)})" if change.reason else ""
    return f"{label(change, noun)} {verb}{why}"
