"""Where the emulated Convai API may answer differently from what the client
expects: one switch per unknown that CONVAI_API.md lists. The defaults are the
well-behaved API; a test that passes under every switch does not depend on the
client's beliefs about the real one.

    retry_after          429 replies carry Retry-After (False: a bare 429)
    read_lag             seconds before a write shows in any read (list or get), while the
                         write itself has landed: a retry then meets 409/404
    unnamed_display      display_name of a model registered without one:
                         "code" (its model_group_name), "model" (its model_name) or "blank" ("")
    errors_in_200        refusals (400/404/409) come back as HTTP 200 with the error body

(/character/list and /character/get without model and temperature are the
Emulator's character_list_config / character_get_config switches.)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

UNNAMED_DISPLAYS = ("code", "model", "blank")


@dataclass(frozen=True)
class Quirks:
    retry_after: bool = True
    read_lag: float = 0.0
    unnamed_display: str = "code"
    errors_in_200: bool = False

    def __post_init__(self) -> None:
        if self.unnamed_display not in UNNAMED_DISPLAYS:
            raise ValueError(f"unnamed_display must be one of {UNNAMED_DISPLAYS}, "
                             f"got {self.unnamed_display!r}")
        if self.read_lag < 0:
            raise ValueError(f"read_lag must not be negative, got {self.read_lag!r}")

    def default_display(self, group: str, model_name: str) -> str:
        return {"code": group, "model": model_name, "blank": ""}[self.unnamed_display]


@lru_cache(maxsize=1)
def emulator_builtins() -> dict[str, str]:
    """The emulated account's built-in codes -> display names, from the emulator's own
    data file (never the client's catalogue: a shared table would hide a stale one)."""
    data = json.loads((Path(__file__).with_name("builtin_models.json")).read_text("utf-8"))
    return {m["model_group_name"]: m["display_name"] for m in data["models"]}
