"""The two Custom LLM API dialects: paths, and which fields each can read and
update. Pure data, shared by the capabilities and the HTTP client."""
from __future__ import annotations

from dataclasses import dataclass

MODEL_FIELDS = ("model_name", "base_url", "display_name", "is_uncensored")


@dataclass(frozen=True)
class Dialect:
    name: str
    readable: frozenset[str]     # fields the list call returns
    updatable: frozenset[str]    # fields the update call accepts (api_key aside)
    registrable: frozenset[str]  # fields the register call accepts (api_key aside)

    @property
    def unreadable(self) -> tuple[str, ...]:
        """Model fields this dialect never returns: never a difference, never drift."""
        return tuple(f for f in MODEL_FIELDS if f not in self.readable)

    def path(self, verb: str) -> str:
        return f"/{self.name}/{verb}"


LLM_MODELS = Dialect(
    "llm-models",
    readable=frozenset({"model_name", "base_url", "display_name", "is_uncensored"}),
    updatable=frozenset({"display_name", "base_url", "is_uncensored"}),
    registrable=frozenset({"model_name", "base_url", "display_name", "is_uncensored"}),
)
CUSTOM_LLM = Dialect(
    "custom-llm",
    readable=frozenset({"model_name", "base_url"}),
    updatable=frozenset({"model_name", "base_url", "is_uncensored"}),
    registrable=frozenset({"model_name", "base_url", "is_uncensored"}),
)
DIALECTS = {d.name: d for d in (LLM_MODELS, CUSTOM_LLM)}
