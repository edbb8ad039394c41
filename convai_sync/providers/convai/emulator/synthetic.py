"""Synthetic accounts of any size, for the benchmark and the scaling tests.

`synthetic_account(characters, models)` returns a manifest (YAML text) and an
emulator seed that has drifted from it in a known way:

- every manifest model is missing from the account (apply registers them all);
- a `drift` share of the characters (3 in 10 by default) is bound to a built-in
  model in the account but to one of the custom models in the manifest
  (apply rebinds them, temperature included);
- every other character already matches the manifest (no change).

So a plan has exactly `models` registrations and `round(characters * drift)`
character updates, in two phases: 1,000 characters and 30 models give the
"300 character updates + 30 registrations" of the benchmark.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from convai_sync.model import ConsumerState, LiveState, ModelState

BUILTINS = ("gpt-4o-mini", "gpt-4o", "gemini-2.5-flash", "claude-4-sonnet")
KEY_VARS = ("BENCH_KEY_A", "BENCH_KEY_B", "BENCH_KEY_C")


@dataclass(frozen=True)
class SyntheticAccount:
    manifest: str          # YAML text of the manifest
    seed: dict[str, Any]   # the drifted live account, for Emulator(seed=...)
    registrations: int
    character_updates: int


def model_name(j: int) -> str:
    return f"studio-m{j:05d}"


def char_id(i: int) -> str:
    return f"c{i:06d}-5e1f-4c2a-9b7d"


def drifted(i: int, drift: float) -> bool:
    """Spread evenly: character i drifts when the running share crosses a whole number."""
    return int((i + 1) * drift) > int(i * drift)


def synthetic_account(characters: int, models: int, drift: float = 0.3) -> SyntheticAccount:
    if models < 1 and drift > 0:
        raise ValueError("drifted characters need at least one custom model to move to")
    lines = ["version: 1", "settings:", "  fallback_model: gpt-4o-mini", "models:"]
    for j in range(models):
        lines += [f"  - model_group_name: {model_name(j)}",
                  "    model_name: gpt-4o-mini",
                  f"    base_url: https://llm{j % 5}.studio.example/v1",
                  f"    api_key: ${{{KEY_VARS[j % len(KEY_VARS)]}}}",
                  f"    display_name: Studio model {j}"]
    lines.append("characters:" if characters else "characters: []")
    seed_chars = []
    updates = 0
    for i in range(characters):
        builtin = BUILTINS[i % len(BUILTINS)]
        live_temp = round(0.1 + (i % 9) / 10, 1)
        if drifted(i, drift):
            updates += 1
            want_model, want_temp = model_name(i % models), round(1.0 - live_temp, 1)
        else:
            want_model, want_temp = builtin, live_temp
        lines += [f"  - char_id: {char_id(i)}", f"    model_group_name: {want_model}",
                  f"    temperature: {want_temp}"]
        seed_chars.append({"character_id": char_id(i), "character_name": f"Character {i}",
                           "model_group_name": builtin, "temperature": live_temp})
    if not models:
        lines[3] = "models: []"
    seed = {"models": [], "characters": seed_chars}
    return SyntheticAccount("\n".join(lines) + "\n", seed, models, updates)


def live_state(seed: dict[str, Any], dialect: str = "llm-models") -> LiveState:
    """The LiveState a read of an emulator holding `seed` returns, without HTTP."""
    full = dialect == "llm-models"
    models = {m["model_group_name"]: ModelState(m["model_group_name"], {
        "model_name": m["model_name"], "base_url": m["base_url"],
        "display_name": m.get("display_name") if full else None,
        "is_uncensored": m.get("is_uncensored", False) if full else None})
        for m in seed.get("models", [])}
    chars = {c["character_id"]: ConsumerState(c["character_id"], c["model_group_name"],
                                              {"temperature": float(c["temperature"])},
                                              c["character_name"])
             for c in seed.get("characters", [])}
    return LiveState(dialect, models, chars, requests=0)
