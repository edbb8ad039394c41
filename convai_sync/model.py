"""The normalized resources both sides are diffed in, for every platform.

A *model* is something the platform registers (a Convai custom LLM, a LangBot
LLM model, a Vapi credential); a *consumer* is what talks through one (a Convai
character, a LangBot pipeline, a Vapi assistant). Plans name models by their
manifest name: server-assigned ids stay inside the adapter. A field that is
absent or `None` is unknown (the API does not return it), never a difference.
"""
from __future__ import annotations

from .escape import inline

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelState:
    name: str
    fields: dict[str, Any] = field(default_factory=dict)

    def known(self, readable: frozenset[str]) -> dict[str, Any]:
        """The fields the API returned: readable on the platform, and present."""
        return {k: v for k, v in self.fields.items() if k in readable and v is not None}


@dataclass(frozen=True)
class ConsumerState:
    id: str
    model: str | None                  # the model it uses, by manifest name (or a built-in)
    fields: dict[str, Any] = field(default_factory=dict)  # the rest of its binding
    name: str | None = None            # a display name, for messages only

    @property
    def label(self) -> str:
        """How messages name it: 'Name' (id), or 'id'."""
        return (f"'{inline(self.name)}' ({inline(self.id)})" if self.name
                else f"'{inline(self.id)}'")


@dataclass
class LiveState:
    """What one read of the account found."""

    dialect: str                       # the API variant (Convai: llm-models | custom-llm)
    models: dict[str, ModelState] = field(default_factory=dict)
    consumers: dict[str, ConsumerState] = field(default_factory=dict)
    requests: int = 0
    platform: str = "convai"
    warnings: list[str] = field(default_factory=list)  # what the adapter saw and left alone
