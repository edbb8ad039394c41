"""The normalized resources both sides are diffed in. `None` means unknown:
the API does not return that field, so it can never be a difference."""
from __future__ import annotations

from dataclasses import dataclass, field

MODEL_FIELDS = ("model_name", "base_url", "display_name", "is_uncensored")


@dataclass(frozen=True)
class ModelState:
    model_group_name: str
    model_name: str | None = None
    base_url: str | None = None
    display_name: str | None = None
    is_uncensored: bool | None = None

    def fields(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in MODEL_FIELDS}

    def known(self, readable: frozenset[str]) -> dict[str, object]:
        """The fields the API returned: readable in the dialect, and present."""
        return {k: v for k, v in self.fields().items() if k in readable and v is not None}


@dataclass(frozen=True)
class CharacterState:
    char_id: str
    model_group_name: str | None
    temperature: float | None
    name: str | None = None

    @property
    def label(self) -> str:
        """How messages name it: 'Name' (id), or 'id'."""
        return f"'{self.name}' ({self.char_id})" if self.name else f"'{self.char_id}'"


@dataclass
class LiveState:
    """What one read of the account found."""

    dialect: str
    models: dict[str, ModelState] = field(default_factory=dict)
    characters: dict[str, CharacterState] = field(default_factory=dict)
    requests: int = 0
