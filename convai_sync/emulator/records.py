"""What the emulator remembers about each request: the log tests assert on."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SENSITIVE = "(sensitive)"


@dataclass(frozen=True)
class RecordedRequest:
    seq: int
    path: str
    body: dict | None  # api_key values replaced by "(sensitive)": the log never holds a secret
    status: int | None  # None when the connection was dropped without a reply
    committed: bool  # the request changed state (a successful write)
    fault: str | None  # "before:429", "after:drop", "rate-limit", ... or None


@dataclass(frozen=True)
class OrphanEvent:
    """A character that this request left pointing at a model that no longer exists."""

    seq: int
    path: str
    character_id: str
    model_group_name: str


SECRET_KEYS = frozenset({"api_key", "api_keys", "apiKey", "clientSecret"})  # every platform's


def redact(value: Any) -> Any:
    """A copy of `value` with every secret value (any platform's key names)
    replaced, at any depth."""
    if isinstance(value, dict):
        return {k: SENSITIVE if k in SECRET_KEYS else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
