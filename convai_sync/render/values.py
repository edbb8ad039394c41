"""How values look in every renderer."""
from __future__ import annotations

import json
from typing import Any

from ..secrets import SENSITIVE


def show(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, str) and value.startswith(SENSITIVE[:-1]):
        return value
    if isinstance(value, (str, bool)):
        return json.dumps(value)
    return repr(value) if not isinstance(value, float) else f"{value:g}"


def describe_target(resource: str, cid: str, name: str | None) -> str:
    return f'{resource} "{name}" ({cid})' if name else f'{resource} "{cid}"'


def count(n: int, noun: str) -> str:
    """`1 model`, `2 models`, `1,000 characters`."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
