"""Which characters one write left pointing at a missing model, at a cost that
does not grow with the account (the Emulator checks this under its lock on
every write, so a full scan of 10,000 characters per write would make the
emulator the bottleneck of any large apply).

A write can orphan a character in only two ways: a model disappears (every
character on it is a new orphan: the model existed, so none of them was one
before), or the character the request names is rebound. So only those are
checked; a scan of all characters happens only when a model went away.
"""
from __future__ import annotations

from typing import Any

from convai_sync.providers.convai.emulator.state import AccountState


class OrphanWatch:
    """Taken before a write runs; `new_orphans()` after it committed."""

    def __init__(self, state: AccountState, body: Any):
        self._state = state
        self._models = set(state.models)
        cid = body.get("charID") if isinstance(body, dict) else None
        char = state.characters.get(cid) if isinstance(cid, str) else None
        self._char = cid if char is not None and state.is_usable(char["model_group_name"]) else None

    def new_orphans(self) -> dict[str, str]:
        """character_id -> model for the characters this write orphaned."""
        state, out = self._state, {}
        removed = self._models.difference(state.models)
        if removed:
            out = {cid: c["model_group_name"] for cid, c in state.characters.items()
                   if c["model_group_name"] in removed and not state.is_usable(c["model_group_name"])}
        char = state.characters.get(self._char) if self._char is not None else None
        if char is not None and not state.is_usable(char["model_group_name"]):
            out[self._char] = char["model_group_name"]
        return out
