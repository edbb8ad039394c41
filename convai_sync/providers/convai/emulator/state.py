"""The emulated account: registered models, characters, and the orphan invariant.

Not thread-safe by itself: the Emulator holds its lock around every use.
"""
from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping

from convai_sync.providers.convai.emulator.quirks import Quirks

OPENAI_BASE_URL = "https://api.openai.com/v1"
MODEL_FIELDS = ("model_group_name", "model_name", "display_name", "base_url",
                "is_uncensored", "api_key", "created_at")
CHARACTER_FIELDS = ("character_id", "character_name", "model_group_name", "temperature")


def now_iso() -> str:
    """UTC time as the API writes it: 2025-07-08T09:41:38.123Z."""
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class AccountState:
    def __init__(self, builtins: Mapping[str, str]):
        self.builtins = builtins  # built-in code -> display name
        self.models: dict[str, dict] = {}  # insertion order = list order
        self.characters: dict[str, dict] = {}
        # False: /character/list leaves out personalised_prompt_config, as the real
        # list may (CONVAI_API.md); clients must then ask /character/get per character.
        self.list_carries_config = True
        self.get_carries_config = True  # False: /character/get as documented (six fields)
        self.unnamed_display = Quirks().default_display  # (code, model_name) -> display_name

    def load(self, seed: dict) -> None:
        """Replace everything with a normalized seed (see seed.normalize_seed)."""
        stamp = now_iso()
        self.models = {}
        for model in seed.get("models", []):
            record = {k: model.get(k) for k in MODEL_FIELDS}
            record["created_at"] = record["created_at"] or stamp
            self.models[record["model_group_name"]] = record
        self.characters = {}
        for char in seed.get("characters", []):
            record = {k: char[k] for k in CHARACTER_FIELDS}
            record["timestamp"] = stamp
            self.characters[record["character_id"]] = record

    def add_characters(self, characters: list[dict]) -> None:
        """Add (or overwrite, by id) normalized characters, as the Convai UI would."""
        stamp = now_iso()
        for char in characters:
            self.characters[char["character_id"]] = {**{k: char[k] for k in CHARACTER_FIELDS},
                                                     "timestamp": stamp}

    def is_usable(self, model: str) -> bool:
        """A character may point at a built-in code or a registered model."""
        return model in self.builtins or model in self.models

    def display_owner(self, display_name: str) -> str | None:
        for name, model in self.models.items():
            if model["display_name"] == display_name:
                return name
        return None

    def orphans(self) -> dict[str, str]:
        """character_id -> model for characters whose model no longer exists."""
        return {cid: c["model_group_name"] for cid, c in self.characters.items()
                if not self.is_usable(c["model_group_name"])}

    def register(self, **fields: object) -> dict:
        record = {k: fields.get(k) for k in MODEL_FIELDS}
        record["created_at"] = now_iso()
        self.models[record["model_group_name"]] = record
        return record

    def frozen(self) -> "AccountState":
        """A copy that later writes do not change (what a lagging read shows)."""
        copy_ = AccountState(self.builtins)
        copy_.models = copy.deepcopy(self.models)
        copy_.characters = {cid: dict(c) for cid, c in self.characters.items()}
        copy_.list_carries_config = self.list_carries_config
        copy_.get_carries_config = self.get_carries_config
        copy_.unnamed_display = self.unnamed_display
        return copy_

    def snapshot_models(self) -> dict[str, dict]:
        return copy.deepcopy(self.models)

    def snapshot_characters(self) -> dict[str, dict]:
        return {cid: {k: c[k] for k in CHARACTER_FIELDS} for cid, c in self.characters.items()}
