"""Seed files: the account state an emulator starts with (YAML or JSON).

    dialect: llm-models          # optional
    models:     [{model_group_name, model_name, base_url, api_key,
                  display_name?, is_uncensored?, created_at?}]
    characters: [{character_id, character_name, model_group_name, temperature}]

Every problem is reported as a ConvaiSyncError naming the file and the entry.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from convai_sync.providers.convai.emulator.quirks import emulator_builtins
from convai_sync.emulator.seedfile import read_seed_file
from convai_sync.errors import ConvaiSyncError

DIALECTS = ("llm-models", "custom-llm")
_TOP_KEYS = {"dialect", "models", "characters"}
_MODEL_KEYS = {"model_group_name", "model_name", "base_url", "api_key", "display_name",
               "is_uncensored", "created_at"}
_CHARACTER_KEYS = {"character_id", "character_name", "model_group_name", "temperature"}


def load_seed_file(path: str | Path) -> dict:
    """Read and check a seed file; the result is ready for `Emulator(seed=...)`."""
    return normalize_seed(read_seed_file(path), str(path))


def demo_seed() -> dict:
    """The drifted demo account shipped with the package."""
    # A path next to the package, like builtins.py: importlib.resources fails on the
    # editable install's namespace-package mapping.
    path = Path(__file__).resolve().parents[3] / "data" / "demo_seed.yaml"
    return normalize_seed(yaml.safe_load(path.read_text("utf-8")), "demo_seed.yaml")


def normalize_seed(data: Any, source: str = "seed",
                   builtins: Collection[str] | None = None) -> dict:
    """Check a seed's shape and fill defaults. Raises one ConvaiSyncError for the first
    problem (with a count of the others), so the CLI can print a single line."""
    builtins = emulator_builtins() if builtins is None else builtins
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConvaiSyncError(f"{source}: expected a mapping with 'models' and 'characters', "
                              f"got {_kind(data)}")
    for key in sorted(set(data) - _TOP_KEYS, key=str):
        problems.append(f"unknown key {key!r} (expected dialect, models, characters)")
    out: dict[str, Any] = {"models": [], "characters": []}
    if data.get("dialect") is not None:
        if data["dialect"] in DIALECTS:
            out["dialect"] = data["dialect"]
        else:
            problems.append(f"dialect must be one of {', '.join(DIALECTS)}, got {data['dialect']!r}")
    out["models"] = _models(_list(data, "models", problems), builtins, problems)
    out["characters"] = _characters(_list(data, "characters", problems), problems)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ConvaiSyncError(f"{source}: {problems[0]}{more}")
    return out


def _list(data: dict, key: str, problems: list[str]) -> list:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"'{key}' must be a list, got {_kind(value)}")
        return []
    return value


def _models(items: list, builtins: Collection[str], problems: list[str]) -> list[dict]:
    out: list[dict] = []
    names: set[str] = set()
    displays: dict[str, str] = {}
    for i, item in enumerate(items):
        where = f"models[{i}]"
        if not _entry(item, where, _MODEL_KEYS, problems):
            continue
        where = f"models[{i}] ({item.get('model_group_name', '?')})"
        bad = [k for k in ("model_group_name", "model_name", "base_url", "api_key")
               if not _nonempty_str(item.get(k))]
        if bad:
            problems.append(f"{where}: {', '.join(bad)} must be non-empty string(s)")
            continue
        name = item["model_group_name"]
        display = item.get("display_name", name)
        created = item.get("created_at")
        if isinstance(created, (dt.date, dt.datetime)):  # YAML reads bare timestamps as dates
            created = created.isoformat()
        if not _nonempty_str(display):
            problems.append(f"{where}: display_name must be a non-empty string")
        elif not isinstance(item.get("is_uncensored", False), bool):
            problems.append(f"{where}: is_uncensored must be true or false")
        elif created is not None and not isinstance(created, str):
            problems.append(f"{where}: created_at must be a string")
        elif name in builtins:
            problems.append(f"{where}: model_group_name is a built-in model code")
        elif name in names:
            problems.append(f"{where}: duplicate model_group_name")
        elif display in displays:
            problems.append(f"{where}: display_name {display!r} is already used by {displays[display]}")
        else:
            names.add(name)
            displays[display] = name
            out.append({"model_group_name": name, "model_name": item["model_name"],
                        "display_name": display, "base_url": item["base_url"],
                        "is_uncensored": item.get("is_uncensored", False),
                        "api_key": item["api_key"], "created_at": created})
    return out


def _characters(items: list, problems: list[str]) -> list[dict]:
    out: list[dict] = []
    ids: set[str] = set()
    for i, item in enumerate(items):
        where = f"characters[{i}]"
        if not _entry(item, where, _CHARACTER_KEYS, problems):
            continue
        where = f"characters[{i}] ({item.get('character_id', '?')})"
        temp = item.get("temperature")
        if not all(_nonempty_str(item.get(k))
                   for k in ("character_id", "character_name", "model_group_name")):
            problems.append(f"{where}: character_id, character_name and model_group_name "
                            "must be non-empty strings")
        elif not is_temperature(temp):
            problems.append(f"{where}: temperature must be a number within 0..1, got {temp!r}")
        elif item["character_id"] in ids:
            problems.append(f"{where}: duplicate character_id")
        else:
            ids.add(item["character_id"])
            out.append({k: item[k] for k in
                        ("character_id", "character_name", "model_group_name", "temperature")})
    return out


def _entry(item: Any, where: str, allowed: set[str], problems: list[str]) -> bool:
    if not isinstance(item, dict):
        problems.append(f"{where}: expected a mapping, got {_kind(item)}")
        return False
    unknown = sorted(set(item) - allowed, key=str)
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
        return False
    return True


def is_temperature(value: Any) -> bool:
    """A JSON number (not a bool) within 0..1."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and 0 <= value <= 1)


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__)
